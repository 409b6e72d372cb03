"""GDP's large-scale settings (`gdp.large_scale` in the paper profile) train on the streamed
datasets: an ImageNet image folder and a Pascal VOC tree, written tiny in the real layouts."""

from __future__ import annotations

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
