"""GDP's study: the runs that test its claims, and its tables and figures (notebooks/gdp.ipynb).

The algorithm is :mod:`prunerep.methods.gdp`; this module plans GDP and its baselines at equal
MACs and equal training epochs after the same dense checkpoint, plus the sampling-gate control,
and turns the run records into the paper's tables, figures and claim evidence.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from torch import nn

from prunerep.config import register_section, to_dict
from prunerep.data import SubsetConfig
from prunerep.engine import OptimConfig, RuntimeConfig
from prunerep.methods.base import Budget, MethodContext, build_hyper
from prunerep.methods.gdp import GDP, GDPHyper, _default_train, curve_roughness, polarization_stats
from prunerep.reporting.ledger import Evidence, load_claims
from prunerep.reporting.stats import fmt_mean_std, mean_interval, mean_std, paired_difference
from prunerep.runner import LatencySettings, RunRecord, RunSpec, StudyContext
from prunerep.studies.base import describe_splits, group, records_by_seed


@dataclass(frozen=True)
class StabilityConfig:
    """The stability comparison: GDP vs the sampling control on one model and budget."""

    model: str = "resnet56"
    macs_keep: float = 0.5
    seeds: list[int] = field(default_factory=lambda: [0])


@dataclass(frozen=True)
class LargeScaleConfig:
    """A large-scale setting of the paper (runnable where its dataset exists)."""

    name: str                                     # e.g. imagenet_resnet50
    model: str                                    # registry name, e.g. tv_resnet50
    task: Literal["classification", "segmentation"] = "classification"
    dataset: str = "imagenet"                     # imagenet | voc2012 (what the user's loaders read)
    input_size: int = 224                         # training crop (traces groups and MACs)
    in_channels: int = 3                          # image channels of that dataset
    num_classes: int = 1000
    macs_keep: float = 0.5
    method: GDPHyper = field(default_factory=GDPHyper)   # method.train: epochs, lr, batch size


@register_section("gdp")
@dataclass(frozen=True)
class GDPConfig:
    """The `gdp` section of params.yaml (notebooks/gdp.ipynb)."""

    models: list[str] = field(default_factory=lambda: ["resnet56"])  # keys of pretrain.models to prune
    # pretrain.models key -> fractions of the dense MACs to keep (one row of results per budget)
    budgets: dict[str, list[float]] = field(default_factory=lambda: {"resnet56": [0.5]})
    seeds: list[int] = field(default_factory=lambda: [0])  # claims are reported as mean ± std over these
    workers: int = 1                                       # independent runs side by side
    subset: SubsetConfig = SubsetConfig()                  # class-stratified data subsets (None: all)
    batch_size: int = 128
    epochs: float = 3.0          # training after the dense checkpoint, equal for every method
    optim: OptimConfig = field(default_factory=_default_train)  # lr/schedule of every phase (epochs set per method)
    gdp: GDPHyper = field(default_factory=GDPHyper)  # GDP's knobs; gdp.train.epochs is set to `epochs`
    baselines: list[str] = field(default_factory=lambda: ["l1", "slimming"])
    baseline_scope: Literal["all", "internal"] = "all"
    slimming_sparsity: float = 1e-4   # s of network slimming (its paper's CIFAR value)
    slimming_fraction: float = 0.5    # share of `epochs` slimming spends on sparse training
    slimming_min_keep: float = 0.0    # per-group floor of slimming's global threshold (paper: none)
    stability: StabilityConfig = StabilityConfig()
    large_scale: list[LargeScaleConfig] = field(default_factory=list)
    runtime: RuntimeConfig = RuntimeConfig(progress=False)
    latency: LatencySettings = LatencySettings()

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("models: give at least one key of pretrain.models, e.g. [resnet56]")
        for key in self.models:
            values = self.budgets.get(key)
            if not values:
                raise ValueError(f"budgets.{key}: missing; give the MACs fractions to keep for model {key!r}")
            if not all(0 < b < 1 for b in values):
                raise ValueError(f"budgets.{key}: give MACs fractions in (0, 1), got {values}")
        if self.stability.model not in self.models:
            raise ValueError(f"stability.model: {self.stability.model!r} is not one of models {self.models}")
        if not 0 < self.slimming_fraction < 1:
            raise ValueError("slimming_fraction must be in (0, 1)")
        unknown = set(self.baselines) - {"l1", "slimming", "random"}
        if unknown:
            raise ValueError(f"baselines: unknown {sorted(unknown)}; choose from l1, slimming, random")


# -- specs -----------------------------------------------------------------------------------


def gdp_hyper(cfg: GDPConfig, **overrides: Any) -> GDPHyper:
    """GDP's hyper-parameters from the section: its training phase = `optim` for `epochs`."""
    return dataclasses.replace(cfg.gdp, train=dataclasses.replace(cfg.optim, epochs=cfg.epochs,
                                                                  batch_size=cfg.batch_size), **overrides)


