"""Model zoo and registry: shapes, specs, ChannelSelect and torch-pruning traceability."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from prunerep.models import (
    ChannelSelect,
    build_model,
    get_model,
    list_models,
    register_model,
    unregister_model,
)
from prunerep.models.layers import centered_padding_source, init_conv_bn_

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
TV_MODELS = [
    "tv_resnet18",
    "tv_resnet34",
    "tv_resnet50",
    "tv_mobilenet_v2",
    "tv_vgg16_bn",
    "tv_deeplabv3_resnet50",
]
# Cheap enough to build and run for real in the fast tier; the rest run on the meta device there
# (same code path, shapes only) and for real in the slow tier.
TV_CHEAP = {"tv_resnet18", "tv_mobilenet_v2"}


def _logits(out: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    return out["out"] if isinstance(out, dict) else out


# -- registry ------------------------------------------------------------------------------------


def test_list_models_has_all_builtins() -> None:
    names = list_models()
    assert names == sorted(names)
    assert set(CIFAR_MODELS + TV_MODELS) <= set(names)


def test_duplicate_name_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet56")(lambda **kw: nn.Identity())


def test_register_and_unregister_custom_model() -> None:
    name = "test_models_tiny_net"

    @register_model(name)
    def tiny(*, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    try:
        assert name in list_models()
        model = get_model(name, num_classes=4)
        assert model.arch_spec == {"name": name, "kwargs": {"num_classes": 4, "in_channels": 3}}
        with pytest.raises(ValueError, match="unregister_model"):
            register_model(name)(tiny)
    finally:
        unregister_model(name)
    assert name not in list_models()


def test_reserved_prefix_refused() -> None:
    with pytest.raises(ValueError, match="reserved"):
        register_model("torchvision:resnet18")


def test_unknown_name_message() -> None:
    with pytest.raises(ValueError) as info:
        build_model({"name": "resnet57"})
    msg = str(info.value)
    assert "resnet57" in msg and "resnet56" in msg and "vgg16_bn" in msg
    assert "register_model" in msg and "torchvision:" in msg


def test_bad_kwargs_and_specs() -> None:
    with pytest.raises(ValueError, match="Accepted keyword arguments"):
        get_model("resnet56", depth=56)
    with pytest.raises(ValueError, match="shortcut"):
        get_model("resnet56", shortcut="C")
    with pytest.raises(TypeError, match="JSON"):
        get_model("vgg16_bn", cfg=[64, "M", object()])
    with pytest.raises(ValueError, match="unexpected model spec keys"):
        build_model({"name": "resnet20", "kwarg": {}})
    with pytest.raises(ValueError, match="mapping"):
        build_model("resnet20")  # type: ignore[arg-type]


def test_spec_is_not_aliased() -> None:
    spec = {"name": "vgg16_bn", "kwargs": {"cfg": [8, "M", 16]}}
    model = build_model(spec)
    spec["kwargs"]["cfg"].append(32)
    assert model.arch_spec["kwargs"]["cfg"] == [8, "M", 16]


def _build(name: str, meta: bool, **kwargs: object) -> nn.Module:
    if meta:
        with torch.device("meta"):
            return get_model(name, **kwargs)
    return get_model(name, **kwargs)


@pytest.mark.parametrize("name", CIFAR_MODELS + TV_MODELS)
def test_arch_spec_roundtrip(name: str) -> None:
    meta = name.startswith("tv_")  # big models: structure only, no memory or init time
    model = _build(name, meta)
    spec = json.loads(json.dumps(model.arch_spec))
    assert spec["name"] == name and "num_classes" in spec["kwargs"]
    if meta:
        with torch.device("meta"):
            rebuilt = build_model(spec)
    else:
        rebuilt = build_model(spec)
    a, b = model.state_dict(), rebuilt.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a)
    assert rebuilt.arch_spec == model.arch_spec


def test_arch_spec_records_defaults_and_overrides() -> None:
    model = get_model("resnet56", shortcut="B", num_classes=100)
    assert model.arch_spec == {
        "name": "resnet56",
        "kwargs": {"num_classes": 100, "in_channels": 3, "shortcut": "B"},
    }


# -- forward shapes ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_cifar_forward(name: str) -> None:
    model = get_model(name)  # train mode: BN uses batch statistics of the 2 samples
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)


@pytest.mark.parametrize("name", ["resnet20", "vgg16_bn", "mobilenetv2"])
def test_cifar_any_channels_and_size(name: str) -> None:
    model = get_model(name, in_channels=1, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)
        assert model(torch.randn(1, 1, 9, 13)).shape == (1, 7)


def test_resnet_option_b_forward_and_names() -> None:
    model = get_model("resnet20", shortcut="B")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    names = dict(model.named_modules())
    assert isinstance(names["layer2.0.shortcut.conv"], nn.Conv2d)
    assert isinstance(names["layer2.0.shortcut.bn"], nn.BatchNorm2d)
    assert not any(isinstance(m, ChannelSelect) for m in model.modules())


def test_resnet_module_names() -> None:
    names = dict(get_model("resnet56").named_modules())
    for key in ["conv1", "bn1", "fc", "layer1.0.conv1", "layer1.0.bn1", "layer1.0.conv2"]:
        assert key in names
    for key in ["layer1.0.bn2", "layer1.8.shortcut", "layer3.8.conv2"]:
        assert key in names
    assert isinstance(names["layer1.0.shortcut"], nn.Sequential)  # identity
    assert isinstance(names["layer2.0.shortcut"], ChannelSelect)
    assert isinstance(names["layer3.0.shortcut"], ChannelSelect)
    assert "layer4" not in names and "layer3.9" not in names
    vgg = dict(get_model("vgg16_bn").named_modules())
    assert isinstance(vgg["features.0"], nn.Conv2d) and isinstance(vgg["classifier"], nn.Linear)
    assert sum(isinstance(m, nn.Conv2d) for m in vgg.values()) == 13
    assert sum(isinstance(m, nn.Conv2d) for m in get_model("vgg19_bn").modules()) == 16


def test_init() -> None:
    model = get_model("resnet20")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    # Kaiming fan_out: std = sqrt(2 / (out * k * k)) = sqrt(2 / 576) for 64-channel 3x3 convs.
    std = model.layer3[1].conv1.weight.std().item()
    assert abs(std - (2 / 576) ** 0.5) < 0.1 * (2 / 576) ** 0.5


@pytest.mark.parametrize("name", TV_MODELS)
def test_torchvision_forward(name: str) -> None:
    meta = name not in TV_CHEAP
    model = _build(name, meta).eval()
    x = torch.randn(1, 3, 64, 64, device="meta" if meta else "cpu")
    with torch.no_grad():
        out = _logits(model(x))
    expected = (1, 21, 64, 64) if "deeplab" in name else (1, 1000)
    assert out.shape == expected


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(TV_MODELS) - TV_CHEAP))
def test_torchvision_forward_real(name: str) -> None:
    model = get_model(name).eval()
    with torch.no_grad():
        out = _logits(model(torch.randn(1, 3, 64, 64)))
    assert out.shape == ((1, 21, 64, 64) if "deeplab" in name else (1, 1000))


def test_torchvision_in_channels_and_num_classes() -> None:
    model = get_model("tv_resnet18", in_channels=1, num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 64)).shape == (1, 5)
    with pytest.raises(ValueError, match="pretrained"):
        get_model("tv_resnet18", in_channels=1, weights="IMAGENET1K_V1")


def test_deeplabv3_returns_the_logits_tensor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry's DeepLabV3 returns torchvision's ``"out"`` as a tensor, same weights and keys."""
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: pytest.fail("download"))
    with torch.device("meta"):
        model = get_model("deeplabv3_resnet50", num_classes=5).eval()
        out = model(torch.zeros(2, 3, 40, 56))
        assert isinstance(out, torch.Tensor) and out.shape == (2, 5, 40, 56)
        tv = get_model("tv_deeplabv3_resnet50", num_classes=5, aux_loss=True)
    tv_keys = [k for k in tv.state_dict() if not k.startswith("aux_classifier.")]
    assert list(model.state_dict()) == tv_keys
    assert model.arch_spec["name"] == "deeplabv3_resnet50"
    # Same computation as torchvision's "out" on shared weights (~3 s: two real builds).
    tv = get_model("tv_deeplabv3_resnet50", num_classes=3).eval()
    ours = get_model("deeplabv3_resnet50", num_classes=3).eval()
    ours.load_state_dict(tv.state_dict())
    x = torch.randn(1, 3, 48, 40)
    with torch.no_grad():
        assert torch.allclose(ours(x), tv(x)["out"])


