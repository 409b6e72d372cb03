"""Pascal VOC 2012 semantic segmentation, streamed from disk (GDP's DeepLabV3-ResNet50 setting).

The files are found by ``torchvision.datasets.VOCSegmentation`` (never downloaded here), in its
layout (``data.source`` = ``<root>``)::

    <root>/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    <root>/VOCdevkit/VOC2012/SegmentationClass/<id>.png     palette PNG: class index per pixel,
                                                            255 on object borders ("ignore")
    <root>/VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt, val.txt   one <id> per line

Splits: the official ``val`` list (1,449 images) is our test split (the papers report mIoU on it);
``data.val_size`` images of the official ``train`` list (1,464) are held out at random (seeded by
``data.split_seed``) as our validation split. SBD's 10,582 extra training images ("trainaug",
which DeepLab trains on) are not read: torchvision's class has no such split.

Transforms (DeepLab's, Chen et al. 2017; masks follow the image with nearest-neighbour):

* train: scale by a factor drawn uniformly from [0.5, 2.0], pad bottom/right to at least
  513x513 (image with the mean pixel, mask with 255), random 513x513 crop, horizontal flip
  with p = 0.5;
* eval: pad bottom/right to 513x513 in the same way, as DeepLab evaluates (VOC images are at
  most 500x500, so every ground-truth pixel is scored at full resolution and the padding is
  ignored); an image larger than the crop is first resized so that its longer side is 513 (its
  mask too, nearest-neighbour) -- never the case on VOC.

Targets reach the device as int64 ``[N, 513, 513]`` with 255 mapped to -100, cross-entropy's
default ``ignore_index``, so ``F.cross_entropy(logits, y)`` ignores the borders and the padding;
`prunerep.engine.evaluate.segmentation_miou` scores the same pixels.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prunerep.data.config import DataError
from prunerep.data.streaming import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FileDataset,
    FolderSplits,
    _as_paths,
    _listing_digest,
    default_workers,
    open_rgb,
    split_files,
)

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
VOC_IGNORE = 255
VOC_LAYOUT = (
    "a Pascal VOC 2012 folder as torchvision.datasets.VOCSegmentation reads it: "
    "<root>/VOCdevkit/VOC2012/{JPEGImages/<id>.jpg, SegmentationClass/<id>.png, "
    "ImageSets/Segmentation/train.txt and val.txt}"
)
# The mean pixel in 0..255: padding with it makes the padded image zero after normalisation.
MEAN_PIXEL = tuple(round(255 * m) for m in IMAGENET_MEAN)


def _layout_error(root: Path, problem: str) -> DataError:
    return DataError(f"data.source={str(root)!r} is not {VOC_LAYOUT}: {problem}")


def read_mask(path: Path) -> torch.Tensor:
    """The class-index mask at `path` as uint8 [H, W] (a palette or grayscale PNG)."""
    from PIL import Image

    with Image.open(path) as img:
        if img.mode not in ("P", "L"):
            raise DataError(f"{path}: a segmentation mask must be a palette (P) or grayscale (L) PNG of "
                            f"class indices, found mode {img.mode}")
        return torch.from_numpy(np.array(img, dtype=np.uint8))


def _pad_to(image: torch.Tensor, mask: torch.Tensor, height: int, width: int,
            fill: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad bottom/right to at least ``height x width``: image with `fill`, mask with 255."""
    h, w = mask.shape
    if h >= height and w >= width:
        return image, mask
    ph, pw = max(height, h), max(width, w)
    padded = torch.tensor(fill, dtype=torch.uint8).view(-1, 1, 1).repeat(1, ph, pw)
    padded[:, :h, :w] = image
    padded_mask = torch.full((ph, pw), VOC_IGNORE, dtype=torch.uint8)
    padded_mask[:h, :w] = mask
    return padded, padded_mask


