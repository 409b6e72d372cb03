"""GReg (arXiv:2012.09243): penalty targets, λ schedule, stop conditions, GReg-2 picking,
stage ratios, same filters as one-shot L1, and unstructured zeros through fine-tuning."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch
from torch import nn

from prunerep.config import ConfigError, from_dict, resolve_section
from prunerep.data.arrays import ArrayDataset, DataSplits
from prunerep.engine import OptimConfig, RuntimeConfig, TrainState
from prunerep.methods import Budget, MethodContext, get_method
from prunerep.methods.budget import top_k_masks, widths_from_ratio
from prunerep.methods.greg import (
    GRegHyper,
    fill_ratio,
    greg_budget,
    layer_ratios,
    magnitude_ratio,
    n_pruned,
    pick_lowest,
    schedule_bound,
    smooth_ratio,
)
from prunerep.methods.importance import filter_l1
from prunerep.models import get_model
from prunerep.pruning.groups import find_groups
from prunerep.pruning.soft_cost import SoftCostModel
from prunerep.runner.run import RunSpec, run_pruning
from prunerep.studies.greg import (
    GRegConfig,
    assumptions_table,
    column_labels,
    evidence,
    plan_runs,
    table1,
    table1_gains,
    trace_rise,
    trace_sentence,
    trace_slope,
)

RUNTIME = RuntimeConfig(device="cpu", channels_last=False, progress=False)


class TinyNet(nn.Module):
    """conv1 -> bn1 -> relu -> conv2 -> bn2 -> relu -> pool -> fc: two internal groups."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def _prepared(variant: str, ratios: dict[str, float], granularity: str = "filter", **reg):
    torch.manual_seed(0)
    model = TinyNet()
    example = torch.zeros(1, 3, 8, 8)
    groups = find_groups(model, example)
    method = get_method("greg", variant=variant, granularity=granularity, reg=reg)
    ctx = MethodContext(groups=groups, prunable=list(groups.select(method.prunable)), example_input=example,
                        budget=Budget(ratios=ratios), cost_model=None)
    method.prepare(model, ctx)
    return model, method, ctx


def _penalty_grads(model: nn.Module, method, step: int) -> dict[str, torch.Tensor]:
    """Gradients after the hook alone (task gradients zero): exactly the penalty term."""
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    method.after_backward(model, TrainState(step=step))
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _splits(n_train: int = 96, size: int = 8) -> DataSplits:
    def ds(n: int, seed: int) -> ArrayDataset:
        g = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
        return ArrayDataset(images, torch.arange(n) % 3, ("a", "b", "c"))

    return DataSplits(ds(n_train, 0), ds(32, 1), ds(32, 2), (0.5,) * 3, (0.25,) * 3, "fp", "synthetic")


# -- penalty targets and schedule ---------------------------------------------------------------


