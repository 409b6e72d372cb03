"""Raw dataset files: fetch them into ``data/<dataset>/`` and decode them to uint8 arrays.

Accepted raw layouts (as a directory, a ``.zip`` or a ``.tar[.gz]``, optionally inside one
top-level folder):

* CIFAR-10 python batches: ``data_batch_1..5``, ``test_batch``, ``batches.meta``
  (the official ``cifar-10-python.tar.gz``);
* CIFAR-100 python batches: ``train``, ``test``, ``meta`` (fine labels are used);
* an image folder: ``train/<class>/*.{png,jpg,...}`` and ``test/<class>/*``;

plus any torchvision dataset class with a ``(root, train|split, download)`` signature.

Every write goes to a temporary name in the destination folder and is renamed into place only
when complete, so an interrupted or failed fetch never leaves a half-written file in ``data/``.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import hashlib
import http.client
import inspect
import io
import logging
import math
import os
import pickle
import re
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from prunerep.data.arrays import save_cache
from prunerep.data.config import TORCHVISION_PREFIX, DataConfig, DataError

log = logging.getLogger(__name__)

SOURCE_HINT = (
    "Set data.source in params.yaml to a local copy (tar.gz, batches folder, image folder or "
    "zip), to `download`, or to `torchvision:<Class>`."
)


@dataclass(frozen=True)
class KnownArchive:
    """Published size and digests of a known raw archive, checked when the file name matches."""

    size: int
    sha256: str
    md5: str | None = None


KNOWN_ARCHIVES: dict[str, KnownArchive] = {
    "cifar-10-python.tar.gz": KnownArchive(
        170_498_071,
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        "c58f30108f718f92721af3b95e74349a",
    ),
    "cifar-100-python.tar.gz": KnownArchive(
        169_001_437,
        "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
        "eb9058c3a382ffc7106e4002c42a8d85",
    ),
    # The offline JPEG copy (see /work/shared/datasets/README.md).
    "cifar10-jpeg.zip": KnownArchive(
        63_750_935, "94e6cdd84a05f4ae4f089c57f8b43de5125873df045131c5a937d94d988fe2d0"
    ),
}


@dataclass(frozen=True)
class Download:
    """Official download of a dataset archive; `md5` is the digest published by its authors."""

    url: str
    filename: str
    md5: str


DOWNLOADS: dict[str, Download] = {
    "cifar10": Download(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
    ),
    "cifar100": Download(
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
    ),
}

# Class counts and image shapes (C, H, W) of the named datasets, to catch e.g. a CIFAR-100
# archive, or a 1x28x28 image folder, under `dataset: cifar10` (the name decides which papers'
# numbers are shown beside a result). Any other name is an image folder of the user's own.
EXPECTED_CLASSES = {"cifar10": 10, "cifar100": 100}
EXPECTED_SHAPES = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32)}

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)

_CHUNK = 1 << 20


class Decoded(NamedTuple):
    """A decoded dataset: uint8 [N, C, H, W] images and int64 labels for train and test."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    source: str


# --------------------------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------------------------


