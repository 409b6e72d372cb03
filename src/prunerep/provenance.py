"""What produced a result: content digests of inputs, the code version, run identities.

A run's identity (what resume and caching key on) is a digest of everything it depends on: the
resolved configs, the *bytes* of its input files (never their paths: a retrained dense
checkpoint at the same path is a different input), the data fingerprint and the package source.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import torch

from prunerep.config import to_dict


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of the package's source: a checkpoint written by other code is never resumed."""
    return _source_digest(lambda rel: True)


#: The parts of the package a pruning run executes: everything else (studies plan runs, whose
#: resolved specs are hashed into the identity; reporting, report, nbrun, stages, the API and
#: any package added later) cannot change what a run computes. An allowlist, so that adding a
#: package never changes the identity of finished runs.
RUN_CODE = ("__init__.py", "config.py", "io.py", "paths.py", "provenance.py",
            "data/", "engine/", "models/", "pruning/", "runner/", "methods/")


@cache
def run_code_fingerprint(method_module: str) -> str:
    """Hash of the source a pruning run with the method of `method_module` executes.

    `RUN_CODE` minus the modules of the *other* registered methods, so that editing a paper's
    tables or adding another paper's method does not rerun finished runs, while any change to the
    shared layers, the baselines or this method's module does.
    """
    from prunerep.methods.base import _METHODS, list_methods

    list_methods()
    own = method_module.removeprefix("prunerep.").replace(".", "/") + ".py"
    shared = {"methods/baselines.py"}     # l1, random, slimming: every study's baselines
    others = {cls.__module__.removeprefix("prunerep.").replace(".", "/") + ".py" for cls in _METHODS.values()}
    others -= {own, *shared}
    return _source_digest(lambda rel: rel.startswith(RUN_CODE) and rel not in others)


def _source_digest(include: Any) -> str:
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if include(rel):
            digest.update(rel.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (first 16 hex digits)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def run_key(*parts: Any, code: str | None = None) -> str:
    """Stable identity of a run from its configs, input digests and code (matches resume checkpoints).

    `code`: the source digest to key on (default: the whole package, `code_fingerprint`).
    """
    blob = json.dumps([code or code_fingerprint(), *(to_dict(p) for p in parts)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def git_revision() -> str | None:
    """HEAD commit, with "-dirty" when tracked files differ from it (None outside a checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance(profile: str, **extra: Any) -> dict[str, Any]:
    """Record of what produced a result: profile, code revision, library versions, device."""
    import prunerep

    return {"profile": profile, "git": git_revision(), "code": code_fingerprint(), "prunerep": prunerep.__version__,
            "torch": str(torch.__version__), "python": platform.python_version(),
            "cuda": torch.version.cuda if torch.cuda.is_available() else None,
            "platform": platform.platform(), **extra}
