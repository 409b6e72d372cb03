"""Where the pipeline's files live (relative to the repository root): the one place for each.

dvc.yaml names the same paths; `tests/unit/test_contract.py` checks that the two agree.
"""

from __future__ import annotations

from pathlib import Path

ARTIFACTS = Path("artifacts")      # heavy outputs (DVC cache): decoded data, checkpoints, pruned nets
RESULTS = Path("results")          # light outputs (committed to git): metrics, records, tables, figures
DATASET_CACHE = ARTIFACTS / "data" / "dataset.pt"
CHECKPOINTS = ARTIFACTS / "checkpoints"   # per-run resume checkpoints (not a DVC output)
FINISHED_RUNS = ARTIFACTS / "finished"    # finished runs by identity, shared by every study (not a DVC output)


#: An absolute folder to keep finished runs in instead of FINISHED_RUNS, e.g. the workspace's
#: ``artifacts/finished`` for `dvc exp` experiments, which run in temporary copies of the repository
#: and would otherwise recompute every run the workspace (or another experiment) already finished
#: (docs/sweeps.md). Records are written atomically and keyed by identity, so copies may share it.
FINISHED_RUNS_ENV = "PRUNEREP_FINISHED_RUNS"


def finished_run(identity: str) -> Path:
    """Folder of a finished run (its record and pruned network), found by identity from any study."""
    import os

    shared = os.environ.get(FINISHED_RUNS_ENV, "").strip()
    return (Path(shared).expanduser() if shared else FINISHED_RUNS) / identity


def dense_checkpoint(model_key: str) -> Path:
    """The dense checkpoint of pretrain.models key `model_key` (output of `pretrain@<key>`)."""
    return ARTIFACTS / "pretrain" / model_key / "model.pt"


def pretrain_metrics(model_key: str) -> Path:
    return RESULTS / "pretrain" / model_key / "metrics.json"


def pruned_models(slug: str) -> Path:
    """Folder of the pruned networks a study saves (architecture + state dict)."""
    return ARTIFACTS / slug / "models"


def run_logs(slug: str) -> Path:
    """Folder of the per-run logs of a study (progress lines and bars of each run)."""
    return ARTIFACTS / slug / "logs"


def study_results(slug: str) -> Path:
    return RESULTS / slug
