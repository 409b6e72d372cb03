"""DSA's study: the runs that test its claims, and its tables and figures (notebooks/dsa.ipynb).

The algorithm is :mod:`prunerep.methods.dsa`; this module plans the grids of DSA runs, the
uniform-allocation control and the timed iterative baseline, and turns run records into tables,
figures and claim evidence.
"""

from __future__ import annotations

import dataclasses
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
from prunerep.reporting.stats import fmt_mean_std, mean_interval, paired_difference
from prunerep.runner import IterativeSpec, LatencySettings, RunRecord, RunSpec, StudyContext

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


@dataclass(frozen=True)
class TimingConfig:
    """Claim 2: DSA vs iterative L1 pruning to the same budget, timed side by side."""

    enabled: bool = True
    model: str = "resnet20"
    init: Literal["pretrained", "scratch"] = "pretrained"
    budget: float = 0.5
    seed: int = 0
    steps: int = 3                                           # prune + fine-tune steps of the baseline
    step_finetune: OptimConfig = OptimConfig()               # fine-tuning between steps


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


# ---------------------------------------------------------------------------------------------
# the notebook's experiments


@dataclass(frozen=True)
class Experiment:
    """One run of the notebook: a DSA run (``kind="dsa"``) or the iterative baseline."""

    model: str
    init: str
    budget: float
    allocation: str       # learned | uniform | iterative_l1
    seed: int
    kind: str = "dsa"

    @property
    def label(self) -> str:
        return f"{self.model}-{self.init}-{self.allocation}-b{self.budget:g}"


def plan_experiments(cfg: DSAConfig) -> list[Experiment]:
    """Every run of the section, without duplicates; the timing pair first (run side by side)."""
    runs: list[Experiment] = []
    t = cfg.timing
    if t.enabled:
        runs += [Experiment(t.model, t.init, t.budget, "learned", t.seed),
                 Experiment(t.model, t.init, t.budget, "iterative_l1", t.seed, kind="iterative")]
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
    common = {"finetune": cfg.finetune, "seed": exp.seed, "batch_size": cfg.batch_size,
              "arch_fraction": cfg.arch_fraction, "runtime": cfg.runtime, "label": exp.label, "model": exp.model,
              "tags": dataclasses.asdict(exp)}
    budget = Budget(macs_keep=exp.budget)
    if exp.kind == "iterative":
        if exp.init != "pretrained":
            raise ValueError("timing.init: the iterative baseline prunes a pretrained model; use 'pretrained'")
        return IterativeSpec(RunSpec(method="l1", budget=budget, hyper={"scope": "all"}, **common),
                             steps=cfg.timing.steps, step_finetune=cfg.timing.step_finetune)
    search = cfg.search_scratch if exp.init == "scratch" else cfg.search
    hyper = DSAHyper(**dataclasses.asdict(cfg.method), search=search, arch_optim=cfg.arch_optim, init=exp.init,
                     allocation=exp.allocation)
    return RunSpec(method="dsa", budget=budget, hyper=hyper, **common)


def plan(cfg: DSAConfig) -> list[RunSpec | IterativeSpec]:
    """The spec of every experiment of the section (:func:`plan_experiments`), in order."""
    return [build_spec(cfg, exp) for exp in plan_experiments(cfg)]


# ---------------------------------------------------------------------------------------------
# tables and figures of the notebook


def _pyplot() -> Any:
    from prunerep.reporting.figures import plt

    return plt


