"""Tiny synthetic datasets in every raw layout the data layer accepts (shared by test_data_*)."""

from __future__ import annotations

import hashlib
import pickle
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("cat", "dog", "frog")


@dataclass
class Tiny:
    """Images uint8 [N, C, H, W] and labels, ordered by class then file name."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...] = CLASSES


def make_tiny(
    *,
    per_class_train: int = 4,
    per_class_test: int = 2,
    channels: int = 3,
    size: int | tuple[int, int] = 8,
    seed: int = 0,
) -> Tiny:
    """Random images sorted by class (the order every layout decodes to)."""
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    h, w = (size, size) if isinstance(size, int) else size

    def part(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.integers(0, 256, (per_class * k, channels, h, w), dtype=np.uint8)
        y = np.repeat(np.arange(k), per_class).astype(np.int64)
        return x, y

    train_x, train_y = part(per_class_train)
    test_x, test_y = part(per_class_test)
    return Tiny(train_x, train_y, test_x, test_y)


def write_batches(tiny: Tiny, folder: Path, *, cifar100: bool = False, n_batches: int = 2) -> Path:
    """Official CIFAR python-pickle layout (bytes keys, like the original Python 2 pickles)."""
    folder.mkdir(parents=True)

    def dump(name: str, obj: dict) -> None:
        with (folder / name).open("wb") as fh:
            pickle.dump(obj, fh, protocol=2)

    label_key = b"fine_labels" if cifar100 else b"labels"
    flat_train = tiny.train_x.reshape(len(tiny.train_x), -1)
    if cifar100:
        dump(
            "train",
            {
                b"data": flat_train,
                label_key: tiny.train_y.tolist(),
                b"coarse_labels": [0] * len(flat_train),
            },
        )
        dump(
            "test",
            {b"data": tiny.test_x.reshape(len(tiny.test_x), -1), label_key: tiny.test_y.tolist()},
        )
        dump(
            "meta",
            {
                b"fine_label_names": [c.encode() for c in tiny.classes],
                b"coarse_label_names": [b"x"],
            },
        )
        return folder
    for i, rows in enumerate(np.array_split(np.arange(len(flat_train)), n_batches), start=1):
        dump(
            f"data_batch_{i}",
            {
                b"data": flat_train[rows],
                label_key: tiny.train_y[rows].tolist(),
                b"batch_label": b"x",
            },
        )
    dump(
        "test_batch",
        {b"data": tiny.test_x.reshape(len(tiny.test_x), -1), label_key: tiny.test_y.tolist()},
    )
    dump(
        "batches.meta", {b"label_names": [c.encode() for c in tiny.classes], b"num_vis": 3 * 8 * 8}
    )
    return folder


def write_tar_gz(folder: Path, out: Path) -> Path:
    """tar.gz of `folder` with the folder itself as the single top-level entry."""
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return out


def write_image_folder(tiny: Tiny, folder: Path, ext: str = "png") -> Path:
    """train/<class>/NNNN.<ext> and test/<class>/NNNN.<ext> (grayscale if C == 1)."""
    for split, xs, ys in (
        ("train", tiny.train_x, tiny.train_y),
        ("test", tiny.test_x, tiny.test_y),
    ):
        counters = dict.fromkeys(range(len(tiny.classes)), 0)
        for x, y in zip(xs, ys, strict=True):
            d = folder / split / tiny.classes[int(y)]
            d.mkdir(parents=True, exist_ok=True)
            hwc = x.transpose(1, 2, 0)
            img = Image.fromarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc)
            img.save(d / f"{counters[int(y)]:04d}.{ext}")
            counters[int(y)] += 1
    return folder


def write_zip(folder: Path, out: Path, *, top_level: bool = True) -> Path:
    """Zip of `folder`'s files, under one top-level folder (like cifar10-jpeg.zip) or flat."""
    with zipfile.ZipFile(out, "w") as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = path.relative_to(folder.parent if top_level else folder)
            zf.write(path, rel.as_posix())
    return out


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()
