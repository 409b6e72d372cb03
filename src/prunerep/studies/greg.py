"""GReg's study: Table 1, Table 2 and Figure 1 of the paper (notebooks/greg.ipynb).

The algorithm is :mod:`prunerep.methods.greg`; this module plans the runs (the same pruned
filters for one-shot L1 and GReg-1), turns run records into the paper's tables and figure, the
claims' evidence, and the notebook's generated sentences and "assumptions and deviations" table.

Which column answers the paper: the one run with ``greg.reg`` as configured, labelled by
:func:`method_label` (plain "GReg-1" only with the official conv-only penalty). Ablation columns
(``greg.table1.variants``) never decide a verdict; a variant with the BN penalty is named as ours.
"""

from __future__ import annotations

import dataclasses
import math
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
from prunerep.reporting.stats import Interval, fmt_mean_std, mean_interval, paired_difference
from prunerep.runner import LatencySettings, RunRecord, RunSpec
from prunerep.studies.base import seeds_text

METHOD_LABELS = {"l1": "L1 (one-shot)", "greg1": "GReg-1", "greg2": "GReg-2"}
OURS_SUFFIX = " + BN penalty (ours)"


def method_label(method: str, reg: GRegHyper) -> str:
    """What ran, named honestly: with the BN penalty GReg is a variant of ours, not the paper's."""
    base = METHOD_LABELS[method]
    return f"{base}{OURS_SUFFIX}" if method != "l1" and reg.penalize_norm else base


def _finetune_default() -> OptimConfig:
    # README CIFAR fine-tuning: 120 epochs, lr 0.01 -> 0.001 @60 -> 1e-4 @90, wd 5e-4.
    return OptimConfig(epochs=120, lr=0.01, momentum=0.9, nesterov=False, weight_decay=5e-4,
                       schedule="multistep", milestones=[60, 90])


@dataclass(frozen=True)
class GRegSetting:
    """One setting of the paper's Table 2: dense model, data, layer ratios, recipe overrides."""

    model: str                                            # key of pretrain.models (the dense checkpoint)
    dataset: str = "cifar10"                              # data.dataset it needs; skipped otherwise
    enabled: bool = True                                  # false: listed as skipped at this profile
    stage_pr: list[float | str] = field(default_factory=list)   # ResNets: stem, stages..., classifier
    layer_pr: dict[str, float] = field(default_factory=dict)    # VGG: {"1-15": 0.7} by conv/linear index
    granularity: Granularity = "filter"
    methods: list[str] = field(default_factory=lambda: ["l1", "greg1", "greg2"])
    seeds: list[int] | None = None                        # None: greg.seeds
    paper_rows: dict[str, str] = field(default_factory=dict)    # our method -> paper_results.yaml row
    paper_model: str = ""                                 # network of the paper's rows, if not `model`
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
        if self.seeds is not None and not self.seeds:
            raise ValueError(f"setting for {self.model!r}: seeds must be null (greg.seeds) or non-empty")


@dataclass(frozen=True)
class Table1Variant:
    """An extra GReg-1 column of Table 1 with other penalty settings (an ablation, never the
    column whose verdict answers the paper), e.g. the BN penalty of ours."""

    name: str                                             # short id: variant column "greg1:<name>"
    label: str = ""                                       # column title; "" = from the penalty (method_label)
    reg: dict[str, Any] = field(default_factory=dict)     # overrides of greg.reg
    ratios: list[float] = field(default_factory=list)
    seeds: list[int] | None = None                        # None: Table 1's seeds at each ratio

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9_]+", self.name):
            raise ValueError(f"table1.variants: name {self.name!r} must be lower-case letters, digits or _")
        if not self.ratios or (self.seeds is not None and not self.seeds):
            raise ValueError(f"table1.variants.{self.name}: give ratios (and seeds, or null for Table 1's)")
        for r in self.ratios:
            if not 0 <= r < 1:
                raise ValueError(f"ratios: {r} is not a share of filters to remove in [0, 1) (0.9 removes 90%)")


@dataclass(frozen=True)
class Table1Config:
    """Table 1: the same pruned filters, one-shot L1 vs GReg-1, at uniform ratios r."""

    ratios: list[float] = field(default_factory=lambda: [0.5, 0.7, 0.9, 0.925, 0.95])
    stage_pr: list[float | str] = field(default_factory=lambda: [0, "r", "r", "r", 0])  # "r" = the row's ratio
    methods: list[str] = field(default_factory=lambda: ["l1", "greg1"])
    seeds: list[int] | None = None                        # None: greg.seeds
    seeds_by_ratio: dict[str, list[int]] = field(default_factory=dict)  # e.g. {"0.9": [0, 1, 2]}: more seeds where the claim is
    variants: list[Table1Variant] = field(default_factory=list)        # extra GReg-1 columns (ablations)

    def __post_init__(self) -> None:
        for r in self.ratios:
            if not 0 <= r < 1:
                raise ValueError(f"ratios: {r} is not a share of filters to remove in [0, 1) (0.9 removes 90%)")
        for m in self.methods:
            if m not in METHOD_LABELS:
                raise ValueError(f"methods: {m!r} is not one of {sorted(METHOD_LABELS)}")
        if self.seeds is not None and not self.seeds:
            raise ValueError("seeds: give at least one seed, or null for greg.seeds")

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
    seeds: list[int] | None = None                        # None: the first of greg.seeds
    trace_every: int = 100                                # iterations between two traced points
    layer: str = "layer2.3.conv1"                         # row 2: its normalised filter L1 norms
    snapshots: int = 4                                    # row 2: number of iterations shown


