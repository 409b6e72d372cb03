"""The study contract: every registered method runs through the one runner and meets its budget,
records round-trip, layers import only downwards, and the slugs agree everywhere.

A 7th method needs only its method module, its study module, its notebook, its params section and
its dvc.yaml stage; these tests then cover it without being edited.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from prunerep.config import registered_sections
from prunerep.data.arrays import ArrayDataset, DataSplits
from prunerep.engine import OptimConfig, RuntimeConfig
from prunerep.methods import Budget, list_methods
from prunerep.methods.base import build_hyper
from prunerep.models import get_model
from prunerep.pruning.cost import count_cost
from prunerep.runner import RunRecord, RunSpec, read_records, run_pruning, write_records

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "prunerep"
RUNTIME = RuntimeConfig(device="cpu", channels_last=False, progress=False)
SHORT = {"epochs": 1, "batch_size": 16, "lr": 0.01, "max_steps": 3}

# Per method: the shortest phases that still exercise its machinery, and its budget.
FAST_HYPER = {
    "gdp": {"train": SHORT, "lam_init": 0.5, "lam_max": 5.0, "ramp_epochs": 0.1},
    "dsa": {"search": SHORT, "arch_optim": {"optimizer": "sgd", "lr": 0.05}},
    "slimming": {"sparse_train": SHORT},
    "greg": {"reg": {"update_reg_interval": 1, "reg_granularity_prune": 0.1, "reg_upper_limit": 0.3,
                     "stabilize_reg_interval": 1}, "prune_optim": SHORT},
}


def _splits(channels: int = 1, size: int = 12, n_train: int = 64) -> DataSplits:
    """A dataset of another shape than CIFAR's (1 channel, 12x12, 3 classes)."""

    def ds(n: int, seed: int) -> ArrayDataset:
        g = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
        return ArrayDataset(images, torch.arange(n) % 3, ("a", "b", "c"))

    return DataSplits(ds(n_train, 0), ds(16, 1), ds(16, 2), (0.5,) * channels, (0.25,) * channels, "fp", "synthetic")


@pytest.mark.parametrize("method", list_methods())
def test_every_registered_method_runs_through_the_one_runner_on_another_shape(method):
    torch.manual_seed(0)
    dense = get_model("resnet20", shortcut="A", num_classes=3, in_channels=1)
    hyper = build_hyper(method, FAST_HYPER.get(method))
    budget = Budget(macs_keep=0.5)
    if method == "greg":  # its ratios are keyed by group id: take two internal groups of this net
        from prunerep.pruning.groups import find_groups

        internal = [g.id for g in find_groups(dense, torch.zeros(1, 1, 12, 12)) if not g.residual][:2]
        budget = Budget(ratios={gid: 0.5 for gid in internal})
    spec = RunSpec(method=method, budget=budget, hyper=hyper, finetune=OptimConfig(**SHORT), batch_size=16,
                   arch_fraction=0.25, runtime=RUNTIME, label=f"contract-{method}", model="resnet20")
    assert dataclasses.is_dataclass(spec.hyper)          # typed once, never a dict in the runner
    res = run_pruning(spec, dense, _splits())
    dense_macs = count_cost(dense, (1, 1, 12, 12)).macs
    assert res.dense_macs == dense_macs
    assert res.macs == count_cost(res.model, (1, 1, 12, 12)).macs
    if budget.macs_keep is not None:
        assert res.macs <= budget.macs_keep * dense_macs * 1.01, f"{method} misses its MACs budget"
    else:
        assert res.macs < dense_macs
    assert res.model(torch.zeros(2, 1, 12, 12)).shape == (2, 3)
    if get_method_class(method).exact_surgery:
        assert res.method_summary["exactness"]["max_abs_diff"] <= 1e-4


def get_method_class(slug: str):
    from prunerep.methods.base import _method_class

    return _method_class(slug)


def test_a_hyper_mapping_with_an_unknown_key_fails_when_the_spec_is_built():
    from prunerep.config import ConfigError

    with pytest.raises(ConfigError, match="lam_maxx"):
        RunSpec(method="gdp", budget=Budget(macs_keep=0.5), hyper={"lam_maxx": 1.0})