def comparison_specs(cfg: GDPConfig, model: str, seeds: Sequence[int] | None = None) -> list[Any]:
    """GDP and the baselines at each MACs budget and seed, with equal training epochs.

    * ``gdp``: `epochs` of gated training, no fine-tuning (the paper's claim);
    * ``l1``: one-shot L1-norm pruning, then `epochs` of fine-tuning;
    * ``slimming``: ``slimming_fraction * epochs`` of sparse training, the rest fine-tuning;
    * ``random``: as ``l1`` with random channels.

    All baselines prune the same groups as GDP when ``baseline_scope: all`` (residual streams
    too), and every run starts from the same dense checkpoint.
    """
    specs = []
    ft = dataclasses.replace(cfg.optim, epochs=cfg.epochs, batch_size=cfg.batch_size)
    sparse_epochs = cfg.slimming_fraction * cfg.epochs
    if model not in cfg.models:
        raise KeyError(f"gdp.models does not list {model!r}; models: {cfg.models}")
    for budget in cfg.budgets[model]:
        b = Budget(macs_keep=budget)
        for seed in seeds if seeds is not None else cfg.seeds:
            common = {"budget": b, "seed": seed, "batch_size": cfg.batch_size, "runtime": cfg.runtime,
                      "model": model}
            specs.append(RunSpec(method="gdp", hyper=gdp_hyper(cfg), finetune=None, label=f"gdp@{budget:g}",
                                 tags={"variant": "gdp", "target": budget}, **common))
            for name in cfg.baselines:
                hyper: dict[str, Any] = {"scope": cfg.baseline_scope, "seed": seed}
                finetune = ft
                if name == "slimming":
                    hyper.update(sparsity=cfg.slimming_sparsity, min_keep=cfg.slimming_min_keep,
                                 sparse_train=dataclasses.replace(ft, epochs=sparse_epochs))
                    finetune = dataclasses.replace(ft, epochs=cfg.epochs - sparse_epochs)
                specs.append(RunSpec(method=name, hyper=dataclasses.replace(build_hyper(name), **hyper), finetune=finetune,
                                     label=f"{name}@{budget:g}", tags={"variant": name, "target": budget}, **common))
    return specs


def stability_specs(cfg: GDPConfig) -> list[Any]:
    """The sampling control at the stability budget (GDP's runs come from `comparison_specs`)."""
    st = cfg.stability
    return [RunSpec(method="gdp", hyper=gdp_hyper(cfg, gate="sampling"), finetune=None,
                    budget=Budget(macs_keep=st.macs_keep), seed=seed, batch_size=cfg.batch_size,
                    runtime=cfg.runtime, label=f"gdp-sampling@{st.macs_keep:g}", model=st.model,
                    tags={"variant": "gdp-sampling", "target": st.macs_keep})
            for seed in st.seeds]


# -- large-scale settings (ImageNet, Pascal VOC) -------------------------------------------------