def results_frame(results: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per run: the experiment, accuracy, achieved MACs and its distance to the budget."""
    import pandas as pd

    rows = []
    for r in results:
        e, row = r.tags, r.row()
        rows.append({**e, "test_acc": row["test_acc"], "val_acc": row["val_acc"],
                     "test_acc_before_finetune": row["test_acc_before_finetune"],
                     "macs_keep": row["macs_keep"], "params_keep": row["params_keep"],
                     "budget_error": row["macs_keep"] / e["budget"] - 1.0,
                     "pruning_time_s": row["pruning_time_s"], "finetune_time_s": row["finetune_time_s"],
                     "wall_time_s": r.wall_time_s})
    return pd.DataFrame(rows)


def accuracy_table(df: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy (mean, std over seeds, n) per model / init / allocation / budget."""

    g = df.groupby(["model", "init", "allocation", "budget"], sort=False)
    out = g.agg(n=("seed", "count"), test_acc_mean=("test_acc", "mean"), test_acc_std=("test_acc", "std"),
                val_acc_mean=("val_acc", "mean"), acc_before_finetune=("test_acc_before_finetune", "mean"),
                macs_keep=("macs_keep", "mean"), max_abs_budget_error=("budget_error", lambda s: s.abs().max()))
    return out.reset_index()


def claim1_table(df: pd.DataFrame) -> pd.DataFrame:
    """Claim 1: learned vs uniform allocation, paired by seed (same data order and fine-tuning).

    The difference's 95% interval is judged by the project's one rule in :func:`evidence`.
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
                     "DSA (%)": fmt_mean_std(list(learned.loc[seeds])),
                     "uniform (%)": fmt_mean_std(list(uniform.loc[seeds])),
                     "learned − uniform, 95% CI": str(interval), "seeds DSA better": int((diff > 0).sum()),
                     "_interval": interval})
    return pd.DataFrame(rows)


def claim2_table(results: Sequence[RunRecord], cfg: DSAConfig, min_ratio: float = 1.5,
                 acc_tolerance: float = 1.0) -> pd.DataFrame:
    """Claim 2: time of the whole pruning process, DSA vs the iterative baseline (same budget, side by side).

    ``process_time_s`` = every phase from the dense model to the fine-tuned pruned one (selection,
    search or intermediate fine-tunings, surgery, final fine-tuning); ``wall_time_s`` adds the
    evaluations and data loading of the run. The claim holds when the baseline takes at least
    ``min_ratio`` times as long (the abstract's 1.5x) and DSA's accuracy is "comparable": at most
    ``acc_tolerance`` points below the baseline's.
    """
    import pandas as pd

    t = cfg.timing
    want = {("learned", "dsa"), ("iterative_l1", "iterative")}
    rows = []
    for r in results:
        e = r.tags
        if (e["model"], e["init"], e["budget"], e["seed"]) != (t.model, t.init, t.budget, t.seed):
            continue
        if (e["allocation"], e["kind"]) not in want:
            continue
        row = r.row()
        rows.append({"method": "DSA" if e["kind"] == "dsa" else f"iterative L1 ({t.steps} steps)",
                     "model": e["model"], "budget": e["budget"], "test_acc": row["test_acc"],
                     "macs_keep": row["macs_keep"], **{f"{k}_s": v for k, v in r.phase_time_s.items()},
                     "process_time_s": row["pruning_time_s"] + row["finetune_time_s"],
                     "wall_time_s": r.wall_time_s})
    out = pd.DataFrame(rows)
    if len(out) == 2:
        # Read in the claim's direction: how many times longer the baseline takes than DSA.
        out["baseline time / DSA time"] = out["process_time_s"].iloc[1] / out["process_time_s"].iloc[0]
    return out


def claim3_table(df: pd.DataFrame, tolerance: float = 0.01) -> pd.DataFrame:
    """Claim 3: achieved MACs of every final network vs its budget (exact count, within 1%)."""

    sel = df[df["kind"] == "dsa"]
    out = sel.groupby(["model", "init", "allocation", "budget"], sort=False).agg(
        n=("seed", "count"), macs_keep_min=("macs_keep", "min"), macs_keep_max=("macs_keep", "max"),
        max_abs_error=("budget_error", lambda s: s.abs().max())).reset_index()
    out["within_1pct"] = out["max_abs_error"] <= tolerance
    return out


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


def uniform_reference(alloc: pd.DataFrame, ctx: StudyContext) -> pd.DataFrame:
    """Uniform-allocation widths for every (model, budget) of `alloc` that has no uniform run."""
    import pandas as pd

    rows = []
    for (model, budget), part in alloc.groupby(["model", "budget"], sort=False):
        if (part["allocation"] == "uniform").any():
            continue
        dense = ctx.load_dense(model)
        widths = uniform_widths(dense, float(budget), torch.zeros(ctx.example_shape))
        channels = part.drop_duplicates("group").set_index("group")["channels"]
        for order, gid in enumerate(widths):
            for init in sorted(set(part["init"])):
                rows.append({"model": model, "init": init, "budget": budget, "allocation": "uniform (computed)",
                             "seed": -1, "kind": "reference", "group": gid, "order": order,
                             "channels": int(channels[gid]), "width": widths[gid],
                             "keep": widths[gid] / int(channels[gid]), "alpha": float("nan")})
    return pd.DataFrame(rows)


def paper_row_names(model: str, init: str, budget: float) -> list[str]:
    """Row names of references/paper_results.yaml a DSA result may match (most specific first)."""
    return [f"DSA {model} {init} b={budget:g}", f"DSA {model} b={budget:g}"]


def paper_comparison(acc: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Our DSA accuracy beside the paper's printed number (or "not transcribed") per model/budget."""
    import pandas as pd

    rows = []
    if paper.empty:  # another dataset than the paper's: nothing to show beside ours
        return pd.DataFrame(rows)
    for _, r in acc[acc["allocation"] == "learned"].iterrows():
        value, source = NOT_TRANSCRIBED, "arXiv:2004.02164 (CIFAR-10 table): no entry"
        for name in paper_row_names(r["model"], r["init"], r["budget"]):
            match = paper[(paper["row"] == name) & (paper["metric"] == "test_acc")]
            if len(match) == 1:
                value, source = match["display"].iloc[0], match["source"].iloc[0]
                break
        rows.append({"model": r["model"], "init": r["init"], "budget": r["budget"], "n": r["n"],
                     "ours_test_acc_mean": r["test_acc_mean"], "ours_test_acc_std": r["test_acc_std"],
                     "paper_test_acc": value, "paper_source": source})
    return pd.DataFrame(rows)


def imagenet_table(cfg: DSAConfig) -> pd.DataFrame:
    """The configured ImageNet runs (not run in this pipeline: no ImageNet data here)."""
    import pandas as pd

    rows = []
    for model, budgets in cfg.imagenet.models.items():
        for b in budgets:
            rows.append({"model": model, "budget": b, "batch_size": cfg.imagenet.batch_size,
                         "search_epochs": cfg.imagenet.search.epochs, "finetune_epochs": cfg.imagenet.finetune.epochs,
                         "status": "configured; needs ImageNet data and a GPU"})
    return pd.DataFrame(rows)


def accuracy_figure(acc: pd.DataFrame, dense_acc: dict[str, float] | None = None) -> Figure:
    """Test accuracy vs MACs budget per model (panels) and init/allocation (lines), mean +- std."""
    plt = _pyplot()

    models = list(dict.fromkeys(acc["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        part = acc[acc["model"] == model]
        for i, ((init, alloc), line) in enumerate(part.groupby(["init", "allocation"], sort=False)):
            line = line.sort_values("budget")
            ax.errorbar(line["budget"], line["test_acc_mean"], yerr=line["test_acc_std"].fillna(0), marker="o",
                        ms=4, capsize=3, color=f"C{i}", label=f"{alloc}, {init}")
        if dense_acc and model in dense_acc:
            ax.axhline(dense_acc[model], color="k", ls=":", lw=1, label="dense")
        ax.set(title=model, xlabel="MACs budget (fraction of dense kept)", ylabel="test accuracy (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def keep_ratio_figure(alloc: pd.DataFrame, model: str, init: str = "pretrained") -> Figure:
    """Learned per-group keep ratios (mean over seeds) next to the uniform allocation, per budget."""
    plt = _pyplot()

    part = alloc[(alloc["model"] == model) & (alloc["init"] == init)]
    budgets = sorted(set(part["budget"]), reverse=True)
    fig, axes = plt.subplots(len(budgets), 1, figsize=(max(6.0, 0.28 * part["group"].nunique() + 2), 2.4 * len(budgets)),
                             squeeze=False, sharex=True)
    for ax, budget in zip(axes[:, 0], budgets, strict=True):
        sub = part[part["budget"] == budget]
        groups = sub.sort_values("order").drop_duplicates("group")["group"].tolist()
        x = range(len(groups))
        for j, names in enumerate([("learned",), ("uniform", "uniform (computed)")]):
            a = sub[sub["allocation"].isin(names)].groupby("group")["keep"].mean()
            if a.empty:
                continue
            ax.bar([i + (j - 0.5) * 0.4 for i in x], [a.get(g, float("nan")) for g in groups], width=0.4,
                   color=f"C{j}", label="DSA (learned)" if j == 0 else "uniform")
        ax.set(ylabel="kept fraction", ylim=(0, 1.05), title=f"{model}, {init}, budget {budget:g}")
        ax.set_xticks(list(x), groups, rotation=90, fontsize=7)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def budget_trace_figure(results: Sequence[RunRecord], model: str, init: str = "pretrained",
                        allocation: str = "learned", seed: int = 0) -> Figure:
    """Target vs achieved MACs over the search: expected (``F(alpha)``), one sampled mask, rounded widths."""
    plt = _pyplot()
    import pandas as pd

    runs = [r for r in results if r.tags["kind"] == "dsa" and r.tags["model"] == model
            and r.tags["init"] == init and r.tags["allocation"] == allocation
            and r.tags["seed"] == seed]
    runs.sort(key=lambda r: -r.tags["budget"])
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for i, r in enumerate(runs):
        tr = pd.DataFrame(r.summary["trace"])
        if tr.empty:
            continue
        b = r.tags["budget"]
        ax.plot(tr["epoch"], tr["target"], color=f"C{i}", ls="--", lw=1)
        ax.plot(tr["epoch"], tr["expected"], color=f"C{i}", lw=1.5, label=f"budget {b:g}: expected F(alpha)")
        ax.plot(tr["epoch"], tr["sampled"], color=f"C{i}", lw=0.6, alpha=0.45)
        ax.scatter([tr["epoch"].iloc[-1]], [r.row()["macs_keep"]], color=f"C{i}", marker="*", s=60, zorder=3)
    ax.set(xlabel="search epoch", ylabel="MACs (fraction of dense)",
           title=f"{model} {init}: target (dashed), expected (solid), one sampled mask (thin), final network (*)")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def time_figure(timing: pd.DataFrame) -> Figure:
    """Stacked phase times of the pruning process, DSA vs the iterative baseline."""
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(6.0, 2.8))
    phases = [c for c in timing.columns if c.endswith("_s") and c not in ("process_time_s", "wall_time_s")]
    left = [0.0] * len(timing)
    for i, ph in enumerate(phases):
        vals = timing[ph].fillna(0).tolist()
        ax.barh(timing["method"], vals, left=left, color=f"C{i}", label=ph[:-2])
        left = [a + b for a, b in zip(left, vals, strict=True)]
    for y, (t, acc) in enumerate(zip(left, timing["test_acc"], strict=True)):
        ax.text(t, y, f"  {t:.0f} s, {acc:.2f}%", va="center", fontsize=8)
    ax.set(xlabel="wall time of the pruning process on this machine (s)")
    ax.set_xlim(0, max(left) * 1.35)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=len(phases))
    fig.tight_layout()
    return fig


def _epochs(o: OptimConfig) -> str:
    return f"{o.epochs:g} ep" + (f" (max {o.max_steps} steps)" if o.max_steps else "")


def describe_budget(cfg: DSAConfig, n_train: int, profile: str) -> str:
    """The compute budget of the section, for table captions."""
    n_arch = round(cfg.arch_fraction * n_train)
    return (f"Profile `{profile}`: {n_train} training images ({n_train - n_arch} for the weights, {n_arch} held out "
            f"for the keep ratios); search {_epochs(cfg.search)} from pretrained / {_epochs(cfg.search_scratch)} "
            f"from scratch, fine-tuning {_epochs(cfg.finetune)}, batch {cfg.batch_size}; iterative baseline: "
            f"{cfg.timing.steps} steps, {_epochs(cfg.timing.step_finetune)} between steps. MACs = multiply-"
            f"accumulates of conv+linear layers (exact count of the pruned network).")


def evidence(cfg: DSAConfig, records: Sequence[RunRecord], budget: str) -> list[Evidence]:
    """The claims' evidence by the one verdict rule (references/claims.yaml ids dsa.*)."""
    claims = load_claims()
    df = results_frame(records)
    out: list[Evidence] = []
    c1 = claim1_table(df)
    for _, row in c1.iterrows():
        out.append(Evidence.judge(claims["dsa.learned_vs_uniform"], row["_interval"],
                                  test=f"DSA − uniform allocation, test accuracy (points), {row['model']} "
                                       f"{row['init']} at {row['budget']:g} of the MACs, paired by seed", budget=budget))
    if not len(c1):
        out.append(Evidence.judge(claims["dsa.learned_vs_uniform"], None, test="DSA vs uniform", budget=budget))
    c2 = claim2_table(records, cfg)
    if len(c2) == 2:
        ratio = float(c2["baseline time / DSA time"].iloc[0])
        gap = float(c2["test_acc"].iloc[0] - c2["test_acc"].iloc[1])
        t = cfg.timing
        out.append(Evidence.judge(claims["dsa.pruning_time"], mean_interval([ratio]),
                                  test=f"process time of iterative L1 ({t.steps} steps) / DSA, {t.model} at "
                                       f"{t.budget:g} of the MACs, one pair run side by side", budget=budget,
                                  ours=f"{ratio:.2f}x (n=1)"))
        out.append(Evidence.judge(claims["dsa.acc_vs_iterative"], mean_interval([gap]),
                                  test="DSA − iterative L1 test accuracy (points), same pair", budget=budget))
    else:
        out.append(Evidence.judge(claims["dsa.pruning_time"], None, test="timing pair not run", budget=budget))
        out.append(Evidence.judge(claims["dsa.acc_vs_iterative"], None, test="timing pair not run", budget=budget))
    errors = [abs(float(e)) for e in df[df["kind"] == "dsa"]["budget_error"]] if len(df) else []
    out.append(Evidence.judge(claims["dsa.budget_met"], mean_interval(errors) if errors else None,
                              test="|achieved MACs / budget − 1| of every DSA run (exact count)",
                              ours=f"max {max(errors):.4f}, mean {sum(errors) / len(errors):.4f} (n={len(errors)})"
                              if errors else None, budget=budget))
    return out
