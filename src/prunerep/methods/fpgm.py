"""FPGM's criterion as a one-shot baseline: prune the filters nearest the geometric median.

He, Liu, Wang, Hu, Yang. "Filter Pruning via Geometric Median for Deep Convolutional Neural
Networks Acceleration", CVPR 2019, arXiv:1811.00250; official code
he-y/filter-pruning-geometric-median (``pruning_cifar10.py``, ``Mask.get_filter_similar``, read
at ``cf41d15``).

The criterion, as the official code computes it per conv layer: flatten every filter to a
vector, take the matrix of pairwise Euclidean distances, sum each filter's distances to all
others; the filters with the *smallest* sums lie nearest the geometric median of the layer
(their function is the most replaceable by the others) and are pruned. Here the score of a
channel is that sum (higher = kept). For a coupled group (a residual stream written by several
convs) a channel's vector is the concatenation of its filters in every producer.

Differences from the official method, documented because they change what is compared:

* **one-shot, hard**: the official code is "soft" filter pruning: it zeroes the selected filters
  after every training epoch and lets them grow back during training (and re-selects); the
  functionality study compares criteria on one checkpoint, with or without a brief retraining,
  so only the selection rule is taken;
* **no norm pre-selection**: the official code can first prune a share of the smallest-L2-norm
  filters (``--rate_norm``); its CIFAR scripts run ``--rate_norm 1`` (none), as here;
* **widths** come from the shared rule (``ceil(r C)`` removed per group, or the same fraction in
  every group for a MACs budget), the same for every compared method; the official code rounds
  down (``int(C * rate_dist)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from prunerep.methods.base import MethodContext, register_method
from prunerep.methods.baselines import OneShot, OneShotHyper
from prunerep.pruning.groups import ChannelGroup

__all__ = ["FPGM", "fpgm_scores"]


def fpgm_scores(model: nn.Module, groups: Sequence[ChannelGroup]) -> dict[str, torch.Tensor]:
    """Per group: each channel's summed Euclidean distance to the group's other filters.

    ``score[i] = sum_j ||w_i - w_j||_2`` over the channels ``j`` of the group, ``w`` the flattened
    filter (all producers concatenated). The smallest scores are nearest the geometric median.
    """
    modules = dict(model.named_modules())
    out = {}
    for g in groups:
        vecs = torch.cat([modules[name].weight.detach().flatten(1).double().cpu() for name in g.producers], dim=1)
        out[g.id] = torch.cdist(vecs, vecs).sum(0).float()
    return out


@register_method("fpgm", hyper=OneShotHyper)
class FPGM(OneShot):
    paper = "He et al., CVPR 2019, arXiv:1811.00250 (criterion only, one-shot)"

    def scores(self, model: nn.Module, ctx: MethodContext) -> dict[str, torch.Tensor]:
        return fpgm_scores(model, ctx.prunable)
