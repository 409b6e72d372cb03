"""The comparison study: its plan gives every method the same checkpoint, fine-tuning, selection
rule and seeds through the public API's spec builder; its verdict columns are the project's one
rule on synthetic records; nothing that did not run is dropped."""

from __future__ import annotations

import copy
import dataclasses
from types import SimpleNamespace

import pytest
import torch

from prunerep.api import spec_for
from prunerep.config import ConfigError, from_dict
from prunerep.engine import OptimConfig
from prunerep.methods import list_methods
from prunerep.reporting.stats import (
    FEW_SEEDS,
    INCONCLUSIVE,
    NOT_IMPLEMENTED,
    SUPPORTED,
    paired_difference,
    verdict,
)
from prunerep.runner import RunRecord
from prunerep.studies import compare
from prunerep.studies.compare import CompareConfig, ComparePlan, Skipped

SHAPE = (1, 1, 12, 12)


class FakeStudy:
    """What `compare.plan` reads from a StudyContext: the dense checkpoint, the input shape, the
    training split's size."""

    def __init__(self, n_train: int = 160) -> None:
        from prunerep.models import get_model

        torch.manual_seed(0)
        self.dense = get_model("resnet20", shortcut="A", num_classes=3, in_channels=1)
        self.example_shape = SHAPE
        self.splits = SimpleNamespace(train=range(n_train))

    def load_dense(self, key: str) -> torch.nn.Module:
        assert key == "resnet20"
        return copy.deepcopy(self.dense)


def _cfg(**kw) -> CompareConfig:
    base = {"model": "resnet20", "targets": [0.7, 0.3], "seeds": [0, 1, 2], "batch_size": 16, "prune_epochs": 1.0,
            "finetune": {"epochs": 2, "lr": 0.01}, "hyper": {"slimming": {"min_keep": 0.1}}}
    return from_dict(CompareConfig, {**base, **kw}, "compare")


def _phases(hyper) -> list[OptimConfig]:
    return [getattr(hyper, f.name) for f in dataclasses.fields(hyper) if isinstance(getattr(hyper, f.name), OptimConfig)]


def test_the_plan_gives_every_method_the_same_checkpoint_finetuning_selection_and_seeds():
    cfg, study = _cfg(), FakeStudy(n_train=160)
    plan = compare.plan(cfg, study)
    assert plan.skipped == []
    assert {s.method for s in plan.specs} == set(list_methods())               # every registered method
    assert len(plan.specs) == len(list_methods()) * 2 * 3
    assert len({(s.label, s.seed) for s in plan.specs}) == len(plan.specs)
    bilevel = {"dsa", "dais"}
    # 160 images / batch 16 = 10 steps per epoch: 2 epochs of fine-tuning = 20 steps for everyone; a
    # bi-level method holds out max(16, 0.1 * 160) = 16 images and takes the 20 steps over 144 // 16 = 9
    for s in plan.specs:
        assert (s.model, s.select, s.batch_size, s.seed in cfg.seeds, s.tags["target"] in cfg.targets) == \
            ("resnet20", "best_val", 16, True, True)
        ft = s.finetune
        assert (ft.max_steps, ft.lr, ft.schedule, ft.batch_size) == (20, 0.01, "cosine", 16)
        assert ft.epochs == pytest.approx(2 * 10 / 9 if s.method in bilevel else 2.0)
        assert max(1, round(ft.epochs * (9 if s.method in bilevel else 10))) == 20      # the loop's step count
        for phase in _phases(s.hyper):            # every method's own training: 1 epoch = 10 steps
            assert phase.max_steps == 10 and phase.batch_size == 16
        if hasattr(s.hyper, "seed"):
            assert s.hyper.seed == s.seed         # random's channels differ by seed
    greg = [s for s in plan.specs if s.method == "greg"]
    assert all(s.budget.macs_keep is None and s.budget.ratios for s in greg)   # driven to MACs by ratios
    assert all(s.budget.macs_keep == s.tags["target"] for s in plan.specs if s.method != "greg")
    # the specs are the public API's: the same arguments give the same spec
    one = next(s for s in plan.specs if s.method == "slimming" and s.seed == 1 and s.tags["target"] == 0.7)
    again = spec_for("slimming", 0.7, hyper={"min_keep": 0.1}, finetune=one.finetune, seed=1, batch_size=16,
                     epochs=1.0, phase_max_steps=10, runtime=cfg.runtime, model_key="resnet20", label="slimming@0.7",
                     tags={"variant": "slimming"})
    assert again == one


