"""Raw sources: layouts, fetch (copy / download / torchvision), checksums, prepare, CLI."""

from __future__ import annotations

import io
import json
import shutil
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prunerep.data import DataConfig, DataError, fetch_raw, load_splits, prepare_cache, sources
from prunerep.data import __main__ as cli
from prunerep.data.config import dataset_dir_name
from prunerep.data.sources import Download, decode_raw, raw_path

try:  # tests/unit is not a package today; keep working if it becomes one
    from .data_fixtures import (
        make_tiny,
        md5,
        write_batches,
        write_image_folder,
        write_tar_gz,
        write_zip,
    )
except ImportError:
    from data_fixtures import (
        make_tiny,
        md5,
        write_batches,
        write_image_folder,
        write_tar_gz,
        write_zip,
    )

REAL_ZIP = Path("/work/shared/datasets/cifar10-jpeg.zip")


def assert_decodes_to(decoded: sources.Decoded, tiny) -> None:
    assert decoded.train_images.dtype == torch.uint8
    assert decoded.train_labels.dtype == torch.int64
    assert torch.equal(decoded.train_images, torch.from_numpy(tiny.train_x))
    assert torch.equal(decoded.train_labels, torch.from_numpy(tiny.train_y))
    assert torch.equal(decoded.test_images, torch.from_numpy(tiny.test_x))
    assert torch.equal(decoded.test_labels, torch.from_numpy(tiny.test_y))
    assert list(decoded.classes) == list(tiny.classes)


def files_in(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------ layouts


def test_every_layout_decodes_to_the_same_arrays(tmp_path: Path) -> None:
    tiny = make_tiny()
    batches = write_batches(tiny, tmp_path / "cifar-10-batches-py")
    images = write_image_folder(tiny, tmp_path / "tiny-png")
    layouts = [
        batches,
        write_tar_gz(batches, tmp_path / "batches.tar.gz"),
        write_zip(batches, tmp_path / "batches.zip"),
        images,
        write_zip(images, tmp_path / "images-top.zip", top_level=True),
        write_zip(images, tmp_path / "images-flat.zip", top_level=False),
    ]
    for path in layouts:
        assert_decodes_to(decode_raw(path), tiny)


def test_cifar100_batches_use_fine_labels(tmp_path: Path) -> None:
    tiny = make_tiny(seed=1)
    folder = write_batches(tiny, tmp_path / "cifar-100-python", cifar100=True)
    assert_decodes_to(decode_raw(write_tar_gz(folder, tmp_path / "c100.tar.gz")), tiny)


@pytest.mark.parametrize(("channels", "size"), [(1, 8), (4, (5, 7))])
def test_image_folder_keeps_channels_and_size(tmp_path: Path, channels: int, size) -> None:
    tiny = make_tiny(channels=channels, size=size)
    folder = write_image_folder(tiny, tmp_path / "imgs")
    decoded = decode_raw(write_zip(folder, tmp_path / "imgs.zip"))
    assert decoded.train_images.shape[1:] == (
        channels,
        *((size, size) if isinstance(size, int) else size),
    )
    assert_decodes_to(decoded, tiny)


def test_mixed_gray_and_rgb_are_promoted_to_rgb(tmp_path: Path) -> None:
    tiny = make_tiny()
    folder = write_image_folder(tiny, tmp_path / "imgs")
    gray = tiny.train_x[0, 0]
    Image.fromarray(gray).save(folder / "train" / "cat" / "0000.png")
    decoded = decode_raw(folder)
    assert decoded.train_images.shape[1] == 3
    assert torch.equal(decoded.train_images[0], torch.from_numpy(np.stack([gray] * 3)))


def test_differing_image_sizes_are_an_error(tmp_path: Path) -> None:
    folder = write_image_folder(make_tiny(), tmp_path / "imgs")
    Image.new("RGB", (9, 9)).save(folder / "train" / "dog" / "0001.png")
    with pytest.raises(DataError, match="0001.png"):
        decode_raw(folder)


def test_junk_files_are_ignored(tmp_path: Path) -> None:
    tiny = make_tiny()
    folder = write_image_folder(tiny, tmp_path / "imgs")
    (folder / "train" / "cat" / ".DS_Store").write_bytes(b"junk")
    (folder / "train" / "cat" / "notes.txt").write_text("not an image")
    assert_decodes_to(decode_raw(folder), tiny)


def test_unknown_layout_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "stuff.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("readme.txt", "hello")
        zf.writestr("images/a.png", "x")
    with pytest.raises(DataError, match=r"stuff\.zip.*unknown dataset layout"):
        decode_raw(bad)


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    tiny = make_tiny()
    folder = write_batches(tiny, tmp_path / "cifar-10-batches-py")

    class Evil:
        def __reduce__(self):
            return (shutil.rmtree, (str(tmp_path / "victim"),))

    (tmp_path / "victim").mkdir()
    import pickle

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match="test_batch"):
        decode_raw(folder)
    assert (tmp_path / "victim").is_dir()