def test_greg1_penalises_only_the_l1_chosen_filters_and_grows_every_k_u():
    model, method, _ = _prepared("greg1", {"conv1": 0.5}, update_reg_interval=3, reg_granularity_prune=0.1,
                                 reg_upper_limit=10.0, mag_ratio_limit=1e9)
    w = model.conv1.weight.detach()
    expected_pruned = w.abs().mean((1, 2, 3)).argsort()[:4]
    pruned = torch.zeros(8, dtype=torch.bool)
    pruned[expected_pruned] = True
    for step in range(10):
        grads = _penalty_grads(model, method, step)
        lam = 0.1 * (step // 3 + 1)  # updates at iterations 0, 3, 6, 9 (the code's total_iter % K_u == 0)
        torch.testing.assert_close(grads["conv1.weight"][pruned], lam * w[pruned])
        assert torch.count_nonzero(grads["conv1.weight"][~pruned]) == 0   # kept filters: λ = 0
        for name in ("conv2.weight", "bn1.weight", "bn1.bias", "fc.weight"):
            assert torch.count_nonzero(grads[name]) == 0, name                 # other groups untouched
        assert method.lambdas()["conv1"][pruned].tolist() == pytest.approx([lam] * 4)


def test_penalize_norm_adds_lambda_times_gamma_and_beta_of_the_pruned_channels_only():
    model, method, _ = _prepared("greg1", {"conv1": 0.5}, update_reg_interval=1, reg_granularity_prune=0.1,
                                 reg_upper_limit=10.0, mag_ratio_limit=1e9, penalize_norm=True)
    with torch.no_grad():  # non-trivial BN parameters (defaults are gamma 1, beta 0)
        model.bn1.weight.copy_(torch.linspace(0.5, 1.5, 8))
        model.bn1.bias.copy_(torch.linspace(-0.4, 0.3, 8))
    pruned = method.layers[0].pruned
    for step in range(3):
        grads = _penalty_grads(model, method, step)
        lam = 0.1 * (step + 1)
        for name in ("weight", "bias"):
            value = getattr(model.bn1, name).detach()
            torch.testing.assert_close(grads[f"bn1.{name}"][pruned], lam * value[pruned])
            assert torch.count_nonzero(grads[f"bn1.{name}"][~pruned]) == 0
        assert torch.count_nonzero(grads["bn2.weight"]) == 0
    _, off, _ = _prepared("greg1", {"conv1": 0.5}, update_reg_interval=1, reg_granularity_prune=0.1)
    assert torch.count_nonzero(_penalty_grads(model, off, 0)["bn1.weight"]) == 0   # official: conv only


def test_greg1_ceiling_stop_then_stabilise_for_k_s_iterations():
    model, method, _ = _prepared("greg1", {"conv1": 0.5}, update_reg_interval=2, reg_granularity_prune=0.1,
                                 reg_upper_limit=0.35, mag_ratio_limit=1e9, stabilize_reg_interval=3)
    state = TrainState()
    stopped_at = None
    for step in range(20):
        state.step = step
        _penalty_grads(model, method, step)
        state.step = step + 1
        method.after_step(model, state)
        if state.stop:
            stopped_at = state.step
            break
    # λ = 0.1, 0.2, 0.3, 0.4 at iterations 0, 2, 4, 6: 0.4 > τ at iteration 6, then K_s = 3 more.
    assert method.summary()["layers"]["conv1"]["finished_at"] == 6
    assert method.summary()["layers"]["conv1"]["finish_reason"] == "ceiling"
    assert method.stabilize_start == 6
    assert stopped_at == 6 + 3 + 1
    assert method.lambdas()["conv1"].max() == pytest.approx(0.4)  # frozen while stabilising
    assert schedule_bound("greg1", method.hyper) >= stopped_at


def test_greg1_magnitude_ratio_stop_needs_every_layer():
    model, method, _ = _prepared("greg1", {"conv1": 0.5, "conv2": 0.5}, update_reg_interval=1,
                                 reg_granularity_prune=1e-3, reg_upper_limit=1.0, mag_ratio_limit=3000.0)
    with torch.no_grad():
        layer1 = method.layers[0]
        model.conv1.weight[layer1.pruned] *= 1e-4   # conv1's pruned filters are already ~0
    _penalty_grads(model, method, 0)
    s = method.summary()["layers"]
    assert s["conv1"]["mag_ratio"] > 3000 and s["conv2"]["mag_ratio"] < 3000
    assert s["conv1"]["finished_at"] is None     # conv1 alone is not enough (global condition)
    with torch.no_grad():
        model.conv2.weight[method.layers[1].pruned] *= 1e-4
    for step in range(1, 60):
        _penalty_grads(model, method, step)
        if method.stage != "update":
            break
    s = method.summary()["layers"]
    # conv2's smoothed ratio (momentum 0.9) climbs past the limit a few updates later; conv1 was
    # checked earlier in that same update, so it stops at the next one (as in the code).
    assert s["conv2"]["finish_reason"] == s["conv1"]["finish_reason"] == "magnitude ratio (all layers)"
    assert 1 < s["conv2"]["finished_at"] < 60
    assert s["conv1"]["finished_at"] == s["conv2"]["finished_at"] + 1 == method.stabilize_start


def test_magnitude_ratio_and_smoothing_hand_computed():
    w_abs = torch.tensor([0.01, 1.0, 3.0, 0.03])
    pruned = torch.tensor([True, False, False, True])
    assert magnitude_ratio(w_abs, pruned) == pytest.approx(2.0 / 0.02)
    assert magnitude_ratio(w_abs, torch.zeros(4, dtype=torch.bool)) == math.inf
    assert smooth_ratio(None, 7.0) == 7.0                        # first value taken as is
    assert smooth_ratio(10.0, 20.0, 0.9) == pytest.approx(11.0)  # 0.9 * 10 + 0.1 * 20


def test_n_pruned_and_pick_lowest_follow_the_code_rule():
    assert n_pruned(16, 0.9) == 15 and n_pruned(16, 0.95) == 15 and n_pruned(16, 1 - 1e-12) == 15
    assert n_pruned(10, 0.7) == 7            # no float fuzz: 0.7 * 10 = 7.000000000000001
    assert n_pruned(64, 0.32) == 21 and n_pruned(5, 0.0) == 0
    mask = pick_lowest(torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0]), 0.4)
    assert mask.tolist() == [False, True, False, True, False]


