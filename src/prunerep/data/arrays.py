"""Decoded datasets in memory: the cache file, train/val/test splits and normalisation stats.

The cache written by `python -m prunerep.data prepare` is a plain dict saved with `torch.save`
(loadable with ``weights_only=True``)::

    format        "prunerep.data/1"
    dataset       e.g. "cifar10"
    train_images  uint8 [N, C, H, W]     train_labels  int64 [N]
    test_images   uint8 [M, C, H, W]     test_labels   int64 [M]
    classes       list[str]
    fingerprint   sha256 hex of the decoded arrays and class names (see `dataset_fingerprint`)
    source        human-readable description of the raw files it was decoded from
    train_histogram  int64 [C, 256] per-channel pixel-value counts of train_images (for mean/std)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from prunerep.data.config import DataError
from prunerep.io import atomic_torch_save, load_error_reason

log = logging.getLogger("prunerep.data")

CACHE_FORMAT = "prunerep.data/1"
_CACHE_KEYS = ("train_images", "train_labels", "test_images", "test_labels", "classes")


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A whole labelled image set as two tensors.

    Attributes:
        images: uint8 [N, C, H, W], raw pixel values.
        labels: int64 [N], values in ``[0, len(classes))``.
        classes: class names; label ``k`` is ``classes[k]``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must be int64 [{self.images.shape[0]}], got {self.labels.dtype} "
                f"{tuple(self.labels.shape)}"
            )
        # Normalise lists to a tuple so the frozen dataclass is really immutable.
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor) -> ArrayDataset:
        """The samples at `index` (int64 positions or a bool mask), in that order."""
        index = torch.as_tensor(index).to(self.images.device)
        return ArrayDataset(self.images[index], self.labels[index], self.classes)

    def to(self, device: torch.device | str) -> ArrayDataset:
        """This dataset with both tensors on `device` (itself if already there)."""
        device = torch.device(device)
        if self.images.device == device and self.labels.device == device:
            return self
        return ArrayDataset(self.images.to(device), self.labels.to(device), self.classes)

    def class_counts(self) -> torch.Tensor:
        """Number of samples per class, int64 [num_classes]."""
        return torch.bincount(self.labels.cpu(), minlength=len(self.classes))


class SplitsSummary:
    """What every kind of splits (in memory: `DataSplits`; streamed: `FolderSplits`) derives from
    its ``train``, ``val``, ``test``, ``mean``, ``std``, ``fingerprint``, ``source``, ``info``,
    ``in_channels`` and ``image_size``: the class list and the record of what a result was
    computed on."""

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.train.classes)

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, indexed by label."""
        return self.train.classes

    def _describe_extra(self) -> dict[str, Any]:
        return {}

    def describe(self) -> dict[str, Any]:
        """A json-able record of what data a result was computed on."""
        return {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "num_classes": self.num_classes,
            "classes": list(self.classes),
            "in_channels": self.in_channels,
            "image_size": list(self.image_size),
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "mean": list(self.mean),
            "std": list(self.std),
            **self._describe_extra(),
            **self.info,
        }


@dataclass(frozen=True, eq=False)
class DataSplits(SplitsSummary):
    """Train / validation / test sets of one dataset, with the train-split normalisation stats.

    Attributes:
        train: training images (the training set minus the held-out validation images).
        val: validation images, held out from the official training set.
        test: the official test set.
        mean: per-channel mean in [0, 1] units, computed on the full train split (before any
            `train_subset`, so a fast profile normalises exactly like the full run).
        std: per-channel standard deviation (population), same pixels as `mean`.
        fingerprint: sha256 hex of the dataset fingerprint and the exact indices of every split,
            so two runs with equal fingerprints saw exactly the same images in each split.
        source: description of the raw files the cache was decoded from.
        info: extra json-able facts for `describe` (dataset fingerprint, split parameters).
    """

    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fingerprint: str
    source: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        """Image channels C (1 for grayscale, 3 for RGB)."""
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """Image height and width (H, W)."""
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])

    def loader(self, dataset: ArrayDataset, batch_size: int, *, train: bool, device: torch.device | str = "cpu",
               channels_last: bool = False, seed: int = 0, shard: tuple[int, int] | None = None) -> Any:
        """Batches of `dataset` (one of these splits or a subset of one), normalised with the
        train split's statistics: shuffled, augmented and without the last incomplete batch if
        `train`. `shard`: ``(rank, world_size)`` of a distributed run (see `Loader`).

        The one place the runner gets its batches from: a dataset streamed from disk offers the
        same method."""
        from prunerep.data.loader import Loader

        return Loader(dataset, batch_size, mean=self.mean, std=self.std, shuffle=train, augment=train,
                      drop_last=train, device=device, channels_last=channels_last, seed=seed, shard=shard)


