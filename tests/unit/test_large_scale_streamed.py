"""GDP's large-scale settings (`gdp.large_scale` in the paper profile) train on the streamed
datasets: an ImageNet image folder and a Pascal VOC tree, written tiny in the real layouts."""

from __future__ import annotations

import pytest
import torch

from prunerep.data.streaming import imagenet_splits
from prunerep.data.voc import voc_splits
from prunerep.engine import RuntimeConfig
from prunerep.engine.evaluate import evaluate, segmentation_miou
from prunerep.methods.base import build_hyper
from prunerep.pruning.cost import count_cost
from prunerep.studies.gdp import LargeScaleConfig, build_large_scale, run_large_scale
from tests.unit.test_data_streaming import write_imagenet, write_voc

RUNTIME = RuntimeConfig(device="cpu", channels_last=False, progress=False)
GDP_FAST = {"train": {"epochs": 1, "lr": 0.01, "max_steps": 3}, "lam_init": 0.5, "lam_max": 5.0, "ramp_epochs": 0.1}


def test_gdp_prunes_a_torchvision_resnet_on_a_streamed_imagenet_folder(tmp_path):
    splits = imagenet_splits(write_imagenet(tmp_path / "imagenet"), val_size=3, crop=32, resize=36, num_workers=0)
    entry = LargeScaleConfig(name="tiny_imagenet", model="tv_resnet18", dataset="imagenet", input_size=32,
                             num_classes=splits.num_classes, macs_keep=0.7, method=build_hyper("gdp", GDP_FAST))
    train = splits.loader(splits.train, 4, train=True, device="cpu")
    val = splits.loader(splits.val, 4, train=False, device="cpu")
    dense = count_cost(build_large_scale(entry)[0], (1, 3, 32, 32)).macs
    pruned, _ = run_large_scale(entry, train, val, runtime=RUNTIME)
    assert count_cost(pruned, (1, 3, 32, 32)).macs < dense
    assert pruned(torch.zeros(2, 3, 32, 32)).shape == (2, splits.num_classes)
    assert 0 <= evaluate(pruned, splits.loader(splits.test, 4, train=False))["acc"] <= 100


def test_gdp_prunes_deeplabv3_on_a_streamed_voc_tree(tmp_path):
    splits = voc_splits(write_voc(tmp_path / "voc"), val_size=1, crop=48, num_workers=0)
    entry = LargeScaleConfig(name="tiny_voc", model="tv_deeplabv3_resnet50", task="segmentation", dataset="voc2012",
                             input_size=48, num_classes=21, macs_keep=0.8, method=build_hyper("gdp", GDP_FAST))
    train = splits.loader(splits.train, 2, train=True, device="cpu")
    val = splits.loader(splits.val, 1, train=False, device="cpu")
    pruned, _ = run_large_scale(entry, train, val, runtime=RUNTIME)
    assert pruned.eval()(torch.zeros(1, 3, 48, 48)).shape == (1, 21, 48, 48)
    scores = segmentation_miou(pruned, splits.loader(splits.test, 1, train=False), 21)
    assert 0 <= scores["miou"] <= 100 and scores["n"] > 0


def test_gdp_large_runs_the_voc_setting_from_published_weights(tmp_path, monkeypatch):
    """`python -m prunerep.studies gdp_large voc_deeplabv3_resnet50` on the paper profile with `data`
    pointed at a (tiny) VOC tree: the dense network is the published DeepLabV3 entry (a random
    network stands in for torchvision's file in a temporary hub cache), GDP trains on the streamed
    splits, the pruned network and its result (mIoU, MACs at the entry's input size) are written."""
    import json
    from pathlib import Path

    import torchvision

    import prunerep.data
    import prunerep.models.published as published
    from prunerep.config import ConfigError, read_params
    from prunerep.models.checkpoint import load_model
    from prunerep.studies import gdp

    repo = Path(__file__).resolve().parents[2]
    root = write_voc(tmp_path / "voc")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(published, "check_hub_file", lambda path: None)   # random bytes: no hash match
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("no download here"))
    weights = torchvision.models.segmentation.DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    hub.mkdir(parents=True)
    torch.manual_seed(0)
    tv = torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21,
                                                            aux_loss=True)
    torch.save(tv.state_dict(), hub / Path(weights.url).name)
    # the real transforms crop 513x513; 48 keeps this test fast
    monkeypatch.setattr(prunerep.data, "load_data", lambda *a, **k: voc_splits(root, val_size=1, crop=48, num_workers=0))
    monkeypatch.chdir(tmp_path)

    params = read_params(repo / "params.yaml")
    params["profile"] = "paper"
    params["data"] = {**params["data"], "dataset": "voc2012", "source": str(root), "val_size": 1}
    settings = params["gdp"]["profiles"]["paper"]["large_scale"]
    voc = next(e for e in settings if e["name"] == "voc_deeplabv3_resnet50")
    assert voc["dataset"] == "voc2012" and voc["model"] == "tv_deeplabv3_resnet50"
    voc.update(input_size=48, method={**GDP_FAST, "train": {**GDP_FAST["train"], "batch_size": 2}})
    params["gdp"]["profiles"]["paper"]["runtime"] = {"device": "cpu", "channels_last": False, "progress": False}
    (tmp_path / "params.yaml").write_text(__import__("yaml").safe_dump(params))

    assert gdp.large_scale_main(["voc_deeplabv3_resnet50", "--params", "params.yaml", "--seed", "1"]) == 0
    result = json.loads((tmp_path / "results/gdp/large_scale/voc_deeplabv3_resnet50-s1.json").read_text())
    assert result["dense"] == "deeplabv3_resnet50" and result["dense_weights"] == "COCO_WITH_VOC_LABELS_V1"
    assert result["macs"] < result["dense_macs"] and result["input"] == [3, 48, 48]
    assert 0 <= result["test"]["miou"] <= 100
    pruned = load_model(tmp_path / "artifacts/gdp/large_scale/voc_deeplabv3_resnet50-s1.pt")[0].eval()
    assert pruned(torch.zeros(1, 3, 48, 48)).shape == (1, 21, 48, 48)
    assert count_cost(pruned, (1, 3, 48, 48)).macs == result["macs"]
    # the dense checkpoint holds the published weights (the stand-in file's), without the aux head
    dense = load_model(tmp_path / "artifacts/pretrain/deeplabv3_resnet50/model.pt")[0]
    assert torch.equal(dense.state_dict()["classifier.4.weight"], tv.state_dict()["classifier.4.weight"])

    # on another dataset the setting is refused, naming the keys
    params["data"]["dataset"] = "imagenet"
    (tmp_path / "params.yaml").write_text(__import__("yaml").safe_dump(params))
    with pytest.raises(ConfigError, match=r"gdp.large_scale\[2\].dataset is 'voc2012' but data.dataset is 'imagenet'"):
        gdp.run_large_scale_setting("voc_deeplabv3_resnet50", read_params(tmp_path / "params.yaml"))
