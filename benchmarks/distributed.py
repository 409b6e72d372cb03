#!/usr/bin/env python3
"""Every method on 2 gloo processes vs 1 on this CPU: throughput, and how close the results are.

For each registered method, the same pruning run (CIFAR ResNet-20 on a synthetic 3x32x32,
10-class dataset of `--images` training images, keep 0.5 of the MACs, the method's phases for
`--epochs` epochs, then one epoch of fine-tuning) is run twice:

* ``1 proc``: one process, `--threads` intra-op threads (default 2), batch `--batch`;
* ``2 ranks``: two gloo processes under ``torch.distributed.run``, one thread each, batch
  `--batch`/2 each: the same global batches (`prunerep.engine.distributed`).

Columns: training throughput of each (images per second over every training phase: the sum of
the phases' images divided by their wall time, from the run's histories), the ratio, whether the
pruned widths are equal, and the largest absolute weight difference of the pruned networks. In
float32 the two differ by the order of the sums (the split batch, the all-reduce), which training
amplifies; `--float64` runs both in double precision, where they agree to ~1e-12 unless a method
takes a rank-local decision (tests/unit/test_distributed.py checks that at a tiny size).

Usage::

    .venv/bin/python benchmarks/distributed.py                     # all methods, ~10 min on 2 idle cores
    .venv/bin/python benchmarks/distributed.py --methods gdp dsa --images 1024
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]

#: Shorter phases where a method's defaults would run for many epochs (lengths only).
SHORT = {
    "gdp": {"lam_init": 0.5, "lam_max": 5.0, "ramp_epochs": 0.5},
    "wgates": {"ramp_epochs": 0.5},
    "greg": {"reg": {"update_reg_interval": 2, "reg_granularity_prune": 0.05, "reg_upper_limit": 1.0,
                     "stabilize_reg_interval": 4, "max_iterations": 40}},
    "dais": {"gap_points": 2, "gap_images": 64, "snapshots": 2},
    "functionality": {"images": 64},
    "sensitivity": {"scan_images": 64},
}


def _build(method: str, batch: int, images: int, epochs: float) -> tuple[Any, torch.nn.Module, Any]:
    from prunerep.api import spec_for
    from prunerep.data.arrays import ArrayDataset, DataSplits
    from prunerep.engine import OptimConfig, RuntimeConfig
    from prunerep.models import get_model

    def ds(n: int, seed: int) -> ArrayDataset:
        g = torch.Generator().manual_seed(seed)
        return ArrayDataset(torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
                            torch.arange(n) % 10, tuple("abcdefghij"))

    splits = DataSplits(ds(images, 0), ds(256, 1), ds(256, 2), (0.5,) * 3, (0.25,) * 3, "fp", "synthetic")
    torch.manual_seed(0)
    dense = get_model("resnet20", num_classes=10)
    runtime = RuntimeConfig(device="cpu", channels_last=True, progress=False)
    spec = spec_for(method, 0.5, hyper=SHORT.get(method), finetune=OptimConfig(epochs=1, lr=0.01), seed=0,
                    batch_size=batch, eval_batch_size=256, arch_fraction=0.1, epochs=epochs, runtime=runtime,
                    model=dense, example_input=torch.zeros(1, 3, 32, 32))
    return spec, dense, splits


def _worker(args: argparse.Namespace) -> None:
    from prunerep.engine.device import init_distributed, is_main_process
    from prunerep.runner import run_pruning

    if args.float64:
        torch.set_default_dtype(torch.float64)
    init_distributed()
    spec, dense, splits = _build(args.method, args.batch, args.images, args.epochs)
    t0 = time.perf_counter()
    result = run_pruning(spec, dense, splits)
    wall = time.perf_counter() - t0
    # images of every training epoch (summed over the ranks by the loop) and their time
    trained = sum(e["train_images_per_s"] * e["epoch_time_s"] for h in result.histories.values() for e in h)
    train_time = sum(sum(e["epoch_time_s"] for e in h) for h in result.histories.values())
    if is_main_process():
        torch.save({"widths": result.widths, "state": result.model.state_dict(), "wall_s": wall,
                    "images": trained, "train_s": train_time, "val_acc": result.val_acc}, args.out)


def _launch(method: str, ranks: int, batch: int, threads: int, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    common = ["--worker", "--method", method, "--batch", str(batch), "--images", str(args.images),
              "--epochs", str(args.epochs), "--out", str(out)] + (["--float64"] if args.float64 else [])
    if ranks == 1:
        command = [sys.executable, __file__, *common]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
                   __file__, *common]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{method} on {ranks} rank(s) failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return torch.load(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="*", default=None, help="default: every registered method")
    parser.add_argument("--images", type=int, default=2048, help="training images")
    parser.add_argument("--epochs", type=float, default=1.0, help="length of each method's own phases")
    parser.add_argument("--batch", type=int, default=64, help="global batch (each of 2 ranks takes half)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the one-process run")
    parser.add_argument("--float64", action="store_true")
    parser.add_argument("--json", default=None, help="also write the table as JSON here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        _worker(args)
        return

    sys.path.insert(0, str(ROOT / "src"))
    from prunerep.methods import list_methods

    methods = args.methods or list_methods()
    print(f"{args.images} training images 3x32x32, ResNet-20, keep 0.5 of the MACs, phases {args.epochs:g} epoch(s) "
          f"+ 1 epoch fine-tuning, global batch {args.batch}, {'float64' if args.float64 else 'float32'}; "
          f"{os.cpu_count()} CPUs", flush=True)
    print(f"{'method':14s} {'1 proc img/s':>12s} {'2 ranks img/s':>13s} {'ratio':>6s} {'widths':>7s} "
          f"{'max |dw|':>9s} {'wall 1/2 (s)':>13s}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in methods:
            one = _launch(method, 1, args.batch, args.threads, Path(tmp) / f"{method}-1.pt", args)
            two = _launch(method, 2, args.batch, 1, Path(tmp) / f"{method}-2.pt", args)
            tp1, tp2 = one["images"] / one["train_s"], two["images"] / two["train_s"]
            same = one["widths"] == two["widths"]
            diff = max(((one["state"][k].double() - two["state"][k].double()).abs().max().item()
                        for k in one["state"] if one["state"][k].is_floating_point()
                        and one["state"][k].shape == two["state"][k].shape), default=float("nan"))
            row = {"method": method, "one_process_img_s": tp1, "two_ranks_img_s": tp2, "ratio": tp2 / tp1,
                   "widths_equal": same, "max_abs_weight_diff": diff if same else None,
                   "wall_one_s": one["wall_s"], "wall_two_s": two["wall_s"]}
            rows.append(row)
            print(f"{method:14s} {tp1:12.0f} {tp2:13.0f} {tp2 / tp1:6.2f} {'equal' if same else 'differ':>7s} "
                  f"{(f'{diff:.1e}' if same else '-'):>9s} {one['wall_s']:6.0f} /{two['wall_s']:5.0f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
