"""The pretrain stage end to end on a tiny synthetic dataset: outputs, resume, torch.distributed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prunerep.data.arrays import save_cache
from prunerep.models.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[2]

PARAMS = """
profile: smoke
data: {dataset: cifar10, source: download, val_size: 40, split_seed: 0}
pretrain:
  models:
    tiny: {name: resnet20, kwargs: {shortcut: A}}
    # the keys the papers' sections name (config check refuses a key pretrain.models lacks)
    resnet56: {name: resnet56, kwargs: {shortcut: A}}
    resnet20: {name: resnet20, kwargs: {shortcut: A}}
    vgg16: {name: vgg16_bn}
  optim: {epochs: 2, batch_size: 16, lr: 0.05, schedule: constant}
  runtime: {device: cpu, channels_last: false, progress: false}
baseline: {models: [tiny]}
"""


def _workspace(tmp_path: Path) -> Path:
    g = torch.Generator().manual_seed(0)
    save_cache(tmp_path / "artifacts" / "data" / "dataset.pt", dataset="cifar10",
               train_images=torch.randint(0, 256, (200, 3, 32, 32), dtype=torch.uint8, generator=g),
               train_labels=torch.arange(200) % 10,
               test_images=torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8, generator=g),
               test_labels=torch.arange(50) % 10, classes=[str(i) for i in range(10)], source="synthetic")
    params = ROOT / "params.yaml"
    text = params.read_text()
    # every registered section must be present: take the real file's paper sections as they are
    sections = {}
    import yaml

    real = yaml.safe_load(text)
    mine = yaml.safe_load(PARAMS)
    for key, value in real.items():
        sections[key] = mine.get(key, value)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(sections, sort_keys=False))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    return tmp_path


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_pretrain_writes_checkpoint_metrics_and_resumes(tmp_path):
    ws = _workspace(tmp_path)
    out = _run([sys.executable, "-m", "prunerep.stages", "pretrain", "tiny"], ws)
    assert out.returncode == 0, out.stderr
    record = json.loads((ws / "results/pretrain/tiny/run.json").read_text())
    assert record["profile"] == "smoke" and record["budget"]["train_images"] == 160
    assert record["macs"] == 40_551_040
    metrics = json.loads((ws / "results/pretrain/tiny/metrics.json").read_text())
    assert metrics["train_images"] == 160 and metrics["macs"] == 40_551_040    # headline scalars only
    assert all(not isinstance(v, dict | list) for v in metrics.values())
    _, meta = load_model(ws / "artifacts/pretrain/tiny/model.pt")
    assert meta["arch"]["name"] == "resnet20"
    # a second run finds the finished checkpoint and does not train again
    again = _run([sys.executable, "-m", "prunerep.stages", "pretrain", "tiny"], ws)
    assert again.returncode == 0 and "resuming after epoch 2/2" in again.stdout


@pytest.mark.slow
def test_pretrain_under_torchrun_two_processes(tmp_path):
    ws = _workspace(tmp_path)
    torchrun = Path(sys.executable).parent / "torchrun"
    out = _run([str(torchrun), "--nproc_per_node", "2", "-m", "prunerep.stages", "pretrain", "tiny"], ws)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((ws / "results/pretrain/tiny/metrics.json").read_text())
    assert metrics["val_acc"] >= 0


def test_unknown_model_key_is_one_clear_error(tmp_path):
    ws = _workspace(tmp_path)
    out = _run([sys.executable, "-m", "prunerep.stages", "pretrain", "nosuch"], ws)
    assert out.returncode == 2
    assert "pretrain.models: no entry 'nosuch'" in out.stderr
    assert not (ws / "results").exists() and not (ws / "artifacts/pretrain").exists()
