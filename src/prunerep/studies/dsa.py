"""DSA's study: the runs that test its claims, and its tables and figures (notebooks/dsa.ipynb).

The algorithm is :mod:`prunerep.methods.dsa`. This module plans the grids of DSA runs with the
uniform-allocation control (claim 1), the timing pairs of claims 2-3 (DSA from scratch beside
the traditional flow: pretraining + iterative pruning with a validation sensitivity scan,
:mod:`prunerep.methods.sensitivity` in a `prunerep.runner.IterativeSpec`, with DSA's recipes at
equal SGD steps), and turns run records into tables, figures and claim evidence (claim 4: every
DSA run's budget).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

from prunerep.config import register_section
from prunerep.data import SubsetConfig
from prunerep.engine import ArchOptimConfig, OptimConfig, RuntimeConfig
from prunerep.methods.base import Budget
from prunerep.methods.dsa import Allocation, DSAHyper, Importance, uniform_widths
from prunerep.reporting.ledger import Evidence, load_claims
from prunerep.reporting.paper import NOT_TRANSCRIBED
from prunerep.reporting.stats import Interval, fmt_mean_std, mean_interval, paired_difference
from prunerep.runner import IterativeSpec, LatencySettings, RunRecord, RunSpec, StudyContext
from prunerep.studies.base import equal_steps
from prunerep.studies.base import optim_text as _epochs

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class DSAMethodConfig:
    """Constructor arguments of the `dsa` method shared by every run (see :class:`DSA`)."""

    importance: Importance = "l1"      # l1 | primal_l1 (official primal-module rule) | bn
    init_logit: float = 5.0            # a_0 (official), alpha_0 = sigmoid(5) ~ 0.993
    beta2: float = 1.0                 # sigmoid slope (official, not trained)
    ramp: float = 0.5                  # fraction of the search over which the budget tightens (reconstruction)
    min_keep: float = 0.0              # floor of the keep ratios (also >= 1/C and 0.011)
    log_every: int = 10                # steps between points of the budget trace
    placement: Literal["input", "output"] = "input"   # masks at the readers' inputs (official: output of BN)


@dataclass(frozen=True)
class GridConfig:
    """A grid of DSA runs: every combination of the lists below."""

    models: list[str] = field(default_factory=lambda: ["resnet20"])     # pretrain.models keys
    inits: list[Literal["pretrained", "scratch"]] = field(default_factory=lambda: ["pretrained"])
    budgets: list[float] = field(default_factory=lambda: [0.5])         # fraction of the dense MACs kept
    allocations: list[Allocation] = field(default_factory=lambda: ["learned"])  # learned | uniform (control)
    seeds: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        for b in self.budgets:
            if not 0 < b <= 1:
                raise ValueError(f"budgets: {b} is not a fraction of the dense MACs in (0, 1]")
        for name in ("models", "inits", "budgets", "allocations", "seeds"):
            if not getattr(self, name):
                raise ValueError(f"{name}: empty, so this grid runs nothing; give at least one value, "
                                 "or delete the grid")


@dataclass(frozen=True)
class TimingConfig:
    """Claims 2 and 3: DSA from scratch against the traditional flow, pretraining + iterative
    budgeted pruning that searches its allocation at every step, timed side by side.

    The traditional flow's recipes are DSA's, so that only the flows differ: pretraining =
    ``search_scratch`` (DSA's weights also start from scratch), every fine-tuning = ``finetune``,
    each with the same number of SGD steps as its DSA counterpart (DSA trains its weights on the
    ``1 - arch_fraction`` of the training split it does not hold out, so the baseline's epochs
    are scaled by that share). Its allocation search is `prunerep.methods.sensitivity`.
    """

    enabled: bool = True
    model: str = "resnet20"       # the claim is not about one network: the cheaper one
    budget: float = 0.5
    seeds: list[int] = field(default_factory=lambda: [0])
    steps: int = 3                # prune + fine-tune steps of the baseline (geometric MACs schedule)
    levels: list[float] = field(default_factory=lambda: [0.75, 0.5, 0.25])   # keep fractions scanned per group
    scan_images: int | None = 512  # validation images per scanned candidate (None: the whole split)

    def __post_init__(self) -> None:
        if not 0 < self.budget <= 1:
            raise ValueError(f"budget: {self.budget} is not a fraction of the dense MACs in (0, 1]; "
                             "e.g. 0.5 keeps half of them")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.enabled and not self.seeds:
            raise ValueError("seeds: give at least one seed, or set timing.enabled: false")


@dataclass(frozen=True)
class ImageNetConfig:
    """ImageNet settings of the released checkpoints (configuration only: needs ImageNet + a GPU)."""

    models: dict[str, list[float]] = field(
        default_factory=lambda: {"torchvision:resnet18": [0.6], "torchvision:resnet50": [0.6, 0.5]})
    batch_size: int = 256
    search: OptimConfig = OptimConfig(epochs=30, lr=0.01, schedule="cosine", weight_decay=1e-4)
    finetune: OptimConfig = OptimConfig(epochs=60, lr=0.01, schedule="cosine", weight_decay=1e-4)


@register_section("dsa")
@dataclass(frozen=True)
class DSAConfig:
    """The `dsa` section of params.yaml: the runs of the notebook and their recipes."""

    grids: list[GridConfig] = field(default_factory=lambda: [GridConfig()])  # union; duplicates run once
    timing: TimingConfig = TimingConfig()
    subset: SubsetConfig = SubsetConfig()        # class-stratified data subsets (fast profiles)
    batch_size: int = 128
    arch_fraction: float = 0.1                   # share of the training split for the keep ratios
    workers: int = 1                             # independent runs side by side (1 thread each if > 1)
    method: DSAMethodConfig = DSAMethodConfig()
    arch_optim: ArchOptimConfig = ArchOptimConfig(optimizer="sgd", lr=0.01)
    search: OptimConfig = OptimConfig(epochs=1, lr=0.01)           # weights, from a pretrained model
    search_scratch: OptimConfig = OptimConfig(epochs=1, lr=0.1)    # weights, from scratch
    finetune: OptimConfig = OptimConfig(epochs=1, lr=0.01)
    runtime: RuntimeConfig = RuntimeConfig(progress=False)
    latency: LatencySettings = LatencySettings()
    imagenet: ImageNetConfig = ImageNetConfig()

    def __post_init__(self) -> None:
        if not 0 < self.arch_fraction < 1:
            raise ValueError(f"arch_fraction must be in (0, 1), got {self.arch_fraction}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.method.min_keep < 1:
            raise ValueError(f"method.min_keep: {self.method.min_keep} is not a floor of the keep ratios in [0, 1)")
        if not self.grids and not self.timing.enabled:
            raise ValueError("grids: empty and timing disabled, so the stage runs nothing; give a grid")

    def pretrain_keys(self) -> dict[str, str]:
        """Key path (in this section) -> the pretrain.models key it names (checked by `config check`)."""
        keys = {f"grids[{i}].models[{j}]": key for i, g in enumerate(self.grids) for j, key in enumerate(g.models)}
        if self.timing.enabled:
            keys["timing.model"] = self.timing.model
        return keys


# ---------------------------------------------------------------------------------------------
# the notebook's experiments

#: Settings on which DSA's reconstruction was calibrated during development (mask placement and
#: the metric of the budget projection, chosen on the validation split from one seed pair of
#: learned vs uniform allocation). A claim-1 row on such a setting is labelled as calibration.
CALIBRATION_SETTINGS: tuple[tuple[str, str, float], ...] = (("resnet20", "pretrained", 0.33),)

#: What each arm is, in tables and figures (says what ran; the baseline flow is our construction).
ARM_NAMES = {
    ("pretrained", "learned"): "DSA",
    ("pretrained", "uniform"): "uniform allocation (control)",
    ("scratch", "learned"): "DSA from scratch",
    ("scratch", "uniform"): "uniform allocation from scratch (control)",
    ("scratch", "iterative_sensitivity"): "pretraining + iterative sensitivity pruning (ours)",
}


def arm_name(init: str, allocation: str) -> str:
    return ARM_NAMES.get((init, allocation), f"{allocation} ({init})")


def is_calibration(model: str, init: str, budget: float) -> bool:
    return any(model == m and init == i and abs(budget - b) < 1e-9 for m, i, b in CALIBRATION_SETTINGS)


@dataclass(frozen=True)
class Experiment:
    """One run of the notebook: a DSA run (``kind="dsa"``) or the traditional flow (``"iterative"``)."""

    model: str
    init: str
    budget: float
    allocation: str       # learned | uniform | iterative_sensitivity
    seed: int
    kind: str = "dsa"

    @property
    def label(self) -> str:
        return f"{self.model}-{self.init}-{self.allocation}-b{self.budget:g}"


def plan_experiments(cfg: DSAConfig) -> list[Experiment]:
    """Every run of the section, without duplicates.

    The timing pairs come first, DSA and the baseline of one seed next to each other, so that
    with two workers both arms run beside another training process under the same load.
    """
    runs: list[Experiment] = []
    t = cfg.timing
    if t.enabled:
        for seed in t.seeds:
            runs += [Experiment(t.model, "scratch", float(t.budget), "learned", seed),
                     Experiment(t.model, "scratch", float(t.budget), "iterative_sensitivity", seed, kind="iterative")]
    for grid in cfg.grids:
        for model in grid.models:
            for init in grid.inits:
                for budget in grid.budgets:
                    for allocation in grid.allocations:
                        for seed in grid.seeds:
                            runs.append(Experiment(model, init, float(budget), allocation, seed))
    return list(dict.fromkeys(runs))


def build_spec(cfg: DSAConfig, exp: Experiment) -> RunSpec | IterativeSpec:
    """The `RunSpec` (or `IterativeSpec`) of one experiment."""
    common = {"seed": exp.seed, "batch_size": cfg.batch_size, "arch_fraction": cfg.arch_fraction,
              "runtime": cfg.runtime, "label": exp.label, "model": exp.model, "tags": dataclasses.asdict(exp)}
    budget = Budget(macs_keep=exp.budget)
    if exp.kind == "iterative":
        t = cfg.timing
        finetune = equal_steps(cfg.finetune, cfg.arch_fraction)
        step = RunSpec(method="sensitivity", budget=budget, finetune=finetune,
                       hyper={"scope": "all", "levels": list(t.levels), "scan_images": t.scan_images}, **common)
        return IterativeSpec(step, steps=t.steps, step_finetune=finetune,
                             pretrain=equal_steps(cfg.search_scratch, cfg.arch_fraction))
    search = cfg.search_scratch if exp.init == "scratch" else cfg.search
    hyper = DSAHyper(**dataclasses.asdict(cfg.method), search=search, arch_optim=cfg.arch_optim, init=exp.init,
                     allocation=exp.allocation)
    return RunSpec(method="dsa", budget=budget, hyper=hyper, finetune=cfg.finetune, **common)


def plan(cfg: DSAConfig) -> list[RunSpec | IterativeSpec]:
    """The spec of every experiment of the section (:func:`plan_experiments`), in order."""
    return [build_spec(cfg, exp) for exp in plan_experiments(cfg)]


# ---------------------------------------------------------------------------------------------
# tables of the notebook


def _pyplot() -> Any:
    from prunerep.reporting.figures import plt

    return plt


def process_time_s(record: RunRecord) -> float:
    """Wall time of the pruning process: the sum of its phases, from the initial network (random
    for the from-scratch flows) to the fine-tuned pruned one, validation included; the record's
    `wall_time_s` adds data loading and test-split evaluations, which are reporting, not pruning
    (and which the iterative flow repeats at every step)."""
    return float(sum(record.phase_time_s.values()))


def results_frame(results: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per run: the experiment, accuracy, achieved MACs, its distance to the budget, times."""
    import pandas as pd

    rows = []
    for r in results:
        e, row = r.tags, r.row()
        rows.append({**e, "arm": arm_name(e["init"], e["allocation"]), "test_acc": row["test_acc"],
                     "val_acc": row["val_acc"], "test_acc_before_finetune": row["test_acc_before_finetune"],
                     "macs_keep": row["macs_keep"], "params_keep": row["params_keep"],
                     "budget_error": row["macs_keep"] / e["budget"] - 1.0,
                     "process_time_s": process_time_s(r), "wall_time_s": r.wall_time_s,
                     "cpu_time_s": r.process_time_s, "latency_batch_1_ms": r.latency_ms(1)})
    return pd.DataFrame(rows)


def accuracy_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per model / arm / budget: test accuracy mean ± std (n), validation, before fine-tuning, MACs."""
    import pandas as pd

    rows = []
    for (model, arm, budget), part in df.groupby(["model", "arm", "budget"], sort=False):
        rows.append({"model": model, "arm": arm, "MACs budget (fraction of dense)": budget,
                     "test acc (%)": fmt_mean_std(list(part["test_acc"])),
                     "val acc (%)": fmt_mean_std(list(part["val_acc"])),
                     "test acc before fine-tuning (%)": fmt_mean_std(list(part["test_acc_before_finetune"])),
                     "achieved MACs (fraction of dense)": float(part["macs_keep"].mean()),
                     "n": len(part), "_init": part["init"].iloc[0], "_allocation": part["allocation"].iloc[0],
                     "_test_acc_mean": float(part["test_acc"].mean())})
    return pd.DataFrame(rows)


def claim1_table(df: pd.DataFrame) -> pd.DataFrame:
    """Claim 1: learned vs uniform allocation, paired by seed (same data order and fine-tuning).

    One row per (model, init, budget) that has both arms; ``_interval`` is the paired 95%
    t-interval of learned − uniform that :func:`evidence` judges by the project's one rule.
    """
    import pandas as pd

    rows = []
    sel = df[df["kind"] == "dsa"]
    for (model, init, budget), part in sel.groupby(["model", "init", "budget"], sort=False):
        learned = part[part["allocation"] == "learned"].set_index("seed")["test_acc"]
        uniform = part[part["allocation"] == "uniform"].set_index("seed")["test_acc"]
        seeds = sorted(set(learned.index) & set(uniform.index))
        if not seeds:
            continue
        diff = learned.loc[seeds] - uniform.loc[seeds]
        interval = paired_difference(learned.loc[seeds].to_dict(), uniform.loc[seeds].to_dict())
        rows.append({"model": model, "init": init, "budget": budget, "n": len(seeds),
                     "calibration setting": "yes" if is_calibration(model, init, budget) else "no",
                     "DSA (%)": fmt_mean_std(list(learned.loc[seeds])),
                     "uniform (%)": fmt_mean_std(list(uniform.loc[seeds])),
                     "learned − uniform (points), 95% CI": str(interval),
                     "seeds DSA better": int((diff > 0).sum()), "_interval": interval})
    return pd.DataFrame(rows)


def gain_rows(claim1: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows for `reporting.figures.gain_plot`: the paired learned − uniform gain per setting."""
    rows = []
    for _, r in claim1.iterrows():
        iv = r["_interval"]
        rows.append({"setting": f"{r['model']}, {r['init']}, {r['budget']:g}", "mean": iv.mean, "lo": iv.lo,
                     "hi": iv.hi, "n": iv.n,
                     "label": "calibration setting" if r["calibration setting"] == "yes" else "held-out setting"})
    return rows


def _timing_records(results: Sequence[RunRecord], cfg: DSAConfig) -> dict[str, dict[int, RunRecord]]:
    """The two arms of the timing pairs, by seed: ``{"dsa": {seed: record}, "baseline": {...}}``."""
    t = cfg.timing
    out: dict[str, dict[int, RunRecord]] = {"dsa": {}, "baseline": {}}
    for r in results:
        e = r.tags
        if (e["model"], e["init"], e["budget"]) != (t.model, "scratch", float(t.budget)) or e["seed"] not in t.seeds:
            continue
        if e["kind"] == "dsa" and e["allocation"] == "learned":
            out["dsa"][e["seed"]] = r
        elif e["kind"] == "iterative":
            out["baseline"][e["seed"]] = r
    return out


def claim2_runs(results: Sequence[RunRecord], cfg: DSAConfig) -> pd.DataFrame:
    """Claims 2 and 3, per run: accuracy, achieved MACs and where the time of each flow went."""
    import pandas as pd

    rows = []
    arms = _timing_records(results, cfg)
    for key in ("dsa", "baseline"):
        for seed, r in sorted(arms[key].items()):
            ph = r.phase_time_s
            rows.append({"arm": arm_name("scratch", r.tags["allocation"]), "seed": seed, "test acc (%)": r.test_acc,
                         "achieved MACs (fraction of dense)": r.macs_keep,
                         "pretraining (s)": ph.get("pretrain", 0.0),
                         "search or prune + scan (s)": ph.get("search", 0.0) + ph.get("prune", 0.0)
                         + ph.get("prepare", 0.0) + ph.get("surgery", 0.0),
                         "intermediate fine-tuning (s)": ph.get("step_finetune", 0.0),
                         "final fine-tuning (s)": ph.get("finetune", 0.0),
                         "pruning process (s)": process_time_s(r), "run wall time (s)": r.wall_time_s,
                         "run CPU time (s)": r.process_time_s})
    return pd.DataFrame(rows)


def claim2_pairs(results: Sequence[RunRecord], cfg: DSAConfig) -> pd.DataFrame:
    """Per seed: baseline time / DSA time (in the claim's direction: >= 1.5 supports it) on the
    pruning process and on the whole run, and DSA − baseline test accuracy."""
    import pandas as pd

    arms = _timing_records(results, cfg)
    rows = []
    for seed in sorted(set(arms["dsa"]) & set(arms["baseline"])):
        d, b = arms["dsa"][seed], arms["baseline"][seed]
        rows.append({"seed": seed, "baseline time / DSA time (pruning process)": process_time_s(b) / process_time_s(d),
                     "baseline time / DSA time (run wall time)": (b.wall_time_s or math.nan) / (d.wall_time_s or math.nan),
                     "DSA − baseline test acc (points)": d.test_acc - b.test_acc})
    return pd.DataFrame(rows)


def claim4_table(df: pd.DataFrame, tolerance: float = 0.01) -> pd.DataFrame:
    """Claim 4: achieved MACs of every final DSA network vs its budget (exact count, within 1%)."""

    sel = df[df["kind"] == "dsa"]
    out = sel.groupby(["model", "init", "allocation", "budget"], sort=False).agg(
        n=("seed", "count"), macs_keep_min=("macs_keep", "min"), macs_keep_max=("macs_keep", "max"),
        max_abs_error=("budget_error", lambda s: s.abs().max())).reset_index()
    out["within 1%"] = out["max_abs_error"] <= tolerance
    return out.rename(columns={"macs_keep_min": "achieved MACs min (fraction of dense)",
                               "macs_keep_max": "achieved MACs max (fraction of dense)",
                               "max_abs_error": "max |achieved / budget − 1|"})


def allocation_frame(results: Sequence[RunRecord]) -> pd.DataFrame:
    """Per run and group: dense channels, final width and keep ratio (``width / channels``)."""
    import pandas as pd

    rows = []
    for r in results:
        e, s = r.tags, r.summary
        if e["kind"] != "dsa" or "channels" not in s:
            continue
        for order, (gid, c) in enumerate(s["channels"].items()):
            rows.append({**e, "group": gid, "order": order, "channels": c, "width": s["widths"][gid],
                         "keep": s["widths"][gid] / c, "alpha": s["alpha"][gid]})
    return pd.DataFrame(rows)


def with_uniform_reference(alloc: pd.DataFrame, ctx: StudyContext) -> pd.DataFrame:
    """`alloc` plus the uniform allocation's widths ("uniform (computed)") for every (model, init,
    budget) without a uniform run: what the uniform control ends with, no training needed."""
    import pandas as pd

    ref = uniform_reference(alloc, ctx)
    return pd.concat([alloc, ref], ignore_index=True) if len(ref) else alloc


def uniform_reference(alloc: pd.DataFrame, ctx: StudyContext) -> pd.DataFrame:
    """Uniform-allocation widths for every (model, init, budget) of `alloc` that has no uniform run."""
    import pandas as pd

    rows = []
    computed: dict[tuple[str, float], dict[str, int]] = {}
    for (model, init, budget), part in alloc.groupby(["model", "init", "budget"], sort=False):
        if (part["allocation"] == "uniform").any():
            continue
        key = (model, float(budget))
        if key not in computed:
            computed[key] = uniform_widths(ctx.load_dense(model), float(budget), torch.zeros(ctx.example_shape))
        widths = computed[key]
        channels = part.drop_duplicates("group").set_index("group")["channels"]
        for order, gid in enumerate(widths):
            rows.append({"model": model, "init": init, "budget": budget, "allocation": "uniform (computed)",
                         "seed": -1, "kind": "reference", "group": gid, "order": order,
                         "channels": int(channels[gid]), "width": widths[gid],
                         "keep": widths[gid] / int(channels[gid]), "alpha": float("nan")})
    return pd.DataFrame(rows)


def paper_row_names(model: str, init: str, budget: float) -> list[str]:
    """Row names of references/paper_results/dsa.yaml a DSA result may match (most specific first)."""
    return [f"DSA {model} {init} b={budget:g}", f"DSA {model} b={budget:g}"]


def paper_column(acc: pd.DataFrame, paper: pd.DataFrame) -> list[str]:
    """The paper's printed accuracy for each row of :func:`accuracy_table` that is a DSA arm
    ("not transcribed" without an entry, "—" for controls and baselines). `paper` holds the
    paper's entries on this run's dataset (`paper_numbers(..., dataset=...)`); leave the column
    out when it is empty (another dataset)."""
    out = []
    for _, r in acc.iterrows():
        if r["_allocation"] != "learned":
            out.append("—")
            continue
        value = NOT_TRANSCRIBED
        for name in paper_row_names(r["model"], r["_init"], r["MACs budget (fraction of dense)"]):
            match = paper[(paper["row"] == name) & (paper["metric"] == "test_acc")]
            if len(match) == 1:
                value = str(match["display"].iloc[0])
                break
        out.append(value)
    return out


def imagenet_table(cfg: DSAConfig) -> pd.DataFrame:
    """The configured ImageNet runs (not run in this pipeline: no ImageNet data here)."""
    import pandas as pd

    rows = []
    for model, budgets in cfg.imagenet.models.items():
        for b in budgets:
            rows.append({"model": model, "MACs budget": b, "batch": cfg.imagenet.batch_size,
                         "search epochs": cfg.imagenet.search.epochs, "fine-tuning epochs": cfg.imagenet.finetune.epochs})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# figures of the notebook


def keep_ratio_figure(alloc: pd.DataFrame, model: str, init: str = "pretrained") -> Figure:
    """Learned per-group keep ratios (mean over seeds) next to the uniform allocation, per budget."""
    plt = _pyplot()

    part = alloc[(alloc["model"] == model) & (alloc["init"] == init)]
    budgets = sorted(set(part["budget"]), reverse=True)
    fig, axes = plt.subplots(len(budgets), 1, figsize=(max(6.0, 0.28 * part["group"].nunique() + 2), 2.6 * len(budgets)),
                             squeeze=False, sharex=True)
    for ax, budget in zip(axes[:, 0], budgets, strict=True):
        sub = part[part["budget"] == budget]
        groups = sub.sort_values("order").drop_duplicates("group")["group"].tolist()
        x = range(len(groups))
        for j, names in enumerate([("learned",), ("uniform", "uniform (computed)")]):
            rows = sub[sub["allocation"].isin(names)]
            a = rows.groupby("group")["keep"].mean()
            if a.empty:
                continue
            n = rows[rows["seed"] >= 0]["seed"].nunique()
            what = "DSA (learned)" if j == 0 else "uniform"
            label = f"{what}, mean of {n} seeds" if n > 1 else (f"{what}, 1 seed" if n else f"{what} (computed)")
            ax.bar([i + (j - 0.5) * 0.4 for i in x], [a.get(g, float("nan")) for g in groups], width=0.4,
                   color=f"C{j}", label=label)
        ax.set(ylabel="kept fraction", ylim=(0, 1.05), title=f"{model}, {init}, MACs budget {budget:g}")
        ax.set_xticks(list(x), groups, rotation=90, fontsize=7)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def budget_trace_figure(results: Sequence[RunRecord], model: str, init: str, seed: int = 0) -> Figure:
    """Target vs achieved MACs over the search of every DSA run of (model, init, seed): one colour
    per run; the legend names each colour and each line style."""
    plt = _pyplot()
    import pandas as pd
    from matplotlib.lines import Line2D

    runs = [r for r in results if r.tags["kind"] == "dsa" and r.tags["model"] == model
            and r.tags["init"] == init and r.tags["seed"] == seed and r.summary.get("trace")]
    runs.sort(key=lambda r: (-r.tags["budget"], r.tags["allocation"]))
    fig, ax = plt.subplots(figsize=(6.6, 4.0))
    colour_handles = []
    for i, r in enumerate(runs):
        tr = pd.DataFrame(r.summary["trace"])
        c = f"C{i}"
        ax.plot(tr["epoch"], tr["target"], color=c, ls="--", lw=1)
        ax.plot(tr["epoch"], tr["expected"], color=c, lw=1.6)
        ax.plot(tr["epoch"], tr["sampled"], color=c, lw=0.6, alpha=0.45)
        ax.scatter([tr["epoch"].iloc[-1]], [r.macs_keep], color=c, marker="*", s=70, zorder=3)
        colour_handles.append(Line2D([], [], color=c, lw=4,
                                     label=f"{arm_name(init, r.tags['allocation'])}, budget {r.tags['budget']:g}"))
    style_handles = [Line2D([], [], color="0.3", ls="--", lw=1, label="target B(t) (under the solid line where equal)"),
                     Line2D([], [], color="0.3", lw=1.6, label="expected MACs F(α)"),
                     Line2D([], [], color="0.3", lw=0.6, alpha=0.6, label="MACs of one sampled mask"),
                     Line2D([], [], color="0.3", ls="none", marker="*", ms=9,
                            label="exact MACs of the final pruned network")]
    ax.set(xlabel="search epoch", ylabel="MACs (fraction of dense)",
           title=f"{model}, {init}, seed {seed}: MACs budget over DSA's search")
    ax.title.set_fontsize(9)
    ax.legend(handles=colour_handles + style_handles, fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def time_figure(runs2: pd.DataFrame) -> Figure:
    """Stacked phase times of each timed run (DSA from scratch vs the traditional flow), with its
    test accuracy at the end of the bar."""
    plt = _pyplot()

    phases = ["pretraining (s)", "search or prune + scan (s)", "intermediate fine-tuning (s)", "final fine-tuning (s)"]
    names = [f"{a}, seed {s}" for a, s in zip(runs2["arm"], runs2["seed"], strict=True)]
    fig, ax = plt.subplots(figsize=(7.2, 0.55 * len(names) + 1.8))
    left = [0.0] * len(runs2)
    for i, ph in enumerate(phases):
        vals = runs2[ph].fillna(0).tolist()
        ax.barh(names, vals, left=left, color=f"C{i}", label=ph[:-4])
        left = [a + b for a, b in zip(left, vals, strict=True)]
    for y, (t, acc) in enumerate(zip(left, runs2["test acc (%)"], strict=True)):
        ax.text(t, y, f"  {t:.0f} s, {acc:.2f}%", va="center", fontsize=8)
    ax.set(xlabel="wall time of the pruning process on this machine (s)",
           title="DSA from scratch vs pretraining + iterative budgeted pruning, same MACs budget")
    ax.title.set_fontsize(9)
    ax.set_xlim(0, max([*left, 1.0]) * 1.4)
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=len(phases))
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# captions and claim evidence


def describe_budget(cfg: DSAConfig, n_train: int, profile: str, n_val: int | None = None) -> str:
    """The compute budget of the section, for table captions (`n_val`: validation images)."""
    n_arch = round(cfg.arch_fraction * n_train)
    t = cfg.timing
    scan = t.scan_images if t.scan_images and (n_val is None or t.scan_images < n_val) else n_val
    return (f"Profile `{profile}`: {n_train} training images ({n_train - n_arch} for DSA's weights, {n_arch} held "
            f"out for its keep ratios); search {_epochs(cfg.search)} from pretrained / {_epochs(cfg.search_scratch)} "
            f"from scratch, fine-tuning {_epochs(cfg.finetune)}, batch {cfg.batch_size}; traditional flow: "
            f"pretraining and fine-tunings with as many SGD steps as DSA's, {t.steps} pruning steps, each with a "
            f"sensitivity scan of {len(t.levels)} widths per group on "
            f"{scan if scan else 'all'} validation images. MACs = multiply-accumulates of "
            f"conv+linear layers (exact count of the pruned network).")


def _ratio_text(iv: Interval) -> str:
    if iv.n < 2:
        return f"{iv.mean:.2f}x (n={iv.n})"
    return f"{iv.mean:.2f}x, 95% CI [{iv.lo:.2f}, {iv.hi:.2f}] (n={iv.n})"


def evidence(cfg: DSAConfig, records: Sequence[RunRecord], budget: str) -> list[Evidence]:
    """The claims' evidence by the one verdict rule (references/claims/dsa.yaml ids dsa.*)."""
    claims = load_claims()
    df = results_frame(records)
    out: list[Evidence] = []
    c1 = claim1_table(df) if len(df) else None
    cal = ", ".join(f"{m} {i} at {b:g}" for m, i, b in CALIBRATION_SETTINGS)
    for _, row in ([] if c1 is None else c1.iterrows()):
        where = ("a calibration setting (mask placement and projection metric were chosen here, on the "
                 "validation split)" if row["calibration setting"] == "yes" else
                 f"not a calibration setting (those were chosen on {cal}, validation split)")
        out.append(Evidence.judge(claims["dsa.learned_vs_uniform"], row["_interval"],
                                  test=f"DSA − uniform allocation, test accuracy (points), {row['model']} "
                                       f"{row['init']} at {row['budget']:g} of the MACs, paired by seed; {where}",
                                  budget=budget))
    if c1 is None or not len(c1):
        out.append(Evidence.judge(claims["dsa.learned_vs_uniform"], None, test="learned vs uniform allocation: not "
                                  "run at this profile", budget=budget))
    t = cfg.timing
    pairs = claim2_pairs(records, cfg)
    setting = (f"{t.model} at {t.budget:g} of the MACs, both from random weights, equal SGD steps per phase, paired by "
               f"seed; on {t.model} since the claim is not about one network")
    flow = f"pretraining + {t.steps}-step iterative pruning with a validation sensitivity scan (ours)"
    if len(pairs):
        gaps = list(pairs["DSA − baseline test acc (points)"])
        out.append(Evidence.judge(claims["dsa.acc_vs_iterative"], mean_interval(gaps),
                                  test=f"DSA from scratch − {flow}, test accuracy (points); {setting}", budget=budget))
        ratio = mean_interval(list(pairs["baseline time / DSA time (pruning process)"]))
        out.append(Evidence.judge(claims["dsa.pruning_time"], ratio, ours=_ratio_text(ratio),
                                  test=f"time of {flow} / time of DSA from scratch, wall clock of the whole pruning "
                                       f"process (sum of its phases); {setting}", budget=budget))
    else:
        for cid in ("dsa.acc_vs_iterative", "dsa.pruning_time"):
            out.append(Evidence.judge(claims[cid], None, test="DSA from scratch vs the traditional flow: not run at "
                                      "this profile", budget=budget))
    errors = [abs(float(e)) for e in df[df["kind"] == "dsa"]["budget_error"]] if len(df) else []
    out.append(Evidence.judge(claims["dsa.budget_met"], mean_interval(errors) if errors else None,
                              test="|achieved MACs / budget − 1| of every DSA run (exact count)",
                              ours=f"max {max(errors):.2e}, mean {sum(errors) / len(errors):.2e} (n={len(errors)})"
                              if errors else None, budget=budget))
    return out


def headline_metrics(profile: str, results: Sequence[RunRecord], claims: pd.DataFrame) -> dict[str, Any]:
    """Scalars for the stage's metrics.json (`dvc metrics diff`): accuracy per setting and arm,
    the claims' estimates (the means of the intervals the verdicts judged) and verdicts."""
    df = results_frame(results)
    out: dict[str, Any] = {"profile": profile, "runs": len(results)}
    if len(df):
        for (model, init, allocation, budget), part in df.groupby(["model", "init", "allocation", "budget"], sort=False):
            out[f"{model}/{init}/{allocation}/b{budget:g}/test_acc_mean"] = float(part["test_acc"].mean())
    seen: dict[str, int] = {}
    for row in claims.itertuples(index=False):
        k = seen[row.claim] = seen.get(row.claim, -1) + 1
        out[f"verdict/{row.claim}" + (f"#{k + 1}" if k else "")] = row.verdict
    return out
