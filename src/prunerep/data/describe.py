"""What the data is, read from the data: captions, example input shapes, paper-dataset matching.

Nothing downstream may assume a dataset, a channel count or an image size: a model is traced and
counted on ``example_shape(splits)``, a caption says ``describe_data(data_cfg, splits)``, and a
paper's printed number is shown only where ``paper_dataset_matches(data_cfg, paper_dataset)``.
"""

from __future__ import annotations

import re

from prunerep.data.arrays import DataSplits
from prunerep.data.config import TORCHVISION_PREFIX, DataConfig, DataError, dataset_dir_name

# Display names of the datasets the papers report on (keys: normalised names, see `_normalise`).
DISPLAY_NAMES: dict[str, str] = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "imagenet": "ImageNet",
    "voc2012": "PASCAL VOC 2012",
}


def _normalise(dataset: str) -> str:
    """``cifar10`` for ``cifar10``, ``CIFAR-10``, ``torchvision:CIFAR10``, ``cifar_10``."""
    return re.sub(r"[\s_-]", "", dataset_dir_name(dataset))


def dataset_display_name(dataset: str) -> str:
    """Human name of a dataset: ``CIFAR-10`` for ``cifar10``; other names as given.

    Args:
        dataset: a ``data.dataset`` value or a paper's dataset key (``cifar10``, ``imagenet``, ...).
    """
    known = DISPLAY_NAMES.get(_normalise(dataset))
    if known is not None:
        return known
    if dataset.startswith(TORCHVISION_PREFIX):
        return f"{dataset[len(TORCHVISION_PREFIX):].strip()} (torchvision)"
    return dataset.strip()


def paper_dataset_matches(data_cfg: DataConfig, paper_dataset: str) -> bool:
    """True if the user's dataset is the one a paper reports on.

    ``cifar10`` matches ``data.dataset: cifar10`` (or ``torchvision:CIFAR10``) whatever copy
    ``data.source`` names (the official archive, the JPEG copy, an image folder); any other
    dataset name does not, whatever its shape or class count.

    Args:
        data_cfg: the ``data`` section of params.yaml.
        paper_dataset: the paper's dataset key, e.g. ``cifar10``, ``cifar100``, ``imagenet``.
    """
    if not isinstance(paper_dataset, str) or not paper_dataset.strip():
        raise ValueError(f"paper dataset must be a non-empty string, got {paper_dataset!r}")
    return _normalise(data_cfg.dataset) == _normalise(paper_dataset)


def example_shape(splits: DataSplits) -> tuple[int, int, int, int]:
    """``(1, C, H, W)`` of the data: the example input every model is traced and counted on."""
    h, w = splits.image_size
    return 1, splits.in_channels, h, w


def format_shape(shape: tuple[int, ...]) -> str:
    """``1x3x32x32`` for ``(1, 3, 32, 32)``: how captions print an input shape."""
    return "x".join(str(int(d)) for d in shape)


def _image_kind(record: str) -> str:
    """What the cache's source record says the raw files were, e.g. ``JPEG image folder``."""
    if "image-folder" in record:
        found = re.search(r"image-folder of ([A-Z0-9/]+) files", record)
        return f"{found.group(1)} image folder" if found else "image folder"
    if "batches" in record:
        return "python batches"
    return "copy"


def _source_phrase(data_cfg: DataConfig, record: str) -> str:
    source = data_cfg.source.strip()
    if source.lower() == "download":
        return "official archive, downloaded"
    if source.startswith(TORCHVISION_PREFIX) or record.startswith("torchvision.datasets."):
        cls = source[len(TORCHVISION_PREFIX):].strip() if source.startswith(TORCHVISION_PREFIX) else ""
        return f"torchvision.datasets.{cls}" if cls else record
    return f"{_image_kind(record)} at {source}"


def describe_data(data_cfg: DataConfig, splits: DataSplits) -> str:
    """One-line caption of the data a result was computed on, read from the data itself.

    E.g. ``CIFAR-10 (JPEG image folder at ../shared/datasets/cifar10-jpeg.zip), 3x32x32,
    10 classes; train 45,000 / val 5,000 / test 10,000 images``. Split sizes are those of
    `splits`, i.e. after any subset of a fast profile.

    Args:
        data_cfg: the ``data`` section of params.yaml the cache was prepared from.
        splits: the loaded splits (`load_splits` / `load_data`).

    Raises:
        DataError: the cache was prepared for another ``data.dataset`` than `data_cfg` names.
    """
    cached = str(splits.info.get("dataset") or "")
    if cached and cached != data_cfg.name:
        raise DataError(
            f"the decoded data cache holds dataset {cached!r} but data.dataset is "
            f"{data_cfg.dataset!r}; re-create the cache with `dvc repro data` (or "
            f"`python -m prunerep.data prepare`) after changing data.dataset / data.source"
        )
    _, c, h, w = example_shape(splits)
    return (
        f"{dataset_display_name(data_cfg.dataset)} ({_source_phrase(data_cfg, splits.source)}), "
        f"{c}x{h}x{w}, {splits.num_classes} classes; train {len(splits.train):,} / "
        f"val {len(splits.val):,} / test {len(splits.test):,} images"
    )
