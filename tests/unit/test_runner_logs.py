"""A run's output (epoch lines, progress bars, warnings) goes to its log file; the caller sees one
short line per run, in this process and in worker processes."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

import prunerep.data
from prunerep.data import DataConfig
from prunerep.data.arrays import ArrayDataset, DataSplits
from prunerep.engine import OptimConfig, RuntimeConfig
from prunerep.engine.parallel import map_jobs
from prunerep.engine.trainer import _progress_bar
from prunerep.methods import Budget
from prunerep.methods.base import build_hyper
from prunerep.models import get_model
from prunerep.models.checkpoint import save_model
from prunerep.runner import RunSpec
from prunerep.runner.execute import LatencySettings, StudyContext, _output_to, execute


def _splits() -> DataSplits:
    def ds(n: int, seed: int) -> ArrayDataset:
        g = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, 1, 12, 12), generator=g, dtype=torch.uint8)
        return ArrayDataset(images, torch.arange(n) % 3, ("a", "b", "c"))

    return DataSplits(ds(32, 0), ds(16, 1), ds(16, 2), (0.5,), (0.25,), "fp", "synthetic")


def test_execute_in_process_writes_the_run_output_to_its_log(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(prunerep.data, "load_data", lambda *a, **k: _splits())
    torch.manual_seed(0)
    save_model(get_model("resnet20", shortcut="A", num_classes=3, in_channels=1),
               Path("artifacts/pretrain/resnet20/model.pt"))
    short = {"epochs": 1, "batch_size": 16, "lr": 0.01, "max_steps": 2}
    spec = RunSpec(method="l1", budget=Budget(macs_keep=0.6), hyper=build_hyper("l1", None),
                   finetune=OptimConfig(**short), batch_size=16,
                   runtime=RuntimeConfig(device="cpu", channels_last=False, progress=True),
                   label="l1@0.6", model="resnet20")
    ctx = StudyContext(slug="logtest", profile="smoke", data=DataConfig(), workers=1,
                       latency=LatencySettings(enabled=False))
    (record,) = execute([spec], ctx)
    out = capsys.readouterr()
    name = "resnet20-l1@0.6-s0"
    log = Path("artifacts/logtest/logs") / f"{name}.log"
    text = log.read_text()
    assert f"=== {name}: started" in text and f"=== {name}: finished" in text
    assert "epoch 1/1" in text  # the training loop's epoch line
    assert "epoch 1/1" not in out.out and out.err == ""
    lines = out.out.splitlines()
    assert lines[0] == f"[1/1] {name}: test acc {record.test_acc:.2f}% ({record.wall_time_s:.0f} s)"
    assert lines[1] == ("1 runs on 1 worker(s), 0 reused (same identity: spec, data, dense checkpoint, code); "
                        "per-run logs in artifacts/logtest/logs/")
    assert len(lines) == 2
    assert str(tmp_path) not in out.out  # no absolute path of this machine


def test_output_to_keeps_a_failing_runs_traceback(tmp_path, capsys):
    log = tmp_path / "logs" / "r.log"
    with pytest.raises(RuntimeError, match="boom"), _output_to(str(log), "r"):
        print("working")
        raise RuntimeError("boom")
    text = log.read_text()
    assert "working" in text and "RuntimeError: boom" in text and "finished" not in text
    assert capsys.readouterr().out == ""


def _noisy_job(job: dict[str, Any]) -> str:
    """A worker body that prints, warns and draws a progress bar (module level: spawn pickles it)."""
    with _output_to(job["log_path"], job["name"]):
        print(f"hello from {job['name']}")
        with warnings.catch_warnings():
            # one worker may take both jobs; Python shows a warning once per place per process
            warnings.simplefilter("always")
            warnings.warn("a warning in the worker", UserWarning, stacklevel=1)
        bar = _progress_bar()(total=3, desc="bar", file=sys.stdout, mininterval=0)
        for _ in range(3):
            bar.update(1)
        bar.close()
    return job["name"]


def test_worker_processes_write_to_their_own_logs(tmp_path, capfd):
    jobs = [{"name": f"r{i}", "log_path": str(tmp_path / f"r{i}.log")} for i in range(2)]
    assert list(map_jobs(_noisy_job, jobs, workers=2, lazy=True)) == ["r0", "r1"]
    for i in range(2):
        text = (tmp_path / f"r{i}.log").read_text()
        assert f"hello from r{i}" in text and "a warning in the worker" in text and "3/3" in text
    out = capfd.readouterr()
    assert "hello from" not in out.out + out.err and "warning" not in out.err
