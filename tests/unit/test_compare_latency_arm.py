"""The comparison's latency arm (compare.latency_arm, issue #19): W-Gates in its latency mode at the
measured latency of L1's networks. Its target is the statistic of L1's measured ratios; its table
pairs W-Gates with L1 by seed under the one verdict rule; its config errors name the key; with the
arm off nothing of the comparison changes; and the notebook runs it end to end on a tiny setting
with a fake timing harness (nothing is timed)."""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import statistics
from pathlib import Path

import pandas as pd
import pytest
import torch

from prunerep.config import ConfigError, from_dict, read_params, resolve_section
from prunerep.reporting.stats import (
    FEW_SEEDS,
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    paired_difference,
    verdict,
)
from prunerep.runner import RunRecord
from prunerep.studies import compare
from prunerep.studies.compare import CompareConfig, LatencyArm, LatencyTarget

ROOT = Path(__file__).resolve().parents[2]
FP = {"device_type": "cpu", "device_name": "fake CPU", "cpu_count": 2, "usable_cpus": 2, "torch": "x"}


def _cfg(**kw) -> CompareConfig:
    base = {"model": "resnet20", "targets": [0.7, 0.5], "seeds": [0, 1, 2], "batch_size": 16,
            "finetune": {"epochs": 1, "lr": 0.01}, "latency": {"batch_sizes": [1], "repeats": 2, "warmup": 1}}
    return from_dict(CompareConfig, {**base, **kw}, "compare")


def _arm(**kw) -> dict:
    return {"enabled": True, "measure": {"batch_sizes": [1, 8], "repeats": [2, 1], "layer_repeats": [1, 1]}, **kw}


def fake_ms(model: torch.nn.Module, input_shape, batch_size: int) -> float:
    from prunerep.pruning.cost import count_cost

    return 0.05 + 1e-5 * count_cost(model, (1, *input_shape)).macs * batch_size ** 0.9


def fake_measure(models, input_shape, batch_size, warmup, repeats):
    """A timing harness that times nothing: a network's "latency" is an affine function of its MACs."""
    return {n: {"median_ms": fake_ms(m, input_shape, batch_size), "iqr_ms": 0.0} for n, m in models.items()}


# -- the target ----------------------------------------------------------------------------------------


def test_the_latency_target_is_the_median_or_mean_of_l1s_measured_ratios_by_target():
    rows = [{"label": f"{v}@{t:g}", "model": "resnet20", "seed": s, "method": v, "variant": v, "target": t,
             "test_acc": 50.0, "ratio_b1": r}
            for v, t, s, r in [("l1", 0.5, 0, 0.61), ("l1", 0.5, 1, 0.52), ("l1", 0.5, 2, 0.55),
                               ("l1", 0.7, 0, 0.80), ("l1", 0.7, 1, 0.84), ("random", 0.5, 0, 0.1)]]
    measured = compare.measured_ratios(pd.DataFrame(rows), 1)
    assert measured == {0.5: {0: 0.61, 1: 0.52, 2: 0.55}, 0.7: {0: 0.80, 1: 0.84}}   # L1's rows only
    targets = {t.macs_target: t for t in compare.latency_targets(_cfg(latency_arm=_arm()), measured)}
    assert targets[0.5].latency_keep == 0.55 and targets[0.7].latency_keep == 0.82   # median of each target's seeds
    assert targets[0.5].l1_ratios == {0: 0.61, 1: 0.52, 2: 0.55}
    mean = {t.macs_target: t.latency_keep
            for t in compare.latency_targets(_cfg(latency_arm=_arm(statistic="mean")), measured)}
    assert mean == {0.5: round((0.61 + 0.52 + 0.55) / 3, 3), 0.7: 0.82}
    # no measured L1 network, or L1 no faster than dense: no target, and the reason says why
    none = compare.latency_targets(_cfg(latency_arm=_arm()), {0.7: {0: 1.02, 1: 1.01}})
    assert [t.latency_keep for t in none] == [None, None]
    assert "no latency target below the dense network" in none[0].reason and "no l1 network" in none[1].reason
    assert compare.latency_target([0.5004, float("nan"), 0.4]) == 0.45


