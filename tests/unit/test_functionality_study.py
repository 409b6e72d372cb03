"""The functionality study: planning, records -> tables, claim 1's duplicates, the evidence, the
compensation measure and every figure, on a tiny ResNet-20 and a synthetic data set (no stage run)."""

from __future__ import annotations

import math

import matplotlib
import pytest
import torch

from prunerep.config import ConfigError, from_dict
from prunerep.data.arrays import ArrayDataset, DataSplits
from prunerep.methods.functionality import class_gradients, sample_indices
from prunerep.models import get_model
from prunerep.models.checkpoint import load_model, save_model
from prunerep.reporting.stats import VERDICTS, mean_interval, paired_difference
from prunerep.runner import RunRecord, run_pruning
from prunerep.studies import functionality as fn
from prunerep.studies.functionality import FunctionalityConfig

matplotlib.use("Agg")

SHAPE = (1, 3, 8, 8)
BASE = {
    "settings": {"r20": {"model": "resnet20", "scope": "internal", "layers": "1-3", "ratios": [0.5],
                         "retrain_ratios": [0.5]}},
    "seeds": [0, 1, 2],
    "method": {"images": 12},
    "variants": [{"name": "fold", "label": "functionality + fold (ours)", "hyper": {"fold": True}}],
    "baselines": ["l1", "random"],
    "finetune": {"epochs": 1, "max_steps": 1, "lr": 0.01},
    "eval_images": 8,
    "batch_size": 8,
    "figures": {"setting": "r20", "layers": [1, 2], "ratio": 0.5, "filters": 6, "compensation_layer": 3,
                "compensation_filters": 3, "am": {"steps": 2}},
    "runtime": {"device": "cpu", "channels_last": False, "progress": False},
}


def splits() -> DataSplits:
    def ds(n: int, seed: int) -> ArrayDataset:
        g = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
        return ArrayDataset(images, torch.arange(n) % 3, ("a", "b", "c"))

    return DataSplits(ds(32, 0), ds(24, 1), ds(16, 2), (0.5,) * 3, (0.25,) * 3, "fp", "synthetic")


def dense_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model("resnet20", shortcut="A", num_classes=3, in_channels=3).eval()


def record(spec, res, path) -> RunRecord:
    save_model(res.model, path)
    return RunRecord(slug="functionality", label=res.label, method=res.method, model=spec.model, seed=spec.seed,
                     budget={"describe": res.budget, "macs_keep": None}, dense_macs=res.dense_macs,
                     dense_params=res.dense_params, macs=res.macs, params=res.params, widths=res.widths,
                     val_acc=res.val_acc, test_acc=res.test_acc, val_acc_before_finetune=res.val_acc_before_finetune,
                     test_acc_before_finetune=res.test_acc_before_finetune, selection=res.selection,
                     phase_time_s=res.phase_time_s, tags=dict(spec.tags), summary=res.method_summary,
                     model_path=str(path))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    cfg = from_dict(FunctionalityConfig, BASE)
    dense = dense_model()
    data = splits()
    runs, skipped = fn.plan(cfg, {"resnet20": dense}, SHAPE)
    out = tmp_path_factory.mktemp("functionality")
    records = [record(spec, run_pruning(spec, dense, data), out / f"{i}.pt") for i, spec in enumerate(runs)]
    return cfg, dense, data, runs, skipped, records


def test_parse_layers():
    assert fn.parse_layers("all") is None
    assert fn.parse_layers("1,8-13") == [1, 8, 9, 10, 11, 12, 13]
    assert fn.parse_layers("3, 1-2,2") == [1, 2, 3]
    for bad in ("1-", "0", "4-2", "a"):
        with pytest.raises(ValueError):
            fn.parse_layers(bad)


def test_figures_must_show_a_pruned_layer_at_a_ratio_run_with_and_without_retraining():
    with pytest.raises(ConfigError, match="figures.ratio"):
        from_dict(FunctionalityConfig, {**BASE, "figures": {**BASE["figures"], "ratio": 0.25}})
    with pytest.raises(ConfigError, match="layer 5"):
        from_dict(FunctionalityConfig, {**BASE, "figures": {**BASE["figures"], "compensation_layer": 5}})


def test_plan_runs_deterministic_baselines_once_without_retraining():
    cfg = from_dict(FunctionalityConfig, {**BASE, "baselines": ["l1", "fpgm", "random"],
                                          "settings": {**BASE["settings"], "off": {"model": "resnet56", "enabled": False}}})
    runs, skipped = fn.plan(cfg, {"resnet20": dense_model()}, SHAPE)
    count = {}
    for r in runs:
        key = (r.tags["variant"], r.tags["retrain"])
        count[key] = count.get(key, 0) + 1
    assert count == {("functionality", True): 3, ("l1", True): 3, ("fpgm", True): 3, ("random", True): 3,
                     ("functionality", False): 3, ("l1", False): 1, ("fpgm", False): 1, ("random", False): 3,
                     ("functionality:fold", False): 3}
    assert skipped == [{"setting": "off", "model": "resnet56", "reason": "disabled at this profile"}]
    assert len({(r.label, r.seed) for r in runs}) == len(runs)
    assert all(r.finetune is not None and r.finetune.batch_size == r.batch_size == cfg.batch_size == 8
               for r in runs if r.tags["retrain"])
    assert all(r.finetune is None for r in runs if not r.tags["retrain"])
    # the same widths for every column: one budget on the three internal groups of the first stage
    budgets = {tuple(sorted(r.budget.ratios.items())) for r in runs}
    assert budgets == {(("layer1.0.conv1", 0.5), ("layer1.1.conv1", 0.5), ("layer1.2.conv1", 0.5))}
    fold = [r for r in runs if r.tags["variant"] == "functionality:fold"]
    assert all(r.hyper.fold and r.hyper.seed == r.seed and r.hyper.scope == "internal" for r in fold)


