"""Width allocators shared by the baselines: the global threshold and its per-group floor."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunerep.methods.budget import global_widths_for_macs
from prunerep.pruning.groups import find_groups
from prunerep.pruning.soft_cost import SoftCostModel

X = torch.zeros(1, 3, 8, 8)


def chain() -> tuple[nn.Module, list, SoftCostModel]:
    model = nn.Sequential(nn.Conv2d(3, 10, 3, padding=1), nn.ReLU(), nn.Conv2d(10, 10, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(10, 4, 3, padding=1))
    groups = find_groups(model, X)
    prunable = list(groups.select(lambda g: True))
    return model, prunable, SoftCostModel.from_model(model, X, groups)


def test_global_threshold_removes_the_lowest_scores_first_and_meets_the_budget():
    _, prunable, cost = chain()
    # the first group's channels all score below the second's: a global threshold empties it first
    scores = {prunable[0].id: torch.arange(10.0) * 0.01, prunable[1].id: 1.0 + torch.arange(10.0)}
    target = 0.35 * float(cost.dense_macs())
    widths = global_widths_for_macs(cost, prunable, scores, target)
    assert float(cost.macs(widths)) <= target
    assert widths[prunable[0].id] == 1          # cut to its best channel (no floor)
    assert widths[prunable[1].id] > 1


def test_min_keep_floor_keeps_a_share_of_every_group():
    _, prunable, cost = chain()
    scores = {prunable[0].id: torch.arange(10.0) * 0.01, prunable[1].id: 1.0 + torch.arange(10.0)}
    target = 0.35 * float(cost.dense_macs())
    widths = global_widths_for_macs(cost, prunable, scores, target, min_keep=0.3)
    assert float(cost.macs(widths)) <= target
    assert widths[prunable[0].id] == 3          # ceil(0.3 * 10)
    assert widths[prunable[1].id] == 7          # the rest comes from the other group: 9 + 7 * 7 <= 59.5
    with pytest.raises(ValueError, match="min_keep"):
        global_widths_for_macs(cost, prunable, scores, target, min_keep=1.5)
    with pytest.raises(ValueError, match="per-group floor"):
        global_widths_for_macs(cost, prunable, scores, 0.01 * target, min_keep=0.9)