class SegmentationLogits(nn.Module):
    """``model(x)["out"]``: a torchvision segmentation model as a plain logits model.

    The shared loop's cross-entropy then works per pixel (targets ``[N, H, W]``; the VOC
    "boundary" label 255 must be mapped to -100, cross-entropy's ignore index).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def build_large_scale(entry: LargeScaleConfig, *, input_size: int | None = None,
                      model: nn.Module | None = None, device: str | torch.device = "cpu"
                      ) -> tuple[nn.Module, GDP, MethodContext]:
    """The torchvision model of `entry` with GDP's gates attached.

    Args:
        entry: The setting.
        input_size: Spatial size of the example input used to trace the groups and costs
            (default: ``entry.input_size``; tests use a tiny one).
        model: A model to use instead of building ``entry.model`` (e.g. with pretrained weights).
        device: Where the model lives.

    Returns:
        ``(model, method, ctx)``: the gated model, the GDP hook and its context, ready for
        :func:`prunerep.engine.fit` with ``hooks=[method]`` and then ``method.finalize``.
    """
    from prunerep.models import get_model
    from prunerep.pruning.groups import find_groups
    from prunerep.pruning.soft_cost import SoftCostModel

    if model is None:
        kwargs = {"num_classes": entry.num_classes}
        model = get_model(entry.model, **kwargs)
    if entry.task == "segmentation" and not isinstance(model, SegmentationLogits):
        model = SegmentationLogits(model)
    model = model.to(device)
    size = input_size or entry.input_size
    example = torch.zeros(1, entry.in_channels, size, size, device=device)
    method = GDP(**to_dict(entry.method))
    groups = find_groups(model, example)
    prunable = list(groups.select(method.prunable))
    ctx = MethodContext(groups=groups, prunable=prunable, example_input=example,
                        budget=Budget(macs_keep=entry.macs_keep),
                        cost_model=SoftCostModel.from_model(model, example, groups))
    model = method.prepare(model, ctx)
    return model, method, ctx


def run_large_scale(entry: LargeScaleConfig, train_loader: Any, val_loader: Any, *,
                    model: nn.Module | None = None, checkpoint_dir: str | Path | None = None,
                    runtime: RuntimeConfig | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Train GDP on a large-scale setting with the shared loop and return the pruned model.

    The loaders must yield ``(images, targets)`` on the model's device and have ``set_epoch``
    (see :class:`prunerep.engine.trainer.BatchLoader`), e.g. a torchvision ImageNet/VOC dataset
    wrapped by the user; this project does not ship those datasets.

    Returns:
        ``(pruned model, method summary)``.
    """
    from prunerep.engine import fit, pick_device

    runtime = runtime or RuntimeConfig()
    device = pick_device(runtime.device)
    model, method, ctx = build_large_scale(entry, model=model, device=device)
    for name, optim in method.phases():
        fit(model, train_loader, optim=optim, runtime=runtime, hooks=[method], val_loader=val_loader,
            checkpoint_dir=Path(checkpoint_dir) / name if checkpoint_dir else None,
            run_key=f"gdp-large/{entry.name}/{name}", desc=f"gdp {entry.name}")
    model = method.finalize(model, ctx)
    return model, method.summary()


def ratio_label(macs_keep: float) -> str:
    """``0.5 -> "50% MACs (2.00x)"``."""
    return f"{macs_keep:.0%} MACs ({1 / macs_keep:.2f}x)"


# -- runs -----------------------------------------------------------------------------------------


def plan(cfg: GDPConfig) -> list[RunSpec]:
    """Every run of the section: GDP and the baselines per model/budget/seed, plus the sampling
    control on the stability model, each pruning that model's dense checkpoint."""
    specs: list[RunSpec] = []
    for model in cfg.models:
        specs += comparison_specs(cfg, model)
        if model == cfg.stability.model:
            specs += stability_specs(cfg)
    return specs


