"""The differentiable cost equals count_cost of the physically pruned network at hard widths."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunerep.models import get_model
from prunerep.pruning.cost import count_cost
from prunerep.pruning.gates import SoftGate, attach_gates
from prunerep.pruning.groups import find_groups
from prunerep.pruning.soft_cost import SoftCostModel
from prunerep.pruning.surgery import effective_keep, prune_channels

torch.set_num_threads(1)


class FlattenNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.BatchNorm2d(8)
        self.fc1, self.fc2 = nn.Linear(32, 6), nn.Linear(6, 3)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


MODELS = [
    pytest.param(lambda: get_model("resnet20", shortcut="A"), (1, 3, 32, 32), id="resnet20-A"),
    pytest.param(lambda: get_model("resnet56", shortcut="B"), (1, 3, 32, 32), id="resnet56-B"),
    pytest.param(lambda: get_model("vgg16_bn"), (1, 3, 32, 32), id="vgg16"),
    pytest.param(lambda: get_model("mobilenetv2"), (1, 3, 32, 32), id="mobilenetv2"),
    pytest.param(lambda: get_model("tv_resnet18"), (1, 3, 64, 64), id="tv_resnet18"),
    pytest.param(FlattenNet, (1, 3, 8, 8), id="flatten-linear"),
]


@pytest.mark.parametrize(("make", "shape"), MODELS)
def test_equals_count_cost_at_hard_widths(make, shape):
    x = torch.randn(shape)
    base = make().eval()
    groups = find_groups(base, x)
    soft = SoftCostModel.from_model(base, x, groups)
    dense = count_cost(base, example_input=x)
    assert (soft.dense_macs(), soft.dense_params()) == (dense.macs, dense.params)
    for trial in range(3):
        model = copy.deepcopy(base)
        g = find_groups(model, x)
        keep = {grp.id: torch.rand(grp.channels) < 0.3 + 0.2 * trial for grp in g}
        for mask in keep.values():
            mask[0] = True
        for grp in g.select(lambda grp: not grp.residual)[:1]:
            try:  # remove one whole residual branch where the model allows it
                effective_keep(g, {**keep, grp.id: torch.zeros(grp.channels, dtype=torch.bool)})
                keep[grp.id][:] = False
            except ValueError:
                pass
        widths = {gid: torch.tensor(float(m.sum())) for gid, m in effective_keep(g, keep).items()}
        prune_channels(model, g, keep)
        cost = count_cost(model, example_input=x)
        assert round(float(soft.macs(widths))) == cost.macs
        assert round(float(soft.params(widths))) == cost.params


def test_resnet56_dense_cost_is_the_published_one():
    x = torch.zeros(1, 3, 32, 32)
    model = get_model("resnet56")
    soft = SoftCostModel.from_model(model, x, find_groups(model, x))
    assert soft.dense_macs() == count_cost(model).macs
    assert round(soft.dense_macs() / 1e4) / 100 == 125.49  # He et al.: 125.49M MACs


@pytest.mark.parametrize(("make", "shape"), MODELS[:4] + MODELS[5:])
def test_gradients_match_finite_differences(make, shape):
    x = torch.randn(shape)
    model = make().eval()
    groups = find_groups(model, x)
    soft = SoftCostModel.from_model(model, x, groups)
    ids = soft.group_ids
    dense = torch.tensor([float(soft.dense_widths[g]) for g in ids], dtype=torch.float64)
    w0 = (dense * (0.3 + 0.6 * torch.rand(len(ids), dtype=torch.float64))).requires_grad_(True)

    def macs(w):
        return soft.macs(dict(zip(ids, w.unbind(), strict=True)))

    def params(w):
        return soft.params(dict(zip(ids, w.unbind(), strict=True)))

    assert torch.autograd.gradcheck(macs, (w0,), eps=1e-3, atol=1e-4, rtol=1e-6)
    assert torch.autograd.gradcheck(params, (w0,), eps=1e-3, atol=1e-4, rtol=1e-6)


def test_bilinear_form_and_depthwise_linearity():
    x = torch.randn(1, 3, 32, 32)
    model = get_model("mobilenetv2")
    groups = find_groups(model, x)
    soft = SoftCostModel.from_model(model, x, groups)
    a, b, c = soft.bilinear()
    n = len(soft.group_ids)
    assert a.shape == (n, n) and b.shape == (n,)
    w = torch.rand(n, dtype=torch.float64) * 50
    assert torch.allclose(
        w @ a @ w + b @ w + c, soft.macs(dict(zip(soft.group_ids, w, strict=True)))
    )
    hidden = soft.group_ids.index("features.2.expand.conv")  # carried by a depthwise conv
    assert a[hidden, hidden] == 0  # MACs are linear in the width of a depthwise-carried group
    # the depthwise conv's own MACs: 9 * width * 32 * 32, part of the linear coefficient
    assert b[hidden] >= 9 * 32 * 32


def test_widths_from_gates_are_differentiable():
    x = torch.randn(1, 3, 32, 32)
    model = get_model("resnet20")
    groups = find_groups(model, x)
    soft = SoftCostModel.from_model(model, x, groups)
    gates = attach_gates(model, groups, lambda g: SoftGate(g.channels, init=0.5))
    budget = soft.macs(gates.expected_keep()) / soft.dense_macs()
    budget.backward()
    assert budget.dtype == torch.float64 and 0.2 < float(budget.detach()) < 0.3  # about 0.5 * 0.5
    assert all(gate.theta.grad is not None for _, gate in gates.items())
    with pytest.raises(KeyError, match="unknown channel group"):
        soft.macs({"nope": torch.tensor(1.0)})