def test_the_rounded_arms_repeat_every_method_at_their_targets_with_round_to_in_the_budget():
    cfg, study = _cfg(round_to=8, round_targets=[0.3]), FakeStudy(n_train=160)
    plan = compare.plan(cfg, study)
    n = len(list_methods())
    assert len(plan.specs) == n * 2 * 3 + n * 3
    rounded = [s for s in plan.specs if s.budget.round_to]
    assert len(rounded) == n * 3 and {s.tags["target"] for s in rounded} == {0.3}
    assert all(s.budget.round_to == 8 and s.tags["round_to"] == 8 and s.label.endswith("+r8") for s in rounded)
    for s in rounded:   # otherwise the same run as its plain twin
        twin = next(p for p in plan.specs if not p.budget.round_to and p.method == s.method and p.seed == s.seed
                    and p.tags["target"] == 0.3)
        assert dataclasses.replace(s.budget, round_to=None) == twin.budget
        assert (s.hyper, s.finetune, s.select) == (twin.hyper, twin.finetune, twin.select)
    assert len({(s.label, s.seed) for s in plan.specs}) == len(plan.specs)
    assert compare.plan(_cfg(), study).specs == [s for s in plan.specs if not s.budget.round_to]
    assert _cfg(round_to=8).rounded_targets == [0.7, 0.3] and _cfg().rounded_targets == []


def test_a_target_a_method_cannot_reach_and_a_paper_without_a_method_are_reported(monkeypatch):
    cfg = _cfg(targets=[0.5, 0.01])
    registered = list_methods()
    monkeypatch.setattr("prunerep.methods.list_methods", lambda: [m for m in registered if m != "dais"])
    plan = compare.plan(cfg, FakeStudy())
    assert Skipped("dais", None, NOT_IMPLEMENTED, "no method module registered for this paper yet") in plan.skipped
    greg = [s for s in plan.skipped if s.method == "greg"]
    assert [(s.target, s.status) for s in greg] == [(0.01, compare.NOT_RUN)] and "cannot reach" in greg[0].reason
    assert not any(s.method == "dais" for s in plan.specs)
    status = compare.status_table(cfg, [], plan.skipped)
    row = status[(status["method"] == "dais")].iloc[0]
    assert row["status"] == NOT_IMPLEMENTED and row["n"] == 0
    assert set(status["method"]) == {*registered}                   # nothing dropped


def _rec(method: str, seed: int, acc: float, target: float = 0.5, macs: int = 480) -> RunRecord:
    return RunRecord(
        slug="compare", label=f"{method}@{target:g}", method=method, model="resnet20", seed=seed,
        budget={"describe": "x", "macs_keep": None if method == "greg" else target}, dense_macs=1000,
        dense_params=100, macs=macs, params=50, widths={"g1": 4, "g2": 2}, val_acc=acc, test_acc=acc,
        val_acc_before_finetune=acc - 5, test_acc_before_finetune=acc - 5, selection="best_val",
        phase_time_s={"prepare": 0.5, "search": 10.0 + seed, "surgery": 0.5, "finetune": 5.0},
        tags={"variant": method, "target": target}, hyper={"seed": seed}, latency={"batch_1_ms": 2.0 + seed / 10})


def _synthetic() -> list[RunRecord]:
    l1, rnd = [60.0, 62.0, 61.0], [55.0, 58.0, 56.0]
    out = [_rec("l1", s, a) for s, a in enumerate(l1)] + [_rec("random", s, a) for s, a in enumerate(rnd)]
    out += [_rec("gdp", s, a + d) for s, (a, d) in enumerate(zip(l1, [2.0, 2.5, 1.5], strict=True))]
    out += [_rec("greg", s, a + d) for s, (a, d) in enumerate(zip(l1, [0.5, -0.5, 0.1], strict=True))]
    out += [_rec("dsa", s, a + 1.0) for s, a in enumerate(l1[:2])]           # two seeds only
    return out


