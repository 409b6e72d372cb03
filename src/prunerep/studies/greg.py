"""GReg's study: Table 1, Table 2 and Figure 1 of the paper (notebooks/greg.ipynb).

The algorithm is :mod:`prunerep.methods.greg`; this module plans the table rows (the same
pruned filters for one-shot L1 and GReg-1), turns run records into the paper's tables and
figure, and the claims' evidence.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from prunerep.config import from_dict, register_section
from prunerep.data import SubsetConfig
from prunerep.engine import OptimConfig, RuntimeConfig
from prunerep.methods.base import Budget
from prunerep.methods.baselines import OneShotHyper
from prunerep.methods.greg import (
    Granularity,
    GRegHyper,
    GRegMethodHyper,
    _prune_optim_default,
    fill_ratio,
    greg_budget,
)
from prunerep.reporting.ledger import Evidence, load_claims
from prunerep.reporting.stats import fmt_mean_std, paired_difference
from prunerep.runner import LatencySettings, RunRecord, RunSpec

METHOD_LABELS = {"l1": "L1 (one-shot)", "greg1": "GReg-1", "greg2": "GReg-2"}


def method_label(method: str, reg: GRegHyper) -> str:
    """What ran, named honestly: with the BN penalty GReg is a variant of ours, not the paper's."""
    base = METHOD_LABELS[method]
    return f"{base} + BN penalty (ours)" if method != "l1" and reg.penalize_norm else base


def _finetune_default() -> OptimConfig:
    # README CIFAR fine-tuning: 120 epochs, lr 0.01 -> 0.001 @60 -> 1e-4 @90, wd 5e-4.
    return OptimConfig(epochs=120, lr=0.01, momentum=0.9, nesterov=False, weight_decay=5e-4,
                       schedule="multistep", milestones=[60, 90])


@dataclass(frozen=True)
class GRegSetting:
    """One setting of the paper's tables: dense model, data, layer ratios, recipe overrides."""

    model: str                                            # key of pretrain.models (the dense checkpoint)
    dataset: str = "cifar10"                              # data.dataset it needs; skipped otherwise
    stage_pr: list[float | str] = field(default_factory=list)   # ResNets: stem, stages..., classifier
    layer_pr: dict[str, float] = field(default_factory=dict)    # VGG: {"1-15": 0.7} by conv/linear index
    granularity: Granularity = "filter"
    methods: list[str] = field(default_factory=lambda: ["l1", "greg1", "greg2"])
    paper_rows: dict[str, str] = field(default_factory=dict)    # our method -> paper_results.yaml row
    input_size: int = 32                                  # example input side for tracing (224: ImageNet)
    reg: dict[str, Any] = field(default_factory=dict)           # overrides of greg.reg
    prune_optim: dict[str, Any] = field(default_factory=dict)   # overrides of greg.prune_optim
    finetune: dict[str, Any] = field(default_factory=dict)      # overrides of greg.finetune
    batch_size: int | None = None                         # None: greg.batch_size

    def __post_init__(self) -> None:
        if bool(self.stage_pr) == bool(self.layer_pr):
            raise ValueError(f"setting for {self.model!r}: give exactly one of stage_pr or layer_pr")
        for m in self.methods:
            if m not in METHOD_LABELS:
                raise ValueError(f"methods: {m!r} is not one of {sorted(METHOD_LABELS)}")


@dataclass(frozen=True)
class Table1Variant:
    """An extra GReg-1 column of Table 1 with other penalty settings (an ablation), e.g. the
    official conv-only penalty where the profile's GReg-1 also penalises BN."""

    name: str                                             # short id: variant column "greg1:<name>"
    label: str                                            # column title
    reg: dict[str, Any] = field(default_factory=dict)     # overrides of greg.reg
    ratios: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9_]+", self.name):
            raise ValueError(f"table1.variants: name {self.name!r} must be lower-case letters, digits or _")
        if not self.ratios or not self.seeds:
            raise ValueError(f"table1.variants.{self.name}: give ratios and seeds")


