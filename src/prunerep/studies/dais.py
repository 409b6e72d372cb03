"""DAIS's study: the runs that test its claims, and its tables and figures (notebooks/dais.ipynb).

The algorithm is :mod:`prunerep.methods.dais`. This module plans two sets of runs from the same
dense checkpoints and turns their records into the claims' evidence:

* **comparison** (claim 3, accuracy vs MACs): DAIS, L1-norm pruning and network slimming at the
  same MACs budgets and seeds. Every arm gets the same post-pruning fine-tuning: the same recipe,
  the same number of SGD steps (DAIS trains its weights on the part of the training split it
  does not hold out for its indicators, so the baselines' epochs are scaled by that share) and
  the same selection rule (`SELECT`). DAIS also trains its weights during its search, so two
  protocols (`COMPARISONS`):

  - **equal weight training after the checkpoint** (the verdicts): every arm takes as many SGD
    steps on its weights after the dense checkpoint as DAIS (search + fine-tuning): slimming's
    sparse training as many as DAIS's search, then the same fine-tuning; L1 (``l1-long``)
    fine-tunes for the search's and the fine-tuning's steps together (one schedule over both).
  - **equal fine-tuning only** (reported): L1 fine-tuned as long as DAIS is after its surgery,
    so DAIS has trained its weights for its search's steps more.
* **ablation** (claims 1 and 4): DAIS and DAIS without annealing (fixed temperature), without
  each regulariser, and optionally with one indicator vector per residual stream (the engine's
  structural tie alone), on one model, budget and set of seeds; paired by seed.

Claim 2 (the FLOPs target is met within 1 %) is judged on the network the search binarised,
before the budget repair that makes every final network meet the budget.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from prunerep.config import register_section
from prunerep.data import SubsetConfig
from prunerep.engine import ArchOptimConfig, OptimConfig, RuntimeConfig
from prunerep.methods.base import Budget, build_hyper
from prunerep.methods.dais import UNDECIDED, DAISHyper, Schedule, temperature_at
from prunerep.reporting.ledger import Evidence, load_claims
from prunerep.reporting.stats import (
    Interval,
    fmt_mean_std,
    mean_interval,
    mean_std,
    paired_difference,
)
from prunerep.runner import LatencySettings, RunRecord, RunSpec, StudyContext
from prunerep.studies.base import arms as _arms
from prunerep.studies.base import (
    describe_splits,
    equal_steps,
    group,
    records_by_seed,
    weight_images,
)
from prunerep.studies.base import mean_of as _mean
from prunerep.studies.base import optim_text as _epochs

#: The one selection rule of every fine-tuning in this study: the epoch with the best validation
#: accuracy (the validation split is for choices; the test split is only reported).
SELECT: Literal["best_val"] = "best_val"

#: What each run variant is, as tables and figures name it (every DAIS arm is our reconstruction).
VARIANTS: dict[str, str] = {
    "dais": "DAIS (ours)",
    "dais-no-anneal": "DAIS at a fixed temperature (no annealing)",
    "dais-cold": "DAIS at the final temperature throughout (no annealing, control)",
    "dais-no-sparsity": "DAIS without the sparsity term",
    "dais-no-flops": "DAIS without the FLOPs term",
    "dais-no-residual": "DAIS without the residual-structure term",
    "dais-stream-tie": "DAIS, one vector per residual stream (structural tie only)",
    "l1": "L1-norm + fine-tuning (DAIS's fine-tuning steps)",
    "l1-long": "L1-norm + fine-tuning for DAIS's search + fine-tuning steps",
    "slimming": "slimming: sparse training + fine-tuning",
}

#: The ablations: DAIS's hyper-parameters that each one changes.
ABLATIONS: dict[str, dict[str, Any]] = {
    "dais-no-anneal": {"schedule": "constant"},                 # T = t_start throughout
    "dais-cold": {"schedule": "constant"},                      # T = t_end throughout (`dais_hyper`)
    "dais-no-sparsity": {"lam_sparsity": 0.0},
    "dais-no-flops": {"lam_flops": 0.0},
    "dais-no-residual": {"lam_residual": 0.0},
    "dais-stream-tie": {"per_tap": False},
}

#: The ablations that remove one regulariser (claim 4's verdict rows), and what they remove.
REGULARISERS: dict[str, str] = {
    "dais-no-sparsity": "sparsity term (Eq. 8)",
    "dais-no-flops": "FLOPs term (Eq. 10)",
    "dais-no-residual": "residual-structure term (Eq. 11)",
}

BASELINES = ("l1", "l1-long", "slimming")

EQUAL_TRAINING = "equal weight training after the checkpoint"
EQUAL_FINETUNE = "equal fine-tuning only"


@dataclass(frozen=True)
class Comparison:
    """DAIS minus one baseline arm at the same model, MACs budget and seed, under one protocol."""

    protocol: str
    baseline: str                # variant of the baseline arm
    claim: str | None = None     # claims.yaml id judged on this pair (None: reported only)


#: Every comparison of claim 3; its verdicts come from the pairs with equal weight training.
COMPARISONS: tuple[Comparison, ...] = (
    Comparison(EQUAL_TRAINING, "l1-long", "dais.acc_vs_l1"),
    Comparison(EQUAL_TRAINING, "slimming", "dais.acc_vs_slimming"),
    Comparison(EQUAL_FINETUNE, "l1"),
)


# -- the params section -------------------------------------------------------------------------


@dataclass(frozen=True)
class DAISMethodConfig:
    """DAIS's knobs shared by every DAIS run (see :class:`prunerep.methods.dais.DAIS`)."""

    init_logit: float = 1.0          # initial logit (indicator sigmoid(1) = 0.73 at T = 1)
    t_start: float = 1.0             # temperature at the first search step (third party: 1)
    t_end: float = 0.02              # ... and at the last (third party: 0.02)
    schedule: Schedule = "exponential"
    lam_sparsity: float = 5.0e-3     # Eq. 8
    lam_flops: float = 20.0          # Eq. 10
    lam_residual: float = 0.1        # Eq. 11
    per_tap: bool = True             # one indicator vector per layer of a residual stream
    budget_repair: bool = True       # final widths meet the budget (in the order of the logits)
    gap_points: int = 6              # steps at which continuous and binarised accuracy are measured
    gap_images: int = 500            # validation images per measurement
    snapshots: int = 5               # indicator histograms over the search


