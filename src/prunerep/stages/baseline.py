"""Section `baseline`: the dense models' report (notebooks/baseline.ipynb)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunerep.config import register_section
from prunerep.data import DataSplits, SubsetConfig


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

    def pretrain_keys(self) -> dict[str, str]:
        """Key path (in this section) -> the pretrain.models key it names (checked by `config check`)."""
        return {f"models[{i}]": key for i, key in enumerate(self.models)}


def dense_report(cfg: BaselineConfig, data_cfg: Any, profile: str,
                 artifacts: Path = Path("artifacts"), results: Path = Path("results"),
                 splits: DataSplits | None = None) -> list[dict[str, Any]]:
    """One row per pretrained model: accuracy re-measured from the checkpoint, cost, latency.

    Cost and latency are measured at the data's own input shape (`example_shape(splits)`), and
    every row records it (`input`), with the dataset (`data`) the accuracy was measured on.

    Args:
        cfg: the `baseline` section.
        data_cfg: the `data` section (DataConfig).
        profile: the active profile (recorded in the rows by the pretrain stage).
        artifacts: folder of the pretrain checkpoints.
        results: folder of the pretrain metrics.
        splits: the loaded data (default: `load_data(data_cfg, cfg.subset)`).
    """
    import torch

    from prunerep.data import example_shape, format_shape, load_data
    from prunerep.engine import evaluate, pick_device
    from prunerep.io import read_json
    from prunerep.models.checkpoint import load_model
    from prunerep.pruning.cost import count_cost
    from prunerep.pruning.latency import measure_latency

    device = pick_device(cfg.device)
    if splits is None:
        splits = load_data(data_cfg, cfg.subset)
    test_loader = splits.loader(splits.test, 512, train=False, device=device)
    example = example_shape(splits)
    rows = []
    for key in cfg.models:
        model, meta = load_model(artifacts / "pretrain" / key / "model.pt", map_location=device)
        trained = read_json(results / "pretrain" / key / "run.json")
        test = evaluate(model, test_loader)
        cost = count_cost(model.cpu(), example)
        model.to(device)
        latency = {f"latency_bs{r.batch_size}_ms": r.median_ms for r in measure_latency(
            model, example[1:], batch_sizes=cfg.latency_batch_sizes, repeats=cfg.latency_repeats,
            warmup=cfg.latency_warmup, threads=cfg.latency_threads)}
        rows.append({
            "model": key, "arch": meta["arch"]["name"], "test_acc": test["acc"], "test_images": test["n"],
            "val_acc": trained["val_acc"], "macs_M": cost.macs / 1e6, "params_M": cost.params / 1e6,
            "input": format_shape(example),
            **latency, "epochs": trained["budget"]["epochs"], "train_images": trained["budget"]["train_images"],
            "train_time_min": trained["budget"]["wall_time_s"] / 60, "profile": trained["profile"],
            "device": str(device), "threads": cfg.latency_threads or torch.get_num_threads(),
        })
    return rows