def find_root(start: str | Path | None = None) -> Path:
    """The repository root: the nearest folder at or above `start` (default: cwd) that holds
    ``params.yaml``, ``dvc.yaml``, ``.dvc`` or ``.git``; `start` itself if there is none.

    Notebooks run from ``notebooks/``, so relative ``data.source`` paths must not depend on cwd.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any(
            (folder / marker).exists() for marker in ("params.yaml", "dvc.yaml", ".dvc", ".git")
        ):
            return folder
    return here


def _source_kind(config: DataConfig) -> tuple[str, str]:
    """Classify `config.source` as ("download", name), ("torchvision", Class) or ("path", path)."""
    source = config.source.strip()
    if source.startswith(TORCHVISION_PREFIX):
        cls = source[len(TORCHVISION_PREFIX) :].strip()
        if not cls:
            raise DataError(f"data.source: {source!r} names no class. {SOURCE_HINT}")
        return "torchvision", cls
    if source.lower() == "download":
        if config.dataset.startswith(TORCHVISION_PREFIX):
            return "torchvision", config.dataset[len(TORCHVISION_PREFIX) :].strip()
        if config.name not in DOWNLOADS:
            raise DataError(
                f"data.source: `download` has no official archive for data.dataset={config.dataset!r} "
                f"(known: {sorted(DOWNLOADS)}). Use `torchvision:<Class>` or a local copy."
            )
        return "download", config.name
    return "path", source


def raw_dir(config: DataConfig, root: str | Path | None = None) -> Path:
    """``<root>/data/<dataset>``, where the raw files of `config` are kept (pinned by data.dvc)."""
    return Path(root or find_root()) / "data" / config.name


def raw_path(config: DataConfig, root: str | Path | None = None) -> Path:
    """The file or folder inside ``data/<dataset>/`` that `fetch_raw` materialises for `config`.

    ``download`` → the official archive name; ``torchvision:<Class>`` → ``data/<dataset>`` itself
    (torchvision's own root); a local copy → its original file or folder name.
    """
    kind, value = _source_kind(config)
    folder = raw_dir(config, root)
    if kind == "download":
        return folder / DOWNLOADS[value].filename
    if kind == "torchvision":
        return folder
    name = Path(value).name
    if name in ("", ".", ".."):
        name = _resolve_source(value, Path(root or find_root())).resolve().name
    return folder / name


def _resolve_source(value: str, root: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


# --------------------------------------------------------------------------------------------
# Files: hashing, checks, atomic copies and downloads
# --------------------------------------------------------------------------------------------


def _digests(path: Path, *names: str) -> dict[str, str]:
    hashes = {name: hashlib.new(name) for name in names}
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            for h in hashes.values():
                h.update(chunk)
    return {name: h.hexdigest() for name, h in hashes.items()}


def sha256_file(path: str | Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks."""
    return _digests(Path(path), "sha256")["sha256"]


def check_known_archive(path: Path, *, sha256: str | None = None) -> None:
    """Raise DataError if `path` has a known archive name but not its published size/sha256.

    Args:
        path: the archive.
        sha256: its digest if already computed (saves a second read).
    """
    known = KNOWN_ARCHIVES.get(path.name)
    if known is None:
        return
    size = path.stat().st_size
    if size != known.size:
        raise DataError(
            f"{path}: checksum mismatch: {size:,} bytes, but {path.name} is {known.size:,} bytes. "
            f"The file is truncated or a different version; replace it with a good copy "
            f"(or delete it and fetch again)."
        )
    actual = sha256 or sha256_file(path)
    if actual != known.sha256:
        raise DataError(
            f"{path}: checksum mismatch: sha256 {actual}, expected {known.sha256} for "
            f"{path.name}. The file is corrupt or a different version; replace it with a good "
            f"copy (or delete it and fetch again)."
        )


def _temp_beside(dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
    os.close(fd)
    return Path(tmp)


def _atomic_write(dst: Path, write: Callable[[Any], None]) -> None:
    """Call `write(fileobj)` on a temp file beside `dst`, then rename it to `dst`."""
    tmp = _temp_beside(dst)
    try:
        with tmp.open("wb") as fh:
            write(fh)
        # mkstemp creates 0600; make it readable like a normally written file.
        tmp.chmod(0o644)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _same_bytes(src: Path, dst: Path, src_sha256: str | None = None) -> bool:
    """True if `dst` is a regular file with the size and sha256 of `src` (size first: cheap)."""
    if not dst.is_file() or dst.is_symlink() or dst.stat().st_size != src.stat().st_size:
        return False
    return sha256_file(dst) == (src_sha256 or sha256_file(src))


def _copy_file(src: Path, dst: Path, src_sha256: str | None = None) -> bool:
    """Copy `src` to `dst` (a real copy, atomically) unless `dst` already has the same bytes.

    Returns:
        True if a copy was made, False if `dst` was already identical.
    """
    if _same_bytes(src, dst, src_sha256):
        return False
    if dst.is_symlink() or dst.is_dir():
        # A symlink would make the DVC-tracked data depend on a path outside the repository.
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        else:
            dst.unlink()

    def write(fh: Any) -> None:
        with src.open("rb") as fin:
            shutil.copyfileobj(fin, fh, _CHUNK)

    _atomic_write(dst, write)
    return True


def _list_files(folder: Path) -> list[str]:
    """Relative posix paths of all regular files below `folder`, sorted."""
    out = []
    for dirpath, _dirs, files in os.walk(folder, followlinks=True):
        base = Path(dirpath)
        out.extend((base / f).relative_to(folder).as_posix() for f in files)
    return sorted(out)


def _copy_tree(src: Path, dst: Path) -> int:
    """Mirror folder `src` into `dst` file by file; return how many files were (re)written."""
    if dst.is_symlink() or dst.is_file():
        dst.unlink()
    wanted = _list_files(src)
    written = sum(_copy_file(src / rel, dst / rel) for rel in wanted)
    # Files that are not in the source would otherwise leak into the decoded dataset.
    stale = sorted(set(_list_files(dst)) - set(wanted)) if dst.exists() else []
    for rel in stale:
        (dst / rel).unlink()
    if stale:
        log.info("removed %d files from %s that are not in %s", len(stale), dst, src)
    return written


def download_file(url: str, dst: Path, md5: str, *, timeout: float = 60.0) -> bool:
    """Download `url` to `dst` if `dst` is not already the file with digest `md5`.

    The bytes go to a temp file beside `dst` and are renamed into place only after the md5
    matches, so a failed or interrupted download leaves nothing behind.

    Returns:
        True if downloaded, False if `dst` already matched.

    Raises:
        DataError: the download fails (e.g. offline) or the md5 differs.
    """
    if dst.is_file() and _digests(dst, "md5")["md5"] == md5:
        return False
    log.info("downloading %s -> %s", url, dst)
    start = time.monotonic()
    digest = hashlib.md5()

    def write(fh: Any) -> None:
        request = urllib.request.Request(url, headers={"User-Agent": "prunerep"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done, next_report = 0, 0.1
            while chunk := response.read(_CHUNK):
                fh.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if total and done / total >= next_report:
                    log.info("  %3.0f%% of %.1f MB", 100 * done / total, total / 1e6)
                    next_report += 0.1
        if digest.hexdigest() != md5:
            raise DataError(
                f"{url}: checksum mismatch: md5 {digest.hexdigest()}, expected {md5}. The download "
                f"is corrupt or the file changed upstream; try again. {SOURCE_HINT}"
            )

    try:
        _atomic_write(dst, write)
    except DataError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        raise DataError(
            f"could not download {url} ({type(err).__name__}: {err}). This machine may be offline. "
            f"{SOURCE_HINT}"
        ) from err
    log.info("downloaded %s in %.1f s", dst.name, time.monotonic() - start)
    return True


# --------------------------------------------------------------------------------------------
# Containers: a directory, a zip or a tar, seen as a list of relative file names
# --------------------------------------------------------------------------------------------


_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError)


class _Container:
    """Read-only view of a folder or archive as relative posix file names."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.names: list[str] = []

    def read(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Yield (name, bytes) for `names` (in an order that is efficient for the container)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the open archive, if any."""

    def describe(self) -> str:
        """Short description for the cache's `source` record."""
        return self.path.name

    def __enter__(self) -> _Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _DirContainer(_Container):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.names = _list_files(path)

    def read(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        for name in names:
            yield name, (self.path / name).read_bytes()

    def describe(self) -> str:
        return f"{self.path.name}/ (folder, {len(self.names)} files)"


class _ZipContainer(_Container):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.zip = zipfile.ZipFile(path)
        self.names = [i.filename for i in self.zip.infolist() if not i.is_dir()]

    def read(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        for name in names:
            yield name, self.zip.read(name)  # checks each member's CRC

    def close(self) -> None:
        self.zip.close()

    def describe(self) -> str:
        return f"{self.path.name} (zip, {self.path.stat().st_size} bytes)"


class _TarContainer(_Container):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by close()/__exit__
        try:
            # Lists every member: decompresses the whole archive once, so truncation shows here.
            self.members = {m.name: m for m in self.tar.getmembers() if m.isfile()}
        except BaseException:
            self.tar.close()
            raise
        self.names = list(self.members)

    def read(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        # In archive order: a compressed tar can only seek forward cheaply.
        for member in sorted((self.members[n] for n in names), key=lambda m: m.offset_data):
            fh = self.tar.extractfile(member)
            if fh is None:
                raise DataError(f"{self.path}: member {member.name} is not a regular file")
            yield member.name, fh.read()

    def close(self) -> None:
        self.tar.close()

    def describe(self) -> str:
        return f"{self.path.name} (tar, {self.path.stat().st_size} bytes)"


def _open_container(path: Path) -> _Container:
    if not path.exists():
        raise DataError(f"{path} does not exist. {SOURCE_HINT}")
    if path.is_dir():
        return _DirContainer(path)
    name = path.name.lower()
    try:
        if name.endswith(".zip") or zipfile.is_zipfile(path):
            return _ZipContainer(path)
        if re.search(r"\.(tar|tgz|tar\.gz|tar\.bz2|tbz2|tar\.xz|txz)$", name) or tarfile.is_tarfile(
            path
        ):
            return _TarContainer(path)
    except _CORRUPT as err:
        raise DataError(
            f"{path} is not a readable archive, it is corrupt or truncated "
            f"({type(err).__name__}: {err}). Replace it with a good copy (or delete it and fetch "
            f"again)."
        ) from err
    raise DataError(
        f"{path}: unknown raw data format (expected a folder, .zip or .tar.gz). {SOURCE_HINT}"
    )


# --------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    kind: str  # "cifar10-batches" | "cifar100-batches" | "image-folder"
    prefix: str  # folder inside the container, "" or "name/"


def _is_junk(name: str) -> bool:
    # macOS/Windows leave these in zips made by their file managers.
    return name.startswith(".") or "/." in name or "__MACOSX/" in name or name.endswith("Thumbs.db")


def _suffix(name: str) -> str:
    # str ops, not pathlib: this runs for each of 60,000 names.
    base = name.rsplit("/", 1)[-1]
    return base[base.rfind(".") :].lower() if "." in base else ""


def _is_image(name: str) -> bool:
    return _suffix(name) in IMAGE_EXTENSIONS


def _detect_layout(names: list[str], where: Path) -> _Layout:
    names = [n for n in names if not _is_junk(n)]
    prefix = ""
    while True:
        rel = {n[len(prefix) :] for n in names if n.startswith(prefix)}
        if {"batches.meta", "test_batch"} <= rel and any(
            re.fullmatch(r"data_batch_\d+", n) for n in rel
        ):
            return _Layout("cifar10-batches", prefix)
        if {"train", "test", "meta"} <= rel:
            return _Layout("cifar100-batches", prefix)
        splits = {n.split("/", 1)[0] for n in rel if n.count("/") >= 2 and _is_image(n)}
        if {"train", "test"} <= splits:
            return _Layout("image-folder", prefix)
        tops = {n.split("/", 1)[0] for n in rel if "/" in n}
        if len(tops) != 1:
            break
        prefix += tops.pop() + "/"
    shown = sorted({n[len(prefix) :].split("/", 1)[0] for n in names if n.startswith(prefix)})[:8]
    raise DataError(
        f"{where}: unknown dataset layout (top-level entries{f' in {prefix}' if prefix else ''}: "
        f"{shown or 'none'}). Expected CIFAR python batches (data_batch_1..5, test_batch, "
        f"batches.meta), CIFAR-100 batches (train, test, meta), or an image folder "
        f"train/<class>/*.png|jpg and test/<class>/*. {SOURCE_HINT}"
    )


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


@functools.cache
def _numpy_globals() -> dict[tuple[str, str], Any]:
    # Whatever numpy version wrote the file, rebuild arrays with *this* numpy's functions.
    array = np.arange(2)
    allowed = {
        "_reconstruct": array.__reduce__()[0],
        "_frombuffer": array.__reduce_ex__(5)[0],
        "scalar": np.int64(1).__reduce__()[0],
        "ndarray": np.ndarray,
        "dtype": np.dtype,
    }
    modules = (
        "numpy",
        "numpy.core.multiarray",
        "numpy._core.multiarray",
        "numpy.core.numeric",
        "numpy._core.numeric",
    )
    table = {(mod, key): obj for mod in modules for key, obj in allowed.items()}
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, "latin1").
    table[("_codecs", "encode")] = codecs.encode
    return table


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays: the CIFAR batches are pickles, and a pickle
    from an untrusted copy must not be able to run code."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _numpy_globals()[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def _unpickle(data: bytes, name: str, where: Path) -> dict[str, Any]:
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as err:
        raise DataError(
            f"{where}: {name} is not a readable CIFAR batch ({type(err).__name__}: {err}); the "
            f"copy is corrupt. Replace it with a good copy."
        ) from err
    if not isinstance(obj, dict):
        raise DataError(
            f"{where}: {name} holds a {type(obj).__name__}, expected a CIFAR batch dict"
        )
    # Python 2 pickles (the official files) have bytes keys; re-pickled copies have str keys.
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _batch(
    d: dict[str, Any], label_key: str, name: str, where: Path
) -> tuple[np.ndarray, np.ndarray]:
    if "data" not in d or label_key not in d:
        raise DataError(f"{where}: {name} lacks the keys 'data' and {label_key!r}")
    data = np.asarray(d["data"])
    labels = np.asarray(d[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[0] != labels.shape[0]:
        raise DataError(
            f"{where}: {name} has data {data.dtype} {data.shape} and {labels.shape[0]} labels; "
            f"expected uint8 [N, 3*H*W]"
        )
    # The format stores rows of R, G, B planes of a square image; its size is not recorded.
    side = math.isqrt(data.shape[1] // 3)
    if 3 * side * side != data.shape[1]:
        raise DataError(f"{where}: {name} rows have {data.shape[1]} values, not 3*H*H")
    return data.reshape(-1, 3, side, side), labels


def _names(values: Iterable[Any]) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _decode_batches(box: _Container, layout: _Layout) -> tuple[tuple[np.ndarray, ...], list[str]]:
    p = layout.prefix
    if layout.kind == "cifar10-batches":
        train_names = sorted(
            (n[len(p) :] for n in box.names if re.fullmatch(re.escape(p) + r"data_batch_\d+", n)),
            key=lambda n: int(n.rsplit("_", 1)[1]),
        )
        test_names, meta_name = ["test_batch"], "batches.meta"
        label_key, classes_key = "labels", "label_names"
    else:
        train_names, test_names, meta_name = ["train"], ["test"], "meta"
        label_key, classes_key = "fine_labels", "fine_label_names"
    raw = dict(box.read(p + n for n in [*train_names, *test_names, meta_name]))
    meta = _unpickle(raw[p + meta_name], meta_name, box.path)
    if classes_key not in meta:
        raise DataError(f"{box.path}: {meta_name} lacks {classes_key!r}")
    classes = _names(meta[classes_key])

    def stack(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        parts = [_batch(_unpickle(raw[p + n], n, box.path), label_key, n, box.path) for n in names]
        return np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])

    train_x, train_y = stack(train_names)
    test_x, test_y = stack(test_names)
    return (train_x, train_y, test_x, test_y), classes


# PIL modes → the mode to convert to before np.asarray (None: keep).
_MODE_CONVERSION = {
    "L": None,
    "LA": None,
    "RGB": None,
    "RGBA": None,
    "1": "L",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
    "I;16": "L",
    "I": "L",
    "F": "L",  # high bit depth: PIL maps to 8 bit (clips); rare in practice
}


def _pil_to_array(img: Any, name: str) -> np.ndarray:
    """HWC uint8 array of a PIL image, keeping its channel count (grayscale → 1 channel)."""
    mode = img.mode
    if mode == "P":
        target = "RGBA" if "transparency" in img.info else "RGB"
    elif mode in _MODE_CONVERSION:
        target = _MODE_CONVERSION[mode]
    else:
        raise DataError(f"{name}: unsupported image mode {mode!r}")
    if target is not None:
        img = img.convert(target)
    array = np.asarray(img, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


# Telling PIL the format skips its plugin probing, a large part of decoding a 32x32 image.
_PIL_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".gif": "GIF"}


def _decode_image(data: bytes, name: str) -> np.ndarray:
    """HWC uint8 array of an encoded image, decoded with PIL.

    PIL only (not torchvision.io, whose decoders are deprecated since torchvision 0.29): the
    decoded pixels, hence the dataset fingerprint, must not change with the decoder in use.
    """
    from PIL import Image, UnidentifiedImageError

    hint = _PIL_FORMATS.get(_suffix(name))
    try:
        try:
            img = Image.open(io.BytesIO(data), formats=(hint,) if hint else None)
        except UnidentifiedImageError:
            if hint is None:
                raise
            img = Image.open(io.BytesIO(data))  # a misnamed file: let PIL probe
        with img:
            return _pil_to_array(img, name)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(
            f"{name}: cannot decode image ({type(err).__name__}: {err}); the copy is corrupt. "
            f"Replace it with a good copy."
        ) from err


def _promote(array: np.ndarray, channels: int) -> np.ndarray:
    """Give HWC image(s) `channels` channels (last axis): gray → RGB, add opaque alpha if needed."""
    c = array.shape[-1]
    if c == channels:
        return array
    if channels in (3, 4) and c in (1, 2):
        gray = array[..., :1]
        array = np.concatenate([gray, gray, gray, *([array[..., 1:]] if c == 2 else [])], axis=-1)
    if channels == 4 and array.shape[-1] == 3:
        array = np.concatenate([array, np.full_like(array[..., :1], 255)], axis=-1)
    if array.shape[-1] != channels:
        raise ValueError(f"cannot convert {c} channels to {channels}")
    return array


def stack_images(
    images: Iterable[tuple[int, str, np.ndarray]], count: int, where: Path | str
) -> torch.Tensor:
    """Place `count` HWC uint8 images, given as (position, name, array), in one [N, C, H, W] tensor.

    Images are written into one preallocated array as they are decoded (no list of 60,000 small
    arrays). Mixed channel counts (e.g. a few grayscale JPEGs in a colour set) are promoted to
    the largest; differing image sizes are an error, since nothing here resizes.
    """
    out: np.ndarray | None = None
    first = ""
    odd: list[tuple[int, str, np.ndarray]] = []  # other channel count than the first image
    for pos, name, array in images:
        if array.dtype != np.uint8 or array.ndim != 3:
            raise DataError(f"{name}: decoded to {array.dtype} {array.shape}, expected uint8 HWC")
        if out is None:
            out, first = np.empty((count, *array.shape), dtype=np.uint8), name
        if array.shape == out.shape[1:]:
            out[pos] = array
        elif array.shape[:2] != out.shape[1:3]:
            h, w = out.shape[1:3]
            raise DataError(
                f"{where}: images differ in size ({first} is {h}x{w}, {name} is "
                f"{array.shape[0]}x{array.shape[1]}). All images of a dataset must have one size."
            )
        else:
            odd.append((pos, name, array))
    if out is None:
        raise DataError(f"{where}: no images found")
    if odd:
        channels = max(out.shape[3], *(a.shape[2] for _, _, a in odd))
        try:
            out = _promote(out, channels)
            for pos, _, array in odd:
                out[pos] = _promote(array, channels)
        except ValueError as err:
            raise DataError(f"{where}: images with incompatible channel counts ({err})") from err
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _image_folder_files(box: _Container, layout: _Layout) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    """split -> class -> image names of an image folder, and the sorted class names."""
    p = layout.prefix
    files: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    for name in box.names:
        if not name.startswith(p) or _is_junk(name) or not _is_image(name):
            continue
        parts = name[len(p) :].split("/")
        if len(parts) >= 3 and parts[0] in files:
            files[parts[0]].setdefault(parts[1], []).append(name)
    classes = sorted(files["train"])
    unknown = sorted(set(files["test"]) - set(classes))
    if unknown:
        raise DataError(
            f"{box.path}: test classes {unknown[:5]} have no train/ folder; train and test must "
            f"use the same class folders"
        )
    return files, classes


def _check_classes(classes: list[str], config: DataConfig, where: str) -> None:
    """A classification dataset has two classes or more, and a named one its own count."""
    expected = EXPECTED_CLASSES.get(config.name)
    if expected is not None and len(classes) != expected:
        raise DataError(
            f"data.dataset is {config.dataset!r} ({expected} classes) but {where} has "
            f"{len(classes)} classes; fix data.dataset or data.source in params.yaml."
        )
    if len(classes) < 2:
        raise DataError(
            f"{where} has {len(classes)} class ({', '.join(classes) or 'none'}); a classification "
            f"dataset needs at least 2. Put each class's images in train/<class>/ and test/<class>/."
        )


def _check_image_folder(box: _Container, layout: _Layout, config: DataConfig) -> None:
    """Refuse, before `fetch` copies it, an image folder that `prepare` would refuse: too few
    classes, a file that is not an image, images of two sizes (read from the image headers, and
    the PNG checksums; no pixel is decoded)."""
    from PIL import Image, UnidentifiedImageError

    files, classes = _image_folder_files(box, layout)
    _check_classes(classes, config, str(box.path))
    expected = EXPECTED_SHAPES.get(config.name)
    first: tuple[str, tuple[int, int]] | None = None
    names = [n for split in files.values() for c in sorted(split) for n in sorted(split[c])]
    for name, data in box.read(names):
        try:
            with Image.open(io.BytesIO(data)) as img:
                size = (img.height, img.width)
                img.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            why = re.sub(r"\s*<[^>]* at 0x[0-9a-fA-F]+>", "", str(err)).strip()  # no memory addresses
            raise DataError(
                f"{box.path}:{name}: not a readable image ({type(err).__name__}{f': {why}' if why else ''}). "
                f"Replace or delete that file, then fetch again."
            ) from err
        if first is None:
            first = (name, size)
            if expected is not None and size != expected[1:]:
                raise DataError(
                    f"data.dataset is {config.dataset!r} ({'x'.join(map(str, expected))} images) but "
                    f"{name} in {box.path} is {size[0]}x{size[1]}; set data.dataset to a name of your "
                    f"own (e.g. `imagefolder`) for another dataset, or fix data.source."
                )
        elif size != first[1]:
            h, w = first[1]
            raise DataError(
                f"{box.path}: images differ in size ({first[0]} is {h}x{w}, {name} is "
                f"{size[0]}x{size[1]}). All images of a dataset must have one size."
            )


def _decode_image_folder(box: _Container, layout: _Layout) -> tuple[tuple[Any, ...], list[str]]:
    files, classes = _image_folder_files(box, layout)
    out: list[Any] = []
    for split in ("train", "test"):
        # Classes in sorted order (label = rank), files sorted by name within a class.
        ordered = [(n, k) for k, c in enumerate(classes) for n in sorted(files[split].get(c, []))]
        names = [n for n, _ in ordered]
        position = {n: i for i, n in enumerate(names)}  # a tar yields in archive order
        decoded = (
            (position[n], n, _decode_image(data, f"{box.path}:{n}")) for n, data in box.read(names)
        )
        out.append(stack_images(decoded, len(names), box.path))
        out.append(torch.tensor([k for _, k in ordered], dtype=torch.int64))
    return tuple(out), classes


def _image_formats(names: Iterable[str]) -> str:
    """``JPEG`` or ``PNG`` (``JPEG/PNG`` if mixed): the encodings of an image folder's files."""
    found = {_PIL_FORMATS.get(_suffix(n), _suffix(n).lstrip(".").upper()) for n in names
             if _is_image(n) and not _is_junk(n)}
    return "/".join(sorted(found)) or "no"


def _decode_container(path: Path) -> Decoded:
    with _open_container(path) as box:
        layout = _detect_layout(box.names, path)
        try:
            if layout.kind == "image-folder":
                arrays, classes = _decode_image_folder(box, layout)
                train_x, train_y, test_x, test_y = arrays
            else:
                (tx, ty, vx, vy), classes = _decode_batches(box, layout)
                train_x, train_y = torch.from_numpy(tx), torch.from_numpy(ty)
                test_x, test_y = torch.from_numpy(vx), torch.from_numpy(vy)
        except DataError:
            raise
        except (*_CORRUPT, KeyError) as err:
            raise DataError(
                f"{path} is corrupt or truncated ({type(err).__name__}: {err}). Replace it with a "
                f"good copy (or delete it and fetch again)."
            ) from err
        source = f"{box.describe()}, {layout.kind}"
        if layout.kind == "image-folder":
            source += f" of {_image_formats(box.names)} files"
    return Decoded(train_x, train_y, test_x, test_y, classes, source)


# --------------------------------------------------------------------------------------------
# torchvision datasets
# --------------------------------------------------------------------------------------------


def _torchvision_dataset(cls_name: str, root: Path, *, train: bool, download: bool) -> Any:
    import torchvision.datasets

    cls = getattr(torchvision.datasets, cls_name, None)
    if not isinstance(cls, type):
        raise DataError(
            f"data.source: torchvision.datasets has no dataset class {cls_name!r} (names are "
            f"case-sensitive, e.g. `torchvision:SVHN`, `torchvision:FashionMNIST`)."
        )
    params = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = {"root": str(root)}
    if "train" in params:
        kwargs["train"] = train
    elif "split" in params:
        kwargs["split"] = "train" if train else "test"
    else:
        raise DataError(
            f"data.source: torchvision.datasets.{cls_name} takes neither `train` nor `split`; "
            f"only datasets with a (root, train|split, download) signature are supported."
        )
    if "download" in params:
        kwargs["download"] = download
    try:
        return cls(**kwargs)
    except DataError:
        raise
    except Exception as err:  # torchvision raises RuntimeError, URLError, OSError, ...
        what = "download" if download else "load"
        hint = (
            "This machine may be offline. " + SOURCE_HINT
            if download
            else "Run `python -m prunerep.data fetch` (or `dvc pull`) first."
        )
        raise DataError(
            f"data.source: could not {what} torchvision.datasets.{cls_name} "
            f"({'train' if train else 'test'} split) in {root} ({type(err).__name__}: {err}). {hint}"
        ) from err


def _sample_to_array(image: Any, name: str) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        array = image.numpy()
        array = array[None] if array.ndim == 2 else array
        return np.ascontiguousarray(array.transpose(1, 2, 0))  # CHW → HWC
    if isinstance(image, np.ndarray):
        return image[:, :, None] if image.ndim == 2 else image
    return _pil_to_array(image, name)


def _samples(ds: Any, where: str, labels: list[int]) -> Iterator[tuple[int, str, np.ndarray]]:
    """(position, name, HWC array) of every sample of a torchvision dataset; fills `labels`."""
    for i in range(len(ds)):
        image, label = ds[i]
        labels.append(int(label))
        yield i, f"{where}[{i}]", _sample_to_array(image, f"{where}[{i}]")


def _decode_torchvision(cls_name: str, root: Path) -> Decoded:
    where = f"torchvision.datasets.{cls_name}"
    out: list[torch.Tensor] = []
    classes: list[str] | None = None
    for train in (True, False):
        ds = _torchvision_dataset(cls_name, root, train=train, download=False)
        labels: list[int] = []
        images = stack_images(_samples(ds, where, labels), len(ds), where)
        out += [images, torch.tensor(labels, dtype=torch.int64)]
        classes = classes or [str(c) for c in getattr(ds, "classes", None) or []]
    num_classes = int(max(out[1].max(), out[3].max())) + 1
    if not classes or len(classes) < num_classes:
        classes = [str(k) for k in range(num_classes)]
    return Decoded(out[0], out[1], out[2], out[3], classes, where)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def fetch_raw(config: DataConfig, *, root: str | Path | None = None) -> Path:
    """Materialise the raw dataset of `config` in ``<root>/data/<dataset>/``.

    * ``download``: the official archive, md5 verified (no-op if already present);
    * ``torchvision:<Class>``: torchvision downloads train and test into ``data/<dataset>``;
    * a local path (relative to `root`): copied (never symlinked) under its own name, a folder
      file by file; no-op when the copy already has the same size and sha256. Archives with a
      known name are checked against their published sha256 first.

    Args:
        config: the `data` section of params.yaml.
        root: repository root; default: found from the cwd (see `find_root`).

    Returns:
        The fetched file or folder (`raw_path(config, root)`).

    Raises:
        DataError: missing path, unknown layout, corrupt archive, checksum mismatch, or a failed
            download.
    """
    root = Path(root or find_root()).resolve()
    kind, value = _source_kind(config)
    dst = raw_path(config, root)
    # Folders this call creates are removed again if it fails: no empty data/<name>/ is left for
    # `dvc add data` / data.dvc to pick up.
    created = [d for d in (dst.parent, *dst.parent.parents) if not d.exists()]
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _fetch_into(config, kind, value, root, dst)
    except BaseException:
        for d in created:
            with contextlib.suppress(OSError):   # only if still empty
                d.rmdir()
        raise


def _fetch_into(config: DataConfig, kind: str, value: str, root: Path, dst: Path) -> Path:
    """`fetch_raw` once `dst`'s folder exists."""
    if kind == "download":
        spec = DOWNLOADS[value]
        changed = download_file(spec.url, dst, spec.md5)
        log.info("%s %s", "fetched" if changed else "already present:", dst)
        return dst
    if kind == "torchvision":
        for train in (True, False):
            _torchvision_dataset(value, dst, train=train, download=True)
        log.info("torchvision.datasets.%s is in %s", value, dst)
        return dst

    src = _resolve_source(value, root)
    if not src.exists():
        raise DataError(
            f"data.source: {value} does not exist (looked for {os.path.normpath(src)}). {SOURCE_HINT}"
        )
    if src.resolve() == dst.resolve():
        log.info("data.source is already the fetched copy %s", dst)
        return dst
    if src.is_dir():
        # Check the layout and the images before copying thousands of files of the wrong thing.
        with _open_container(src) as box:
            layout = _detect_layout(box.names, src)
            if layout.kind == "image-folder":
                _check_image_folder(box, layout, config)
        written = _copy_tree(src, dst)
        log.info("copied %d files into %s", written, dst)
        _note_others(dst)
        return dst

    src_sha = sha256_file(src)
    check_known_archive(src, sha256=src_sha)
    if _same_bytes(src, dst, src_sha):
        log.info("%s is up to date", dst)
        return dst
    _validate_archive(src, config)
    _copy_file(src, dst, src_sha256=src_sha)
    log.info("copied %s -> %s", src, dst)
    _note_others(dst)
    return dst


def _note_others(dst: Path) -> None:
    # Left in place (they may be wanted), but they enlarge what data.dvc pins.
    others = sorted(
        p.name for p in dst.parent.iterdir() if p.name != dst.name and not p.name.startswith(".")
    )
    if others:
        log.info("note: %s also holds %s, which data.source does not use", dst.parent, others)


def _validate_archive(path: Path, config: DataConfig | None = None) -> None:
    """Fail before copying if `path` is not a readable archive of a known layout (with
    `config`: nor an image folder that `prepare` would refuse)."""
    with _open_container(path) as box:
        layout = _detect_layout(box.names, path)
        if isinstance(box, _ZipContainer):
            try:
                bad = box.zip.testzip()
            except _CORRUPT as err:
                bad = f"{type(err).__name__}: {err}"
            if bad is not None:
                raise DataError(
                    f"{path} is corrupt (bad member {bad}). Replace it with a good copy."
                )
        if config is not None and layout.kind == "image-folder":
            try:
                _check_image_folder(box, layout, config)
            except _CORRUPT as err:  # a tar member that cannot be read
                raise DataError(f"{path} is corrupt or truncated ({type(err).__name__}: {err}). "
                                "Replace it with a good copy.") from err


def decode_raw(path: str | Path) -> Decoded:
    """Decode raw files (folder or archive of any accepted layout) into uint8 tensors.

    Args:
        path: a file or folder as fetched into ``data/<dataset>/``.

    Returns:
        Train/test images uint8 [N, C, H, W], labels int64, class names and a source record.
    """
    path = Path(path)
    if not path.is_file():
        return _decode_container(path)
    digest = sha256_file(path)
    check_known_archive(path, sha256=digest)
    decoded = _decode_container(path)
    # The archive digest identifies the exact copy (e.g. the JPEG re-encode vs the original).
    return decoded._replace(source=f"{decoded.source}, sha256 {digest}")


def prepare_cache(
    config: DataConfig,
    out: str | Path,
    *,
    root: str | Path | None = None,
    raw: str | Path | None = None,
) -> dict[str, Any]:
    """Decode the fetched raw files of `config` once and save them as a cache file.

    Args:
        config: the `data` section of params.yaml.
        out: the cache file to write (atomically), e.g. ``artifacts/data/cifar10.pt``.
        root: repository root; default: found from the cwd.
        raw: decode this file/folder instead of ``raw_path(config, root)``.

    Returns:
        A summary: dataset, sizes, image shape, classes, fingerprint, source, decode seconds.
    """
    root = Path(root or find_root()).resolve()
    start = time.monotonic()
    kind, value = _source_kind(config)
    if raw is None and kind == "torchvision":
        decoded = _decode_torchvision(value, raw_path(config, root))
    else:
        path = Path(raw) if raw is not None else raw_path(config, root)
        if not path.exists():
            raise DataError(
                f"{path} does not exist: the raw data for data.source={config.source!r} has not "
                f"been fetched. Run `python -m prunerep.data fetch` (or `dvc pull`) first."
            )
        decoded = decode_raw(path)
    decode_seconds = time.monotonic() - start
    _check_classes(list(decoded.classes), config, decoded.source)
    shape = tuple(decoded.train_images.shape[1:])
    expected_shape = EXPECTED_SHAPES.get(config.name)
    if expected_shape is not None and shape != expected_shape:
        raise DataError(
            f"data.dataset is {config.dataset!r} ({'x'.join(map(str, expected_shape))} images) but "
            f"{decoded.source} has {'x'.join(map(str, shape))} images; set data.dataset to a name "
            f"of your own (e.g. `imagefolder`) for another dataset, or fix data.source."
        )
    summary = save_cache(
        out,
        dataset=config.name,
        train_images=decoded.train_images,
        train_labels=decoded.train_labels,
        test_images=decoded.test_images,
        test_labels=decoded.test_labels,
        classes=decoded.classes,
        source=decoded.source,
    )
    summary["decode_seconds"] = round(decode_seconds, 2)
    summary["seconds"] = round(time.monotonic() - start, 2)
    return summary