@dataclass(frozen=True)
class Table1Config:
    """Table 1: the same pruned filters, one-shot L1 vs GReg-1, at uniform ratios r."""

    ratios: list[float] = field(default_factory=lambda: [0.5, 0.7, 0.9, 0.925, 0.95])
    stage_pr: list[float | str] = field(default_factory=lambda: [0, "r", "r", "r", 0])  # "r" = the row's ratio
    methods: list[str] = field(default_factory=lambda: ["l1", "greg1"])
    seeds: list[int] | None = None                        # None: greg.seeds
    seeds_by_ratio: dict[str, list[int]] = field(default_factory=dict)  # e.g. {"0.9": [0, 1, 2]}: more seeds where the claim is
    variants: list[Table1Variant] = field(default_factory=list)        # extra GReg-1 columns (ablations)

    def seeds_for(self, ratio: float, default: Sequence[int]) -> list[int]:
        """Seeds of the row with ratio `ratio` (keys of `seeds_by_ratio` compared as numbers)."""
        for key, seeds in self.seeds_by_ratio.items():
            if abs(float(key) - ratio) < 1e-9:
                return list(seeds)
        return list(self.seeds or default)


@dataclass(frozen=True)
class Figure1Config:
    """Figure 1: GReg-2's uniform rising penalty on the dense net, traced until every layer picks."""

    enabled: bool = True
    stage_pr: list[float | str] = field(default_factory=lambda: [0, 0.75, 0.75, 0.32, 0])
    reg: dict[str, Any] = field(default_factory=dict)     # overrides of greg.reg for this run
    trace_every: int = 100                                # iterations between two traced points
    layer: str = "layer2.3.conv1"                         # row 2: its normalised filter L1 norms
    snapshots: int = 4                                    # row 2: number of iterations shown


@register_section("greg")
@dataclass(frozen=True)
class GRegConfig:
    """The `greg` section of params.yaml."""

    model: str = "resnet56"                                # key of pretrain.models (the dense checkpoint)
    seeds: list[int] = field(default_factory=lambda: [0])  # claims are reported as mean ± std over these
    workers: int = 1                                       # independent runs side by side
    subset: SubsetConfig = SubsetConfig()                  # class-stratified data subsets (fast profiles)
    batch_size: int = 128                                  # README: 128 for ResNet-56, 256 for VGG-19
    reg: GRegHyper = GRegHyper()
    prune_optim: OptimConfig = field(default_factory=_prune_optim_default)
    finetune: OptimConfig = field(default_factory=_finetune_default)
    runtime: RuntimeConfig = RuntimeConfig()
    table1: Table1Config = Table1Config()
    table2: dict[str, GRegSetting] = field(default_factory=dict)
    figure1: Figure1Config = Figure1Config()
    latency: LatencySettings = LatencySettings()

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")




def _merged(base: Any, overrides: Mapping[str, Any], cls: type, path: str) -> Any:
    return from_dict(cls, {**dataclasses.asdict(base), **overrides}, path) if overrides else base


