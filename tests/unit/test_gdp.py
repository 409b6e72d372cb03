"""GDP (Guo et al., ICCV 2021): gate, proximal step, polarization term, bilinear budget, schedule,
surgery without damage, whole-block removal, the sampling control and the params section."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from prunerep.config import from_dict, read_params, resolve_section
from prunerep.engine import RuntimeConfig, TrainState, fit
from prunerep.methods.base import Budget, MethodContext
from prunerep.methods.gdp import (
    GDP,
    GDPHyper,
    PolarizedGate,
    SampledGate,
    curve_roughness,
    eps_at,
    lambda_at,
    mm_prox,
    polarization,
    polarization_stats,
    relaxed_macs,
    smoothed_l0,
)
from prunerep.models import get_model
from prunerep.pruning.cost import count_cost
from prunerep.pruning.groups import find_groups
from prunerep.pruning.soft_cost import SoftCostModel
from prunerep.pruning.surgery import ConstantConv
from prunerep.studies.gdp import GDPConfig

torch.set_num_threads(1)

X16 = torch.zeros(1, 3, 16, 16)


class TinyResNet(nn.Module):
    """Stem, two residual blocks on one stream, a strided conv, classifier: seconds to train."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.blocks = nn.ModuleList()
        for _ in range(2):
            self.blocks.append(nn.ModuleDict({
                "conv1": nn.Conv2d(8, 6, 3, padding=1, bias=False), "bn1": nn.BatchNorm2d(6),
                "conv2": nn.Conv2d(6, 8, 3, padding=1, bias=False), "bn2": nn.BatchNorm2d(8)}))
        self.down = nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=False)
        self.bn_down = nn.BatchNorm2d(12)
        self.fc = nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        for b in self.blocks:
            y = torch.relu(b["bn1"](b["conv1"](x)))
            x = torch.relu(x + b["bn2"](b["conv2"](y)))
        x = torch.relu(self.bn_down(self.down(x)))
        return self.fc(x.mean((2, 3)))


class RandomBatches:
    """A fixed set of random batches (the shared loop's loader protocol)."""

    def __init__(self, n: int = 6, batch: int = 8, size: int = 16, classes: int = 4) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, batch, 3, size, size, generator=g)
        self.y = torch.randint(0, classes, (n, batch), generator=g)

    def __iter__(self):
        return iter(zip(self.x, self.y, strict=True))

    def __len__(self) -> int:
        return len(self.x)

    def set_epoch(self, epoch: int) -> None:
        pass


