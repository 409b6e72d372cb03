"""Atomic writes: a killed run never leaves a half-written file that DVC or a resume would trust."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete temp files left beside `path` by a write that was killed (SIGKILL skips cleanup).

    Only files named like `_atomic`'s temps for this very target are removed; returns them."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = [p for p in path.parent.glob(f"{_temp_prefix(path)}*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A previous writer of this file that was SIGKILLed left its temp behind: a checkpoint's
    # can be tens of MB, and nothing else would ever delete it.
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        Path(tmp).chmod(0o644)  # mkstemp creates 0600; make it readable like a normal file
        # Data on disk before the rename: after a power loss the name never points at a file
        # whose blocks were not written yet.
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file, never half
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` meanwhile (processes of one machine or of a shared
    POSIX file system): for a file that several launches may want to write first, e.g. the ranks
    of a torchrun job. Where ``fcntl`` does not exist (Windows) it does not lock."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except OSError:   # a file system without flock (NFS without lockd, some Lustre mounts): writes stay atomic
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to a temp file in the same directory, then rename over `path`.

    Through an open file, not the temp file's name: torch names the archive inside the zip after
    the file it is given, and a random temp name would make two saves of the same object differ
    in their bytes (and DVC rerun every stage depending on them)."""

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    return _atomic(path, save)


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    return _atomic(path, lambda tmp: tmp.write_text(text))


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    return _atomic(path, lambda tmp: tmp.write_bytes(data))


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Pretty JSON, atomically (NaN/inf are written as null so the file stays valid JSON)."""
    return atomic_write_text(json.dumps(_finite(obj), indent=2, sort_keys=False) + "\n", path)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def load_error_reason(err: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` failed, in a few words for an error message.

    Torch's own text for a file that holds pickled objects advises loading it with
    ``weights_only=False``, which would run whatever code the file carries: never pass it on.
    """
    import pickle

    text = str(err)
    if "Weights only load failed" in text:
        return ("it holds pickled Python objects, not only tensors and plain data; loading them could "
                "run code, so it is refused")
    if isinstance(err, EOFError) or "PytorchStreamReader" in text or "zip archive" in text:
        return "the file is empty, truncated or not written by torch.save"
    if isinstance(err, pickle.UnpicklingError):
        return "not a file written by torch.save"
    first = text.strip().splitlines()[0][:200] if text.strip() else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__