@pytest.mark.parametrize("kept_reg,expected_kept", [("code", -1e-4), ("paper", -5e-4)])
def test_greg2_uniform_rise_then_pick_by_l1_at_the_threshold(kept_reg, expected_kept):
    model, method, _ = _prepared("greg2", {"conv1": 0.5}, update_reg_interval=1, reg_granularity_pick=0.01,
                                 reg_upper_limit_pick=0.03, reg_granularity_prune=0.1, kept_reg=kept_reg)
    w0 = model.conv1.weight.detach().clone()
    for step in range(2):                      # λ = 0.01, 0.02 for every filter: no pick yet
        grads = _penalty_grads(model, method, step)
        torch.testing.assert_close(grads["conv1.weight"], 0.01 * (step + 1) * w0)
        assert method.layers[0].pruned is None
    # Change the L1 order before the pick: the pick must use the weights *at that moment*.
    with torch.no_grad():
        order = w0.abs().mean((1, 2, 3)).argsort()
        model.conv1.weight[order[:4]] *= 100.0   # the formerly smallest filters become the largest
    now = model.conv1.weight.detach().clone()
    _penalty_grads(model, method, 2)           # λ = 0.03 >= τ': pick
    layer = method.layers[0]
    assert layer.picked_at == 2
    assert layer.pruned.tolist() == pick_lowest(now.abs().mean((1, 2, 3)), 0.5).tolist()
    assert not (layer.pruned & layer.l1_pruned).any()      # the dense-weight L1 choice differed entirely
    grads = _penalty_grads(model, method, 3)   # next update: pruned grow by δλ, kept recover
    lam = method.lambdas()["conv1"]
    assert lam[layer.pruned].tolist() == pytest.approx([0.03 + 0.1] * 4)
    assert lam[~layer.pruned].tolist() == pytest.approx([expected_kept] * 4)
    torch.testing.assert_close(grads["conv1.weight"][~layer.pruned], expected_kept * now[~layer.pruned])


def test_greg2_stops_only_after_picking_and_schedule_bound_covers_it():
    hyper = dict(update_reg_interval=2, reg_granularity_pick=0.01, reg_upper_limit_pick=0.02,
                 reg_granularity_prune=0.1, reg_upper_limit=0.25, mag_ratio_limit=1e9, stabilize_reg_interval=1)
    model, method, _ = _prepared("greg2", {"conv1": 0.5}, **hyper)
    state = TrainState()
    for step in range(50):
        _penalty_grads(model, method, step)
        state.step = step + 1
        method.after_step(model, state)
        if state.stop:
            break
    s = method.summary()["layers"]["conv1"]
    # picks at the 2nd update (iteration 2); pruned λ 0.12, 0.22, 0.32 > 0.25 at iteration 8.
    assert s["picked_at"] == 2 and s["finished_at"] == 8 and s["finish_reason"] == "ceiling"
    assert state.step == 8 + 1 + 1
    assert schedule_bound("greg2", GRegHyper(**hyper)) >= state.step


def test_state_dict_round_trip_resumes_the_schedule():
    model, method, ctx = _prepared("greg2", {"conv1": 0.5}, update_reg_interval=1, reg_granularity_pick=0.01,
                                   reg_upper_limit_pick=0.02)
    for step in range(4):
        _penalty_grads(model, method, step)
    state = method.state_dict()
    fresh = get_method("greg", variant="greg2", reg=dict(update_reg_interval=1, reg_granularity_pick=0.01,
                                                         reg_upper_limit_pick=0.02))
    fresh.prepare(copy.deepcopy(model), ctx)
    fresh.load_state_dict(state)
    for a, b in zip(fresh.lambdas().values(), method.lambdas().values(), strict=True):
        assert torch.equal(a, b)
    assert fresh.layers[0].pruned.tolist() == method.layers[0].pruned.tolist()


