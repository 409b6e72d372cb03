"""The `data` section of params.yaml, and the one exception the data layer raises."""

from __future__ import annotations

from dataclasses import dataclass

from prunerep.config import register_section


class DataError(ValueError):
    """Raw data or cache is missing, of an unknown layout, corrupt, or fails its checksum.

    The message names the file or params key at fault and how to fix it.
    """


# Prefix that names a torchvision dataset class, e.g. "torchvision:SVHN".
TORCHVISION_PREFIX = "torchvision:"


def dataset_dir_name(dataset: str) -> str:
    """Name of the raw-data folder `data/<name>` and of the decoded cache for a dataset.

    Args:
        dataset: ``cifar10``, ``cifar100`` or ``torchvision:<Class>``.

    Returns:
        The lower-cased dataset name without the ``torchvision:`` prefix (``svhn`` for
        ``torchvision:SVHN``).
    """
    name = dataset[len(TORCHVISION_PREFIX) :] if dataset.startswith(TORCHVISION_PREFIX) else dataset
    return name.strip().lower()


@dataclass(frozen=True)
class SubsetConfig:
    """Fast profiles shrink the data (never the method): class-stratified subsets of each split."""

    train: int | None = None
    val: int | None = None
    test: int | None = None

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: {value} images; give a positive number, or null for the whole split")


@register_section("data")
@dataclass(frozen=True)
class DataConfig:
    """Which dataset to use, where its raw files come from, and how validation is held out.

    Attributes:
        dataset: ``cifar10``, ``cifar100`` or ``torchvision:<Class>`` (e.g. ``torchvision:SVHN``).
        source: Where `python -m prunerep.data fetch` gets the raw files: ``download`` (the
            official archive, checksum verified), ``torchvision:<Class>``, or a local copy (a
            ``cifar-10-python.tar.gz``, an extracted batches folder, or an image folder
            ``train/<class>/*``, ``test/<class>/*`` as a directory or zip). Relative paths are
            relative to the repository root.
        val_size: Number of training images held out (class-stratified) for validation.
        split_seed: Seed of the validation hold-out and of the fast-profile subsets.
    """

    dataset: str = "cifar10"
    source: str = "../shared/datasets/cifar10-jpeg.zip"
    val_size: int = 5000
    split_seed: int = 0

    def __post_init__(self) -> None:
        # Fail at config time, not an hour into a run, on values that can never work.
        if not isinstance(self.dataset, str) or not dataset_dir_name(self.dataset):
            raise ValueError(f"data.dataset must be a non-empty string, got {self.dataset!r}")
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError(
                f"data.source must be `download`, `torchvision:<Class>` or a path, got {self.source!r}"
            )
        if (
            isinstance(self.val_size, bool)
            or not isinstance(self.val_size, int)
            or self.val_size < 0
        ):
            raise ValueError(f"data.val_size must be an integer >= 0, got {self.val_size!r}")
        if isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int):
            raise ValueError(f"data.split_seed must be an integer, got {self.split_seed!r}")

    @property
    def name(self) -> str:
        """Folder name of the raw data, ``data/<name>`` (``svhn`` for ``torchvision:SVHN``)."""
        return dataset_dir_name(self.dataset)