# ------------------------------------------------------------------------------ prepare/cache


def test_prepare_cache_is_loadable_weights_only_and_fingerprint_is_stable(tmp_path: Path) -> None:
    tiny = make_tiny()
    folder = write_image_folder(tiny, tmp_path / "imgs")
    cfg = DataConfig(dataset="tiny", source=str(folder))
    first = prepare_cache(cfg, tmp_path / "a.pt", root=tmp_path, raw=folder)
    second = prepare_cache(cfg, tmp_path / "b.pt", root=tmp_path, raw=folder)
    assert first["fingerprint"] == second["fingerprint"]
    assert len(first["fingerprint"]) == 64

    payload = torch.load(tmp_path / "a.pt", weights_only=True)
    assert payload["train_images"].dtype == torch.uint8
    assert payload["train_images"].shape == (12, 3, 8, 8)
    assert payload["train_labels"].dtype == torch.int64
    assert payload["classes"] == list(tiny.classes)
    assert payload["fingerprint"] == first["fingerprint"]
    assert "imgs" in payload["source"]

    # One pixel of one image changes the fingerprint.
    png = folder / "test" / "frog" / "0001.png"
    arr = np.array(Image.open(png))
    arr[3, 4, 1] ^= 1
    Image.fromarray(arr).save(png)
    third = prepare_cache(cfg, tmp_path / "c.pt", root=tmp_path, raw=folder)
    assert third["fingerprint"] != first["fingerprint"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".pt") == [
        "a.pt",
        "b.pt",
        "c.pt",
    ]


def test_prepare_without_fetch_says_to_fetch(tmp_path: Path) -> None:
    cfg = DataConfig(dataset="tiny", source="somewhere/tiny.zip")
    with pytest.raises(DataError, match=r"data/tiny/tiny\.zip.*fetch"):
        prepare_cache(cfg, tmp_path / "out.pt", root=tmp_path)


def test_prepare_checks_class_count_of_named_datasets(tmp_path: Path) -> None:
    folder = write_image_folder(make_tiny(), tmp_path / "imgs")
    cfg = DataConfig(dataset="cifar10", source=str(folder))
    with pytest.raises(DataError, match="10 classes"):
        prepare_cache(cfg, tmp_path / "out.pt", root=tmp_path, raw=folder)
    assert not (tmp_path / "out.pt").exists()


# ------------------------------------------------------------------------------ fetch: local copies


def test_fetch_copies_a_zip_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = make_tiny()
    src = write_zip(
        write_image_folder(tiny, tmp_path / "src" / "tiny-png"), tmp_path / "src" / "tiny.zip"
    )
    root = tmp_path / "repo"
    root.mkdir()
    cfg = DataConfig(dataset="tiny", source="../src/tiny.zip")  # relative to the repo root
    dst = fetch_raw(cfg, root=root)
    assert dst == root / "data" / "tiny" / "tiny.zip" == raw_path(cfg, root)
    assert dst.is_file() and not dst.is_symlink()
    assert dst.read_bytes() == src.read_bytes()
    assert files_in(root / "data") == ["tiny/tiny.zip"]  # no temp files left

    # Second run: identical content -> no copy at all.
    def no_copy(*args, **kwargs):
        raise AssertionError("copied again")

    monkeypatch.setattr(sources, "_copy_file", no_copy)
    mtime = dst.stat().st_mtime_ns
    assert fetch_raw(cfg, root=root) == dst
    assert dst.stat().st_mtime_ns == mtime

    summary = prepare_cache(cfg, tmp_path / "tiny.pt", root=root)
    assert summary["train"] == 12 and summary["test"] == 6


