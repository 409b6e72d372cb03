"""Physical channel removal is exact: the pruned network computes what the gated/masked one did.

For random gates with exact zeros (and non-trivial non-zero values, which must be folded into the
weights) on every model family of the project, both gate placements, we check

* outputs of the physically pruned network == outputs of the gated network (eval mode);
* its MACs and params (``count_cost``) == values computed *independently* from the kept widths:
  closed forms for the CIFAR ResNets, VGG and MobileNetV2, and the aten-level
  ``torch.utils.flop_counter`` for every model;
* residual branches whose internal gates are all zero disappear (their convs leave the MAC count);
* hard masks behave the same, residual streams are pruned consistently across additions, and bad
  masks fail with one clear error naming the group, leaving the model untouched;
* a pruned model can be pruned again and round-trips through ``save_model`` / ``load_model``.

This is the invariant no pruning library tests (NNI #3010, #2130, #5095: masked != sped-up).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.testing import assert_close
from torch.utils.flop_counter import FlopCounterMode

from prunerep.models import get_model
from prunerep.models.layers import ChannelSelect
from prunerep.pruning.cost import count_cost
from prunerep.pruning.gates import (
    HardMask,
    SoftGate,
    STEBinaryGate,
    StochasticMask,
    TemperedSigmoid,
    WeightDependentGate,
    attach_gates,
)
from prunerep.pruning.groups import ChannelGroup, ChannelGroups, find_groups, internal
from prunerep.pruning.soft_cost import SoftCostModel
from prunerep.pruning.surgery import (
    ConstantConv,
    apply_gates,
    effective_keep,
    plan_surgery,
    prune_channels,
)

# Two cores shared with other jobs: one thread is several times faster than two under load.
torch.set_num_threads(1)


# -- helpers --------------------------------------------------------------------------------------


def randomize_bn_(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so that folding errors would show."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def random_soft_gate(zero_ids: set[str] = frozenset()) -> Callable[[ChannelGroup], SoftGate]:
    """SoftGate(clamp) with ~20% exact zeros, values in (0, 1]; all zero for ``zero_ids``."""

    def make(g: ChannelGroup) -> SoftGate:
        theta = torch.rand(g.channels) * 1.5 - 0.3  # clamp(theta) == 0 for theta <= 0
        theta[0] = 0.9  # never empty by accident
        if g.id in zero_ids:
            theta.zero_()
        return SoftGate(g.channels, init=theta)

    return make


def outputs(model: nn.Module, x: torch.Tensor):
    with torch.no_grad():
        return model(x)


def flop_counter_macs(model: nn.Module, x: torch.Tensor) -> int:
    """MACs of conv+linear by torch's aten-level counter (2 FLOPs per MAC), per sample."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    counts = counter.get_flop_counts().get("Global", {})
    ops = ("convolution", "addmm", "mm", "bmm")
    flops = sum(
        v for k, v in counts.items() if any(str(k).endswith(o) or f".{o}" in str(k) for o in ops)
    )
    return flops // 2 // x.shape[0]


def widths_of(groups: ChannelGroups, keep: dict[str, torch.Tensor]) -> dict[str, int]:
    full = {g.id: g.channels for g in groups}
    full.update({gid: int(mask.sum()) for gid, mask in effective_keep(groups, keep).items()})
    return full


# -- closed forms (independent of the engine: architecture knowledge + kept widths) ----------------