def randomize_bn_(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def prepared(model: nn.Module, x: torch.Tensor, macs_keep: float = 0.5, **kwargs) -> tuple[nn.Module, GDP, MethodContext]:
    method = GDP(**kwargs)
    groups = find_groups(model, x)
    ctx = MethodContext(groups=groups, prunable=list(groups.select(method.prunable)), example_input=x,
                        budget=Budget(macs_keep=macs_keep),
                        cost_model=SoftCostModel.from_model(model, x, groups))
    return method.prepare(model, ctx), method, ctx


# -- the gate ------------------------------------------------------------------------------------


def test_smoothed_l0_values_and_gradient_match_finite_differences():
    theta = torch.tensor([-0.5, -0.01, 0.0, 0.02, 0.1, 3.0], dtype=torch.float64, requires_grad=True)
    eps = 0.01
    g = smoothed_l0(theta, eps)
    expected = [0.25 / 0.26, 1e-4 / 0.0101, 0.0, 4e-4 / 0.0104, 0.5, 9 / 9.01]
    assert_close(g.detach(), torch.tensor(expected, dtype=torch.float64))
    assert float(g.detach().max()) < 1.0 and float(g.detach().min()) == 0.0
    assert torch.autograd.gradcheck(lambda t: smoothed_l0(t, eps), (theta,))
    # analytic derivative 2 theta eps / (theta^2 + eps)^2: zero at 0, maximal at sqrt(eps / 3)
    (grad,) = torch.autograd.grad(g.sum(), theta)
    assert_close(grad, 2 * theta.detach() * eps / (theta.detach() ** 2 + eps) ** 2)
    peak = math.sqrt(eps / 3)
    t = torch.tensor([peak * 0.9, peak, peak * 1.1], dtype=torch.float64, requires_grad=True)
    (gp,) = torch.autograd.grad(smoothed_l0(t, eps).sum(), t)
    assert gp[1] > gp[0] and gp[1] > gp[2]


def test_polarized_gate_init_value_alive_mask_and_exact_zeros():
    gate = PolarizedGate(5, eps=0.04, init_value=0.8)
    assert_close(gate.values().detach(), torch.full((5,), 0.8))
    gate.kill_(torch.tensor([1, 3]))
    v = gate.values()
    assert v[1].item() == 0.0 and v[3].item() == 0.0 and gate.theta[1].item() == 0.0
    assert gate.hard_mask().tolist() == [True, False, True, False, True]
    v.sum().backward()
    assert gate.theta.grad[3].item() == 0.0
    # momentum residue on a dead theta cannot revive it: the alive mask keeps it an exact zero
    with torch.no_grad():
        gate.theta[1] = 0.3
    assert gate.values()[1].item() == 0.0 and not gate.hard_mask()[1]


def test_mm_prox_is_a_descent_step_that_never_crosses_zero():
    eps = 0.01
    theta = torch.tensor([-0.4, -0.05, -1e-3, 1e-3, 0.02, 0.1, 0.3, 2.0], dtype=torch.float64)

    def objective(x, step):
        return 0.5 * (x - theta) ** 2 + step * smoothed_l0(x, eps)

    for step in (1e-4, 0.01, 1.0, 100.0):
        x = mm_prox(theta, step, eps)
        assert torch.all(torch.sign(x) == torch.sign(theta))            # stable: no overshoot
        assert torch.all(x.abs() <= theta.abs())                         # shrinks
        assert torch.all(objective(x, step) <= objective(theta, step) + 1e-15)  # MM: descent
    # far from zero, a small step equals the explicit gradient step to first order
    t = torch.tensor([0.5, 1.0], dtype=torch.float64)
    gprime = 2 * t * eps / (t * t + eps) ** 2
    assert_close(mm_prox(t, 1e-3, eps), t - 1e-3 * gprime, rtol=0, atol=1e-6)
    # near zero a large step shrinks geometrically instead of oscillating
    assert float(mm_prox(torch.tensor([1e-3]), 100.0, eps)) < 1e-6
    # a negative step pushes away from zero (polarization of gates above the mean)
    assert float(mm_prox(torch.tensor([0.2]), -0.01, eps)) > 0.2


# -- the polarization regulariser ----------------------------------------------------------------


def test_polarization_minimised_at_polarized_configurations():
    # Over the grid {0, 0.1, ..., 1}^4 the minimisers of R_t (0 < t < 1) are 0/1 vectors.
    grid = torch.tensor(list(itertools.product([i / 10 for i in range(11)], repeat=4)), dtype=torch.float64)
    for t in (0.3, 0.5, 0.8):
        r = polarization(grid, t)
        assert_close(r[123], polarization(grid[123], t))
        argbest = grid[r <= r.min() + 1e-12]
        assert len(argbest) and bool(((argbest == 0) | (argbest == 1)).all())
    # For a fixed mean (the budget fixes the total), the polarized vector beats any other.
    polar = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0])
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        v = torch.rand(5, generator=g)
        v = v / v.sum() * polar.sum()
        if float(v.max()) <= 1.0:
            assert float(polarization(polar)) <= float(polarization(v)) + 1e-7


def test_polarization_gradient_pushes_gates_away_from_the_mean():
    v = torch.tensor([0.1, 0.4, 0.6, 0.9], requires_grad=True)
    polarization(v).backward()
    assert v.grad[0] > 0 and v.grad[1] > 0    # below the mean: descent lowers them
    assert v.grad[2] < 0 and v.grad[3] < 0    # above: descent raises them


