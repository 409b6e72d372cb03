"""Captions and shapes read from the data; the paper-row policy (a paper's number only beside a
result on the paper's dataset)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prunerep.data import (
    DataConfig,
    DataError,
    dataset_display_name,
    describe_data,
    example_shape,
    format_shape,
    load_splits,
    paper_dataset_matches,
)
from prunerep.data.arrays import save_cache
from prunerep.reporting.paper import (
    NOT_TRANSCRIBED,
    dense_reference,
    load_paper_results,
    paper_datasets,
    paper_numbers,
    paper_rows_note,
)

ROOT = Path(__file__).resolve().parents[2]
PAPERS = ROOT / "references" / "paper_results"


def _cache(path: Path, *, dataset: str, shape: tuple[int, int, int], classes: int, n: int = 40,
           source: str = "x.zip (zip, 1 bytes), image-folder of JPEG files, sha256 ab") -> Path:
    g = torch.Generator().manual_seed(0)
    save_cache(path, dataset=dataset,
               train_images=torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g),
               train_labels=torch.arange(n) % classes,
               test_images=torch.randint(0, 256, (n // 2, *shape), dtype=torch.uint8, generator=g),
               test_labels=torch.arange(n // 2) % classes,
               classes=[f"c{k}" for k in range(classes)], source=source)
    return path


def test_caption_and_shape_come_from_the_data(tmp_path: Path) -> None:
    cache = _cache(tmp_path / "a.pt", dataset="mnistish", shape=(1, 28, 20), classes=4)
    cfg = DataConfig(dataset="mnistish", source="../somewhere/mnistish.zip", val_size=8)
    splits = load_splits(cache, val_size=8, test_subset=12)
    assert example_shape(splits) == (1, 1, 28, 20)
    assert format_shape(example_shape(splits)) == "1x1x28x20"
    assert describe_data(cfg, splits) == (
        "mnistish (JPEG image folder at ../somewhere/mnistish.zip), 1x28x20, 4 classes; "
        "train 32 / val 8 / test 12 images")


def test_caption_of_cifar_names_the_copy(tmp_path: Path) -> None:
    cache = _cache(tmp_path / "c.pt", dataset="cifar10", shape=(3, 32, 32), classes=10, n=100)
    splits = load_splits(cache, val_size=10)
    cfg = DataConfig(source="../shared/datasets/cifar10-jpeg.zip", val_size=10)
    assert describe_data(cfg, splits).startswith(
        "CIFAR-10 (JPEG image folder at ../shared/datasets/cifar10-jpeg.zip), 3x32x32, 10 classes;")
    official = _cache(tmp_path / "o.pt", dataset="cifar10", shape=(3, 32, 32), classes=10, n=100,
                      source="cifar-10-python.tar.gz (tar, 1 bytes), cifar10-batches, sha256 x")
    assert describe_data(DataConfig(source="download", val_size=10),
                         load_splits(official, val_size=10)).startswith(
        "CIFAR-10 (official archive, downloaded), 3x32x32")


def test_caption_refuses_a_cache_of_another_dataset(tmp_path: Path) -> None:
    cache = _cache(tmp_path / "a.pt", dataset="mnistish", shape=(1, 8, 8), classes=2)
    with pytest.raises(DataError, match=r"cache holds dataset 'mnistish' but data\.dataset is 'cifar10'.*dvc repro"):
        describe_data(DataConfig(val_size=4), load_splits(cache, val_size=4))


@pytest.mark.parametrize(
    ("dataset", "paper", "match"),
    [
        ("cifar10", "cifar10", True),
        ("torchvision:CIFAR10", "cifar10", True),
        ("cifar10", "CIFAR-10", True),
        ("cifar100", "cifar10", False),
        ("imagefolder", "cifar10", False),
        ("shapes", "imagenet", False),
        ("torchvision:ImageNet", "imagenet", True),
    ],
)
def test_paper_dataset_matches_by_name(dataset: str, paper: str, match: bool) -> None:
    # Whatever copy data.source names: the JPEG re-encode is still CIFAR-10.
    cfg = DataConfig(dataset=dataset, source="../shared/datasets/cifar10-jpeg.zip")
    assert paper_dataset_matches(cfg, paper) is match


def test_display_names() -> None:
    assert dataset_display_name("cifar10") == "CIFAR-10"
    assert dataset_display_name("voc2012") == "PASCAL VOC 2012"
    assert dataset_display_name("torchvision:FashionMNIST") == "FashionMNIST (torchvision)"
    assert dataset_display_name("shapes") == "shapes"


# ------------------------------------------------------------------------------ paper-row policy


def test_every_paper_entry_names_its_dataset() -> None:
    entries = load_paper_results(PAPERS)
    assert entries and {e["dataset"] for e in entries} <= {"cifar10", "cifar100", "imagenet", "voc2012"}
    assert paper_datasets("greg", PAPERS) == ["cifar10", "cifar100", "imagenet"]
    vgg19 = [e for e in entries if "VGG-19" in e["row"]]
    assert vgg19 and {e["dataset"] for e in vgg19} == {"cifar100"}


def test_paper_numbers_keep_only_the_runs_dataset() -> None:
    everything = paper_numbers("greg", path=PAPERS)
    on_cifar10 = paper_numbers("greg", path=PAPERS, dataset="cifar10")
    assert 0 < len(on_cifar10) < len(everything)
    assert set(on_cifar10["dataset"]) == {"cifar10"}
    assert set(paper_numbers("greg", "Table 2", PAPERS, dataset="cifar100")["dataset"]) == {"cifar100"}
    # A run on another dataset shows no paper row, but the frame keeps its columns.
    other = paper_numbers("greg", path=PAPERS, dataset=DataConfig(dataset="shapes"))
    assert other.empty and {"row", "metric", "value", "display", "source", "dataset"} <= set(other.columns)
    with pytest.raises(KeyError, match="paper='gred'"):
        paper_numbers("gred", path=PAPERS, dataset="cifar10")


def test_dense_reference_only_on_the_papers_dataset() -> None:
    assert dense_reference("resnet56", PAPERS)["paper_test_acc"] == 93.36  # old call still works
    assert dense_reference("resnet56", PAPERS, dataset="cifar10")["paper_test_acc"] == 93.36
    assert dense_reference("resnet20", PAPERS, dataset="cifar10")["paper_test_acc"] == NOT_TRANSCRIBED
    other = dense_reference("resnet56", PAPERS, dataset="shapes")
    assert other == {"paper_test_acc": "n/a (paper reports CIFAR-10)", "paper_source": ""}
    assert dense_reference("nosuchmodel", PAPERS, dataset="cifar10")["paper_test_acc"] == "n/a"


def test_an_entry_without_dataset_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("results:\n  - {paper: x, table: T1, row: r, metric: m, value: 1, unit: '%', source: s}\n")
    with pytest.raises(ValueError, match=r"results\[0\] \(x / T1 / r\) lacks \['dataset'\]"):
        paper_numbers("x", path=bad)


def test_caption_note_says_whether_paper_rows_are_shown() -> None:
    assert paper_rows_note("greg", "cifar10", PAPERS) == "Paper rows: the paper's CIFAR-10 numbers."
    assert paper_rows_note("greg", DataConfig(dataset="synthetic"), PAPERS) == (
        "Paper rows: none (the paper reports CIFAR-10, CIFAR-100, ImageNet; this run is on synthetic).")
