"""What every stage shares: loading the data splits, run identity and provenance records."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prunerep.config import to_dict

DATASET_CACHE = Path("artifacts/data/dataset.pt")


@dataclass(frozen=True)
class SubsetConfig:
    """Fast profiles shrink the data (never the method): class-stratified subsets of each split."""

    train: int | None = None
    val: int | None = None
    test: int | None = None


def load_data(data_cfg: Any, subset: SubsetConfig, cache: Path = DATASET_CACHE):
    """The cached dataset, split into train / val / test as `data_cfg` and `subset` say."""
    from prunerep.data import load_splits

    return load_splits(cache, val_size=data_cfg.val_size, split_seed=data_cfg.split_seed,
                       train_subset=subset.train, val_subset=subset.val, test_subset=subset.test)


def code_fingerprint() -> str:
    """Hash of the package's source: a checkpoint written by other code is never resumed."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run_key(*parts: Any) -> str:
    """Stable identity of a run from its configs, inputs and code (matches resume checkpoints)."""
    blob = json.dumps([code_fingerprint(), *(to_dict(p) for p in parts)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def git_revision() -> str | None:
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

    return {"profile": profile, "git": git_revision(), "prunerep": prunerep.__version__,
            "torch": str(torch.__version__), "python": platform.python_version(),
            "cuda": torch.version.cuda if torch.cuda.is_available() else None,
            "platform": platform.platform(), **extra}