# --------------------------------------------------------------------------------------------
# Cache file
# --------------------------------------------------------------------------------------------


def dataset_fingerprint(
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    classes: Sequence[str],
) -> str:
    """sha256 hex over the decoded pixels, labels, their shapes and the class names.

    Shapes and class names are hashed too, so a reshaped or relabelled copy of the same bytes
    gets a different fingerprint.
    """
    digest = hashlib.sha256()
    tensors = (train_images, train_labels, test_images, test_labels)
    header = {
        "shapes": [list(t.shape) for t in tensors],
        "dtypes": [str(t.dtype) for t in tensors],
        "classes": [str(c) for c in classes],
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    for tensor in tensors:
        # Hash the tensor memory directly (no .tobytes() copy of ~150 MB).
        digest.update(tensor.detach().cpu().contiguous().numpy().data)
    return digest.hexdigest()


def save_cache(
    out: str | Path,
    *,
    dataset: str,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    classes: Sequence[str],
    source: str,
) -> dict[str, Any]:
    """Validate decoded arrays and write them atomically as a cache file.

    Returns:
        A summary (dataset, sizes, shape, classes, fingerprint, source), without the tensors.
    """
    train = ArrayDataset(train_images.cpu().contiguous(), train_labels.cpu().long(), tuple(classes))
    test = ArrayDataset(test_images.cpu().contiguous(), test_labels.cpu().long(), tuple(classes))
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"train images are {tuple(train.images.shape[1:])} but test images are "
            f"{tuple(test.images.shape[1:])}; both splits must share channels and size"
        )
    for name, part in (("train", train), ("test", test)):
        if len(part) and (part.labels.min() < 0 or part.labels.max() >= len(classes)):
            raise DataError(f"{name} labels fall outside [0, {len(classes)}) for {dataset}")
    fingerprint = dataset_fingerprint(train.images, train.labels, test.images, test.labels, classes)
    payload = {
        "format": CACHE_FORMAT,
        "dataset": dataset,
        "train_images": train.images,
        "train_labels": train.labels,
        "test_images": test.images,
        "test_labels": test.labels,
        "classes": [str(c) for c in classes],
        "fingerprint": fingerprint,
        "source": source,
        # Lets load_splits get train-split mean/std without scanning 45,000 images each time.
        "train_histogram": channel_histogram(train.images),
    }
    atomic_torch_save(payload, Path(out))
    return {
        "dataset": dataset,
        "train": len(train),
        "test": len(test),
        "shape": list(train.images.shape[1:]),
        "classes": [str(c) for c in classes],
        "fingerprint": fingerprint,
        "source": source,
    }


