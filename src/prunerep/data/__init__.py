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
"""

from prunerep.data.arrays import ArrayDataset, DataSplits, load_splits
from prunerep.data.config import DataConfig, DataError
from prunerep.data.loader import Loader, loaders
from prunerep.data.sources import fetch_raw, prepare_cache

__all__ = [
    "ArrayDataset",
    "DataConfig",
    "DataError",
    "DataSplits",
    "Loader",
    "fetch_raw",
    "load_splits",
    "loaders",
    "prepare_cache",
]
