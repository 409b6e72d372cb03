"""DAIS's study: the plan (equal fine-tuning, one selection rule, ablations), claim tables, evidence
and figures from hand-made run records."""

from __future__ import annotations

import dataclasses
import math

import matplotlib
import pandas as pd
import pytest

from prunerep.config import ConfigError, from_dict, read_params, resolve_section
from prunerep.engine import OptimConfig
from prunerep.reporting.stats import FEW_SEEDS, NOT_RUN, NOT_SUPPORTED, SUPPORTED
from prunerep.runner import RunRecord
from prunerep.runner.execute import run_name
from prunerep.studies import dais
from prunerep.studies.dais import ABLATIONS, DAISConfig

matplotlib.use("Agg")


def _cfg(profile: str = "default") -> DAISConfig:
    return resolve_section("dais", read_params("params.yaml"), profile=profile)


# -- the plan ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
def test_every_arm_gets_the_same_fine_tuning_and_selection(profile):
    cfg = _cfg(profile)
    specs = dais.plan(cfg)
    assert specs and len({run_name(s) for s in specs}) == len(specs)
    keep = 1 - cfg.arch_fraction
    for s in specs:
        assert s.select == dais.SELECT == "best_val"
        assert s.arch_fraction == cfg.arch_fraction and s.batch_size == cfg.batch_size
        if s.method == "dais":
            assert s.finetune.epochs == cfg.finetune.epochs
            assert s.hyper.search.epochs == cfg.search.epochs
        elif s.tags["variant"] == "l1-long":       # DAIS's search + fine-tuning steps
            assert s.finetune.epochs == pytest.approx((cfg.search.epochs + cfg.finetune.epochs) * keep)
            assert s.hyper.scope == cfg.baseline_scope
            continue
        else:
            assert s.finetune.epochs == pytest.approx(cfg.finetune.epochs * keep)
            assert s.hyper.scope == cfg.baseline_scope
        if s.method == "slimming":
            assert s.hyper.sparse_train.epochs == pytest.approx(cfg.search.epochs * keep)
        assert dataclasses.replace(s.finetune, epochs=cfg.finetune.epochs, batch_size=cfg.finetune.batch_size) \
            == cfg.finetune


@pytest.mark.parametrize(("n", "f", "bs", "epochs", "cap"), [(4000, 0.2, 64, 1.5, None), (45000, 0.3, 128, 160, None),
                                                          (256, 0.2, 32, 1.0, 2)])