def test_polarization_stats_hand_computed():
    s = polarization_stats([0.0, 0.0, 0.005, 0.05, 0.3, 0.9, 0.95, 1.0 - 1e-6])
    assert s["zero"] == 0.25 and s["between_0_0.01"] == 0.125
    assert s["between_0_0.1"] == 0.25 and s["between_0_0.5"] == 0.375
    assert s["min_nonzero"] == pytest.approx(0.005)


# -- the bilinear budget -------------------------------------------------------------------------


def test_relaxed_macs_value_and_alternating_gradients():
    a = torch.tensor([[0.0, 2.0], [0.0, 0.0]], dtype=torch.float64)  # layer reading group 0, writing 1
    b = torch.tensor([3.0, 5.0], dtype=torch.float64)
    s = torch.tensor([4.0, 6.0], dtype=torch.float64, requires_grad=True)
    exact = 2 * 4 * 6 + 3 * 4 + 5 * 6 + 7
    for fix in ("input", "output", "none"):
        assert float(relaxed_macs(a, b, 7.0, s, fix).detach()) == exact
    (gi,) = torch.autograd.grad(relaxed_macs(a, b, 7.0, s, "input"), s)
    (go,) = torch.autograd.grad(relaxed_macs(a, b, 7.0, s, "output"), s)
    assert gi.tolist() == [3.0, 2 * 4 + 5.0]      # input width fixed: only the output factor moves
    assert go.tolist() == [2 * 6 + 3.0, 5.0]
    with pytest.raises(ValueError, match="fix must be"):
        relaxed_macs(a, b, 0.0, s, "both")


