"""GReg: method module (being implemented; see the issue for the specification)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prunerep.config import register_section


@register_section("greg")
@dataclass(frozen=True)
class GRegConfig:
    """The `greg` section of params.yaml."""

    model: str = "resnet56"                                # key of pretrain.models (the dense checkpoint)
    seeds: list[int] = field(default_factory=lambda: [0])  # claims are reported as mean ± std over these
    workers: int = 1                                       # independent runs side by side