# -- layer ratios as data -----------------------------------------------------------------------


def test_stage_ratios_give_the_papers_speedups_on_resnet56():
    model = get_model("resnet56", shortcut="A")
    example = torch.zeros(1, 3, 32, 32)
    groups = find_groups(model, example)
    cost = SoftCostModel.from_model(model, example, groups)
    dense = cost.dense_macs()
    internal = [g for g in groups if not g.residual]

    def speedup(stage_pr):
        ratios = greg_budget(model, stage_pr=stage_pr, input_shape=(1, 3, 32, 32)).ratios
        assert set(ratios) == {g.id for g in internal}      # only the first conv of each block
        widths = {g.id: g.channels for g in groups}
        widths.update(widths_from_ratio(internal, ratios))
        return dense / float(cost.macs(widths))

    # arXiv:2012.09243 Table 1 (r = 0.5, 0.7) and Table 2 (ResNet-56, 2.55x); FLOPs there are
    # conv + linear only, like ours, so the ratios must agree.
    assert round(speedup(fill_ratio([0, "r", "r", "r", 0], 0.5)), 2) == 1.99
    assert round(speedup(fill_ratio([0, "r", "r", "r", 0], 0.7)), 2) == 3.59
    assert round(speedup([0, 0.75, 0.75, 0.32, 0]), 2) == 2.55


def test_layer_ratios_vgg_ranges_resnet_stages_and_clear_errors():
    vgg = get_model("vgg19_bn", num_classes=100)
    per_layer = layer_ratios(vgg, layer_pr={"1-15": 0.7})
    values = list(per_layer.values())
    assert len(values) == 17 and values[0] == 0 and values[1:16] == [0.7] * 15 and values[16] == 0
    res = layer_ratios(get_model("resnet20", shortcut="A"), stage_pr=[0, 0.1, 0.2, 0.3, 0])
    assert res["conv1"] == 0 and res["layer2.1.conv2"] == 0.2 and res["fc"] == 0
    with pytest.raises(ValueError, match="stage_pr has 4 entries; this model needs 5"):
        layer_ratios(get_model("resnet20", shortcut="A"), stage_pr=[0, 0.5, 0.5, 0])
    with pytest.raises(ValueError, match="placeholder 'r'"):
        fill_ratio([0, "x", 0], 0.5)


def test_bad_config_values_raise_one_clear_error():
    with pytest.raises(ConfigError, match="update_reg_interval must be >= 1"):
        from_dict(GRegConfig, {"reg": {"update_reg_interval": 0}}, "greg")
    with pytest.raises(ConfigError, match=r"greg\.reg\.reg_upper_limt: unknown key"):
        from_dict(GRegConfig, {"reg": {"reg_upper_limt": 1.0}}, "greg")
    with pytest.raises(ValueError, match="fixed per-layer ratios"):
        model = TinyNet()
        groups = find_groups(model, torch.zeros(1, 3, 8, 8))
        get_method("greg").prepare(model, MethodContext(groups, list(groups), torch.zeros(1, 3, 8, 8),
                                                        Budget(macs_keep=0.5), None))


def test_table1_variants_add_ablation_runs_with_their_penalty_overrides():
    cfg = from_dict(GRegConfig, {"seeds": [0], "table1": {
        "ratios": [0.5, 0.9], "variants": [{"name": "bn", "reg": {"penalize_norm": True}, "ratios": [0.9],
                                            "seeds": [0, 1]}]},
        "figure1": {"enabled": False}}, "greg")
    runs, _ = plan_runs(cfg, {"resnet56": get_model("resnet56")}, "cifar10", (1, 3, 32, 32))
    extra = [p for p in runs if p.tags["variant"] == "greg1:bn"]
    assert [(p.tags["ratio"], p.seed) for p in extra] == [(0.9, 0), (0.9, 1)]
    assert all(p.hyper.variant == "greg1" and p.hyper.reg.penalize_norm is True for p in extra)
    assert {p.label for p in extra} == {"GReg-1 + BN penalty (ours)@r=0.9"}
    main = [p for p in runs if p.tags["variant"] == "greg1"]
    assert len(main) == 2 and all(p.hyper.reg.penalize_norm is False for p in main)   # official: conv only
    assert {p.label for p in main} == {"GReg-1@r=0.5", "GReg-1@r=0.9"}
    with pytest.raises(ConfigError, match="lower-case"):
        from_dict(GRegConfig, {"table1": {"variants": [{"name": "Bad Name", "label": "x", "ratios": [0.9]}]}}, "greg")