def test_the_verdict_columns_are_the_one_rule_on_paired_seeds():
    records = _synthetic()
    table = compare.comparison_table(records).set_index("method")
    gdp = table.loc["gdp"]
    iv = paired_difference({0: 62.0, 1: 64.5, 2: 62.5}, {0: 60.0, 1: 62.0, 2: 61.0})
    # by hand: differences 2.0, 2.5, 1.5; mean 2, std 0.5, t(0.975, 2) = 4.303: 2 -/+ 1.242
    assert iv.mean == pytest.approx(2.0) and iv.lo == pytest.approx(0.758, abs=1e-3)
    assert gdp["− L1-norm (points, 95% CI)"] == str(iv) and gdp["better than L1-norm?"] == SUPPORTED
    assert gdp["better than random?"] == SUPPORTED
    greg = table.loc["greg"]                     # a ratio-budget record: grouped by its target tag
    assert greg["better than L1-norm?"] == verdict(table.loc["greg", "_l1"], "greater", 0.0) == INCONCLUSIVE
    assert table.loc["dsa", "better than L1-norm?"] == FEW_SEEDS and table.loc["dsa", "n"] == 2
    assert table.loc["l1", "better than L1-norm?"] == "—" and table.loc["random", "better than random?"] == "—"
    assert table.loc["l1", "better than random?"] == SUPPORTED
    assert table.loc["gdp", "test acc (%)"] == "63.00 ± 1.32 (n=3)"
    shown = compare.comparison_display(compare.comparison_table(records))
    assert not [c for c in shown.columns if c.startswith("_")]
    m = compare.metrics(_cfg(targets=[0.5]), records, compare.comparison_table(records), [], {"test_acc": 70.0}, "x")
    assert m["gdp@0.5/minus_l1"] == pytest.approx(2.0) and m["runs"] == len(records)


def test_a_failing_method_is_reported_and_the_others_still_run(monkeypatch):
    cfg = _cfg(targets=[0.5], seeds=[0])
    specs = [spec_for(m, 0.5, seed=0, model_key="resnet20", tags={"variant": m}) for m in ("l1", "dsa")]

    def fake_execute(batch, study):
        if any(s.method == "dsa" for s in batch):
            raise ValueError("budget of 3 MACs cannot be met\nmore lines")
        return [_rec(s.method, s.seed, 50.0) for s in batch]

    monkeypatch.setattr("prunerep.runner.execute", fake_execute)
    records, skipped = compare.run(cfg, None, ComparePlan(specs, []))
    assert [r.method for r in records] == ["l1"]
    assert skipped == [Skipped("dsa", 0.5, compare.FAILED, "ValueError: budget of 3 MACs cannot be met")]
    status = compare.status_table(cfg, records, skipped).set_index("method")
    assert status.loc["dsa", "status"] == compare.FAILED and status.loc["l1", "status"] == compare.RAN
    with pytest.raises(RuntimeError, match="every method failed"):
        compare.run(cfg, None, ComparePlan(specs[1:], []))


def test_equal_recipe_counts_the_same_steps_for_bilevel_methods():
    ft = OptimConfig(epochs=2, milestones=[1.0], warmup_epochs=0.5, schedule="multistep")
    plain = compare.equal_recipe(ft, 2, 160, 16, False, 0.1)
    bi = compare.equal_recipe(ft, 2, 160, 16, True, 0.1)
    assert (plain.max_steps, plain.epochs, plain.milestones) == (20, 2.0, [1.0])
    assert bi.max_steps == 20 and bi.epochs == pytest.approx(20 / 9)
    assert bi.milestones[0] * 9 == pytest.approx(10) and bi.warmup_epochs * 9 == pytest.approx(5)   # same steps
    capped = compare.equal_recipe(dataclasses.replace(ft, max_steps=3), 2, 160, 16, True, 0.1)
    assert capped.max_steps == 3