def test_torchvision_escape_hatch_never_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    model = build_model({"name": "torchvision:resnet18", "kwargs": {"num_classes": 7}}).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)
    assert model.arch_spec == {"name": "torchvision:resnet18", "kwargs": {"num_classes": 7}}
    # torchvision's default weights_backbone would download; the hatch defaults it to None.
    with torch.device("meta"):
        seg = build_model({"name": "torchvision:lraspp_mobilenet_v3_large"})
        assert _logits(seg.eval()(torch.zeros(1, 3, 64, 64))).shape == (1, 21, 64, 64)
        get_model("tv_deeplabv3_resnet50")
    with pytest.raises(ValueError, match="list_models"):
        build_model({"name": "torchvision:no_such_net"})


# -- ChannelSelect -------------------------------------------------------------------------------


def _slice_pad(x: torch.Tensor, planes: int) -> torch.Tensor:
    """The classic option-A shortcut: subsample, then zero-pad planes // 4 channels each side."""
    return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0.0)


@pytest.mark.parametrize(("in_planes", "planes", "size"), [(16, 32, 16), (32, 64, 8), (4, 8, 7)])
def test_channel_select_equals_slice_pad(in_planes: int, planes: int, size: int) -> None:
    sel = ChannelSelect(in_planes, planes, stride=2)
    x = torch.randn(3, in_planes, size, size)
    assert torch.equal(sel(x), _slice_pad(x, planes))
    # Unbatched input too, and any dtype (the gather is exact).
    assert torch.equal(sel(x[0]), _slice_pad(x[:1], planes)[0])
    xd = x.double()
    assert torch.equal(sel.double()(xd), _slice_pad(xd, planes))