def test_the_arms_specs_are_the_flops_runs_with_lpnet_and_a_latency_budget():
    from tests.unit.test_compare_study import FakeStudy

    cfg = _cfg(latency_arm=_arm(), hyper={"wgates": {"train": {"lr": 0.02}}})
    study = FakeStudy(n_train=160)
    targets = [LatencyTarget(0.7, {0: 0.8}, 0.8), LatencyTarget(0.5, {}, None, "no L1 network")]
    specs = compare.latency_arm_specs(cfg, study, targets, "artifacts/wgates/lpnet/x.pt", "abc")
    flops = [s for s in compare.plan(cfg, study).specs if s.method == "wgates" and s.tags["target"] == 0.7]
    assert len(specs) == len(flops) == 3
    for s, f in zip(specs, flops, strict=True):
        assert s.budget.latency_keep == 0.8 and s.budget.macs_keep is None
        assert (s.hyper.lpnet, s.hyper.lpnet_digest, s.hyper.latency_batch) == ("artifacts/wgates/lpnet/x.pt", "abc", 1)
        assert s.hyper.train == f.hyper.train and s.hyper.min_keep == f.hyper.min_keep     # the same W-Gates
        assert (s.finetune, s.select, s.seed, s.batch_size, s.model) == (f.finetune, f.select, f.seed, f.batch_size,
                                                                         f.model)
        assert s.tags["variant"] == compare.LATENCY_ARM and s.tags["target"] == 0.7 and s.label != f.label
    assert "latency mode, LPNet" in compare.method_name("wgates", {"lpnet": "x.pt"})
    assert "FLOPs mode" in compare.method_name("wgates", {"lpnet": ""})


def test_the_arm_adds_nothing_to_the_plan_so_existing_runs_keep_their_identity():
    from tests.unit.test_compare_study import FakeStudy

    study = FakeStudy(n_train=160)
    assert compare.plan(_cfg(latency_arm=_arm()), study).specs == compare.plan(_cfg(), study).specs
    off = compare.run_latency_arm(_cfg(), None, [])          # off: nothing is read, measured or run
    assert not off.enabled and off.records == [] and compare.latency_arm_metrics(off, pd.DataFrame()) == {}
    assert compare.equal_latency_table(off, []).empty
    # the deviations row on W-Gates reads as before when the arm is off
    rows = compare.deviations_table(_cfg(), [], []).set_index("the papers'")
    assert rows.loc["W-Gates under a latency constraint (LPNet on the target device)", "why"] == \
        "a MACs comparison; the latency-constrained runs are the wgates stage's"


# -- the table ----------------------------------------------------------------------------------------


def _rec(variant: str, seed: int, acc: float, target: float = 0.5) -> RunRecord:
    method = "wgates" if variant == compare.LATENCY_ARM else variant
    return RunRecord(slug="compare", label=f"{variant}@{target:g}", method=method, model="resnet20", seed=seed,
                     budget={}, dense_macs=1000, dense_params=100, macs=500, params=50, widths={"g": 4}, val_acc=acc,
                     test_acc=acc, val_acc_before_finetune=acc, test_acc_before_finetune=acc, selection="best_val",
                     phase_time_s={}, tags={"variant": variant, "target": target},
                     hyper={"lpnet": "lp.pt"} if method == "wgates" else {})


def _after(records: list[RunRecord], ratio: dict[tuple[str, int], float]) -> pd.DataFrame:
    return pd.DataFrame([{"label": r.label, "model": r.model, "seed": r.seed, "variant": r.tags["variant"],
                          "target": 0.5, "ratio_b1": ratio[(r.tags["variant"], r.seed)]} for r in records])