def _resize_pair(image: torch.Tensor, mask: torch.Tensor, height: int, width: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    image = TF.resize(image, [height, width], interpolation=InterpolationMode.BILINEAR, antialias=True)
    mask = TF.resize(mask[None], [height, width], interpolation=InterpolationMode.NEAREST)[0]
    return image, mask


@dataclass(frozen=True)
class SegmentationTransform:
    """DeepLab's joint image/mask transforms (see the module docstring).

    Attributes:
        crop: side of the square training crop and of the padded evaluation image.
        scale: range of the random rescaling factor (training).
        fill: image padding value per channel, 0..255 (the mean pixel).
    """

    crop: int = 513
    scale: tuple[float, float] = (0.5, 2.0)
    fill: tuple[int, ...] = MEAN_PIXEL

    def __call__(self, dataset: FileDataset, index: int, rng: random.Random | None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.transforms.v2 import functional as TF

        image = TF.pil_to_tensor(open_rgb(dataset.path(index)))
        mask = read_mask(dataset.mask_path(index))
        if image.shape[1:] != mask.shape:
            raise DataError(f"{dataset.mask_path(index)}: mask {tuple(mask.shape)} does not match its image "
                            f"{tuple(image.shape[1:])}")
        h, w = mask.shape
        c = self.crop
        if rng is None:
            if max(h, w) > c:
                f = c / max(h, w)
                image, mask = _resize_pair(image, mask, min(c, round(h * f)), min(c, round(w * f)))
            return _pad_to(image, mask, c, c, self.fill)
        s = rng.uniform(*self.scale)
        image, mask = _resize_pair(image, mask, max(1, round(h * s)), max(1, round(w * s)))
        image, mask = _pad_to(image, mask, c, c, self.fill)
        h, w = mask.shape
        top, left = rng.randint(0, h - c), rng.randint(0, w - c)
        image, mask = image[:, top : top + c, left : left + c], mask[top : top + c, left : left + c]
        if rng.random() < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        return image.contiguous(), mask.contiguous()


def _voc_root(root: Path) -> Path:
    """torchvision's root for `root`: also accepts the ``VOCdevkit/VOC2012`` folder itself."""
    if root.name == "VOC2012" and root.parent.name == "VOCdevkit":
        return root.parent.parent
    return root


def _voc_files(root: Path, image_set: str) -> tuple[list[str], list[str]]:
    """Relative image and mask paths of an official image set, checked to exist."""
    from torchvision.datasets import VOCSegmentation

    try:
        ds = VOCSegmentation(str(root), year="2012", image_set=image_set, download=False)
    except RuntimeError:  # torchvision's "not found" (its advice to download does not apply here)
        raise _layout_error(root, f"there is no folder {root / 'VOCdevkit' / 'VOC2012'}") from None
    except OSError as err:
        raise _layout_error(root, f"cannot read the list of the {image_set!r} images "
                                  f"({err.filename or err})") from None
    images = [str(Path(p).relative_to(root).as_posix()) for p in ds.images]
    masks = [str(Path(p).relative_to(root).as_posix()) for p in ds.masks]
    if not images:
        raise _layout_error(root, f"ImageSets/Segmentation/{image_set}.txt lists no image")
    missing = [p for p in (*images, *masks) if not (root / p).is_file()]
    if missing:
        raise _layout_error(root, f"{len(missing)} file(s) listed in {image_set}.txt are missing, e.g. {missing[0]}")
    return images, masks


def voc_splits(
    root: str | Path,
    *,
    val_size: int,
    split_seed: int = 0,
    subsets: tuple[int | None, int | None, int | None] = (None, None, None),
    dataset: str = "voc2012",
    crop: int = 513,
    num_workers: int | None = None,
) -> FolderSplits:
    """Streamed Pascal VOC 2012 segmentation splits (see the module docstring).

    Args:
        root: the folder holding ``VOCdevkit/VOC2012`` (or that folder itself).
        val_size: images of the official train list held out as the validation split.
        split_seed: seed of the hold-out and the subsets.
        subsets: (train, val, test) subset sizes of a fast profile (None: the whole split).
        dataset: the ``data.dataset`` name recorded in ``info``.
        crop: training crop and padded evaluation size (513).
        num_workers: default worker processes of the loaders.

    Raises:
        DataError: `root` is missing or not in the layout, naming ``data.source``.
    """
    given = Path(root)
    if not given.is_dir():
        raise _layout_error(given, "the folder does not exist")
    root = _voc_root(given)
    train_images, train_masks = _voc_files(root, "train")
    test_images, test_masks = _voc_files(root, "val")

    def dataset_of(images: list[str], masks: list[str]) -> FileDataset:
        return FileDataset(str(root), _as_paths(images), None, VOC_CLASSES, _as_paths(masks))

    train, val, test, identity = split_files(dataset_of(train_images, train_masks), dataset_of(test_images, test_masks),
                                             val_size=val_size, split_seed=split_seed, subsets=subsets)
    files_sha256 = _listing_digest(train_images, train_masks, test_images, test_masks)
    fingerprint = hashlib.sha256(json.dumps({"layout": "voc2012-segmentation/1", "files_sha256": files_sha256,
                                             **identity}, sort_keys=True).encode()).hexdigest()
    info = {"dataset": dataset, "files_sha256": files_sha256, "val_size": val_size, "split_seed": split_seed,
            "train_subset": subsets[0], "val_subset": subsets[1], "test_subset": subsets[2], "streamed": True}
    if "subset_clamped" in identity:
        info["subset_clamped"] = identity["subset_clamped"]
    return FolderSplits(
        train=train, val=val, test=test, mean=IMAGENET_MEAN, std=IMAGENET_STD, fingerprint=fingerprint,
        source=f"torchvision.datasets.VOCSegmentation (VOC2012) at {root}, streamed", info=info,
        image_size=(crop, crop), transform=SegmentationTransform(crop=crop), ignore_value=VOC_IGNORE,
        num_workers=default_workers() if num_workers is None else num_workers, task="segmentation",
    )
