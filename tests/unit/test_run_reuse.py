"""A finished run is not run again: same identity (spec, data, dense checkpoint, run code) ->
its record and pruned network come back from its checkpoint directory, bit for bit; any change
to what it computes (its spec, the dense checkpoint, the run code) runs it again."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest
import torch

import prunerep.data
from prunerep import provenance
from prunerep.data import DataConfig
from prunerep.engine import OptimConfig, RuntimeConfig
from prunerep.methods import Budget
from prunerep.methods.base import build_hyper
from prunerep.models import get_model
from prunerep.models.checkpoint import load_model, save_model
from prunerep.runner import RunSpec
from prunerep.runner.execute import LatencySettings, StudyContext, execute
from tests.unit.test_runner_logs import _splits

execute_module = importlib.import_module("prunerep.runner.execute")   # the package exports a function of that name


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(prunerep.data, "load_data", lambda *a, **k: _splits())
    torch.manual_seed(0)
    save_model(get_model("resnet20", shortcut="A", num_classes=3, in_channels=1),
               Path("artifacts/pretrain/resnet20/model.pt"))
    spec = RunSpec(method="l1", budget=Budget(macs_keep=0.6), hyper=build_hyper("l1", None),
                   finetune=OptimConfig(epochs=1, batch_size=16, lr=0.01, max_steps=2), batch_size=16,
                   runtime=RuntimeConfig(device="cpu", channels_last=False, progress=False),
                   label="l1@0.6", model="resnet20")
    ctx = StudyContext(slug="reuse", profile="smoke", data=DataConfig(), workers=1,
                       latency=LatencySettings(enabled=False))
    return spec, ctx


def _count_runs(monkeypatch) -> list[str]:
    ran: list[str] = []
    real = execute_module._run_one
    monkeypatch.setattr(execute_module, "_run_one", lambda job: ran.append(job["name"]) or real(job))
    return ran


def test_a_finished_run_is_reused_with_its_network(setup, monkeypatch, capsys):
    spec, ctx = setup
    ran = _count_runs(monkeypatch)
    (first,) = execute([spec], ctx)
    model_path = Path(first.model_path)
    weights = {k: v.clone() for k, v in load_model(model_path)[0].state_dict().items()}
    model_path.unlink()                                   # DVC deletes a stage's outputs before it reruns
    capsys.readouterr()
    (again,) = execute([spec], ctx)
    assert ran == ["resnet20-l1@0.6-s0"]                  # ran once
    assert again == first
    restored = load_model(model_path)[0].state_dict()
    assert all(torch.equal(restored[k], v) for k, v in weights.items())
    assert "finished before, reused" in capsys.readouterr().out


def test_a_changed_spec_or_run_code_runs_again(setup, monkeypatch):
    spec, ctx = setup
    ran = _count_runs(monkeypatch)
    execute([spec], ctx)
    execute([dataclasses.replace(spec, seed=0, budget=Budget(macs_keep=0.7))], ctx)   # same name, other spec
    assert len(ran) == 2
    execute([dataclasses.replace(spec, budget=Budget(macs_keep=0.7))], ctx)        # unchanged: reused
    assert len(ran) == 2
    monkeypatch.setattr(provenance, "run_code_fingerprint", lambda module: "edited method code")
    execute([dataclasses.replace(spec, budget=Budget(macs_keep=0.7))], ctx)
    assert len(ran) == 3


def test_a_run_another_study_finished_is_reused_under_this_studys_name(setup, monkeypatch):
    spec, ctx = setup
    ran = _count_runs(monkeypatch)
    (first,) = execute([spec], ctx)
    (other,) = execute([spec], dataclasses.replace(ctx, slug="compare"))
    assert len(ran) == 1
    assert other.slug == "compare" and other.test_acc == first.test_acc
    assert Path(other.model_path).exists() and "compare" in other.model_path


def test_an_unreadable_finished_record_reruns_instead_of_failing(setup, monkeypatch):
    spec, ctx = setup
    ran = _count_runs(monkeypatch)
    execute([spec], ctx)
    (finished,) = Path("artifacts/finished").glob(f"*/{execute_module.FINISHED_RECORD}")
    finished.write_text('{"slug": "reuse", "trunc')
    execute([spec], ctx)
    assert len(ran) == 2


def test_run_code_leaves_out_presentation_and_other_methods_but_not_the_own_method():
    own = provenance.run_code_fingerprint("prunerep.methods.gdp")
    assert own != provenance.run_code_fingerprint("prunerep.methods.dsa")
    assert own != provenance.code_fingerprint()
    included: list[str] = []
    real = provenance._source_digest

    def spy(include):
        package = Path(provenance.__file__).resolve().parent
        included.extend(p.relative_to(package).as_posix() for p in sorted(package.rglob("*.py"))
                        if include(p.relative_to(package).as_posix()))
        return real(include)

    provenance.run_code_fingerprint.cache_clear()
    try:
        provenance._source_digest, saved = spy, real
        provenance.run_code_fingerprint("prunerep.methods.gdp")
    finally:
        provenance._source_digest = saved
        provenance.run_code_fingerprint.cache_clear()
    assert "methods/gdp.py" in included and "methods/baselines.py" in included
    assert "methods/base.py" in included and "runner/run.py" in included and "pruning/surgery.py" in included
    assert "methods/dsa.py" not in included and "methods/wgates.py" not in included
    assert not any(p.startswith(("studies/", "reporting/", "stages/")) for p in included)
    assert "nbrun.py" not in included


def test_a_shared_finished_runs_folder_is_reused_from_another_copy_of_the_repository(setup, monkeypatch, tmp_path):
    """PRUNEREP_FINISHED_RUNS (docs/sweeps.md): a `dvc exp` experiment runs in a temporary copy of
    the repository; pointed at the workspace's folder it reuses what the workspace finished, and
    what it finishes lands there. The folder changes where runs are kept, not their identity."""
    spec, ctx = setup
    shared = tmp_path / "workspace-finished"
    monkeypatch.setenv("PRUNEREP_FINISHED_RUNS", str(shared))
    ran = _count_runs(monkeypatch)
    (first,) = execute([spec], ctx)
    assert len(ran) == 1
    assert (shared / first.provenance["identity"] / execute_module.FINISHED_RECORD).exists()
    assert not Path("artifacts/finished").exists()
    dense = Path("artifacts/pretrain/resnet20/model.pt").read_bytes()
    copy = tmp_path / "experiment-copy"       # another checkout: its own artifacts/, the same dense bytes
    (copy / "artifacts/pretrain/resnet20").mkdir(parents=True)
    (copy / "artifacts/pretrain/resnet20/model.pt").write_bytes(dense)
    monkeypatch.chdir(copy)
    (again,) = execute([spec], ctx)
    assert len(ran) == 1                                   # nothing ran in the copy
    assert again.provenance["identity"] == first.provenance["identity"] and again.test_acc == first.test_acc
    assert Path(again.model_path).exists() and str(copy) in str(Path(again.model_path).resolve())