def test_descriptor_and_evaluation_batches_are_disjoint_and_as_recorded(study):
    cfg, _, data, _, _, records = study
    for rec in records:
        if rec.method == "functionality":
            assert rec.summary["batch_indices"] == sample_indices(len(data.val), cfg.method.images, rec.seed).tolist()
    for seed in cfg.seeds:
        ev = set(fn.eval_indices(len(data.val), cfg.method.images, seed, cfg.eval_images).tolist())
        assert len(ev) == cfg.eval_images
        assert not ev & set(sample_indices(len(data.val), cfg.method.images, seed).tolist())


def test_recorded_kept_sets_are_the_channels_the_pruned_networks_hold(study):
    cfg, dense, _, _, _, records = study
    chosen = fn.chosen_groups(dense, cfg.settings["r20"], SHAPE)
    for rec in records:
        if rec.tags["retrain"] or rec.tags["variant"] not in ("functionality", "l1", "random"):
            continue
        kept = rec.summary["kept"]
        pruned, _ = load_model(rec.model_path)
        for g in chosen:
            w = pruned.get_submodule(g.id).weight
            assert torch.equal(w, dense.get_submodule(g.id).weight[kept[g.id]]), (rec.label, g.id)


def test_tables_evidence_and_figures(study):
    cfg, dense, data, _, _, records = study
    df = fn.results_frame(records, cfg)
    val, val_labels = fn.validation_set(data)
    assert torch.equal(val, fn.validation_images(data)) and val_labels.tolist() == data.val.labels.tolist()
    dup = fn.duplicates_frame(cfg, records, {"resnet20": dense}, val, SHAPE, val_labels)
    assert set(dup.method) == {"dense", "l1", "random", "functionality"}
    assert (dup[dup.method == "dense"].pairs >= dup[dup.method == "l1"].pairs.max()).all()
    # claim 1's dense count is the class-gradient correlation of the dense net on the seed's evaluation batch
    chosen = fn.chosen_groups(dense, cfg.settings["r20"], SHAPE)
    idx = fn.eval_indices(len(val), cfg.method.images, 1, cfg.eval_images)
    grads = class_gradients(dense, chosen, val[idx], val_labels[idx], 3)
    want = 0
    for g in chosen:
        v = grads[g.id] - grads[g.id].mean(1, keepdim=True)
        c = (v @ v.t()) / torch.outer(v.norm(dim=1), v.norm(dim=1)).clamp_min(1e-300)
        want += int((torch.triu(c, diagonal=1) >= cfg.duplicate_threshold - 1e-12).sum())
    got = dup[(dup.method == "dense") & (dup.seed == 1)].pairs
    assert list(got) == [want]
    dense_acc = {"resnet20": 40.0}
    evs = fn.evidence(cfg, df, dup, dense_acc, "budget")
    ids = [e.claim_id for e in evs]
    assert ids == ["functionality.l1_keeps_duplicates"] * 2 + ["functionality.vs_l1_no_retrain",
                   "functionality.no_retrain_drop", "functionality.retrain_recovers_l1",
                   "functionality.retrain_gain_smaller"]
    assert all(e.verdict in VERDICTS for e in evs)
    # claim 2's interval by hand: ours per seed minus L1's one seed-independent value
    no = df[~df.retrain]
    ours = dict(zip(no[no.variant == "functionality"].seed, no[no.variant == "functionality"].test_acc, strict=True))
    (l1,) = no[no.variant == "l1"].test_acc
    want = paired_difference(ours, {s: l1 for s in ours})
    assert evs[2].interval == want
    assert evs[3].interval == mean_interval([40.0 - v for v in ours.values()])
    # claim 3: the retraining runs start from the same networks as the runs without retraining
    rt = df[df.retrain]
    pre = dict(zip(rt[rt.variant == "functionality"].seed, rt[rt.variant == "functionality"].test_acc_before_finetune, strict=True))
    assert pre == ours
    from prunerep.reporting.paper import paper_numbers

    acc = fn.accuracy_table(cfg, df, dense_acc, paper_numbers("functionality", dataset="cifar10"))
    assert set(acc["paper, no retraining (%)"]) == {"—"}   # resnet20 is not the paper's network
    for table in (acc, fn.duplicates_table(cfg, dup),
                  fn.assumptions_table(cfg, cfg, df, "synthetic data", dense_acc)):
        assert len(table)
    comp, nets = fn.compensation(cfg, records, {"resnet20": dense}, val, SHAPE)
    assert set(comp.method) == {"l1", "functionality"} and set(nets) == {"l1", "functionality"}
    assert comp.cosine.between(-1 - 1e-9, 1 + 1e-9).all() and not comp.cosine.isna().any()
    assert len(fn.compensation_table(cfg, comp)) == 2 and fn.compensation_gap(comp).n == 3
    metrics = fn.metrics("t", len(records), dense_acc, df, dup, fn.compensation_gap(comp))
    assert metrics["r20/r=0.5/l1/no_retrain/test_acc_mean"] == l1 and metrics["runs"] == len(records)
    assert metrics["r20/r=0.5/random/duplicate_pairs_mean"] == float(dup[dup.method == "random"].pairs.mean())
    assert metrics["compensation/cosine_gap_functionality_minus_l1"] == fn.compensation_gap(comp).mean
    import matplotlib.pyplot as plt

    bounds = fn.input_bounds(data)
    layer_of = fn.layer_groups(dense, cfg.settings["r20"], SHAPE)
    info = fn.find_record(records, "r20", "functionality", 0.5, False, 0).summary["groups"]
    g = layer_of[1]
    figs = [fn.am_grid(dense, g, info[g.id]["labels"], info[g.id]["kept"], 6, SHAPE[1:], cfg.figures.am, bounds, "t"),
            fn.similarity_figure({g.id: torch.eye(g.channels, dtype=torch.float64)}, {g.id: info[g.id]["labels"]},
                                 {g.id: "layer 1"}, "t"),
            fn.accuracy_figure(df, cfg, "r20", False, 40.0, "t"),
            fn.compensation_figure(cfg, nets, comp, dense, SHAPE[1:], bounds, SHAPE, "t")]
    for fig in figs:
        plt.close(fig)


