"""The sweep mechanism of docs/sweeps.md on a tiny DVC project: queued experiments (`dvc exp run
--queue -S ...`) run side by side by `dvc queue start -j 2`, each in its own copy of the repository
under .dvc/tmp/exps/; `dvc exp show --json` holds each one's params and metrics; each experiment's
commit holds its own `runs.jsonl` (the project's RunRecord lines), which are merged into one study
for the verdict rule; `dvc exp apply` brings one experiment's results, and its DVC-cached output,
into the workspace.

Also checked: two experiments ran at the same time, and the environment given to `dvc queue
start` (OMP_NUM_THREADS, how docs/sweeps.md sets threads per experiment) reaches the stage.

Self-contained: a git + DVC project in tmp_path whose one stage writes RunRecords with
`prunerep.runner.record` (no data, no training); never touches this repository. Offline; ~45 s on
2 cores (marked slow).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from prunerep.reporting.stats import FEW_SEEDS, SUPPORTED, mean_interval, verdict
from prunerep.runner.record import RunRecord

pytestmark = pytest.mark.slow

SEEDS = (1, 2, 3)

# The stage: reads its params (seed, budget) like a study does, writes one RunRecord per run to
# results/toy/runs.jsonl (git), headline scalars to metrics.json (git) and a "network" to
# artifacts/toy/model.txt (DVC cache), the project's split of light and heavy outputs.
STAGE = '''
import json, os, time
from pathlib import Path

import yaml

from prunerep.runner.record import RunRecord, write_records

p = yaml.safe_load(Path("params.yaml").read_text())["toy"]
start = time.time()
time.sleep(3.0)   # long enough for two queued experiments to overlap
records = []
for seed in p["seeds"]:
    acc = 50.0 + 10.0 * p["budget"] + seed           # deterministic stand-in for a run
    records.append(RunRecord(
        slug="toy", label=f"toy@{p['budget']}", method="l1", model="tiny", seed=seed,
        budget={"describe": f"{p['budget']} of the MACs", "macs_keep": p["budget"]},
        dense_macs=100, dense_params=10, macs=int(100 * p["budget"]), params=5, widths={},
        val_acc=acc, test_acc=acc, val_acc_before_finetune=acc, test_acc_before_finetune=acc,
        selection="best_val", phase_time_s={},
        provenance={"cwd": os.getcwd(), "omp": os.environ.get("OMP_NUM_THREADS"), "start": start,
                    "end": time.time()}))
write_records(records, "results/toy/runs.jsonl")
Path("results/toy/metrics.json").write_text(json.dumps(
    {"test_acc_mean": sum(r.test_acc for r in records) / len(records), "runs": len(records)}))
Path("artifacts/toy").mkdir(parents=True, exist_ok=True)
Path("artifacts/toy/model.txt").write_text(f"seeds {p['seeds']} budget {p['budget']}\\n")
'''


def _dvc_yaml(python: str) -> str:
    return textwrap.dedent(f"""\
        stages:
          toy:
            cmd: {python} stage.py
            deps: [stage.py]
            params: [toy]
            outs:
              - artifacts/toy/model.txt
              - results/toy/runs.jsonl:
                  cache: false
            metrics:
              - results/toy/metrics.json:
                  cache: false
        """)


def _dvc() -> str | None:
    """The dvc command: on PATH, or beside this interpreter (a .venv that is not activated)."""
    beside = Path(sys.executable).parent / "dvc"
    return shutil.which("dvc") or (str(beside) if beside.exists() else None)


def _run(args: list[str], cwd: Path, timeout: float = 120) -> str:
    if args[0] == "dvc":
        args = [_dvc() or "dvc", *args[1:]]
    out = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _env() -> dict[str, str]:
    # the stage imports prunerep from this checkout, whatever the experiment's working directory
    src = str(Path(__file__).resolve().parents[2] / "src")
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    # dvc's queue workers start `dvc` by name: its folder goes on PATH
    bindir = str(Path(_dvc() or "dvc").parent)
    return dict(os.environ, PYTHONPATH=path, PATH=os.pathsep.join(p for p in (bindir, os.environ.get("PATH")) if p), GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid",
                GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid", DVC_NO_ANALYTICS="1",
                OMP_NUM_THREADS="1")


def _project(root: Path) -> Path:
    root.mkdir()
    _run(["git", "init", "-q", "-b", "main"], root)
    _run(["dvc", "init", "-q"], root)
    _run(["dvc", "config", "core.analytics", "false"], root)
    _run(["dvc", "config", "core.check_update", "false"], root)
    (root / "params.yaml").write_text("toy:\n  seeds: [0]\n  budget: 0.5\n")
    (root / "stage.py").write_text(STAGE)
    (root / "dvc.yaml").write_text(_dvc_yaml(sys.executable))
    (root / "results" / "toy").mkdir(parents=True)
    (root / ".gitignore").write_text("/artifacts/\n")
    _run(["dvc", "repro", "-q"], root)
    _run(["git", "add", "-A"], root)
    _run(["git", "commit", "-q", "-m", "baseline"], root)
    return root


def _experiments(root: Path) -> dict[str, dict]:
    """name -> {"state", "params", "metrics", "rev"} of the experiments of HEAD (`dvc exp show --json`)."""
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], root))
    out = {}
    for row in shown:
        for exp in row.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                name = rev.get("name") or exp.get("name")
                # executor.state: queued / running / success / failed (None once DVC forgot the task)
                state = (exp.get("executor") or {}).get("state")
                if state is None and data.get("timestamp") and not rev.get("error"):
                    state = "success"
                out[name] = {"state": state, "rev": rev.get("rev"),
                             "params": data.get("params", {}).get("params.yaml", {}).get("data", {}),
                             "metrics": data.get("metrics", {}).get("results/toy/metrics.json", {}).get("data", {})}
    return out


def _wait(root: Path, names: set[str], timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        exps = _experiments(root)
        done = {n for n in names if n in exps and exps[n]["state"] in ("success", "failed")}
        if done == names:
            return exps
        if time.monotonic() > deadline:
            logs = _run(["dvc", "queue", "status"], root)
            pytest.fail(f"queued experiments not finished after {timeout:.0f} s: {exps}\n{logs}")
        time.sleep(2)


def test_queued_seed_sweep_runs_in_parallel_and_comes_back(tmp_path: Path):
    if _dvc() is None:
        pytest.skip("dvc is neither on PATH nor beside this Python (it comes with requirements.lock: "
                    "run `python3 run.py setup`)")
    if shutil.which("git") is None:
        pytest.skip("git is not on PATH")
    root = _project(tmp_path / "proj")

    # One queued experiment per seed, as docs/sweeps.md shows (a seed list of one each).
    names = {f"seed{s}" for s in SEEDS}
    for s in SEEDS:
        _run(["dvc", "exp", "run", "--queue", "-n", f"seed{s}", "-S", f"toy.seeds=[{s}]"], root)
    try:
        _run(["dvc", "queue", "start", "-j", "2"], root)
        exps = _wait(root, names, timeout=300)
    finally:
        subprocess.run([_dvc() or "dvc", "queue", "stop"], cwd=root, env=_env(), capture_output=True, timeout=60)

    # dvc exp show: every experiment's params and headline metrics
    for s in SEEDS:
        exp = exps[f"seed{s}"]
        assert exp["state"] == "success", exp
        assert exp["params"]["toy"]["seeds"] == [s]
        assert exp["metrics"]["test_acc_mean"] == pytest.approx(55.0 + s)
        assert exp["metrics"]["runs"] == 1

    # Each experiment's commit holds its own records; it ran in a copy under .dvc/tmp/exps/.
    records: list[RunRecord] = []
    for s in SEEDS:
        text = _run(["git", "show", f"{exps[f'seed{s}']['rev']}:results/toy/runs.jsonl"], root)
        mine = [RunRecord.from_dict(json.loads(line)) for line in text.splitlines() if line.strip()]
        assert [r.seed for r in mine] == [s]
        assert "/.dvc/tmp/exps/" in mine[0].provenance["cwd"]
        records += mine
    # -j 2: two of the three ran at the same time
    spans = sorted((r.provenance["start"], r.provenance["end"]) for r in records)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), spans
    # the stage saw the environment `dvc queue start` was given (how threads are set per experiment)
    assert {r.provenance["omp"] for r in records} == {"1"}
    # the workspace's own records are untouched by the queue (seed 0 only)
    assert [json.loads(line)["seed"] for line in (root / "results/toy/runs.jsonl").read_text().splitlines()] == [0]

    # One seed per experiment gives no verdict on its own; merged, the three seeds do.
    claim = 54.0   # "accuracy above 54 % at half the MACs"
    for r in records:
        assert verdict(mean_interval([r.test_acc]), "greater", claim) == FEW_SEEDS
    assert verdict(mean_interval([r.test_acc for r in records]), "greater", claim) == SUPPORTED

    # dvc exp apply: the experiment's params, git-tracked results and DVC-cached output
    _run(["dvc", "exp", "apply", "seed2"], root)
    assert yaml.safe_load((root / "params.yaml").read_text())["toy"]["seeds"] == [2]
    assert json.loads((root / "results/toy/metrics.json").read_text())["test_acc_mean"] == pytest.approx(57.0)
    assert (root / "artifacts/toy/model.txt").read_text() == "seeds [2] budget 0.5\n"
    status = _run(["dvc", "status", "toy"], root)
    assert "changed" not in status, status
