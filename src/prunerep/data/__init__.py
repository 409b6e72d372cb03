"""Data layer: fetch raw CIFAR-style datasets, decode them once, split and batch them in memory;
stream ImageNet and Pascal VOC 2012 from disk (`streaming`, `voc`).

Typical use::

    from prunerep.data import DataConfig, fetch_raw, prepare_cache, load_splits, loaders

    cfg = DataConfig()                                   # the `data` section of params.yaml
    fetch_raw(cfg)                                       # raw files -> data/cifar10/
    prepare_cache(cfg, "artifacts/data/cifar10.pt")      # decode once -> uint8 tensors
    splits = load_splits("artifacts/data/cifar10.pt", val_size=cfg.val_size,
                         split_seed=cfg.split_seed)
    train, val, test = loaders(splits, 128, device="cuda", channels_last=True, seed=0)

From the shell: ``python -m prunerep.data fetch`` and
``python -m prunerep.data prepare --out artifacts/data/cifar10.pt``.

Nothing downstream assumes a dataset or a shape: trace and count models on
``example_shape(splits)``, caption results with ``describe_data(cfg, splits)``, and show a
paper's number only where ``paper_dataset_matches(cfg, paper_dataset)``.
``python -m prunerep.data synthetic --out DIR`` writes a small image folder of any shape.
"""

from prunerep.data.arrays import ArrayDataset, DataSplits, load_splits
from prunerep.data.config import DataConfig, DataError, SubsetConfig
from prunerep.data.describe import (
    dataset_display_name,
    describe_data,
    example_shape,
    format_shape,
    paper_dataset_matches,
)
from prunerep.data.loader import Loader, loaders
from prunerep.data.sources import fetch_raw, prepare_cache
from prunerep.data.streaming import FileDataset, FolderSplits, StreamLoader, imagenet_splits
from prunerep.data.synthetic import SyntheticSpec, write_synthetic

__all__ = [
    "STREAMED_DATASETS",
    "ArrayDataset",
    "DataConfig",
    "DataError",
    "DataSplits",
    "FileDataset",
    "FolderSplits",
    "Loader",
    "StreamLoader",
    "SubsetConfig",
    "SyntheticSpec",
    "dataset_display_name",
    "describe_data",
    "example_shape",
    "fetch_raw",
    "format_shape",
    "imagenet_splits",
    "load_data",
    "load_splits",
    "loaders",
    "paper_dataset_matches",
    "prepare_cache",
    "write_synthetic",
]


_WHOLE_SPLITS = SubsetConfig()

# data.dataset names that are streamed from data.source (never decoded into a cache).
STREAMED_DATASETS = ("imagenet", "voc2012")


def load_data(
    data_cfg: DataConfig, subset: SubsetConfig = _WHOLE_SPLITS, cache: str | None = None
) -> DataSplits | FolderSplits:
    """The dataset of `data_cfg`, split into train / val / test as `data_cfg` and `subset` say.

    ``data.dataset: imagenet`` and ``voc2012`` are streamed from the folder ``data.source``
    (`FolderSplits`, see `prunerep.data.streaming` and `prunerep.data.voc`); every other dataset
    is the decoded cache (default: `prunerep.paths.DATASET_CACHE`), held in memory (`DataSplits`).
    Both offer the same attributes and ``loader(...)``.
    """
    if data_cfg.name in STREAMED_DATASETS:
        return _streamed(data_cfg, subset)
    from prunerep.paths import DATASET_CACHE

    return load_splits(cache or DATASET_CACHE, val_size=data_cfg.val_size, split_seed=data_cfg.split_seed,
                       train_subset=subset.train, val_subset=subset.val, test_subset=subset.test)


def _streamed(data_cfg: DataConfig, subset: SubsetConfig) -> FolderSplits:
    from pathlib import Path

    from prunerep.data.sources import find_root
    from prunerep.data.voc import voc_splits

    source = Path(data_cfg.source).expanduser()
    root = source if source.is_absolute() else find_root() / source  # relative to the repository
    build = imagenet_splits if data_cfg.name == "imagenet" else voc_splits
    return build(root, val_size=data_cfg.val_size, split_seed=data_cfg.split_seed,
                 subsets=(subset.train, subset.val, subset.test), dataset=data_cfg.name)
