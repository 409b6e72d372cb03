"""Every method survives SIGKILL (issue #15): a run killed right after one checkpoint and then
again in the middle of writing a later one, and finally resumed, ends with exactly the network,
widths, accuracies, training histories and method state of a run that was never interrupted.

The kills are real ``SIGKILL`` s of a separate process (`tests.unit.kill_resume_worker`), so
nothing of the killed process survives but its files; the method's own state (gates, penalties,
architecture parameters, schedules, traces) must come back from the resume checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from prunerep.engine import trainer
from prunerep.methods import list_methods
from prunerep.methods.base import build_hyper, get_method
from prunerep.runner import run_pruning
from tests.unit.kill_resume_worker import build

ROOT = Path(__file__).resolve().parents[2]


def _kill_run(method: str, checkpoint_dir: Path, when: str) -> None:
    # the worker imports `tests.unit.kill_resume_worker` from this checkout (and whatever else
    # PYTHONPATH already names first, e.g. a worktree's src/)
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), str(ROOT)) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    done = subprocess.run([sys.executable, "-m", "tests.unit.kill_resume_worker", method, str(checkpoint_dir), when],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, (f"{method}: the run was to be SIGKILLed at {when} but exited "
                                   f"{done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def _timeless(value: Any) -> Any:
    """`value` without wall-clock fields (the only thing a resumed run may report differently)."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items()
                if not (k.endswith("_s") or "time" in k)}
    if isinstance(value, list | tuple):
        return [_timeless(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def _canonical(value: Any) -> str:
    return json.dumps(_timeless(value), sort_keys=True, default=str)


def _one_shot(method: str) -> bool:
    """No training phase of its own: only the fine-tuning every method also runs."""
    return not get_method(method, build_hyper(method)).phases()


# One-shot methods resume only through the fine-tuning the others already exercise, so they run
# in the slow tier (`python3 run.py test -m slow`) to keep CI's fast tier short; every method with
# training state of its own (gates, penalties, architecture parameters) runs in the fast tier.
@pytest.mark.parametrize("method", [pytest.param(m, marks=pytest.mark.slow) if _one_shot(m) else m
                                    for m in list_methods()])
def test_a_twice_killed_run_resumes_to_the_uninterrupted_result(method, tmp_path, monkeypatch):
    spec, dense, splits = build(method)
    saves = []
    real = trainer.save_resume_checkpoint
    monkeypatch.setattr(trainer, "save_resume_checkpoint", lambda state, path: saves.append(path) or real(state, path))
    reference = run_pruning(spec, dense, splits, checkpoint_dir=tmp_path / "reference", run_key="kill-test")
    monkeypatch.setattr(trainer, "save_resume_checkpoint", real)
    n = len(saves)
    assert n >= 2, f"{method}: the tiny run wrote {n} checkpoint(s); the test needs 2 to kill between them"

    ckpt = tmp_path / "killed"
    _kill_run(method, ckpt, "after:1")                    # right after the first checkpoint
    # the second process resumes after checkpoint 1; its j-th write is checkpoint 1 + j overall
    _kill_run(method, ckpt, f"during:{max(1, n - 2)}")   # half-way through a later write
    assert list(ckpt.rglob("*.tmp")), "the kill inside a checkpoint write left no half-written temp file"

    # the killed attempts' training time up to the checkpoints the last attempt resumes from (the
    # kill inside a write left the previous checkpoint as *.prev.pt, which the resume falls back to)
    before = {}
    for phase in {p.parent for p in ckpt.rglob("checkpoint*.pt")}:
        path = next(p for p in (phase / trainer.CHECKPOINT_NAME, phase / "checkpoint.prev.pt") if p.exists())
        before[phase.name] = float(torch.load(path, weights_only=True)["elapsed_s"])
    resumed = run_pruning(spec, dense, splits, checkpoint_dir=ckpt, run_key="kill-test")

    assert before and all(resumed.phase_time_s[phase] >= t > 0 for phase, t in before.items()), \
        f"{method}: a resumed phase reports less time than its killed attempts spent: {before}, {resumed.phase_time_s}"
    assert not list(ckpt.rglob("*.tmp")), "the resumed run left the killed write's temp file"
    assert (resumed.widths, resumed.macs, resumed.params) == (reference.widths, reference.macs, reference.params)
    got, want = resumed.model.state_dict(), reference.model.state_dict()
    assert list(got) == list(want)
    for key, tensor in want.items():
        assert torch.equal(got[key], tensor), f"{method}: {key} differs after the kills"
    assert (resumed.val_acc_before_finetune, resumed.test_acc_before_finetune, resumed.val_acc, resumed.test_acc) \
        == (reference.val_acc_before_finetune, reference.test_acc_before_finetune, reference.val_acc,
            reference.test_acc)
    assert _canonical(resumed.histories) == _canonical(reference.histories)
    assert _canonical(resumed.method_summary) == _canonical(reference.method_summary)
    assert resumed.selection == reference.selection
