"""Streamed datasets: ImageNet image folders and Pascal VOC 2012 segmentation, on tiny copies."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from prunerep.data import (
    DataConfig,
    DataError,
    FolderSplits,
    SubsetConfig,
    describe_data,
    example_shape,
    load_data,
)
from prunerep.data.streaming import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, imagenet_splits
from prunerep.data.voc import MEAN_PIXEL, VOC_CLASSES, voc_splits
from prunerep.engine.evaluate import segmentation_miou

CLASSES = ("ant", "bee", "cat")                       # written in this order, listed sorted
COLOURS = {"ant": (200, 30, 30), "bee": (30, 200, 30), "cat": (30, 30, 200)}
H, W = 40, 50


def write_imagenet(root: Path, train_per_class: int = 5, val_per_class: int = 2) -> Path:
    """``root/train/<class>/*.JPEG`` and ``root/val/<class>/*.JPEG``, one flat colour per class."""
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for cls in reversed(CLASSES):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (W, H), COLOURS[cls]).save(folder / f"{cls}_{i}.JPEG", quality=95)
            (folder / "notes.txt").write_text("not an image")
    return root


def unnormalise(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)


def collect(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


@pytest.fixture
def imagenet(tmp_path: Path) -> Path:
    return write_imagenet(tmp_path / "imagenet")


# -- ImageNet: layout, labels, splits -----------------------------------------------------------


def test_labels_classes_and_split_sizes(imagenet: Path) -> None:
    splits = imagenet_splits(imagenet, val_size=3, num_workers=0)
    assert splits.classes == CLASSES and splits.num_classes == 3
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 3, 6)
    assert splits.val.class_counts().tolist() == [1, 1, 1]        # class-stratified hold-out
    train, val = set(splits.train.files.tolist()), set(splits.val.files.tolist())
    assert not train & val and len(train | val) == 15
    for ds, split in ((splits.train, "train"), (splits.val, "train"), (splits.test, "val")):
        for i in range(len(ds)):
            parts = ds.file(i).split("/")
            assert parts[0] == split and CLASSES[int(ds.labels[i])] == parts[1]
            assert ds.path(i).is_file()
    assert splits.in_channels == 3 and splits.image_size == (224, 224)
    assert splits.mean == IMAGENET_MEAN and splits.std == IMAGENET_STD
    subset = splits.train.subset(torch.tensor([4, 0]))
    assert subset.file(0) == splits.train.file(4) and subset.labels.tolist() == splits.train.labels[[4, 0]].tolist()


def test_fingerprint_is_cheap_and_names_the_split(imagenet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image was opened")

    monkeypatch.setattr(Image, "open", no_decoding)
    a = imagenet_splits(imagenet, val_size=3)
    assert a.fingerprint == imagenet_splits(imagenet, val_size=3).fingerprint
    assert a.fingerprint != imagenet_splits(imagenet, val_size=3, split_seed=1).fingerprint
    assert a.fingerprint != imagenet_splits(imagenet, val_size=6).fingerprint
    (imagenet / "train" / "ant" / "extra.JPEG").write_bytes(b"")
    assert a.fingerprint != imagenet_splits(imagenet, val_size=3).fingerprint


def test_load_data_streams_imagenet_with_the_runner_attributes(imagenet: Path) -> None:
    cfg = DataConfig(dataset="imagenet", source=str(imagenet), val_size=3)
    splits = load_data(cfg, SubsetConfig(train=6, test=3))
    assert isinstance(splits, FolderSplits)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 3, 3)
    assert splits.train.class_counts().tolist() == [2, 2, 2]
    assert example_shape(splits) == (1, 3, 224, 224)
    assert describe_data(cfg, splits).startswith("ImageNet (JPEG image folder at ")
    record = splits.describe()
    assert record["sizes"] == {"train": 6, "val": 3, "test": 3} and record["dataset"] == "imagenet"
    assert {"source", "fingerprint", "num_classes", "classes", "in_channels", "image_size", "mean", "std"} <= set(record)
    clamped = load_data(cfg, SubsetConfig(val=10))                # larger than the split: all of it, recorded
    assert len(clamped.val) == 3 and clamped.info["subset_clamped"] == {"val": [10, 3]}


def test_eval_batches_are_centre_crops_normalised(imagenet: Path) -> None:
    splits = imagenet_splits(imagenet, val_size=3, num_workers=0)
    loader = splits.loader(splits.test, 4, train=False, device="cpu")
    assert len(loader) == 2
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(4, 3, 224, 224), (2, 3, 224, 224)]
    x, y = collect(loader)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(y, splits.test.labels)                   # unshuffled
    colours = torch.tensor([COLOURS[c] for c in CLASSES], dtype=torch.float32) / 255
    # Flat colours survive JPEG and resizing to within a few levels.
    assert torch.allclose(unnormalise(x).mean((2, 3)), colours[y], atol=4 / 255)
    assert loader.batch_indices(0) == [[0, 1, 2, 3], [4, 5]]
    cl = next(iter(splits.loader(splits.test, 2, train=False, device="cpu", channels_last=True)))[0]
    assert cl.is_contiguous(memory_format=torch.channels_last)


def test_train_epochs_are_a_function_of_seed_and_epoch(imagenet: Path) -> None:
    splits = imagenet_splits(imagenet, val_size=3, num_workers=0)

    def make(seed: int = 7, workers: int = 0):
        return splits.loader(splits.train, 4, train=True, device="cpu", seed=seed, num_workers=workers)

    a = make()
    assert len(a) == 3                                           # 12 // 4, drop_last
    epoch0, epoch1 = collect(a), collect(a)                      # iter() advances the epoch
    assert epoch0[0].shape == (12, 3, 224, 224)
    assert sorted(epoch0[1].tolist()) == sorted(splits.train.labels.tolist())
    assert not torch.equal(epoch0[0], epoch1[0])
    resumed = make()
    resumed.set_epoch(1)
    again = collect(resumed)
    assert torch.equal(again[0], epoch1[0]) and torch.equal(again[1], epoch1[1])
    assert make(seed=8).batch_indices(0) != a.batch_indices(0)
    # Labels follow their images through the shuffle and the random crops.
    colours = torch.tensor([COLOURS[c] for c in CLASSES], dtype=torch.float32) / 255
    assert torch.allclose(unnormalise(epoch0[0]).mean((2, 3)), colours[epoch0[1]], atol=4 / 255)


def test_two_workers_give_the_same_epoch(imagenet: Path) -> None:
    splits = imagenet_splits(imagenet, val_size=3)
    one = splits.loader(splits.train, 4, train=True, device="cpu", seed=3, num_workers=0)
    two = splits.loader(splits.train, 4, train=True, device="cpu", seed=3, num_workers=2)
    two.set_epoch(2)
    one.set_epoch(2)
    a, b = collect(one), collect(two)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_shards_split_each_global_batch(imagenet: Path) -> None:
    splits = imagenet_splits(imagenet, val_size=3, num_workers=0)
    whole = splits.loader(splits.train, 4, train=True, device="cpu", seed=5)
    ranks = [splits.loader(splits.train, 2, train=True, device="cpu", seed=5, shard=(r, 2)) for r in range(2)]
    assert len(whole) == len(ranks[0]) == len(ranks[1]) == 12 // 4
    for epoch in (0, 3):
        parts = [r.batch_indices(epoch) for r in ranks]
        assert [p0 + p1 for p0, p1 in zip(*parts, strict=True)] == whole.batch_indices(epoch)
        whole.set_epoch(epoch)
        x = collect(whole)[0].view(3, 4, 3, 224, 224)
        for r, loader in enumerate(ranks):
            loader.set_epoch(epoch)
            # Same images, same augmentation, whichever rank draws them.
            assert torch.equal(collect(loader)[0].view(3, 2, 3, 224, 224), x[:, 2 * r : 2 * r + 2])
    evals = [splits.loader(splits.test, 2, train=False, device="cpu", shard=(r, 2)) for r in range(2)]
    assert sorted(i for e in evals for b in e.batch_indices(0) for i in b) == list(range(6))
    with pytest.raises(ValueError, match="shard"):
        splits.loader(splits.train, 2, train=True, device="cpu", shard=(2, 2))


@pytest.mark.parametrize("damage", ["missing", "no_val", "empty_class", "other_classes"])
def test_malformed_image_folder_is_one_clear_error(imagenet: Path, damage: str) -> None:
    source = imagenet
    if damage == "missing":
        source = imagenet.parent / "nowhere"
    elif damage == "no_val":
        for f in (imagenet / "val").rglob("*"):
            if f.is_file():
                f.unlink()
        for d in sorted((imagenet / "val").glob("*"), reverse=True):
            d.rmdir()
        (imagenet / "val").rmdir()
    elif damage == "empty_class":
        (imagenet / "train" / "dog").mkdir()
        (imagenet / "val" / "dog").mkdir()
    else:
        (imagenet / "val" / "cat").rename(imagenet / "val" / "cow")
    cfg = DataConfig(dataset="imagenet", source=str(source), val_size=3)
    with pytest.raises(DataError, match=r"data\.source=.*train/<class>/\*\.JPEG") as err:
        load_data(cfg)
    assert str(source) in str(err.value)


def test_val_size_too_large(imagenet: Path) -> None:
    with pytest.raises(DataError, match=r"data\.val_size"):
        load_data(DataConfig(dataset="imagenet", source=str(imagenet), val_size=15))


# -- Pascal VOC 2012 ------------------------------------------------------------------------------

VOC_SIZES = [(30, 40), (36, 28), (32, 32), (40, 24), (26, 34), (30, 30)]  # (H, W) of train, then val
# Colours of the class regions of the synthetic images, by class index.
SEG_COLOURS = {0: (20, 20, 20), 1: (230, 40, 40), 15: (40, 230, 40)}


def write_voc(root: Path, n_train: int = 4, n_val: int = 2) -> Path:
    """A VOCdevkit/VOC2012 tree: background with a class-1 block left and a class-15 block right,
    255 on a 1-pixel border around each block, as VOC marks object boundaries."""
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    ids = [f"2007_{i:06d}" for i in range(n_train + n_val)]
    palette = [0] * 768
    for k in range(256):
        palette[3 * k : 3 * k + 3] = [(k * 37) % 256, (k * 91) % 256, (k * 53) % 256]
    for name, (h, w) in zip(ids, VOC_SIZES, strict=False):
        mask = np.zeros((h, w), dtype=np.uint8)
        mask[4 : h - 4, 3 : w // 2 - 2] = 1
        mask[4 : h - 4, w // 2 + 2 : w - 3] = 15
        border = np.zeros_like(mask, dtype=bool)
        for k in (1, 15):
            ys, xs = np.nonzero(mask == k)
            border[ys.min() - 1 : ys.max() + 2, xs.min() - 1 : xs.max() + 2] = True
            border[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = False
        mask[border] = 255
        image = np.zeros((h, w, 3), dtype=np.uint8)
        for k, colour in SEG_COLOURS.items():
            image[mask == k] = colour
        image[mask == 255] = (128, 128, 128)
        Image.fromarray(image).save(voc / "JPEGImages" / f"{name}.jpg", quality=95, subsampling=0)
        png = Image.fromarray(mask, mode="P")
        png.putpalette(palette)
        png.save(voc / "SegmentationClass" / f"{name}.png")
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids[:n_train]) + "\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids[n_train:]) + "\n")
    return root


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    return write_voc(tmp_path / "voc")


def test_voc_splits_and_eval_padding(voc: Path) -> None:
    splits = voc_splits(voc, val_size=1, crop=48, num_workers=0)
    assert splits.classes == VOC_CLASSES and splits.num_classes == 21 and splits.task == "segmentation"
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3, 1, 2)
    assert not set(splits.train.files.tolist()) & set(splits.val.files.tolist())
    assert splits.image_size == (48, 48)
    x, y = collect(splits.loader(splits.test, 2, train=False, device="cpu"))
    assert x.shape == (2, 3, 48, 48) and y.shape == (2, 48, 48) and y.dtype == torch.int64
    for i in range(2):
        h, w = VOC_SIZES[4 + i]
        raw = torch.from_numpy(np.array(Image.open(splits.test.mask_path(i)))).long()
        expected = raw.masked_fill(raw == 255, IGNORE_INDEX)
        assert torch.equal(y[i, :h, :w], expected)                   # full resolution, 255 -> -100
        assert (y[i, h:] == IGNORE_INDEX).all() and (y[i, :, w:] == IGNORE_INDEX).all()
        # The image is padded with the mean pixel: zero after normalisation.
        assert x[i, :, h:].abs().max() < 0.02
    assert not (y == 255).any()
    assert MEAN_PIXEL == (124, 116, 104)


def matching(pixels: torch.Tensor, mask: torch.Tensor, k: int) -> float:
    """Share of the pixels labelled `k` whose colour is class k's (within 40 levels)."""
    error = (pixels[mask == k] - torch.tensor(SEG_COLOURS[k], dtype=torch.float32)).abs().amax(1)
    return float((error < 40).float().mean())


def test_voc_train_transform_keeps_image_and_mask_aligned(voc: Path) -> None:
    splits = voc_splits(voc, val_size=1, crop=48, num_workers=0)
    loader = splits.loader(splits.train, 3, train=True, device="cpu", seed=1)
    seen_scales = set()
    for epoch in range(4):
        loader.set_epoch(epoch)
        x, y = collect(loader)
        assert x.shape == (3, 3, 48, 48) and y.shape == (3, 48, 48)
        values = set(y.unique().tolist())
        assert values <= {IGNORE_INDEX, 0, 1, 15} and IGNORE_INDEX in values
        pixels = (unnormalise(x) * 255).permute(0, 2, 3, 1)

        # Most pixels of each class have its colour (bilinear resizing blends colours next to a
        # region's edge, and the background strips are thin); a mirrored mask would not match.
        for k in SEG_COLOURS:
            assert matching(pixels, y, k) > 0.75, (epoch, k)
        for k in (1, 15):
            assert matching(pixels, y.flip(-1), k) < 0.5, (epoch, k)
        seen_scales.add(int((y != IGNORE_INDEX).sum()))
    assert len(seen_scales) > 1                                      # random scales differ


def test_voc_through_load_data_and_the_default_crop(voc: Path) -> None:
    cfg = DataConfig(dataset="voc2012", source=str(voc / "VOCdevkit" / "VOC2012"), val_size=1)
    splits = load_data(cfg)
    assert splits.image_size == (513, 513) and example_shape(splits) == (1, 3, 513, 513)
    assert describe_data(cfg, splits).startswith("PASCAL VOC 2012 (torchvision.datasets.VOCSegmentation")
    x, y = next(iter(splits.loader(splits.train, 2, train=True, device="cpu", num_workers=0)))
    assert x.shape == (2, 3, 513, 513) and y.shape == (2, 513, 513)


@pytest.mark.parametrize("damage", ["missing", "no_devkit", "no_list", "missing_mask"])
def test_malformed_voc_is_one_clear_error(voc: Path, damage: str) -> None:
    source = voc
    devkit = voc / "VOCdevkit" / "VOC2012"
    if damage == "missing":
        source = voc / "nowhere"
    elif damage == "no_devkit":
        (voc / "VOCdevkit").rename(voc / "devkit")
    elif damage == "no_list":
        (devkit / "ImageSets/Segmentation/val.txt").unlink()
    else:
        next((devkit / "SegmentationClass").glob("*.png")).unlink()
    with pytest.raises(DataError, match=r"data\.source=.*VOCdevkit/VOC2012") as err:
        load_data(DataConfig(dataset="voc2012", source=str(source), val_size=1))
    assert "download" not in str(err.value)


# -- mIoU -----------------------------------------------------------------------------------------


class FixedPrediction(nn.Module):
    """Predicts a stored label map whatever the input (one-hot logits)."""

    def __init__(self, pred: torch.Tensor, num_classes: int, as_dict: bool = False) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.pred, self.num_classes, self.as_dict = pred, num_classes, as_dict

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        logits = self.scale * nn.functional.one_hot(self.pred, self.num_classes).permute(0, 3, 1, 2).float()
        return {"out": logits} if self.as_dict else logits


@pytest.mark.parametrize("as_dict", [False, True])
def test_miou_on_a_hand_made_example(as_dict: bool) -> None:
    target = torch.tensor([[[0, 0, 1, 1], [2, 2, IGNORE_INDEX, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1], [2, 0, 2, 1]]])
    # Scored pixels (the ignored one aside): class 0 TP 1, FP 1, FN 1 -> 1/3; class 1 TP 3, FP 1
    # -> 3/4; class 2 TP 1, FN 1 (its prediction on the ignored pixel does not count) -> 1/2;
    # class 3 appears nowhere and is left out of the mean.
    result = segmentation_miou(FixedPrediction(pred, 4, as_dict), [(torch.zeros(1, 3, 2, 4), target)], 4)
    assert result["miou"] == pytest.approx(100 * (1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert result["pixel_acc"] == pytest.approx(100 * 5 / 7) and result["n"] == 7
    assert result["iou"][:3] == pytest.approx([100 / 3, 75.0, 50.0]) and result["iou"][3] is None
    assert math.isclose(result["miou"], 100 * 19 / 36)


@pytest.mark.parametrize("n", [0, 1, 37, 200])
def test_fast_stratified_pick_draws_what_the_in_memory_one_draws(n: int) -> None:
    from prunerep.data.arrays import stratified_pick as reference
    from prunerep.data.streaming import stratified_pick

    labels = torch.randint(0, 7, (200,), generator=torch.Generator().manual_seed(1))
    labels[labels == 3] = 4                                       # a class with no sample
    fast = stratified_pick(labels, n, torch.Generator().manual_seed(9))
    assert torch.equal(fast, reference(labels, n, torch.Generator().manual_seed(9)))