def test_channel_select_in_resnet_matches_reference_block() -> None:
    block = get_model("resnet20").layer2[0]
    x = torch.randn(2, 16, 16, 16)
    assert torch.equal(block.shortcut(x), _slice_pad(x, 32))


def test_channel_select_never_trains() -> None:
    model = get_model("resnet20")
    selects = [m for m in model.modules() if isinstance(m, ChannelSelect)]
    assert len(selects) == 2
    assert all(not p.requires_grad for m in selects for p in m.parameters())
    before = [m.weight.clone() for m in selects]
    model.requires_grad_(True)  # even if someone re-enables it, no gradient reaches it
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    assert all(m.weight.grad is None for m in selects)
    assert all(torch.equal(m.weight, b) for m, b in zip(selects, before, strict=True))
    # Generic re-initialisation keeps the selection (it is structure, not a learned value).
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    init_conv_bn_(model)
    assert all(torch.equal(m.weight, b) for m, b in zip(selects, before, strict=True))


def test_channel_select_state_dict() -> None:
    model = get_model("resnet20")
    state = copy.deepcopy(model.state_dict())
    other = get_model("resnet20")
    other.load_state_dict(state)
    other.load_state_dict(copy.deepcopy(state), assign=True)
    sel = other.layer2[0].shortcut
    assert isinstance(sel, ChannelSelect) and not sel.weight.requires_grad
    assert sel.source() == centered_padding_source(16, 32)
    state["layer2.0.shortcut.weight"][0, 0, 0, 0] = 0.5
    with pytest.raises(RuntimeError, match="selection matrix"):
        other.load_state_dict(state)
    assert sel.source() == centered_padding_source(16, 32)  # refused before copying
    with torch.no_grad():
        sel.weight[8, 1, 0, 0] = 1.0  # row 8 already copies input channel 0
    with pytest.raises(ValueError, match="at most one 1 per row"):
        sel.check_selection()