def test_baselines_take_exactly_daiss_weight_steps(n, f, bs, epochs, cap):
    def steps(optim: OptimConfig, images: int) -> int:       # fit's count: drop_last batches, max_steps cap
        total = max(1, round(optim.epochs * (images // bs)))
        return min(total, optim.max_steps) if optim.max_steps is not None else total

    optim = OptimConfig(epochs=epochs, max_steps=cap)
    n_weights = n - max(bs, round(f * n))                     # the runner's held-out part (run_pruning)
    assert dais.weight_images(n, f, bs) == n_weights
    assert steps(dais.equal_steps(optim, f, n, bs), n) == steps(optim, n_weights)
    assert abs(steps(dais.equal_steps(optim, f), n) - steps(optim, n_weights)) <= max(1, epochs // 2)


def test_plan_with_the_data_size_caps_the_baselines_at_daiss_steps():
    cfg = _cfg("default")
    per_epoch = (4000 - 800) // cfg.batch_size
    variants = set()
    for s in dais.plan(cfg, n_train=4000):
        variants.add(s.tags["variant"])
        if s.method == "dais":
            assert s.finetune.max_steps is None
        elif s.tags["variant"] == "l1-long":
            assert s.method == "l1"
            assert s.finetune.max_steps == round(cfg.search.epochs * per_epoch) + round(cfg.finetune.epochs * per_epoch)
            assert s.finetune.epochs == cfg.search.epochs + cfg.finetune.epochs
        else:
            assert s.finetune.max_steps == round(cfg.finetune.epochs * per_epoch)
        if s.method == "slimming":
            assert s.hyper.sparse_train.max_steps == round(cfg.search.epochs * (3200 // cfg.batch_size))
    assert {"dais", "l1", "l1-long", "slimming"} <= variants


def test_ablations_change_only_their_own_knob_and_shared_runs_are_planned_once():
    cfg = _cfg("smoke")
    specs = {(s.tags["variant"], s.model, s.seed): s for s in dais.plan(cfg)}
    full = specs[("dais", "resnet20", 0)].hyper
    for variant, change in ABLATIONS.items():
        hyper = specs[(variant, "resnet20", 0)].hyper
        if variant == "dais-cold":                     # held at the final temperature from the first step
            change = {**change, "t_start": full.t_end}
        assert dataclasses.replace(full, **change) == hyper, variant
    # the comparison and the ablation share the DAIS runs of resnet20 at 0.5: one run per seed
    seeds = sorted(set(cfg.compare.seeds) | set(cfg.ablation.seeds))
    assert [k for k in specs if k[0] == "dais"] == [("dais", "resnet20", s) for s in seeds]
    assert len(dais.plan(cfg)) == len(specs)


def test_config_rejects_unknown_variants_baselines_and_budgets():
    with pytest.raises(ConfigError, match="dais-no-lasso"):
        from_dict(DAISConfig, {"ablation": {"variants": ["dais-no-lasso"]}}, "dais")
    with pytest.raises(ConfigError, match="random"):
        from_dict(DAISConfig, {"compare": {"baselines": ["random"]}}, "dais")
    with pytest.raises(ConfigError, match="budgets"):
        from_dict(DAISConfig, {"compare": {"budgets": [1.5]}}, "dais")


# -- tables and evidence from hand-made records -------------------------------------------------------


def _record(variant: str, seed: int, acc: float, *, model: str = "resnet20", target: float = 0.5,
            gap: float = 0.0, search: float = 0.5, steps: int = 75, phase_steps: int = 0) -> RunRecord:
    summary = {}
    if variant.startswith("dais"):
        summary = {"trace": [{"step": 10.0, "epoch": 0.5, "temperature": 0.1, "acc_continuous": 60.0,
                              "acc_binarised": 50.0},
                             {"step": 20.0, "epoch": 1.0, "temperature": 0.02, "acc_continuous": 70.0 + gap,
                              "acc_binarised": 70.0}],
                   "macs_keep_search": search, "repaired_channels": 3, "channels": {"conv1": 16, "layer1.0.conv1": 16},
                   "residual_groups": ["conv1"], "tap_disagreement": 0.0, "undecided_end": 0.0,
                   "exactness": {"max_abs_diff": 1e-6},
                   "histograms": [{"step": 0, "temperature": 1.0, "counts": [0] * 14 + [32] + [0] * 5, "undecided": 1.0},
                                  {"step": 20, "temperature": 0.02, "counts": [12] + [0] * 18 + [20], "undecided": 0.0}]}
    return RunRecord(slug="dais", label=f"{variant}@{target:g}", method=variant.split("-")[0], model=model, seed=seed,
                     budget={"describe": "", "macs_keep": target}, dense_macs=1000, dense_params=100,
                     macs=int(1000 * target) - 2, params=50, widths={"conv1": 8, "layer1.0.conv1": 9},
                     val_acc=acc, test_acc=acc, val_acc_before_finetune=acc - 5, test_acc_before_finetune=acc - 5,
                     selection="best_val", phase_time_s={"search": 1.0, "finetune": 1.0},
                     tags={"variant": variant, "target": target}, summary=summary,
                     histories={"finetune": [{"epoch": 1, "step": steps}],
                                **({"search": [{"epoch": 1, "step": phase_steps}]} if phase_steps else {})},
                     hyper={"min_keep": 0.1} if variant == "slimming" else {})


def _records(seeds=(0, 1, 2)) -> list[RunRecord]:
    out = []
    for s in seeds:
        out += [_record("dais", s, 70.0 + s, gap=0.2 + 0.1 * s, search=0.5 + 0.001 * s, phase_steps=100),
                _record("dais-no-anneal", s, 66.0 + s, gap=20.0 + s, search=0.9),
                _record("dais-no-sparsity", s, 69.0 + s + 0.2 * s),
                _record("dais-no-flops", s, 64.0 + s + 0.1 * s, search=0.8),
                _record("dais-no-residual", s, 71.0 + s + 0.1 * s),
                _record("l1", s, 68.0 + s - 0.1 * s, steps=74),
                _record("l1-long", s, 71.0 + s, steps=175),
                _record("slimming", s, 70.5 + s + 0.1 * s, steps=74, phase_steps=100)]
    return out


def test_claim_tables_pair_by_seed():
    recs = _records()
    c1 = dais.claim1_table(recs)
    assert len(c1) == 1 and c1.iloc[0]["n"] == 3
    iv = c1.iloc[0]["_interval"]
    assert iv.mean == pytest.approx((0.2 + 0.3 + 0.4) / 3 - (20 + 21 + 22) / 3)
    c2 = dais.claim2_table(recs)
    full = c2[c2["variant"] == "dais"]
    assert list(full["|search / target − 1|"]) == pytest.approx([0.0, 0.002, 0.004])
    assert not c2[c2["variant"] == "dais-no-flops"]["within 1%"].any()
    c3 = dais.claim3_table(recs)
    assert set(c3["baseline"]) == {"l1", "slimming"}
    by_claim = {row["claim"] if row["verdict pair"] == "yes" else row["protocol"]: row for _, row in c3.iterrows()}
    l1 = by_claim[dais.EQUAL_FINETUNE]                                 # equal fine-tuning only: reported
    assert l1["_interval"].mean == pytest.approx(2.0 + 0.1)           # mean of 2.0, 2.1, 2.2
    assert l1["fine-tuning steps, DAIS / baseline"] == "75 / 74"
    assert l1["weight steps after the checkpoint, DAIS / baseline"] == "175 / 74"
    long = by_claim["dais.acc_vs_l1"]                                  # the verdict pair: equal weight training
    assert long["weight steps after the checkpoint, DAIS / baseline"] == "175 / 175"
    assert long["_interval"].mean == pytest.approx(-1.0) and long["verdict pair"] == "yes"
    slim = by_claim["dais.acc_vs_slimming"]
    assert slim["weight steps after the checkpoint, DAIS / baseline"] == "175 / 174"
    assert "(10% per-layer floor, ours)" in slim["baseline arm"]
    assert {"claim", "baseline", "_interval"}.isdisjoint(dais.display(c3).columns)
    c4 = dais.claim4_table(recs)
    judged = c4[c4["judged (claim 4)"] == "yes"]
    assert set(judged["_variant"]) == set(dais.REGULARISERS)
    assert set(c4[c4["judged (claim 4)"] == "no"]["_variant"]) == {"dais-no-anneal"}
    assert "_interval" not in dais.display(c4).columns


def test_evidence_verdicts_come_from_the_rule():
    ev = {(e.claim_id, e.test[:40]): e for e in dais.evidence(_cfg(), _records(), "b")}
    by_claim: dict[str, list] = {}
    for (cid, _), e in ev.items():
        by_claim.setdefault(cid, []).append(e)
    assert [e.verdict for e in by_claim["dais.annealing_gap"]] == [SUPPORTED]
    assert [e.verdict for e in by_claim["dais.annealing_converges"]] == [SUPPORTED]   # gaps 0.2-0.4 <= 1 point
    assert [e.verdict for e in by_claim["dais.budget_met"]] == [SUPPORTED]       # errors 0, 0.2%, 0.4%
    assert "final / target" in by_claim["dais.budget_met"][0].note
    assert [e.verdict for e in by_claim["dais.acc_vs_l1"]] == [NOT_SUPPORTED]   # vs l1-long: exactly -1 each seed
    assert "equal fine-tuning only" in by_claim["dais.acc_vs_l1"][0].note     # the other pair is reported, not judged
    assert [e.verdict for e in by_claim["dais.acc_vs_slimming"]] == [NOT_SUPPORTED]   # -0.5 - 0.1 s
    verdicts = sorted(e.verdict for e in by_claim["dais.regularisers"])
    assert len(verdicts) == 3 and verdicts.count(NOT_SUPPORTED) == 1           # removing the residual term helps here
    assert [e.verdict for e in by_claim["dais.cifar100_imagenet"]] == [NOT_RUN]


def test_two_seeds_give_no_verdict_and_missing_arms_are_not_run():
    ev = dais.evidence(_cfg(), _records(seeds=(0, 1)), "b")
    assert {e.verdict for e in ev if e.claim_id == "dais.acc_vs_l1"} == {FEW_SEEDS}
    only_dais = [r for r in _records() if r.tags["variant"] == "dais"]
    ev = dais.evidence(_cfg(), only_dais, "b")
    assert {e.claim_id: e.verdict for e in ev if e.claim_id != "dais.budget_met"} == {
        "dais.annealing_gap": NOT_RUN, "dais.annealing_converges": SUPPORTED, "dais.acc_vs_l1": NOT_RUN, "dais.acc_vs_slimming": NOT_RUN,
        "dais.regularisers": NOT_RUN, "dais.cifar100_imagenet": NOT_RUN}


def test_claim1_absolute_bound_and_the_cold_control():
    recs = [_record("dais", s, 70.0, gap=2.5 + 0.5 * s) for s in (0, 1, 2)]       # gaps 2.5, 3, 3.5
    conv = dais.convergence_table(recs)
    assert len(conv) == 1 and conv.iloc[0]["_interval"].mean == pytest.approx(3.0)
    ev = [e for e in dais.evidence(_cfg(), recs, "b") if e.claim_id == "dais.annealing_converges"]
    assert [e.verdict for e in ev] == [NOT_SUPPORTED]            # 3 ± 1.24: the whole interval above 1 point
    recs += [_record("dais-no-anneal", s, 66.0, gap=20.0) for s in (0, 1, 2)]
    recs += [_record("dais-cold", s, 60.0, gap=0.0, search=0.9) for s in (0, 1, 2)]
    row = dais.claim1_table(recs).iloc[0]
    assert row["annealed − final temperature throughout (points, 95% CI)"].startswith("+3")
    assert row["search's MACs error at the final temperature throughout"].startswith("0.800")
    cfg = _cfg()
    cold = dais.dais_hyper(cfg, "dais-cold")
    assert cold.schedule == "constant" and cold.t_start == cold.t_end == cfg.method.t_end


def test_claim2_one_row_per_setting_and_the_cold_share_of_each_schedule():
    recs = [_record("dais", s, 70.0, search=0.5) for s in (0, 1, 2)]
    recs += [_record("dais", s, 70.0, model="resnet56", search=0.45) for s in (0, 1, 2)]   # 10% off: never pooled
    ev = [e for e in dais.evidence(_cfg(), recs, "b") if e.claim_id == "dais.budget_met"]
    assert sorted((e.test.split("), ")[-1], e.verdict) for e in ev) == [
        ("resnet20 at 0.5 of the MACs", SUPPORTED), ("resnet56 at 0.5 of the MACs", NOT_SUPPORTED)]
    m = dais.DAISMethodConfig(t_start=1.0, t_end=0.02)
    # hyperbolic: T < 0.1 once s > (1/0.1 - 1) / 49 = 0.184; exponential: once s > log 10 / log 50 = 0.589
    assert dais.cold_share(m, "hyperbolic") == pytest.approx(1 - 9 / 49, abs=2e-3)
    assert dais.cold_share(m, "exponential") == pytest.approx(1 - math.log(10) / math.log(50), abs=2e-3)
    assert dais.cold_share(dais.DAISMethodConfig(t_start=1.0, t_end=0.2), "exponential") == 0.0


def test_end_gap_and_search_error():
    r = _record("dais", 0, 70.0, gap=-1.5, search=0.49)
    assert dais.end_gap(r) == pytest.approx(1.5)
    assert dais.search_error(r) == pytest.approx(0.02)
    assert math.isnan(dais.end_gap(_record("l1", 0, 70.0)))


def test_figures_and_the_deviations_table_build_from_records():
    import matplotlib.pyplot as plt

    recs = _records()
    for fig in (dais.gap_figure(recs, "resnet20", 0.5), dais.histogram_figure(recs[0]),
                dais.widths_figure([r for r in recs if r.seed == 0 and r.tags["variant"] in ("dais", "l1")])):
        assert fig.axes
        plt.close(fig)
    dev = dais.deviations_table(_cfg(), recs)
    assert list(dev.columns) == ["the paper's", "ours", "why", "measured effect"]
    assert len(dev) >= 10 and not dev.isna().any().any()
    m = dais.metrics(recs, pd.DataFrame({"claim": ["dais.budget_met"], "verdict": [SUPPORTED]}), "default")
    assert m["claim2/max_search_macs_error"] == pytest.approx(0.004)
    assert m["resnet20/dais@0.5/test_acc_mean"] == pytest.approx(71.0)