def test_column_labels_name_the_bn_penalty_as_ours_wherever_it_is_configured():
    # The profile's own GReg-1 with the BN penalty is ours too, and so is every table header.
    cfg = from_dict(GRegConfig, {"reg": {"penalize_norm": True}, "table1": {"ratios": [0.9]}}, "greg")
    assert column_labels(cfg) == {"l1": "L1 (one-shot)", "greg1": "GReg-1 + BN penalty (ours)"}
    frame = pd.DataFrame([{"table": "table1", "ratio": 0.9, "variant": v, "seed": 0, "test_acc": a,
                           "speedup_macs": 11.6, "test_acc_before_finetune": 10.0}
                          for v, a in (("l1", 50.0), ("greg1", 55.0))])
    headers = " ".join(table1(cfg, frame, pd.DataFrame()).columns)
    assert "GReg-1 + BN penalty (ours) (%)" in headers and "GReg-1 (%)" not in headers
    typed = {"reg": {"penalize_norm": False}, "table1": {"ratios": [0.9], "variants": [
        {"name": "bn", "label": "GReg-1 with BN", "reg": {"penalize_norm": True}, "ratios": [0.9]}]}}
    with pytest.raises(ValueError, match=r"must say '\(ours\)'"):
        column_labels(from_dict(GRegConfig, typed, "greg"))
    same = {"table1": {"ratios": [0.9], "variants": [{"name": "again", "ratios": [0.9]}]}}
    with pytest.raises(ValueError, match="share a label"):
        column_labels(from_dict(GRegConfig, same, "greg"))


def test_default_plan_answers_the_claims_with_the_official_penalty_and_no_calibration_run():
    cfg = resolve_section("greg", profile="default")
    dense = {"resnet56": get_model("resnet56", shortcut="A"), "resnet20": get_model("resnet20", shortcut="A")}
    runs, skipped = plan_runs(cfg, dense, "cifar10", (1, 3, 32, 32))
    by = {}
    for p in runs:
        by.setdefault((p.tags["table"], p.tags["variant"], p.model), []).append((p.tags["ratio"], p.seed))
    large = [(r, s) for r in (0.9, 0.925, 0.95) for s in (1, 2, 3)]
    # The claim's column (official conv-only penalty) and L1: 3 seeds at every ratio of the claim.
    assert sorted(by[("table1", "greg1", "resnet56")]) == sorted(by[("table1", "l1", "resnet56")]) == large
    assert all(not p.hyper.reg.penalize_norm for p in runs if p.tags["variant"] == "greg1")
    # Ours (BN penalty): an ablation at one ratio, paired with the same seeds.
    assert sorted(by[("table1", "greg1:bn_penalty", "resnet56")]) == [(0.95, s) for s in (1, 2, 3)]
    # Table 2's comparisons on ResNet-20, paired seeds for each of the three methods; Figure 1's slope.
    for m in ("l1", "greg1", "greg2"):
        assert sorted(by[("table2", m, "resnet20")]) == [(None, s) for s in (1, 2, 3)]
    assert len(by[("figure1", "greg2", "resnet56")]) == 3
    assert not any(cfg.calibration.covers(p.model, p.tags["ratio"], p.seed) for p in runs)
    assert cfg.calibration.covers("resnet56", 0.9, 0)    # ... which is where the schedule was chosen
    assert "resnet56_cifar10" in {s["setting"] for s in skipped}
    # The budget: 33 runs (the stage's time estimate in params.yaml is per run), labels unique.
    assert len(runs) == 33 and len({(p.model, p.label, p.seed) for p in runs}) == 33
    # Longest first: ResNet-56 GReg runs lead, L1 and the smaller net's runs close the pool.
    assert runs[0].model == "resnet56" and runs[0].method == "greg" and runs[-1].model == "resnet20"