def test_channel_select_custom_source_and_meta() -> None:
    sel = ChannelSelect(3, 4, source=[2, -1, 0, 0])
    x = torch.randn(1, 3, 5, 5)
    expected = torch.stack([x[:, 2], torch.zeros_like(x[:, 0]), x[:, 0], x[:, 0]], dim=1)
    assert torch.equal(sel(x), expected)
    with torch.device("meta"):
        assert ChannelSelect(16, 32, stride=2)(torch.zeros(1, 16, 8, 8)).shape == (1, 32, 4, 4)
    assert torch.equal(ChannelSelect(3, 2, source=[2, 0])(x), x[:, [2, 0]])
    with pytest.raises(ValueError, match="source indices"):
        ChannelSelect(3, 2, source=[3, 0])
    with pytest.raises(ValueError, match="pass `source`"):
        ChannelSelect(3, 2)


# -- torch-pruning -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("resnet56", {}), ("resnet56", {"shortcut": "B"}), ("vgg16_bn", {}), ("mobilenetv2", {})],
)
def test_torch_pruning_dependency_graph(name: str, kwargs: dict[str, str]) -> None:
    model = get_model(name, **kwargs).eval()
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, 32, 32))
    # Every conv/linear is in the graph (ChannelSelect included).
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert all(m in dg.module2node for m in layers)


def test_torch_pruning_prunes_channel_select_exactly() -> None:
    """Removing an all-zero channel with torch-pruning must not change the output.

    Channel 3 of the stage-1 residual stream (read by stage 2's ChannelSelect) and channel 0 of
    the stage-2 stream (a zero-padding channel of the ChannelSelect output) are made identically
    zero, then pruned through the DependencyGraph; the selection matrices must shrink accordingly.
    """
    torch.manual_seed(0)
    model = get_model("resnet20").eval()
    with torch.no_grad():
        for bn in [model.bn1] + [b.bn2 for b in model.layer1]:
            bn.weight[3] = 0.0
            bn.bias[3] = 0.0
        for b in model.layer2:
            b.bn2.weight[0] = 0.0
            b.bn2.bias[0] = 0.0
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, 32, 32))
    dg.get_pruning_group(model.layer1[0].conv2, tp.prune_conv_out_channels, idxs=[3]).prune()
    dg.get_pruning_group(model.layer2[1].conv2, tp.prune_conv_out_channels, idxs=[0]).prune()
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    s2, s3 = model.layer2[0].shortcut, model.layer3[0].shortcut
    assert (s2.in_channels, s2.out_channels, s3.in_channels) == (15, 31, 31)
    assert not s2.weight.requires_grad and not s3.weight.requires_grad  # re-frozen after pruning
    src2 = centered_padding_source(16, 32)
    src2 = [s - (s > 3) if s not in (-1, 3) else -1 for s in src2][1:]  # drop in 3 and out 0
    assert s2.source() == src2
    assert s3.source() == [-1] * 17 + list(range(31)) + [-1] * 16


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_channel_select_exact_on_cuda_with_tf32() -> None:
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True  # a real 1x1 conv would round to TF32 here
    try:
        sel = ChannelSelect(16, 32, stride=2).cuda()
        x = torch.randn(2, 16, 8, 8, device="cuda") * 1e3 + 1.2345678
        assert torch.equal(sel(x), _slice_pad(x, 32))
        model = get_model("resnet20").cuda()
        assert model(torch.randn(2, 3, 32, 32, device="cuda")).shape == (2, 10)
    finally:
        torch.backends.cudnn.allow_tf32 = old