@dataclass(frozen=True)
class Calibration:
    """Where this profile's compressed schedule was chosen (on the validation split).

    Runs at exactly this setting (model, Table 1 ratio, seed) are left out of every verdict, and
    the claims' notes say where the choice was made, so no reported number is one it was tuned on.
    Empty `model`: the profile's schedule was not calibrated (the `paper` profile: official values).
    """

    model: str = ""
    ratio: float | None = None
    seeds: list[int] = field(default_factory=list)
    chose: str = ""                                       # what was chosen there
    command: str = ""                                     # the benchmark command that did it

    def covers(self, model: str, ratio: float | None, seed: int) -> bool:
        return (bool(self.model) and model == self.model and ratio is not None and self.ratio is not None
                and abs(ratio - self.ratio) < 1e-9 and seed in self.seeds)


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
    calibration: Calibration = Calibration()
    latency: LatencySettings = LatencySettings()

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def pretrain_keys(self) -> dict[str, str]:
        """Key path (in this section) -> the pretrain.models key it names (checked by `config check`).

        Table 2's settings are not listed: one whose dense model is not trained here is skipped
        and listed as such (e.g. VGG-19 on CIFAR-100).
        """
        return {"model": self.model} if self.table1.ratios or self.figure1.enabled else {}


def _merged(base: Any, overrides: Mapping[str, Any], cls: type, path: str) -> Any:
    return from_dict(cls, {**dataclasses.asdict(base), **overrides}, path) if overrides else base


def variant_reg(cfg: GRegConfig, variant: Table1Variant) -> GRegHyper:
    """The penalty schedule of an ablation column: `greg.reg` with the variant's overrides."""
    return _merged(cfg.reg, variant.reg, GRegHyper, f"greg.table1.variants.{variant.name}.reg")


def column_labels(cfg: GRegConfig) -> dict[str, str]:
    """Table 1's column id (``l1``, ``greg1``, ``greg1:<name>``) -> its honest label.

    A variant's label defaults to `method_label` of its penalty; a label typed in params.yaml for a
    BN-penalised variant must say "(ours)", and no two columns may share a label.
    """
    out = {m: method_label(m, cfg.reg) for m in cfg.table1.methods}
    for v in cfg.table1.variants:
        reg = variant_reg(cfg, v)
        label = v.label or method_label("greg1", reg)
        if reg.penalize_norm and "(ours)" not in label:
            raise ValueError(f"greg.table1.variants.{v.name}: label {label!r} must say '(ours)': its penalty "
                             "also reaches BN (penalize_norm), which the paper's GReg does not")
        out[f"greg1:{v.name}"] = label
    labels = list(out.values())
    if len(set(labels)) != len(labels):
        raise ValueError(f"greg.table1: two columns share a label ({labels}); give the variant a label")
    return out


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


def figure1_seeds(cfg: GRegConfig) -> list[int]:
    return list(cfg.figure1.seeds) if cfg.figure1.seeds else [cfg.seeds[0]]