@dataclass(frozen=True)
class CompareConfig:
    """Claim 3: DAIS against the baselines at every model x budget x seed."""

    models: list[str] = field(default_factory=lambda: ["resnet56"])
    budgets: list[float] = field(default_factory=lambda: [0.5])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))


@dataclass(frozen=True)
class AblationConfig:
    """Claims 1 and 4: DAIS and its ablations on one model and budget, paired by seed."""

    model: str = "resnet20"
    budget: float = 0.5
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    variants: list[str] = field(default_factory=lambda: ["dais-no-anneal", "dais-cold", "dais-no-sparsity",
                                                         "dais-no-flops", "dais-no-residual"])


@dataclass(frozen=True)
class OtherDatasetConfig:
    """A setting of the paper on another dataset (configuration only: not run by this pipeline)."""

    name: str
    dataset: str                     # cifar100 | imagenet (data.dataset of that run)
    model: str                       # pretrain.models key or registry name
    budgets: list[float] = field(default_factory=lambda: [0.5])
    batch_size: int = 128
    search: OptimConfig = OptimConfig(epochs=50, lr=0.05)
    finetune: OptimConfig = OptimConfig(epochs=100, lr=0.05)


@register_section("dais")
@dataclass(frozen=True)
class DAISConfig:
    """The `dais` section of params.yaml (notebooks/dais.ipynb)."""

    compare: CompareConfig = CompareConfig()
    ablation: AblationConfig = AblationConfig()
    subset: SubsetConfig = SubsetConfig()            # class-stratified data subsets (fast profiles)
    batch_size: int = 64
    arch_fraction: float = 0.2                       # share of the training split held out for the indicators
    workers: int = 1                                 # independent runs side by side (1 thread each if > 1)
    method: DAISMethodConfig = DAISMethodConfig()
    arch_optim: ArchOptimConfig = ArchOptimConfig(optimizer="adam", lr=0.05, betas=(0.5, 0.9))
    search: OptimConfig = OptimConfig(epochs=2, lr=0.01)       # weights during DAIS's search
    finetune: OptimConfig = OptimConfig(epochs=2, lr=0.01)     # every arm's post-pruning training
    baseline_scope: Literal["all", "internal"] = "all"         # the baselines prune the streams too, as DAIS
    slimming_sparsity: float = 1.0e-4
    slimming_min_keep: float = 0.1
    runtime: RuntimeConfig = RuntimeConfig(progress=False)
    latency: LatencySettings = LatencySettings()
    other_datasets: list[OtherDatasetConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0 < self.arch_fraction < 1:
            raise ValueError(f"arch_fraction must be in (0, 1), got {self.arch_fraction}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        budgets = [*self.compare.budgets, self.ablation.budget]
        if not all(0 < b < 1 for b in budgets):
            raise ValueError(f"budgets: give fractions of the dense MACs in (0, 1), got {budgets}")
        unknown = set(self.compare.baselines) - set(BASELINES)
        if unknown:
            raise ValueError(f"compare.baselines: unknown {sorted(unknown)}; choose from {list(BASELINES)}")
        unknown = set(self.ablation.variants) - set(ABLATIONS)
        if unknown:
            raise ValueError(f"ablation.variants: unknown {sorted(unknown)}; choose from {sorted(ABLATIONS)}")

    def pretrain_keys(self) -> dict[str, str]:
        """Key path (in this section) -> the pretrain.models key it names (checked by `config check`)."""
        keys = {f"compare.models[{i}]": key for i, key in enumerate(self.compare.models)} if self.compare.seeds else {}
        if self.ablation.seeds:
            keys["ablation.model"] = self.ablation.model
        return keys

    @property
    def all_models(self) -> list[str]:
        """Every pretrain.models key a run of the section prunes."""
        keys = list(self.compare.models) if self.compare.seeds else []
        if self.ablation.seeds:
            keys.append(self.ablation.model)
        return list(dict.fromkeys(keys))


# -- runs ---------------------------------------------------------------------------------------------


def equal_total_steps(search: OptimConfig, finetune: OptimConfig, arch_fraction: float,
                      n_train: int | None = None, batch_size: int | None = None) -> OptimConfig:
    """The fine-tuning recipe `finetune` stretched over as many SGD steps on the whole training split
    as DAIS takes on its weights in its search and its fine-tuning together (`equal_steps` of each,
    summed; one learning-rate schedule over them all)."""
    both = dataclasses.replace(finetune, epochs=search.epochs + finetune.epochs, max_steps=None)
    if n_train is None or batch_size is None:
        return equal_steps(both, arch_fraction)
    steps = sum(int(equal_steps(o, arch_fraction, n_train, batch_size).max_steps) for o in (search, finetune))
    return dataclasses.replace(both, max_steps=steps)


def dais_hyper(cfg: DAISConfig, variant: str = "dais") -> DAISHyper:
    """DAIS's hyper-parameters of one variant (``dais`` or a key of `ABLATIONS`)."""
    if variant != "dais" and variant not in ABLATIONS:
        raise KeyError(f"unknown DAIS variant {variant!r}; variants: {['dais', *ABLATIONS]}")
    fields = {**dataclasses.asdict(cfg.method), **ABLATIONS.get(variant, {})}
    if variant == "dais-cold":      # the constant schedule holds t_start: start where annealing ends
        fields["t_start"] = fields["t_end"]
    return DAISHyper(search=dataclasses.replace(cfg.search, batch_size=cfg.batch_size), arch_optim=cfg.arch_optim,
                     **fields)


def run_spec(cfg: DAISConfig, variant: str, model: str, budget: float, seed: int,
             n_train: int | None = None) -> RunSpec:
    """The run of one variant (see `VARIANTS`) at one model, MACs budget and seed; `n_train` (the
    training split's size) makes the baselines' steps equal to DAIS's exactly (`equal_steps`)."""
    if variant not in VARIANTS:
        raise KeyError(f"unknown variant {variant!r}; variants: {sorted(VARIANTS)}")
    ft = dataclasses.replace(cfg.finetune, batch_size=cfg.batch_size)
    hyper: Any
    finetune = ft
    if variant.startswith("dais"):
        method, hyper = "dais", dais_hyper(cfg, variant)
    else:
        method = variant
        fields: dict[str, Any] = {"scope": cfg.baseline_scope, "seed": seed}
        if variant == "slimming":
            fields.update(sparsity=cfg.slimming_sparsity, min_keep=cfg.slimming_min_keep,
                          sparse_train=equal_steps(dataclasses.replace(cfg.search, batch_size=cfg.batch_size),
                                                   cfg.arch_fraction, n_train, cfg.batch_size))
        if variant == "l1-long":
            method = "l1"
            finetune = equal_total_steps(dataclasses.replace(cfg.search, batch_size=cfg.batch_size), ft,
                                         cfg.arch_fraction, n_train, cfg.batch_size)
        else:
            finetune = equal_steps(ft, cfg.arch_fraction, n_train, cfg.batch_size)
        hyper = dataclasses.replace(build_hyper(method), **fields)
    return RunSpec(method=method, hyper=hyper, finetune=finetune, select=SELECT, budget=Budget(macs_keep=budget),
                   seed=seed, batch_size=cfg.batch_size, arch_fraction=cfg.arch_fraction, runtime=cfg.runtime,
                   model=model, label=f"{variant}@{budget:g}", tags={"variant": variant, "target": budget})


def experiments(cfg: DAISConfig) -> list[tuple[str, str, float, int]]:
    """(variant, model, budget, seed) of every run, each once: the comparison, then the ablation."""
    keys: list[tuple[str, str, float, int]] = []
    c = cfg.compare
    for model in c.models:
        for budget in c.budgets:
            for seed in c.seeds:
                keys += [(v, model, float(budget), seed) for v in ("dais", *c.baselines)]
    a = cfg.ablation
    for seed in a.seeds:
        keys += [(v, a.model, float(a.budget), seed) for v in ("dais", *a.variants)]
    return list(dict.fromkeys(keys))


def plan(cfg: DAISConfig, n_train: int | None = None) -> list[RunSpec]:
    """The spec of every run of the section (:func:`experiments`), in order (`n_train`: see `run_spec`)."""
    return [run_spec(cfg, *key, n_train=n_train) for key in experiments(cfg)]


# -- what a record holds ----------------------------------------------------------------------------


def variant_name(variant: str) -> str:
    return VARIANTS.get(variant, variant)


def run_name(record: RunRecord) -> str:
    """What a run is, as tables and figures name it: its variant's name, with slimming's per-layer
    floor when it had one (the floor is ours, not network slimming's)."""
    name = variant_name(str(record.tags.get("variant")))
    floor = float(record.hyper.get("min_keep", 0.0) or 0.0) if record.tags.get("variant") == "slimming" else 0.0
    return f"{name} ({floor:.0%} per-layer floor, ours)" if floor > 0 else name


def is_dais(record: RunRecord) -> bool:
    return str(record.tags.get("variant", "")).startswith("dais")


def end_gap(record: RunRecord) -> float:
    """|continuous − binarised| validation accuracy at the last measurement of the search (points)."""
    trace = [t for t in record.summary.get("trace", []) if "acc_continuous" in t]
    if not trace:
        return math.nan
    return abs(float(trace[-1]["acc_continuous"]) - float(trace[-1]["acc_binarised"]))


def search_error(record: RunRecord) -> float:
    """|MACs of the search's binarised network / target − 1| (before the budget repair)."""
    return abs(float(record.summary["macs_keep_search"]) / float(record.target) - 1.0)


def post_pruning_steps(record: RunRecord) -> int:
    """SGD steps of the fine-tuning after surgery."""
    hist = record.histories.get("finetune")
    return int(hist[-1]["step"]) if hist else 0


def weight_steps(record: RunRecord) -> int:
    """SGD steps on the weights after the dense checkpoint: every phase of the run (DAIS's search,
    slimming's sparse training) and its fine-tuning."""
    return sum(int(h[-1]["step"]) for h in record.histories.values() if h)


# -- tables -----------------------------------------------------------------------------------------------


def runs_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per run: cost, accuracy, fine-tuning steps, times, measured latency."""
    rows = []
    for r in records:
        s = r.summary
        row = {"model": r.model, "variant": r.tags["variant"], "target MACs": r.target, "seed": r.seed,
               "MACs kept": r.macs_keep, "params kept": r.params_keep, "test acc (%)": r.test_acc,
               "val acc (%)": r.val_acc, "test acc before fine-tuning (%)": r.test_acc_before_finetune,
               "fine-tuning steps": post_pruning_steps(r), "selection": r.selection,
               "search's binarised MACs": s.get("macs_keep_search"), "channels moved by the repair":
                   s.get("repaired_channels"), "continuous − binarised gap at the end (points)":
                   end_gap(r) if is_dais(r) else None,
               "pruning time (s)": r.pruning_time_s, "fine-tuning time (s)": r.finetune_time_s}
        for bs in (1, 64):
            if r.latency_ms(bs) is not None:
                row[f"latency bs{bs} (ms)"] = r.latency_ms(bs)
        rows.append(row)
    return pd.DataFrame(rows)


def summary_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Mean ± std over seeds per model, budget and variant."""
    rows = []
    for (model, target, _), rs in group(records, "model", "target", "variant").items():
        accs = [r.test_acc for r in rs]
        lat = [r.latency_ms(1) for r in rs if r.latency_ms(1) is not None]
        rows.append({"model": model, "MACs target": target, "what ran": run_name(rs[0]), "n": len(rs),
                     "MACs kept (fraction of dense)": sum(r.macs_keep for r in rs) / len(rs),
                     "fine-tuning steps": sum(post_pruning_steps(r) for r in rs) / len(rs),
                     "test acc (%)": fmt_mean_std(accs),
                     "test acc before fine-tuning (%)": fmt_mean_std([r.test_acc_before_finetune for r in rs]),
                     "latency bs1 (ms)": sum(lat) / len(lat) if lat else None})
    return pd.DataFrame(rows)


def _pairs(records: Sequence[RunRecord], a: str, b: str,
           value: Any = "test_acc") -> list[tuple[str, float, dict[int, float], dict[int, float]]]:
    """(model, target, a by seed, b by seed) wherever both arms ran with a seed in common."""
    arms = _arms(records)
    out = []
    for model, target in dict.fromkeys((m, t) for m, t, _ in arms):
        ra, rb = arms.get((model, target, a)), arms.get((model, target, b))
        if not ra or not rb:
            continue
        if callable(value):
            va, vb = {r.seed: float(value(r)) for r in ra}, {r.seed: float(value(r)) for r in rb}
        else:
            va, vb = records_by_seed(ra, value), records_by_seed(rb, value)
        if set(va) & set(vb):
            out.append((model, target, va, vb))
    return out


def claim1_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Claim 1: the continuous−binarised gap at the end of the search, with and without annealing,
    paired by seed (``_interval``: gap with annealing − gap at a fixed temperature T = t_start).

    Where the control at the final temperature throughout (``dais-cold``) ran, its gap and its
    search's MACs error are reported beside (not judged): a network that never leaves a near-binary
    state has a small gap by construction, and the question is then whether its search still
    moved (claim 2's error)."""
    rows = []
    cold = {(m, t): (a, b) for m, t, a, b in _pairs(records, "dais", "dais-cold", end_gap)}
    arms = _arms(records)
    for model, target, with_t, fixed in _pairs(records, "dais", "dais-no-anneal", end_gap):
        seeds = sorted(set(with_t) & set(fixed))
        diff = paired_difference(with_t, fixed)
        row = {"model": model, "MACs target": target, "n": len(seeds),
               "gap with annealing (points)": fmt_mean_std([with_t[s] for s in seeds]),
               "gap at a fixed temperature (points)": fmt_mean_std([fixed[s] for s in seeds]),
               "annealed − fixed (points, 95% CI)": str(diff)}
        if (model, target) in cold:
            a, b = cold[(model, target)]
            row["gap at the final temperature throughout (points)"] = fmt_mean_std(list(b.values()))
            row["annealed − final temperature throughout (points, 95% CI)"] = str(paired_difference(a, b))
            row["search's MACs error at the final temperature throughout"] = fmt_mean_std(
                [search_error(r) for r in arms[(model, target, "dais-cold")] if "macs_keep_search" in r.summary], 3)
        row.update({"_interval": diff, "_with": [with_t[s] for s in seeds], "_fixed": [fixed[s] for s in seeds]})
        rows.append(row)
    return pd.DataFrame(rows)


def convergence_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Claim 1's absolute test: the gap of every (annealed) DAIS run at the end of its search, one
    row per model and budget (``_interval``: mean over seeds with its 95% interval)."""
    rows = []
    for (model, target), rs in group([r for r in records if r.tags.get("variant") == "dais"], "model", "target").items():
        gaps = [end_gap(r) for r in rs]
        gaps = [g for g in gaps if not math.isnan(g)]
        if not gaps:
            continue
        iv = mean_interval(gaps)
        rows.append({"model": model, "MACs target": target, "n": len(gaps),
                     "gap at the end of the search (points)": fmt_mean_std(gaps), "largest gap (points)": max(gaps),
                     "mean gap (points, 95% CI)": str(iv), "_interval": iv})
    return pd.DataFrame(rows)


def gap_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Every DAIS run's last measurement: continuous and binarised accuracy, T, undecided share."""
    rows = []
    for r in records:
        trace = [t for t in r.summary.get("trace", []) if "acc_continuous" in t]
        if not is_dais(r) or not trace:
            continue
        t = trace[-1]
        rows.append({"model": r.model, "variant": r.tags["variant"], "MACs target": r.target, "seed": r.seed,
                     "temperature": t["temperature"], "continuous (%)": t["acc_continuous"],
                     "binarised (%)": t["acc_binarised"], "gap (points)": end_gap(r),
                     "undecided indicators at the end": r.summary.get("undecided_end"),
                     "stream layers disagreeing": r.summary.get("tap_disagreement")})
    return pd.DataFrame(rows)


def claim2_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Claim 2: per DAIS run, the MACs of the search's binarised network against the target, and of
    the final network after the budget repair (exact counts, fractions of the dense MACs)."""
    rows = []
    for r in records:
        if not is_dais(r) or "macs_keep_search" not in r.summary:
            continue
        rows.append({"model": r.model, "variant": r.tags["variant"], "MACs target": r.target, "seed": r.seed,
                     "search's binarised MACs": r.summary["macs_keep_search"],
                     "|search / target − 1|": search_error(r), "within 1%": search_error(r) <= 0.01,
                     "final network's MACs": r.macs_keep, "channels moved by the repair": r.summary.get("repaired_channels")})
    return pd.DataFrame(rows)


def claim3_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Every comparison of `COMPARISONS` that ran: DAIS minus the baseline arm, test accuracy,
    paired by seed (``_interval``). The step columns are means over seeds (`weight_steps`,
    `post_pruning_steps`), so a reader sees which pairs are equal in what; ``verdict pair`` marks
    the comparisons the claims are judged on."""
    arms = _arms(records)
    rows = []
    for model, target in dict.fromkeys((m, t) for m, t, _ in arms):
        for c in COMPARISONS:
            ra, rb = arms.get((model, target, "dais")), arms.get((model, target, c.baseline))
            if not ra or not rb:
                continue
            a, b = records_by_seed(ra), records_by_seed(rb)
            seeds = sorted(set(a) & set(b))
            if not seeds:
                continue
            diff = paired_difference(a, b)
            rows.append({"protocol": c.protocol, "model": model, "MACs target": target,
                         "baseline arm": run_name(rb[0]), "n": len(seeds),
                         "DAIS (%)": fmt_mean_std([a[s] for s in seeds]),
                         "baseline (%)": fmt_mean_std([b[s] for s in seeds]),
                         "weight steps after the checkpoint, DAIS / baseline":
                             f"{_mean(weight_steps(r) for r in ra):.0f} / {_mean(weight_steps(r) for r in rb):.0f}",
                         "fine-tuning steps, DAIS / baseline":
                             f"{_mean(post_pruning_steps(r) for r in ra):.0f} / "
                             f"{_mean(post_pruning_steps(r) for r in rb):.0f}",
                         "DAIS − baseline (points, 95% CI)": str(diff),
                         "verdict pair": "yes" if c.claim else "no",
                         "baseline": c.baseline.split("-")[0], "claim": c.claim, "_interval": diff})
    return pd.DataFrame(rows)


def claim4_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Claim 4: DAIS minus each ablation, test accuracy, paired by seed (``_interval``); ``judged``
    marks the rows that remove one regulariser (the claim's verdict rows)."""
    rows = []
    for variant in ABLATIONS:
        for model, target, a, b in _pairs(records, "dais", variant):
            seeds = sorted(set(a) & set(b))
            diff = paired_difference(a, b)
            rows.append({"model": model, "MACs target": target, "ablation": variant_name(variant), "n": len(seeds),
                         "DAIS (%)": fmt_mean_std([a[s] for s in seeds]),
                         "ablation (%)": fmt_mean_std([b[s] for s in seeds]),
                         "DAIS − ablation (points, 95% CI)": str(diff),
                         "judged (claim 4)": "yes" if variant in REGULARISERS else "no",
                         "_variant": variant, "_interval": diff})
    return pd.DataFrame(rows)


def display(table: pd.DataFrame) -> pd.DataFrame:
    """A claim table without its internal columns (those starting with "_", and claim 3's ids)."""
    hidden = {"baseline", "claim"} if "verdict pair" in table.columns else set()
    return table[[c for c in table.columns if not str(c).startswith("_") and c not in hidden]] if len(table) else table


def gain_rows(table: pd.DataFrame, x: str, label: str | None = None) -> list[dict[str, Any]]:
    """Rows for `reporting.figures.gain_plot` from a claim table's ``_interval`` column."""
    out = []
    for _, row in table.iterrows():
        iv: Interval = row["_interval"]
        item = {x: row[x], "mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "n": iv.n}
        if label:
            item["label"] = row[label]
        out.append(item)
    return out


# -- figures ------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    from prunerep.reporting.figures import plt

    return plt


def gap_figure(records: Sequence[RunRecord], model: str, target: float):
    """Validation accuracy of the continuous network (solid) and of its binarised network (dashed)
    over the search, DAIS (blue) and DAIS at a fixed temperature (red), one thin line per seed."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(6.6, 4.0))
    colours = {"dais": "C0", "dais-no-anneal": "C3", "dais-cold": "C2"}
    seeds = set()
    for r in records:
        v = r.tags["variant"]
        if r.model != model or r.target != target or v not in colours:
            continue
        trace = [t for t in r.summary.get("trace", []) if "acc_continuous" in t]
        if not trace:
            continue
        seeds.add(r.seed)
        x = [t["epoch"] for t in trace]
        ax.plot(x, [t["acc_continuous"] for t in trace], color=colours[v], lw=1.2, marker="o", ms=3)
        ax.plot(x, [t["acc_binarised"] for t in trace], color=colours[v], lw=1.2, ls="--", marker="x", ms=4)
    handles = [Line2D([], [], color="C0", lw=4, label=variant_name("dais")),
               Line2D([], [], color="C3", lw=4, label=variant_name("dais-no-anneal")),
               *([Line2D([], [], color="C2", lw=4, label=variant_name("dais-cold"))]
                 if any(r.tags["variant"] == "dais-cold" and r.model == model for r in records) else []),
               Line2D([], [], color="0.3", marker="o", ms=3, label="continuous network (indicators as they are)"),
               Line2D([], [], color="0.3", ls="--", marker="x", ms=4, label="binarised network (indicator > 0.5 → 1)")]
    ax.legend(handles=handles, fontsize=7, loc="best")
    ax.set(xlabel="search epoch", ylabel="validation accuracy (%)",
           title=f"{model}, MACs target {target:g}: continuous vs binarised over the search (seeds {sorted(seeds)})")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def histogram_figure(record: RunRecord):
    """Histograms of every indicator value at the snapshots of one run's search (log counts)."""
    plt = _pyplot()

    hists = record.summary.get("histograms", [])
    n = max(1, len(hists))
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.8), sharey=True, squeeze=False)
    for ax, h in zip(axes[0], hists, strict=False):
        bins = len(h["counts"])
        ax.bar([(i + 0.5) / bins for i in range(bins)], h["counts"], width=1.0 / bins, color="C0")
        ax.set_yscale("log")
        ax.set_xlim(0, 1)
        ax.set(title=f"step {h['step']}, T = {h['temperature']:.3g}", xlabel="indicator value")
        ax.title.set_fontsize(8)
        ax.text(0.5, 0.95, f"in {UNDECIDED}: {h['undecided']:.0%}", transform=ax.transAxes, ha="center",
                va="top", fontsize=8)
    axes[0][0].set_ylabel("indicators (log scale)")
    fig.suptitle(f"{record.model}, {variant_name(record.tags['variant'])}, MACs target {record.target:g}, seed "
                 f"{record.seed}: indicator values across annealing", fontsize=9)
    fig.tight_layout()
    return fig


def widths_figure(records: Sequence[RunRecord]):
    """Kept channels per group (model order) of several runs of one model and budget (one seed)."""
    plt = _pyplot()

    ref = next((r for r in records if "channels" in r.summary), None)
    if ref is None:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, "no DAIS run", ha="center", va="center", transform=ax.transAxes)
        return fig
    dense = ref.summary["channels"]
    residual = set(ref.summary.get("residual_groups", []))
    ids = list(dense)
    n = len(records) + 1
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(ids)), 3.6))
    xs = list(range(len(ids)))
    ax.bar([x - 0.4 + width / 2 for x in xs], [dense[g] for g in ids], width, color="0.8", label="dense")
    for i, r in enumerate(records, start=1):
        ax.bar([x - 0.4 + width / 2 + i * width for x in xs], [r.widths.get(g, 0) for g in ids], width,
               label=f"{run_name(r)} ({r.macs_keep:.0%} MACs)")
    ax.set_xticks(xs, [f"{g} (stream)" if g in residual else g for g in ids], rotation=90, fontsize=6)
    ax.set(ylabel="channels", title=f"{ref.model}, seed {ref.seed}: kept channels per group")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# -- captions and evidence --------------------------------------------------------------------------------


