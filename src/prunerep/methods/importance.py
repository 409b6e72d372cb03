"""Channel importance scores shared by methods and baselines (one score vector per group)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from prunerep.pruning.groups import ChannelGroup


def filter_l1(model: nn.Module, groups: Sequence[ChannelGroup]) -> dict[str, torch.Tensor]:
    """L1 norm of each output filter, summed over the group's producers (Li et al., 2017).

    For a group coupled across several convs (a residual stream) the channel's importance is the
    sum of its filters' L1 norms, as the dependency-graph pruners of the field do.
    """
    scores = {}
    modules = dict(model.named_modules())
    for g in groups:
        total = torch.zeros(g.channels)
        for name in g.producers:
            w = modules[name].weight.detach()
            total += w.abs().flatten(1).sum(1).float().cpu()
        scores[g.id] = total
    return scores


def bn_scale(model: nn.Module, groups: Sequence[ChannelGroup]) -> dict[str, torch.Tensor]:
    """|gamma| of the group's BN layers, averaged over them (network slimming, Liu et al., 2017)."""
    scores = {}
    modules = dict(model.named_modules())
    for g in groups:
        if not g.norms:
            raise ValueError(f"group {g.id!r} has no norm layer: BN-scale importance is undefined for it")
        total = torch.zeros(g.channels)
        for name in g.norms:
            total += modules[name].weight.detach().abs().float().cpu()
        scores[g.id] = total / len(g.norms)
    return scores


def random_scores(groups: Sequence[ChannelGroup], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Uniform random scores: random channel choice at given widths."""
    return {g.id: torch.rand(g.channels, generator=generator) for g in groups}
