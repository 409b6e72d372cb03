"""An identical retraining writes an identical `model.pt`: the checkpoint every later stage depends
on holds no wall time and no git revision (they stay in run.json / metrics.json), so DVC does not
rerun the downstream stages after a rerun or a commit that changes nothing the training reads."""

from __future__ import annotations

import json
import shutil

import prunerep.provenance
from prunerep.stages.pretrain import VOLATILE, checkpoint_meta
from prunerep.stages.pretrain import main as pretrain_main

try:
    from .test_bad_input import pretrain_ws
except ImportError:  # run as a plain module (rootdir without packages)
    from test_bad_input import pretrain_ws


def test_checkpoint_meta_drops_only_the_volatile_entries():
    metrics = {"model": "m", "budget": {"epochs": 1, "wall_time_s": 12.3}, "provenance": {"git": "abc", "code": "x"},
               "test_acc": 50.0}
    assert checkpoint_meta(metrics) == {"model": "m", "budget": {"epochs": 1}, "provenance": {"code": "x"},
                                        "test_acc": 50.0}
    assert metrics["budget"]["wall_time_s"] == 12.3          # the input is not changed
    assert set(VOLATILE) == {"budget", "provenance"}


def test_an_identical_retraining_writes_identical_checkpoint_bytes(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    pretrain_ws()(ws)
    monkeypatch.chdir(ws)
    model_pt = ws / "artifacts" / "pretrain" / "tiny" / "model.pt"
    runs = []
    for git in ("aaaa", "bbbb"):
        monkeypatch.setattr(prunerep.provenance, "git_revision", lambda git=git: git)
        assert pretrain_main(["tiny"]) == 0
        record = json.loads((ws / "results" / "pretrain" / "tiny" / "run.json").read_text())
        runs.append((model_pt.read_bytes(), record))
        shutil.rmtree(ws / "artifacts" / "checkpoints")       # the second run trains from scratch again
    (first, a), (second, b) = runs
    assert a["provenance"]["git"] == "aaaa" and b["provenance"]["git"] == "bbbb"   # still recorded ...
    assert a["budget"]["wall_time_s"] > 0 and "wall_time_s" in b["budget"]
    assert first == second                                                       # ... but not in model.pt
