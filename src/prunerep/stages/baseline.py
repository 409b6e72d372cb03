"""Section `baseline`: the dense models' report (notebooks/baseline.ipynb)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prunerep.config import register_section
from prunerep.stages.common import SubsetConfig


@register_section("baseline")
@dataclass(frozen=True)
class BaselineConfig:
    models: list[str] = field(default_factory=lambda: ["resnet56"])  # keys of pretrain.models
    subset: SubsetConfig = SubsetConfig()        # test subset for the accuracy check (None: all)
    latency_batch_sizes: list[int] = field(default_factory=lambda: [1, 64])
    latency_repeats: int = 30
    latency_warmup: int = 5
    latency_threads: int | None = None
    device: str = "auto"