def _t1_frame(rows: list[tuple[str, float, int, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"table": "table1", "setting": f"r={r:g}", "variant": v, "ratio": r, "seed": s,
                          "test_acc": a, "test_acc_before_finetune": 10.0, "speedup_macs": 11.6}
                         for v, r, s, a in rows])


def test_evidence_judges_the_official_column_and_leaves_the_calibration_runs_out():
    cfg = from_dict(GRegConfig, {"seeds": [0, 1, 2, 3], "table1": {"ratios": [0.9], "variants": [
        {"name": "bn_penalty", "reg": {"penalize_norm": True}, "ratios": [0.9]}]},
        "calibration": {"model": "resnet56", "ratio": 0.9, "seeds": [0], "chose": "the schedule"}}, "greg")
    l1 = [50.0, 50.0, 51.0, 49.0]
    official = [70.0, 50.5, 51.0, 50.2]      # seed 0 (the calibration run) would dominate the mean
    ours = [60.0, 55.0, 57.0, 53.0]
    frame = _t1_frame([(v, 0.9, s, a) for v, accs in (("l1", l1), ("greg1", official), ("greg1:bn_penalty", ours))
                       for s, a in enumerate(accs)])
    ev = [e for e in evidence(cfg, frame, "budget") if e.claim_id == "greg.table1_gain"]
    assert len(ev) == 1
    e = ev[0]
    assert e.n == 3 and e.interval.mean == pytest.approx((0.5 + 0.0 + 1.2) / 3)   # seeds 1-3, official column
    assert e.test.startswith("GReg-1 − one-shot L1") and "(ours)" not in e.test
    assert "Seed 0 left out" in e.note and "not tuned" in e.note
    assert "Ablation, not the paper's method: GReg-1 + BN penalty (ours) − L1 (one-shot) = +5.00" in e.note
    gains = {g["column"]: g for g in table1_gains(cfg, frame)}
    assert gains["greg1"]["n"] == 3 and gains["greg1:bn_penalty"]["mean"] == pytest.approx(5.0)
    small = [e for e in evidence(cfg, frame, "budget") if e.claim_id == "greg.table1_small_ratios"]
    assert [x.verdict for x in small] == ["not run at this budget"]


def test_assumptions_table_is_generated_from_the_configs_and_the_runs():
    cfg, paper_cfg = resolve_section("greg", profile="default"), resolve_section("greg", profile="paper")
    frame = _t1_frame([(v, 0.95, s, a) for v, accs in (("l1", (40, 41, 42)), ("greg1", (41, 41, 43)),
                                                         ("greg1:bn_penalty", (48, 50, 49)))
                       for s, a in zip((1, 2, 3), accs, strict=True)])
    t = assumptions_table(cfg, paper_cfg, frame, pd.DataFrame(), "our data", {"resnet56": 75.0})
    rows = {r["the paper's"]: r for r in t.to_dict("records")}
    bn = rows["λ on the pruned filters' conv weights only"]
    assert bn["measured effect"].startswith("r = 0.95: GReg-1 + BN penalty (ours) − GReg-1 = +7.33")  # (7 + 9 + 6) / 3
    assert "resnet56, r = 0.9, seed 0" in rows["hyper-parameters chosen on validation"]["ours"]
    schedule = next(r for k, r in rows.items() if k.startswith("δλ 0.0001 every K_u = 10"))   # the paper profile's
    assert schedule["ours"].startswith("δλ 0.02 every K_u = 1 ")
    assert "dense resnet56 at 75.00 %" in t["ours"].iloc[-1]


def test_figure1_slope_and_rise_are_computed_from_the_trace():
    trace = [{"iteration": i, "norm_std": {"a": 0.1 + 0.01 * i, "b": 0.3 - 0.002 * i}} for i in (0, 5, 10)]
    assert trace_slope(trace) == pytest.approx((0.01 - 0.002) / 2)     # mean over the two layers
    assert trace_rise(trace) == {"layers": 2, "rising": 1, "first": 0, "last": 10}
    assert trace_sentence(trace) == "std/mean rose in 1 of 2 layers (iteration 0 → 10)"
    assert math.isnan(trace_slope(trace[:1]))