def budget_text(cfg: DAISConfig, ctx: StudyContext) -> str:
    """One sentence on the compute budget behind every number (captions and the ledger)."""
    n_train = len(ctx.splits.train)
    n_arch = n_train - weight_images(n_train, cfg.arch_fraction, cfg.batch_size)
    a, c = cfg.ablation, cfg.compare
    return (f"Profile `{ctx.profile}`: {n_train} training images ({n_train - n_arch} for DAIS's weights, {n_arch} held "
            f"out for its indicators), batch {cfg.batch_size}; DAIS search {_epochs(cfg.search)}; every arm's "
            f"fine-tuning {_epochs(cfg.finetune)} over DAIS's part (as many SGD steps for the baselines), best "
            f"validation epoch; slimming's sparse training as many steps as DAIS's search; L1 also fine-tuned for "
            f"DAIS's search + fine-tuning steps (the verdicts' pair); comparison on "
            f"{', '.join(c.models)} at {', '.join(f'{b:g}' for b in c.budgets)} of the MACs, seeds {list(c.seeds)}; "
            f"ablations on {a.model} at {a.budget:g}, seeds {list(a.seeds)}; {describe_splits(ctx)}.")


def evidence(cfg: DAISConfig, records: Sequence[RunRecord], budget: str) -> list[Evidence]:
    """The claims' evidence by the one verdict rule (references/claims/dais.yaml ids dais.*)."""
    claims = load_claims()
    out: list[Evidence] = []
    c1 = claim1_table(records)
    for _, row in c1.iterrows():
        out.append(Evidence.judge(
            claims["dais.annealing_gap"], row["_interval"],
            test=f"|continuous − binarised| validation accuracy at the end of the search, annealed − fixed "
                 f"temperature (T = {cfg.method.t_start:g}), {row['model']} at {row['MACs target']:g} of the MACs, "
                 f"paired by seed",
            ours=f"{row['_interval']}; gaps {row['gap with annealing (points)']} vs "
                 f"{row['gap at a fixed temperature (points)']}", budget=budget))
    if not len(c1):
        out.append(Evidence.judge(claims["dais.annealing_gap"], None, test="DAIS vs DAIS at a fixed temperature: "
                                  "not run at this profile", budget=budget))
    conv = convergence_table(records)
    bound = claims["dais.annealing_converges"]
    for _, row in conv.iterrows():
        out.append(Evidence.judge(
            bound, row["_interval"],
            test=f"|continuous − binarised| validation accuracy at the end of DAIS's annealed search (T = "
                 f"{cfg.method.t_end:g} at the end), {row['model']} at {row['MACs target']:g} of the MACs, mean over "
                 f"seeds", ours=f"{row['_interval']}; largest {row['largest gap (points)']:.2f}", budget=budget))
    if not len(conv):
        out.append(Evidence.judge(bound, None, test="DAIS's end-of-search gap: not measured at this profile",
                                  budget=budget))
    full = [r for r in records if r.tags["variant"] == "dais" and "macs_keep_search" in r.summary]
    for (model, target), rs in group(full, "model", "target").items():     # one row per setting, never pooled
        errors = [search_error(r) for r in rs]
        final = [r.macs_keep / float(r.target) - 1.0 for r in rs]
        out.append(Evidence.judge(
            claims["dais.budget_met"], mean_interval(errors),
            test=f"|MACs of the search's binarised network / target − 1| of every DAIS run (exact count, before "
                 f"the budget repair), {model} at {target:g} of the MACs",
            ours=f"max {max(errors):.2e}, mean {sum(errors) / len(errors):.2e} (n={len(errors)})", budget=budget,
            note=(f"after the repair every final network is within the budget: final / target − 1 from "
                  f"{min(final):+.2e} to {max(final):+.2e}")))
    if not full:
        out.append(Evidence.judge(claims["dais.budget_met"], None, test="DAIS's search: not run at this profile",
                                  budget=budget))
    c3 = claim3_table(records)
    for cid in ("dais.acc_vs_l1", "dais.acc_vs_slimming"):
        rows = c3[c3["claim"] == cid] if len(c3) else c3
        if not len(rows):
            out.append(Evidence.judge(claims[cid], None, test="DAIS − baseline at equal MACs and equal weight "
                                      "training after the checkpoint: not run at this profile", budget=budget))
            continue
        for _, row in rows.iterrows():
            others = c3[(c3["baseline"] == row["baseline"]) & (c3["verdict pair"] == "no")
                        & (c3["model"] == row["model"]) & (c3["MACs target"] == row["MACs target"])]
            other_text = "; ".join(f"{o['protocol']} ({o['baseline arm']}): {o['DAIS − baseline (points, 95% CI)']}"
                                   for _, o in others.iterrows())
            out.append(Evidence.judge(
                claims[cid], row["_interval"],
                test=f"DAIS − {row['baseline arm']}, test accuracy (points), {row['model']} at "
                     f"{row['MACs target']:g} of the MACs, equal weight training after the checkpoint and the same "
                     f"selection, paired by seed",
                budget=budget,
                note=(f"weight steps after the checkpoint, DAIS / baseline: "
                      f"{row['weight steps after the checkpoint, DAIS / baseline']}; fine-tuning steps: "
                      f"{row['fine-tuning steps, DAIS / baseline']}"
                      + (f". Not judged: {other_text}" if other_text else ""))))
    c4 = claim4_table(records)
    judged = c4[c4["judged (claim 4)"] == "yes"] if len(c4) else c4
    for _, row in judged.iterrows():
        out.append(Evidence.judge(
            claims["dais.regularisers"], row["_interval"],
            test=f"DAIS − DAIS without the {REGULARISERS[row['_variant']]}, test accuracy (points), {row['model']} "
                 f"at {row['MACs target']:g} of the MACs, paired by seed", budget=budget))
    if not len(judged):
        out.append(Evidence.judge(claims["dais.regularisers"], None, test="ablations: not run at this profile",
                                  budget=budget))
    out.append(Evidence.judge(claims["dais.cifar100_imagenet"], None,
                              test="configured in the paper profile (other_datasets); not run: this project has no "
                                   "data of those datasets", budget=budget))
    return out