def test_fetch_replaces_a_changed_copy(tmp_path: Path) -> None:
    src = write_zip(write_image_folder(make_tiny(), tmp_path / "imgs"), tmp_path / "tiny.zip")
    cfg = DataConfig(dataset="tiny", source=str(src))
    dst = fetch_raw(cfg, root=tmp_path / "repo")
    dst.write_bytes(b"stale")
    fetch_raw(cfg, root=tmp_path / "repo")
    assert dst.read_bytes() == src.read_bytes()


def test_fetch_mirrors_a_batches_folder(tmp_path: Path) -> None:
    tiny = make_tiny()
    src = write_batches(tiny, tmp_path / "cifar-10-batches-py")
    cfg = DataConfig(dataset="tiny", source=str(src))
    root = tmp_path / "repo"
    dst = fetch_raw(cfg, root=root)
    assert dst == root / "data" / "tiny" / "cifar-10-batches-py"
    assert files_in(dst) == files_in(src)
    (dst / "stale_extra").write_text("x")
    fetch_raw(cfg, root=root)
    assert files_in(dst) == files_in(src)
    assert_decodes_to(decode_raw(dst), tiny)


def test_fetch_missing_path(tmp_path: Path) -> None:
    cfg = DataConfig(dataset="tiny", source="../nowhere/x.zip")
    with pytest.raises(DataError, match=r"data\.source: \.\./nowhere/x\.zip does not exist") as err:
        fetch_raw(cfg, root=tmp_path)
    assert "download" in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "bad-crc"])
def test_fetch_corrupt_zip_leaves_nothing(tmp_path: Path, damage: str) -> None:
    good = write_zip(write_image_folder(make_tiny(), tmp_path / "imgs"), tmp_path / "good.zip")
    data = bytearray(good.read_bytes())
    if damage == "garbage":
        data = bytearray(b"this is not a zip file" * 10)
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:  # flip one byte inside the first stored member -> CRC mismatch
        offset = data.index(b"\x89PNG") + 20
        data[offset] ^= 0xFF
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    root = tmp_path / "repo"
    with pytest.raises(DataError, match=r"bad\.zip"):
        fetch_raw(DataConfig(dataset="tiny", source=str(bad)), root=root)
    assert files_in(root / "data") == []
    with pytest.raises(DataError, match=r"bad\.zip"):
        decode_raw(bad)


def test_known_archive_checksum_mismatch(tmp_path: Path) -> None:
    # A valid zip, but with the name of the known offline copy and different bytes.
    fake = write_zip(
        write_image_folder(make_tiny(), tmp_path / "imgs"), tmp_path / "cifar10-jpeg.zip"
    )
    root = tmp_path / "repo"
    with pytest.raises(DataError, match=r"cifar10-jpeg\.zip.*checksum mismatch"):
        fetch_raw(DataConfig(source=str(fake)), root=root)
    assert files_in(root / "data") == []
    with pytest.raises(DataError, match="checksum mismatch"):
        decode_raw(fake)


def test_failed_copy_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write_zip(write_image_folder(make_tiny(), tmp_path / "imgs"), tmp_path / "tiny.zip")

    def broken_copy(fin, fout, length=0):
        fout.write(fin.read(100))
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copyfileobj", broken_copy)
    root = tmp_path / "repo"
    with pytest.raises(OSError, match="disk full"):
        fetch_raw(DataConfig(dataset="tiny", source=str(src)), root=root)
    assert files_in(root / "data") == []


# ------------------------------------------------------------------------------ fetch: download


