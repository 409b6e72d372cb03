"""One tiny pruning run of any registered method, on one process or as one rank of several.

Run as ``python -m tests.unit.distributed_worker METHOD OUT BATCH [api]`` with torchrun's environment
(``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) for a rank of a gloo job, or without
it for one process. ``BATCH`` is the (global) batch: each of N ranks takes BATCH/N of it. ``api``: through `prunerep.prune` with tensors as the data, instead of the
runner on the in-memory splits. Rank 0 (or the one process) saves the pruned network's widths, state dict
and accuracies to ``OUT``.

The run is in float64: in float32 the two ways of summing a batch (one pass over 32 images, or
two of 16 plus an all-reduce) differ by rounding, and on this tiny random problem BatchNorm
channels of almost zero variance amplify it to ~1% of a gradient after one step; in float64 the
same code agrees to ~1e-14, so any difference left is a real one (a rank-local decision).
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from tests.unit import kill_resume_worker
from tests.unit.kill_resume_worker import TINY_HYPER


def build(method: str, batch_size: int) -> tuple[Any, torch.nn.Module, Any]:
    """The tiny run of `method` with (global) batch `batch_size` (128 training images)."""
    return kill_resume_worker.build(method, batch_size=batch_size, n_train=128, n_eval=32, finetune_epochs=1,
                                    eval_batch_size=32)


def _api(method: str, batch: int) -> dict[str, Any]:
    """The same tiny problem through the public API, with tensors as the data."""
    import prunerep

    _, dense, splits = build(method, batch)

    def pair(ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return (ds.images.to(torch.get_default_dtype()) / 255 - 0.5) / 0.25, ds.labels

    pruned = prunerep.prune(dense, method, 0.6, train=pair(splits.train), val=pair(splits.val), test=pair(splits.test),
                            hyper=TINY_HYPER.get(method), finetune=1, epochs=2, batch_size=batch, eval_batch_size=32,
                            seed=1, device="cpu", channels_last=False)
    return {"widths": pruned.record.widths, "state": pruned.model.state_dict(), "val_acc": pruned.record.val_acc,
            "test_acc": pruned.record.test_acc, "macs": pruned.record.macs}


def main(argv: list[str]) -> int:
    method, out, batch, *how = argv
    from prunerep.engine.device import init_distributed, is_main_process
    from prunerep.runner import run_pruning

    torch.set_default_dtype(torch.float64)
    distributed = init_distributed()
    if how == ["api"]:
        saved = _api(method, int(batch))
    else:
        spec, dense, splits = build(method, int(batch))
        result = run_pruning(spec, dense, splits)
        saved = {"widths": result.widths, "state": result.model.state_dict(), "val_acc": result.val_acc,
                 "test_acc": result.test_acc, "macs": result.macs}
    if is_main_process():
        torch.save(saved, out)
    if distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