def resnet_cifar_cost(
    depth: int, shortcut: str, w: dict[str, int], classes: int = 10
) -> tuple[int, int]:
    """MACs / params of a CIFAR ResNet with the given group widths (32x32 input)."""
    n = (depth - 2) // 6
    streams = [w["conv1"], w["layer2.0.conv2"], w["layer3.0.conv2"]]
    macs = 9 * 3 * streams[0] * 32 * 32
    params = 27 * streams[0] + 2 * streams[0]
    prev = streams[0]
    for k, (s, hw) in enumerate(zip(streams, (32, 16, 8), strict=True), start=1):
        for i in range(n):
            mid = w[f"layer{k}.{i}.conv1"]
            macs += 9 * prev * mid * hw * hw + 9 * mid * s * hw * hw
            params += 9 * prev * mid + 2 * mid + 9 * mid * s + 2 * s
            if i == 0 and k > 1 and shortcut == "B":
                macs += prev * s * hw * hw
                params += prev * s + 2 * s
            prev = s
    macs += streams[2] * classes
    params += streams[2] * classes + classes
    return macs, params


def vgg_cost(model: nn.Module, w: dict[str, int], classes: int = 10) -> tuple[int, int]:
    """MACs / params of the CIFAR VGG with the given widths (32x32 input)."""
    macs = params = 0
    c_in, hw = 3, 32
    for name, m in model.features.named_children():
        if isinstance(m, nn.MaxPool2d):
            hw = math.ceil(hw / 2)
        elif isinstance(m, nn.Conv2d):
            c_out = w[f"features.{name}"]
            macs += 9 * c_in * c_out * hw * hw
            params += 9 * c_in * c_out + 2 * c_out
            c_in = c_out
    return macs + c_in * classes, params + c_in * classes + classes


def mobilenetv2_cost(model: nn.Module, groups: ChannelGroups, w: dict[str, int]) -> tuple[int, int]:
    """MACs / params of the CIFAR MobileNetV2 with the given widths (32x32 input)."""

    def width(module_name: str) -> int:
        return w[groups.group_of(module_name).id]

    macs = params = 0
    hw = 32
    stem = width("features.0.conv")
    macs += 27 * stem * hw * hw
    params += 27 * stem + 2 * stem
    c_in = stem
    for i, block in enumerate(model.features):
        if i == 0 or i == len(model.features) - 1:
            continue
        hidden = width(f"features.{i}.dw.conv")
        c_out = width(f"features.{i}.project.conv")
        if isinstance(block.expand, nn.Identity):
            hidden = c_in  # t = 1: the depthwise conv carries the block input's group
        else:
            macs += c_in * hidden * hw * hw
            params += c_in * hidden + 2 * hidden
        hw = hw // block.dw.conv.stride[0]
        macs += 9 * hidden * hw * hw + hidden * c_out * hw * hw
        params += 9 * hidden + 2 * hidden + hidden * c_out + 2 * c_out
        c_in = c_out
    last = width(f"features.{len(model.features) - 1}.conv")  # read by the classifier
    macs += c_in * last * hw * hw + last * 10
    params += c_in * last + 2 * last + last * 10 + 10
    return macs, params


# -- gated == pruned on every model ---------------------------------------------------------------

CIFAR = (2, 3, 32, 32)
IMAGENET = (1, 3, 64, 64)
MODELS = [
    pytest.param("resnet20", {"shortcut": "A"}, CIFAR, id="resnet20-A"),
    pytest.param("resnet20", {"shortcut": "B"}, CIFAR, id="resnet20-B"),
    pytest.param("resnet56", {"shortcut": "A"}, CIFAR, id="resnet56-A"),
    pytest.param("resnet56", {"shortcut": "B"}, CIFAR, id="resnet56-B"),
    pytest.param("vgg16_bn", {}, CIFAR, id="vgg16"),
    pytest.param("mobilenetv2", {}, CIFAR, id="mobilenetv2"),
    pytest.param("tv_resnet18", {}, IMAGENET, id="tv_resnet18"),
    pytest.param("tv_mobilenet_v2", {}, IMAGENET, id="tv_mobilenet_v2"),
    pytest.param("tv_deeplabv3_resnet50", {}, IMAGENET, id="deeplabv3", marks=pytest.mark.slow),
    pytest.param("small_deeplab", {}, (1, 3, 32, 32), id="deeplab-head"),
]