def test_the_table_pairs_wgates_and_l1_by_seed_with_the_one_rule():
    l1 = [_rec("l1", s, a) for s, a in [(1, 60.0), (2, 62.0), (3, 61.0)]]
    ours = [_rec(compare.LATENCY_ARM, s, a) for s, a in [(0, 70.0), (1, 63.0), (2, 64.5)]]
    ratio = {("l1", 0): 0.50, ("l1", 1): 0.50, ("l1", 2): 0.52, ("l1", 3): 0.9,
             (compare.LATENCY_ARM, 0): 0.505, (compare.LATENCY_ARM, 1): 0.51, (compare.LATENCY_ARM, 2): 0.53}
    after = _after([*l1, _rec("l1", 0, 65.0), *ours], ratio)
    arm = LatencyArm(enabled=True, targets=[LatencyTarget(0.5, {1: 0.5, 2: 0.52, 3: 0.9}, 0.52)], records=ours,
                     after=after)
    row = compare.equal_latency_table(arm, [*l1, _rec("random", 1, 10.0)]).iloc[0]
    iv = paired_difference({1: 63.0, 2: 64.5}, {1: 60.0, 2: 62.0})          # seeds 1 and 2 only: the shared ones
    assert row["_interval"] == iv and row["− L1 (points, 95% CI)"] == str(iv) and row["n"] == 2
    assert row["better than L1 at equal latency?"] == verdict(iv, compare.DIRECTION, compare.THRESHOLD) == FEW_SEEDS
    assert row["L1-norm: measured latency, batch 1 (fraction of dense)"] == "0.510 ± 0.014 (n=2)"   # paired seeds
    assert row["W-Gates (latency mode): measured latency, batch 1 (fraction of dense)"].endswith("(n=3)")
    assert row["latency target"] == "0.520" and "median of 0.500 (seed 1)" in row["set from L1's measured ratios"]
    assert "latency mode, LPNet" in row["what ran"]
    # three shared seeds, latency gaps 0.005, 0.01, 0.01: the interval lies within +-0.05, so a verdict
    l1.append(_rec("l1", 0, 65.0))
    table = compare.equal_latency_table(arm, l1)
    row = table.iloc[0]
    gap = paired_difference({0: 0.505, 1: 0.51, 2: 0.53}, {0: 0.50, 1: 0.50, 2: 0.52})
    assert row["n"] == 3 and row["better than L1 at equal latency?"] == SUPPORTED
    assert row["latency, W-Gates − L1 (95% CI; equal within ±0.05)"] == \
        f"{gap.mean:+.3f} [{gap.lo:+.3f}, {gap.hi:+.3f}] (n=3): {compare.EQUAL_LATENCY}"
    assert row["latency, W-Gates − L1 (95% CI; equal within ±0.05)"] == "+0.008 [+0.001, +0.016] (n=3): equal"
    m = compare.latency_arm_metrics(arm, table)
    assert m["wgates_latency@0.5/latency_target"] == 0.52 and m["wgates_latency@0.5/minus_l1"] == pytest.approx(
        (5.0 + 3.0 + 2.5) / 3)
    assert not [c for c in compare.equal_latency_display(table).columns if c.startswith("_")]
    # re-timed later: the same relation keeps the verdict; another one withdraws it
    arm.confirm = after
    row = compare.equal_latency_table(arm, l1).iloc[0]
    assert row["better than L1 at equal latency?"] == SUPPORTED
    assert row["latency, W-Gates − L1 (95% CI; equal within ±0.05)"].endswith("; re-timed: +0.008 [+0.001, +0.016] "
                                                                            "(n=3): equal")
    arm.confirm = _after([*l1, *ours], {**ratio, **{(compare.LATENCY_ARM, s): 0.70 + 0.01 * s for s in range(3)}})
    row = compare.equal_latency_table(arm, l1).iloc[0]
    assert row["better than L1 at equal latency?"] == compare.WITHHELD
    assert row["latency, W-Gates − L1 (95% CI; equal within ±0.05)"].endswith(f": {compare.SLOWER}")
    arm.confirm = pd.DataFrame()
    # W-Gates' networks slower than L1's (the session-13 case: more accurate, but larger): no verdict
    slow = {**ratio, **{(compare.LATENCY_ARM, s): 0.70 + 0.01 * s for s in range(3)}}
    arm.after = _after([*l1, *ours], slow)
    row = compare.equal_latency_table(arm, l1).iloc[0]
    assert row["better than L1 at equal latency?"] == compare.WITHHELD
    assert row["latency, W-Gates − L1 (95% CI; equal within ±0.05)"].endswith(f": {compare.SLOWER}")
    # a target without runs says why; a failure says what failed
    none = LatencyArm(enabled=True, targets=[LatencyTarget(0.5, {}, None, "no l1 network with a measured latency")])
    assert compare.equal_latency_table(none, l1).iloc[0]["status"].startswith("not run: no l1 network")
    failed = LatencyArm(enabled=True, targets=[LatencyTarget(0.5, {0: 0.5}, 0.5)], failed="ValueError: x")
    assert compare.equal_latency_table(failed, l1).iloc[0]["status"] == "failed: ValueError: x"


