"""Decoded cache, ArrayDataset and the train/val/test split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prunerep.data import ArrayDataset, DataError, load_splits
from prunerep.data.arrays import channel_stats, save_cache, stratified_pick

CLASS_SIZES = (50, 30, 20)  # unbalanced on purpose: stratification must follow the proportions


def ids_of(images: torch.Tensor) -> set[int]:
    """Sample ids written into the first two pixels by `write_cache`."""
    return set((images[:, 0, 0, 0].long() + 256 * images[:, 0, 0, 1].long()).tolist())


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    gen = torch.Generator().manual_seed(0)
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate(CLASS_SIZES)])
    labels = labels[torch.randperm(labels.numel(), generator=gen)]  # classes interleaved
    n = labels.numel()
    images = torch.randint(0, 256, (n, 3, 4, 4), generator=gen, dtype=torch.uint8)
    ids = torch.arange(n)
    images[:, 0, 0, 0] = (ids % 256).to(torch.uint8)
    images[:, 0, 0, 1] = (ids // 256).to(torch.uint8)
    test_labels = torch.arange(3).repeat_interleave(10)
    test_images = torch.randint(0, 256, (30, 3, 4, 4), generator=gen, dtype=torch.uint8)
    test_images[:, 0, 0, 0] = torch.arange(30).to(torch.uint8)
    test_images[:, 0, 0, 1] = 0
    path = tmp_path / "cache.pt"
    save_cache(
        path,
        dataset="synthetic",
        train_images=images,
        train_labels=labels,
        test_images=test_images,
        test_labels=test_labels,
        classes=["a", "b", "c"],
        source="synthetic",
    )
    return path


def test_split_is_stratified_disjoint_and_complete(cache: Path) -> None:
    s = load_splits(cache, val_size=20, split_seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (80, 20, 30)
    assert s.val.class_counts().tolist() == [10, 6, 4]  # 20 * (50, 30, 20) / 100
    assert s.train.class_counts().tolist() == [40, 24, 16]
    train_ids, val_ids = ids_of(s.train.images), ids_of(s.val.images)
    assert not train_ids & val_ids
    assert train_ids | val_ids == set(range(100))
    # Labels travel with their images.
    full = torch.load(cache, weights_only=True)
    for part in (s.train, s.val):
        for img, label in zip(part.images[:5], part.labels[:5], strict=True):
            sid = int(img[0, 0, 0]) + 256 * int(img[0, 0, 1])
            assert int(full["train_labels"][sid]) == int(label)


def test_split_is_deterministic_per_seed(cache: Path) -> None:
    a = load_splits(cache, val_size=20, split_seed=0)
    b = load_splits(cache, val_size=20, split_seed=0)
    c = load_splits(cache, val_size=20, split_seed=1)
    assert torch.equal(a.val.images, b.val.images) and a.fingerprint == b.fingerprint
    assert ids_of(a.val.images) != ids_of(c.val.images)
    assert a.fingerprint != c.fingerprint
    assert a.fingerprint != load_splits(cache, val_size=21, split_seed=0).fingerprint


def test_split_does_not_touch_global_rng(cache: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_splits(cache, val_size=20, split_seed=0, train_subset=10)
    assert torch.equal(torch.rand(3), expected)


def test_subsets_are_stratified_deterministic_and_inside_their_split(cache: Path) -> None:
    full = load_splits(cache, val_size=20, split_seed=0)
    a = load_splits(
        cache, val_size=20, split_seed=0, train_subset=40, val_subset=10, test_subset=12
    )
    b = load_splits(
        cache, val_size=20, split_seed=0, train_subset=40, val_subset=10, test_subset=12
    )
    assert (len(a.train), len(a.val), len(a.test)) == (40, 10, 12)
    assert a.train.class_counts().tolist() == [20, 12, 8]
    assert a.val.class_counts().tolist() == [5, 3, 2]
    assert a.test.class_counts().tolist() == [4, 4, 4]
    assert torch.equal(a.train.images, b.train.images) and a.fingerprint == b.fingerprint
    assert ids_of(a.train.images) <= ids_of(full.train.images)
    assert ids_of(a.val.images) <= ids_of(full.val.images)
    # The test subset does not depend on whether the other subsets are on.
    only_test = load_splits(cache, val_size=20, split_seed=0, test_subset=12)
    assert torch.equal(only_test.test.images, a.test.images)
    # Normalisation stats come from the full train split, not the subset.
    assert a.mean == full.mean and a.std == full.std
    assert a.fingerprint != full.fingerprint
    # A subset at least as large as its split is the split.
    big = load_splits(cache, val_size=20, split_seed=0, test_subset=1000)
    assert len(big.test) == 30


def test_mean_std_and_properties(cache: Path) -> None:
    s = load_splits(cache, val_size=20, split_seed=0)
    x = s.train.images.double() / 255
    assert torch.allclose(
        torch.tensor(s.mean, dtype=torch.float64), x.mean(dim=(0, 2, 3)), atol=1e-12
    )
    assert torch.allclose(
        torch.tensor(s.std, dtype=torch.float64), x.std(dim=(0, 2, 3), unbiased=False), atol=1e-12
    )
    assert s.num_classes == 3 and s.in_channels == 3 and s.image_size == (4, 4)
    record = s.describe()
    json.dumps(record)
    assert record["sizes"] == {"train": 80, "val": 20, "test": 30}
    assert record["fingerprint"] == s.fingerprint and record["source"] == "synthetic"
    assert record["val_size"] == 20 and record["split_seed"] == 0


def test_channel_stats_known_values() -> None:
    images = torch.zeros(4, 2, 2, 2, dtype=torch.uint8)
    images[:, 1] = 255
    images[:2, 0] = 255
    mean, std = channel_stats(images, chunk=3)
    assert mean == pytest.approx((0.5, 1.0)) and std == pytest.approx((0.5, 0.0))


def test_val_size_zero_and_too_large(cache: Path) -> None:
    s = load_splits(cache, val_size=0)
    assert len(s.val) == 0 and s.val.images.shape == (0, 3, 4, 4)
    with pytest.raises(DataError, match="val_size"):
        load_splits(cache, val_size=100)


def test_stratified_pick_rounding() -> None:
    labels = torch.tensor([0] * 7 + [1] * 2 + [2] * 1)
    picked = stratified_pick(labels, 5, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[picked], minlength=3).tolist() == [4, 1, 0]  # 3.5, 1.0, 0.5
    assert torch.equal(picked, picked.sort().values) and picked.unique().numel() == 5


def test_bad_cache_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist.*prepare"):
        load_splits(tmp_path / "missing.pt")
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="not a prunerep data cache"):
        load_splits(tmp_path / "other.pt")
    (tmp_path / "broken.pt").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot be read"):
        load_splits(tmp_path / "broken.pt")


def test_array_dataset_checks_and_subset() -> None:
    images = torch.arange(2 * 1 * 2 * 2, dtype=torch.uint8).view(2, 1, 2, 2)
    ds = ArrayDataset(images, torch.tensor([1, 0]), ["x", "y"])
    assert ds.classes == ("x", "y") and len(ds) == 2
    sub = ds.subset(torch.tensor([1]))
    assert torch.equal(sub.images[0], images[1]) and sub.labels.tolist() == [0]
    with pytest.raises(ValueError, match="uint8"):
        ArrayDataset(images.float(), torch.tensor([1, 0]), ("x", "y"))
    with pytest.raises(ValueError, match="int64"):
        ArrayDataset(images, torch.tensor([1, 0], dtype=torch.int32), ("x", "y"))


def test_stats_without_stored_histogram(cache: Path) -> None:
    # Caches without the stored train histogram (e.g. written by hand) get the same stats.
    with_hist = load_splits(cache, val_size=20)
    payload = torch.load(cache, weights_only=True)
    del payload["train_histogram"]
    torch.save(payload, cache)
    without = load_splits(cache, val_size=20)
    assert without.mean == pytest.approx(with_hist.mean, abs=1e-12)
    assert without.std == pytest.approx(with_hist.std, abs=1e-12)
    assert without.fingerprint == with_hist.fingerprint


def test_fingerprint_identifies_the_selected_images(cache: Path) -> None:
    plain = load_splits(cache, val_size=20)
    assert load_splits(cache, val_size=20, test_subset=10_000).fingerprint == plain.fingerprint
    assert load_splits(cache, val_size=20, test_subset=29).fingerprint != plain.fingerprint
    assert load_splits(cache, val_size=20, split_seed=1).fingerprint != plain.fingerprint