class SmallDeepLab(nn.Module):
    """A 3-conv backbone under torchvision's DeepLabV3 head (ASPP: 5 branches concatenated)."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models.segmentation.deeplabv3 import DeepLabHead

        self.backbone = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
        )
        self.head = DeepLabHead(32, 5, atrous_rates=(2, 4, 6))

    def forward(self, x):
        out = self.head(self.backbone(x))
        return {"out": nn.functional.interpolate(out, size=x.shape[-2:], mode="bilinear")}


def build(name: str, **kwargs) -> nn.Module:
    if name == "small_deeplab":
        torch.manual_seed(0)
        return randomize_bn_(SmallDeepLab()).eval()
    return randomize_bn_(get_model(name, **kwargs)).eval()


def expected_cost(
    name: str, kwargs: dict, model: nn.Module, groups: ChannelGroups, w: dict[str, int]
):
    """Closed-form cost where we have one, else None (the flop counter still checks MACs)."""
    if name.startswith("resnet"):
        return resnet_cifar_cost(int(name[6:]), kwargs.get("shortcut", "A"), w)
    if name == "vgg16_bn":
        return vgg_cost(model, w)
    if name == "mobilenetv2":
        return mobilenetv2_cost(model, groups, w)
    return None


@pytest.mark.parametrize("placement", ["input", "output"])
@pytest.mark.parametrize(("name", "kwargs", "shape"), MODELS)
def test_gated_network_equals_pruned_network(name, kwargs, shape, placement):
    x = torch.randn(shape)
    model = build(name, **kwargs)
    groups = find_groups(model, x[:1])
    soft = SoftCostModel.from_model(model, x[:1], groups)
    gates = attach_gates(model, groups, random_soft_gate(), placement=placement)
    reference = outputs(model, x)
    keep = gates.hard_masks()
    assert any(not bool(k.all()) for k in keep.values()), "the test must remove channels"
    w = widths_of(groups, keep)
    closed = expected_cost(name, kwargs, model, groups, w)

    apply_gates(model, gates, groups)

    assert not hasattr(model, "gates")
    assert_close(outputs(model, x), reference)
    cost = count_cost(model, example_input=x[:1])
    if closed is not None:
        assert (cost.macs, cost.params) == closed
    assert cost.macs == flop_counter_macs(model, x[:1])
    assert cost.macs == round(float(soft.macs(w)))
    assert cost.params == round(float(soft.params(w)))


@pytest.mark.parametrize("shortcut", ["A", "B"])
@pytest.mark.parametrize("depth", [20, 56])
@pytest.mark.parametrize("placement", ["input", "output"])
def test_block_with_all_zero_internal_gates_is_removed(depth, shortcut, placement):
    x = torch.randn(CIFAR)
    model = build(f"resnet{depth}", shortcut=shortcut)
    groups = find_groups(model, x[:1])
    dead = {"layer1.1.conv1", "layer2.0.conv1", "layer3.2.conv1"}  # incl. a downsampling block
    gates = attach_gates(model, groups, random_soft_gate(dead), placement=placement)
    reference = outputs(model, x)
    w = widths_of(groups, gates.hard_masks())

    apply_gates(model, gates, groups)

    assert_close(outputs(model, x), reference)
    cost = count_cost(model, example_input=x[:1])
    assert (cost.macs, cost.params) == resnet_cifar_cost(depth, shortcut, w)
    counted = {layer.name for layer in cost.layers}
    for gid in dead:
        block = gid.rsplit(".", 1)[0]
        assert f"{block}.conv1" not in counted and f"{block}.conv2" not in counted
        assert isinstance(model.get_submodule(f"{block}.conv2"), ConstantConv)
        assert isinstance(model.get_submodule(f"{block}.bn1"), nn.Identity)
        assert isinstance(model.get_submodule(f"{block}.bn2"), nn.BatchNorm2d)  # the constant


def test_removed_block_outputs_bn_bias_constant():
    """Training mode too: the BN after the constant conv outputs exactly its bias (GDP)."""
    model = build("resnet20")
    groups = find_groups(model, torch.randn(1, 3, 32, 32))
    prune_channels(model, groups, {"layer1.0.conv1": torch.zeros(16, dtype=torch.bool)})
    block = model.layer1[0]
    captured = {}
    block.bn2.register_forward_hook(lambda m, a, out: captured.setdefault("bn2", out))
    model.train()
    model(torch.randn(4, 3, 32, 32))
    expected = block.bn2.bias.detach().view(1, -1, 1, 1).expand_as(captured["bn2"])
    assert_close(captured["bn2"].detach(), expected)


def test_mobilenetv2_inverted_residual_removed_and_unremovable_first_block_refused():
    x = torch.randn(CIFAR)
    model = build("mobilenetv2")
    groups = find_groups(model, x[:1])
    # features.3 is the second block of the 24-channel stage: it has a residual connection.
    hidden = groups.group_of("features.3.dw.conv")
    assert (
        hidden.depthwise == ("features.3.dw.conv",) and "features.3.dw.conv" not in hidden.readers
    )
    gates = attach_gates(model, groups, random_soft_gate({hidden.id}), placement="input")
    reference = outputs(model, x)
    w = widths_of(groups, gates.hard_masks())
    apply_gates(model, gates, groups)
    assert_close(outputs(model, x), reference)
    assert isinstance(model.features[3].dw.conv, ConstantConv)
    assert count_cost(model, example_input=x[:1]).macs == mobilenetv2_cost(model, groups, w)[0]

    # features.2 opens its stage (no residual): emptying it would make the stage constant.
    model = build("mobilenetv2")
    groups = find_groups(model, x[:1])
    first = groups.group_of("features.2.dw.conv")
    with pytest.raises(ValueError, match=r"features\.2\.expand\.conv.*residual sum"):
        prune_channels(model, groups, {first.id: torch.zeros(first.channels, dtype=torch.bool)})


def _small_bottleneck_resnet() -> nn.Module:
    from torchvision.models.resnet import Bottleneck, ResNet

    return randomize_bn_(
        ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10, width_per_group=16)
    ).eval()


def test_bottleneck_removal_cascades_to_the_first_1x1():
    """Emptying the 3x3 of a bottleneck leaves its first 1x1 unread: it is removed too."""
    x = torch.randn(1, 3, 64, 64)
    model = _small_bottleneck_resnet()
    groups = find_groups(model, x)
    reference = outputs(model, x)
    keep = {"layer2.0.conv2": torch.zeros(groups["layer2.0.conv2"].channels, dtype=torch.bool)}
    plan = plan_surgery(groups, keep)
    assert plan.dead == ["layer2.0.conv1", "layer2.0.conv2"]
    assert plan.constant_readers == ["layer2.0.conv3"]
    soft = SoftCostModel.from_model(model, x, groups)
    w = widths_of(groups, keep)
    # Removing a branch that was not zero changes the output; the result must be that of the
    # branch's last conv seeing an all-zero input, i.e. of its weights set to zero.
    ref_model = copy.deepcopy(model)
    with torch.no_grad():
        ref_model.layer2[0].conv3.weight.zero_()
    prune_channels(model, groups, keep)
    assert_close(outputs(model, x), outputs(ref_model, x))
    assert not torch.equal(outputs(model, x), reference)
    counted = {layer.name for layer in count_cost(model, example_input=x).layers}
    assert not {"layer2.0.conv1", "layer2.0.conv2", "layer2.0.conv3"} & counted
    assert count_cost(model, example_input=x).macs == round(float(soft.macs(w)))


@pytest.mark.parametrize("placement", ["input", "output"])
def test_bottleneck_with_zero_gates_on_its_3x3_outputs_is_removed_exactly(placement):
    x = torch.randn(1, 3, 64, 64)
    model = _small_bottleneck_resnet()
    groups = find_groups(model, x)
    gates = attach_gates(model, groups, random_soft_gate({"layer3.0.conv2"}), placement=placement)
    reference = outputs(model, x)
    apply_gates(model, gates, groups)
    assert_close(outputs(model, x), reference)
    for name in ("conv1", "conv2", "conv3"):  # conv1 died with conv2 although its gates were on
        assert isinstance(model.layer3[0].get_submodule(name), ConstantConv)


def _variant(kind: str, model: nn.Module) -> Callable[[ChannelGroup], nn.Module]:
    def make(g: ChannelGroup):
        pattern = torch.arange(g.channels) % 3 != 1
        if kind == "ste":
            return STEBinaryGate(g.channels, init=pattern.float() - 0.5)
        if kind == "stochastic":
            return StochasticMask(g.channels, prob_fn=lambda: 0.2 + 0.6 * pattern.float())
        if kind == "weight":
            conv = model.get_submodule(g.producers[0])
            gate = WeightDependentGate(lambda: conv.weight, hidden=4)
            with torch.no_grad():
                gate.mlp[2].bias.fill_(0.05)  # about half open, depending on the filters
            return gate
        return HardMask(pattern)

    return make


@pytest.mark.parametrize("kind", ["hard", "ste", "stochastic", "weight"])
@pytest.mark.parametrize("placement", ["input", "output"])
def test_every_gate_variant_is_folded_exactly(kind, placement):
    x = torch.randn(CIFAR)
    model = build("resnet20")
    groups = find_groups(model, x[:1])
    gates = attach_gates(model, groups, _variant(kind, model), placement=placement)
    reference = outputs(model, x)
    keep = gates.hard_masks()
    w = widths_of(groups, keep)
    apply_gates(model, gates, groups)
    assert_close(outputs(model, x), reference)
    assert count_cost(model, example_input=x[:1]).macs == resnet_cifar_cost(20, "A", w)[0]


# -- hard masks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_prune_channels_equals_hard_masked_network(shortcut):
    x = torch.randn(CIFAR)
    model = build("resnet20", shortcut=shortcut)
    groups = find_groups(model, x[:1])
    keep = {g.id: torch.rand(g.channels) > 0.35 for g in groups}
    for mask in keep.values():
        mask[0] = True
    keep["layer3.1.conv1"][:] = False  # one removed block
    masked = copy.deepcopy(model)
    mgroups = find_groups(masked, x[:1])
    attach_gates(masked, mgroups, lambda g: HardMask(keep[g.id]), placement="input")
    reference = outputs(masked, x)
    w = widths_of(groups, keep)

    prune_channels(model, groups, keep)

    assert_close(outputs(model, x), reference)
    # Residual streams are pruned consistently across the additions.
    for gid in ("conv1", "layer2.0.conv2", "layer3.0.conv2"):
        kept = int(keep[gid].sum())
        g = groups[gid]
        for name in g.producers:
            assert model.get_submodule(name).out_channels == kept, name
        for name in g.norms:
            assert model.get_submodule(name).num_features == kept, name
        for name in g.readers:
            m = model.get_submodule(name)
            if isinstance(m, ConstantConv):
                assert name == "layer3.1.conv1"  # the removed block reads nothing any more
                continue
            assert (m.in_features if isinstance(m, nn.Linear) else m.in_channels) == kept, name
        for name in g.selects_in:
            assert model.get_submodule(name).in_channels == kept
        for name in g.selects_out:
            assert model.get_submodule(name).out_channels == kept
    if shortcut == "A":
        for name in ("layer2.0.shortcut", "layer3.0.shortcut"):
            sel = model.get_submodule(name)
            assert isinstance(sel, ChannelSelect) and not sel.weight.requires_grad
            sel.check_selection()
    cost = count_cost(model, example_input=x[:1])
    assert (cost.macs, cost.params) == resnet_cifar_cost(20, shortcut, w)


def test_pruned_model_can_be_pruned_again():
    x = torch.randn(CIFAR)
    model = build("resnet20")
    groups = find_groups(model, x[:1])
    prune_channels(
        model,
        groups,
        {"layer1.1.conv1": torch.zeros(16, dtype=torch.bool), "conv1": torch.arange(16) % 4 != 0},
    )
    with pytest.raises(RuntimeError, match="find_groups"):
        prune_channels(model, groups, {})  # stale groups are refused
    groups = find_groups(model, x[:1])
    assert "layer1.1.conv1" not in groups
    assert "layer1.1.conv2" in groups["conv1"].constants  # ConstantConv is traced with its stream
    reference_groups = groups
    keep = {g.id: torch.arange(g.channels) % 3 != 1 for g in groups}
    masked = copy.deepcopy(model)
    mgroups = find_groups(masked, x[:1])
    attach_gates(masked, mgroups, lambda g: HardMask(keep[g.id]), placement="output")
    reference = outputs(masked, x)
    w = widths_of(reference_groups, keep)
    prune_channels(model, groups, keep)
    assert_close(outputs(model, x), reference)
    w["layer1.1.conv1"] = 0
    assert count_cost(model, example_input=x[:1]).macs == resnet_cifar_cost(20, "A", w)[0]


def test_frozen_parameters_stay_frozen():
    x = torch.randn(1, 3, 32, 32)
    model = build("resnet20", shortcut="B")
    model.layer1[0].conv1.weight.requires_grad_(False)
    model.layer1[1].conv2.weight.requires_grad_(False)
    groups = find_groups(model, x)
    keep = {g.id: torch.arange(g.channels) % 2 == 0 for g in groups}
    keep["layer1.1.conv1"][:] = False
    prune_channels(model, groups, keep)
    assert not model.layer1[0].conv1.weight.requires_grad
    assert model.layer1[0].conv2.weight.requires_grad
    assert not model.layer1[1].conv2.bias.requires_grad  # the constant of a frozen conv
    # ... and it is still traced with its stream, so the model can be pruned again
    groups = find_groups(model, x)
    assert "layer1.1.conv2" in groups["conv1"].constants
    prune_channels(model, groups, {"conv1": torch.arange(8) != 3})
    assert model.layer1[1].conv2.out_channels == 7


# -- errors: one clear message naming the group, model untouched ----------------------------------


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    ("name", "gid", "mask", "error", "match"),
    [
        (
            "resnet20",
            "layer1.0.conv1",
            torch.ones(15, dtype=torch.bool),
            ValueError,
            r"'layer1\.0\.conv1' has shape \(15,\); the group has 16 channels",
        ),
        (
            "resnet20",
            "conv1",
            torch.zeros(16, dtype=torch.bool),
            ValueError,
            r"group 'conv1': it is a residual stream",
        ),
        (
            "resnet20",
            "layer3.0.conv2",
            torch.zeros(64, dtype=torch.bool),
            ValueError,
            r"group 'layer3\.0\.conv2': it is a residual stream",
        ),
        (
            "vgg16_bn",
            "features.0",
            torch.zeros(64, dtype=torch.bool),
            ValueError,
            r"group 'features\.0'.*does not feed a residual sum",
        ),
        (
            "vgg16_bn",
            "features.40",
            torch.zeros(512, dtype=torch.bool),
            ValueError,
            r"group 'features\.40': it is read by Linear 'classifier'",
        ),
        (
            "resnet20",
            "fc",
            torch.zeros(10, dtype=torch.bool),
            KeyError,
            r"'fc' is not prunable: no layer reads its channels",
        ),
        (
            "resnet20",
            "layer9.conv",
            torch.zeros(10, dtype=torch.bool),
            KeyError,
            r"unknown channel group 'layer9\.conv'",
        ),
        ("resnet20", "layer1.0.conv1", torch.full((16,), 2), ValueError, r"boolean \(or 0/1\)"),
    ],
)
def test_bad_masks_raise_and_change_nothing(name, gid, mask, error, match):
    x = torch.randn(1, 3, 32, 32)
    model = build(name)
    groups = find_groups(model, x)
    before = _snapshot(model)
    with pytest.raises(error, match=match):
        prune_channels(model, groups, {gid: mask})
    after = _snapshot(model)
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert not groups.stale


def test_strict_refuses_dropping_nonzero_gates():
    x = torch.randn(1, 3, 32, 32)
    model = build("resnet20")
    groups = find_groups(model, x)
    gates = attach_gates(
        model,
        groups.select(internal),
        lambda g: SoftGate(
            g.channels, fn=TemperedSigmoid(1.0), init=torch.randn(g.channels), threshold=0.5
        ),
    )
    with pytest.raises(ValueError, match="whose gate value is not zero"):
        apply_gates(model, gates, groups)
    assert hasattr(model, "gates")  # nothing changed
    apply_gates(model, gates, groups, strict=False)  # binarise on purpose
    assert not hasattr(model, "gates")


def test_output_gate_before_activation_with_nonzero_f0_is_refused():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            x = torch.sigmoid(self.bn1(self.conv1(x)))  # sigmoid(0) = 0.5
            x = torch.relu(self.bn2(self.conv2(x)))
            return self.fc(x.mean((2, 3)))

    x = torch.randn(1, 3, 8, 8)
    model = Net().eval()
    groups = find_groups(model, x)
    gates = attach_gates(
        model, [groups["conv1"]], lambda g: HardMask(torch.arange(8) % 2 == 0), placement="output"
    )
    with pytest.raises(ValueError, match=r"group 'conv1'.*'conv2' still reads as non-zero"):
        apply_gates(model, gates, groups)
    # input placement is exact for the same model
    gates.remove()
    gates = attach_gates(
        model, [groups["conv1"]], lambda g: HardMask(torch.arange(8) % 2 == 0), placement="input"
    )
    reference = outputs(model, x)
    apply_gates(model, gates, groups)
    assert_close(outputs(model, x), reference)


# -- checkpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_pruned_model_save_load_roundtrip(shortcut, tmp_path):
    checkpoint = pytest.importorskip("prunerep.models.checkpoint")
    x = torch.randn(CIFAR)
    model = build("resnet20", shortcut=shortcut)
    groups = find_groups(model, x[:1])
    keep = {g.id: torch.rand(g.channels) > 0.4 for g in groups}
    for mask in keep.values():
        mask[0] = True
    keep["layer2.0.conv1"][:] = False
    prune_channels(model, groups, keep)
    path = checkpoint.save_model(model, tmp_path / "pruned.pt", meta={"keep": "random"})
    raw = torch.load(path, weights_only=True)
    assert raw["modules"]["layer2.0.conv2"]["type"].endswith("ConstantConv")
    loaded, meta = checkpoint.load_model(path)
    assert meta == {"keep": "random"}
    assert loaded.arch_spec == model.arch_spec
    assert_close(outputs(loaded, x), outputs(model, x))
    assert count_cost(loaded).macs == count_cost(model).macs


# -- devices --------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_surgery_on_cuda():
    x = torch.randn(CIFAR, device="cuda")
    model = build("resnet20").cuda()
    groups = find_groups(model, x[:1])
    gates = attach_gates(model, groups, random_soft_gate({"layer1.0.conv1"}), placement="input")
    reference = outputs(model, x)
    apply_gates(model, gates, groups)
    assert all(p.is_cuda for p in model.parameters())
    assert_close(outputs(model, x), reference, atol=1e-4, rtol=1e-4)  # TF32 convolutions