@pytest.mark.parametrize(("kw", "match"), [
    ({"methods": ["gpd"]}, r"methods: \['gpd'\] are neither"),
    ({"hyper": {"gdp": {"lam_maxx": 1.0}}}, r"hyper\.gdp\.lam_maxx: unknown key"),
    ({"hyper": {"nope": {}}}, r"hyper\.nope: not a registered method"),
    ({"targets": [0.5, 1.5]}, r"targets: "),
    ({"seeds": [0, 0]}, r"give each value once"),
    ({"round_to": 8, "round_targets": [0.5]}, r"round_targets: \[0\.5\] are not in targets"),
    ({"round_to": 0}, r"round_to: give a positive integer"),
    ({"latency_batch": 64, "latency": {"batch_sizes": [1]}}, r"latency_batch: 64 is not measured"),
])
def test_the_config_refuses_bad_keys_with_one_error(kw, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(**kw)


def test_names_say_what_ran_and_figures_draw_from_records():
    import matplotlib

    matplotlib.use("Agg")
    assert compare.method_name("slimming", {"min_keep": 0.1}) == "network slimming (10% per-layer floor, ours)"
    assert compare.method_name("slimming", {"min_keep": 0.0}) == "network slimming"
    assert "response descriptor, ours" in compare.method_name("functionality", {"descriptor": "response"})
    assert "BN penalty, ours" in compare.method_name("greg", {"variant": "greg1", "reg": {"penalize_norm": True}})
    records = _synthetic()
    fig = compare.widths_figure(records, [("g1", 8, False), ("g2", 4, True)], 0.5)
    kept = fig.axes[0].images[0].get_array()
    assert kept.shape == (5, 2) and float(kept[0, 0]) == 0.5 and float(kept[0, 1]) == 0.5
    assert compare.timing_figure(records, "t").axes[0].get_yticklabels()
    times = compare.timing_table(records)
    assert list(times["method"])[-1] == "dsa" and "search 11.0" in times.iloc[0]["of which"]   # 2 seeds: less time


def test_the_notebook_runs_end_to_end_on_a_tiny_dataset(tmp_path, monkeypatch):
    """Every code cell of notebooks/compare.ipynb, in-process, on a synthetic 1x12x12 dataset and a
    3-class ResNet-20: the real runner (1 worker), a ratio method, a gated one, a bi-level one and
    the two baselines, two seeds; every table and figure is written."""
    import json
    import shutil
    from pathlib import Path

    import prunerep.data
    from prunerep.models import get_model
    from prunerep.models.checkpoint import save_model
    from tests.unit.test_runner_logs import _splits

    root = Path(__file__).resolve().parents[2]
    shutil.copy(root / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PRUNEREP_PARAMS", raising=False)
    monkeypatch.setattr(prunerep.data, "load_data", lambda *a, **k: _splits())
    torch.manual_seed(0)
    save_model(get_model("resnet20", shortcut="A", num_classes=3, in_channels=1),
               Path("artifacts/pretrain/resnet20/model.pt"))
    section = {
        "model": "resnet20", "targets": [0.5], "seeds": [0, 1], "methods": ["l1", "random", "gdp", "greg", "dsa"],
        "workers": 1, "batch_size": 16, "eval_batch_size": 16, "prune_epochs": 1, "prune_max_steps": 2,
        "finetune": {"epochs": 1, "max_steps": 1, "lr": 0.01},
        "runtime": {"device": "cpu", "channels_last": False, "progress": False},
        "latency": {"batch_sizes": [1], "repeats": 2, "warmup": 1}, "round_to": 4, "round_targets": [0.5],
        "hyper": {"gdp": {"lam_init": 10.0, "lam_max": 100.0, "ramp_epochs": 0.2, "after_target": "stop"},
                  "greg": {"reg": {"update_reg_interval": 1, "reg_granularity_prune": 0.2, "reg_upper_limit": 1.0,
                                   "stabilize_reg_interval": 2, "max_iterations": 4}}}}
    nb = json.loads((root / "notebooks" / "compare.ipynb").read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    scope: dict = {}
    exec(cells[0], scope)                                         # the parameters cell, then what nbrun injects
    scope.update(profile="smoke", section=section, data={}, out_dir=str(tmp_path / "results" / "compare"))
    for code in cells[1:]:
        exec(code, scope)
    out = tmp_path / "results" / "compare"
    records, rounded = scope["records"], scope["rounded"]
    assert len(records) == 10 and all(r.latency and r.latency["batch_1_ms"] > 0 for r in records)
    assert len(rounded) == 10 and all(w % 4 == 0 or w < 4 for r in rounded for w in r.widths.values())
    assert all(r.budget["round_to"] == 4 for r in rounded) and not any(r.budget.get("round_to") for r in records)
    for name in ("runs", "status", "comparison", "pruning_time", "hyper", "deviations", "rounding"):
        assert (out / "tables" / f"{name}.md").exists(), name
    for name in ("accuracy_vs_macs", "accuracy_vs_latency", "pruning_time", "widths_0.5", "rounding"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["runs"] == 10 and "gdp@0.5/minus_l1" in metrics
    assert "l1@0.5+r4/test_acc_mean" in metrics and metrics["l1@0.5+r4/latency_bs1_vs_plain"] > 0
    assert len((out / "runs.jsonl").read_text().splitlines()) == 20
    comparison = (out / "tables" / "comparison.md").read_text()
    assert "fewer than 3 seeds: no verdict" in comparison                 # two seeds: intervals, no verdict
    assert "GReg (GReg-1, residual streams not pruned)" in comparison