def plan_runs(cfg: GRegConfig, dense_models: Mapping[str, nn.Module], dataset: str,
              example_shape: tuple[int, ...]) -> tuple[list[RunSpec], list[dict]]:
    """Every run of the notebook (Table 1, Table 2, Figure 1), longest first.

    Labels read ``<what ran>@<setting>`` (e.g. ``GReg-1@r=0.9``), the convention of the shared
    figures (one marker per name before "@").

    Args:
        cfg: the resolved `greg` section.
        dense_models: dense nets by pretrain key (only used to map ratios onto groups).
        dataset: ``data.dataset`` of this pipeline; Table 2 settings needing another are skipped.
        example_shape: ``(1, C, H, W)`` of the data, at which the ratios are mapped onto groups.

    Returns:
        (runs, skipped) where skipped lists the Table 2 settings not run here, with why.
    """
    runs: list[RunSpec] = []
    skipped: list[dict] = []
    if cfg.table1.ratios:
        dense = dense_models[cfg.model]
        labels = column_labels(cfg)
        # Columns of Table 1: (column id, GReg variant, reg, ratio -> seeds); the ablation variants
        # are GReg-1 with their own reg overrides. One budget per ratio, traced once.
        columns = [(m, m, cfg.reg, {r: cfg.table1.seeds_for(r, cfg.seeds) for r in cfg.table1.ratios})
                   for m in cfg.table1.methods]
        columns += [(f"greg1:{v.name}", "greg1", variant_reg(cfg, v),
                     {r: list(v.seeds) if v.seeds else cfg.table1.seeds_for(r, cfg.seeds) for r in v.ratios})
                    for v in cfg.table1.variants]
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
                        label=f"{labels[column]}@r={r:g}", model=cfg.model,
                        tags={"table": "table1", "setting": f"r={r:g}", "variant": column, "ratio": r}))
    for name, s in cfg.table2.items():
        if not s.enabled or s.dataset != dataset or s.model not in dense_models:
            why = ("disabled at this profile" if not s.enabled
                   else f"needs data.dataset = {s.dataset}" if s.dataset != dataset
                   else f"needs the dense model {s.model!r} (pretrain stage)")
            skipped.append({"setting": name, "model": s.model, "dataset": s.dataset, "reason": why})
            continue
        dense = dense_models[s.model]
        budget = greg_budget(dense, stage_pr=fill_ratio(s.stage_pr, 0) if s.stage_pr else None,
                             layer_pr=s.layer_pr or None, granularity=s.granularity, input_shape=example_shape)
        reg = _setting_reg(cfg, name)
        prune_optim = _merged(cfg.prune_optim, s.prune_optim, OptimConfig, f"greg.table2.{name}.prune_optim")
        finetune = _merged(cfg.finetune, s.finetune, OptimConfig, f"greg.table2.{name}.finetune")
        for method in s.methods:
            for seed in s.seeds or cfg.seeds:
                runs.append(run_spec(
                    method, budget, granularity=s.granularity, reg=reg, prune_optim=prune_optim,
                    finetune=finetune, seed=seed, batch_size=s.batch_size or cfg.batch_size,
                    runtime=cfg.runtime, label=f"{method_label(method, reg)}@{name}", model=s.model,
                    tags={"table": "table2", "setting": name, "variant": method, "ratio": None}))
    f = cfg.figure1
    if f.enabled:
        dense = dense_models[cfg.model]
        budget = greg_budget(dense, stage_pr=fill_ratio(f.stage_pr, 0), input_shape=example_shape)
        reg = _merged(cfg.reg, f.reg, GRegHyper, "greg.figure1.reg")
        for seed in figure1_seeds(cfg):
            runs.append(run_spec(
                "greg2", budget, granularity="filter", reg=reg, prune_optim=cfg.prune_optim, finetune=None,
                seed=seed, batch_size=cfg.batch_size, runtime=cfg.runtime,
                label=f"{method_label('greg2', reg)} uniform rise@figure1", model=cfg.model,
                tags={"table": "figure1", "setting": "trace", "variant": "greg2", "ratio": None},
                extra={"pick_only": True, "trace_every": f.trace_every, "trace_layer": f.layer}))
    # Longest first, so that the last job of the pool is a short one: GReg runs carry a pruning
    # phase, ResNet-56 before smaller nets, the short Figure 1 pick and L1 last.
    order = {"greg2": 0, "greg1": 1, "figure1": 2, "l1": 3}
    runs.sort(key=lambda p: (p.model != cfg.model,
                             order["figure1"] if p.tags["table"] == "figure1" else order[p.tags["variant"].split(":")[0]],
                             -(p.tags["ratio"] or 0)))
    return runs, skipped


def budget_text(cfg: GRegConfig, splits: Any, profile: str) -> str:
    """One sentence stating the compute budget and the penalty of each column, for every caption."""
    r, f = cfg.reg, cfg.finetune
    t1 = ", ".join(f"r={x:g}: seeds {cfg.table1.seeds_for(x, cfg.seeds)}" for x in cfg.table1.ratios)
    steps_per_epoch = len(splits.train) // cfg.batch_size
    penalty = ("λ on the pruned filters' conv weights (the official penalty)" if not r.penalize_norm else
               "λ on the pruned filters' conv weights and their BN scale and shift (ours; the paper penalises conv only)")
    labels = column_labels(cfg) if cfg.table1.ratios else {}
    variants = "".join(f"; column '{labels[f'greg1:{v.name}']}' at r = {', '.join(f'{x:g}' for x in v.ratios)}"
                       for v in cfg.table1.variants if cfg.table1.ratios)
    return (f"Profile `{profile}`: {len(splits.train)} training images, batch {cfg.batch_size}; GReg penalty: "
            f"{penalty}{variants}; pruning SGD lr {cfg.prune_optim.lr:g}, K_u={r.update_reg_interval}, "
            f"δλ={r.reg_granularity_prune:g} (GReg-2 pick δλ={r.reg_granularity_pick:g} to τ'={r.reg_upper_limit_pick:g}), "
            f"τ={r.reg_upper_limit:g}, magnitude-ratio limit {r.mag_ratio_limit:g}, K_s={r.stabilize_reg_interval}; "
            f"{_finetune_text(f, steps_per_epoch)}; "
            f"{len(splits.test)} test images; seeds: Table 1 {t1}; elsewhere {list(cfg.seeds)}.")