def other_datasets_table(cfg: DAISConfig) -> pd.DataFrame:
    """The configured CIFAR-100 / ImageNet settings (not run by this pipeline)."""
    cols = ["name", "dataset", "model", "MACs budgets", "batch", "search epochs", "fine-tuning epochs"]
    return pd.DataFrame([{"name": o.name, "dataset": o.dataset, "model": o.model,
                          "MACs budgets": ", ".join(f"{b:g}" for b in o.budgets), "batch": o.batch_size,
                          "search epochs": o.search.epochs, "fine-tuning epochs": o.finetune.epochs}
                         for o in cfg.other_datasets], columns=cols)


def _range(values: Sequence[float], fmt: str = ".2f") -> str:
    xs = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not xs:
        return "—"
    return f"{min(xs):{fmt}} to {max(xs):{fmt}}" if len(xs) > 1 else f"{xs[0]:{fmt}}"


#: A temperature below which sigmoid(α/T) is nearly a step for the logits of a search (|α| > 0.1
#: gives I < 0.27 or > 0.73 at T = 0.1): the deviations table says how much of the search each
#: schedule spends below it.
COLD = 0.1


def cold_share(method: DAISMethodConfig, schedule: Schedule, steps: int = 1000) -> float:
    """Share of a search's steps at which `schedule` from ``t_start`` to ``t_end`` is below `COLD`."""
    temps = [temperature_at(k, steps, method.t_start, method.t_end, schedule) for k in range(steps)]
    return sum(t < COLD for t in temps) / steps


