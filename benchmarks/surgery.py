#!/usr/bin/env python3
"""How long does surgery take? CIFAR ResNet-56: gates -> physically pruned network.

For each shortcut type and gate placement, on a fresh ResNet-56 every round:

* ``find_groups``: trace the model with torch-pruning's DependencyGraph and build the groups;
* ``attach_gates``: one SoftGate per group (random values, ~20% exact zeros, one residual block
  removed entirely);
* ``apply_gates``: fold the gate values, remove the zero channels and the dead block, detach the
  gates (the number the issue asks for; target < 1 s). It includes a validation forward pass of
  the pruned net and, for output placement, one of the gated net;
* ``prune_channels``: the same surgery from hard masks (no folding, no gated forward).

Reported: median and min over ``--repeats`` rounds, and the MACs before/after. Not a test: run it
by hand and keep the printed fingerprint with any number you quote.

Usage::

    .venv/bin/python benchmarks/surgery.py                 # 5 rounds, 1 thread, CPU
    .venv/bin/python benchmarks/surgery.py --repeats 10 --threads 2
    .venv/bin/python benchmarks/surgery.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

try:
    import prunerep  # noqa: F401
except ModuleNotFoundError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from prunerep.models import get_model
from prunerep.pruning.cost import count_cost
from prunerep.pruning.gates import SoftGate, attach_gates
from prunerep.pruning.groups import find_groups
from prunerep.pruning.latency import device_fingerprint
from prunerep.pruning.surgery import apply_gates, prune_channels

DEAD_BLOCK = "layer2.3.conv1"


def _gate_values(channels: int, dead: bool, generator: torch.Generator) -> torch.Tensor:
    if dead:
        return torch.zeros(channels)
    theta = torch.rand(channels, generator=generator) * 1.5 - 0.3
    theta[0] = 1.0
    return theta


def one_round(shortcut: str, placement: str, device: torch.device, seed: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, 32, 32, device=device)
    timings: dict[str, float] = {}

    model = get_model("resnet56", shortcut=shortcut).to(device).eval()
    t0 = time.perf_counter()
    groups = find_groups(model, x)
    timings["find_groups"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    gates = attach_gates(
        model,
        groups,
        lambda g: SoftGate(g.channels, init=_gate_values(g.channels, g.id == DEAD_BLOCK, gen)),
        placement=placement,
    )
    timings["attach_gates"] = time.perf_counter() - t0
    masks = {gid: m.clone() for gid, m in gates.hard_masks().items()}
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    apply_gates(model, gates, groups)
    if device.type == "cuda":
        torch.cuda.synchronize()
    timings["apply_gates"] = time.perf_counter() - t0
    timings["macs_after"] = count_cost(model, example_input=x).macs

    model = get_model("resnet56", shortcut=shortcut).to(device).eval()
    groups = find_groups(model, x)
    t0 = time.perf_counter()
    prune_channels(model, groups, masks)
    if device.type == "cuda":
        torch.cuda.synchronize()
    timings["prune_channels"] = time.perf_counter() - t0
    return timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="rounds per configuration (default 5)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    dense = count_cost(get_model("resnet56").eval()).macs
    print(json.dumps(device_fingerprint(device)))
    print(
        f"ResNet-56 dense: {dense / 1e6:.2f}M MACs; {args.repeats} rounds per row, times in seconds"
    )
    header = f"{'shortcut':>8} {'placement':>9} | {'find_groups':>11} {'attach':>7} {'apply_gates':>11} {'(min)':>6} {'prune_channels':>14} | {'MACs after':>10}"
    print(header)
    print("-" * len(header))
    rows = []
    for shortcut in ("A", "B"):
        for placement in ("input", "output"):
            one_round(shortcut, placement, device, seed=0)  # warm-up (imports, allocator)
            runs = [one_round(shortcut, placement, device, seed=i) for i in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            best = min(r["apply_gates"] for r in runs)
            rows.append(
                {"shortcut": shortcut, "placement": placement, **med, "apply_gates_min": best}
            )
            print(
                f"{shortcut:>8} {placement:>9} | {med['find_groups']:>11.3f} {med['attach_gates']:>7.3f} "
                f"{med['apply_gates']:>11.3f} {best:>6.3f} {med['prune_channels']:>14.3f} | "
                f"{med['macs_after'] / 1e6:>9.2f}M"
            )
    worst = max(r["apply_gates"] for r in rows)
    print(
        f"\nslowest median apply_gates: {worst:.3f} s (target < 1 s): {'OK' if worst < 1 else 'SLOW'}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"fingerprint": device_fingerprint(device), "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
