"""Gate variants share one interface; placement by hooks leaves the model's names/keys alone."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from prunerep.models import get_model
from prunerep.pruning.gates import (
    ChannelGate,
    GateSet,
    HardMask,
    SmoothedL0,
    SoftGate,
    STEBinaryGate,
    StochasticMask,
    TemperedSigmoid,
    WeightDependentGate,
    attach_gates,
    clamp01,
    gate_state,
)
from prunerep.pruning.groups import find_groups, internal

torch.set_num_threads(1)

X = torch.randn(2, 3, 32, 32)


def _all_variants(c: int) -> list[ChannelGate]:
    conv = nn.Conv2d(3, c, 3)
    return [
        SoftGate(c),
        SoftGate(c, fn=SmoothedL0(1e-2), init=0.5),
        SoftGate(c, fn=TemperedSigmoid(2.0), init=1.0, threshold=0.5),
        HardMask(torch.arange(c) % 2 == 0),
        STEBinaryGate(c),
        StochasticMask(c),
        WeightDependentGate(lambda: conv.weight),
    ]


@pytest.mark.parametrize("gate", _all_variants(6), ids=lambda g: type(g).__name__)
def test_common_interface(gate):
    assert gate.values().shape == (6,)
    assert gate.hard_mask().dtype == torch.bool and gate.hard_mask().shape == (6,)
    assert gate.expected_keep().shape == ()
    assert gate.regularizer().shape == () and float(gate.regularizer()) == 0.0
    gate.eval()
    for x in (torch.randn(4, 6), torch.randn(4, 6, 5, 5), torch.randn(4, 6, 3)):
        assert_close(gate(x), x * gate.values().view(1, 6, *([1] * (x.dim() - 2))))
    with pytest.raises(ValueError, match="cannot multiply dim 1"):
        gate(torch.randn(4, 5, 3, 3))


def test_soft_gate_maps_and_exact_zeros():
    theta = torch.tensor([-1.0, 0.0, 0.3, 2.0])
    g = SoftGate(4, fn=clamp01, init=theta)
    assert g.values().tolist() == [0.0, 0.0, pytest.approx(0.3), 1.0]
    assert g.hard_mask().tolist() == [False, False, True, True]
    l0 = SoftGate(4, fn=SmoothedL0(0.01), init=theta)
    values = l0.values().detach()
    assert float(values[1]) == 0.0 and 0.99 < float(values[3]) < 1.0
    assert l0.hard_mask().tolist() == [True, False, True, True]
    l0.expected_keep().backward()
    assert l0.theta.grad is not None and torch.isfinite(l0.theta.grad).all()
    # the map's buffers are part of the gate's state (schedules change them, checkpoints keep them)
    assert "fn.eps" in l0.state_dict()
    ts = SoftGate(4, fn=TemperedSigmoid(1.0), init=theta, threshold=0.5)
    ts.fn.temperature.fill_(0.01)  # annealed: nearly binary
    assert ts.hard_mask().tolist() == [False, False, True, True]


def test_ste_binary_gate_straight_through():
    g = STEBinaryGate(3, init=torch.tensor([-0.5, 0.2, 1.0]))
    v = g.values()
    assert v.tolist() == [0.0, 1.0, 1.0]
    (v * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert g.score.grad.tolist() == [1.0, 2.0, 3.0]


def test_stochastic_mask_samples_once_per_forward_and_is_deterministic_in_eval():
    torch.manual_seed(0)
    g = StochasticMask(1000, init=0.3)
    v = g.values()
    assert set(v.unique().tolist()) <= {0.0, 1.0} and 200 < int(v.sum()) < 400
    v.sum().backward()
    p = torch.sigmoid(g.logit.detach())
    assert_close(g.logit.grad, p * (1 - p))  # straight-through to p, chained through sigmoid
    g.eval()
    assert torch.equal(g.values(), g.values()) and int(g.values().sum()) == 0  # p = 0.3 < 0.5
    topk = StochasticMask(4, prob_fn=lambda: torch.tensor([0.9, 0.2, 0.6, 0.35]), eval_rule="topk")
    topk.eval()
    assert topk.hard_mask().tolist() == [True, False, True, False]  # k = round(2.05) = 2
    assert_close(topk.expected_keep(), torch.tensor(2.05))


def test_weight_dependent_gate_reads_current_weights():
    conv = nn.Conv2d(3, 5, 3)
    g = WeightDependentGate(lambda: conv.weight, hidden=4)
    assert g.hard_mask().all()  # starts open
    g.values().sum().backward()
    assert conv.weight.grad is not None and g.mlp[0].weight.grad is not None
    with torch.no_grad():
        g.mlp[2].bias.fill_(-100.0)
    assert not g.hard_mask().any()
    assert "weight_fn" not in dict(g.named_parameters()) and len(list(g.parameters())) == 4


def test_attach_keeps_names_and_state_dict_keys():
    model = get_model("resnet20").eval()
    keys = list(model.state_dict())
    names = [n for n, _ in model.named_modules()]
    groups = find_groups(model, X[:1])
    with torch.no_grad():
        reference = model(X)
    gates = attach_gates(model, groups, lambda g: SoftGate(g.channels))  # all ones
    assert model.gates is gates and isinstance(gates, GateSet)
    assert not gates.training and not gates["conv1"].training  # follows the (eval) model
    new_keys = list(model.state_dict())
    assert new_keys[: len(keys)] == keys and all(
        k.startswith("gates.") for k in new_keys[len(keys) :]
    )
    assert [n for n, _ in model.named_modules()][: len(names)] == names
    params = {id(p) for p in model.parameters()}
    assert all(id(p) in params for p in gates.parameters())
    assert gates["layer1.0.conv1"].channels == 16 and "layer1.0.conv1" in gates
    with torch.no_grad():
        assert_close(model(X), reference)  # all-ones gates change nothing
    model.double()
    assert gates["conv1"].theta.dtype == torch.float64  # moves with the model
    model.float()
    gates.remove()
    assert not hasattr(model, "gates") and list(model.state_dict()) == keys
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    with pytest.raises(ValueError, match="already has an attribute 'conv1'"):
        attach_gates(model, groups, lambda g: SoftGate(g.channels), attr="conv1")


@pytest.mark.parametrize("placement", ["input", "output"])
def test_one_gate_value_per_forward_shared_by_all_positions(placement):
    model = get_model("resnet20").train()
    groups = find_groups(model, X[:1])
    gates = attach_gates(
        model,
        [groups["conv1"]],
        lambda g: StochasticMask(g.channels, init=0.5),
        placement=placement,
    )
    calls = []
    gate = gates["conv1"]
    original = gate.values
    gate.values = lambda: calls.append(1) or original()
    seen = []
    positions = groups["conv1"].readers if placement == "input" else groups["conv1"].output_taps
    for name in positions:
        if placement == "input":
            model.get_submodule(name).register_forward_pre_hook(
                lambda m, a: seen.append(a[0][:, :].abs().sum((0, 2, 3)) == 0)
            )
        else:
            model.get_submodule(name).register_forward_hook(
                lambda m, a, o: seen.append(o.abs().sum((0, 2, 3)) == 0)
            )
    model(X)
    assert len(calls) == 1
    assert all(torch.equal(s, seen[0]) for s in seen) and seen[0].any()


def test_option_a_copy_follows_the_keep_pattern():
    """Input gates: the ChannelSelect copy is multiplied by 1[g != 0], never by g."""
    model = get_model("resnet20").eval()
    groups = find_groups(model, X[:1])
    theta = torch.linspace(-0.2, 0.6, 16)
    attach_gates(model, [groups["conv1"]], lambda g: SoftGate(g.channels, init=theta))
    got = {}
    model.layer2[0].shortcut.register_forward_pre_hook(lambda m, a: got.setdefault("x", a[0]))
    model.layer2[0].conv1.register_forward_pre_hook(lambda m, a: got.setdefault("conv", a[0]))
    with torch.no_grad():
        model(X)
    with model.gates.disabled(), torch.no_grad():
        plain = {}
        h = model.layer2[0].shortcut.register_forward_pre_hook(
            lambda m, a: plain.setdefault("x", a[0])
        )
        model(X)
        h.remove()
    keep = (theta.clamp(0, 1) != 0).float().view(1, -1, 1, 1)
    assert_close(got["x"], plain["x"] * keep)
    assert_close(got["conv"], plain["x"] * theta.clamp(0, 1).view(1, -1, 1, 1))


def test_deepcopy_of_a_gated_model_uses_its_own_gates():
    model = get_model("resnet20").eval()
    groups = find_groups(model, X[:1])
    attach_gates(model, groups.select(internal), lambda g: SoftGate(g.channels))
    twin = copy.deepcopy(model)
    with torch.no_grad():
        before = model(X)
        twin.gates["layer1.0.conv1"].theta.zero_()
        assert_close(model(X), before)
        assert not torch.allclose(twin(X), before)
    twin.gates.remove()
    assert hasattr(model, "gates") and not hasattr(twin, "gates")


def test_gate_state_is_eval_mode_and_detached():
    model = get_model("resnet20").train()
    groups = find_groups(model, X[:1])
    gates = attach_gates(
        model, groups.select(internal), lambda g: StochasticMask(g.channels, init=0.7)
    )
    values, keep = gate_state(gates)
    assert all(v.sum() == v.numel() for v in values.values())  # p = 0.7 > 0.5: all kept
    assert all(k.all() for k in keep.values()) and gates["layer1.0.conv1"].training
    assert set(gates.expected_keep()) == {g.id for g in groups.select(internal)}


def test_wrong_gate_size_is_refused():
    model = get_model("resnet20")
    groups = find_groups(model, X[:1])
    with pytest.raises(ValueError, match="'layer1.0.conv1' has 8 channels, the group has 16"):
        attach_gates(model, [groups["layer1.0.conv1"]], lambda g: SoftGate(8))
    with pytest.raises(ValueError, match="placement"):
        attach_gates(model, [groups["layer1.0.conv1"]], lambda g: SoftGate(16), placement="middle")


def test_gate_shape_error_names_the_group_and_the_module():
    """Groups of one model attached to a model of other widths fail with a message that says
    which gate and which module, not just two shapes."""
    groups = find_groups(get_model("resnet20"), X)
    other = get_model("resnet20")
    other.conv1 = nn.Conv2d(3, 24, 3, padding=1, bias=False)  # the stem now writes 24 channels
    other.bn1 = nn.BatchNorm2d(24)
    attach_gates(other, [groups["conv1"]], lambda g: SoftGate(g.channels), placement="output")
    with pytest.raises(
        ValueError,
        match=r"gate of 16 channels \(channel group 'conv1', output of 'bn1'\) cannot multiply "
        r"dim 1 of an input of shape \(2, 24, 32, 32\)",
    ):
        other(X)
