"""Several processes compute what one process computes (issue #20): the loader's shards, the
global-batch BatchNorm, and every registered method end to end under a 2-process gloo job."""

from __future__ import annotations

import dataclasses
import importlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prunerep.data.arrays import ArrayDataset
from prunerep.data.loader import Loader
from prunerep.methods import list_methods

ROOT = Path(__file__).resolve().parents[2]


def _dataset(n: int = 40) -> ArrayDataset:
    g = torch.Generator().manual_seed(3)
    return ArrayDataset(torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8), torch.arange(n) % 4,
                        ("a", "b", "c", "d"))


def test_the_ranks_shards_together_are_the_batches_of_one_process_with_the_global_batch():
    data = _dataset(40)
    common = {"mean": (0.5,) * 3, "std": (0.25,) * 3, "shuffle": True, "augment": True, "drop_last": True,
              "seed": 7}
    one = Loader(data, 12, **common)
    ranks = [Loader(data, 4, shard=(r, 3), **common) for r in range(3)]
    assert len(one) == 3 and all(len(r) == 3 for r in ranks)        # 40 // 12, the last 4 dropped
    for epoch in (0, 5):
        one.set_epoch(epoch)
        for r in ranks:
            r.set_epoch(epoch)
        for (x, y), *parts in zip(one, *ranks, strict=True):
            assert torch.equal(x, torch.cat([p[0] for p in parts])) and torch.equal(y, torch.cat([p[1] for p in parts]))