def deviations_table(cfg: DAISConfig, records: Sequence[RunRecord]) -> pd.DataFrame:
    """Assumptions and deviations: the paper's | ours | why | measured effect (from the runs)."""
    m = cfg.method
    dais_runs = [r for r in records if r.tags["variant"] == "dais"]
    moved = [float(r.summary.get("repaired_channels", 0)) for r in dais_runs]
    total = [float(sum(r.summary.get("channels", {}).values())) for r in dais_runs]
    moved_share = [a / b for a, b in zip(moved, total, strict=True) if b]
    undecided = [r.summary.get("undecided_end") for r in dais_runs]
    disagree = {v: [r.summary.get("tap_disagreement") for r in records if r.tags["variant"] == v]
                for v in ("dais", "dais-no-residual")}
    checks = [r.summary.get("exactness", {}).get("max_abs_diff") for r in records if is_dais(r)]
    c4 = claim4_table(records)
    tie = c4[c4["_variant"] == "dais-stream-tie"] if len(c4) else c4
    rows = [
        ("relaxed indicator sigmoid(α/T) per channel (Eq. 7)",
         "the same, at the output of every BN of the channel's group (after BN, before the ReLU)",
         "the third party's position", "—"),
        ("one indicator per layer; residual-structure ties (Eq. 11, form not read)",
         f"one vector per layer of a residual stream (per_tap={m.per_tap}), merged at binarisation (mean logit > 0); "
         f"R_r = Σ_c Σ_t (I_tc − mean_t I_tc)², λ_r = {m.lam_residual:g}",
         "the engine couples a stream's channels into one group: surgery keeps a stream channel in every layer or "
         "in none; the term makes the layers agree before the merge",
         f"stream layers disagreeing at the end: DAIS {_range(disagree['dais'])}, without the term "
         f"{_range(disagree['dais-no-residual'])}" + (f"; DAIS − structural tie only: {tie.iloc[0]['DAIS − ablation (points, 95% CI)']}"
                                                      if len(tie) else "")),
        ("sparsity Σ_l ||I_l||₁ (Eq. 8)", f"the same, λ_s = {m.lam_sparsity:g}", "λ not retrieved", "claim 4"),
        ("expected FLOPs Σ_l p_l ||I_l−1||₁ ||I_l||₁ (Eq. 9)",
         "the project's exact bilinear MACs of the soft widths Σ_c sigmoid(mean_t α/T) (conv and linear layers, "
         "linear terms for fixed inputs and outputs)",
         "equals the exact MACs of the binarised network at 0/1 indicators (tested)", "—"),
        ("FLOPs regulariser pushing E[F] to the target (Eq. 10, form not read)",
         f"|log(E[F]/F_target)|, λ_F = {m.lam_flops:g}",
         "the third party's ±log E[F] has the same gradient but jumps at the target", "claim 2"),
        ("annealing schedule (not read)",
         f"{m.schedule}, T from {m.t_start:g} to {m.t_end:g} over the search, per step",
         f"the third party's endpoints (1 → 0.02). With T from {m.t_start:g} to {m.t_end:g} the hyperbolic schedule "
         f"(`schedule: hyperbolic`, the third party's 1/(1 + 49e/E) for those endpoints) is below T = {COLD:g} for "
         f"the last {cold_share(m, 'hyperbolic'):.0%} of the search, the exponential one for the last "
         f"{cold_share(m, 'exponential'):.0%}: a logit must cross 0 while the sigmoid still passes a gradient, and "
         f"a short search has few steps to do it",
         f"indicators in {UNDECIDED} at the end: {_range(undecided, '.1%')}"),
        ("bi-level optimisation (details deferred to DARTS)",
         f"first-order alternation: one weight step (indicators constant), one indicator step on a held-out batch "
         f"(Adam, lr {cfg.arch_optim.lr:g}, betas {tuple(cfg.arch_optim.betas)}); {cfg.arch_fraction:.0%} of the "
         f"training split held out; logits start at {m.init_logit:g}",
         "the third party holds out 30%; the runner fine-tunes a bi-level method on the part it trains its weights "
         "on, so a larger held-out part costs DAIS fine-tuning data the baselines keep", "—"),
        ("binarisation I > 0.5, removal, fine-tuning",
         "the same, at least one channel per group; then the largest network within the budget in the order of "
         "the merged logits (budget repair), removed by the engine's surgery",
         "every arm of claim 3 at equal MACs",
         f"channels moved by the repair: {_range(moved_share, '.1%')} of all; binarised vs pruned network, largest "
         f"logit change {_range(checks, '.1e')}"),
        ("L1 and slimming as in the literature",
         f"the same groups (scope `{cfg.baseline_scope}`), the same checkpoint; slimming s = {cfg.slimming_sparsity:g}, "
         f"per-group floor {cfg.slimming_min_keep:.0%}; fine-tuning with equal SGD steps and the same selection",
         "equal budgets; a short sparse phase can empty a layer without a floor", "—"),
        ("the paper's networks and recipes (not transcribed)",
         "class-stratified subsets, a few epochs, briefly trained dense checkpoints; ablations on "
         f"{cfg.ablation.model}", "CPU budget: absolute accuracies are far below the paper's", "—"),
        ("the paper's other datasets", "configured in the `paper` profile (other_datasets), not run",
         "datasets not shipped", "—"),
    ]
    return pd.DataFrame(rows, columns=["the paper's", "ours", "why", "measured effect"])