# -- same filters as one-shot L1; end-to-end runs -------------------------------------------------


def test_greg1_removes_exactly_the_filters_one_shot_l1_removes():
    torch.manual_seed(3)
    dense = get_model("resnet20", shortcut="A")
    budget = greg_budget(dense, stage_pr=[0, 0.5, 0.7, 0.9, 0], input_shape=(1, 3, 32, 32))
    model, method, ctx = None, get_method("greg", variant="greg1"), None
    model = copy.deepcopy(dense)
    example = torch.zeros(1, 3, 32, 32)
    groups = find_groups(model, example)
    prunable = list(groups.select(method.prunable))
    ctx = MethodContext(groups, prunable, example, budget, None)
    method.prepare(model, ctx)
    l1_keep = top_k_masks(filter_l1(dense, prunable), widths_from_ratio(prunable, budget.ratios))
    for layer in method.layers:
        assert layer.pruned.tolist() == (~l1_keep[layer.name]).tolist(), layer.name
    # And the networks left after removal (no regularisation steps) are identical.
    greg_net = method.finalize(model, ctx)
    l1 = get_method("l1", scope="internal")
    l1_net = copy.deepcopy(dense)
    l1_groups = find_groups(l1_net, example)
    l1_net = l1.finalize(l1_net, MethodContext(l1_groups, list(l1_groups.select(l1.prunable)), example, budget,
                                               SoftCostModel.from_model(l1_net, example, l1_groups)))
    for (ka, va), (kb, vb) in zip(greg_net.state_dict().items(), l1_net.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka


def test_unstructured_mode_leaves_exact_zeros_that_survive_finetuning():
    torch.manual_seed(0)
    ratios = {"conv1": 0.5, "conv2": 0.75, "fc": 0.3}
    reg = dict(update_reg_interval=1, reg_granularity_prune=0.05, reg_upper_limit=0.2, stabilize_reg_interval=2)
    spec = RunSpec(method="greg", budget=Budget(ratios=ratios),
                   hyper=dict(variant="greg1", granularity="weight", reg=reg, prune_optim=dict(epochs=1, lr=0.01, momentum=0.9, nesterov=False, weight_decay=5e-4, schedule="constant")),
                   finetune=OptimConfig(epochs=2, lr=0.5, schedule="constant", weight_decay=5e-4),
                   batch_size=16, runtime=RUNTIME)
    res = run_pruning(spec, TinyNet(), _splits())
    assert res.method_summary["completed"]
    for name, r in ratios.items():
        w = getattr(res.model, name).weight
        assert int((w == 0).sum()) == n_pruned(w.numel(), r), name
    # The kept weights did train during fine-tuning (the zeros are not a frozen network).
    assert res.histories["finetune"][-1]["step"] > 0
    assert res.method_summary["sparsity_pruned_layers"] == pytest.approx(
        sum(n_pruned(getattr(res.model, n).weight.numel(), r) for n, r in ratios.items())
        / sum(getattr(res.model, n).weight.numel() for n in ratios))


@pytest.mark.parametrize("variant", ["greg1", "greg2"])
def test_filter_mode_end_to_end_prunes_to_the_requested_widths(variant):
    reg = dict(update_reg_interval=1, reg_granularity_prune=0.1, reg_granularity_pick=0.01,
               reg_upper_limit_pick=0.02, reg_upper_limit=0.3, stabilize_reg_interval=2)
    spec = RunSpec(method="greg", budget=Budget(ratios={"conv1": 0.5, "conv2": 0.25}),
                   hyper=dict(variant=variant, reg=reg), finetune=OptimConfig(epochs=1, lr=0.05),
                   batch_size=16, runtime=RUNTIME)
    res = run_pruning(spec, TinyNet(), _splits())
    assert res.widths == {"conv1": 4, "conv2": 6}
    assert res.method_summary["completed"]
    assert res.model(torch.zeros(2, 3, 8, 8)).shape == (2, 3)
    assert res.histories["prune"][-1]["greg_stabilizing"] == 1.0