def test_equal_latency_is_an_equivalence_test_on_the_paired_gap():
    l1 = {0: 0.50, 1: 0.52, 2: 0.51}
    # gaps 0.01, 0.02, 0.00: mean 0.01, s = 0.01, t(0.975, 2) = 4.303 -> [-0.0148, +0.0348] within 0.05
    status, iv = compare.latency_match({0: 0.51, 1: 0.54, 2: 0.51}, l1, 0.05)
    assert status == compare.EQUAL_LATENCY and iv.mean == pytest.approx(0.01)
    assert iv.hi == pytest.approx(0.01 + 4.302653 * 0.01 / 3 ** 0.5, abs=1e-5)
    assert compare.latency_match({0: 0.51, 1: 0.54, 2: 0.51}, l1, 0.03)[0] == compare.UNRESOLVED   # hi 0.035 > 0.03
    assert compare.latency_match({s: r + 0.2 + 0.001 * s for s, r in l1.items()}, l1, 0.05)[0] == compare.SLOWER
    assert compare.latency_match({s: r - 0.2 - 0.001 * s for s, r in l1.items()}, l1, 0.05)[0] == compare.FASTER
    # a gap noisier than the tolerance is not equality, even with a mean of 0
    assert compare.latency_match({0: 0.60, 1: 0.42, 2: 0.51}, l1, 0.05)[0] == compare.UNRESOLVED
    # fewer than 3 paired seeds (NaN ratios do not pair): not established
    assert compare.latency_match({0: 0.5, 1: 0.52, 2: float("nan")}, l1, 0.05)[0] == compare.UNRESOLVED
    assert compare.latency_match({}, l1, 0.05) == (compare.UNRESOLVED, None)


@pytest.mark.parametrize(("accuracy", "match", "expected"), [
    (SUPPORTED, compare.EQUAL_LATENCY, SUPPORTED),
    (NOT_SUPPORTED, compare.EQUAL_LATENCY, NOT_SUPPORTED),
    (INCONCLUSIVE, compare.EQUAL_LATENCY, INCONCLUSIVE),
    (SUPPORTED, compare.FASTER, SUPPORTED),            # faster and more accurate: better at equal latency too
    (NOT_SUPPORTED, compare.SLOWER, NOT_SUPPORTED),    # slower and less accurate: not better
    (SUPPORTED, compare.SLOWER, compare.WITHHELD),     # more accurate but slower: unanswered
    (NOT_SUPPORTED, compare.FASTER, compare.WITHHELD),
    (INCONCLUSIVE, compare.FASTER, compare.WITHHELD),
    (SUPPORTED, compare.UNRESOLVED, compare.WITHHELD),
    (FEW_SEEDS, compare.UNRESOLVED, FEW_SEEDS),
])
def test_the_verdict_is_given_only_at_equal_latency_or_under_dominance(accuracy, match, expected):
    assert compare.equal_latency_verdict(accuracy, match) == expected


