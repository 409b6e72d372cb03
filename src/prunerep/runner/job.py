"""`python -m prunerep.runner.job <job file>`: one run of a study on several processes.

A study's `execute` writes the job (spec, data, dense checkpoint, identity, output paths) and
starts this module under the launcher named by ``PRUNEREP_LAUNCHER``, e.g.::

    PRUNEREP_LAUNCHER="torchrun --standalone --nproc_per_node 4" dvc repro greg

Every rank runs the same run through the one runner (its slice of every global batch, gradients
averaged, BatchNorm over the global batch: `prunerep.engine.distributed`); rank 0 saves the
pruned network and the finished record, which the study then reads back like a run finished
before. Rank 0's output goes to the run's log, the others' to ``<log>.rank<r>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    from prunerep.engine.device import init_distributed, is_distributed, is_main_process, rank
    from prunerep.runner.execute import _run_job, _save_finished

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m prunerep.runner.job <job file written by a study>", file=sys.stderr)
        return 2
    path = Path(args[0])
    if not path.exists():
        print(f"error: {path}: no such job file (a study writes it before launching this)", file=sys.stderr)
        return 2
    init_distributed()
    job = torch.load(path, map_location="cpu", weights_only=False)   # written by this project's execute
    if not is_main_process() and job.get("log_path"):
        job = dict(job, log_path=f"{job['log_path']}.rank{rank()}")
    record = _run_job(job)
    if is_main_process():
        _save_finished(record, job)
    if is_distributed():
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
