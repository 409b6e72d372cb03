"""Exact MAC / parameter counting against published values, closed forms and FlopCounterMode."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from prunerep.models import ChannelSelect, get_model
from prunerep.pruning.cost import (
    MACS_UNIT,
    Cost,
    LayerCost,
    conv_macs,
    conv_transpose_macs,
    count_cost,
    linear_macs,
    trace_layers,
)

CIFAR_MODELS = [
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "vgg16_bn",
    "vgg19_bn",
    "mobilenetv2",
]


def _meta(name: str, **kwargs: object) -> nn.Module:
    # Counting needs shapes only: on the meta device ImageNet-size models cost no arithmetic.
    # (Small CIFAR models are cheaper on the CPU: meta kernels of BN etc. run in Python.)
    with torch.device("meta"):
        return get_model(name, **kwargs)


def _build(name: str, **kwargs: object) -> nn.Module:
    return _meta(name, **kwargs) if name.startswith("tv_") else get_model(name, **kwargs)


def _flop_counter_macs(model: nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    model.eval()
    with counter, torch.no_grad():
        model(x)
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2  # FlopCounterMode counts a multiply-accumulate as 2 FLOPs


# -- published values ----------------------------------------------------------------------------
# (name, kwargs, input, exact MACs, published MACs in millions, exact params, published M params)
PUBLISHED = [
    ("resnet20", {}, (1, 3, 32, 32), 40_551_040, 40.55, 269_722, 0.27),
    ("resnet56", {}, (1, 3, 32, 32), 125_485_696, 125.49, 853_018, 0.85),
    ("resnet110", {}, (1, 3, 32, 32), 252_887_680, 252.89, 1_727_962, 1.73),
    # Li et al. (ICLR 2017) report 3.13e8 for VGG-16. The 313.7M sometimes quoted (HRank:
    # 313.73M) adds a 512x512 hidden FC (262,144 MACs) and one addition per conv output element
    # (bias/BN: 276,480): 313,201,664 + 262,144 + 276,480 = 313,740,288. Not our convention.
    ("vgg16_bn", {}, (1, 3, 32, 32), 313_201_664, 313.20, 14_724_042, 14.72),
    ("tv_resnet18", {}, (1, 3, 224, 224), 1_814_073_344, 1814.07, 11_689_512, 11.69),
    ("tv_resnet50", {}, (1, 3, 224, 224), 4_089_184_256, 4089.18, 25_557_032, 25.56),
    ("tv_mobilenet_v2", {}, (1, 3, 224, 224), 300_774_272, 300.77, 3_504_872, 3.50),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "shape", "macs", "macs_m", "params", "params_m"), PUBLISHED
)
def test_published_values(
    name: str,
    kwargs: dict[str, object],
    shape: tuple[int, ...],
    macs: int,
    macs_m: float,
    params: int,
    params_m: float,
) -> None:
    cost = count_cost(_build(name, **kwargs), shape)
    assert cost.macs == macs
    assert round(cost.macs / 1e6, 2) == macs_m
    assert cost.params == params
    assert round(cost.params / 1e6, 2) == params_m


def test_resnet56_breakdown() -> None:
    cost = count_cost(get_model("resnet56"))
    assert cost.bn_params == 4_064
    assert cost.params - cost.bn_params == 848_304 + 650  # convs + fc (weights and bias)
    assert len(cost.layers) == 1 + 54 + 1  # stem, 27 blocks x 2 convs, fc; no ChannelSelect
    assert not any("shortcut" in layer.name for layer in cost.layers)
    fc = cost.layers[-1]
    assert (fc.name, fc.kind, fc.macs, fc.params, fc.out_spatial) == ("fc", "linear", 640, 650, ())
    stem = cost.layers[0]
    assert (stem.name, stem.kernel, stem.out_spatial, stem.macs) == (
        "conv1",
        (3, 3),
        (32, 32),
        442_368,
    )


def test_option_b_counts_its_projections() -> None:
    a, b = count_cost(get_model("resnet56")), count_cost(get_model("resnet56", shortcut="B"))
    # Two 1x1 projections: 16->32 at 16x16 and 32->64 at 8x8, plus their BNs.
    assert b.macs - a.macs == 16 * 32 * 256 + 32 * 64 * 64
    assert b.params - a.params == 16 * 32 + 32 * 64 + 2 * (32 + 64)


# -- cross-check against torch.utils.flop_counter --------------------------------------------------


CIFAR_VARIANTS = [(name, {}) for name in CIFAR_MODELS] + [
    (name, {"shortcut": "B"}) for name in CIFAR_MODELS if name.startswith("resnet")
]


@pytest.mark.parametrize(("name", "kwargs"), CIFAR_VARIANTS)
def test_matches_flop_counter_cifar(name: str, kwargs: dict[str, str]) -> None:
    model = get_model(name, **kwargs)
    x = torch.randn(1, 3, 32, 32)
    # ChannelSelect gathers instead of convolving, so FlopCounterMode sees no conv there and
    # nothing needs subtracting (test_channel_select_is_free checks that directly).
    cost = count_cost(model)
    assert cost.macs == _flop_counter_macs(model, x)
    params = sum(
        p.numel()
        for m in model.modules()
        if not isinstance(m, ChannelSelect)
        for p in m.parameters(recurse=False)
    )
    assert cost.params == params


@pytest.mark.parametrize("name", ["tv_resnet18", "tv_mobilenet_v2"])
def test_matches_flop_counter_torchvision(name: str) -> None:
    model = _meta(name)
    x = torch.zeros(1, 3, 224, 224, device="meta")
    cost = count_cost(model, example_input=x)
    assert cost.macs == _flop_counter_macs(model, x)
    assert cost.params == sum(p.numel() for p in model.parameters())


def test_channel_select_is_free() -> None:
    sel = ChannelSelect(16, 32, stride=2)
    x = torch.randn(1, 16, 8, 8)
    assert _flop_counter_macs(sel, x) == 0
    cost = count_cost(sel, example_input=x)
    assert (cost.macs, cost.params, cost.layers) == (0, 0, ())


# -- closed forms on single layers ---------------------------------------------------------------

SINGLE_LAYERS = [
    (nn.Conv2d(8, 16, 3, padding=1), (2, 8, 10, 10)),
    (nn.Conv2d(8, 16, 3, groups=4, bias=False), (2, 8, 10, 12)),  # grouped
    (nn.Conv2d(12, 12, 3, padding=1, groups=12), (1, 12, 9, 9)),  # depthwise
    (nn.Conv2d(6, 10, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(2, 1)), (1, 6, 17, 11)),
    (nn.Conv1d(4, 6, 5, stride=2), (3, 4, 31)),
    (nn.Conv3d(2, 4, (1, 3, 3), padding=1), (1, 2, 4, 6, 6)),
    (nn.Linear(20, 30), (5, 20)),
    (nn.Linear(20, 30, bias=False), (2, 7, 20)),  # extra leading dim multiplies the work
    (nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, groups=2), (1, 8, 5, 7)),
]


@pytest.mark.parametrize(("layer", "shape"), SINGLE_LAYERS, ids=lambda v: type(v).__name__)
def test_single_layer_closed_forms(layer: nn.Module, shape: tuple[int, ...]) -> None:
    x = torch.randn(shape)
    [cost] = trace_layers(layer, x)
    out = layer(x)
    weight_bias = layer.weight.numel() + (layer.bias.numel() if layer.bias is not None else 0)
    assert cost.params == weight_bias
    if isinstance(layer, nn.Linear):
        expected = linear_macs(layer.in_features, layer.out_features) * out[0, ..., 0].numel()
        assert (cost.kind, cost.kernel, cost.out_spatial) == ("linear", (), tuple(out.shape[1:-1]))
    elif isinstance(layer, nn.ConvTranspose2d):
        expected = conv_transpose_macs(8, 4, (3, 3), shape[2:], groups=2)
        assert expected == 8 * 2 * 9 * 35
        assert cost.kind == "conv_transpose" and cost.out_spatial == tuple(out.shape[2:])
    else:
        expected = conv_macs(
            layer.in_channels, layer.out_channels, layer.kernel_size, out.shape[2:], layer.groups
        )
        assert cost.kind == "conv" and cost.out_spatial == tuple(out.shape[2:])
    assert cost.macs == expected
    assert cost.macs * shape[0] == _flop_counter_macs(layer, x)  # FlopCounterMode: whole batch


def test_closed_form_values() -> None:
    assert conv_macs(3, 16, (3, 3), (32, 32)) == 442_368
    assert conv_macs(3, 16, 3, (32, 32)) == 442_368  # int kernel = square
    assert conv_macs(32, 32, (3, 3), (16, 16), groups=32) == 32 * 9 * 256  # depthwise
    assert conv_macs(8, 16, (3, 1), (5, 7), groups=2) == 16 * 4 * 3 * 35
    assert linear_macs(64, 10) == 640
    with pytest.raises(ValueError):
        conv_macs(6, 8, 3, (4, 4), groups=4)


# -- tracing mechanics ---------------------------------------------------------------------------


def test_per_sample_and_meta_equal_real() -> None:
    model = get_model("resnet20")
    one = count_cost(model)
    four = count_cost(model, example_input=torch.randn(4, 3, 32, 32))
    meta = count_cost(_meta("resnet20"))
    assert one == four == meta


def test_restores_modes_and_leaves_no_hooks() -> None:
    model = get_model("resnet20").train()
    model.layer1[0].bn1.eval()  # mixed modes must be restored exactly
    stats = model.bn1.running_mean.clone()
    count_cost(model)
    assert model.training and model.layer2.training and not model.layer1[0].bn1.training
    assert torch.equal(model.bn1.running_mean, stats)  # ran in eval mode
    assert all(not m._forward_hooks for m in model.modules())

    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.conv(x)
            raise RuntimeError("boom")

    broken = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        trace_layers(broken, torch.randn(1, 3, 8, 8))
    assert broken.training and not broken.conv._forward_hooks


def test_shared_module_counted_once_for_params() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)
            self.bn = nn.BatchNorm1d(8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.bn(self.fc(x)))

    cost = count_cost(Twice(), (2, 8))
    assert cost.macs == 2 * 64
    assert [layer.name for layer in cost.layers] == ["fc", "fc"]
    assert (cost.params, cost.bn_params) == (72 + 16, 16)


def test_dataclass_fields_and_json() -> None:
    assert [f.name for f in dataclasses.fields(LayerCost)] == [
        "name",
        "kind",
        "in_channels",
        "out_channels",
        "groups",
        "kernel",
        "out_spatial",
        "macs",
        "params",
    ]
    cost = count_cost(get_model("mobilenetv2"))
    assert isinstance(cost, Cost)
    data = json.loads(json.dumps(cost.as_dict()))
    assert data["macs_unit"] == MACS_UNIT
    assert (data["macs"], data["params"], data["bn_params"]) == (
        cost.macs,
        cost.params,
        cost.bn_params,
    )
    assert len(data["layers"]) == len(cost.layers)
    depthwise = [layer for layer in cost.layers if layer.groups > 1]
    assert depthwise and all(layer.groups == layer.in_channels for layer in depthwise)
    assert "M MACs" in str(cost)