def test_the_next_target_scales_after_one_miss_and_follows_the_secant_after_two():
    first = compare.Attempt(0.5, 1, latency_keep=0.929, wgates_ratio=0.968, l1_ratio=0.763)
    assert compare.next_target([first]) == round(0.929 * 0.763 / 0.968, 3) == 0.732
    assert compare.next_target([dataclasses.replace(first, wgates_ratio=float("nan"))]) is None
    assert compare.next_target([dataclasses.replace(first, l1_ratio=0.968)]) is None       # nothing to correct
    assert compare.next_target([dataclasses.replace(first, l1_ratio=2.0, wgates_ratio=1.0)]) is None  # not below dense
    assert compare.next_target([]) is None
    # the session-14 rounds at MACs 0.5: W-Gates/L1 = 0.908 at target 0.750, 1.082 at 0.826; the
    # secant through them crosses 1 at 0.826 + (1 - 1.082) * 0.076 / (1.082 - 0.908)
    a1 = compare.Attempt(0.5, 1, latency_keep=0.750, wgates_ratio=0.692, l1_ratio=0.762)
    a2 = compare.Attempt(0.5, 2, latency_keep=0.826, wgates_ratio=0.828, l1_ratio=0.765)
    r1, r2 = 0.692 / 0.762, 0.828 / 0.765
    assert compare.next_target([a1, a2]) == round(0.826 + (1 - r2) * 0.076 / (r2 - r1), 3) == 0.790
    # two rounds that do not increase together (noise): the scaling of the last one instead
    a2_noisy = dataclasses.replace(a2, wgates_ratio=0.650)
    assert compare.next_target([a1, a2_noisy]) == round(0.826 * 0.765 / 0.650, 3) == 0.972
    # a target already tried is not run again
    # (r = 1.0 at 0.7, 1.2 at 0.8: the secant points back at 0.7)
    hit = compare.Attempt(0.5, 1, latency_keep=0.7, wgates_ratio=0.7, l1_ratio=0.7)
    over = compare.Attempt(0.5, 2, latency_keep=0.8, wgates_ratio=0.84, l1_ratio=0.7)
    assert compare.next_target([hit, over]) is None


def test_a_networks_ratio_is_the_median_over_sessions():
    def session(r0: float, r1: float) -> pd.DataFrame:
        return pd.DataFrame([{"label": "l1@0.5", "seed": 0, "variant": "l1", "target": 0.5, "ratio_b64": r0},
                             {"label": "l1@0.5", "seed": 1, "variant": "l1", "target": 0.5, "ratio_b64": r1}])

    out = compare.combine_sessions([session(0.93, 0.90), session(0.76, 0.75), session(0.80, 0.95)], 64)
    assert list(out["ratio_b64"]) == [0.80, 0.90] and list(out["seed"]) == [0, 1]
    assert out["sessions_b64"].iloc[0] == "0.930 / 0.760 / 0.800"
    assert compare.measured_ratios(out, 64) == {0.5: {0: 0.80, 1: 0.90}}
    assert compare.combine_sessions([pd.DataFrame()], 64).empty


def _fake_arm_world(monkeypatch, bias: float, l1_ratio: float = 0.76, fail_after: int | None = None):
    """run_latency_arm without a dataset, LPNet, training or timing: L1's networks always measure
    `l1_ratio`; a W-Gates network run at latency target x measures x * `bias` (+0.002 per seed),
    as if LPNet under-predicted its latency by that factor; the runner dies in every round after
    `fail_after` rounds. Returns the list of executed specs."""
    from types import SimpleNamespace

    import prunerep.runner
    from prunerep.studies import latency

    ds = SimpleNamespace(describe=lambda: "fake dataset", path="ds.json", digest="d" * 64)
    monkeypatch.setattr(latency, "ensure_datasets", lambda *a, **k: {"resnet20": ds})
    monkeypatch.setattr(latency, "fit_predictors",
                        lambda *a, **k: SimpleNamespace(lpnet_path="lp.pt", lpnet_digest="e" * 64))
    executed = []

    def execute(specs, study):
        executed.append(list(specs))
        if fail_after is not None and len(executed) > fail_after:
            raise RuntimeError("worker died")
        return [dataclasses.replace(_rec(compare.LATENCY_ARM, s.seed, 70.0 + s.budget.latency_keep, s.tags["target"]),
                                    budget={"latency_keep": s.budget.latency_keep}) for s in specs]

    def measure_arm(records, study, cfg, measure_fn=None):
        return pd.DataFrame([{"label": r.label, "seed": r.seed, "variant": r.tags["variant"],
                              "target": r.tags["target"], "ratio_b1": (
                                  l1_ratio if r.method == "l1" else r.budget["latency_keep"] * bias + 0.002 * r.seed)}
                             for r in records])

    monkeypatch.setattr(prunerep.runner, "execute", execute)
    monkeypatch.setattr(compare, "measure_arm", measure_arm)
    return executed


