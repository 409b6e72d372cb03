"""Coupled channel groups: roles, residual streams, concat/flatten mappings, pitfalls.

Structures that break other pruning tools are covered explicitly: residual adds (Distiller #304),
option-A shortcuts, depthwise convs (NNI #4991, Torch-Pruning #328), concatenation, the flatten
into the first linear layer, and a single-output-channel conv (Torch-Pruning #179, #126).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from prunerep.models import get_model
from prunerep.pruning.gates import HardMask, SoftGate, attach_gates
from prunerep.pruning.groups import any_group, find_groups, internal, residual
from prunerep.pruning.surgery import apply_gates, prune_channels

torch.set_num_threads(1)

X32 = torch.randn(1, 3, 32, 32)


def test_resnet20_option_a_groups():
    model = get_model("resnet20", shortcut="A")
    groups = find_groups(model, X32)
    internal_ids = [f"layer{k}.{i}.conv1" for k in (1, 2, 3) for i in range(3)]
    assert groups.ids() == [
        "conv1",
        *internal_ids[:3],
        "layer2.0.conv1",
        "layer2.0.conv2",
        *internal_ids[4:6],
        "layer3.0.conv1",
        "layer3.0.conv2",
        *internal_ids[7:],
    ]
    assert [g.id for g in groups.select(internal)] == internal_ids
    assert [g.id for g in groups.select(residual)] == ["conv1", "layer2.0.conv2", "layer3.0.conv2"]
    assert len(groups.select(any_group)) == len(groups) == 12
    assert set(groups.excluded) == {"fc"}  # the classifier output is never prunable

    stem = groups["conv1"]
    assert stem.channels == 16 and stem.residual
    assert stem.producers == ("conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2")
    assert stem.norms == ("bn1", "layer1.0.bn2", "layer1.1.bn2", "layer1.2.bn2")
    assert stem.readers == ("layer1.0.conv1", "layer1.1.conv1", "layer1.2.conv1", "layer2.0.conv1")
    assert stem.selects_in == ("layer2.0.shortcut",)  # the copy is not a gate position
    assert "layer2.0.shortcut" not in stem.readers
    assert stem.output_taps == stem.norms  # every conv goes straight into its BN
    stage2 = groups["layer2.0.conv2"]
    assert stage2.selects_out == ("layer2.0.shortcut",) and stage2.selects_in == (
        "layer3.0.shortcut",
    )
    stage3 = groups["layer3.0.conv2"]
    assert "fc" in stage3.readers and stage3.input_slot("fc") == (0, 1)
    block = groups["layer2.1.conv1"]
    assert (block.producers, block.norms, block.readers) == (
        ("layer2.1.conv1",),
        ("layer2.1.bn1",),
        ("layer2.1.conv2",),
    )
    assert not block.residual and block.depthwise == ()


def test_resnet_option_b_shortcut_is_a_regular_reader_and_producer():
    groups = find_groups(get_model("resnet56", shortcut="B"), X32)
    assert len(groups) == 3 + 27
    assert "layer2.0.shortcut.conv" in groups["conv1"].readers
    stage2 = groups["layer2.0.conv2"]
    assert "layer2.0.shortcut.conv" in stage2.producers and "layer2.0.shortcut.bn" in stage2.norms
    assert "layer2.0.shortcut.conv" not in stage2.output_taps


def test_mobilenetv2_depthwise_carries_its_group():
    groups = find_groups(get_model("mobilenetv2"), X32)
    g = groups["features.2.expand.conv"]
    assert g.depthwise == ("features.2.dw.conv",)
    assert g.norms == ("features.2.expand.bn", "features.2.dw.bn")
    assert g.readers == ("features.2.project.conv",)  # no input gate before a depthwise conv
    assert g.output_taps == g.norms
    assert not any(d in gg.readers for gg in groups for d in gg.depthwise)
    stream = groups.group_of("features.3.project.conv")
    assert stream.residual and stream.id == "features.2.project.conv"


class FlattenNet(nn.Module):
    """conv -> 2x2 map -> flatten -> linear -> linear (the classic VGG-style classifier)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.BatchNorm2d(8)
        self.fc1, self.fc2 = nn.Linear(8 * 2 * 2, 6), nn.Linear(6, 3)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def test_flatten_into_linear_maps_each_channel_to_its_pixels():
    x = torch.randn(4, 3, 8, 8)
    model = FlattenNet().eval()
    groups = find_groups(model, x[:1])
    assert groups["conv"].reader_index == (("fc1", 0, 4),)
    assert groups["fc1"].readers == ("fc2",)  # a hidden linear layer is prunable too
    assert set(groups.excluded) == {"fc2"}
    for placement in ("input", "output"):
        m = copy.deepcopy(model)
        g = find_groups(m, x[:1])
        gates = attach_gates(
            m,
            g,
            lambda grp: SoftGate(grp.channels, init=torch.linspace(-0.5, 1, grp.channels)),
            placement=placement,
        )
        with torch.no_grad():
            reference = m(x)
        apply_gates(m, gates, g)
        assert m.fc1.in_features == 4 * int((torch.linspace(-0.5, 1, 8) > 0).sum())
        with torch.no_grad():
            assert_close(m(x), reference)


class ConcatNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.b, self.bn_b = nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6)
        self.c = nn.Conv2d(10, 5, 3, padding=1)
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        y = torch.cat([torch.relu(self.bn_a(self.a(x))), torch.relu(self.bn_b(self.b(x)))], dim=1)
        return self.fc(torch.relu(self.c(y)).mean((2, 3)))


@pytest.mark.parametrize("placement", ["input", "output"])
def test_concatenation_offsets_and_exact_pruning(placement):
    x = torch.randn(2, 3, 8, 8)
    model = ConcatNet().eval()
    groups = find_groups(model, x[:1])
    assert groups["a"].reader_index == (("c", 0, 1),)
    assert groups["b"].reader_index == (("c", 4, 1),)
    assert groups["c"].output_taps == ("c",)  # no norm: the gate goes after the producer
    gates = attach_gates(
        model,
        groups,
        lambda g: SoftGate(g.channels, init=torch.linspace(-0.3, 1.2, g.channels)),
        placement=placement,
    )
    with torch.no_grad():
        reference = model(x)
    apply_gates(model, gates, groups)
    with torch.no_grad():
        assert_close(model(x), reference)
    assert model.c.in_channels == model.a.out_channels + model.b.out_channels < 10


class OneChannelNet(nn.Module):
    """A single-output-channel conv in the middle (Torch-Pruning #179 misread it as depthwise)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)  # grayscale input
        self.conv2, self.bn2 = nn.Conv2d(8, 1, 1), nn.BatchNorm2d(1)
        self.conv3 = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.relu(self.conv3(x)).mean((2, 3)))


def test_single_output_channel_conv_is_a_regular_conv():
    x = torch.randn(2, 1, 8, 8)
    model = OneChannelNet().eval()
    groups = find_groups(model, x[:1])
    assert groups["conv1"].readers == ("conv2",) and groups["conv1"].depthwise == ()
    assert groups["conv2"].channels == 1 and groups["conv2"].readers == ("conv3",)
    assert all(g.depthwise == () for g in groups)
    keep = torch.tensor([1, 0, 1, 1, 0, 1, 1, 0], dtype=torch.bool)
    masked = copy.deepcopy(model)
    attach_gates(masked, [find_groups(masked, x[:1])["conv1"]], lambda g: HardMask(keep))
    with torch.no_grad():
        reference = masked(x)
    prune_channels(model, groups, {"conv1": keep})
    assert (model.conv1.out_channels, model.conv2.in_channels, model.conv2.out_channels) == (
        5,
        5,
        1,
    )
    with torch.no_grad():
        assert_close(model(x), reference)


def test_grouped_conv_groups_are_excluded_with_a_reason():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, groups=2),
        nn.ReLU(),
        nn.Conv2d(8, 4, 1),
    )
    groups = find_groups(model, torch.randn(1, 3, 16, 16))
    assert "0" not in groups and "grouped conv '3'" in groups.excluded["0"]


def test_ignore_pins_the_groups_a_module_outputs():
    model = get_model("resnet20")
    groups = find_groups(model, X32, ignore=["layer1.0.conv1", "layer1.1.conv2"])
    assert (
        "layer1.0.conv1" not in groups
        and "ignored module 'layer1.0.conv1'" in groups.excluded["layer1.0.conv1"]
    )
    assert "conv1" not in groups  # layer1.1.conv2 writes the stage-1 stream
    assert "layer2.0.conv2" in groups  # a module that only reads a group does not pin it
    with pytest.raises(ValueError, match="no module named"):
        find_groups(model, X32, ignore=["nope"])


def test_untraceable_model_gives_a_clear_error():
    class Untraceable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return torch.from_numpy(self.conv(x).numpy())  # leaves autograd

    with pytest.raises(RuntimeError, match="could not trace Untraceable"):
        find_groups(Untraceable(), X32)


def test_training_flags_and_gates_do_not_affect_grouping():
    model = get_model("resnet20").train()
    model.layer1[0].bn1.eval()  # a deliberately frozen BN stays frozen
    groups = find_groups(model, X32)
    assert model.training and not model.layer1[0].bn1.training
    attach_gates(model, groups, lambda g: SoftGate(g.channels))
    again = find_groups(model, X32)
    assert list(again) == list(groups)
    assert model.gates is not None


def test_unknown_group_lookup_lists_the_valid_ids():
    groups = find_groups(get_model("resnet20"), X32)
    with pytest.raises(KeyError, match="unknown channel group 'conv9'.*Prunable groups: conv1, "):
        groups["conv9"]


class DenseToy(nn.Module):
    """Two DenseNet layers: ``l2.norm`` normalises concat(stem 8, growth 4) = 12 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.stem_bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.l1_norm, self.l1_conv = nn.BatchNorm2d(8), nn.Conv2d(8, 4, 3, padding=1)
        self.l2_norm, self.l2_conv = nn.BatchNorm2d(12), nn.Conv2d(12, 4, 3, padding=1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        x = torch.relu(self.stem_bn(self.stem(x)))
        y1 = self.l1_conv(torch.relu(self.l1_norm(x)))
        x = torch.cat([x, y1], 1)
        y2 = self.l2_conv(torch.relu(self.l2_norm(x)))
        return self.fc(torch.cat([x, y2], 1).mean((2, 3)))


def test_norm_over_a_concatenation_is_shared_not_the_groups_norm():
    """An offset-0 prefix of a wider concatenation is not the group (was: a 12-channel BN as a
    norm and output tap of the 8-channel stem group, and a shape error at the first forward)."""
    model = DenseToy().eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics: re-normalised zeros show
            m.running_mean.uniform_(-0.5, 0.5)
            with torch.no_grad():
                m.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 3, 8, 8)
    groups = find_groups(model, x[:1])
    stem, growth = groups["stem"], groups["l1_conv"]
    assert stem.norms == ("stem_bn", "l1_norm") and stem.output_taps == ("stem_bn", "l1_norm")
    assert stem.shared == (("l2_norm", 0),) and stem.output_slices == (("l2_norm", 0),)
    assert growth.norms == () and growth.output_taps == ("l1_conv",)
    assert growth.shared == (("l2_norm", 8),) and growth.output_slices == (("l2_norm", 8),)
    assert growth.reader_index == (("l2_conv", 8, 1), ("fc", 8, 1))
    assert "l2_norm" in growth.members
    for placement in ("output", "input"):
        m = copy.deepcopy(model)
        g = find_groups(m, x[:1])
        gates = attach_gates(
            m,
            g,
            lambda grp: SoftGate(grp.channels, init=torch.linspace(-0.4, 1.3, grp.channels)),
            placement=placement,
        )
        with torch.no_grad():
            reference = m(x)
        apply_gates(m, gates, g)
        # linspace(-0.4, 1.3, 8) > 0: 6 of 8 kept; (4 channels): 3 of 4 kept
        assert (m.stem.out_channels, m.l1_conv.out_channels, m.l2_norm.num_features) == (6, 3, 9)
        with torch.no_grad():
            assert_close(m(x), reference)


def test_a_concatenated_group_cannot_be_removed_entirely():
    model = DenseToy().eval()
    groups = find_groups(model, torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="channel group 'l1_conv'"):
        prune_channels(model, groups, {"l1_conv": torch.zeros(4, dtype=torch.bool)})
    assert model.l1_conv.out_channels == 4  # nothing changed