def test_a_sharded_loader_refuses_a_last_partial_batch_and_a_rank_outside_the_job():
    data = _dataset(8)
    with pytest.raises(ValueError, match="drop_last"):
        Loader(data, 2, mean=(0.5,) * 3, std=(0.25,) * 3, shuffle=True, augment=False, shard=(0, 2))
    with pytest.raises(ValueError, match="rank 2"):
        Loader(data, 2, mean=(0.5,) * 3, std=(0.25,) * 3, shuffle=True, augment=False, drop_last=True, shard=(2, 2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(module_args: list[str], world: int, timeout: float = 600) -> None:
    """`python -m <module_args>` as `world` gloo ranks (torchrun's environment), or one process."""
    port = _free_port()
    procs = []
    for r in range(world):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]), OMP_NUM_THREADS="1")
        if world > 1:
            env.update(WORLD_SIZE=str(world), RANK=str(r), LOCAL_RANK=str(r), LOCAL_WORLD_SIZE=str(world),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        else:
            for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
                env.pop(key, None)
        procs.append(subprocess.Popen([sys.executable, "-m", *module_args], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    for r, (p, out) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"rank {r} of {world} failed:\n{out[-4000:]}"


def test_global_batchnorm_on_two_ranks_equals_batchnorm_on_the_whole_batch(tmp_path):
    out = tmp_path / "bn.pt"
    _launch(["tests.unit.distributed_bn_worker", str(out)], world=2, timeout=120)
    got = torch.load(out)
    for name in ("output", "input_grad", "weight_grad", "bias_grad", "running_mean", "running_var"):
        assert torch.allclose(got[name], got[f"ref_{name}"], atol=1e-5, rtol=1e-5), name


def _run(method: str, world: int, batch: int, out: Path) -> dict:
    _launch(["tests.unit.distributed_worker", method, str(out), str(batch)], world=world)
    return torch.load(out)


FAST_METHODS = ["dsa", "greg"]   # a bi-level method with a gradient preconditioner, a penalty one; the rest: slow tier


@pytest.mark.parametrize("method", [m if m in FAST_METHODS else pytest.param(m, marks=pytest.mark.slow)
                                    for m in list_methods()])
def test_a_two_process_run_ends_with_the_widths_and_weights_of_a_one_process_run(method, tmp_path):
    """2 gloo ranks with 16 images each of every batch of 32 vs one process: same global batches, gradients
    averaged, BatchNorm over the global batch; in float64 (see distributed_worker), where only
    the order of the sums differs: widths and accuracies agree exactly, weights to 1e-9."""
    one = _run(method, 1, 32, tmp_path / "one.pt")
    two = _run(method, 2, 32, tmp_path / "two.pt")
    assert two["widths"] == one["widths"]
    assert two["macs"] == one["macs"]
    assert two["state"].keys() == one["state"].keys()
    for name, ref in one["state"].items():
        got = two["state"][name]
        assert got.shape == ref.shape, name
        if ref.is_floating_point():
            assert torch.allclose(got, ref, atol=1e-9, rtol=1e-9), f"{name}: max diff {(got - ref).abs().max():.2e}"
        else:
            assert torch.equal(got, ref), name
    assert two["val_acc"] == one["val_acc"] and two["test_acc"] == one["test_acc"]


def test_a_study_launches_each_run_on_two_ranks_and_reuses_it_like_any_finished_run(tmp_path, monkeypatch):
    """PRUNEREP_LAUNCHER: `execute` starts each run as `<launcher> -m prunerep.runner.job`; rank 0
    saves the network and the record, the study reads them back; a later study without the
    launcher finds the run finished (same identity: the launch is not part of what a run is)."""
    execute_module = importlib.import_module("prunerep.runner.execute")   # the package exports a function of that name
    from prunerep.api import spec_for
    from prunerep.data import DataConfig
    from prunerep.data.arrays import save_cache
    from prunerep.engine import OptimConfig, RuntimeConfig
    from prunerep.models import get_model
    from prunerep.models.checkpoint import save_model
    from prunerep.runner.execute import LatencySettings, StudyContext, execute

    monkeypatch.chdir(tmp_path)
    g = torch.Generator().manual_seed(0)
    save_cache("artifacts/data/dataset.pt", dataset="synthetic",
               train_images=torch.randint(0, 256, (96, 1, 12, 12), generator=g, dtype=torch.uint8),
               train_labels=torch.arange(96) % 3,
               test_images=torch.randint(0, 256, (24, 1, 12, 12), generator=g, dtype=torch.uint8),
               test_labels=torch.arange(24) % 3, classes=("a", "b", "c"), source="synthetic")
    torch.manual_seed(0)
    save_model(get_model("resnet20", shortcut="A", num_classes=3, in_channels=1), Path("artifacts/pretrain/r20/model.pt"))
    dense = get_model("resnet20", shortcut="A", num_classes=3, in_channels=1)
    spec = dataclasses.replace(
        spec_for("gdp", 0.6, hyper={"lam_init": 0.5, "lam_max": 5.0, "ramp_epochs": 0.5},
                 finetune=OptimConfig(epochs=1, lr=0.01, max_steps=2), batch_size=16, epochs=1,
                 runtime=RuntimeConfig(device="cpu", channels_last=False, progress=False), model=dense,
                 example_input=torch.zeros(1, 1, 12, 12)),
        label="gdp@0.6", model="r20")
    ctx = StudyContext(slug="dist", profile="smoke", data=DataConfig(val_size=24), latency=LatencySettings(enabled=False))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv(execute_module.LAUNCHER_ENV,
                       f"{sys.executable} -m torch.distributed.run --standalone --nproc_per_node 2")
    (record,) = execute([spec], ctx)
    log = Path(f"artifacts/dist/logs/{execute_module.run_name(spec)}.log")
    assert log.exists() and Path(f"{log}.rank1").exists()
    assert record.macs < record.dense_macs and Path(record.model_path).exists()
    assert record.provenance["identity"]

    monkeypatch.delenv(execute_module.LAUNCHER_ENV)
    ran: list[str] = []
    monkeypatch.setattr(execute_module, "_run_one", lambda job: ran.append(job["name"]))
    (again,) = execute([spec], ctx)
    assert ran == [] and again.widths == record.widths and again.test_acc == record.test_acc


def test_a_launch_that_fails_names_the_command_and_the_log(tmp_path, monkeypatch):
    execute_module = importlib.import_module("prunerep.runner.execute")   # the package exports a function of that name

    job = {"checkpoint_dir": str(tmp_path / "ck"), "name": "r", "log_path": "artifacts/x/logs/r.log",
           "identity": "no-such-run", "model_path": None, "slug": "x"}
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match=r"exited with 3 .*r\.log"):
        execute_module._launched(job, f"{sys.executable} -c 'import sys; sys.exit(3)'")


def test_the_public_api_on_two_ranks_ends_where_one_process_with_the_global_batch_ends(tmp_path):
    """`prunerep.prune` with tensors: its training batches come from GlobalBatchSampler, so 2 ranks
    with 16 images each of every batch of 32 see what one process sees (float64, as above)."""
    one = _launch_api("dsa", 1, 32, tmp_path / "one.pt")
    two = _launch_api("dsa", 2, 32, tmp_path / "two.pt")
    assert two["widths"] == one["widths"] and two["macs"] == one["macs"]
    for name, ref in one["state"].items():
        assert torch.allclose(two["state"][name].double(), ref.double(), atol=1e-9, rtol=1e-9), name
    assert two["val_acc"] == one["val_acc"]


def _launch_api(method: str, world: int, batch: int, out: Path) -> dict:
    _launch(["tests.unit.distributed_worker", method, str(out), str(batch), "api"], world=world)
    return torch.load(out)


@pytest.mark.slow
def test_the_multi_node_launch_command_of_the_docs_runs_a_method_as_two_nodes(tmp_path):
    """docs/distributed.md's multi-node command (c10d rendezvous, one torchrun agent per node),
    with two agents on this machine standing in for two nodes of one process each: the run
    ends where one process with the global batch ends."""
    one = _run("greg", 1, 32, tmp_path / "one.pt")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]), OMP_NUM_THREADS="1")
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(key, None)
    out = tmp_path / "nodes.pt"
    agents = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                                "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "nodes",
                                "-m", "tests.unit.distributed_worker", "greg", str(out), "32"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for _ in range(2)]
    logs = [a.communicate(timeout=600)[0] for a in agents]
    for a, log in zip(agents, logs, strict=True):
        assert a.returncode == 0, log[-4000:]
    two = torch.load(out)
    assert two["widths"] == one["widths"] and two["val_acc"] == one["val_acc"]
    for name, ref in one["state"].items():
        assert torch.allclose(two["state"][name].double(), ref.double(), atol=1e-9, rtol=1e-9), name