def test_run_records_round_trip_through_jsonl(tmp_path):
    record = RunRecord(
        slug="gdp", label="gdp@0.5", method="gdp", model="resnet20", seed=1,
        budget={"describe": "keep 50% of dense MACs (2.00x)", "macs_keep": 0.5},
        dense_macs=1000, dense_params=100, macs=480, params=60, widths={"g1": 8, "g2": 0},
        val_acc=50.0, test_acc=49.5, val_acc_before_finetune=40.0, test_acc_before_finetune=39.0,
        selection="best_val", phase_time_s={"gdp": 10.0, "surgery": 0.5, "finetune": 5.0},
        tags={"variant": "gdp", "target": 0.5}, latency={"batch_1_ms": 1.5, "batch_64_ms": 20.0},
        summary={"trace": [{"step": 1, "loss": float("nan")}]})
    path = write_records([record, dataclasses.replace(record, seed=2)], tmp_path / "runs.jsonl")
    back = read_records(path)
    assert [r.seed for r in back] == [1, 2]
    assert back[0].widths == record.widths and back[0].latency_ms(64) == 20.0
    assert back[0].macs_keep == pytest.approx(0.48) and back[0].speedup == pytest.approx(1000 / 480)
    assert back[0].pruning_time_s == pytest.approx(10.5) and back[0].total_time_s == pytest.approx(15.5)
    assert back[0].target == 0.5
    for line in path.read_text().splitlines():
        json.loads(line)                                   # one JSON object per line
    (tmp_path / "bad.jsonl").write_text('{"slug": "x", "unknown_key": 1}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_records(tmp_path / "bad.jsonl")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


# Layer -> the packages it must never import (lower layers never import higher ones).
FORBIDDEN = {
    "engine": ("prunerep.methods", "prunerep.runner", "prunerep.studies", "prunerep.stages", "prunerep.reporting"),
    "pruning": ("prunerep.methods", "prunerep.runner", "prunerep.studies", "prunerep.stages", "prunerep.reporting"),
    "data": ("prunerep.methods", "prunerep.runner", "prunerep.studies", "prunerep.stages"),
    "models": ("prunerep.methods", "prunerep.runner", "prunerep.studies", "prunerep.stages"),
    "methods": ("prunerep.runner", "prunerep.studies", "prunerep.stages", "prunerep.reporting"),
    "runner": ("prunerep.studies", "prunerep.stages"),
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_never_import_higher_ones(layer):
    bad = []
    for path in sorted((SRC / layer).rglob("*.py")):
        for module in _imports(path):
            if module.startswith(FORBIDDEN[layer]):
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not bad, "\n".join(bad)


def test_config_names_none_of_its_clients():
    assert not any(m.startswith(("prunerep.methods", "prunerep.studies", "prunerep.stages"))
                   for m in _imports(SRC / "config.py"))


#: Studies across methods (no method module or claims of their own): the comparison of all methods.
CROSS_METHOD_STUDIES = {"compare"}


def test_studies_params_sections_dvc_stages_and_notebooks_agree():
    studies = {name for name, cls in registered_sections().items()
               if cls.__module__.startswith("prunerep.studies.")} - CROSS_METHOD_STUDIES
    assert studies, "no study section registered"
    for slug in studies:
        assert (SRC / "studies" / f"{slug}.py").exists(), slug
        assert (SRC / "methods" / f"{slug}.py").exists(), f"study {slug} has no method module"
        assert slug in list_methods(), f"method {slug!r} is not registered"
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    notebook_stages = {name for name, st in stages.items() if str(st.get("cmd", "")).startswith("python -m prunerep.nbrun")}
    notebooks = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert studies <= set(params), f"params.yaml lacks sections {sorted(studies - set(params))}"
    assert notebook_stages == notebooks, f"dvc notebook stages {sorted(notebook_stages)} vs notebooks {sorted(notebooks)}"
    assert studies <= notebook_stages, f"studies without a dvc stage: {sorted(studies - notebook_stages)}"
    for slug in studies:
        stage = stages[slug]
        assert stage["cmd"] == f"python -m prunerep.nbrun {slug}"
        assert f"results/inputs/{slug}.json" in stage["deps"] and slug in stages["inputs"]["foreach"]
        outs = {next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]}
        for light in (f"results/{slug}/runs.jsonl", f"results/{slug}/claims.csv", f"results/{slug}/{slug}.ipynb"):
            assert light in outs, f"{slug}: {light} is not a stage output"
        for out in stage["outs"]:
            if isinstance(out, dict) and next(iter(out)).startswith("results/"):
                assert next(iter(out.values())).get("cache") is False, f"{slug}: light output {out} must be cache: false"
        assert f"results/{slug}/claims.csv" in stages["ledger"]["deps"]


def test_dense_checkpoint_paths_come_from_one_place():
    literals = ('"artifacts/pretrain', "'artifacts/pretrain")
    offenders = [str(p.relative_to(ROOT)) for p in SRC.rglob("*.py")
                 if any(q in p.read_text() for q in literals) and p.name != "paths.py"]
    assert not offenders, f"dense checkpoint root written as a literal in {offenders}; use prunerep.paths"


@pytest.mark.parametrize("finetune", [None, OptimConfig(epochs=1, max_steps=1, lr=0.01)])
def test_a_run_without_fine_tuning_evaluates_once_and_reports_that_evaluation(finetune, monkeypatch):
    import prunerep.runner.run as run_module

    calls = []
    real = run_module.evaluate

    def counting(model, loader, **kw):
        out = real(model, loader, **kw)
        calls.append(out["acc"])
        return out

    monkeypatch.setattr(run_module, "evaluate", counting)
    torch.manual_seed(0)
    dense = get_model("resnet20", shortcut="A", num_classes=3, in_channels=1)
    spec = RunSpec(method="l1", budget=Budget(macs_keep=0.5), finetune=finetune, batch_size=16, runtime=RUNTIME,
                   select="last")
    res = run_pruning(spec, dense, _splits())
    if finetune is None:
        assert len(calls) == 2     # validation and test, once each, right after surgery
        assert (res.val_acc, res.test_acc) == (res.val_acc_before_finetune, res.test_acc_before_finetune)
    else:
        assert len(calls) >= 4     # after surgery, (per epoch during fine-tuning,) and after it
        assert calls[-2:] == [res.val_acc, res.test_acc]


@pytest.mark.parametrize("slug", sorted(CROSS_METHOD_STUDIES))
def test_cross_method_studies_have_a_section_a_notebook_and_a_stage_with_light_outputs(slug):
    assert registered_sections()[slug].__module__ == f"prunerep.studies.{slug}"
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][slug]
    assert slug in params and (ROOT / "notebooks" / f"{slug}.ipynb").exists()
    assert stage["cmd"] == f"python -m prunerep.nbrun {slug}"
    inputs = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["inputs"]
    assert f"results/inputs/{slug}.json" in stage["deps"] and slug in inputs["foreach"]
    outs = {next(iter(o)) if isinstance(o, dict) else o: o for o in stage["outs"]}
    for light in (f"results/{slug}/runs.jsonl", f"results/{slug}/{slug}.ipynb", f"results/{slug}/tables"):
        assert light in outs and outs[light][light]["cache"] is False, light
    assert stage["metrics"] == [{f"results/{slug}/metrics.json": {"cache": False}}]
