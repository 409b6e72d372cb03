"""Width rounding (`Budget.round_to`): widths go down to multiples, the channels removed are the
smallest-L1 ones, and every method's run honours it through the one runner."""

from __future__ import annotations

import pytest
import torch

from prunerep.api import PruneError, spec_for
from prunerep.engine import OptimConfig, RuntimeConfig
from prunerep.methods import Budget
from prunerep.methods.importance import filter_l1
from prunerep.models import get_model
from prunerep.pruning.cost import count_cost
from prunerep.pruning.groups import find_groups
from prunerep.pruning.rounding import round_pruned_widths, rounded_width
from prunerep.pruning.surgery import prune_channels
from prunerep.runner import RunSpec, run_pruning

SHAPE = (1, 1, 8, 8)


def test_rounded_width_values():
    assert [rounded_width(w, 8) for w in (0, 3, 8, 13, 16, 23, 64)] == [0, 3, 8, 8, 16, 16, 64]
    assert rounded_width(7, 1) == 7
    with pytest.raises(ValueError):
        rounded_width(5, 0)


def test_budget_round_to_is_validated_and_described():
    assert "multiples of 8" in Budget(macs_keep=0.5, round_to=8).describe()
    assert "rounded" not in Budget(macs_keep=0.5).describe()
    for bad in (0, -8, 2.5, True):
        with pytest.raises(ValueError, match="round_to"):
            Budget(macs_keep=0.5, round_to=bad)
        with pytest.raises(PruneError, match=rf"round_to={bad!r}: give a positive integer"):
            spec_for("l1", 0.5, round_to=bad)
    assert spec_for("l1", 0.5, round_to=8).budget == Budget(macs_keep=0.5, round_to=8)
    assert spec_for("l1", 0.5).budget == Budget(macs_keep=0.5)


def test_rounding_removes_the_smallest_l1_channels_and_only_from_the_groups_named():
    torch.manual_seed(0)
    model = get_model("resnet20", shortcut="A", num_classes=3, in_channels=1).eval()
    x = torch.zeros(SHAPE)
    groups = find_groups(model, x)
    # prune to odd widths first (drop the first channels), as a method would
    keep = {g.id: torch.arange(g.channels) >= 3 for g in groups}
    prune_channels(model, groups, keep)
    groups = find_groups(model, x)
    before = {g.id: (g.channels, filter_l1(model, [g])[g.id]) for g in groups}
    # two blocks' inner groups: their producers read residual streams, which are not rounded here,
    # so their filters' norms are comparable before and after
    some = ["layer2.0.conv1", "layer3.1.conv1"]
    removed = round_pruned_widths(model, x, 4, filter_l1, some)
    after = {g.id: (g.channels, filter_l1(model, [g])[g.id]) for g in find_groups(model, x)}
    assert {gid: w for gid, (w, _) in after.items() if gid not in some} == \
        {gid: w for gid, (w, _) in before.items() if gid not in some}   # not named: unchanged
    for gid in some:
        width, norms = before[gid]
        assert after[gid][0] == rounded_width(width, 4) and after[gid][0] % 4 == 0, gid
        assert removed.get(gid, 0) == width - after[gid][0]
        top = torch.sort(torch.topk(norms, after[gid][0]).values).values
        torch.testing.assert_close(torch.sort(after[gid][1]).values, top)   # the largest norms survive
    model(torch.randn(2, 1, 8, 8))                                   # and the network runs


@pytest.mark.parametrize("method", ["l1", "wgates"])
def test_a_run_with_round_to_has_rounded_widths_and_no_more_macs(method):
    from tests.unit.test_wgates import _splits  # the tiny synthetic splits of the W-Gates tests

    runtime = RuntimeConfig(device="cpu", channels_last=False, progress=False)
    short = OptimConfig(epochs=1, batch_size=16, lr=0.01, max_steps=2)
    hyper = {"train": {"epochs": 1, "batch_size": 16, "lr": 0.01, "max_steps": 3}} if method == "wgates" else None
    results = {}
    for round_to in (None, 4):
        torch.manual_seed(0)
        dense = get_model("resnet20", shortcut="A", num_classes=3, in_channels=1)
        spec = RunSpec(method=method, budget=Budget(macs_keep=0.6, round_to=round_to), runtime=runtime,
                       batch_size=16, hyper=hyper, finetune=short, model="resnet20")
        results[round_to] = run_pruning(spec, dense, _splits())
    rounded = results[4]
    assert all(w % 4 == 0 or w < 4 for w in rounded.widths.values()), rounded.widths
    assert rounded.macs == count_cost(rounded.model, SHAPE).macs <= results[None].macs
    assert rounded.macs <= 0.6 * rounded.dense_macs + 1e-6