@pytest.fixture
def tiny_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    tiny = make_tiny()
    archive = write_tar_gz(
        write_batches(tiny, tmp_path / "cifar-10-batches-py"), tmp_path / "up.tar.gz"
    )
    spec = Download(archive.as_uri(), "tiny-python.tar.gz", md5(archive))
    monkeypatch.setitem(sources.DOWNLOADS, "cifar10", spec)
    monkeypatch.setitem(sources.EXPECTED_CLASSES, "cifar10", 3)
    monkeypatch.setitem(sources.EXPECTED_SHAPES, "cifar10", tiny.train_x.shape[1:])
    return tiny, archive, spec


def test_download_verifies_md5_and_is_a_noop_the_second_time(tmp_path: Path, tiny_download) -> None:
    _, archive, spec = tiny_download
    root = tmp_path / "repo"
    cfg = DataConfig(dataset="cifar10", source="download")
    dst = fetch_raw(cfg, root=root)
    assert dst == root / "data" / "cifar10" / "tiny-python.tar.gz"
    assert dst.read_bytes() == archive.read_bytes()
    assert sources.download_file(spec.url, dst, spec.md5) is False
    prepare_cache(cfg, tmp_path / "c.pt", root=root)
    splits = load_splits(tmp_path / "c.pt", val_size=3)
    assert splits.num_classes == 3 and len(splits.train) == 9


def test_download_md5_mismatch_leaves_nothing(tmp_path: Path, tiny_download, monkeypatch) -> None:
    _, _, spec = tiny_download
    monkeypatch.setitem(sources.DOWNLOADS, "cifar10", Download(spec.url, spec.filename, "0" * 32))
    root = tmp_path / "repo"
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch_raw(DataConfig(source="download"), root=root)
    assert files_in(root / "data") == []


def test_download_offline_is_a_clear_error(tmp_path: Path, tiny_download, monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(sources.urllib.request, "urlopen", offline)
    root = tmp_path / "repo"
    with pytest.raises(DataError, match=r"could not download .*offline.*data\.source"):
        fetch_raw(DataConfig(source="download"), root=root)
    assert files_in(root / "data") == []


def test_interrupted_download_leaves_nothing(tmp_path: Path, tiny_download, monkeypatch) -> None:
    class Dropping(io.BytesIO):
        headers: dict = {}  # noqa: RUF012

        def read(self, n=-1):
            if self.tell():
                raise ConnectionResetError("connection reset")
            return super().read(10)

        def __enter__(self):
            return self

    monkeypatch.setattr(sources.urllib.request, "urlopen", lambda *a, **k: Dropping(b"x" * 100))
    root = tmp_path / "repo"
    with pytest.raises(DataError, match="connection reset"):
        fetch_raw(DataConfig(source="download"), root=root)
    assert files_in(root / "data") == []


def test_download_without_official_archive(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no official archive"):
        fetch_raw(DataConfig(dataset="mnistish", source="download"), root=tmp_path)


# ------------------------------------------------------------------------------ fetch: torchvision


class _FakeTV:
    """Looks like a torchvision dataset with a (root, train, download) signature."""

    def __init__(
        self, root: str, train: bool = True, transform=None, download: bool = False
    ) -> None:
        self.marker = Path(root) / "fake.bin"
        if download:
            Path(root).mkdir(parents=True, exist_ok=True)
            self.marker.write_bytes(b"ok")
        if not self.marker.exists():
            raise RuntimeError("Dataset not found. You can use download=True to download it")
        tiny = make_tiny(channels=1, seed=3)
        self.x = tiny.train_x if train else tiny.test_x
        self.y = tiny.train_y if train else tiny.test_y
        self.classes = list(tiny.classes)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return Image.fromarray(self.x[i, 0]), int(self.y[i])


class _OfflineTV:
    def __init__(self, root: str, split: str = "train", download: bool = False) -> None:
        raise urllib.error.URLError("no network")


def test_torchvision_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "FakeTV", _FakeTV, raising=False)
    cfg = DataConfig(dataset="torchvision:FakeTV", source="torchvision:FakeTV")
    root = tmp_path / "repo"
    assert fetch_raw(cfg, root=root) == root / "data" / "faketv"
    assert (root / "data" / "faketv" / "fake.bin").is_file()
    summary = prepare_cache(cfg, tmp_path / "tv.pt", root=root)
    assert summary["shape"] == [1, 8, 8]
    payload = torch.load(tmp_path / "tv.pt", weights_only=True)
    tiny = make_tiny(channels=1, seed=3)
    assert torch.equal(payload["train_images"], torch.from_numpy(tiny.train_x))
    assert torch.equal(payload["test_labels"], torch.from_numpy(tiny.test_y))
    assert summary["source"] == "torchvision.datasets.FakeTV"


def test_torchvision_offline_and_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "OfflineTV", _OfflineTV, raising=False)
    with pytest.raises(
        DataError, match=r"could not download torchvision\.datasets\.OfflineTV.*offline"
    ):
        fetch_raw(DataConfig(dataset="svhn", source="torchvision:OfflineTV"), root=tmp_path)
    with pytest.raises(DataError, match="no dataset class 'NoSuchSet'"):
        fetch_raw(DataConfig(dataset="x", source="torchvision:NoSuchSet"), root=tmp_path)


