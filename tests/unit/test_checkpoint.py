"""Checkpoints store the architecture as data and load with weights_only=True."""

from __future__ import annotations

import pytest
import torch

from prunerep.models import get_model
from prunerep.models.checkpoint import load_model, module_records, save_model


def test_round_trip_dense_model(tmp_path):
    model = get_model("resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    path = save_model(model, tmp_path / "m.pt", meta={"test_acc": 91.5, "torch": torch.__version__})
    raw = torch.load(path, weights_only=True)  # no pickled code: tensors and plain data only
    assert raw["arch"] == model.arch_spec
    loaded, meta = load_model(path)
    assert meta["test_acc"] == 91.5 and isinstance(meta["torch"], str)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_round_trip_of_a_narrowed_model(tmp_path):
    """A model whose layers no longer have the default shapes is rebuilt from the records."""
    model = get_model("vgg16_bn").eval()
    model.features[0] = torch.nn.Conv2d(3, 40, 3, padding=1, bias=False)
    model.features[1] = torch.nn.BatchNorm2d(40)
    model.features[3] = torch.nn.Conv2d(40, 64, 3, padding=1, bias=False)
    model.eval()
    assert module_records(model)["features.0"]["args"]["out_channels"] == 40
    path = save_model(model, tmp_path / "narrow.pt")
    loaded, _ = load_model(path)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = save_model(get_model("resnet20"), tmp_path / "r20.pt")
    with pytest.raises(ValueError, match=r"r20.pt: checkpoint is a .*resnet20.* but .*resnet56.* was expected"):
        load_model(path, expect_arch=get_model("resnet56").arch_spec)


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt: checkpoint not found"):
        load_model(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt: not a readable prunerep checkpoint"):
        load_model(bad)


def test_model_without_arch_spec_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no `arch_spec`"):
        save_model(torch.nn.Linear(2, 2), tmp_path / "x.pt")