def run_spec(method: str, budget: Budget, *, granularity: Granularity, reg: GRegHyper, prune_optim: OptimConfig,
             finetune: OptimConfig | None, seed: int, batch_size: int, runtime: RuntimeConfig, label: str,
             model: str, tags: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> RunSpec:
    """The `RunSpec` of one row: ``l1`` (one-shot, inside residual branches) or ``greg1``/``greg2``."""
    if method == "l1":
        # One-shot L1 on the same groups (Li et al. 2017 with GReg's scope: inside residual branches).
        hyper: Any = OneShotHyper(scope="internal")
    else:
        hyper = GRegMethodHyper(variant=method, granularity=granularity, reg=reg, prune_optim=prune_optim,
                                **(extra or {}))
    return RunSpec(method="l1" if method == "l1" else "greg", budget=budget, hyper=hyper, finetune=finetune,
                   seed=seed, batch_size=batch_size, runtime=runtime, label=label, model=model, tags=dict(tags))


def plan_runs(cfg: GRegConfig, dense_models: Mapping[str, nn.Module], dataset: str,
              example_shape: tuple[int, ...]) -> tuple[list[RunSpec], list[dict]]:
    """Every run of the notebook (Table 1, Table 2, Figure 1), longest first.

    Args:
        cfg: the resolved `greg` section.
        dense_models: dense nets by pretrain key (only used to map ratios onto groups).
        dataset: ``data.dataset`` of this pipeline; Table 2 settings needing another are skipped.
        example_shape: ``(1, C, H, W)`` of the data, at which the ratios are mapped onto groups.

    Returns:
        (runs, skipped) where skipped lists the Table 2 settings not runnable here, with why.
    """
    runs: list[RunSpec] = []
    skipped: list[dict] = []
    if cfg.table1.ratios:
        dense = dense_models[cfg.model]
        # Columns of Table 1: (variant id, GReg variant, reg, ratio -> seeds); the ablation variants
        # are GReg-1 with their own reg overrides. One budget per ratio, traced once.
        columns = [(m, m, cfg.reg, {r: cfg.table1.seeds_for(r, cfg.seeds) for r in cfg.table1.ratios})
                   for m in cfg.table1.methods]
        columns += [(f"greg1:{v.name}", "greg1", _merged(cfg.reg, v.reg, GRegHyper, f"greg.table1.variants.{v.name}.reg"),
                     {r: list(v.seeds) for r in v.ratios}) for v in cfg.table1.variants]
        budgets: dict[float, Budget] = {}
        for column, method, reg, seeds_by_ratio in columns:
            for r, seeds in seeds_by_ratio.items():
                if r not in budgets:
                    budgets[r] = greg_budget(dense, stage_pr=fill_ratio(cfg.table1.stage_pr, r),
                                             input_shape=example_shape)
                for seed in seeds:
                    runs.append(run_spec(
                        method, budgets[r], granularity="filter", reg=reg, prune_optim=cfg.prune_optim,
                        finetune=cfg.finetune, seed=seed, batch_size=cfg.batch_size, runtime=cfg.runtime,
                        label=f"t1-{column.replace(':', '-')}-r{r:g}", model=cfg.model,
                        tags={"table": "table1", "setting": f"r={r:g}", "variant": column, "ratio": r}))
    for name, s in cfg.table2.items():
        if s.dataset != dataset or s.model not in dense_models:
            why = (f"needs data.dataset = {s.dataset}" if s.dataset != dataset
                   else f"needs the dense model {s.model!r} (pretrain stage)")
            skipped.append({"setting": name, "model": s.model, "dataset": s.dataset, "reason": why})
            continue
        dense = dense_models[s.model]
        budget = greg_budget(dense, stage_pr=fill_ratio(s.stage_pr, 0) if s.stage_pr else None,
                             layer_pr=s.layer_pr or None, granularity=s.granularity, input_shape=example_shape)
        reg = _merged(cfg.reg, s.reg, GRegHyper, f"greg.table2.{name}.reg")
        prune_optim = _merged(cfg.prune_optim, s.prune_optim, OptimConfig, f"greg.table2.{name}.prune_optim")
        finetune = _merged(cfg.finetune, s.finetune, OptimConfig, f"greg.table2.{name}.finetune")
        for method in s.methods:
            for seed in cfg.seeds:
                runs.append(run_spec(
                    method, budget, granularity=s.granularity, reg=reg, prune_optim=prune_optim,
                    finetune=finetune, seed=seed, batch_size=s.batch_size or cfg.batch_size,
                    runtime=cfg.runtime, label=f"t2-{name}-{method}", model=s.model,
                    tags={"table": "table2", "setting": name, "variant": method, "ratio": None}))
    f = cfg.figure1
    if f.enabled:
        dense = dense_models[cfg.model]
        budget = greg_budget(dense, stage_pr=fill_ratio(f.stage_pr, 0), input_shape=example_shape)
        reg = _merged(cfg.reg, f.reg, GRegHyper, "greg.figure1.reg")
        runs.append(run_spec(
            "greg2", budget, granularity="filter", reg=reg, prune_optim=cfg.prune_optim, finetune=None,
            seed=cfg.seeds[0], batch_size=cfg.batch_size, runtime=cfg.runtime, label="f1-greg2-pick",
            model=cfg.model, tags={"table": "figure1", "setting": "trace", "variant": "greg2", "ratio": None},
            extra={"pick_only": True, "trace_every": f.trace_every, "trace_layer": f.layer}))
    # Longest first, so that the last job of the pool is a short one (GReg runs carry a pruning phase).
    order = {"figure1": 0, "greg2": 1, "greg1": 2, "l1": 3}
    runs.sort(key=lambda p: (order["figure1"] if p.tags["table"] == "figure1" else order[p.tags["variant"].split(":")[0]],
                             -(p.tags["ratio"] or 0)))
    return runs, skipped


def budget_text(cfg: GRegConfig, splits: Any, profile: str) -> str:
    """One sentence stating the compute budget, for every table caption."""
    r, f = cfg.reg, cfg.finetune
    t1 = ", ".join(f"r={x:g}: n={len(cfg.table1.seeds_for(x, cfg.seeds))}" for x in cfg.table1.ratios)
    steps_per_epoch = len(splits.train) // cfg.batch_size
    ft_steps = round(f.epochs * steps_per_epoch)
    return (f"Profile `{profile}`: {len(splits.train)} training images, batch {cfg.batch_size}; pruning SGD lr "
            f"{cfg.prune_optim.lr:g}, K_u={r.update_reg_interval}, δλ={r.reg_granularity_prune:g} "
            f"(GReg-2 pick δλ={r.reg_granularity_pick:g} to τ'={r.reg_upper_limit_pick:g}), τ={r.reg_upper_limit:g}, "
            f"magnitude-ratio limit {r.mag_ratio_limit:g}, K_s={r.stabilize_reg_interval}; fine-tuning "
            f"{f.epochs:g} epochs (≈{ft_steps} iterations, lr {f.lr:g}, {f.schedule}); {len(splits.test)} test "
            f"images; seeds per row: Table 1 {t1}, elsewhere {list(cfg.seeds)}.")


def _acc_by_seed(frame: Any, variant: str) -> dict[int, float]:
    """seed -> test accuracy of one variant's rows (the arms of a paired comparison)."""
    rows = frame[frame.variant == variant]
    return dict(zip(rows.seed, rows.test_acc, strict=True))


def evidence(cfg: GRegConfig, df: Any, budget: str) -> list[Evidence]:
    """The claims' evidence by the one verdict rule (references/claims.yaml ids greg.*).

    Table 1's claim is answered by the column labelled GReg-1 (whatever penalty this profile's
    `greg.reg` gives it; the notebook names it) against one-shot L1 on the same filters, paired
    by seed, at every ratio: r >= 0.9 for `greg.table1_gain`, below for `greg.table1_small_ratios`.
    """
    claims = load_claims()
    out: list[Evidence] = []
    greg1 = method_label("greg1", cfg.reg)
    t1 = df[df.table == "table1"] if len(df) else df
    for claim_id, large in (("greg.table1_gain", True), ("greg.table1_small_ratios", False)):
        ratios = sorted(r for r in set(t1.ratio) if (r >= 0.9 - 1e-9) == large) if len(t1) else []
        for r in ratios:
            sub = t1[t1.ratio == r]
            l1 = _acc_by_seed(sub, "l1")
            g1 = _acc_by_seed(sub, "greg1")
            interval = paired_difference(g1, l1) if set(l1) & set(g1) else None
            out.append(Evidence.judge(claims[claim_id], interval, budget=budget,
                                      test=f"{greg1} − one-shot L1 test accuracy (points), same pruned filters, "
                                           f"{cfg.model} at r = {r:g}, paired by seed"))
        if not ratios:
            out.append(Evidence.judge(claims[claim_id], None, test="Table 1 not run", budget=budget))
    t2 = df[df.table == "table2"] if len(df) else df
    for claim_id, a, b in (("greg.table2_greg1_vs_l1", "greg1", "l1"), ("greg.table2_greg2_vs_greg1", "greg2", "greg1")):
        settings = list(dict.fromkeys(t2.setting)) if len(t2) else []
        done = False
        for name in settings:
            sub = t2[t2.setting == name]
            xa = _acc_by_seed(sub, a)
            xb = _acc_by_seed(sub, b)
            if set(xa) & set(xb):
                done = True
                out.append(Evidence.judge(claims[claim_id], paired_difference(xa, xb), budget=budget,
                                          test=f"{method_label(a, _setting_reg(cfg, name))} − {method_label(b, _setting_reg(cfg, name))} test accuracy (points), "
                                               f"Table 2 setting {name}, paired by seed"))
        if not done:
            out.append(Evidence.judge(claims[claim_id], None, test="Table 2 setting not run here", budget=budget))
    return out


def _setting_reg(cfg: GRegConfig, name: str) -> GRegHyper:
    return _merged(cfg.reg, cfg.table2[name].reg, GRegHyper, f"greg.table2.{name}.reg")


def table1_plot(df: Any, paper: Any, title: str = "", greg1: str = "GReg-1") -> Any:
    """Accuracy vs ratio: ours (mean ± std over seeds) and the paper's (dashed)."""
    import matplotlib.pyplot as plt

    d = df[df.table == "table1"]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for i, (variant, label) in enumerate((("l1", "L1 one-shot"), ("greg1", greg1))):
        sub = d[d.variant == variant].groupby("ratio").test_acc
        if not len(d[d.variant == variant]):
            continue
        mean, std = sub.mean(), sub.std().fillna(0)
        ax.errorbar(mean.index, mean.values, yerr=std.values, marker="o", capsize=3, color=f"C{i}",
                    label=f"{label} (ours)")
        prow = "L1" if variant == "l1" else "GReg-1"
        if paper.empty:
            continue
        pv = [_paper(paper, row=f"{prow} r={r:g}", metric="test_acc_mean") for r in mean.index]
        if all(isinstance(v, float) for v in pv):
            ax.plot(mean.index, pv, ls="--", marker="x", color=f"C{i}", alpha=0.7, label=f"{label} (paper)")
    ax.set(xlabel="pruning ratio r (first conv of every block)", ylabel="test accuracy (%)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def results_frame(records: Sequence[RunRecord]) -> Any:
    """One row per run: the plan's identity plus the record's flat metrics and GReg's summary."""
    import pandas as pd

    rows = []
    for rec in records:
        row = {**rec.row(), "table": rec.tags["table"], "setting": rec.tags["setting"], "ratio": rec.tags["ratio"],
               "variant": rec.tags["variant"]}
        summ = rec.summary or {}
        if "iterations" in summ:
            row["prune_iterations"] = summ["iterations"]
            row["schedule_completed"] = summ["completed"]
            reasons = {v["finish_reason"] for v in summ["layers"].values() if v["finish_reason"]}
            row["stop_reason"] = ", ".join(sorted(reasons))
        rows.append(row)
    return pd.DataFrame(rows)


def _paper(paper: Any, **match: str) -> float | str:
    """The paper's value, "not transcribed" (null in the data file) or "not in the paper"."""
    from prunerep.reporting.paper import paper_value

    try:
        return paper_value(paper, **match)
    except KeyError:
        return "not in the paper"


def table1(df: Any, paper: Any, variants: Sequence[Table1Variant] | None = None, greg1: str = "GReg-1") -> Any:
    """Table 1: per ratio, our L1 and GReg-1 (mean ± std over seeds) beside the paper's, plus
    the `variants` (ablation columns) where they ran."""
    import pandas as pd

    d = df[df.table == "table1"]
    rows = []
    for r in sorted(d.ratio.unique()):
        sub = d[d.ratio == r]
        l1 = sub[sub.variant == "l1"]
        g1 = sub[sub.variant == "greg1"]
        row: dict[str, Any] = {"r": f"{r:g}", "speedup (ours, MACs)": sub.speedup_macs.mean(),
                               "params kept % (ours)": 100 * sub.params_keep.mean()}
        if len(l1):
            row["L1 one-shot, before FT"] = fmt_mean_std(l1.test_acc_before_finetune)
            row["L1 one-shot"] = fmt_mean_std(l1.test_acc)
        if len(g1):
            row[f"{greg1}, before FT"] = fmt_mean_std(g1.test_acc_before_finetune)
            row[greg1] = fmt_mean_std(g1.test_acc)
        if len(l1) and len(g1):
            row["gain (ours)"] = g1.test_acc.mean() - l1.test_acc.mean()
        for v in variants or []:
            extra = sub[sub.variant == f"greg1:{v.name}"]
            row[f"{v.label}, before FT"] = fmt_mean_std(extra.test_acc_before_finetune) if len(extra) else "not run"
            row[v.label] = fmt_mean_std(extra.test_acc) if len(extra) else "not run"
        key = f"r={r:g}"
        if paper.empty:  # another dataset than the paper's: no paper column (the paper-row policy)
            rows.append(row)
            continue
        row["paper speedup"] = _paper(paper, row=key, metric="speedup")
        row["paper L1"] = _paper(paper, row=f"L1 {key}", metric="test_acc_mean")
        row["paper GReg-1"] = _paper(paper, row=f"GReg-1 {key}", metric="test_acc_mean")
        if all(isinstance(row[k], float) for k in ("paper L1", "paper GReg-1")):
            row["paper gain"] = row["paper GReg-1"] - row["paper L1"]
        rows.append(row)
    return pd.DataFrame(rows)


def table2(df: Any, paper: Any, dense_acc: Mapping[str, float], cfg: GRegConfig) -> Any:
    """Table 2: our rows per setting (mean ± std) and the paper's printed rows for it."""
    import pandas as pd

    from prunerep.reporting.paper import NOT_TRANSCRIBED

    d = df[df.table == "table2"]
    rows = []
    for name in d.setting.unique():
        s = cfg.table2[name]
        sub = d[d.setting == name]
        base = dense_acc.get(s.model, float("nan"))
        for method in s.methods:
            m = sub[sub.variant == method]
            if not len(m):
                continue
            rows.append({"source": "ours", "setting": name, "method": method_label(method, _setting_reg(cfg, name)),
                         "base": base, "pruned": fmt_mean_std(m.test_acc), "drop": base - m.test_acc.mean(),
                         "speedup (MACs)": m.speedup_macs.mean(), "FLOPs reduction %": 100 * (1 - m.macs_keep.mean())})
        for method, row_name in s.paper_rows.items():
            sel = paper[(paper.row == row_name) & (paper.metric == "test_acc")]
            base_sel = paper[(paper.row == row_name) & (paper.metric == "base_test_acc")]
            sp = paper[(paper.row == row_name) & (paper.metric == "speedup")]
            value = NOT_TRANSCRIBED if sel.empty or pd.isna(sel.value.iloc[0]) else float(sel.value.iloc[0])
            pbase = float(base_sel.value.iloc[0]) if not base_sel.empty and not pd.isna(base_sel.value.iloc[0]) else None
            speed = float(sp.value.iloc[0]) if not sp.empty and not pd.isna(sp.value.iloc[0]) else None
            rows.append({"source": "paper", "setting": name, "method": method, "base": pbase, "pruned": value,
                         "drop": (pbase - value) if pbase is not None and isinstance(value, float) else None,
                         "speedup (MACs)": speed, "FLOPs reduction %": 100 * (1 - 1 / speed) if speed else None})
    return pd.DataFrame(rows)


def figure1(trace: Sequence[Mapping[str, Any]], layer: str, snapshots: int = 4, title: str = "") -> Any:
    """Row 1: normalised std (std/mean) of filter magnitudes vs iteration, one line per layer.
    Row 2: max-normalised sorted filter magnitudes of `layer` at `snapshots` iterations."""
    import matplotlib.pyplot as plt

    its = [p["iteration"] for p in trace]
    layers = list(trace[0]["norm_std"]) if trace else []
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    ax = axes[0]
    for i, name in enumerate(layers):
        ax.plot(its, [p["norm_std"][name] for p in trace], lw=0.8, alpha=0.5, color=f"C{i % 10}")
    if layers:
        mean_curve = [sum(p["norm_std"].values()) / len(layers) for p in trace]
        ax.plot(its, mean_curve, color="k", lw=2.2, label="mean over layers")
        ax.legend(fontsize=8)
    ax.set(xlabel="iteration", ylabel="std / mean of filter L1 norms",
           title="(row 1) normalised std rises as λ grows")
    ax2 = ax.twinx()
    ax2.plot(its, [p["lambda_max"] for p in trace], color="C3", ls="--", lw=1)
    ax2.set_ylabel("λ (dashed)", color="C3")
    ax = axes[1]
    with_norms = [p for p in trace if "sorted_norm" in p]
    if with_norms:
        idx = sorted({round(i * (len(with_norms) - 1) / max(snapshots - 1, 1)) for i in range(snapshots)})
        for j, k in enumerate(idx):
            p = with_norms[k]
            ax.plot(p["sorted_norm"], color=plt.cm.viridis(j / max(len(idx) - 1, 1)), label=f"iter {p['iteration']}")
        ax.legend(fontsize=8)
    ax.set(xlabel="filter (sorted)", ylabel="L1 norm / max", ylim=(0, 1.02), title=f"(row 2) {layer}")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