def test_dataset_dir_names() -> None:
    assert dataset_dir_name("torchvision:SVHN") == "svhn"
    assert dataset_dir_name("cifar10") == "cifar10"
    assert DataConfig(dataset="torchvision:FashionMNIST").name == "fashionmnist"
    with pytest.raises(ValueError, match="val_size"):
        DataConfig(val_size=-1)


# ------------------------------------------------------------------------------ command line


def test_cli_fetch_prepare_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = make_tiny()
    write_zip(
        write_image_folder(tiny, tmp_path / "shared" / "tiny-png"), tmp_path / "shared" / "tiny.zip"
    )
    root = tmp_path / "repo"
    root.mkdir()
    params = root / "params.yaml"
    params.write_text("data:\n  dataset: tiny\n  source: ../shared/tiny.zip\n  val_size: 3\n")
    assert cli.main(["fetch", "--params", str(params)]) == 0
    assert (root / "data" / "tiny" / "tiny.zip").is_file()
    assert json.loads(capsys.readouterr().out)["raw"] == str(root / "data" / "tiny" / "tiny.zip")
    out = tmp_path / "artifacts" / "tiny.pt"
    assert cli.main(["prepare", "--params", str(params), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["train"] == 12 and printed["out"] == str(out)
    assert cli.main(["info", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["fingerprint"] == printed["fingerprint"]


def test_cli_error_is_one_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  source: ../x.zip\n")
    assert cli.main(["fetch", "--params", str(params)]) == 2
    err = capsys.readouterr().err
    assert "data.source: ../x.zip does not exist" in err
    assert "Traceback" not in err


def test_cli_rejects_unknown_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  sauce: x\n")
    assert cli.main(["fetch", "--params", str(params)]) == 2
    assert "sauce" in capsys.readouterr().err


# ------------------------------------------------------------------------------ the real copy


@pytest.mark.slow
@pytest.mark.skipif(not REAL_ZIP.is_file(), reason="offline CIFAR-10 copy not available")
def test_real_cifar10_jpeg_zip(tmp_path: Path) -> None:
    cfg = DataConfig()
    summary = prepare_cache(cfg, tmp_path / "cifar10.pt", root=tmp_path, raw=REAL_ZIP)
    assert summary["train"] == 50_000 and summary["test"] == 10_000
    splits = load_splits(tmp_path / "cifar10.pt", val_size=cfg.val_size, split_seed=cfg.split_seed)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (45_000, 5_000, 10_000)
    assert splits.num_classes == 10 and splits.in_channels == 3 and splits.image_size == (32, 32)
    assert splits.classes[0] == "airplane" and splits.classes[-1] == "truck"
    assert splits.val.class_counts().tolist() == [500] * 10
    assert "94e6cdd84a05f4ae4f089c57f8b43de5125873df045131c5a937d94d988fe2d0" in splits.source


def test_cli_missing_explicit_params_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["fetch", "--params", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err
