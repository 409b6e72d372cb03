"""From channel scores and a MACs budget to keep masks: the allocation rules baselines share.

Two rules of the literature:

- **uniform**: remove the same fraction r of channels in every prunable group, r found by
  bisection so that the pruned network meets the MACs budget (L1-norm pruning, random pruning);
- **global**: rank all channels of all prunable groups by one score and remove the lowest-scored
  until the budget is met (network slimming's global BN-scale threshold).

Both evaluate MACs with the exact-at-integer-widths `SoftCostModel`, never by pruning copies.
Every group keeps at least one channel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from prunerep.pruning.groups import ChannelGroup


def widths_from_ratio(groups: Sequence[ChannelGroup], ratio: float | Mapping[str, float]) -> dict[str, int]:
    """Widths after removing ``min(ceil(ratio * C), C - 1)`` channels per group (GReg's rule).

    A tolerance of 1e-9 keeps float fuzz (0.7 * 10 = 7.000000000000001) from removing one more.
    """
    out = {}
    for g in groups:
        r = ratio[g.id] if isinstance(ratio, Mapping) else ratio
        n_pruned = min(math.ceil(r * g.channels - 1e-9), g.channels - 1)
        out[g.id] = g.channels - n_pruned
    return out


def uniform_widths_for_macs(cost_model, groups: Sequence[ChannelGroup], target_macs: float,
                            iters: int = 40) -> tuple[dict[str, int], float]:
    """Largest uniform widths whose MACs are <= `target_macs`; returns (widths, ratio)."""
    lo, hi = 0.0, 1.0  # remove fraction
    if float(cost_model.macs(widths_from_ratio(groups, 0.0))) <= target_macs:
        return widths_from_ratio(groups, 0.0), 0.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        if float(cost_model.macs(widths_from_ratio(groups, mid))) <= target_macs:
            hi = mid
        else:
            lo = mid
    widths = widths_from_ratio(groups, hi)
    if float(cost_model.macs(widths)) > target_macs:
        raise ValueError(f"budget of {target_macs:.0f} MACs cannot be met by uniform pruning of these groups")
    return widths, hi


def global_widths_for_macs(cost_model, groups: Sequence[ChannelGroup], scores: Mapping[str, torch.Tensor],
                           target_macs: float, min_keep: float = 0.0) -> dict[str, int]:
    """Remove the globally lowest-scored channels until MACs <= `target_macs`.

    Each group keeps at least ``max(1, ceil(min_keep * C))`` of its best channels (a per-layer
    floor: a global threshold can otherwise cut a layer to one channel). Bisection over the
    number of removed channels (MACs are monotone in it).
    """
    if not 0.0 <= min_keep <= 1.0:
        raise ValueError(f"min_keep must be in [0, 1], got {min_keep}")
    entries = []  # (score, group id)
    for g in groups:
        s = scores[g.id].detach().float().cpu()
        if s.numel() != g.channels:
            raise ValueError(f"scores[{g.id!r}] has {s.numel()} entries for {g.channels} channels")
        floor = max(1, math.ceil(min_keep * g.channels - 1e-9))
        protected = set(torch.topk(s, min(floor, g.channels)).indices.tolist())
        entries += [(float(v), g.id) for i, v in enumerate(s.tolist()) if i not in protected]
    entries.sort(key=lambda e: e[0])

    def widths_after(k: int) -> dict[str, int]:
        widths = {g.id: g.channels for g in groups}
        for _, gid in entries[:k]:
            widths[gid] -= 1
        return widths

    lo, hi = 0, len(entries)
    if float(cost_model.macs(widths_after(hi))) > target_macs:
        raise ValueError(f"budget of {target_macs:.0f} MACs cannot be met: even the per-group floor "
                         f"(min_keep={min_keep}, at least one channel) costs more")
    while lo < hi:
        mid = (lo + hi) // 2
        if float(cost_model.macs(widths_after(mid))) <= target_macs:
            hi = mid
        else:
            lo = mid + 1
    return widths_after(lo)


def top_k_masks(scores: Mapping[str, torch.Tensor], widths: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """Keep mask per group: the `widths[g]` highest-scored channels (ties broken by index)."""
    masks = {}
    for gid, width in widths.items():
        s = scores[gid].detach().float().cpu()
        keep = torch.zeros(s.numel(), dtype=torch.bool)
        keep[torch.topk(s, width, sorted=False).indices] = True
        masks[gid] = keep
    return masks