def runs_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per run: cost, accuracy, time, measured latency, schedule outcome."""
    rows = []
    for r in records:
        row = {"model": r.model, "method": r.tags["variant"], "target MACs": r.target, "seed": r.seed,
               "MACs kept": r.macs_keep, "params kept": r.params_keep, "test acc (%)": r.test_acc,
               "val acc (%)": r.val_acc, "test acc before fine-tuning (%)": r.test_acc_before_finetune,
               "pruning time (s)": r.pruning_time_s, "fine-tuning time (s)": r.finetune_time_s,
               "reached": r.summary.get("reached"), "forced removals": r.summary.get("forced_removals")}
        for bs in (1, 64):
            if r.latency_ms(bs) is not None:
                row[f"latency bs{bs} (ms)"] = r.latency_ms(bs)
        rows.append(row)
    return pd.DataFrame(rows)


def summary_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Mean ± std over seeds per model, budget and method (n = number of seeds)."""
    rows = []
    for (model, target, variant), rs in sorted(group(records, "model", "target", "variant").items(),
                                               key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        accs = [r.test_acc for r in rs]
        mean, std, n = mean_std(accs)
        lat = [r.latency_ms(64) for r in rs if r.latency_ms(64) is not None]
        rows.append({"model": model, "target": target, "method": variant, "n": n,
                     "macs_keep": sum(r.macs_keep for r in rs) / n, "params_keep": sum(r.params_keep for r in rs) / n,
                     "test_acc_mean": mean, "test_acc_std": std,
                     "latency_bs64_ms": sum(lat) / len(lat) if lat else None,
                     "test acc (%)": fmt_mean_std(accs)})
    return pd.DataFrame(rows)


def claim3_table(records: Sequence[RunRecord], baselines: Sequence[str]) -> pd.DataFrame:
    """GDP minus each baseline at the same model and budget, paired by seed (the one rule)."""
    rows = []
    for (model, target), rs in group(records, "model", "target").items():
        arms = group(rs, "variant")
        if ("gdp",) not in arms:
            continue
        gdp = records_by_seed(arms[("gdp",)])
        for name in baselines:
            if (name,) not in arms:
                continue
            base = records_by_seed(arms[(name,)])
            diff = paired_difference(gdp, base)
            rows.append({"model": model, "target": target, "baseline": name, "n": diff.n,
                         "GDP (%)": fmt_mean_std(list(gdp.values())),
                         "baseline (%)": fmt_mean_std(list(base.values())),
                         "GDP − baseline, 95% CI": str(diff), "_interval": diff})
    return pd.DataFrame(rows)


def claim2_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Surgery without damage, per GDP run: the gated network (end of training) vs the pruned one.

    Validation accuracy of the gated network (last epoch of the ``gdp`` phase, eval mode) against
    that of the physically pruned network on the same split, and the largest logit change on
    the probe batch (absolute and relative to the largest logit).
    """
    rows = []
    for r in records:
        if not r.tags["variant"].startswith("gdp"):
            continue
        hist = r.histories.get("gdp") or [{}]
        ex = r.summary.get("exactness", {})
        gated = hist[-1].get("val_acc", float("nan"))
        pruned = r.val_acc_before_finetune
        rows.append({"model": r.model, "method": r.tags["variant"], "target": r.target, "seed": r.seed,
                     "val_acc_gated": gated, "val_acc_pruned": pruned, "val_acc_change": pruned - gated,
                     "max_abs_logit_change": ex.get("max_abs_diff"), "max_rel_logit_change": ex.get("max_rel_diff"),
                     "argmax_agreement": ex.get("argmax_agree"),
                     "forced_removals": r.summary.get("forced_removals")})
    return pd.DataFrame(rows)


def claim1_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Polarization at the end of training, per gated run: exact zeros and values in between."""
    rows = []
    for r in records:
        if not r.tags["variant"].startswith("gdp"):
            continue
        s = r.summary
        steps = (s["trace"][-1]["step"] if s.get("trace") else None)
        rows.append({"model": r.model, "method": r.tags["variant"], "target": r.target, "seed": r.seed,
                     **dict(s.get("final_stats", {})), "reached_step": s.get("reached_step"), "steps": steps})
    return pd.DataFrame(rows)


def stability_table(records: Sequence[RunRecord], model: str, target: float) -> pd.DataFrame:
    """GDP vs the sampling control at one model/budget: smoothness of the training curves.

    ``loss_roughness``: per-step noise of the training loss (:func:`curve_roughness`) over the
    whole phase; ``val_acc_drop_max``: the largest fall of validation accuracy from one epoch to
    the next; ``max_step_macs_drop``: the largest fall of the hard network's MACs (fraction of
    dense) in one step (a whole group dying at once shows here); plus the test accuracy.
    """
    rows = []
    for r in records:
        if r.model != model or r.target != target or not r.tags["variant"].startswith("gdp"):
            continue
        trace = r.summary.get("trace", [])
        losses = [t["loss"] for t in trace]
        val = [h["val_acc"] for h in r.histories.get("gdp", []) if "val_acc" in h]
        drops = [a - b for a, b in itertools.pairwise(val)]
        hard = [t["hard_macs_ratio"] for t in trace]
        macs_drops = [a - b for a, b in itertools.pairwise(hard)]
        tail = losses[-max(1, len(losses) // 10):]
        rows.append({"method": r.tags["variant"], "seed": r.seed, "steps": len(losses),
                     "loss_roughness": curve_roughness(losses),
                     "loss_mean_last_10pct": sum(tail) / len(tail) if tail else float("nan"),
                     "val_acc_drop_max": max(drops) if drops else float("nan"),
                     "max_step_macs_drop": max(macs_drops) if macs_drops else float("nan"),
                     "reached_step": r.summary.get("reached_step"), "test_acc": r.test_acc})
    return pd.DataFrame(rows)


def evidence(cfg: GDPConfig, records: Sequence[RunRecord], budget: str) -> list[Evidence]:
    """The claims' evidence, by the one verdict rule (references/claims.yaml ids gdp.*)."""
    claims = load_claims()
    out: list[Evidence] = []
    gated = [r for r in records if r.tags["variant"] == "gdp"]
    between = [r.summary.get("final_stats", {}).get("between_0_0.1") for r in gated]
    between = [float(v) for v in between if v is not None]
    out.append(Evidence.judge(claims["gdp.polarization"], mean_interval(between) if between else None,
                              test="share of GDP's gates in (0, 0.1) at the end of training, every GDP run",
                              ours=fmt_mean_std(between, 4), budget=budget))
    change = [float(r.summary["exactness"]["max_abs_diff"]) for r in gated
              if r.summary.get("exactness", {}).get("max_abs_diff") is not None]
    out.append(Evidence.judge(claims["gdp.no_damage"], mean_interval(change) if change else None,
                              test="largest logit change on a probe batch from surgery (zero gates removed, "
                                   "others folded), every GDP run", ours=fmt_mean_std(change, 9), budget=budget))
    c3 = claim3_table(records, cfg.baselines)
    for claim_id, name in (("gdp.acc_vs_l1", "l1"), ("gdp.acc_vs_slimming", "slimming")):
        rows = c3[c3["baseline"] == name] if len(c3) else c3
        if not len(rows):
            out.append(Evidence.judge(claims[claim_id], None, test=f"GDP − {name} at equal MACs", budget=budget))
        for _, row in rows.iterrows():
            out.append(Evidence.judge(claims[claim_id], row["_interval"],
                                      test=f"GDP − {name} test accuracy (points), {row['model']} at "
                                           f"{row['target']:.0%} MACs, paired by seed", budget=budget))
    st = cfg.stability
    stab = stability_table(records, st.model, st.macs_keep)
    if len(stab) and {"gdp", "gdp-sampling"} <= set(stab["method"]):
        by = {m: dict(zip(g["seed"], g["max_step_macs_drop"], strict=True)) for m, g in stab.groupby("method")}
        diff = paired_difference(by["gdp"], by["gdp-sampling"])
        out.append(Evidence.judge(claims["gdp.stability"], diff,
                                  test=f"largest one-step drop of the hard network's MACs (fraction of dense), GDP − "
                                       f"sampling gates, {st.model} at {st.macs_keep:.0%} MACs, paired by seed",
                                  budget=budget))
    else:
        out.append(Evidence.judge(claims["gdp.stability"], None, test="GDP vs sampling gates", budget=budget))
    return out


def budget_text(cfg: GDPConfig, ctx: StudyContext) -> str:
    """One sentence on the compute budget behind every number (for captions and the ledger)."""
    return (f"Profile `{ctx.profile}`: {cfg.epochs:g} epochs after the dense checkpoint for every method "
            f"(GDP: gated training, no fine-tuning; L1: fine-tuning; slimming: {cfg.slimming_fraction:.0%} sparse "
            f"training + fine-tuning); {describe_splits(ctx)}; seeds {list(cfg.seeds)}.")


# -- figures -------------------------------------------------------------------------------------


def acc_vs_macs_figure(summary, dense: Mapping[str, Mapping[str, float]]):
    """Test accuracy (mean ± std over seeds) against the MACs kept, one panel per model."""
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(summary["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 3.8), squeeze=False)
    styles = {"gdp": ("C0", "o"), "l1": ("C1", "s"), "slimming": ("C2", "^"), "random": ("C7", "x"),
              "gdp-sampling": ("C3", "D")}
    for ax, model in zip(axes[0], models, strict=True):
        sub = summary[summary["model"] == model]
        for method, grp in sub.groupby("method", sort=False):
            color, marker = styles.get(method, (None, "o"))
            grp = grp.sort_values("macs_keep")
            ax.errorbar(100 * grp["macs_keep"], grp["test_acc_mean"], yerr=grp["test_acc_std"].astype(float).fillna(0.0), color=color,
                        marker=marker, capsize=3, label=f"{method} (n={int(grp['n'].max())})")
        if model in dense:
            ax.axhline(dense[model]["test_acc"], color="k", ls="--", lw=1, label="dense")
        ax.set(title=model, xlabel="MACs kept (% of dense)", ylabel="test accuracy (%)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def gate_histograms_figure(record: RunRecord, bins: int = 40):
    """Histograms of all gate values at the snapshots through training (polarization)."""
    import matplotlib.pyplot as plt

    snaps = record.summary["snapshots"]
    fig, axes = plt.subplots(1, len(snaps), figsize=(2.6 * len(snaps), 2.6), sharey=True, squeeze=False)
    for ax, snap in zip(axes[0], snaps, strict=True):
        v = torch.tensor(snap["values"])
        stats = polarization_stats(v)
        ax.hist(v.numpy(), bins=bins, range=(0.0, 1.0), color="C0")
        ax.set_yscale("log")
        ax.set(title=f"step {snap['step']}", xlabel="gate value")
        ax.text(0.5, 0.95, f"zero {stats['zero']:.0%}\n(0, 0.1): {stats['between_0_0.1']:.1%}",
                transform=ax.transAxes, ha="center", va="top", fontsize=8)
    axes[0][0].set_ylabel("gates (log)")
    fig.suptitle(f"{record.model} {record.tags['variant']} @ {record.target:.0%} MACs, seed {record.seed}",
                 fontsize=10)
    fig.tight_layout()
    return fig


def widths_figure(records: Sequence[RunRecord], dense_widths: Mapping[str, int],
                  residual: Iterable[str] = ()):
    """Kept channels per group (model order) for several runs of one model/budget/seed.

    Groups are named after their first producer; residual streams are marked "(stream)".
    """
    import matplotlib.pyplot as plt

    ids = list(dense_widths)
    residual = set(residual)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(ids)), 3.6))
    n = len(records) + 1
    width = 0.8 / n
    xs = torch.arange(len(ids), dtype=torch.float64)
    ax.bar((xs - 0.4 + width / 2).numpy(), [dense_widths[g] for g in ids], width, color="0.8", label="dense")
    for i, r in enumerate(records, start=1):
        ax.bar((xs - 0.4 + width / 2 + i * width).numpy(), [r.widths.get(g, 0) for g in ids], width,
               label=f"{r.tags['variant']} ({r.macs_keep:.0%} MACs)")
    ax.set_xticks(xs.numpy(), [f"{g} (stream)" if g in residual else g for g in ids], rotation=90, fontsize=6)
    ax.set(ylabel="channels", title="kept width per channel group")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def stability_figure(records: Sequence[RunRecord]):
    """Per-step training loss and hard-MACs ratio, and per-epoch validation accuracy."""
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_macs, ax_val) = plt.subplots(1, 3, figsize=(14, 3.6))
    for i, r in enumerate(records):
        color = f"C{0 if r.tags['variant'] == 'gdp' else 3}"
        ls = "-" if i < 2 else ":"
        trace = r.summary["trace"]
        label = f"{r.tags['variant']} s{r.seed}"
        ax_loss.plot([t["step"] for t in trace], [t["loss"] for t in trace], color=color, lw=0.7, ls=ls, label=label)
        ax_macs.plot([t["step"] for t in trace], [t["hard_macs_ratio"] for t in trace], color=color, ls=ls, label=label)
        hist = r.histories.get("gdp", [])
        ax_val.plot([h["epoch"] for h in hist], [h.get("val_acc") for h in hist], color=color, marker="o", ls=ls,
                    label=label)
    ax_loss.set(xlabel="step", ylabel="training loss (per batch)")
    ax_macs.set(xlabel="step", ylabel="MACs of the hard network / dense")
    ax_val.set(xlabel="epoch", ylabel="val accuracy (%), gated net")
    for ax in (ax_loss, ax_macs, ax_val):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
