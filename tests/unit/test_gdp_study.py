"""GDP's study: the protocols of claim 3, post-pruning steps, the verdict pair, the gate histogram."""

from __future__ import annotations

import math
from collections import Counter

import matplotlib
import pytest

from prunerep.config import from_dict
from prunerep.reporting.stats import SUPPORTED, paired_difference
from prunerep.runner import RunRecord
from prunerep.studies import gdp
from prunerep.studies.gdp import GDPConfig

matplotlib.use("Agg")

CFG = from_dict(GDPConfig, {
    "models": ["resnet56"], "budgets": {"resnet56": [0.5, 0.3]}, "seeds": [0, 1], "epochs": 4.0,
    "baselines": ["l1", "slimming"], "slimming_fraction": 0.25,
    "controls": {"model": "resnet20", "budgets": [0.5], "seeds": [0, 1, 2]},
    "stability": {"model": "resnet20", "macs_keep": 0.5, "seeds": [0, 1]},
})


def record(variant: str, seed: int, acc: float, *, model: str = "resnet20", target: float = 0.5,
           gated_steps: int | None = None, reached: int | None = None, finetune_steps: int | None = None,
           forced: int = 0) -> RunRecord:
    histories, summary = {}, {}
    if gated_steps is not None:
        histories["gdp"] = [{"epoch": 1, "step": gated_steps // 2}, {"epoch": 2, "step": gated_steps}]
        summary = {"reached_step": reached, "forced_removals": forced,
                   "final_stats": {"between_0_0.1": 0.0}, "exactness": {"max_abs_diff": 1e-7},
                   "trace": [{"step": gated_steps, "loss": 1.0, "hard_macs_ratio": target}]}
    if finetune_steps is not None:
        histories["finetune"] = [{"epoch": 1, "step": finetune_steps}]
    return RunRecord(slug="gdp", label=f"{variant}@{target:g}", method=variant.split("-")[0], model=model,
                     seed=seed, budget={"describe": "", "macs_keep": target}, dense_macs=100, dense_params=10,
                     macs=50, params=5, widths={}, val_acc=acc, test_acc=acc, val_acc_before_finetune=acc,
                     test_acc_before_finetune=acc, selection="last", phase_time_s={},
                     tags={"variant": variant, "target": target}, histories=histories, summary=summary)


def test_plan_every_fine_tuning_is_equally_long_and_reports_its_last_epoch():
    specs = gdp.plan(CFG)
    names = [(s.model, s.label, s.seed) for s in specs]
    assert len(names) == len(set(names))            # GDP runs shared by grid, controls and stability: once
    count = Counter((s.model, s.tags["variant"]) for s in specs)
    assert count == {("resnet56", "gdp"): 4, ("resnet56", "l1"): 4, ("resnet56", "slimming"): 4,
                     ("resnet20", "gdp"): 3, ("resnet20", "gdp+ft"): 3, ("resnet20", "l1"): 3,
                     ("resnet20", "slimming+ft"): 3, ("resnet20", "gdp-sampling"): 2}
    for s in specs:
        v = s.tags["variant"]
        assert s.select == "last"
        if v in ("gdp", "gdp-sampling"):
            assert s.finetune is None and s.hyper.train.epochs == 4.0 and s.hyper.after_target == "settle"
        elif v == "gdp+ft":   # stops at its target, then L1's fine-tuning
            assert s.hyper.after_target == "stop" and s.finetune.epochs == 4.0 and s.finetune.max_steps is None
        elif v == "slimming":  # paper protocol: the sparse phase comes out of the fine-tuning
            assert s.hyper.sparse_train.epochs == 1.0 and s.finetune.epochs == 3.0
        elif v == "slimming+ft":
            assert s.hyper.sparse_train.epochs == 1.0 and s.finetune.epochs == 4.0
        else:
            assert s.method == "l1" and s.finetune.epochs == 4.0 and s.hyper.scope == "all"
    assert {s.hyper.gate for s in specs if s.tags["variant"] == "gdp-sampling"} == {"sampling"}


def test_post_pruning_steps_count_gdps_steps_after_its_target_plus_fine_tuning():
    assert gdp.post_pruning_steps(record("gdp", 0, 50.0, gated_steps=125, reached=60)) == 65
    assert gdp.post_pruning_steps(record("gdp+ft", 0, 50.0, gated_steps=60, reached=60, finetune_steps=125)) == 125
    assert gdp.post_pruning_steps(record("l1", 0, 50.0, finetune_steps=125)) == 125
    # a target forced at the end: the gated network never trained pruned
    assert gdp.post_pruning_steps(record("gdp", 0, 50.0, gated_steps=125, reached=125, forced=3)) == 0


def test_l1_gets_gdps_post_target_steps_of_the_same_seed():
    records = [record("gdp", s, 50.0, gated_steps=125, reached=r) for s, r in ((0, 60), (1, 125), (2, 70))]
    records.append(record("gdp", 5, 50.0, gated_steps=125, reached=10))       # not a control seed
    specs = {s.seed: s for s in gdp.post_target_specs(CFG, records)}
    assert sorted(specs) == [0, 1, 2]
    assert specs[0].finetune.max_steps == 65 and specs[0].finetune.epochs == 4.0 and specs[0].method == "l1"
    assert specs[2].finetune.max_steps == 55
    assert specs[1].finetune is None            # no post-target step: L1 without fine-tuning
    assert all(s.tags["variant"] == "l1-post" and s.select == "last" for s in specs.values())
    with pytest.raises(ValueError, match="post_steps"):
        gdp.run_spec(CFG, "l1", "resnet20", 0.5, 0, post_steps=3)


def _arms() -> list[RunRecord]:
    # paper protocol: GDP loses to L1; equal post-pruning training: GDP + fine-tuning wins
    rs = []
    for seed, (g, gft, l1, slim_ft, post) in enumerate([(60, 71, 70, 65, 62), (61, 71.7, 70.5, 66, 61),
                                                         (59, 70.6, 69.5, 64, 60)]):
        rs += [record("gdp", seed, g, gated_steps=125, reached=60),
               record("gdp+ft", seed, gft, gated_steps=60, reached=60, finetune_steps=125),
               record("l1", seed, l1, finetune_steps=125), record("slimming+ft", seed, slim_ft, finetune_steps=125),
               record("l1-post", seed, post, finetune_steps=65)]
    return rs


def test_claim3_judges_the_equal_post_pruning_pair_and_reports_the_others():
    rs = _arms()
    table = gdp.claim3_table(rs)
    by = {(r["protocol"], r["baseline"]): r for _, r in table.iterrows()}
    assert set(by) == {(gdp.EQUAL_POST, "l1"), (gdp.EQUAL_POST, "slimming"), (gdp.PAPER, "l1"),
                       (gdp.POST_STEPS, "l1")}
    eq = by[(gdp.EQUAL_POST, "l1")]
    expected = paired_difference({0: 71, 1: 71.7, 2: 70.6}, {0: 70, 1: 70.5, 2: 69.5})
    assert eq["_interval"] == expected and eq["verdict pair"] and eq["n"] == 3
    assert eq["post-pruning steps, GDP / baseline"] == "125 / 125"
    assert by[(gdp.PAPER, "l1")]["post-pruning steps, GDP / baseline"] == "65 / 125"
    assert by[(gdp.POST_STEPS, "l1")]["post-pruning steps, GDP / baseline"] == "65 / 65"
    assert by[(gdp.PAPER, "l1")]["_interval"].mean == pytest.approx(-10.0)
    assert not by[(gdp.PAPER, "l1")]["verdict pair"]

    ev = [e for e in gdp.evidence(CFG, rs, "budget") if e.claim_id == "gdp.acc_vs_l1"]
    assert len(ev) == 1 and ev[0].interval == expected and ev[0].verdict == SUPPORTED
    assert "paper protocol" in ev[0].note and "−10.00" not in ev[0].test


def test_claim1_evidence_names_the_threshold_and_reports_the_largest_kill_effect():
    rs = _arms()
    for i, r in enumerate(rs):
        if r.tags["variant"] == "gdp":
            r.summary["kill_effect"] = {"events": 4, "channels": 9, "copied_channels": i % 2,
                                        "max_killed_value": 9e-4, "max_abs_logit_change": 0.5,
                                        "max_rel_logit_change": 0.1, "gated_logit_change": 10.0 ** -(5 + i % 3),
                                        "copied_logit_change": 0.5 if i % 2 else float("nan")}
    (ev,) = [e for e in gdp.evidence(CFG, rs, "budget") if e.claim_id == "gdp.polarization"]
    assert f"g < {CFG.gdp.zero_threshold:g}" in ev.test and "threshold" in ev.test
    assert "1.0e-05 for channels seen only through their gates" in ev.note
    assert "5.0e-01 for residual-stream channels" in ev.note and "(1 of 27 killed channels" in ev.note
    assert "12 kill steps in 3 runs" in ev.note and ev.n == 3
    table = gdp.claim1_table(rs)
    assert table["logit change by one kill step, gated channels"].max() == pytest.approx(1e-5)


def test_gate_histogram_counts_exact_zeros_in_their_own_bin():
    r = record("gdp", 0, 50.0, gated_steps=10, reached=5)
    r.summary["snapshots"] = [{"step": 0, "values": [0.9] * 5},
                              {"step": 10, "values": [0.0, 0.0, 0.0, 1e-4, 0.02, 0.95]}]
    fig = gdp.gate_histograms_figure(r, bins=10)
    last = fig.axes[1]
    heights = [p.get_height() for p in last.patches]
    zero_bar = [p for p in last.patches if p.get_x() < -0.01]
    assert [p.get_height() for p in zero_bar] == [3]
    assert sum(heights) == 6 and sum(p.get_height() for p in last.patches if p.get_x() >= -0.01) == 3
    # 1e-4 and 0.02 share the first non-zero bin, never the zeros' bar
    first = min((p for p in last.patches if p.get_x() >= -0.01), key=lambda p: p.get_x())
    assert first.get_height() == 2 and math.isclose(first.get_x(), 0.0, abs_tol=1e-9)
    assert not [p for p in fig.axes[0].patches if p.get_x() < -0.01]   # no zeros, no zero bar


def test_slimming_with_our_per_layer_floor_is_named_as_ours_wherever_it_is_shown():
    import dataclasses

    floored = [dataclasses.replace(record("slimming+ft", seed, 80.0), hyper={"min_keep": 0.1}) for seed in (0, 1, 2)]
    plain = [dataclasses.replace(r, hyper={"min_keep": 0.0}) for r in floored]
    gdp_runs = [record("gdp+ft", seed, 81.0) for seed in (0, 1, 2)]
    assert gdp.variant_name("slimming+ft", floored).endswith("(10% per-layer floor, ours)")
    assert "ours" not in gdp.variant_name("slimming+ft", plain)
    row = gdp.claim3_table(gdp_runs + floored)
    row = row[row["claim"] == "gdp.acc_vs_slimming"].iloc[0]
    assert row["baseline arm"].endswith("(10% per-layer floor, ours)")
    assert gdp.summary_table(floored)["what ran"].iloc[0].endswith("(10% per-layer floor, ours)")
