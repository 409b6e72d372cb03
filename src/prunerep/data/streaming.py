"""Datasets too large for memory, streamed from disk: the ImageNet image-folder layout.

The in-memory path (`arrays.py`, `loader.py`) decodes a whole dataset into uint8 tensors once;
ImageNet's 1.28 M JPEGs (~140 GB decoded) cannot be held that way. Here only the *file list*
and the labels live in memory; images are decoded and augmented per batch by the worker
processes of a ``torch.utils.data.DataLoader``, then moved to the device, where they are
normalised (as `Loader` does).

Layout (``data.source`` = ``<root>``; classes sorted by name, label = index)::

    <root>/train/<class>/*.JPEG     training images; data.val_size of them are held out,
                                    class-stratified with data.split_seed, as the val split
    <root>/val/<class>/*.JPEG       the official validation set = our test split (as CIFAR's
                                    test set is), e.g. reorganised by torchvision's
                                    ``references/classification`` helper or ``valprep.sh``

Typical use (the runner calls `FolderSplits.loader` exactly as it calls `DataSplits.loader`)::

    splits = load_data(DataConfig(dataset="imagenet", source="/datasets/imagenet", val_size=10000))
    train = splits.loader(splits.train, 256, train=True, device="cuda", channels_last=True,
                          seed=0, shard=(rank, world))
    for epoch in range(epochs):
        train.set_epoch(epoch)
        for x, y in train: ...

Determinism: the order of an epoch is a pure function of ``(seed, epoch)`` (one CPU generator),
and the random augmentation of a sample is drawn from a generator seeded by ``(seed, epoch,
sample index)`` inside the worker, so neither depends on the number of workers or the rank.
Pascal VOC segmentation uses the same splits and loader with joint image/mask transforms
(`prunerep.data.voc`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from prunerep.data.arrays import SplitsSummary, _generator, _stratified_quota
from prunerep.data.config import DataError
from prunerep.data.loader import epoch_generator, global_batch_starts

log = logging.getLogger("prunerep.data")

# torchvision's ImageNet normalisation (the statistics every torchvision weight was trained with).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# As torchvision.datasets.folder.IMG_EXTENSIONS, compared case-insensitively.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# PyTorch cross-entropy's default ignore_index: targets with this value add no loss.
IGNORE_INDEX = -100

Batch = tuple[torch.Tensor, torch.Tensor]

IMAGENET_LAYOUT = (
    "an ImageNet image folder: <root>/train/<class>/*.JPEG and <root>/val/<class>/*.JPEG with the "
    "same class folders in both (the official validation images sorted into class folders, e.g. "
    "with torchvision's references/classification helper)"
)


def default_workers() -> int:
    """Worker processes of a streamed loader: ``min(8, cpu count / ranks on this machine)``
    (``LOCAL_WORLD_SIZE``, set by torchrun: 8 ranks of a node share its cores)."""
    local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(8, (os.cpu_count() or 1) // local_ranks))


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _as_paths(names: Sequence[str]) -> np.ndarray:
    # One fixed-width bytes array instead of a list of str: 1.28 M paths in ~50 MB, and forked
    # workers read it without touching refcounts (no copy-on-write growth of every worker).
    return np.array([n.encode() for n in names], dtype=np.bytes_) if names else np.empty(0, "S1")


@dataclass(frozen=True, eq=False)
class FileDataset:
    """A labelled image set as files under one root (nothing decoded).

    Attributes:
        root: folder the paths are relative to.
        files: relative paths (utf-8 bytes array [N]); `file(i)` gives one as ``str``.
        labels: int64 [N] class labels (classification), or ``None`` (segmentation).
        classes: class names; label ``k`` is ``classes[k]``.
        masks: relative paths of the segmentation masks [N], or ``None`` (classification).
    """

    root: str
    files: np.ndarray
    labels: torch.Tensor | None
    classes: tuple[str, ...]
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.files)
        if self.labels is not None and (self.labels.dtype != torch.int64 or self.labels.shape != (n,)):
            raise ValueError(f"labels must be int64 [{n}], got {self.labels.dtype} {tuple(self.labels.shape)}")
        if self.masks is not None and len(self.masks) != n:
            raise ValueError(f"{len(self.masks)} masks for {n} images")
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, indices: torch.Tensor) -> FileDataset:
        """The samples at `indices` (int64 positions or a bool mask), in that order."""
        idx = torch.as_tensor(indices).cpu()
        if idx.dtype == torch.bool:
            idx = torch.nonzero(idx).flatten()
        pick = idx.numpy().astype(np.int64)
        return FileDataset(
            self.root,
            self.files[pick],
            None if self.labels is None else self.labels[idx],
            self.classes,
            None if self.masks is None else self.masks[pick],
        )

    def file(self, index: int) -> str:
        """Relative path of sample `index`."""
        return self.files[index].decode()

    def path(self, index: int) -> Path:
        """Absolute path of the image of sample `index`."""
        return Path(self.root) / self.file(index)

    def mask_path(self, index: int) -> Path:
        """Absolute path of the mask of sample `index` (segmentation)."""
        if self.masks is None:
            raise ValueError("this dataset has no masks")
        return Path(self.root) / self.masks[index].decode()

    def class_counts(self) -> torch.Tensor:
        """Number of samples per class, int64 [num_classes] (classification)."""
        if self.labels is None:
            raise ValueError("a segmentation dataset has no per-image labels")
        return torch.bincount(self.labels, minlength=len(self.classes))


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _scan_split(root: Path, split: str) -> dict[str, list[str]]:
    """``{class: sorted relative image paths}`` of ``root/split/<class>/*``."""
    folder = root / split
    if not folder.is_dir():
        raise _layout_error(root, f"there is no folder {folder}")
    classes: dict[str, list[str]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir() and not entry.name.startswith("."):
                with os.scandir(entry.path) as files:
                    names = sorted(f.name for f in files if f.is_file() and _is_image(f.name))
                classes[entry.name] = [f"{split}/{entry.name}/{n}" for n in names]
    if not classes:
        raise _layout_error(root, f"{folder} has no class folders")
    empty = sorted(c for c, names in classes.items() if not names)
    if empty:
        raise _layout_error(root, f"class folder(s) {empty[:5]} in {folder} hold no images")
    return dict(sorted(classes.items()))


def _layout_error(root: Path, problem: str) -> DataError:
    return DataError(f"data.source={str(root)!r} is not {IMAGENET_LAYOUT}: {problem}")


def _listing_digest(*lists: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for names in lists:
        # One update per list: 1.28 M ImageNet names hash in well under a second.
        digest.update("".join(f"{name}\n" for name in names).encode())
        digest.update(b"|")
    return digest.hexdigest()


def stratified_pick(labels: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """`prunerep.data.arrays.stratified_pick` (same draws, same result) in O(N log N).

    That one scans all labels once per class, minutes for ImageNet's 1.28 M labels and 1,000
    classes; here one stable sort groups the positions of each class (ascending, as there).
    """
    labels = labels.cpu()
    if not 0 <= n <= labels.numel():
        raise ValueError(f"cannot pick {n} of {labels.numel()} samples")
    num_classes = int(labels.max()) + 1 if labels.numel() else 0
    counts = torch.bincount(labels, minlength=num_classes)
    quota = _stratified_quota(counts, n) if n else torch.zeros_like(counts)
    by_class = torch.sort(labels, stable=True).indices
    starts = torch.cumsum(counts, 0) - counts
    picked = []
    for c in torch.nonzero(quota).flatten().tolist():
        members = by_class[int(starts[c]) : int(starts[c] + counts[c])]
        perm = torch.randperm(members.numel(), generator=generator)
        picked.append(members[perm[: int(quota[c])]])
    if not picked:
        return torch.empty(0, dtype=torch.long)
    return torch.sort(torch.cat(picked)).values


def _indices_digest(*indices: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for idx in indices:
        digest.update(idx.to(torch.int64).contiguous().numpy().data)
        digest.update(b"|")
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Transforms: (dataset, index, rng or None) -> (uint8 image [3, H, W], target)
# --------------------------------------------------------------------------------------------


class SampleTransform(Protocol):
    """Reads and transforms one sample in a worker; ``rng`` is None for evaluation."""

    def __call__(self, dataset: FileDataset, index: int, rng: random.Random | None) -> tuple[Any, Any]: ...


def open_rgb(path: Path) -> Any:
    """The image at `path` as an RGB PIL image (grayscale and CMYK JPEGs are converted)."""
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def random_resized_crop_params(
    height: int, width: int, rng: random.Random, scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of an Inception-style random crop, torchvision's algorithm
    (``RandomResizedCrop.get_params``) with an explicit generator instead of torch's global one."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    in_ratio = width / height  # fallback: the central crop of the clamped aspect ratio
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@dataclass(frozen=True)
class ClassificationTransform:
    """torchvision's ImageNet recipe (references/classification, ``ClassificationPresetTrain`` /
    ``ClassificationPresetEval``), without normalisation (done on the device).

    Train: RandomResizedCrop(`crop`) (bilinear, antialiased) + horizontal flip with p = 0.5.
    Eval: Resize(`resize`) of the shorter side + CenterCrop(`crop`).
    """

    crop: int = 224
    resize: int = 256

    def __call__(self, dataset: FileDataset, index: int, rng: random.Random | None) -> tuple[torch.Tensor, int]:
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        img = open_rgb(dataset.path(index))
        if rng is not None:
            top, left, h, w = random_resized_crop_params(img.height, img.width, rng)
            img = TF.resized_crop(img, top, left, h, w, [self.crop, self.crop],
                                  interpolation=InterpolationMode.BILINEAR, antialias=True)
            if rng.random() < 0.5:
                img = TF.horizontal_flip(img)
        else:
            img = TF.resize(img, self.resize, interpolation=InterpolationMode.BILINEAR, antialias=True)
            img = TF.center_crop(img, [self.crop, self.crop])
        return TF.pil_to_tensor(img), int(dataset.labels[index])  # type: ignore[index]


class _EpochSamples(torch.utils.data.Dataset):
    """Map-style view of a FileDataset whose keys are ``(index, epoch)``: a worker seeds the
    augmentation of each sample from ``(seed, epoch, index)`` alone."""

    def __init__(self, dataset: FileDataset, transform: SampleTransform, seed: int, augment: bool) -> None:
        self.dataset, self.transform, self.seed, self.augment = dataset, transform, seed, augment

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Any, Any]:
        index, epoch = key
        # A str seed is hashed with sha512 by `random.Random`: the same draws in every process,
        # whatever PYTHONHASHSEED.
        rng = random.Random(f"stream:{self.seed}:{epoch}:{index}") if self.augment else None
        return self.transform(self.dataset, index, rng)


def _collate(samples: list[tuple[Any, Any]]) -> Batch:
    images = torch.stack([s[0] for s in samples])
    first = samples[0][1]
    if isinstance(first, torch.Tensor):
        targets = torch.stack([s[1] for s in samples])
    else:
        targets = torch.tensor([s[1] for s in samples], dtype=torch.int64)
    return images, targets


# --------------------------------------------------------------------------------------------
# The streamed loader
# --------------------------------------------------------------------------------------------


class StreamLoader:
    """Batches of normalised float32 images and targets decoded from files by worker processes.

    Same contract as the in-memory `Loader`: ``iter()`` runs one epoch and advances the epoch
    counter; `set_epoch` pins it; batches ``(x, y)`` are on `device`. With ``train=True`` the
    order is shuffled, samples augmented and the last incomplete (global) batch dropped.

    Sharding (``shard=(rank, world)``, training): the order of an epoch is drawn for the global
    batch ``batch_size * world`` identically on every rank, and rank ``r`` yields rows
    ``[r * batch_size, (r + 1) * batch_size)`` of every global batch. For evaluation loaders a
    shard is rank ``r``'s strided share ``r::world`` of the samples (no sample twice, none
    dropped), so per-rank metrics sum to the whole split.

    Args:
        dataset: the files to read.
        transform: reads one sample (``rng`` None when not augmenting).
        batch_size: images per batch (per rank).
        mean, std: per-channel normalisation in [0, 1] units.
        train: shuffle + augment + drop_last.
        device: where batches go (pinned host memory first on CUDA).
        channels_last: channels-last images.
        seed: seed of order and augmentation.
        shard: ``(rank, world_size)``.
        num_workers: worker processes (0: read in this process); default `default_workers()`.
        ignore_value: target value mapped to -100 (cross-entropy's ignore index), e.g. VOC's 255.
    """

    def __init__(
        self,
        dataset: FileDataset,
        transform: SampleTransform,
        batch_size: int,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        seed: int = 0,
        shard: tuple[int, int] | None = None,
        num_workers: int | None = None,
        ignore_value: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rank, world = shard if shard is not None else (0, 1)
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}")
        workers = default_workers() if num_workers is None else int(num_workers)
        if workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.dataset = dataset
        self.transform = transform
        self.batch_size = int(batch_size)
        self.train = bool(train)
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.seed = int(seed)
        self.rank, self.world = int(rank), int(world)
        self.shard = (self.rank, self.world) if self.world > 1 else None   # what `evaluate` reads
        self.num_workers = workers
        self.ignore_value = ignore_value
        self.epoch = 0
        mean_t = torch.as_tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
        if (std_t <= 0).any():
            raise ValueError(f"std must be positive, got {list(std)}")
        # (x / 255 - mean) / std == x * scale - shift, as Loader does.
        self._scale = (1.0 / (255.0 * std_t)).float().to(self.device)
        self._shift = (mean_t / std_t).float().to(self.device)

    def __len__(self) -> int:
        n = len(self.dataset)
        if self.train:
            return n // (self.batch_size * self.world)
        return math.ceil(len(range(self.rank, n, self.world)) / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` produce epoch `epoch` (order and augmentation)."""
        self.epoch = int(epoch)

    def batch_indices(self, epoch: int) -> list[list[int]]:
        """Dataset positions of every batch this rank yields in `epoch` (a pure function of
        ``(seed, epoch)``, the batch size and the shard)."""
        n = len(self.dataset)
        if not self.train:
            mine = list(range(self.rank, n, self.world))
            return [mine[i : i + self.batch_size] for i in range(0, len(mine), self.batch_size)]
        order = torch.randperm(n, generator=epoch_generator(self.seed, epoch, "stream-loader")).tolist()
        return [order[s : s + self.batch_size]
                for s in global_batch_starts(n, self.batch_size, (self.rank, self.world))]

    def __iter__(self) -> Iterator[Batch]:
        epoch = self.epoch
        self.epoch += 1
        return self._epoch(epoch)

    def infinite(self) -> Iterator[Batch]:
        """Batches forever, epoch after epoch (shares the epoch counter with ``iter()``)."""
        if len(self) == 0:
            raise ValueError("infinite() over a loader with no batches")
        while True:
            yield from self

    def data_loader(self, epoch: int) -> torch.utils.data.DataLoader:
        """The ``torch.utils.data.DataLoader`` reading `epoch`'s batches (uint8 images, raw
        targets, on the CPU)."""
        samples = _EpochSamples(self.dataset, self.transform, self.seed, augment=self.train)
        batches = [[(i, epoch) for i in batch] for batch in self.batch_indices(epoch)]
        # its own generator: creating the iterator leaves the global RNG (which DSA samples
        # its masks from) untouched, so a resumed run draws what the uninterrupted one drew
        return torch.utils.data.DataLoader(
            samples, batch_sampler=batches, num_workers=self.num_workers, collate_fn=_collate,
            pin_memory=self.device.type == "cuda", generator=epoch_generator(self.seed, epoch, "stream-loader"),
        )

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        non_blocking = self.device.type == "cuda"
        for images, targets in self.data_loader(epoch):
            x = images.to(self.device, non_blocking=non_blocking)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            x = x.float().mul_(self._scale).sub_(self._shift)
            y = targets.to(self.device, non_blocking=non_blocking).long()
            if self.ignore_value is not None:
                y = y.masked_fill_(y == self.ignore_value, IGNORE_INDEX)
            yield x, y


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FolderSplits(SplitsSummary):
    """Train / validation / test of a streamed dataset, with the attributes of `DataSplits`.

    Attributes:
        train, val, test: the files of each split (`FileDataset`).
        mean, std: per-channel normalisation in [0, 1] units (ImageNet's standard values).
        fingerprint: sha256 hex of the sorted relative file lists, the classes and the exact
            indices of every split (no image is decoded: a re-encoded copy under the same names
            has the same fingerprint).
        source: description of where the files are.
        info: extra json-able facts for `describe` (dataset, split parameters).
        image_size: (H, W) of a training batch (the training crop).
        transform: how a worker reads one sample (augmented in training loaders, plain in the
            others).
        ignore_value: target value mapped to -100 (segmentation's "ignore"), or None.
        num_workers: default worker processes of `loader`.
        task: ``classification`` or ``segmentation``.
    """

    train: FileDataset
    val: FileDataset
    test: FileDataset
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fingerprint: str
    source: str
    info: dict[str, Any] = field(default_factory=dict)
    image_size: tuple[int, int] = (224, 224)
    transform: SampleTransform = field(default_factory=ClassificationTransform)
    ignore_value: int | None = None
    num_workers: int = field(default_factory=default_workers)
    task: str = "classification"

    @property
    def in_channels(self) -> int:
        """Image channels: 3 (every image is converted to RGB)."""
        return 3

    def _describe_extra(self) -> dict[str, Any]:
        return {"task": self.task}

    def loader(
        self,
        dataset: FileDataset,
        batch_size: int,
        *,
        train: bool,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        seed: int = 0,
        shard: tuple[int, int] | None = None,
        num_workers: int | None = None,
    ) -> StreamLoader:
        """A streamed loader over `dataset` (``self.train``, ``self.val``, ``self.test`` or a
        ``subset`` of one), same signature and semantics as `DataSplits.loader`.

        Args:
            dataset: the files to batch.
            batch_size: images per batch (per rank when sharded).
            train: shuffled, augmented (this dataset's training transform), drop_last.
            device: where batches go.
            channels_last: channels-last images.
            seed: seed of order and augmentation.
            shard: ``(rank, world_size)``; see `StreamLoader`.
            num_workers: worker processes (default: ``self.num_workers``).
        """
        return StreamLoader(
            dataset, self.transform, batch_size,
            mean=self.mean, std=self.std, train=train, device=device, channels_last=channels_last,
            seed=seed, shard=shard, num_workers=self.num_workers if num_workers is None else num_workers,
            ignore_value=self.ignore_value,
        )


def split_files(
    full_train: FileDataset,
    test: FileDataset,
    *,
    val_size: int,
    split_seed: int,
    subsets: tuple[int | None, int | None, int | None] = (None, None, None),
) -> tuple[FileDataset, FileDataset, FileDataset, dict[str, Any]]:
    """Hold `val_size` of `full_train` out as validation and take the fast profiles' subsets, as
    `load_splits` does (class-stratified where there are labels, drawn with generators seeded
    by `split_seed` and the purpose, the same draws as `load_splits` would make).

    Returns:
        ``(train, val, test, identity)``: identity holds the split sizes and a digest of the
        exact indices, for the fingerprint.
    """
    n_full = len(full_train)
    if isinstance(val_size, bool) or not isinstance(val_size, int) or not 0 <= val_size < n_full:
        raise DataError(
            f"data.val_size={val_size!r} must be an integer in [0, {n_full}) for this dataset "
            f"({n_full} training images); lower data.val_size in params.yaml"
        )

    def labels_of(ds: FileDataset) -> torch.Tensor:
        return ds.labels if ds.labels is not None else torch.zeros(len(ds), dtype=torch.int64)

    val_idx = stratified_pick(labels_of(full_train), val_size, _generator(split_seed, "val"))
    keep = torch.ones(n_full, dtype=torch.bool)
    keep[val_idx] = False
    train_idx = torch.nonzero(keep).flatten()
    test_idx = torch.arange(len(test))
    clamped: dict[str, list[int]] = {}

    def pick(name: str, value: int | None, base: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if value is None:
            return base
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be None or an integer >= 0, got {value!r}")
        if value >= base.numel():
            if value > base.numel():  # as load_splits: not silent, and recorded
                split = name.removesuffix("_subset")
                clamped[split] = [value, base.numel()]
                log.warning("subset.%s: %d images asked, the %s split has %d: using all of them",
                            split, value, split, base.numel())
            return base
        return base[stratified_pick(labels[base], value, _generator(split_seed, name))]

    train_idx = pick("train_subset", subsets[0], train_idx, labels_of(full_train))
    val_idx = pick("val_subset", subsets[1], val_idx, labels_of(full_train))
    test_idx = pick("test_subset", subsets[2], test_idx, labels_of(test))
    identity: dict[str, Any] = {
        "sizes": [train_idx.numel(), val_idx.numel(), test_idx.numel()],
        "indices_sha256": _indices_digest(train_idx, val_idx, test_idx),
    }
    if clamped:
        identity["subset_clamped"] = clamped
    return full_train.subset(train_idx), full_train.subset(val_idx), test.subset(test_idx), identity


def imagenet_splits(
    root: str | Path,
    *,
    val_size: int,
    split_seed: int = 0,
    subsets: tuple[int | None, int | None, int | None] = (None, None, None),
    dataset: str = "imagenet",
    crop: int = 224,
    resize: int = 256,
    num_workers: int | None = None,
) -> FolderSplits:
    """Streamed splits of an ImageNet image folder (see the module docstring for the layout).

    Args:
        root: the folder holding ``train/`` and ``val/``.
        val_size: training images held out (class-stratified) as the validation split.
        split_seed: seed of the hold-out and the subsets.
        subsets: (train, val, test) subset sizes of a fast profile (None: the whole split).
        dataset: the ``data.dataset`` name recorded in ``info``.
        crop: training / evaluation crop (224).
        resize: shorter side before the evaluation centre crop (256).
        num_workers: default worker processes of the loaders (default: `default_workers()`).

    Raises:
        DataError: `root` is missing or not in the layout, naming ``data.source``.
    """
    root = Path(root)
    if not root.is_dir():
        raise _layout_error(root, "the folder does not exist")
    train_files = _scan_split(root, "train")
    test_files = _scan_split(root, "val")
    classes = list(train_files)
    if list(test_files) != classes:
        only_train = sorted(set(classes) - set(test_files))[:5]
        only_val = sorted(set(test_files) - set(classes))[:5]
        raise _layout_error(root, f"train/ and val/ hold different class folders (only in train: "
                                  f"{only_train}, only in val: {only_val})")

    def dataset_of(files: dict[str, list[str]]) -> FileDataset:
        names = [n for c in classes for n in files[c]]
        labels = torch.tensor([k for k, c in enumerate(classes) for _ in files[c]], dtype=torch.int64)
        return FileDataset(str(root), _as_paths(names), labels, tuple(classes))

    full_train, test = dataset_of(train_files), dataset_of(test_files)
    train, val, test, identity = split_files(full_train, test, val_size=val_size, split_seed=split_seed,
                                             subsets=subsets)
    files_sha256 = _listing_digest(classes, [n for c in classes for n in train_files[c]],
                                   [n for c in classes for n in test_files[c]])
    fingerprint = hashlib.sha256(json.dumps({"layout": "imagenet-folder/1", "files_sha256": files_sha256,
                                             **identity}, sort_keys=True).encode()).hexdigest()
    info = {"dataset": dataset, "files_sha256": files_sha256, "val_size": val_size, "split_seed": split_seed,
            "train_subset": subsets[0], "val_subset": subsets[1], "test_subset": subsets[2], "streamed": True}
    if "subset_clamped" in identity:
        info["subset_clamped"] = identity["subset_clamped"]
    return FolderSplits(
        train=train, val=val, test=test, mean=IMAGENET_MEAN, std=IMAGENET_STD, fingerprint=fingerprint,
        source=f"image-folder of JPEG files at {root}, streamed", info=info, image_size=(crop, crop),
        transform=ClassificationTransform(crop=crop, resize=resize),
        num_workers=default_workers() if num_workers is None else num_workers,
    )

