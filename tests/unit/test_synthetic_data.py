"""The synthetic image folder: written by code, read back through the data layer like any source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prunerep.data import (
    DataConfig,
    DataError,
    SyntheticSpec,
    describe_data,
    example_shape,
    fetch_raw,
    load_splits,
    prepare_cache,
    write_synthetic,
)
from prunerep.data import __main__ as cli


def _prepare(tmp_path: Path, folder: Path, *, dataset: str = "shapes", val_size: int = 70):
    cfg = DataConfig(dataset=dataset, source=str(folder), val_size=val_size)
    fetch_raw(cfg, root=tmp_path / "repo")
    summary = prepare_cache(cfg, tmp_path / "cache.pt", root=tmp_path / "repo")
    return cfg, summary, load_splits(tmp_path / "cache.pt", val_size=val_size)


def test_cli_writes_an_image_folder_the_data_layer_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "shapes"
    assert cli.main(["synthetic", "--out", str(out), "--train-per-class", "30",
                     "--test-per-class", "10"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["shape"] == [1, 28, 28] and len(printed["classes"]) == 7
    assert sorted(p.name for p in out.iterdir()) == ["test", "train"]
    assert len(list((out / "train" / "class0").glob("*.png"))) == 30

    cfg, summary, splits = _prepare(tmp_path, out)
    assert summary["shape"] == [1, 28, 28]
    assert "PNG" in summary["source"]
    assert splits.in_channels == 1 and splits.image_size == (28, 28)
    assert splits.num_classes == 7 and splits.classes == tuple(f"class{k}" for k in range(7))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (140, 70, 70)
    assert splits.val.class_counts().tolist() == [10] * 7
    assert splits.test.class_counts().tolist() == [10] * 7
    assert example_shape(splits) == (1, 1, 28, 28)
    line = describe_data(cfg, splits)
    assert line.startswith(f"shapes (PNG image folder at {out}), 1x28x28, 7 classes;")
    assert line.endswith("train 140 / val 70 / test 70 images")


def test_same_seed_same_pixels_other_seed_other_pixels(tmp_path: Path) -> None:
    spec = SyntheticSpec(classes=3, train_per_class=4, test_per_class=2, size=12)
    prints = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        write_synthetic(tmp_path / name, SyntheticSpec(**{**spec.__dict__, "seed": seed}))
        cfg = DataConfig(dataset="s", source=str(tmp_path / name), val_size=3)
        prints.append(prepare_cache(cfg, tmp_path / f"{name}.pt", raw=tmp_path / name)["fingerprint"])
    assert prints[0] == prints[1] != prints[2]


def test_other_shapes_and_class_counts(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "rgb", SyntheticSpec(channels=3, size=16, classes=8,
                                                    train_per_class=3, test_per_class=1))
    _, _, splits = _prepare(tmp_path, tmp_path / "rgb", val_size=8)
    assert example_shape(splits) == (1, 3, 16, 16)
    assert splits.num_classes == 8
    assert splits.classes[-1] == "class7"


def _stripe_spectrum(images: np.ndarray) -> np.ndarray:
    x = images[:, 0].astype(np.float64)
    x = x - x.mean(axis=(1, 2), keepdims=True)
    down = np.abs(np.fft.rfft(x, axis=1)).mean(axis=2)
    across = np.abs(np.fft.rfft(x, axis=2)).mean(axis=1)
    return np.concatenate([down, across], axis=1)


def test_classes_are_learnable_and_survive_a_horizontal_flip(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "shapes", SyntheticSpec(train_per_class=20, test_per_class=20))
    _, _, splits = _prepare(tmp_path, tmp_path / "shapes", val_size=7)
    train, labels = _stripe_spectrum(splits.train.images.numpy()), splits.train.labels.numpy()
    centroids = np.stack([train[labels == k].mean(axis=0) for k in range(7)])
    test_images = splits.test.images.numpy()
    for images in (test_images, test_images[..., ::-1]):  # the loaders flip images left-right
        feats = _stripe_spectrum(images)
        pred = ((feats[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
        accuracy = (pred == splits.test.labels.numpy()).mean()
        assert accuracy > 0.9, accuracy  # chance is 1/7


def test_a_named_dataset_must_have_its_shape(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "ten", SyntheticSpec(classes=10, train_per_class=2, test_per_class=1))
    cfg = DataConfig(dataset="cifar10", source=str(tmp_path / "ten"))
    with pytest.raises(DataError, match=r"data\.dataset is 'cifar10' \(3x32x32 images\).*1x28x28"):
        prepare_cache(cfg, tmp_path / "x.pt", raw=tmp_path / "ten")
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": 15}, r"--classes 15 is more than 14"),
        ({"channels": 2}, r"--channels must be one of"),
        ({"size": 4}, r"--size must be an integer >= 8"),
        ({"train_per_class": 0}, r"--train-per-class must be an integer >= 1"),
    ],
)
def test_bad_spec_names_the_option(kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        SyntheticSpec(**kwargs)


def test_refuses_a_non_empty_out_folder_and_leaves_it_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    assert cli.main(["synthetic", "--out", str(tmp_path / "busy")]) == 2
    assert "--out" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".busy")]  # no temp left
