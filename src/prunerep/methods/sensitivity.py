"""Budgeted pruning whose per-group widths are searched on the validation split (a baseline).

``sensitivity``: one-shot pruning to a MACs budget in which the *allocation* (how many channels
each coupled group keeps) is chosen by a sensitivity scan, the way budgeted pruning flows chose
layer-wise ratios before differentiable allocation (Li et al., "Pruning Filters for Efficient
ConvNets", ICLR 2017, arXiv:1608.08710, §3.2 sensitivity analysis; NetAdapt, Yang et al., ECCV
2018, arXiv:1804.03230, greedy per-layer choices under a resource budget). Run inside
`prunerep.runner.IterativeSpec` it is the "iterative budgeted pruning" of DSA's claims (Ning et
al., ECCV 2020, arXiv:2004.02164): at every step the allocation is searched again on the
current, fine-tuned network.

1. **Scan.** For every prunable group ``g`` and every level ``q`` of ``levels``, the validation
   loss of the network in which *only* ``g`` keeps its ``ceil(q C_g)`` channels of highest filter
   L1 norm (exact removal, simulated by 0/1 masks at the readers' inputs), minus the unpruned
   network's loss: ``s_g(k)``, the damage of keeping ``k`` channels. ``len(levels) x groups``
   evaluations on the first ``scan_images`` validation images.
2. **Allocation.** ``s_g`` is made monotone (fewer channels never cost less), interpolated
   linearly between the scanned widths and extrapolated below the smallest one; then channels
   are removed one at a time from the group with the smallest increase of ``s`` per MAC saved
   (a greedy multiple-choice knapsack on the additive approximation ``sum_g s_g``) until the
   exact MACs meet the budget.
3. **Removal.** The lowest-L1 channels of each group go (the shared surgery).

The candidates are scored without fine-tuning (NetAdapt fine-tunes every candidate briefly, at
``groups`` times the cost), so this is a cheap allocation search; a costlier one would only make
the iterative flow slower.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunerep.methods.base import MethodContext, PruningMethod, register_method
from prunerep.methods.baselines import Scope, in_scope
from prunerep.methods.budget import top_k_masks
from prunerep.methods.importance import filter_l1
from prunerep.pruning.gates import HardMask, attach_gates
from prunerep.pruning.groups import ChannelGroup
from prunerep.pruning.surgery import prune_channels

__all__ = ["SensitivityHyper", "SensitivityPruning", "allocate_by_sensitivity", "damage_curve", "sensitivity_scan"]


@dataclass(frozen=True)
class SensitivityHyper:
    """``sensitivity``: which groups, which keep fractions the scan probes, on how many images."""

    scope: Scope = "all"
    levels: list[float] = field(default_factory=lambda: [0.75, 0.5, 0.25])  # keep fractions probed per group
    scan_images: int | None = 512      # validation images per candidate (None: the whole split)

    def __post_init__(self) -> None:
        if not self.levels or any(not 0.0 < q < 1.0 for q in self.levels):
            raise ValueError(f"sensitivity.levels must be keep fractions in (0, 1), got {self.levels}")
        if self.scan_images is not None and self.scan_images < 1:
            raise ValueError(f"sensitivity.scan_images must be >= 1 or None, got {self.scan_images}")


def _scan_batches(loader: Iterable[tuple[torch.Tensor, torch.Tensor]], images: int | None
                  ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first `images` validation images (all of them for None), in the loader's fixed order."""
    out, n = [], 0
    for x, y in loader:
        if images is not None and n + len(y) > images:
            x, y = x[: images - n], y[: images - n]
        out.append((x, y))
        n += len(y)
        if images is not None and n >= images:
            break
    if not out:
        raise ValueError("sensitivity: the validation loader yielded no images")
    return out