@pytest.mark.parametrize("fix", ["input", "output"])
def test_bilinear_budget_equals_exact_count_at_hard_gates(fix):
    x = torch.zeros(1, 3, 32, 32)
    model, method, ctx = prepared(randomize_bn_(get_model("resnet20")).eval(), x, macs_keep=1.0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for gid, gate in method.gates.items():
            gate.theta.fill_(1e4)  # g = 1 exactly in float32
            keep = torch.rand(gate.channels, generator=g) < 0.6
            keep[0] = True
            if gid == "layer2.1.conv1":
                keep[:] = False   # a whole block
            gate.kill_(torch.nonzero(~keep).flatten())
    a, b, c = method._form
    soft = float(relaxed_macs(a, b, c, method.soft_widths(), fix).detach())
    hard = method.hard_macs()
    model = method.finalize(model, ctx)
    exact = count_cost(model, example_input=x).macs
    assert soft == pytest.approx(exact, rel=1e-12) and hard == exact
    assert method.exactness["max_rel_diff"] < 1e-5


def test_budget_weights_are_the_gradient_of_the_relaxed_cost():
    # Linear in the soft widths at fixed other factor: w = N d(F_relaxed / F_dense) / ds, N gates.
    _, method, _ = prepared(TinyResNet(), X16)
    assert method.n_gates == 8 + 6 + 6 + 12
    a, b, c = method._form
    s = method.soft_widths().detach().requires_grad_(True)
    for fix in ("input", "output"):
        (grad,) = torch.autograd.grad(relaxed_macs(a, b, c, s, fix), s)
        assert_close(method.budget_weights(fix), grad / method.dense_macs * method.n_gates)
        # and the relaxed term is linear in s: w @ s + c (scaled) reproduces its value
        w = method.budget_weights(fix)
        assert_close(float(w @ s.detach() + c / method.dense_macs * method.n_gates),
                     float(relaxed_macs(a, b, c, s.detach(), fix)) / method.dense_macs * method.n_gates)


# -- the schedule --------------------------------------------------------------------------------


def test_lambda_and_eps_schedules():
    assert lambda_at(0, 100, 0.01, 100.0) == pytest.approx(0.01)
    assert lambda_at(50, 100, 0.01, 100.0) == pytest.approx(1.0)   # geometric midpoint
    assert lambda_at(100, 100, 0.01, 100.0) == pytest.approx(100.0)
    assert lambda_at(500, 100, 0.01, 100.0) == pytest.approx(100.0)  # held after the ramp
    assert all(lambda_at(s, 10, 0.1, 10.0) < lambda_at(s + 1, 10, 0.1, 10.0) for s in range(10))
    with pytest.raises(ValueError):
        lambda_at(0, 10, 1.0, 0.5)
    assert eps_at(7, 10, 0.01, None) == 0.01
    assert eps_at(5, 10, 1e-2, 1e-4) == pytest.approx(1e-3)


def test_schedule_reaches_the_target_and_surgery_is_exact():
    torch.manual_seed(0)
    model, method, ctx = prepared(TinyResNet(), X16, macs_keep=0.5,
                                  train={"epochs": 4, "lr": 0.05, "batch_size": 8}, lam_init=1.0,
                                  lam_max=1e3, ramp_epochs=2.0, n_snapshots=3)
    res = fit(model, RandomBatches(), optim=method.phases()[0][1], hooks=[method],
              runtime=RuntimeConfig(channels_last=False, progress=False))
    assert method.reached and method.reached_step is not None
    target = 0.5 * method.dense_macs
    assert method.hard_macs() <= target
    # the prox step stops at the target: it undershoots by less than the dearest single channel
    cm = method.ctx.cost_model
    dearest = max(float(cm.macs({})) - float(cm.macs({gid: cm.dense_widths[gid] - 1})) for gid in method.ids)
    assert method.hard_macs() > target - dearest
    assert res.history[-1]["gdp_reached"] == 1.0
    assert [t["step"] for t in method.trace] == list(range(1, 25))
    assert method.snapshots[0]["step"] == 0 and len(method.snapshots) >= 3
    model.eval()
    with torch.no_grad():
        probe = torch.randn(4, 3, 16, 16)
        before = model(probe)
    pruned = method.finalize(model, ctx)
    with torch.no_grad():
        after = pruned(probe)
    assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert count_cost(pruned, example_input=X16).macs == method.hard_macs() <= target
    assert method.exactness["argmax_agree"] == 1.0
    summary = method.summary()
    assert summary["reached"] and summary["final_stats"]["zero"] > 0


def test_after_target_stop_ends_the_phase():
    model, method, _ = prepared(TinyResNet(), X16, macs_keep=0.7,
                                  train={"epochs": 20, "lr": 0.05, "batch_size": 8}, lam_init=10.0,
                                  lam_max=1e4, ramp_epochs=1.0, after_target="stop")
    res = fit(model, RandomBatches(), optim=method.phases()[0][1], hooks=[method],
              runtime=RuntimeConfig(channels_last=False, progress=False))
    assert res.stopped_early and method.reached and res.steps < 20 * 6


def test_unreached_target_is_forced_and_reported():
    model, method, ctx = prepared(TinyResNet(), X16, macs_keep=0.4)
    method.on_train_start(model, TrainState(steps_per_epoch=5, total_steps=5))
    pruned = method.finalize(model, ctx)   # no training at all
    assert method.forced > 0 and method.reached
    assert count_cost(pruned, example_input=X16).macs <= 0.4 * method.dense_macs


# -- surgery -------------------------------------------------------------------------------------


def test_whole_block_removed_when_its_inner_gates_are_zero():
    x = torch.zeros(1, 3, 32, 32)
    # budget 1.0: finalize must not remove anything beyond the zero gates
    model, method, ctx = prepared(randomize_bn_(get_model("resnet20")).eval(), x, macs_keep=1.0)
    gate = method.gates["layer1.1.conv1"]
    gate.kill_(torch.arange(gate.channels))
    assert "layer1.1.conv1" in method.removable
    probe = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        before = model(probe)
    pruned = method.finalize(model, ctx)
    with torch.no_grad():
        after = pruned(probe)
    assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert method.forced == 0
    assert isinstance(pruned.get_submodule("layer1.1.conv2"), ConstantConv)
    assert isinstance(pruned.get_submodule("layer1.1.conv1"), ConstantConv)
    counted = {layer.name for layer in count_cost(pruned, example_input=x).layers}
    assert "layer1.1.conv1" not in counted and "layer1.1.conv2" not in counted


def test_kill_keeps_the_last_channel_of_groups_that_cannot_be_emptied():
    model, method, ctx = prepared(TinyResNet(), X16, macs_keep=1e-9)
    stream = "conv1"  # the residual stream: never removable entirely
    assert stream not in method.removable and "blocks.0.conv1" in method.removable
    order = [(0.0, gid, ch) for gid, gate in method.gates.items() for ch in range(gate.channels)]
    method._kill(order)
    widths = method.hard_widths()
    assert widths[stream] == 1 and widths["down"] == 1
    assert widths["blocks.0.conv1"] == 0 and widths["blocks.1.conv1"] == 0
    pruned = method.finalize(model, ctx)
    assert count_cost(pruned, example_input=X16).macs == method.hard_macs()


# -- the sampling control ------------------------------------------------------------------------


def test_sampled_gate_samples_in_training_and_is_its_alive_mask_in_eval():
    torch.manual_seed(0)
    gate = SampledGate(400, init=0.3)
    gate.kill_(torch.arange(100))
    v = gate.values()
    sample = v.detach()
    assert set(sample.unique().tolist()) <= {0.0, 1.0} and float(sample[:100].sum()) == 0.0
    assert 50 < float(sample.sum()) < 130
    v.sum().backward()
    p = torch.sigmoid(gate.logit.detach())
    assert_close(gate.logit.grad[100:], p[100:] * (1 - p[100:]))  # straight-through to p
    gate.eval()
    assert torch.equal(gate.values(), gate.alive.float()) and gate.hard_mask().sum() == 300
    assert_close(gate.expected_keep(), p[100:].sum())


def test_sampling_control_trains_with_the_same_budget_freezes_at_target_and_prunes_exactly():
    torch.manual_seed(0)
    model, method, ctx = prepared(TinyResNet(), X16, macs_keep=0.6, gate="sampling",
                                  train={"epochs": 3, "lr": 0.05, "batch_size": 8}, lam_init=1.0,
                                  lam_max=100.0, ramp_epochs=1.0)
    fit(model, RandomBatches(), optim=method.phases()[0][1], hooks=[method],
        runtime=RuntimeConfig(channels_last=False, progress=False))
    assert all(t["lam"] > 0 for t in method.trace[:3])
    # met during training: from then on the gates train their alive channels deterministically
    assert method.reached and all(bool(gate.frozen) for _, gate in method._gate_items())
    pruned = method.finalize(model, ctx)
    assert method.exactness["max_rel_diff"] < 1e-5
    assert count_cost(pruned, example_input=X16).macs <= 0.6 * method.dense_macs


def test_sampled_gate_is_deterministic_in_training_once_frozen():
    torch.manual_seed(0)
    gate = SampledGate(50, init=0.3)
    gate.kill_(torch.arange(10))
    gate.frozen.fill_(True)
    assert torch.equal(gate.values().detach(), gate.alive.float())  # training mode, no sampling


def test_sampling_control_loss_is_the_budget_plus_gdp_polarization_term_on_p():
    model, method, _ = prepared(TinyResNet(), X16, gate="sampling", polarization=2.0, lam_init=0.5, lam_max=0.5)
    method.on_train_start(model, TrainState(steps_per_epoch=4, total_steps=8))
    state = TrainState(steps_per_epoch=4, total_steps=8)
    state.phase = "weights"
    a, b, c = method._form
    with torch.no_grad():
        for _, gate in method._gate_items():  # distinct probabilities: the polarization term is not 0
            gate.logit.copy_(torch.linspace(-2, 2, gate.channels))
    loss = method.extra_loss(None, state)
    p = torch.cat([gate.probs() for _, gate in method._gate_items()]).detach()
    macs = relaxed_macs(a, b, c, method.soft_widths().detach(), "none") / method.dense_macs
    expected = 0.5 * method.n_gates * (macs + 2.0 * polarization(p.double()))
    assert_close(loss.double(), expected.float().double(), rtol=1e-5, atol=1e-6)


# -- hooks' state, config, experiment specs ------------------------------------------------------


def test_state_dict_round_trip():
    _, method, _ = prepared(TinyResNet(), X16)
    method.reached, method.reached_step, method.lam_at_target = True, 7, 3.5
    method.trace = [{"step": 1, "loss": 2.0}]
    method.kill_events = [{"step": 3, "channels": 2, "max_killed_value": 5e-4, "max_abs_logit_change": 1e-6,
                           "max_rel_logit_change": 1e-7}]
    other = GDP()
    other.load_state_dict(method.state_dict())
    assert (other.reached, other.reached_step, other.lam_at_target, other.trace) == (True, 7, 3.5, method.trace)
    assert other.kill_events == method.kill_events and other.kill_effect()["events"] == 1


def _eval_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        out = model(x)
    model.train()
    return out


@pytest.mark.parametrize("gate", ["polarized", "sampling"])
def test_each_threshold_kill_is_measured_on_the_fixed_training_batch(gate):
    torch.manual_seed(0)
    model, method, _ = prepared(randomize_bn_(TinyResNet()), X16, macs_keep=0.3, gate=gate, probe_images=4)
    method.on_train_start(model, TrainState(steps_per_epoch=6, total_steps=6))
    batches = RandomBatches(batch=8)
    first = batches.x[0]
    model(first)                                   # the loop's first training forward
    model(batches.x[1])                            # later batches do not replace it
    assert torch.equal(method._kill_batch, first[:4])
    gid = method.ids[1]
    with torch.no_grad():   # two channels of one group fall below the kill threshold
        if gate == "polarized":
            method.gates[gid].theta[:2] = 0.2 * math.sqrt(method.hp.eps * method.hp.zero_threshold)
        else:
            method.gates[gid].logit[:2] = -5.0
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    before = _eval_logits(model, first[:4])
    killed_values = method.gates[gid].score()[:2].detach()
    method._kill_below_threshold(model, step=1)
    after = _eval_logits(model, first[:4])
    assert method.gates[gid].hard_mask()[:2].tolist() == [False, False]
    (event,) = method.kill_events
    assert event["step"] == 1 and event["channels"] == event["gated_channels"] == 2
    assert event["copied_channels"] == 0 and math.isnan(event["copied_logit_change"])  # no option-A copy here
    assert event["gated_logit_change"] == event["max_abs_logit_change"]
    assert event["max_killed_value"] == pytest.approx(float(killed_values.max()))
    assert event["max_abs_logit_change"] == pytest.approx(float((after - before).abs().max()), rel=1e-6, abs=1e-9)
    assert event["max_rel_logit_change"] == pytest.approx(event["max_abs_logit_change"] / float(before.abs().max()))
    assert model.training                          # the probe restores training mode ...
    for k, v in model.state_dict().items():        # ... and never moves BN's running statistics
        if k in stats:
            assert torch.equal(v, stats[k])
    if gate == "polarized":
        # a gate at 4% of the threshold scales its channel by < 1e-4: the kill barely moves the logits
        assert 0 < event["max_abs_logit_change"] < 1e-3 * float(before.abs().max())
    else:
        # the control's eval network used the channel at full weight: its kill is a real cut
        assert event["max_abs_logit_change"] > 1e-3 * float(before.abs().max())
    assert method.summary()["kill_effect"]["channels"] == 2


def test_a_kill_is_continuous_through_gates_and_a_cut_through_option_a_copies():
    # A stream channel at g ~ 4e-5 is scaled by g at every conv reader, but an option-A shortcut
    # copies it at full weight until g is exactly 0 (the 0/1 keep pattern that keeps surgery exact).
    torch.manual_seed(0)
    model = randomize_bn_(get_model("resnet20", shortcut="A"))
    model, method, _ = prepared(model, X16, macs_keep=0.3, probe_images=4)
    method.on_train_start(model, TrainState(steps_per_epoch=6, total_steps=6))
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    model(x)
    copied = sorted(method._copied)
    plain = [gid for gid in method.ids if gid not in method._copied and method.gates[gid].channels > 2]
    assert copied and plain
    tiny = 0.2 * math.sqrt(method.hp.eps * method.hp.zero_threshold)
    with torch.no_grad():
        for gid in (copied[0], plain[0]):
            method.gates[gid].theta[:2] = tiny
    scale = float(_eval_logits(model, x).abs().max())
    method._kill_below_threshold(model, step=1)
    (event,) = method.kill_events
    assert event["gated_channels"] == 2 and event["copied_channels"] == 2
    assert event["gated_logit_change"] < 1e-3 * scale
    assert event["copied_logit_change"] > 1e-2 * scale
    assert event["max_abs_logit_change"] >= event["copied_logit_change"] - event["gated_logit_change"] - 1e-6
    effect = method.kill_effect()
    assert effect["copied_channels"] == 2 and effect["copied_logit_change"] == event["copied_logit_change"]


def test_kills_during_training_are_all_measured_and_forced_removals_are_not():
    torch.manual_seed(0)
    model, method, ctx = prepared(TinyResNet(), X16, macs_keep=0.5,
                                  train={"epochs": 4, "lr": 0.05, "batch_size": 8}, lam_init=1.0,
                                  lam_max=1e3, ramp_epochs=2.0, n_snapshots=3)
    fit(model, RandomBatches(), optim=method.phases()[0][1], hooks=[method],
        runtime=RuntimeConfig(channels_last=False, progress=False))
    method.finalize(model, ctx)
    killed = sum(gate.channels - int(gate.hard_mask().sum()) for _, gate in method.gates.items())
    effect = method.summary()["kill_effect"]
    assert effect["channels"] == killed - method.forced > 0
    assert effect["max_killed_value"] < method.hp.zero_threshold
    assert all(e["step"] <= method.reached_step for e in method.kill_events)


def test_params_section_resolves_for_every_profile_and_rejects_bad_values():
    params = read_params("params.yaml")
    for profile in ("smoke", "default", "paper"):
        cfg = resolve_section("gdp", params, profile=profile)
        assert isinstance(cfg, GDPConfig) and cfg.models and cfg.budgets
    with pytest.raises(ValueError, match="budgets"):
        from_dict(GDPConfig, {"budgets": {"resnet56": [1.5]}})
    with pytest.raises(ValueError, match="controls.budgets"):
        from_dict(GDPConfig, {"controls": {"budgets": [0.0]}})
    with pytest.raises(ValueError, match="budgets.vgg16: missing"):
        from_dict(GDPConfig, {"models": ["resnet56", "vgg16"]})
    with pytest.raises(ValueError, match="lam_init"):
        from_dict(GDPHyper, {"lam_init": 0.0})
    with pytest.raises(ValueError, match="unknown key"):
        from_dict(GDPHyper, {"lamda": 1.0})
    _, _, ctx = prepared(TinyResNet(), X16)
    with pytest.raises(ValueError, match="macs_keep"):
        GDP().prepare(TinyResNet(), dataclasses.replace(ctx, budget=Budget(ratios={"conv1": 0.5})))


def test_curve_roughness_measures_step_noise_not_trend():
    steps = torch.arange(2000, dtype=torch.float64)
    trend = 2.0 * torch.exp(-steps / 300)
    assert curve_roughness(trend.tolist()) < 1e-4
    noisy = trend + 0.1 * torch.randn(2000, dtype=torch.float64)
    assert curve_roughness(noisy.tolist()) == pytest.approx(0.1, rel=0.1)  # the noise's std
    assert math.isnan(curve_roughness([1.0, 2.0]))
