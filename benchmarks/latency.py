#!/usr/bin/env python3
"""Does halving the MACs of CIFAR ResNet-56 halve its latency on this machine?

Builds a dense CIFAR ResNet-56 and a pruned one whose every residual block keeps a fraction
``--keep`` (default 0.5, which gives about 50% of the MACs) of its internal channels (conv1's
outputs = conv2's inputs); block outputs stay at 16/32/64 because the residual additions couple
them. Both are timed with :func:`prunerep.pruning.latency.compare_latency`, whose interleaved
runs make load drift from other processes hit both models alike, for every combination of batch
size, thread count and channels-last layout.

``--source project`` (default) takes ``prunerep.models.get_model("resnet56")`` and removes the
channels with ``prunerep.pruning.surgery.prune_channels`` on the internal groups (which channels
are removed does not matter for latency, so the first ones are kept). ``--source local`` builds
both networks from a self-contained definition in this file (same layer shapes and MACs), which
keeps the benchmark usable while those modules are being changed.

Columns:

* ``MACs ratio``: pruned / dense multiply-accumulates per image;
* ``latency ratio``: median over rounds of pruned time / dense time in the same round, with the
  interquartile range of those per-round ratios as the spread;
* ``drop achieved``: ``(1 - latency ratio) / (1 - MACs ratio)``, i.e. the latency reduction as a
  fraction of what the MACs reduction predicts (1.0: latency fell as much as MACs; 0: not at all).

Usage::

    .venv/bin/python benchmarks/latency.py        # full grid: minutes on 2 idle cores, ~10 under load
    .venv/bin/python benchmarks/latency.py --repeats 5 --batch-sizes 1   # quick look
    .venv/bin/python benchmarks/latency.py --device cuda --threads 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

try:
    from prunerep.pruning.latency import compare_latency, device_fingerprint
except ModuleNotFoundError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from prunerep.pruning.latency import compare_latency, device_fingerprint


# --------------------------------------------------------------------------------------------------
# CIFAR ResNet-56 with adjustable block width (He et al. 2016, option-A shortcuts)
# --------------------------------------------------------------------------------------------------


class Block(nn.Module):
    """Basic residual block whose internal width ``mid`` can differ from its output width."""

    def __init__(self, c_in: int, mid: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride = stride
        self.pad = c_out - c_in

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        # Option A: parameter-free subsample + zero-pad channels, as in the CIFAR ResNet paper.
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs; ``keep`` scales every block's internal width."""

    def __init__(self, depth: int = 56, num_classes: int = 10, keep: float = 1.0) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks: list[nn.Module] = []
        c_in = 16
        for stage, width in enumerate((16, 32, 64)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                mid = max(1, round(width * keep))
                blocks.append(Block(c_in, mid, width, stride))
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.blocks(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# --------------------------------------------------------------------------------------------------
# MACs
# --------------------------------------------------------------------------------------------------


def _local_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Conv + Linear multiply-accumulates for one forward pass (norms/activations excluded)."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        k = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]  # (in/groups) * kh * kw
        total += out.numel() * k

    def linear_hook(m: nn.Linear, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


def mac_counter() -> tuple[str, Callable[[nn.Module, tuple[int, ...]], int]]:
    """Use the project's cost counter when it exists, else the local hook-based one."""
    try:
        from prunerep.pruning.cost import count_cost
    except ImportError:
        return "local hooks", _local_macs

    def project_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
        cost = count_cost(model, shape)
        # Accept the plausible return types without depending on which one was chosen.
        if isinstance(cost, int | float):
            return int(cost)
        if isinstance(cost, dict):
            return int(cost["macs"])
        return int(cost.macs)

    return "prunerep.pruning.cost.count_cost", project_macs


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def build_models(source: str, keep: float, scope: str = "internal",
                 multiple: int = 1) -> tuple[nn.Module, nn.Module, str]:
    """Return ``(dense, pruned, description)`` for the requested source (see module docstring)."""
    torch.manual_seed(0)
    if source == "local":
        if scope != "internal":
            raise SystemExit("--source local supports --scope internal only")
        return CifarResNet(56), CifarResNet(56, keep=keep), "local CifarResNet(keep=...)"
    from prunerep.models import get_model
    from prunerep.pruning.groups import any_group, find_groups, internal
    from prunerep.pruning.surgery import prune_channels

    dense = get_model("resnet56")
    pruned = get_model("resnet56")
    pruned.load_state_dict(dense.state_dict())
    groups = find_groups(pruned, torch.randn(1, 3, 32, 32))
    masks = {}
    for group in groups.select(internal if scope == "internal" else any_group):
        mask = torch.zeros(group.channels, dtype=torch.bool)
        kept = max(multiple, multiple * round(group.channels * keep / multiple))
        mask[: min(kept, group.channels)] = True
        masks[group.id] = mask
    prune_channels(pruned, groups, masks)
    description = (f"prunerep get_model('resnet56') + surgery.prune_channels({scope} groups, widths "
                   f"rounded to multiples of {multiple})")
    return dense, pruned, description


def _fmt_ms(median: float, iqr: float) -> str:
    return f"{median:9.2f} ±{iqr:8.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--source", choices=["project", "local"], default="project")
    p.add_argument("--scope", choices=["internal", "all"], default="internal",
                   help="internal: prune inside residual blocks only (block outputs stay 16/32/64); "
                        "all: every coupled group, residual streams included (uniform width)")
    p.add_argument("--keep", type=float, default=None,
                   help="fraction of each pruned group's channels kept (default: 0.5 for --scope "
                        "internal, 0.71 = sqrt(0.5) for --scope all; both give ~50%% of the MACs)")
    p.add_argument("--multiple", type=int, default=1,
                   help="round kept widths to a multiple of this (SIMD-friendly widths, e.g. 8)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--channels-last", choices=["off", "on", "both"], default="both")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=20, help="timed rounds (each times both nets)")
    p.add_argument("--min-time", type=float, default=0.0, help="min timed seconds per model")
    p.add_argument("--json", type=Path, help="also write all rows to this JSON file")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if args.keep is None:
        args.keep = 0.5 if args.scope == "internal" else 0.71
    dense, pruned, source = build_models(args.source, args.keep, args.scope, args.multiple)
    # Move once here so the harness times these modules in place instead of copying them.
    dense, pruned = dense.to(device).eval(), pruned.to(device).eval()
    shape = (3, 32, 32)

    counter_name, count = mac_counter()
    macs_dense = count(dense, (1, *shape))
    macs_pruned = count(pruned, (1, *shape))
    macs_ratio = macs_pruned / macs_dense
    params_ratio = sum(q.numel() for q in pruned.parameters()) / sum(
        q.numel() for q in dense.parameters()
    )

    fp = device_fingerprint(device)
    print("Device fingerprint:")
    for k, v in fp.items():
        print(f"  {k}: {v}")
    print(f"\nModels: {source}")
    print(
        f"CIFAR ResNet-56 dense: {macs_dense / 1e6:.2f} M MACs; pruned (keep={args.keep}): "
        f"{macs_pruned / 1e6:.2f} M MACs; MACs ratio {macs_ratio:.3f}, params ratio "
        f"{params_ratio:.3f} (MACs by {counter_name})"
    )
    print(
        f"warmup {args.warmup}, {args.repeats} interleaved rounds per cell; "
        "times are medians ± IQR in ms per batch\n"
    )

    cl_opts = {"off": [False], "on": [True], "both": [False, True]}[args.channels_last]
    header = (
        "| batch | threads | ch_last | dense ms (±IQR)     | pruned ms (±IQR)    | MACs ratio "
        "| latency ratio (±IQR) | drop achieved |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    all_rows = []
    for bs, threads, cl in itertools.product(args.batch_sizes, args.threads, cl_opts):
        rows = compare_latency(
            {"dense": dense, "pruned": pruned},
            shape,
            batch_sizes=(bs,),
            threads=threads,
            channels_last=cl,
            warmup=args.warmup,
            repeats=args.repeats,
            min_time_s=args.min_time,
        )
        d, q = (next(r for r in rows if r["model"] == name) for name in ("dense", "pruned"))
        lat = q["paired_ratio"]
        achieved = (1 - lat) / (1 - macs_ratio) if macs_ratio != 1 else float("nan")
        print(
            f"| {bs:5d} | {threads:7d} | {'on' if cl else 'off':7s} "
            f"| {_fmt_ms(d['median_ms'], d['iqr_ms'])} | {_fmt_ms(q['median_ms'], q['iqr_ms'])} "
            f"| {macs_ratio:10.3f} | {lat:11.3f} ±{q['paired_ratio_iqr']:7.3f} "
            f"| {achieved:13.2f} |",
            flush=True,
        )
        for r in rows:
            r.update(macs_ratio=macs_ratio, drop_achieved=achieved)
        all_rows.extend(rows)

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(all_rows, indent=2, default=str))
        print(f"\nwrote {len(all_rows)} rows to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