def _study():
    from tests.unit.test_compare_study import FakeStudy

    study = FakeStudy()
    study.slug = "compare"
    return study


def test_the_arm_runs_again_at_a_rescaled_target_when_wgates_misses_l1s_latency(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    executed = _fake_arm_world(monkeypatch, bias=1.25)
    l1 = [_rec("l1", s, 60.0) for s in range(3)]
    cfg = _cfg(targets=[0.5], latency_arm=_arm())
    arm = compare.run_latency_arm(cfg, _study(), l1)
    # round 1 at L1's measured 0.76 measures 0.95-0.954: slower; round 2 at 0.76 * 0.76 / 0.952 = 0.607
    assert [len(x) for x in executed] == [3, 3]
    assert [a.latency_keep for a in arm.attempts] == [0.76, round(0.76 * 0.76 / (0.76 * 1.25 + 0.002), 3)]
    assert [a.round for a in arm.attempts] == [1, 2]
    assert {r.budget["latency_keep"] for r in arm.records} == {arm.attempts[1].latency_keep}   # the last round's
    assert set(arm.after["variant"]) == {"l1", compare.LATENCY_ARM} and len(arm.after) == 6
    assert arm.paired == {0.5: 2} and arm.confirm.equals(arm.after)   # re-timed (the fake device does not drift)
    row = compare.equal_latency_table(arm, l1).iloc[0]
    assert row["latency target"] == f"0.760 → {arm.attempts[1].latency_keep:.3f}"
    assert row["latency, W-Gates − L1 (95% CI; equal within ±0.05)"].endswith(compare.EQUAL_LATENCY)
    assert row["better than L1 at equal latency?"] == SUPPORTED and row["rounds"].startswith("round 1: target 0.760")
    metrics = compare.latency_arm_metrics(arm, compare.equal_latency_table(arm, l1))
    assert metrics["wgates_latency@0.5/rounds"] == 2 and abs(metrics["wgates_latency@0.5/latency_gap"]) < 0.01
    # one round only: the miss stays, and its verdict is withheld
    executed.clear()
    once = compare.run_latency_arm(_cfg(targets=[0.5], latency_arm=_arm(iterations=1)), _study(), l1)
    assert len(executed) == 1 and len(once.attempts) == 1
    assert compare.equal_latency_table(once, l1).iloc[0]["better than L1 at equal latency?"] == compare.WITHHELD
    # a first round that lands at L1's latency is not run again
    exact = _fake_arm_world(monkeypatch, bias=1.0)
    done = compare.run_latency_arm(cfg, _study(), l1)
    assert len(exact) == 1 and len(done.attempts) == 1 and len(done.records) == 3
    # a round that fails after one that ran: the first round is paired, and the failure is shown
    _fake_arm_world(monkeypatch, bias=1.25, fail_after=1)
    broken = compare.run_latency_arm(cfg, _study(), l1)
    assert broken.failed == "RuntimeError: worker died" and len(broken.attempts) == 1 and len(broken.records) == 3
    assert compare.equal_latency_table(broken, l1).iloc[0]["status"] == \
        "ran: seeds [0, 1, 2]; a later round failed: RuntimeError: worker died"


# -- configuration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kw", "match"), [
    ({"latency_arm": _arm(statistic="avg")}, r"compare\.latency_arm\.statistic"),
    ({"latency_arm": _arm(enabled="yes")}, r"compare\.latency_arm\.enabled"),
    ({"latency_arm": _arm(), "methods": ["gdp", "wgates"]}, r"compare\.latency_arm\.enabled: needs \['l1'\] among"),
    ({"latency_arm": _arm(), "methods": ["l1"]}, r"compare\.latency_arm\.enabled: needs \['wgates'\] among"),
    ({"latency_arm": _arm(), "latency": {"enabled": False}}, r"compare\.latency_arm\.enabled: needs latency\.enabled"),
    ({"latency_arm": _arm(measure={"batch_sizes": [8], "repeats": [1], "layer_repeats": [1]})},
     r"compare\.latency_arm\.measure\.batch_sizes: \[8\] lacks latency_batch 1"),
    ({"latency_arm": _arm(sampler={"scope": "internal"})}, r"compare\.latency_arm\.sampler\.scope"),
    ({"latency_arm": _arm(rounds={"repeats": 0})}, r"compare\.latency_arm\.rounds\.repeats"),
    ({"latency_arm": _arm(predictor={"seeds": []})}, r"compare\.latency_arm\.predictor\.seeds"),
    ({"latency_arm": _arm(sessions=0)}, r"compare\.latency_arm\.sessions"),
    ({"latency_arm": _arm(tolerance=0)}, r"compare\.latency_arm\.tolerance"),
    ({"latency_arm": _arm(iterations=0)}, r"compare\.latency_arm\.iterations"),
    ({"latency_arm": _arm(lpnet="x.pt")}, r"compare\.latency_arm\.lpnet: unknown key"),
])
def test_bad_latency_arm_settings_are_refused_naming_the_key(kw, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(**kw)
    assert not _cfg(latency_arm={"enabled": False, "statistic": "median"}).latency_arm.enabled


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
def test_params_the_arm_shares_wgates_dataset_cache_and_is_on_at_every_profile(profile):
    """At every profile the arm's dataset and LPNet settings are wgates.dataset's and
    wgates.predictor's, so the per-device cache (and LPNet file) is shared, not measured twice."""
    params = read_params(ROOT / "params.yaml")
    cfg = resolve_section("compare", params, profile=profile)
    wg = resolve_section("wgates", params, profile=profile)
    assert cfg.latency_arm.enabled
    arm = cfg.latency_arm
    assert cfg.model in wg.dataset.models
    assert (arm.sampler, arm.measure, arm.predictor.lpnet) == (wg.dataset.sampler, wg.dataset.measure,
                                                               wg.predictor.lpnet)
    assert arm.predictor.seeds[0] == wg.predictor.seeds[0]
    assert (arm.predictor.test_share, arm.predictor.val_share) == (wg.predictor.test_share, wg.predictor.val_share)
    if profile == "smoke":
        assert len(cfg.seeds) == 1 and len(cfg.targets) == 1 and arm.sampler.configs <= 50   # CI time


# -- end to end -------------------------------------------------------------------------------------------


def test_the_notebook_runs_the_arm_end_to_end_on_a_tiny_setting(tmp_path, monkeypatch):
    """Every code cell of notebooks/compare.ipynb with the arm on: L1 and W-Gates at one MACs
    target, two seeds, a fake timing harness (a network's time is an affine function of its MACs,
    so the measured ratios are known): W-Gates' latency target is the median of L1's measured
    ratios, its runs use LPNet in latency mode, and the equal-latency table, the LPNet table,
    the metrics and the latency figure hold them."""
    import prunerep.data
    from prunerep.models import get_model
    from prunerep.models.checkpoint import load_model, save_model
    from tests.unit.test_runner_logs import _splits

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PRUNEREP_PARAMS", raising=False)
    monkeypatch.setattr(prunerep.data, "load_data", lambda *a, **k: _splits())
    monkeypatch.setattr(compare, "run_latency_arm", functools.partial(
        compare.run_latency_arm, measure_fn=fake_measure, fingerprint=FP, progress=False))
    torch.manual_seed(0)
    dense = get_model("resnet20", shortcut="A", num_classes=3, in_channels=1)
    save_model(dense, Path("artifacts/pretrain/resnet20/model.pt"))
    section = {
        "model": "resnet20", "targets": [0.5], "seeds": [0, 1], "methods": ["l1", "wgates"], "workers": 1,
        "batch_size": 16, "eval_batch_size": 16, "prune_epochs": 1, "prune_max_steps": 2,
        "finetune": {"epochs": 1, "max_steps": 1, "lr": 0.01},
        "runtime": {"device": "cpu", "channels_last": False, "progress": False},
        "latency": {"batch_sizes": [1], "repeats": 2, "warmup": 1},
        "hyper": {"wgates": {"lam_init": 5.0, "lam_max": 50.0}},
        "latency_arm": {"enabled": True, "sampler": {"configs": 24, "uniform": 6},
                        "measure": {"batch_sizes": [1, 4], "repeats": [1, 1], "warmup": 0, "chunk": 8, "recheck": 4,
                                    "layer_levels": 2, "layer_repeats": [1, 1]},
                        "predictor": {"lpnet": {"hidden": 16, "iterations": 100, "eval_every": 20}, "seeds": [0]},
                        "rounds": {"repeats": 2, "warmup": 0}, "iterations": 2}}
    nb = json.loads((ROOT / "notebooks" / "compare.ipynb").read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    scope: dict = {}
    exec(cells[0], scope)
    scope.update(profile="smoke", section=section, data={}, out_dir=str(tmp_path / "results" / "compare"))
    for code in cells[1:]:
        exec(code, scope)
    out = tmp_path / "results" / "compare"
    arm = scope["latency_arm"]
    assert arm.enabled and not arm.failed and len(arm.records) == 2
    # the target is the median of L1's ratios as the fake harness gives them, computed here from the networks
    l1 = [r for r in scope["records"] if r.method == "l1"]
    shape = (1, 12, 12)
    ratios = [fake_ms(load_model(r.model_path)[0], shape, 1) / fake_ms(dense, shape, 1) for r in l1]
    assert arm.targets[0].l1_ratios == pytest.approx(dict(zip([r.seed for r in l1], ratios, strict=True)))
    assert arm.targets[0].latency_keep == compare.latency_target(ratios) == round(statistics.median(ratios), 3)
    # two seeds cannot establish equal latency, so a second round ran at the rescaled target
    first, last = arm.attempts[0], arm.attempts[-1]
    assert first.latency_keep == arm.targets[0].latency_keep and len(arm.attempts) == 2
    assert last.latency_keep == compare.next_target([first])
    for r in arm.records:   # W-Gates in latency mode, at the last round's target, through the LPNet that was fitted
        assert r.method == "wgates" and r.budget["latency_keep"] == last.latency_keep
        assert r.hyper["lpnet"] == arm.fit.lpnet_path and r.hyper["lpnet_digest"] == arm.fit.lpnet_digest
        assert r.summary["mode"] == "latency" and r.latency and r.latency["batch_1_ms"] > 0
    # both sides timed again in one session: every arm network and every L1 network has a ratio
    assert set(arm.after["variant"]) == {"l1", compare.LATENCY_ARM} and len(arm.after) == 4
    table = (out / "tables" / "equal_latency.md").read_text()
    assert "W-Gates (reconstruction; latency mode, LPNet" in table and "fewer than 3 seeds: no verdict" in table
    assert (out / "tables" / "latency_arm_lpnet.md").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["wgates_latency@0.5/latency_target"] == arm.targets[0].latency_keep
    assert "wgates_latency@0.5/minus_l1" in metrics and metrics["runs"] == 4     # the arm's runs are apart
    assert len((out / "runs.jsonl").read_text().splitlines()) == 6
    runs = pd.read_csv(out / "tables" / "runs.csv")
    assert list(runs["latency target (W-Gates, latency mode)"].astype(str)) == \
        ["—"] * 4 + [str(last.latency_keep)] * 2           # the arm's runs (last round) come last
    # the plain tables hold the plain runs only
    comparison = (out / "tables" / "comparison.md").read_text()
    assert "latency mode" not in comparison and "FLOPs mode" in comparison
    assert (out / "figures" / "accuracy_vs_latency.png").stat().st_size > 0
