"""Claims 2-3's baseline: budgeted pruning with a validation sensitivity scan, iterated from scratch,
and how the study pairs it with DSA (plan, equal steps, time ratio in the claim's direction)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from prunerep.config import from_dict
from prunerep.data.arrays import ArrayDataset, DataSplits
from prunerep.engine import OptimConfig, RuntimeConfig
from prunerep.methods import Budget, MethodContext, get_method
from prunerep.methods.budget import top_k_masks
from prunerep.methods.importance import filter_l1
from prunerep.methods.sensitivity import (
    SensitivityHyper,
    allocate_by_sensitivity,
    damage_curve,
    sensitivity_scan,
)
from prunerep.models import get_model
from prunerep.pruning.cost import count_cost
from prunerep.pruning.groups import find_groups
from prunerep.pruning.soft_cost import SoftCostModel
from prunerep.pruning.surgery import prune_channels
from prunerep.runner import IterativeSpec, RunRecord, RunSpec, run_pruning
from prunerep.runner.iterative import run_iterative
from prunerep.studies.dsa import (
    DSAConfig,
    Experiment,
    build_spec,
    claim2_pairs,
    evidence,
    plan_experiments,
)

RUNTIME = RuntimeConfig(device="cpu", channels_last=False, progress=False)
X8 = torch.zeros(1, 3, 8, 8)


def _splits(n_train: int = 64, size: int = 8) -> DataSplits:
    def ds(n: int, seed: int) -> ArrayDataset:
        g = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
        return ArrayDataset(images, torch.arange(n) % 3, ("a", "b", "c"))

    return DataSplits(ds(n_train, 0), ds(24, 1), ds(16, 2), (0.5,) * 3, (0.25,) * 3, "fp", "synthetic")


# -- the scan and the allocation ---------------------------------------------------------------------


def test_damage_curve_is_monotone_interpolated_and_extrapolated():
    curve = damage_curve(8, [(6, 0.1), (4, 0.05), (2, 0.5)])
    # 0 at full width; 4 channels cost at least what 6 cost (0.05 -> 0.1); linear between points;
    # below 2 the last segment's slope (0.2 per channel) continues
    expected = [0.0, 0.7, 0.5, 0.3, 0.1, 0.1, 0.1, 0.05, 0.0]
    assert curve.tolist()[1:] == pytest.approx(expected[1:])
    assert damage_curve(1, []).tolist() == [0.0, 0.0]


def test_scan_loss_equals_the_loss_of_the_physically_pruned_network():
    torch.manual_seed(0)
    model = get_model("resnet20", shortcut="A", num_classes=3).eval()
    with torch.no_grad():     # non-trivial BN statistics, so a removed channel's bias matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.3, 0.3)
    groups = find_groups(model, X8)
    scores = filter_l1(model, list(groups))
    batches = [(torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2]))]
    picked = [g for g in groups if g.id in ("conv1", "layer2.1.conv1", "layer3.0.conv2")]
    scan = sensitivity_scan(model, picked, scores, [0.5, 0.25], batches)

    def loss(m: torch.nn.Module) -> float:
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(m(batches[0][0]), batches[0][1]))

    base = loss(model)
    for g in picked:
        assert [k for k, _ in scan[g.id]] == [math.ceil(0.5 * g.channels), math.ceil(0.25 * g.channels)]
        for k, damage in scan[g.id]:
            pruned = copy.deepcopy(model)
            pg = find_groups(pruned, X8)
            prune_channels(pruned, pg, top_k_masks({g.id: scores[g.id]}, {g.id: k}))
            assert damage == pytest.approx(loss(pruned.eval()) - base, abs=1e-5)
    assert loss(model) == base              # the model itself is untouched


def test_allocation_meets_the_budget_and_spares_the_sensitive_groups():
    model = get_model("resnet20", shortcut="A")
    groups = list(find_groups(model, torch.zeros(1, 3, 32, 32)))
    cost = SoftCostModel.from_model(model, torch.zeros(1, 3, 32, 32), find_groups(model, torch.zeros(1, 3, 32, 32)))
    dense = float(cost.dense_macs())
    sensitive = {"conv1", "layer3.0.conv2"}                      # the stem stream and the last stream
    cheap = "layer2.1.conv1"
    damage = {g.id: 100.0 if g.id in sensitive else 1e-4 if g.id == cheap else 0.01 for g in groups}
    curves = {g.id: damage_curve(g.channels, [(max(1, g.channels // 2), damage[g.id])]) for g in groups}
    widths = allocate_by_sensitivity(cost, groups, curves, 0.5 * dense)
    assert float(cost.macs(widths)) <= 0.5 * dense
    assert float(cost.macs(widths)) >= 0.48 * dense             # one channel at a time: no big overshoot
    assert all(widths[g] == cost.dense_widths[g] for g in sensitive)
    assert widths[cheap] == 1                                   # the least damage per MAC goes first
    assert sum(widths.values()) < sum(cost.dense_widths[g.id] for g in groups) - 31
    with pytest.raises(ValueError, match="cannot be met"):
        allocate_by_sensitivity(cost, groups[:1], curves, 0.05 * dense)


def test_hyper_rejects_levels_outside_zero_one():
    with pytest.raises(ValueError, match="levels"):
        SensitivityHyper(levels=[0.5, 1.0])


def test_method_needs_validation_batches():
    model = get_model("resnet20", shortcut="A", num_classes=3)
    groups = find_groups(model, X8)
    ctx = MethodContext(groups=groups, prunable=list(groups), example_input=X8, budget=Budget(macs_keep=0.5),
                        cost_model=SoftCostModel.from_model(model, X8, groups))
    method = get_method("sensitivity")
    method.prepare(model, ctx)
    with pytest.raises(ValueError, match="val_loader"):
        method.finalize(model, ctx)


def test_method_through_the_runner_scans_every_group_and_meets_the_budget():
    dense = get_model("resnet20", shortcut="A", num_classes=3)
    spec = RunSpec(method="sensitivity", budget=Budget(macs_keep=0.5), hyper={"levels": [0.5, 0.25], "scan_images": 10},
                   batch_size=16, runtime=RUNTIME)
    res = run_pruning(spec, dense, _splits())
    assert res.macs <= 0.5 * res.dense_macs and res.macs >= 0.45 * res.dense_macs
    summary = res.method_summary
    assert summary["scan_images"] == 10
    assert set(summary["scan"]) == set(res.widths)
    assert summary["evaluations"] == 1 + sum(len(v) for v in summary["scan"].values())
    assert res.macs == count_cost(res.model, (1, 3, 8, 8)).macs


# -- the traditional flow from scratch -----------------------------------------------------------------


def test_iterative_flow_from_scratch_ignores_the_given_weights():
    ft = OptimConfig(epochs=1, lr=0.05, max_steps=2)
    step = RunSpec(method="sensitivity", budget=Budget(macs_keep=0.5), finetune=ft, batch_size=16, runtime=RUNTIME,
                   hyper={"levels": [0.5], "scan_images": 8})
    it = IterativeSpec(step, steps=2, step_finetune=ft, pretrain=OptimConfig(epochs=1, lr=0.1, max_steps=3))
    splits = _splits()
    torch.manual_seed(1)
    a = get_model("resnet20", shortcut="A", num_classes=3)
    torch.manual_seed(2)
    b = get_model("resnet20", shortcut="A", num_classes=3)
    ra, rb = run_iterative(it, a, splits), run_iterative(it, b, splits)
    assert set(ra.phase_time_s) == {"pretrain", "prune", "step_finetune", "finetune"}
    assert ra.phase_time_s["pretrain"] > 0 and "pretrain" in ra.histories
    # the pretrained weights come from a seeded fresh initialisation, not from `a` or `b`
    assert ra.widths == rb.widths and ra.test_acc == rb.test_acc
    for (n1, p1), (_, p2) in zip(ra.model.state_dict().items(), rb.model.state_dict().items(), strict=True):
        assert torch.equal(p1, p2), n1
    assert ra.macs <= 0.5 * ra.dense_macs


# -- the study: plan, equal steps, time ratio --------------------------------------------------------


def test_timing_pairs_come_first_and_the_baseline_uses_dsas_recipes_at_equal_steps():
    cfg = from_dict(DSAConfig, {"timing": {"seeds": [0, 1], "steps": 3, "levels": [0.6, 0.3], "scan_images": 256},
                                "arch_fraction": 0.1, "search_scratch": {"epochs": 4, "lr": 0.1},
                                "finetune": {"epochs": 2, "lr": 0.01},
                                "grids": [{"models": ["resnet56"], "allocations": ["learned", "uniform"]}]}, "dsa")
    plan = plan_experiments(cfg)
    assert [(e.init, e.allocation, e.seed) for e in plan[:4]] == [
        ("scratch", "learned", 0), ("scratch", "iterative_sensitivity", 0),
        ("scratch", "learned", 1), ("scratch", "iterative_sensitivity", 1)]
    assert len(plan) == 6
    it = build_spec(cfg, plan[1])
    assert isinstance(it, IterativeSpec) and it.steps == 3 and it.spec.method == "sensitivity"
    assert it.pretrain.epochs == pytest.approx(4 * 0.9) and it.pretrain.lr == 0.1
    assert it.step_finetune.epochs == pytest.approx(2 * 0.9) and it.spec.finetune.epochs == pytest.approx(1.8)
    assert list(it.spec.hyper.levels) == [0.6, 0.3] and it.spec.hyper.scan_images == 256
    dsa = build_spec(cfg, plan[0])
    assert dsa.hyper.init == "scratch" and dsa.hyper.search.epochs == 4 and dsa.finetune.epochs == 2
    # 5,000 training images, 10% held out by DSA, batch 128: the same number of SGD steps
    assert round(it.pretrain.epochs * (5000 // 128)) == 4 * (4500 // 128)


def _record(kind: str, seed: int, phases: dict[str, float], test_acc: float, wall: float) -> RunRecord:
    alloc = "learned" if kind == "dsa" else "iterative_sensitivity"
    tags = dict(Experiment("resnet20", "scratch", 0.5, alloc, seed, kind).__dict__)
    return RunRecord(slug="dsa", label="x", method=kind, model="resnet20", seed=seed,
                     budget={"describe": "", "macs_keep": 0.5}, dense_macs=1000, dense_params=10, macs=498, params=5,
                     widths={}, val_acc=test_acc, test_acc=test_acc, val_acc_before_finetune=0.0,
                     test_acc_before_finetune=0.0, selection="best_val", phase_time_s=phases, tags=tags,
                     wall_time_s=wall, process_time_s=wall)


def test_time_ratio_reads_in_the_claims_direction_and_is_judged_over_pairs():
    cfg = from_dict(DSAConfig, {"timing": {"seeds": [0, 1, 2]}, "grids": []}, "dsa")
    records = []
    for seed, (t_dsa, t_base) in enumerate([(100.0, 210.0), (110.0, 220.0), (105.0, 200.0)]):
        records.append(_record("dsa", seed, {"search": t_dsa - 20, "finetune": 20.0}, 70.0 + seed, t_dsa + 30))
        records.append(_record("iterative", seed, {"pretrain": t_base / 2, "prune": t_base / 4, "finetune": t_base / 4},
                               69.0 + seed, t_base + 60))
    pairs = claim2_pairs(records, cfg)
    assert list(pairs["baseline time / DSA time (pruning process)"]) == pytest.approx([2.1, 2.0, 200 / 105])
    assert list(pairs["DSA − baseline test acc (points)"]) == pytest.approx([1.0, 1.0, 1.0])
    ev = {e.claim_id: e for e in evidence(cfg, records, budget="test")}
    assert ev["dsa.pruning_time"].verdict == "supported"          # every ratio >= 1.5, tight interval
    assert ev["dsa.pruning_time"].ours.startswith("2.00x")
    assert ev["dsa.pruning_time"].n == 3
    assert ev["dsa.learned_vs_uniform"].verdict == "not run at this budget"
    # the baseline faster than DSA: the same rule says not supported
    slow = [_record(r.tags["kind"], r.seed, {k: v * (4 if r.tags["kind"] == "dsa" else 1)
                                             for k, v in r.phase_time_s.items()}, r.test_acc, 1.0) for r in records]
    assert {e.claim_id: e for e in evidence(cfg, slow, budget="t")}["dsa.pruning_time"].verdict == "not supported"