def metrics(records: Sequence[RunRecord], claims: pd.DataFrame, profile: str) -> dict[str, Any]:
    """Headline scalars for DVC metrics: mean test accuracy per arm, the claims' verdicts."""
    out: dict[str, Any] = {"profile": profile, "runs": len(records)}
    for (model, target, variant), rs in group(records, "model", "target", "variant").items():
        out[f"{model}/{variant}@{target:g}/test_acc_mean"] = mean_std([r.test_acc for r in rs])[0]
    errors = [search_error(r) for r in records if r.tags["variant"] == "dais" and "macs_keep_search" in r.summary]
    out["claim2/max_search_macs_error"] = max(errors) if errors else None
    seen: dict[str, int] = {}
    for row in claims.itertuples(index=False):
        k = seen[row.claim] = seen.get(row.claim, -1) + 1
        out[f"verdict/{row.claim}" + (f"#{k + 1}" if k else "")] = row.verdict
    return out


def records_of(records: Sequence[RunRecord], **match: Any) -> list[RunRecord]:
    """Records whose attributes or tags equal every `match` value."""
    out = []
    for r in records:
        if all((getattr(r, k) if hasattr(r, k) else r.tags.get(k)) == v for k, v in match.items()):
            out.append(r)
    return out


def dense_rows(dense: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The dense checkpoints' test accuracy and latency (the reference of every figure)."""
    return pd.DataFrame([{"model": m, "test acc (%)": d["test_acc"], "MACs": d["macs"],
                          "latency bs1 (ms)": d.get("batch_1_ms")} for m, d in dense.items()])
