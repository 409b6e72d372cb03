"""Data layer: fetch raw CIFAR-style datasets, decode them once, split and batch them in memory.

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
from prunerep.data.synthetic import SyntheticSpec, write_synthetic

__all__ = [
    "ArrayDataset",
    "DataConfig",
    "DataError",
    "DataSplits",
    "Loader",
    "SubsetConfig",
    "SyntheticSpec",
    "dataset_display_name",
    "describe_data",
    "example_shape",
    "fetch_raw",
    "format_shape",
    "load_data",
    "load_splits",
    "loaders",
    "paper_dataset_matches",
    "prepare_cache",
    "write_synthetic",
]


_WHOLE_SPLITS = SubsetConfig()


def load_data(data_cfg: DataConfig, subset: SubsetConfig = _WHOLE_SPLITS, cache: str | None = None) -> DataSplits:
    """The decoded dataset cache (default: `prunerep.paths.DATASET_CACHE`), split into train / val /
    test as `data_cfg` and `subset` say."""
    from prunerep.paths import DATASET_CACHE

    return load_splits(cache or DATASET_CACHE, val_size=data_cfg.val_size, split_seed=data_cfg.split_seed,
                       train_subset=subset.train, val_subset=subset.val, test_subset=subset.test)
