"""DSA: the threshold solve, the implicit gradient, the FLOPs model, grouping and the budget."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch

from prunerep.config import ConfigError, from_dict
from prunerep.data.arrays import ArrayDataset, DataSplits
from prunerep.engine import OptimConfig, RuntimeConfig, TrainState
from prunerep.methods import Budget, MethodContext, get_method
from prunerep.methods.budget import top_k_masks
from prunerep.methods.dsa import (
    AlphaCost,
    final_widths,
    keep_probabilities,
    pad_importance,
    project_to_budget,
    solve_log_beta1,
)
from prunerep.models import get_model
from prunerep.pruning.cost import count_cost
from prunerep.pruning.groups import find_groups
from prunerep.pruning.soft_cost import SoftCostModel
from prunerep.pruning.surgery import prune_channels
from prunerep.runner.iterative import IterativeSpec, run_iterative, step_budgets
from prunerep.runner.run import RunSpec, run_pruning
from prunerep.studies.dsa import DSAConfig, claim1_table, claim4_table, gain_rows, plan_experiments

X = torch.zeros(1, 3, 32, 32)


def _ragged_scores(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, generator=g, dtype=torch.float64) * 3 + 0.05 for n in (16, 7, 32, 1 + 2)]


def _prepared(model_name: str = "resnet20", budget: float = 0.5, **kwargs):
    model = get_model(model_name, shortcut="A")
    groups = find_groups(model, X)
    ctx = MethodContext(groups=groups, prunable=list(groups), example_input=X, budget=Budget(macs_keep=budget),
                        cost_model=SoftCostModel.from_model(model, X, groups))
    method = get_method("dsa", **kwargs)
    model = method.prepare(model, ctx)
    return model, method, ctx


# -- keep probabilities ---------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [[0.02, 0.3, 0.6, 0.9], [0.5, 0.5, 0.5, 0.5], [0.993, 0.999, 0.95, 0.4]])
def test_threshold_solve_gives_mean_keep_probability_alpha(alpha):
    scores = _ragged_scores()
    a = torch.tensor(alpha, dtype=torch.float64)
    probs = keep_probabilities(scores, a)
    for p, target, s in zip(probs, alpha, scores, strict=True):
        assert p.shape == s.shape
        assert abs(float(p.mean()) - target) < 1e-9
        assert float(p.min()) >= 0.01 - 1e-12 and float(p.max()) <= 1.0


def test_keep_probability_is_the_clipped_sigmoid_of_log_importance():
    scores = _ragged_scores(1)
    log_imp, valid = pad_importance(scores)
    alpha = torch.tensor([0.4, 0.7, 0.2, 0.5], dtype=torch.float64)
    beta2 = 2.0
    lb1 = solve_log_beta1(log_imp, valid, alpha, beta2)
    probs = keep_probabilities(scores, alpha, beta2=beta2)
    for i, (s, p) in enumerate(zip(scores, probs, strict=True)):
        t = (beta2 * (lb1[i] - torch.log(s + 1e-8))).clamp(-20, 20)
        expected = (1 / (1 + torch.exp(t)) + 0.01).clamp(0, 1)   # official sigmoid_log_lbeta1
        torch.testing.assert_close(p, expected)
        # more important channels are more likely to be kept
        order = torch.argsort(s)
        assert torch.all(p[order][1:] >= p[order][:-1])


def test_implicit_gradient_matches_finite_differences():
    scores = _ragged_scores(2)
    alpha = torch.tensor([0.35, 0.62, 0.81, 0.5], dtype=torch.float64, requires_grad=True)
    weights = [torch.randn(s.numel(), dtype=torch.float64) for s in scores]

    def loss(a: torch.Tensor) -> torch.Tensor:
        return sum((w * p * p).sum() for w, p in zip(weights, keep_probabilities(scores, a), strict=True))

    loss(alpha).backward()
    h = 1e-6
    for i in range(len(scores)):
        up, down = alpha.detach().clone(), alpha.detach().clone()
        up[i] += h
        down[i] -= h
        fd = (loss(up) - loss(down)) / (2 * h)
        assert float(alpha.grad[i]) == pytest.approx(float(fd), rel=1e-5, abs=1e-7)


def test_implicit_gradient_is_c_times_softmax_of_log_slope():
    # dp_c/dalpha = C f'_c / sum f' with f' = sigma(t)(1 - sigma(t)): unit upstream gradient on p_0
    s = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    alpha = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    (p,) = keep_probabilities([s], alpha)
    p[0].backward()
    log_imp, valid = pad_importance([s])
    lb1 = solve_log_beta1(log_imp, valid, alpha.detach(), 1.0)
    sig = torch.sigmoid(lb1 - torch.log(s + 1e-8))
    fprime = sig * (1 - sig)
    assert float(alpha.grad) == pytest.approx(float(3 * fprime[0] / fprime.sum()), rel=1e-10)


# -- FLOPs model -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet20", "vgg16_bn"])
def test_quadratic_flops_model_equals_exact_count_at_hard_widths(name):
    base = get_model(name, **({"shortcut": "A"} if name == "resnet20" else {})).eval()
    groups = find_groups(base, X)
    cost = AlphaCost(SoftCostModel.from_model(base, X, groups), groups.ids())
    A, B, c = cost.bilinear()
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        model = copy.deepcopy(base)
        g = find_groups(model, X)
        widths = {grp.id: int(torch.randint(1, grp.channels + 1, (1,), generator=gen)) for grp in g}
        scores = {grp.id: torch.rand(grp.channels, generator=gen) for grp in g}
        exact = count_cost(prune_channels(model, g, top_k_masks(scores, widths)), example_input=X).macs
        alpha = torch.tensor([widths[i] for i in cost.group_ids], dtype=torch.float64) / cost.channels
        assert float(cost(alpha)) == pytest.approx(exact, rel=1e-12)
        assert float(alpha @ A @ alpha + B @ alpha + c) == pytest.approx(exact, rel=1e-12)
    assert float(cost(torch.ones(len(cost.group_ids), dtype=torch.float64))) == pytest.approx(
        count_cost(base, example_input=X).macs, rel=1e-12)


def test_flops_gradient_matches_autograd():
    base = get_model("resnet20", shortcut="A")
    groups = find_groups(base, X)
    cost = AlphaCost(SoftCostModel.from_model(base, X, groups), groups.ids())
    alpha = torch.rand(len(cost.group_ids), dtype=torch.float64, requires_grad=True)
    cost(alpha).backward()
    torch.testing.assert_close(cost.grad(alpha.detach()), alpha.grad)
    assert bool((alpha.grad >= 0).all())


# -- grouping and gates ------------------------------------------------------------------------------


@pytest.mark.parametrize("placement", ["input", "output"])
def test_grouping_ties_residual_coupled_convs_to_one_mask(placement):
    model, _, _ = _prepared(placement=placement)
    seen: dict[str, torch.Tensor] = {}
    # the masked channels of the layer-2 residual stream, where each placement applies them
    # (hooks registered after the gates' hooks see the masked tensors)
    if placement == "input":
        names = ("layer2.1.conv1", "layer2.2.conv1", "layer3.0.conv1")
        for name in names:
            model.get_submodule(name).register_forward_pre_hook(
                lambda m, a, name=name: seen.__setitem__(name, a[0]))
    else:
        names = ("layer2.0.bn2", "layer2.1.bn2", "layer2.2.bn2")
        for name in names:
            model.get_submodule(name).register_forward_hook(lambda m, a, o, name=name: seen.__setitem__(name, o))
    with torch.no_grad():
        model.dsa.logit.fill_(0.0)   # alpha = 0.5: about half the channels are dropped per draw
    model.train()
    model(torch.randn(2, 3, 32, 32))
    masks = [(seen[n].abs().sum((0, 2, 3)) > 0) for n in names]
    assert 0 < int(masks[0].sum()) < 32
    for mask in masks[1:]:
        assert torch.equal(mask, masks[0])
    # one keep ratio per group: the stream is one entry, each block's inner conv another
    ids = model.dsa.group_ids
    assert "layer2.0.conv2" in ids and "layer2.1.conv2" not in ids and "layer2.1.conv1" in ids
    assert len(ids) == model.dsa.logit.numel() == 12


def test_keep_ratios_get_gradients_only_in_the_architecture_step():
    model, method, _ = _prepared()
    state = TrainState()
    method.on_train_start(model, state)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    model.train()
    for phase, expect_grad in (("weights", False), ("arch", True)):
        state.phase = phase
        model.dsa.logit.grad = None
        torch.nn.functional.cross_entropy(model(x), y).backward()
        has = model.dsa.logit.grad is not None and bool(model.dsa.logit.grad.abs().sum() > 0)
        assert has == expect_grad


def test_uniform_allocation_has_no_architecture_parameters_and_stays_uniform():
    model, method, _ = _prepared(allocation="uniform")
    assert method.arch_parameters(model) == []
    assert not model.dsa.logit.requires_grad
    method.project(0.6 * method.cost.dense)
    alpha = model.dsa.alpha()
    torch.testing.assert_close(alpha, torch.full_like(alpha, float(alpha[0])))
    assert float(method.cost(alpha.double())) == pytest.approx(0.6 * method.cost.dense, rel=1e-9)


# -- the budget ----------------------------------------------------------------------------------------


def test_projection_shifts_every_logit_equally_onto_the_budget():
    _, method, _ = _prepared()
    a = torch.full((12,), 3.0, dtype=torch.float64)
    a[0], a[3] = 0.5, -3.9          # group 3 (16 channels) ends at its floor logit(1/16)
    target = 0.4 * method.cost.dense
    new, ok = project_to_budget(a, method.cost, target, method.lo, method.hi)
    assert ok
    assert float(method.cost(torch.sigmoid(new))) == pytest.approx(target, rel=1e-9)
    free = (new > method.lo) & (new < method.hi)
    assert not bool(free[3]) and float(new[3]) == pytest.approx(float(method.lo[3]))
    shift = a[free] - new[free]
    torch.testing.assert_close(shift, shift[:1].expand_as(shift))
    assert float(shift[0]) > 0
    # below the budget: every logit rises by the same amount back onto it
    low = new - 0.5
    up, ok = project_to_budget(low, method.cost, target, method.lo, method.hi)
    assert ok and float(method.cost(torch.sigmoid(up))) == pytest.approx(target, rel=1e-9)
    free_up = (up > method.lo) & (up < method.hi)
    rise = up[free_up] - low.clamp(method.lo, method.hi)[free_up]
    torch.testing.assert_close(rise, rise[:1].expand_as(rise))
    assert float(rise[0]) > 0


def test_logit_gradient_is_preconditioned_by_the_flops_slope():
    model, method, _ = _prepared()
    with torch.no_grad():
        model.dsa.logit.copy_(torch.linspace(-1.0, 2.0, 12, dtype=torch.float64))
    raw = torch.linspace(0.5, 2.0, 12, dtype=torch.float64)
    a = model.dsa.logit
    (g,) = torch.autograd.grad((a * raw).sum(), [a])
    r = raw / method.flops_slope()
    torch.testing.assert_close(g, r / r.pow(2).mean().sqrt())       # first step: ms = mean(r^2)
    assert method.grad_ms == pytest.approx(float(r.pow(2).mean()))
    slope = method.cost.grad(torch.sigmoid(a.detach())) * torch.sigmoid(a.detach()) * torch.sigmoid(-a.detach())
    torch.testing.assert_close(method.flops_slope(), slope / method.cost.dense)


def test_budget_schedule_ramps_linearly_to_the_target():
    _, method, _ = _prepared(ramp=0.5)
    start, target = method.start_macs, method.target
    assert method.budget_at(0, 100) == pytest.approx(start)
    assert method.budget_at(25, 100) == pytest.approx((start + target) / 2)
    assert method.budget_at(50, 100) == pytest.approx(target)
    assert method.budget_at(99, 100) == pytest.approx(target)


@pytest.mark.parametrize("budget", [0.75, 0.5, 0.33])
def test_final_widths_meet_the_budget_within_one_percent(budget):
    _, method, _ = _prepared(budget=budget)
    gen = torch.Generator().manual_seed(1)
    alpha = torch.rand(12, generator=gen, dtype=torch.float64) * 0.8 + 0.1
    target = budget * method.cost.dense
    w = final_widths(alpha, method.cost, target)
    macs = float(method.cost.at_widths(w))
    assert macs <= target
    assert macs >= 0.99 * target
    assert bool((w >= 1).all()) and bool((w <= method.cost.channels).all())
    with pytest.raises(ValueError, match="one channel per group"):
        final_widths(alpha, method.cost, 1e3)


# -- end to end: the budget is met by the pruned network -------------------------------------------


def _splits(n_train: int = 96, size: int = 8) -> DataSplits:
    def ds(n: int, seed: int) -> ArrayDataset:
        g = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
        return ArrayDataset(images, torch.arange(n) % 3, ("a", "b", "c"))

    return DataSplits(ds(n_train, 0), ds(16, 1), ds(16, 2), (0.5,) * 3, (0.25,) * 3, "fp", "synthetic")


@pytest.mark.slow
@pytest.mark.parametrize(("init", "allocation"), [("pretrained", "learned"), ("scratch", "uniform")])
def test_dsa_run_meets_the_budget_and_removes_its_machinery(init, allocation):
    dense = get_model("resnet20", shortcut="A", num_classes=3)
    search = {"epochs": 1, "batch_size": 16, "lr": 0.01, "max_steps": 6}
    spec = RunSpec(method="dsa", budget=Budget(macs_keep=0.5), batch_size=16, arch_fraction=0.2,
                   hyper={"search": search, "arch_optim": {"optimizer": "sgd", "lr": 0.05}, "init": init, "allocation": allocation,
                           "ramp": 0.5, "log_every": 1},
                   runtime=RuntimeConfig(device="cpu", channels_last=False, progress=False))
    res = run_pruning(spec, dense, _splits())
    assert abs(res.macs_keep / 0.5 - 1) <= 0.01 and res.macs_keep <= 0.5
    assert not hasattr(res.model, "gates") and not hasattr(res.model, "dsa")
    trace = res.method_summary["trace"]
    steps = res.histories["search"][-1]["step"]     # 76 training images, batches of 16: 4 steps
    assert [t["step"] for t in trace] == list(range(1, steps + 1))
    for t in trace[steps // 2 - 1:]:          # from the end of the ramp (half the search) on: the budget
        assert t["target"] == pytest.approx(0.5)
        assert t["expected"] <= 0.5 + 1e-9
    assert res.method_summary["widths"] == {k: v for k, v in res.widths.items()}
    if init == "scratch":                     # weights were re-initialised before the search
        assert not torch.equal(res.model.conv1.weight.abs().sum(), dense.conv1.weight.abs().sum())


@pytest.mark.slow
def test_iterative_baseline_reaches_the_budget_in_steps():
    assert step_budgets(0.5, 2) == pytest.approx([math.sqrt(0.5), 0.5])
    dense = get_model("resnet20", shortcut="A", num_classes=3)
    ft = OptimConfig(epochs=1, batch_size=16, lr=0.01, max_steps=2)
    spec = RunSpec(method="l1", budget=Budget(macs_keep=0.5), finetune=ft, batch_size=16,
                   runtime=RuntimeConfig(device="cpu", channels_last=False, progress=False))
    res = run_iterative(IterativeSpec(spec, steps=2), dense, _splits())
    keeps = [s["macs_keep"] for s in res.method_summary["steps"]]
    assert keeps[0] <= math.sqrt(0.5) + 1e-9 and keeps[1] <= 0.5 + 1e-9 and keeps[1] < keeps[0]
    assert set(res.phase_time_s) == {"prune", "step_finetune", "finetune"}
    assert res.phase_time_s["step_finetune"] > 0 and res.method == "iterative_l1"


# -- config and reporting ---------------------------------------------------------------------------


def test_config_rejects_unknown_keys_and_bad_budgets():
    with pytest.raises(ConfigError, match="dsa.method.ramps"):
        from_dict(DSAConfig, {"method": {"ramps": 0.5}}, "dsa")
    with pytest.raises(ConfigError, match="budgets"):
        from_dict(DSAConfig, {"grids": [{"budgets": [1.5]}]}, "dsa")
    with pytest.raises(ValueError, match="dsa.allocation"):
        get_method("dsa", allocation="greedy")


def test_plan_deduplicates_runs():
    cfg = from_dict(DSAConfig, {"grids": [{"models": ["resnet20"], "budgets": [0.5], "allocations": ["learned", "uniform"],
                                           "seeds": [0, 1]},
                                          {"models": ["resnet20"], "budgets": [0.5], "seeds": [0]}],
                                "timing": {"enabled": False}}, "dsa")
    plan = plan_experiments(cfg)
    assert len(plan) == len(set(plan)) == 4
    assert all(e.kind == "dsa" for e in plan)


def test_claim_tables_pair_seeds_label_calibration_and_check_the_budget():
    rows = []
    for model, budget in (("resnet20", 0.33), ("resnet56", 0.5)):
        for seed, (a, b) in enumerate([(90.0, 89.0), (91.0, 89.5), (90.5, 89.2)]):
            for alloc, acc in (("learned", a), ("uniform", b)):
                rows.append({"model": model, "init": "pretrained", "budget": budget, "allocation": alloc,
                             "seed": seed, "kind": "dsa", "test_acc": acc, "macs_keep": 0.498 * budget / 0.5,
                             "budget_error": 0.498 / 0.5 - 1})
    df = pd.DataFrame(rows)
    c1 = claim1_table(df)
    interval = c1["_interval"].iloc[0]
    assert interval.mean == pytest.approx((1.0 + 1.5 + 1.3) / 3) and interval.n == 3
    assert c1["seeds DSA better"].iloc[0] == 3
    assert list(c1["calibration setting"]) == ["yes", "no"]     # ResNet-20 at 0.33 is where DSA was calibrated
    assert [r["label"] for r in gain_rows(c1)] == ["calibration setting", "held-out setting"]
    from prunerep.reporting.stats import SUPPORTED, verdict
    assert verdict(interval, "greater") == SUPPORTED
    c4 = claim4_table(df)
    assert bool(c4["within 1%"].all())
    df.loc[0, "budget_error"] = 0.02
    assert not bool(claim4_table(df)["within 1%"].iloc[0])


def test_uniform_widths_keep_one_ratio_and_meet_the_budget():
    from prunerep.methods.dsa import uniform_widths

    model = get_model("resnet20", shortcut="A")
    widths = uniform_widths(model, 0.5, X)
    groups = find_groups(model, X)
    ratios = [widths[g.id] / g.channels for g in groups]
    assert max(ratios) - min(ratios) <= 1 / 16 + 1e-9        # one ratio up to rounding to whole channels
    pruned = prune_channels(model, groups, top_k_masks({g.id: torch.arange(g.channels, dtype=torch.float32)
                                                       for g in groups}, widths))
    keep = count_cost(pruned, example_input=X).macs / count_cost(get_model("resnet20", shortcut="A"), example_input=X).macs
    assert 0.99 * 0.5 <= keep <= 0.5