def _finetune_text(f: OptimConfig, steps_per_epoch: int | None = None) -> str:
    steps = f" (≈{round(f.epochs * steps_per_epoch)} iterations)" if steps_per_epoch else ""
    shape = (f"x{f.gamma:g} at epochs {', '.join(f'{m:g}' for m in f.milestones)}" if f.schedule == "multistep"
             else f"{f.schedule} schedule")
    return f"fine-tuning {f.epochs:g} epochs{steps}, lr {f.lr:g}, {shape}"


def verdict_budget(cfg: GRegConfig, splits: Any, profile: str) -> str:
    """The budget of a verdict in one short phrase (the captions carry the full `budget_text`)."""
    r = cfg.reg
    steps_per_epoch = len(splits.train) // cfg.batch_size
    return (f"`{profile}`: {len(splits.train)} training images, batch {cfg.batch_size}; penalty δλ "
            f"{r.reg_granularity_prune:g} per {r.update_reg_interval} iteration(s) to τ {r.reg_upper_limit:g}, "
            f"K_s {r.stabilize_reg_interval}; {_finetune_text(cfg.finetune, steps_per_epoch)}; "
            f"{len(splits.test)} test images")


# ---------------------------------------------------------------------------------------------
# records -> frame


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
            ratios = sorted(v["mag_ratio"] for v in summ["layers"].values() if v.get("mag_ratio") is not None)
            row["mag_ratio_min"] = ratios[0] if ratios else math.nan
            row["mag_ratio_median"] = ratios[len(ratios) // 2] if ratios else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _acc_by_seed(frame: Any, variant: str, value: str = "test_acc") -> dict[int, float]:
    """seed -> test accuracy of one variant's rows (the arms of a paired comparison)."""
    rows = frame[frame.variant == variant]
    return dict(zip(rows.seed, rows[value], strict=True))


def _table(df: Any, name: str) -> Any:
    return df[df.table == name] if len(df) else df


def _calibration_note(cfg: GRegConfig) -> str:
    c = cfg.calibration
    if not c.model:
        return ""
    where = f"{c.model}, r = {c.ratio:g}, {seeds_text(c.seeds)}" if c.ratio is not None else c.model
    shared = (f" (r = {c.ratio:g} shares the ratio and the dense checkpoint with it, not the seed)"
              if c.ratio is not None and any(abs(c.ratio - r) < 1e-9 for r in cfg.table1.ratios) else "")
    return (f"This profile's {c.chose} were chosen on the validation split at {where}"
            + (f" (`{c.command}`)" if c.command else "")
            + f". No reported run is a calibration run: runs at that setting are left out of every verdict, "
            f"and this profile reports {seeds_text(cfg.seeds)}{shared}. The official conv-only penalty "
            "(plain GReg-1) was not tuned: it runs the compressed schedule chosen there.")


def _paired(df: Any, a: str, b: str, cfg: GRegConfig, ratio: float | None, model: str) -> tuple[Interval | None, list[int]]:
    """Paired a − b over the seeds both ran, without calibration runs; (interval, excluded seeds)."""
    xa, xb = _acc_by_seed(df, a), _acc_by_seed(df, b)
    excluded = sorted(s for s in set(xa) | set(xb) if cfg.calibration.covers(model, ratio, s))
    for s in excluded:
        xa.pop(s, None)
        xb.pop(s, None)
    return (paired_difference(xa, xb) if set(xa) & set(xb) else None), excluded


def table1_gains(cfg: GRegConfig, df: Any) -> list[dict[str, Any]]:
    """Every GReg-1 column minus one-shot L1, paired by seed, per ratio: rows for `gain_plot`.

    Each row: r, mean, lo, hi, n, label, column, interval (calibration runs left out)."""
    labels = column_labels(cfg) if cfg.table1.ratios else {}
    t1 = _table(df, "table1")
    rows: list[dict[str, Any]] = []
    if "l1" not in labels:
        return rows
    for column, label in labels.items():
        if column == "l1":
            continue
        for r in sorted(set(t1.ratio)) if len(t1) else []:
            sub = t1[t1.ratio == r]
            if not (sub.variant == column).any() or not (sub.variant == "l1").any():
                continue
            iv, _ = _paired(sub, column, "l1", cfg, r, cfg.model)
            if iv is None:
                continue
            rows.append({"r": r, "mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "n": iv.n,
                         "label": f"{label} − {labels['l1']}", "column": column, "interval": iv})
    return rows


def evidence(cfg: GRegConfig, df: Any, budget: str, records: Sequence[RunRecord] = ()) -> list[Evidence]:
    """The claims' evidence by the one verdict rule (references/claims/greg.yaml ids greg.*).

    Table 1's claims are answered by the column run with `greg.reg` (plain "GReg-1" with the
    official conv-only penalty) against one-shot L1 on the same filters, paired by seed, at every
    ratio: r >= 0.9 for `greg.table1_gain`, below for `greg.table1_small_ratios`. The ablation
    columns are reported in the note, never in the verdict. Calibration runs are left out.
    Table 2's claims per enabled setting; Figure 1's from the traces in `records`.
    """
    claims = load_claims()
    out: list[Evidence] = []
    labels = column_labels(cfg) if cfg.table1.ratios else {"l1": METHOD_LABELS["l1"], "greg1": method_label("greg1", cfg.reg)}
    greg1 = labels.get("greg1", method_label("greg1", cfg.reg))
    gains = {(g["column"], g["r"]): g["interval"] for g in table1_gains(cfg, df)}
    calib = _calibration_note(cfg)
    t1 = _table(df, "table1")
    for claim_id, large in (("greg.table1_gain", True), ("greg.table1_small_ratios", False)):
        ratios = sorted(r for r in set(t1.ratio) if (r >= 0.9 - 1e-9) == large) if len(t1) else []
        for r in ratios:
            sub = t1[t1.ratio == r]
            interval, excluded = _paired(sub, "greg1", "l1", cfg, r, cfg.model)
            seeds = sorted(set(_acc_by_seed(sub, "greg1")) & set(_acc_by_seed(sub, "l1")) - set(excluded))
            notes = [f"Paired over {seeds_text(seeds)}." if seeds else "No paired seeds."]
            if excluded:
                notes.append(f"{seeds_text(excluded).capitalize()} left out: the calibration setting.")
            for column, label in labels.items():
                if column.startswith("greg1:") and (column, r) in gains:
                    iv = gains[(column, r)]
                    vs_official, _ = _paired(sub, column, "greg1", cfg, r, cfg.model)
                    notes.append(f"Ablation, not the paper's method: {label} − {labels['l1']} = {iv}"
                                 + (f"; − {greg1} = {vs_official}" if vs_official is not None else "") + ".")
            if calib:
                notes.append(calib)
            out.append(Evidence.judge(claims[claim_id], interval, budget=budget, note=" ".join(notes),
                                      test=f"{greg1} − one-shot L1 test accuracy (points), same pruned filters, "
                                           f"{cfg.model} at r = {r:g}, paired by seed"))
        if not ratios:
            out.append(Evidence.judge(claims[claim_id], None, test="Table 1 not run at these ratios", budget=budget))
    t2 = _table(df, "table2")
    for claim_id, a, b in (("greg.table2_greg1_vs_l1", "greg1", "l1"), ("greg.table2_greg2_vs_greg1", "greg2", "greg1")):
        done = False
        for name in list(dict.fromkeys(t2.setting)) if len(t2) else []:
            s = cfg.table2[name]
            sub = t2[t2.setting == name]
            interval, _ = _paired(sub, a, b, cfg, None, s.model)
            if interval is None:
                continue
            done = True
            reg = _setting_reg(cfg, name)
            net = (f"{s.model} (the paper: {s.paper_model}; a cheaper network for seeds: the claim compares methods, "
                   "not networks)" if s.paper_model and s.paper_model != s.model else s.model)
            ratios = s.stage_pr or s.layer_pr
            out.append(Evidence.judge(
                claims[claim_id], interval, budget=budget,
                note=f"Paired over {seeds_text(sorted(set(_acc_by_seed(sub, a)) & set(_acc_by_seed(sub, b))))}.",
                test=f"{method_label(a, reg)} − {method_label(b, reg)} test accuracy (points), {net}, layer ratios "
                     f"{ratios} (Table 2's), paired by seed"))
        if not done:
            out.append(Evidence.judge(claims[claim_id], None, test="Table 2 setting not run at this profile", budget=budget))
    slopes = figure1_slopes(records)
    if slopes:
        f1 = [r for r in records if r.tags.get("table") == "figure1"]
        trace = f1[0].summary.get("trace", [])
        n_layers = len(trace[0]["norm_std"]) if trace else 0
        its = trace[-1]["iteration"] if trace else 0
        out.append(Evidence.judge(
            claims["greg.figure1_std_rises"], mean_interval(list(slopes.values())), budget=budget,
            note=f"{seeds_text(list(slopes)).capitalize()}; at this profile the uniform rise lasts {its} "
                 "iterations (from λ = 0 until every layer picks).",
            test=f"least-squares slope of std/mean of the filter L1 norms (mean over {n_layers} pruned layers) against "
                 f"iteration, GReg-2's uniform rise on the dense {cfg.model}, per seed"))
    else:
        out.append(Evidence.judge(claims["greg.figure1_std_rises"], None, test="Figure 1 not run at this profile",
                                  budget=budget))
    return out


def _setting_reg(cfg: GRegConfig, name: str) -> GRegHyper:
    return _merged(cfg.reg, cfg.table2[name].reg, GRegHyper, f"greg.table2.{name}.reg")


# ---------------------------------------------------------------------------------------------
# Figure 1: the trace


def trace_slope(trace: Sequence[Mapping[str, Any]]) -> float:
    """Least-squares slope of the mean over layers of std/mean against the iteration."""
    xs = [float(p["iteration"]) for p in trace]
    ys = [sum(p["norm_std"].values()) / len(p["norm_std"]) for p in trace]
    if len(xs) < 2:
        return math.nan
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else math.nan


def figure1_slopes(records: Sequence[RunRecord]) -> dict[int, float]:
    """seed -> `trace_slope` of each Figure 1 run with at least two traced points."""
    out = {}
    for rec in records:
        if rec.tags.get("table") == "figure1":
            slope = trace_slope(rec.summary.get("trace", []))
            if math.isfinite(slope):
                out[rec.seed] = slope
    return out


def trace_rise(trace: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many layers' std/mean ended above where they started: what the trace shows, in numbers."""
    if len(trace) < 2:
        return {"layers": len(trace[0]["norm_std"]) if trace else 0, "rising": 0, "first": 0, "last": 0}
    first, last = trace[0]["norm_std"], trace[-1]["norm_std"]
    return {"layers": len(first), "rising": sum(last[k] > first[k] for k in first),
            "first": int(trace[0]["iteration"]), "last": int(trace[-1]["iteration"])}


def trace_sentence(trace: Sequence[Mapping[str, Any]]) -> str:
    """E.g. "std/mean rose in 3 of 27 layers (iteration 0 → 50)", from the trace alone."""
    r = trace_rise(trace)
    if r["first"] == r["last"]:
        return "fewer than two traced points: no rise measurable"
    return f"std/mean rose in {r['rising']} of {r['layers']} layers (iteration {r['first']} → {r['last']})"


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
    ax2 = ax.twinx()
    ax2.plot(its, [p["lambda_max"] for p in trace], color="C3", ls="--", lw=1)
    ax2.set_ylabel("λ", color="C3")
    if layers:
        mean_curve = [sum(p["norm_std"].values()) / len(layers) for p in trace]
        ax.plot(its, mean_curve, color="k", lw=2.2)
    from matplotlib.lines import Line2D

    ax.legend([Line2D([], [], color="0.5", lw=0.8), Line2D([], [], color="k", lw=2.2),
               Line2D([], [], color="C3", ls="--", lw=1)],
              ["one pruned layer", "mean over layers", "λ (right axis)"], fontsize=8)
    ax.set(xlabel="iteration", ylabel="std / mean of filter L1 norms", title=f"(the paper's row 1) {trace_sentence(trace)}")
    ax.title.set_fontsize(9)
    ax = axes[1]
    with_norms = [p for p in trace if "sorted_norm" in p]
    if with_norms:
        idx = sorted({round(i * (len(with_norms) - 1) / max(snapshots - 1, 1)) for i in range(snapshots)})
        for j, k in enumerate(idx):
            p = with_norms[k]
            ax.plot(p["sorted_norm"], color=plt.cm.viridis(j / max(len(idx) - 1, 1)), label=f"iteration {p['iteration']}")
        ax.legend(fontsize=8)
    ax.set(xlabel="filter (sorted by L1 norm)", ylabel="L1 norm / max", ylim=(0, 1.02), title=f"(the paper's row 2) {layer}")
    ax.title.set_fontsize(9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# tables


def _paper(paper: Any, **match: str) -> float | str:
    """The paper's value, "not transcribed" (null in the data file) or "not in the paper"."""
    from prunerep.reporting.paper import paper_value

    try:
        return paper_value(paper, **match)
    except KeyError:
        return "not in the paper"


def table1(cfg: GRegConfig, df: Any, paper: Any) -> Any:
    """Table 1 as the paper prints it: per ratio, our one-shot L1 and GReg-1 (the column that
    answers the claim) beside the paper's, with our paired gain and its 95% interval."""
    import pandas as pd

    labels = column_labels(cfg)
    gains = {(g["column"], g["r"]): g["interval"] for g in table1_gains(cfg, df)}
    d = _table(df, "table1")
    rows = []
    for r in sorted(d.ratio.unique()) if len(d) else []:
        sub = d[d.ratio == r]
        l1, g1 = sub[sub.variant == "l1"], sub[sub.variant == "greg1"]
        row: dict[str, Any] = {"r": f"{r:g}", "speed-up (x, MACs)": sub.speedup_macs.mean()}
        if not paper.empty:
            row["paper speed-up (x)"] = _paper(paper, row=f"r={r:g}", metric="speedup")
        row[f"{labels['l1']} (%)"] = fmt_mean_std(l1.test_acc)
        if "greg1" in labels:
            row[f"{labels['greg1']} (%)"] = fmt_mean_std(g1.test_acc)
            iv = gains.get(("greg1", r))
            row[f"{labels['greg1']} − L1 (points, paired)"] = str(iv) if iv is not None else "—"
        if not paper.empty:  # another dataset than the paper's: no paper column (the paper-row policy)
            pl1 = _paper(paper, row=f"L1 r={r:g}", metric="test_acc_mean")
            pg1 = _paper(paper, row=f"GReg-1 r={r:g}", metric="test_acc_mean")
            row["paper L1 (%)"], row["paper GReg-1 (%)"] = pl1, pg1
            row["paper gain (points)"] = pg1 - pl1 if isinstance(pl1, float) and isinstance(pg1, float) else "—"
        rows.append(row)
    return pd.DataFrame(rows)


def table1_columns(cfg: GRegConfig, df: Any) -> Any:
    """Every Table 1 column where it ran, with how its pruning stage ended: the mechanism behind
    the gains (iterations, stop reason, magnitude ratio kept / pruned reached, accuracy right
    after removal and after fine-tuning, paired gains over L1 and over the official GReg-1)."""
    import pandas as pd

    labels = column_labels(cfg)
    d = _table(df, "table1")
    rows = []
    for column, label in labels.items():
        for r in sorted(d.ratio.unique()) if len(d) else []:
            sub = d[d.ratio == r]
            m = sub[sub.variant == column]
            if not len(m):
                continue
            row: dict[str, Any] = {"column": label, "r": f"{r:g}", "n": len(m)}
            greg = "prune_iterations" in m and m.prune_iterations.notna().all()
            row["pruning iterations"] = fmt_mean_std(m.prune_iterations, digits=0) if greg else "0"
            row["stop reason"] = "; ".join(sorted(set(m.stop_reason.dropna()))) if greg else "—"
            row["magnitude ratio kept/pruned, min over layers"] = fmt_mean_std(m.mag_ratio_min, digits=1) if greg else "—"
            row["right after removal (%)"] = fmt_mean_std(m.test_acc_before_finetune)
            row["after fine-tuning (%)"] = fmt_mean_std(m.test_acc)
            for other in ("l1", "greg1"):
                if column != other and other in labels and column != "l1":
                    iv, _ = _paired(sub, column, other, cfg, r, cfg.model)
                    row[f"− {labels[other]} (points, paired)"] = str(iv) if iv is not None else "—"
            rows.append(row)
    return pd.DataFrame(rows)


def table2(df: Any, paper: Any, dense_acc: Mapping[str, float], cfg: GRegConfig) -> Any:
    """Table 2: our rows per setting (mean ± std) and the paper's printed rows for it, each with
    the network it is on."""
    import pandas as pd

    from prunerep.reporting.paper import NOT_TRANSCRIBED

    d = _table(df, "table2")
    rows = []
    for name in d.setting.unique() if len(d) else []:
        s = cfg.table2[name]
        sub = d[d.setting == name]
        base = dense_acc.get(s.model, float("nan"))
        for method in s.methods:
            m = sub[sub.variant == method]
            if not len(m):
                continue
            rows.append({"source": "ours", "network": s.model, "method": method_label(method, _setting_reg(cfg, name)),
                         "dense (%)": base, "pruned (%)": fmt_mean_std(m.test_acc),
                         "drop (points)": base - m.test_acc.mean(), "speed-up (x, MACs)": m.speedup_macs.mean()})
        if paper.empty:
            continue
        for method, row_name in s.paper_rows.items():
            sel = paper[(paper.row == row_name) & (paper.metric == "test_acc")]
            base_sel = paper[(paper.row == row_name) & (paper.metric == "base_test_acc")]
            sp = paper[(paper.row == row_name) & (paper.metric == "speedup")]
            value = NOT_TRANSCRIBED if sel.empty or pd.isna(sel.value.iloc[0]) else float(sel.value.iloc[0])
            pbase = float(base_sel.value.iloc[0]) if not base_sel.empty and not pd.isna(base_sel.value.iloc[0]) else None
            speed = float(sp.value.iloc[0]) if not sp.empty and not pd.isna(sp.value.iloc[0]) else None
            rows.append({"source": "paper", "network": s.paper_model or s.model, "method": method,
                         "dense (%)": pbase, "pruned (%)": value,
                         "drop (points)": (pbase - value) if pbase is not None and isinstance(value, float) else None,
                         "speed-up (x, MACs)": speed})
    return pd.DataFrame(rows)


def scope_sentence(cfg: GRegConfig, skipped: Sequence[Mapping[str, Any]]) -> str:
    """What this profile runs and leaves out, from the config and the plan (no typed numbers)."""
    small = [r for r in cfg.table1.ratios if r < 0.9 - 1e-9]
    large = [r for r in cfg.table1.ratios if r >= 0.9 - 1e-9]
    parts = [f"Table 1 runs r = {', '.join(f'{r:g}' for r in large) or 'none'} at r >= 0.9"
             + (f" and r = {', '.join(f'{r:g}' for r in small)} below" if small else "; no ratio below 0.9 at this profile")]
    for s in skipped:
        parts.append(f"Table 2 setting `{s['setting']}` ({s['model']} / {s['dataset']}) is not run: {s['reason']}")
    return ". ".join(parts) + "."


def _paper_base_text(paper: Any) -> str:
    """The paper's data and dense model as its numbers file records them (Table 1's baseline row)."""
    from prunerep.data.describe import dataset_display_name

    base = paper[(paper.row == "baseline") & (paper.metric == "dense_test_acc")] if not paper.empty else paper
    if base.empty:
        return "the paper's data and dense model (not shown: this run is on another dataset)"
    row = base.iloc[0]
    return f"{dataset_display_name(str(row.dataset))}, dense {row.model} at {_paper(paper, row='baseline', metric='dense_test_acc')} % test accuracy"


def _schedule_text(h: GRegHyper) -> str:
    return (f"δλ {h.reg_granularity_prune:g} every K_u = {h.update_reg_interval} iteration(s) up to τ = "
            f"{h.reg_upper_limit:g} (or a magnitude ratio of {h.mag_ratio_limit:g}), then K_s = "
            f"{h.stabilize_reg_interval} iterations; GReg-2 rises by {h.reg_granularity_pick:g} and picks at "
            f"τ' = {h.reg_upper_limit_pick:g}")


def assumptions_table(cfg: GRegConfig, paper_cfg: GRegConfig, df: Any, paper: Any, data_text: str,
                      dense_acc: Mapping[str, float] | None = None) -> Any:
    """"Assumptions and deviations": the paper's | ours | why | measured effect, from the two
    configs (this profile's and the `paper` profile's), this stage's runs and the paper's numbers;
    nothing typed by hand but the reasons."""
    import pandas as pd

    labels = column_labels(cfg) if cfg.table1.ratios else {}
    r, p = cfg.reg, paper_cfg.reg
    rows: list[dict[str, str]] = []

    def add(theirs: str, ours: str, why: str, effect: str = "not measured") -> None:
        rows.append({"the paper's": theirs, "ours": ours, "why": why, "measured effect": effect})

    if dataclasses.replace(r, penalize_norm=False) != dataclasses.replace(p, penalize_norm=False):
        add(_schedule_text(p), _schedule_text(r), "CPU budget: the official pruning stage takes 10^4-10^5 iterations")
    if cfg.finetune != paper_cfg.finetune or cfg.batch_size != paper_cfg.batch_size:
        add(f"{_finetune_text(paper_cfg.finetune)}, batch {paper_cfg.batch_size}",
            f"{_finetune_text(cfg.finetune)}, batch {cfg.batch_size}",
            "CPU budget; the same for every method, so the gains compare equal fine-tuning")
    t1 = _table(df, "table1")
    for v in cfg.table1.variants:
        column = f"greg1:{v.name}"
        if variant_reg(cfg, v).penalize_norm and not p.penalize_norm:
            effects = []
            for ratio in sorted(set(t1.ratio)) if len(t1) else []:
                iv, _ = _paired(t1[t1.ratio == ratio], column, "greg1", cfg, ratio, cfg.model)
                if iv is not None:
                    effects.append(f"r = {ratio:g}: {labels[column]} − {labels['greg1']} = {iv} points")
            add("λ on the pruned filters' conv weights only",
                f"column '{labels[column]}' also adds λ·γ and λ·β to the pruned channels' BN scale and shift "
                "(an ablation: it decides no verdict)",
                "compressed, the conv-only penalty leaves the pruned channels in use (the BN after each conv "
                "re-normalises a shrinking filter: see the magnitude ratios of Table 1's columns)",
                "; ".join(effects) or "not run at this profile")
    if cfg.calibration.model:
        c = cfg.calibration
        where = f"{c.model}, r = {c.ratio:g}, {seeds_text(c.seeds)}" if c.ratio is not None else c.model
        add("hyper-parameters chosen on validation",
            f"{c.chose} chosen on the validation split at {where}" + (f" (`{c.command}`)" if c.command else ""),
            "no reported number may come from the runs the choice was made on",
            f"runs at that setting are left out of every verdict; this profile reports {seeds_text(cfg.seeds)}")
    for s in cfg.table2.values():
        if s.enabled and s.paper_model and s.paper_model != s.model:
            add(f"Table 2 on {s.paper_model}",
                f"Table 2's layer ratios on {s.model}, {seeds_text(s.seeds or cfg.seeds)}",
                "one seed per method on the paper's network gives no verdict; the smaller network affords "
                "paired seeds (the claims compare methods)")
    if r.kept_reg == "code":
        add("GReg-2's kept filters get λ = −γ after picking (Algorithm 1: minus the weight decay)",
            f"the released code's constant {r.reg_granularity_recover:g} (`kept_reg: code`)",
            "the code produced the paper's numbers; `kept_reg: paper` switches")
    add("the code stops on the magnitude ratio once every layer measured so far reached it",
        "once every pruned layer reached it", "at the first update the code's first layer could stop alone",
        "none after the first update (tests/unit/test_greg_official.py)")
    add("the code tests after every fine-tuning epoch and keeps the best",
        "the fine-tuning checkpoint with the best validation accuracy, tested once", "the test split never chooses")
    ours_dense = "; ".join(f"dense {k} at {v:.2f} % on our test images" for k, v in (dense_acc or {}).items())
    add(_paper_base_text(paper), "; ".join(x for x in (data_text, ours_dense) if x),
        "the offline copy and the CPU budget of the `pretrain` stage: compare gains, not absolute accuracies")
    return pd.DataFrame(rows)