def test_grid_order_shows_whole_clusters_largest_first():
    labels = [0, 1, 1, 2, 1, 2, 3]
    assert fn.grid_order(labels, [2, 5], 5) == [(1, 1, False), (2, 1, True), (4, 1, False), (3, 2, False), (5, 2, True)]
    assert [c for _, c, _ in fn.grid_order(labels, [], 4)] == [1, 1, 1]
    assert math.isclose(len(fn.grid_order(labels, [], 100)), 7)


def test_claim_3_recovered_share_and_retraining_gains_by_hand():
    import pandas as pd

    cfg = from_dict(FunctionalityConfig, BASE)
    rows = []
    # L1 loses 20 points (dense 60 -> 40) and recovers 15, 12, 9; ours loses 5 and recovers 2, 3, 1
    for seed, (l1_after, f_after) in enumerate([(55.0, 57.0), (52.0, 58.0), (49.0, 56.0)]):
        rows.append({"setting": "r20", "variant": "l1", "ratio": 0.5, "retrain": True, "seed": seed,
                     "test_acc_before_finetune": 40.0, "test_acc": l1_after})
        rows.append({"setting": "r20", "variant": "functionality", "ratio": 0.5, "retrain": True, "seed": seed,
                     "test_acc_before_finetune": 55.0, "test_acc": f_after})
    df = pd.DataFrame(rows)
    dup = pd.DataFrame(columns=["setting", "ratio", "seed", "method", "pairs", "max_similarity"])
    evs = {e.claim_id: e for e in fn.evidence(cfg, df, dup, {"resnet20": 60.0}, "b")}
    assert evs["functionality.retrain_recovers_l1"].interval == mean_interval([15 / 20, 12 / 20, 9 / 20])
    want = paired_difference({0: 15.0, 1: 12.0, 2: 9.0}, {0: 2.0, 1: 3.0, 2: 1.0})
    assert evs["functionality.retrain_gain_smaller"].interval == want
    assert evs["functionality.retrain_gain_smaller"].verdict == "supported"
    # without retraining runs, claim 2 reads the retraining runs' accuracy right after pruning
    assert evs["functionality.vs_l1_no_retrain"].interval == mean_interval([15.0, 15.0, 15.0])


def test_the_functionality_column_is_labelled_by_the_descriptor_that_ran():
    labels = {d: fn.column_labels(from_dict(FunctionalityConfig, {**BASE, "method": {"descriptor": d},
                                                                  "duplicate_descriptor": dup}))["functionality"]
              for d, dup in (("response", "class_gradient"), ("activation_max", "class_gradient"),
                             ("class_gradient", "response"))}
    assert labels == {"response": "functionality (response descriptor, ours)",
                      "activation_max": "functionality (activation-maximisation descriptor)",
                      "class_gradient": "functionality (class-gradient descriptor, after CAPTOR, ours)"}


def test_claim_1_must_not_count_duplicates_with_the_descriptor_the_method_clusters_by():
    with pytest.raises(ConfigError, match="circular"):
        from_dict(FunctionalityConfig, {**BASE, "duplicate_descriptor": "response"})
