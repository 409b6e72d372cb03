"""One tiny pruning run of any registered method, SIGKILLed at a chosen checkpoint (issue #15).

Run as ``python -m tests.unit.kill_resume_worker METHOD CHECKPOINT_DIR KILL`` where KILL is

* ``after:K``  -- SIGKILL right after the K-th resume checkpoint of this process was written;
* ``during:K`` -- SIGKILL in the middle of writing the K-th one: the previous checkpoint was
  already moved to ``*.prev.pt`` and half of the new one sits in a temp file, as when a kill
  lands inside ``torch.save``.

`build` is also what the test uses for the uninterrupted reference, so both run the same spec on
the same data and dense network.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch

#: Per-method settings that keep a run to a few optimiser steps (only lengths and sizes; the
#: algorithms run unchanged). GReg's pruning phase ends with its penalty schedule.
TINY_HYPER: dict[str, dict[str, Any]] = {
    "gdp": {"lam_init": 0.5, "lam_max": 5.0, "ramp_epochs": 0.5},
    "wgates": {"ramp_epochs": 0.5},
    "greg": {"reg": {"update_reg_interval": 1, "reg_granularity_prune": 0.2, "reg_upper_limit": 1.0,
                     "stabilize_reg_interval": 2, "max_iterations": 6}},
    "dais": {"gap_points": 2, "gap_images": 16, "snapshots": 2},
    "functionality": {"images": 16},
    "sensitivity": {"scan_images": 16},
}


def build(method: str, *, batch_size: int = 16, n_train: int = 64, n_eval: int = 16, finetune_epochs: float = 2,
          eval_batch_size: int = 16) -> tuple[Any, torch.nn.Module, Any]:
    """The spec, dense network and data splits of the tiny run of `method` (1x12x12 images, 3
    classes, ResNet-20, keep 0.6 of the MACs); tests/unit/distributed_worker.py varies the sizes."""
    from prunerep.api import spec_for
    from prunerep.data.arrays import ArrayDataset, DataSplits
    from prunerep.engine import OptimConfig, RuntimeConfig
    from prunerep.models import get_model

    def ds(n: int, seed: int) -> ArrayDataset:
        g = torch.Generator().manual_seed(seed)
        return ArrayDataset(torch.randint(0, 256, (n, 1, 12, 12), generator=g, dtype=torch.uint8),
                            torch.arange(n) % 3, ("a", "b", "c"))

    splits = DataSplits(ds(n_train, 0), ds(n_eval, 1), ds(n_eval, 2), (0.5,), (0.25,), "fp", "synthetic")
    torch.manual_seed(0)
    dense = get_model("resnet20", shortcut="A", num_classes=3, in_channels=1)
    runtime = RuntimeConfig(device="cpu", channels_last=False, progress=False, threads=1)
    finetune = OptimConfig(epochs=finetune_epochs, batch_size=batch_size, lr=0.01, schedule="cosine")
    spec = spec_for(method, 0.6, hyper=TINY_HYPER.get(method), finetune=finetune, select="best_val", seed=1,
                    batch_size=batch_size, eval_batch_size=eval_batch_size, arch_fraction=0.25, epochs=2,
                    runtime=runtime, model=dense, example_input=torch.zeros(1, 1, 12, 12))
    return spec, dense, splits


def _arm_kill(when: str) -> None:
    """Make this process SIGKILL itself at the checkpoint `when` names (``after:K``/``during:K``)."""
    from prunerep import io
    from prunerep.engine import trainer

    mode, k = when.split(":")
    target = int(k)
    count = {"saves": 0}
    real_save = trainer.save_resume_checkpoint
    real_torch_save = trainer.atomic_torch_save

    def half_written(obj: Any, path: str | os.PathLike) -> Path:
        def write(tmp: Path) -> None:
            torch.save(obj, tmp)
            data = tmp.read_bytes()
            tmp.write_bytes(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)

        return io._atomic(path, write)

    def save(state: dict[str, Any], path: Path) -> None:
        count["saves"] += 1
        if mode == "during" and count["saves"] == target:
            trainer.atomic_torch_save = half_written
        real_save(state, path)
        trainer.atomic_torch_save = real_torch_save
        if mode == "after" and count["saves"] == target:
            os.kill(os.getpid(), signal.SIGKILL)

    trainer.save_resume_checkpoint = save


def main(argv: list[str]) -> int:
    method, checkpoint_dir, when = argv
    from prunerep.runner import run_pruning

    spec, dense, splits = build(method)
    _arm_kill(when)
    run_pruning(spec, dense, splits, checkpoint_dir=checkpoint_dir, run_key="kill-test")
    return 0   # the kill point was never reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
