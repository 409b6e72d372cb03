"""Property: the soft cost equals the exact count of the physically pruned network.

For every model family the engine accepts (the project's CIFAR zoo, torchvision classifiers with
residual streams, squeeze-excitation, depthwise convs and dense concatenations, and small
concat / split toys) and random integer widths (several seeds, residual branches removed where
the model allows it), ``SoftCostModel.macs/params`` at the widths of the pruned network must
equal ``count_cost`` of the network pruned by ``prune_channels``, and ``verify_soft_cost`` must
accept it. Random init only: no weights are downloaded.
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from torch import nn

from prunerep.models import get_model
from prunerep.pruning import (
    SoftCostMismatch,
    SoftCostModel,
    SoftGate,
    apply_gates,
    attach_gates,
    count_cost,
    effective_keep,
    find_groups,
    group_widths,
    prune_channels,
    verify_soft_cost,
)

torch.set_num_threads(1)


class ConcatDepthwise(nn.Module):
    """concat([16, 8]) -> depthwise 24 -> BN: one depthwise conv and one BN carry two groups."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.b, self.bn_b = nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8)
        self.dw, self.bn = nn.Conv2d(24, 24, 3, padding=1, groups=24), nn.BatchNorm2d(24)
        self.c = nn.Conv2d(24, 12, 1)
        self.fc = nn.Linear(12, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([torch.relu(self.bn_a(self.a(x))), torch.relu(self.bn_b(self.b(x)))], 1)
        y = torch.relu(self.bn(self.dw(y)))
        return self.fc(torch.relu(self.c(y)).mean((2, 3)))


class ConcatWithImage(nn.Module):
    """A BN over concat(image, features): 3 of its channels belong to no prunable group."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.bn = nn.BatchNorm2d(9)
        self.c = nn.Conv2d(9, 5, 3, padding=1)
        self.fc = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([x, torch.relu(self.bn_a(self.a(x)))], 1)
        return self.fc(torch.relu(self.c(torch.relu(self.bn(y)))).mean((2, 3)))


class SplitNet(nn.Module):
    """A split of one group between two readers (that group is excluded; the rest is priced)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.left, self.right = nn.Conv2d(6, 8, 3, padding=1), nn.Conv2d(10, 8, 1)
        self.fc = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, q = torch.split(torch.relu(self.bn_a(self.a(x))), [6, 10], 1)
        return self.fc(torch.cat([self.left(p), self.right(q)], 1).mean((2, 3)))


def _tv(name: str):
    return lambda: get_model(f"torchvision:{name}", num_classes=10)


MODELS = {
    "resnet20-A": (lambda: get_model("resnet20", shortcut="A"), 32),
    "resnet20-B": (lambda: get_model("resnet20", shortcut="B"), 32),
    "resnet56-A": (lambda: get_model("resnet56", shortcut="A"), 32),
    "resnet56-B": (lambda: get_model("resnet56", shortcut="B"), 32),
    "vgg16_bn": (lambda: get_model("vgg16_bn"), 32),
    "mobilenetv2": (lambda: get_model("mobilenetv2"), 32),
    "tv_resnet18": (lambda: get_model("tv_resnet18", num_classes=10), 64),
    "tv_mobilenet_v3_small": (_tv("mobilenet_v3_small"), 64),
    "tv_densenet121": (_tv("densenet121"), 32),
    "tv_efficientnet_b0": (_tv("efficientnet_b0"), 64),
    "concat-depthwise": (ConcatDepthwise, 8),
    "concat-with-image": (ConcatWithImage, 8),
    "split": (SplitNet, 8),
}
SEEDS = (0, 1, 2)


@functools.cache
def _dense(name: str) -> tuple[nn.Module, torch.Tensor, SoftCostModel]:
    """The dense model, its input and its cost model, built once per model for all seeds."""
    make, size = MODELS[name]
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(1, 3, size, size)
    return model, x, SoftCostModel.from_model(model, x, find_groups(model, x))


def _random_keep(groups, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random masks (keep ratio 0.1-1 per group), one residual branch removed where allowed."""
    keep = {}
    for g in groups:
        ratio = 0.1 + 0.9 * float(torch.rand((), generator=gen))
        mask = torch.rand(g.channels, generator=gen) < ratio
        mask[int(torch.randint(g.channels, (), generator=gen))] = True  # never empty by accident
        keep[g.id] = mask
    candidates = [g for g in groups if not g.residual]
    if candidates:
        g = candidates[int(torch.randint(len(candidates), (), generator=gen))]
        try:  # remove a whole residual branch where the model allows it
            effective_keep(groups, {**keep, g.id: torch.zeros(g.channels, dtype=torch.bool)})
            keep[g.id] = torch.zeros(g.channels, dtype=torch.bool)
        except ValueError:
            pass
    return keep


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(MODELS))
def test_soft_cost_equals_exact_cost_of_the_pruned_network(name: str, seed: int) -> None:
    base, x, soft = _dense(name)
    dense = count_cost(base, example_input=x)
    assert (soft.dense_macs(), soft.dense_params()) == (dense.macs, dense.params)

    model = copy.deepcopy(base)
    groups = find_groups(model, x)
    keep = _random_keep(groups, torch.Generator().manual_seed(1000 + seed))
    expected = {gid: int(m.sum()) for gid, m in effective_keep(groups, keep).items()}
    prune_channels(model, groups, keep)

    widths = group_widths(model, groups)
    assert widths == expected  # read off the pruned network, dead groups included as 0
    exact = count_cost(model, example_input=x)
    assert exact.macs < dense.macs
    # float64 sums of integer-valued terms: exact up to rounding far below one MAC
    assert float(soft.macs(widths)) == pytest.approx(exact.macs, rel=1e-9, abs=1e-6)
    assert float(soft.params(widths)) == pytest.approx(exact.params, rel=1e-9, abs=1e-6)
    verify_soft_cost(soft, groups, model, x)


def test_densenet_growth_channels_are_prunable_groups() -> None:
    base, x, soft = _dense("tv_densenet121")
    groups = find_groups(copy.deepcopy(base), x)
    # 121 conv/linear roots: conv0, 58 bottlenecks, 58 growth groups, 3 transitions, classifier
    assert len(groups) == 120 and set(groups.excluded) == {"classifier"}
    growth = groups["features.denseblock1.denselayer1.conv2"]
    assert growth.channels == 32 and growth.norms == ()
    # its 32 channels sit after the stem's 64 in every later norm1 of the block
    assert growth.shared[:2] == (
        ("features.denseblock1.denselayer2.norm1", 64),
        ("features.denseblock1.denselayer3.norm1", 64),
    )
    stem = groups["features.conv0"]
    assert stem.norms == ("features.norm0", "features.denseblock1.denselayer1.norm1")
    assert ("features.denseblock1.denselayer2.norm1", 0) in stem.shared
    assert len(soft.group_ids) == 120


def test_verify_soft_cost_detects_a_wrong_coefficient(monkeypatch: pytest.MonkeyPatch) -> None:
    base, x, _ = _dense("resnet20-A")
    model = copy.deepcopy(base)
    groups = find_groups(model, x)
    keep = _random_keep(groups, torch.Generator().manual_seed(7))
    soft = SoftCostModel.from_model(model, x, groups)
    prune_channels(model, groups, keep)
    verify_soft_cost(soft, groups, model, x)  # the exact case passes

    # One layer's MACs coefficient off by one per unit width: the check must catch it.
    a, b, c = soft._macs
    wrong_b = b.clone()
    wrong_b[soft.group_ids.index("layer1.0.conv1")] += 1.0
    monkeypatch.setattr(soft, "_macs", (a, wrong_b, c))
    w = group_widths(model, groups)["layer1.0.conv1"]
    exact = count_cost(model, example_input=x)
    with pytest.raises(SoftCostMismatch) as err:
        verify_soft_cost(soft, groups, model, x)
    msg = str(err.value)
    assert f"MACs: soft {exact.macs + w:,.1f} vs exact {exact.macs:,}" in msg
    assert f"params: soft {exact.params:,.1f} vs exact {exact.params:,}" in msg
    assert "report this model: the engine's cost model does not cover it" in msg
    assert isinstance(err.value, ValueError)


def test_group_widths_reports_removed_groups_as_zero() -> None:
    model = get_model("resnet20", shortcut="A").eval()
    x = torch.randn(1, 3, 32, 32)
    groups = find_groups(model, x)
    keep = {"layer1.1.conv1": torch.zeros(16, dtype=torch.bool)}
    keep["layer2.0.conv1"] = torch.arange(32) % 4 == 0
    prune_channels(model, groups, keep)
    widths = group_widths(model, groups)
    assert widths["layer1.1.conv1"] == 0 and widths["layer2.0.conv1"] == 8
    assert widths["conv1"] == 16 and len(widths) == len(groups)


def test_densenet121_output_gates_equal_the_pruned_network() -> None:
    """The reported failure: output gates on densenet121 (norms over concatenations)."""
    base, _, soft = _dense("tv_densenet121")
    model = copy.deepcopy(base)
    gen = torch.Generator().manual_seed(3)
    for m in model.modules():  # non-trivial BN, so re-normalised zeros would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            with torch.no_grad():
                m.bias.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
    x = torch.randn(2, 3, 32, 32, generator=gen)
    groups = find_groups(model, x[:1])

    def make(g):
        theta = torch.rand(g.channels, generator=gen) * 1.5 - 0.3  # ~20% exact zeros
        theta[0] = 1.0
        return SoftGate(g.channels, init=theta)

    gates = attach_gates(model, groups, make, placement="output")
    with torch.no_grad():
        reference = model(x)
    apply_gates(model, gates, groups)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference, atol=1e-5, rtol=1e-4)
    assert model.features.denseblock1.denselayer2.norm1.num_features < 96
    verify_soft_cost(soft, groups, model, x)
