"""Round pruned widths down to multiples of a hardware-friendly number (e.g. 8).

On the CPUs measured here (``benchmarks/latency.py``) convolutions whose channel counts are
multiples of 8 run faster per MAC, so a budget may ask that every pruned width be rounded. The
runner applies it after any method: it is the same rule for all of them, and a method that ranks
its channels itself may round first with its own scores (then nothing is left to round here).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

import torch
from torch import nn

from prunerep.pruning.groups import ChannelGroup, find_groups
from prunerep.pruning.surgery import prune_channels

__all__ = ["round_pruned_widths", "rounded_width"]

#: Per-channel scores of groups: ``scores(model, groups) -> {group id: [C]}`` (higher: kept).
Scores = Callable[[nn.Module, Sequence[ChannelGroup]], Mapping[str, torch.Tensor]]


def rounded_width(width: int, multiple: int) -> int:
    """``width`` rounded down to a multiple of ``multiple``, never below ``min(multiple, width)``
    (a group narrower than one multiple keeps its width: it cannot be rounded without dying)."""
    if multiple < 1 or width < 0:
        raise ValueError(f"need multiple >= 1 and width >= 0, got {multiple}, {width}")
    return max(min(multiple, width), (width // multiple) * multiple)


def round_pruned_widths(model: nn.Module, example_input: torch.Tensor, multiple: int, scores: Scores,
                        group_ids: Collection[str] | None = None) -> dict[str, int]:
    """Remove, in place, the channels that round each group's width down to a multiple of `multiple`.

    The channels removed are those with the lowest `scores` (the runner passes the L1-norm
    criterion, `prunerep.methods.importance.filter_l1`: it needs nothing but the weights, so it
    applies after any method).

    Args:
        model: A (pruned) network; modified in place.
        example_input: One input batch of the data's shape.
        multiple: Round down to multiples of this.
        scores: Per-channel scores of the groups (see `Scores`).
        group_ids: The groups to round (the method's prunable ones); None: every group.

    Returns:
        ``{group id: channels removed}`` for every group that changed.
    """
    groups = find_groups(model, example_input)
    todo = [g for g in groups if (group_ids is None or g.id in group_ids)
            and rounded_width(g.channels, multiple) < g.channels]
    ranked = scores(model, todo) if todo else {}
    keep, removed = {}, {}
    for g in todo:
        target = rounded_width(g.channels, multiple)
        mask = torch.zeros(g.channels, dtype=torch.bool)
        mask[torch.topk(ranked[g.id], target).indices] = True
        keep[g.id] = mask
        removed[g.id] = g.channels - target
    if keep:
        prune_channels(model, groups, keep)
    return removed