def load_cache(cache_path: str | Path) -> dict[str, Any]:
    """Load a cache file written by `save_cache` (tensors on CPU), checking its format."""
    path = Path(cache_path)
    if not path.is_file():
        raise DataError(
            f"decoded data cache {path} does not exist. Create it with "
            f"`python -m prunerep.data prepare --out {path}` (or `dvc repro`)."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise DataError(
            f"decoded data cache {path} cannot be read ({load_error_reason(err)}). "
            f"Delete it and re-run `python -m prunerep.data prepare --out {path}`."
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise DataError(
            f"{path} is not a prunerep data cache of format {CACHE_FORMAT} (found {found!r}). "
            f"Re-create it with `python -m prunerep.data prepare --out {path}`."
        )
    missing = [k for k in _CACHE_KEYS if k not in payload]
    if missing:
        raise DataError(f"{path} lacks {missing}; re-run `python -m prunerep.data prepare`.")
    return payload


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


def _generator(split_seed: int, purpose: str) -> torch.Generator:
    # One independent CPU generator per purpose: the test subset does not change when the
    # train subset is switched on, and CPU generators give the same draws on every machine.
    seed = int.from_bytes(hashlib.sha256(f"{split_seed}:{purpose}".encode()).digest()[:8], "little")
    return torch.Generator().manual_seed(seed & ((1 << 63) - 1))


def _stratified_quota(counts: torch.Tensor, n: int) -> torch.Tensor:
    """Split `n` over classes in proportion to `counts` (largest-remainder rounding)."""
    total = int(counts.sum())
    exact = counts.double() * n / total
    quota = exact.floor().long()
    remainder = n - int(quota.sum())
    if remainder > 0:
        # Stable sort: ties in the fractional part go to the lower class index.
        order = torch.sort(exact - quota.double(), descending=True, stable=True).indices
        quota[order[:remainder]] += 1
    return torch.minimum(quota, counts)


def stratified_pick(labels: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Pick `n` positions of `labels`, class-stratified, at random; sorted ascending.

    Args:
        labels: int64 [N] class labels.
        n: how many to pick (0 <= n <= N).
        generator: CPU generator; the draw depends only on it and `labels`.

    Returns:
        int64 positions, ascending.
    """
    labels = labels.cpu()
    if not 0 <= n <= labels.numel():
        raise ValueError(f"cannot pick {n} of {labels.numel()} samples")
    num_classes = int(labels.max()) + 1 if labels.numel() else 0
    counts = torch.bincount(labels, minlength=num_classes)
    quota = _stratified_quota(counts, n) if n else torch.zeros_like(counts)
    picked = []
    for c in range(num_classes):
        if quota[c] == 0:
            continue
        members = torch.nonzero(labels == c).flatten()
        perm = torch.randperm(members.numel(), generator=generator)
        picked.append(members[perm[: int(quota[c])]])
    if not picked:
        return torch.empty(0, dtype=torch.long)
    return torch.sort(torch.cat(picked)).values


def channel_histogram(images: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Per-channel counts of the 256 pixel values of uint8 images, int64 [C, 256]."""
    channels = images.shape[1]
    hist = torch.zeros(channels, 256, dtype=torch.int64)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].cpu()
        for c in range(channels):
            hist[c] += torch.bincount(block[:, c].reshape(-1), minlength=256)
    return hist


def stats_from_histogram(hist: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std, in [0, 1] units, of a [C, 256] value histogram."""
    hist = hist.double()
    values = torch.arange(256, dtype=torch.float64) / 255.0
    total = hist.sum(dim=1).clamp_min(1)
    mean = (hist * values).sum(dim=1) / total
    var = (hist * (values[None, :] - mean[:, None]) ** 2).sum(dim=1) / total
    return tuple(mean.tolist()), tuple(var.sqrt().tolist())


def channel_stats(
    images: torch.Tensor, chunk: int = 4096
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and population std of uint8 images, in [0, 1] units.

    Computed from value histograms, so the result does not depend on summation order (hence not
    on chunking or device), and the stats of "train minus validation" are a subtraction.
    """
    return stats_from_histogram(channel_histogram(images, chunk))


def _indices_digest(*indices: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for idx in indices:
        digest.update(idx.to(torch.int64).contiguous().numpy().data)
        digest.update(b"|")
    return digest.hexdigest()


def _check_subset(name: str, value: int | None, available: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be None or an integer >= 0, got {value!r}")
    # A subset larger than the split is just the split (e.g. a `default` profile on a small set).
    return min(value, available)


def load_splits(
    cache_path: str | Path,
    *,
    val_size: int = 5000,
    split_seed: int = 0,
    train_subset: int | None = None,
    val_subset: int | None = None,
    test_subset: int | None = None,
) -> DataSplits:
    """Load a decoded cache and split it into train / validation / test.

    The validation set is held out of the official training set, class-stratified, drawn with a
    generator seeded by `split_seed` (never the global RNG). Subsets (for fast profiles) are
    class-stratified draws from their split, also deterministic. All tensors are on CPU; the
    loaders move them to the device.

    Args:
        cache_path: file written by `python -m prunerep.data prepare`.
        val_size: images held out of the training set for validation.
        split_seed: seed of the hold-out and the subsets.
        train_subset: keep only this many training images (None: all).
        val_subset: keep only this many validation images (None: all).
        test_subset: keep only this many test images (None: all).

    Returns:
        The splits, with mean/std from the (full) train split and a fingerprint of the split.
    """
    payload = load_cache(cache_path)
    classes = tuple(payload["classes"])
    full_train = ArrayDataset(payload["train_images"], payload["train_labels"], classes)
    test = ArrayDataset(payload["test_images"], payload["test_labels"], classes)
    n_full = len(full_train)
    if isinstance(val_size, bool) or not isinstance(val_size, int) or not 0 <= val_size < n_full:
        raise DataError(
            f"data.val_size={val_size!r} must be an integer in [0, {n_full}) for this dataset "
            f"({n_full} training images); lower data.val_size in params.yaml"
        )

    val_idx = stratified_pick(full_train.labels, val_size, _generator(split_seed, "val"))
    keep = torch.ones(n_full, dtype=torch.bool)
    keep[val_idx] = False
    train_idx = torch.nonzero(keep).flatten()
    test_idx = torch.arange(len(test))

    # Normalisation stats come from the full train split so subsets normalise identically.
    # hist(train split) = hist(official train set, stored by prepare) - hist(validation): only
    # the 5,000 validation images are scanned here.
    full_hist = payload.get("train_histogram")
    expected_shape = (full_train.images.shape[1], 256)
    if not isinstance(full_hist, torch.Tensor) or tuple(full_hist.shape) != expected_shape:
        full_hist = channel_histogram(full_train.images)
    mean, std = stats_from_histogram(full_hist - channel_histogram(full_train.images[val_idx]))

    clamped: dict[str, list[int]] = {}

    def pick(
        name: str, value: int | None, base: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        n = _check_subset(name, value, base.numel())
        if value is not None and n is not None and n < value:
            # Not silent: the record says what was asked and what was used (a fast profile's
            # subset on a small dataset of one's own is the whole split, e.g. .ci/other_shape).
            split = name.removesuffix("_subset")
            clamped[split] = [value, n]
            log.warning("subset.%s: %d images asked, the %s split has %d: using all %d (lower "
                        "subset.%s or set it to null to silence this)", split, value, split, n, n, split)
        if n is None or n == base.numel():
            return base
        return base[stratified_pick(labels[base], n, _generator(split_seed, name))]

    train_idx = pick("train_subset", train_subset, train_idx, full_train.labels)
    val_idx = pick("val_subset", val_subset, val_idx, full_train.labels)
    test_idx = pick("test_subset", test_subset, test_idx, test.labels)

    # Identify the data actually selected (dataset + exact indices), so two requests that
    # select the same images (e.g. a subset larger than its split, or none) share a fingerprint.
    identity = {
        "dataset_fingerprint": payload["fingerprint"],
        "sizes": [train_idx.numel(), val_idx.numel(), test_idx.numel()],
        "indices_sha256": _indices_digest(train_idx, val_idx, test_idx),
    }
    fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    info = {
        "dataset": str(payload.get("dataset", "")),
        "dataset_fingerprint": payload["fingerprint"],
        "val_size": val_size,
        "split_seed": split_seed,
        "train_subset": train_subset,
        "val_subset": val_subset,
        "test_subset": test_subset,
    }
    if clamped:  # only then, so that the record of every other run stays as it was
        info["subset_clamped"] = clamped    # split -> [asked, used]
    return DataSplits(
        train=full_train.subset(train_idx),
        val=full_train.subset(val_idx),
        test=test if test_idx.numel() == len(test) else test.subset(test_idx),
        mean=mean,
        std=std,
        fingerprint=fingerprint,
        source=str(payload.get("source", "")),
        info=info,
    )
