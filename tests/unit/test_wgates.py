"""W-Gates: gate values and their straight-through gradient, the efficiency term in both modes
(the latency term's gradient reaches the gate generators through a frozen LPNet), freezing under
the target, and whole runs through the one runner."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from prunerep.engine import OptimConfig, RuntimeConfig, TrainState
from prunerep.methods import Budget, get_method
from prunerep.methods.base import MethodContext
from prunerep.methods.wgates import FilterWeights, WGate, efficiency_penalty, lambda_at
from prunerep.models import get_model
from prunerep.pruning.cost import count_cost
from prunerep.pruning.groups import find_groups
from prunerep.pruning.latency_model import LPNet, save_lpnet
from prunerep.pruning.soft_cost import SoftCostModel
from prunerep.runner import RunSpec, run_pruning

SHAPE = (1, 1, 8, 8)


def _gate(channels: int = 6, offset: float = 0.0, seed: int = 0) -> tuple[WGate, nn.Conv2d]:
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, channels, 3)
    return WGate(FilterWeights([conv]), hidden=4, offset_init=offset), conv


def test_gate_values_are_binary_from_the_standardised_scores_plus_the_offset():
    gate, conv = _gate(offset=0.0)
    with torch.no_grad():
        raw = gate.mlp(conv.weight.flatten(1) / conv.weight.std()).squeeze(1)
        z = (raw - raw.mean()) / raw.std()
    v = gate.values()
    assert set(v.tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(gate.scores().detach(), z)
    expected = (z > 0) | (torch.arange(6) == z.argmax())
    assert torch.equal(v.bool(), expected) and torch.equal(gate.hard_mask(), expected)
    assert 0 < int(v.sum()) < 6          # standardised scores: about half open at offset 0
    # a large negative offset closes everything but the best channel, which always stays open
    with torch.no_grad():
        gate.offset.fill_(-100.0)
    assert gate.values().tolist() == (torch.arange(6) == z.argmax()).float().tolist()


def test_gate_gradient_is_straight_through_to_the_scores():
    gate, _ = _gate(offset=0.3)
    a = torch.randn(6)
    (a * gate.values()).sum().backward()
    grads = {n: p.grad.clone() for n, p in gate.named_parameters()}
    gate.zero_grad()
    (a * gate.scores()).sum().backward()                      # d g / d s = 1 (identity STE)
    for n, p in gate.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, msg=n)
    assert grads["offset"].item() == pytest.approx(float(a.sum()), rel=1e-5)   # every channel's s moves with t


def test_frozen_gate_is_a_fixed_mask_without_gradient():
    gate, _ = _gate()
    mask = torch.tensor([True, False, True, False, False, False])
    gate.freeze_(mask)
    assert gate.values().tolist() == mask.float().tolist() and torch.equal(gate.hard_mask(), mask)
    assert not gate.values().requires_grad
    with pytest.raises(ValueError):
        gate.freeze_(torch.zeros(6, dtype=torch.bool))


def test_penalty_and_schedule_values():
    assert float(efficiency_penalty(torch.tensor(math.log(0.8)), 0.5, 2.0)) == pytest.approx(2 * math.log(0.8 / 0.5))
    assert float(efficiency_penalty(torch.tensor(math.log(0.4)), 0.5, 2.0)) == 0.0
    assert lambda_at(0, 10, 0.1, 10.0) == pytest.approx(0.1)
    assert lambda_at(5, 10, 0.1, 10.0) == pytest.approx(1.0)
    assert lambda_at(50, 10, 0.1, 10.0) == pytest.approx(10.0)


# ---------------------------------------------------------------- the method on a small network


def _net() -> nn.Module:
    torch.manual_seed(0)
    return get_model("resnet20", shortcut="A", num_classes=3, in_channels=1)


def _ctx(model: nn.Module, budget: Budget) -> MethodContext:
    x = torch.zeros(SHAPE)
    groups = find_groups(model, x)
    return MethodContext(groups=groups, prunable=list(groups), example_input=x, budget=budget,
                         cost_model=SoftCostModel.from_model(model, x, groups))


def _lpnet_file(tmp_path, model: nn.Module) -> tuple[str, str]:
    """An LPNet of this network's groups whose latency grows with every width (random weights
    would not: the output is set to a positive combination of the widths, in log space)."""
    groups = find_groups(model, torch.zeros(SHAPE))
    ids = groups.ids()
    torch.manual_seed(1)
    net = LPNet(len(ids), [1, 64], hidden=8, layers=1)
    with torch.no_grad():
        net.net[0].weight.copy_(torch.rand(8, len(ids)))
        net.net[0].bias.zero_()
        net.net[2].weight.copy_(torch.rand(2, 8) * 0.05)
    path = tmp_path / "lpnet.pt"
    digest = save_lpnet(net, path, {"group_ids": ids, "channels": [groups[g].channels for g in ids],
                                    "arch": model.arch_spec})
    return str(path), digest


def test_latency_loss_gradient_reaches_every_gate_generator_and_not_lpnet(tmp_path):
    model = _net()
    path, digest = _lpnet_file(tmp_path, model)
    method = get_method("wgates", lpnet=path, lpnet_digest=digest, lam_init=1.0, lam_max=1.0, offset_init=0.5)
    model = method.prepare(model, _ctx(model, Budget(latency_keep=0.3)))
    method.on_train_start(model, TrainState(steps_per_epoch=4, total_steps=8))
    loss = method.extra_loss(model, TrainState(step=0))
    assert loss is not None and float(loss.detach()) > 0     # the dense network is above 30% of its latency
    loss.backward()
    for gid, gate in method.gates.items():
        # Every channel of a group costs the same latency, so the term pushes all its scores alike:
        # the push lands on the group's offset (how many channels the group keeps, its learned
        # ratio) and, as the scores are standardised over the group, not on their ranking (which
        # filters): the MLP's share of it vanishes. The ranking is learned from the task loss.
        assert gate.offset.grad is not None and float(gate.offset.grad) > 0, gid   # towards fewer channels
        for name, p in gate.mlp.named_parameters():
            assert p.grad is not None and float(p.grad.abs().max()) < 1e-5 * float(gate.offset.grad), (gid, name)
    assert all(p.grad is None for p in method.lpnet.parameters())
    # the offsets' gradients are LPNet's sensitivities: d loss / d t_g = C_g * d log E / d w_g
    widths = {gid: torch.tensor(float(w), requires_grad=True) for gid, w in method.hard_widths().items()}
    method.log_ratio(widths).backward()
    for gid, gate in method.gates.items():
        assert float(gate.offset.grad) == pytest.approx(gate.channels * float(widths[gid].grad), rel=1e-4), gid
    # the value is the hinge of LPNet's relative prediction at the hard widths
    with torch.no_grad():
        log_ratio = float(method.log_ratio(method.hard_widths()))
    assert float(loss.detach()) == pytest.approx(max(0.0, log_ratio - math.log(0.3)), rel=1e-5)


def test_flops_mode_uses_the_exact_macs_of_the_hard_network():
    model = _net()
    method = get_method("wgates", lam_init=2.0, lam_max=2.0, offset_init=0.0)
    ctx = _ctx(model, Budget(macs_keep=0.25))
    model = method.prepare(model, ctx)
    method.on_train_start(model, TrainState(steps_per_epoch=4, total_steps=8))
    widths = method.hard_widths()
    exact = float(ctx.cost_model.macs(widths)) / ctx.cost_model.dense_macs()
    loss = method.extra_loss(model, TrainState(step=0))
    assert float(loss.detach()) == pytest.approx(2.0 * max(0.0, math.log(exact / 0.25)), rel=1e-6)
    assert method.hard_ratio() == pytest.approx(exact)


def test_freezing_meets_the_target_and_rounds_widths_to_multiples():
    model = _net()
    method = get_method("wgates", offset_init=3.0, round_to=8)
    ctx = _ctx(model, Budget(macs_keep=0.4))
    model = method.prepare(model, ctx)
    assert method.hard_ratio() > 0.9                       # all gates start open
    method.freeze(step=0)
    assert method.hard_ratio() <= 0.4 and method.forced > 0
    for gid, w in method.hard_widths().items():
        c = method.gates[gid].channels
        assert w % 8 == 0 or w == c, (gid, w)


def test_freezing_below_the_target_reopens_the_best_closed_channels_up_to_it():
    model = _net()
    method = get_method("wgates", offset_init=-100.0, min_keep=0.0)   # every gate closed but one per group
    ctx = _ctx(model, Budget(macs_keep=0.4))
    model = method.prepare(model, ctx)
    assert method.hard_ratio() < 0.1
    scores = {gid: gate.scores().detach() for gid, gate in method.gates.items()}
    method.freeze(step=0)
    ratio = method.hard_ratio()
    assert method.forced == 0 and method.reopened > 0 and 0.35 < ratio <= 0.4
    # one more channel in any group would exceed the target, and the kept channels are the best-scored
    widths = method.hard_widths()
    for gid in widths:
        if widths[gid] < method.gates[gid].channels:
            assert method.hard_ratio({**widths, gid: widths[gid] + 1}) > 0.4, gid
    for gid, gate in method.gates.items():
        kept = gate.hard_mask()
        if 0 < int(kept.sum()) < gate.channels:
            assert scores[gid][kept].min() >= scores[gid][~kept].max(), gid


def _splits(n_train: int = 48):
    from prunerep.data.arrays import ArrayDataset, DataSplits

    def ds(n: int, seed: int) -> ArrayDataset:
        g = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
        return ArrayDataset(images, torch.arange(n) % 3, ("a", "b", "c"))

    return DataSplits(ds(n_train, 0), ds(16, 1), ds(16, 2), (0.5,), (0.25,), "fp", "synthetic")


RUNTIME = RuntimeConfig(device="cpu", channels_last=False, progress=False)
SHORT = OptimConfig(epochs=1, batch_size=16, lr=0.01, max_steps=3)


def test_a_latency_run_meets_its_predicted_target_and_surgery_is_exact(tmp_path):
    dense = _net()
    path, digest = _lpnet_file(tmp_path, dense)
    spec = RunSpec(method="wgates", budget=Budget(latency_keep=0.5), runtime=RUNTIME, batch_size=16,
                   hyper={"train": {"epochs": 1, "batch_size": 16, "lr": 0.01, "max_steps": 4},
                          "lpnet": path, "lpnet_digest": digest, "lam_init": 5.0, "lam_max": 50.0},
                   finetune=SHORT, model="resnet20", label="wgates-latency")
    res = run_pruning(spec, dense, _splits())
    s = res.method_summary
    assert s["mode"] == "latency" and s["final_ratio"] <= 0.5
    assert s["exactness"]["max_abs_diff"] <= 1e-4
    assert res.macs == count_cost(res.model, SHAPE).macs < res.dense_macs
    assert s["widths"] == {gid: w for gid, w in res.widths.items() if gid in s["widths"]}


def test_a_latency_budget_without_lpnet_and_an_lpnet_of_another_network_are_refused(tmp_path):
    model = _net()
    with pytest.raises(ValueError, match="needs an LPNet"):
        get_method("wgates").prepare(model, _ctx(model, Budget(latency_keep=0.5)))
    for other in (get_model("resnet32", shortcut="A", num_classes=3, in_channels=1),    # other groups
                  get_model("resnet20", shortcut="B", num_classes=3, in_channels=1)):   # same groups, other net
        path, digest = _lpnet_file(tmp_path, other)
        model = _net()
        with pytest.raises(ValueError, match="another network"):
            get_method("wgates", lpnet=path, lpnet_digest=digest).prepare(model, _ctx(model, Budget(latency_keep=0.5)))


@pytest.mark.parametrize("on_target", [False, True])
def test_freeze_on_target_fixes_the_gates_at_the_first_step_the_target_is_met(on_target):
    model = _net()
    method = get_method("wgates", offset_init=-100.0, freeze_on_target=on_target)   # already below 0.4
    ctx = _ctx(model, Budget(macs_keep=0.4))
    model = method.prepare(model, ctx)
    method.on_train_start(model, TrainState(steps_per_epoch=10, total_steps=100))    # freeze_at: step 75
    method.after_step(model, TrainState(step=1))
    assert method.reached_step == 1
    if on_target:
        assert method.frozen_step == 1 and all(bool(g.frozen) for _, g in method.gates.items())
        assert method.reopened > 0 and 0.35 < method.hard_ratio() <= 0.4   # reopened up to the target
    else:
        assert method.frozen_step is None and not any(bool(g.frozen) for _, g in method.gates.items())


def test_the_floor_keeps_the_best_scored_channels_open_through_the_gate_and_the_freeze():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3)
    gate = WGate(FilterWeights([conv]), hidden=4, offset_init=-100.0, floor=3)
    best3 = torch.zeros(8, dtype=torch.bool)
    best3[torch.topk(gate.scores().detach(), 3).indices] = True
    assert torch.equal(gate.hard_mask(), best3)              # every score < 0: only the floor is open
    # the freeze closes channels above the floors to meet a target the floors allow ...
    model = _net()
    method = get_method("wgates", offset_init=3.0, min_keep=0.5)
    model = method.prepare(model, _ctx(model, Budget(macs_keep=0.4)))
    method.freeze(step=0)
    assert method.hard_ratio() <= 0.4 and method.floor_breaks == 0 and method.forced > 0
    for gid, gate in method.gates.items():
        assert gate.floor == math.ceil(0.5 * gate.channels)
        assert int(gate.hard_mask().sum()) >= gate.floor, gid
    # ... and when the floors alone cost more than the target, the budget wins over the floors
    model = _net()
    method = get_method("wgates", offset_init=3.0, min_keep=0.5)
    model = method.prepare(model, _ctx(model, Budget(macs_keep=0.1)))
    method.freeze(step=0)
    assert method.hard_ratio() <= 0.1 and method.floor_breaks > 0
    assert method.summary()["floor_breaks"] == method.floor_breaks


@pytest.mark.parametrize("pressure", ["cost", "relative"])
def test_relative_pressure_gives_every_offset_the_same_push_and_leaves_the_value(pressure):
    model = _net()
    method = get_method("wgates", lam_init=1.0, lam_max=1.0, offset_init=3.0, pressure=pressure)
    model = method.prepare(model, _ctx(model, Budget(macs_keep=0.3)))
    method.on_train_start(model, TrainState(steps_per_epoch=4, total_steps=8))
    loss = method.extra_loss(model, TrainState(step=0))
    loss.backward()
    pushes = torch.tensor([float(g.offset.grad) for _, g in method.gates.items()])
    # the value is the hinge at the hard widths either way
    assert float(loss.detach()) == pytest.approx(math.log(method.hard_ratio() / 0.3), rel=1e-5)
    # as it comes, each offset's push is its group's share C_g * d log MACs / d w_g: the residual
    # streams' (read by several convs) are the largest; with "relative", all equal their mean
    widths = {gid: torch.tensor(float(w), requires_grad=True) for gid, w in method.hard_widths().items()}
    method.log_ratio(widths).backward()
    shares = torch.tensor([g.channels * float(widths[gid].grad) for gid, g in method.gates.items()])
    if pressure == "cost":
        torch.testing.assert_close(pushes, shares.float(), rtol=1e-4, atol=1e-7)
        assert float(shares.max() / shares.min()) > 2
    else:
        torch.testing.assert_close(pushes, torch.full_like(pushes, float(shares.mean())), rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------- generator initialisation (ours)


def test_l1_init_makes_the_generator_rank_filters_by_l1_norm_and_touches_nothing_else():
    from prunerep.methods.wgates import fit_generator_to_l1
    from prunerep.pruning.latency_model import spearman

    torch.manual_seed(3)
    conv = nn.Conv2d(8, 16, 3)
    with torch.no_grad():   # filters of clearly different norms, as in a trained layer
        conv.weight.mul_(torch.linspace(0.2, 3.0, 16).view(16, 1, 1, 1)[torch.randperm(16)])
    gate = WGate(FilterWeights([conv]), hidden=16, offset_init=0.7)
    l1 = conv.weight.detach().abs().flatten(1).sum(1)
    before = spearman(gate.scores().detach(), l1)
    weight, offset = conv.weight.detach().clone(), float(gate.offset.detach())
    rho = fit_generator_to_l1(gate)
    after = spearman(gate.scores().detach(), l1)
    assert rho == pytest.approx(after) and after > 0.95 and after > before + 0.3
    # only the generator moved: no gradient reached the filters or the offset, and none is left over
    assert torch.equal(conv.weight.detach(), weight) and float(gate.offset.detach()) == offset
    assert conv.weight.grad is None and gate.offset.grad is None
    assert all(p.grad is None for p in gate.mlp.parameters())
    # at an offset that closes half of the gates, the open ones are the larger-L1 filters
    with torch.no_grad():
        gate.offset.zero_()
    open_l1 = l1[gate.hard_mask()]
    assert float(open_l1.min()) >= float(torch.quantile(l1, 0.25))


def test_generator_init_is_l1_by_default_recorded_and_random_on_request():
    model = _net()
    method = get_method("wgates", offset_init=3.0, generator_init="random")
    method.prepare(model, _ctx(model, Budget(macs_keep=0.5)))
    assert "init_fit" not in method.summary()
    model = _net()
    method = get_method("wgates", offset_init=3.0)
    method.prepare(model, _ctx(model, Budget(macs_keep=0.5)))
    fits = method.summary()["init_fit"]
    assert set(fits) == set(method.ids) and min(v for v in fits.values() if not math.isnan(v)) > 0.8
    from prunerep.methods.wgates import choices_of_ours
    assert "generators initialised to the L1 ranking, ours" in choices_of_ours({"generator_init": "l1"})
    with pytest.raises(ValueError, match="generator_init"):
        get_method("wgates", generator_init="l2")
