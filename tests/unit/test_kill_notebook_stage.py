"""A notebook stage SIGKILLed mid-run (the whole process group: papermill, its kernel, the pool
workers) and rerun ends with the metrics of an uninterrupted run, and leaves no metrics behind
in between that DVC could take for the stage's output.

Slow tier (`python3 run.py test -m slow`): three executions of the compare notebook on a tiny
synthetic workspace (~1-2 min); the per-method kill/resume tests in test_kill_resume.py run in
the fast tier."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

try:
    from .test_bad_input import ROOT, _tiny_cache, _tiny_params
except ImportError:  # run as a plain module (rootdir without packages)
    from test_bad_input import ROOT, _tiny_cache, _tiny_params

pytestmark = pytest.mark.slow


def _workspace(ws: Path) -> None:
    """The tiny cache, a dense 'tiny' ResNet-20 pretrained for one epoch, and a compare section
    with three methods (one-shot, gated, random) at one target and seed, one worker."""
    ws.mkdir(parents=True)
    _tiny_cache(ws)
    params = _tiny_params()
    smoke = params["compare"]["profiles"]["smoke"]
    smoke.update({"model": "tiny", "methods": ["l1", "gdp", "random"], "workers": 1, "round_to": None,
                  "batch_size": 16, "subset": {"train": 160, "val": 40, "test": 50}})
    params["compare"]["runtime"] = {"device": "cpu", "channels_last": False, "progress": False}
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(ROOT / "notebooks", ws / "notebooks")
    (ws / "dvc.yaml").write_text("stages: {}\n")
    subprocess.run([sys.executable, "-m", "prunerep.stages", "pretrain", "tiny"], cwd=ws, check=True,
                   capture_output=True)


def _nbrun(ws: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "prunerep.nbrun", "compare"], cwd=ws, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_killed_notebook_stage_reruns_to_the_uninterrupted_metrics(tmp_path):
    base = tmp_path / "base"
    _workspace(base)
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    shutil.copytree(base, ref)
    shutil.copytree(base, killed)

    assert _nbrun(ref).wait(timeout=600) == 0
    want = json.loads((ref / "results" / "compare" / "metrics.json").read_text())

    proc = _nbrun(killed)
    deadline = time.monotonic() + 600
    # kill once a run has checkpointed (mid-stage: some runs done or half-way, others not started)
    while not list((killed / "artifacts").rglob("checkpoint.pt")):
        assert proc.poll() is None, "the stage ended before any checkpoint was written"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "results" / "compare" / "metrics.json").exists(), "a killed stage left its metrics"

    assert _nbrun(killed).wait(timeout=600) == 0
    got = json.loads((killed / "results" / "compare" / "metrics.json").read_text())
    assert got == want
    assert want["runs"] == 3