@torch.no_grad()
def _loss(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
    total, count = 0.0, 0
    for x, y in batches:
        total += float(F.cross_entropy(model(x).float(), y, reduction="sum"))
        count += len(y)
    return total / count


def sensitivity_scan(model: nn.Module, groups: Sequence[ChannelGroup], scores: Mapping[str, torch.Tensor],
                     levels: Sequence[float], batches: Sequence[tuple[torch.Tensor, torch.Tensor]]
                     ) -> dict[str, list[tuple[int, float]]]:
    """Per group: ``[(kept channels k, validation-loss increase when only this group keeps k)]``.

    The model is not modified (a copy is masked, in eval mode). Levels that keep every channel
    are skipped; each group keeps at least one channel.
    """
    net = copy.deepcopy(model).eval()
    gates = attach_gates(net, groups, lambda g: HardMask(g.channels), placement="input", attr="_scan_gates")
    base = _loss(net, batches)
    out: dict[str, list[tuple[int, float]]] = {}
    for g in groups:
        gate = gates[g.id]
        order = torch.argsort(scores[g.id].detach().float().cpu(), descending=True, stable=True)
        rows = []
        for k in sorted({max(1, math.ceil(q * g.channels - 1e-9)) for q in levels}, reverse=True):
            if k >= g.channels:
                continue
            mask = torch.zeros(g.channels, dtype=torch.bool)
            mask[order[:k]] = True
            gate.set_(mask)
            rows.append((k, _loss(net, batches) - base))
        gate.set_(torch.ones(g.channels, dtype=torch.bool))
        out[g.id] = rows
    return out


def damage_curve(channels: int, points: Sequence[tuple[int, float]]) -> torch.Tensor:
    """``s(k)`` for ``k = 0..channels`` (float64; entry 0 unused): 0 at ``channels``, the scanned
    points made non-decreasing as ``k`` falls (a running max from the full width down: removing a
    channel never lowers the damage), linear between them and extrapolated below the smallest
    scanned width with the last segment's slope. Without scanned points (one channel) all zero."""
    xs, ys = [channels], [0.0]
    for k, v in sorted(((int(k), float(v)) for k, v in points if 1 <= k < channels), reverse=True):
        if k < xs[-1]:
            xs.append(k)
            ys.append(max(ys[-1], v))
    curve = torch.zeros(channels + 1, dtype=torch.float64)
    if len(xs) == 1:
        return curve
    for k in range(1, channels + 1):
        # the segment (xs[j-1], xs[j]) holding k, or the last one below the smallest scanned width
        j = next((i for i in range(1, len(xs)) if k >= xs[i]), len(xs) - 1)
        x0, x1, y0, y1 = xs[j - 1], xs[j], ys[j - 1], ys[j]
        curve[k] = y1 + (y0 - y1) * (k - x1) / (x0 - x1)
    return curve


def allocate_by_sensitivity(cost_model: Any, groups: Sequence[ChannelGroup], curves: Mapping[str, torch.Tensor],
                            target_macs: float, start: Mapping[str, int] | None = None) -> dict[str, int]:
    """Greedy widths under a MACs budget: remove one channel at a time from the group whose damage
    rises least per MAC saved (ties: the larger saving, then group order) until the exact MACs of
    the widths are ``<= target_macs``. Groups not listed keep their dense width.

    Raises:
        ValueError: the budget cannot be met with one channel per listed group.
    """
    a_w, b_w, c_w = cost_model.bilinear()
    ids = list(cost_model.group_ids)
    sym = ((a_w + a_w.T) / 2).double()
    b = b_w.double()
    w = torch.tensor([float(cost_model.dense_widths[g]) for g in ids], dtype=torch.float64)
    for gid, k in (start or {}).items():
        w[ids.index(gid)] = float(k)
    idx = [ids.index(g.id) for g in groups]

    def macs(v: torch.Tensor) -> float:
        return float(v @ sym @ v + b @ v + c_w)

    current = macs(w)
    while current > target_macs:
        # MACs saved by removing one channel of each group: f(w) - f(w - e_g) = 2 (S w)_g - S_gg + b_g
        saved = 2 * (sym @ w) - torch.diagonal(sym) + b
        best, best_key = None, None
        for pos, (g, i) in enumerate(zip(groups, idx, strict=True)):
            k = int(w[i])
            if k <= 1 or saved[i] <= 0:
                continue
            rise = float(curves[g.id][k - 1] - curves[g.id][k])
            key = (rise / float(saved[i]), -float(saved[i]), pos)
            if best_key is None or key < best_key:
                best, best_key = i, key
        if best is None:
            raise ValueError(f"sensitivity: a budget of {target_macs:.0f} MACs cannot be met with one channel per "
                             "group")
        w[best] -= 1.0
        current = macs(w)
    return {g.id: int(w[i]) for g, i in zip(groups, idx, strict=True)}


@register_method("sensitivity", hyper=SensitivityHyper)
class SensitivityPruning(PruningMethod):
    """L1-norm channel pruning to a MACs budget with widths from a validation sensitivity scan
    (see the module docstring). Needs `MethodContext.val_loader` (the runner sets it)."""

    paper = "sensitivity-scan allocation (Li et al., ICLR 2017, §3.2; greedy under a budget as NetAdapt), ours"

    def __init__(self, scope: Scope = "all", levels: Sequence[float] = (0.75, 0.5, 0.25),
                 scan_images: int | None = 512) -> None:
        hyper = SensitivityHyper(scope=scope, levels=list(levels), scan_images=scan_images)  # validates
        self.scope = hyper.scope
        self.levels = list(hyper.levels)
        self.scan_images = hyper.scan_images
        self.final: dict[str, Any] = {}

    def prunable(self, group: ChannelGroup) -> bool:
        return in_scope(group, self.scope)

    def finalize(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        if ctx.budget.macs_keep is None:
            raise ValueError("sensitivity allocates under a MACs budget: give Budget(macs_keep=...)")
        if ctx.val_loader is None:
            raise ValueError("sensitivity scores its candidates on validation batches: MethodContext.val_loader "
                             "is None (run it through prunerep.runner)")
        scores = filter_l1(model, ctx.prunable)
        batches = _scan_batches(ctx.val_loader, self.scan_images)
        scan = sensitivity_scan(model, ctx.prunable, scores, self.levels, batches)
        curves = {g.id: damage_curve(g.channels, scan[g.id]) for g in ctx.prunable}
        target = ctx.budget.macs_keep * float(ctx.cost_model.dense_macs())
        widths = allocate_by_sensitivity(ctx.cost_model, ctx.prunable, curves, target)
        self.final = {"widths": widths, "scan": {gid: [[k, v] for k, v in rows] for gid, rows in scan.items()},
                      "scan_images": sum(len(y) for _, y in batches), "evaluations": 1 + sum(map(len, scan.values()))}
        return prune_channels(model, ctx.groups, top_k_masks(scores, widths))

    def summary(self) -> dict[str, Any]:
        return dict(self.final)
