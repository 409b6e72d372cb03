"""Pruned networks export to ONNX and onnxruntime reproduces PyTorch's outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunerep.models import get_model
from prunerep.pruning.export import check_onnx, export_onnx
from prunerep.pruning.gates import SoftGate, attach_gates
from prunerep.pruning.groups import find_groups
from prunerep.pruning.surgery import apply_gates

pytest.importorskip("onnxruntime")
torch.set_num_threads(1)


def _gated_then_pruned(name: str, shape: tuple[int, ...], dead: set[str] = frozenset(), **kwargs):
    x = torch.randn(shape)
    model = get_model(name, **kwargs).eval()
    groups = find_groups(model, x)

    def make(g):
        theta = torch.rand(g.channels) * 1.5 - 0.3
        theta[0] = 1.0
        return SoftGate(g.channels, init=torch.zeros(g.channels) if g.id in dead else theta)

    gates = attach_gates(model, groups, make, placement="input")
    with torch.no_grad():
        reference = model(x)
    apply_gates(model, gates, groups)
    return model, x, reference


@pytest.mark.parametrize(
    ("name", "shape", "kwargs", "dead"),
    [
        ("resnet20", (2, 3, 32, 32), {"shortcut": "A"}, {"layer1.1.conv1", "layer2.0.conv1"}),
        ("resnet20", (2, 3, 32, 32), {"shortcut": "B"}, {"layer3.0.conv1"}),
        ("vgg16_bn", (2, 3, 32, 32), {}, set()),
        ("mobilenetv2", (1, 3, 32, 32), {}, {"features.3.expand.conv"}),
        ("tv_resnet18", (1, 3, 64, 64), {}, {"layer1.0.conv1"}),
        ("tv_mobilenet_v2", (1, 3, 64, 64), {}, set()),
    ],
    ids=["resnet20-A", "resnet20-B", "vgg16", "mobilenetv2", "tv_resnet18", "tv_mobilenet_v2"],
)
def test_pruned_network_onnx_matches_gated_network(name, shape, kwargs, dead, tmp_path, capfd):
    model, x, reference = _gated_then_pruned(name, shape, dead, **kwargs)
    capfd.readouterr()
    path = export_onnx(model, tmp_path / f"{name}.onnx", x)
    assert "Traceback" not in capfd.readouterr().err
    assert path.exists() and path.stat().st_size > 0
    assert _opset(path) == 18
    assert check_onnx(path, model, x, atol=1e-4) <= 1e-4
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), reference, atol=1e-4, rtol=1e-4)


def test_dict_outputs_and_mismatch_detection(tmp_path):
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return {"out": y, "pooled": y.mean((2, 3))}

    model = TwoHeads().eval()
    x = torch.randn(1, 3, 8, 8)
    path = export_onnx(model, tmp_path / "heads.onnx", x)
    assert check_onnx(path, model, x) < 1e-5
    with torch.no_grad():
        model.conv.bias.add_(1.0)
    with pytest.raises(ValueError, match="differs from PyTorch by"):
        check_onnx(path, model, x)
    assert not model.training


@pytest.mark.slow
def test_dynamo_exporter(tmp_path, capfd):
    model, x, _ = _gated_then_pruned("resnet20", (1, 3, 32, 32), {"layer1.1.conv1"})
    capfd.readouterr()
    path = export_onnx(model, tmp_path / "r20.onnx", x, dynamo=True)
    # At opset 17 this exporter printed a down-conversion traceback (and wrote opset 18 anyway).
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Failed to convert" not in err
    assert _opset(path) == 18
    assert check_onnx(path, model, x) <= 1e-4


def _opset(path) -> int:
    import onnx

    return next(o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx"))
