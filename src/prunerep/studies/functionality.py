"""Functionality-oriented pruning's study (notebooks/functionality.ipynb; issue #18).

The algorithm is :mod:`prunerep.methods.functionality` (a reconstruction: no official code, the
full texts were not readable here). This module plans the runs, all from the same dense
checkpoint and the same per-layer widths: functionality-oriented pruning, L1-norm, FPGM's
criterion and random channels, without retraining over a sweep of pruning ratios and with a
brief retraining at some of them; it turns the run records into the tables, figures and the
claims' evidence (``references/claims/functionality.yaml``, ids ``functionality.*``), and writes the
notebook's "assumptions and deviations" table from the configs.

Seeds: a functionality run's seed is the seed of its descriptor batch (and of k-means, if used);
a retraining run's seed also seeds the retraining's data order. L1 and FPGM do not depend on a
seed without retraining: they run once, and that one value is paired with every seed.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from prunerep.config import from_dict, register_section
from prunerep.data import SubsetConfig
from prunerep.engine import OptimConfig, RuntimeConfig
from prunerep.methods.base import Budget
from prunerep.methods.baselines import OneShotHyper, Scope, in_scope
from prunerep.methods.functionality import (
    ActivationMaxHyper,
    FunctionalityHyper,
    activation_maximization,
    am_module,
    channel_responses,
    class_gradients,
    group_similarities,
    near_duplicate_pairs,
    sample_indices,
    similarity_from_vectors,
)
from prunerep.pruning.groups import ChannelGroup, find_groups
from prunerep.reporting.ledger import Evidence, load_claims
from prunerep.reporting.stats import Interval, fmt_mean_std, mean_interval, paired_difference
from prunerep.runner import LatencySettings, RunRecord, RunSpec
from prunerep.studies.base import seeds_text

#: What each baseline column is, as tables and figures name it. "(ours)" marks what the paper does not do.
LABELS: dict[str, str] = {
    "l1": "L1-norm",
    "fpgm": "FPGM criterion (one-shot)",
    "random": "random",
}
#: The functionality column's label by the descriptor that ran. Only activation maximisation is
#: how the paper interprets filters (by visualisation); the response descriptor is ours, and the
#: class-gradient one is ours after CAPTOR (gradients w.r.t. feature maps; CAPTOR's own definition
#: was not read).
DESCRIPTOR_LABELS: dict[str, str] = {
    "response": "functionality (response descriptor, ours)",
    "activation_max": "functionality (activation-maximisation descriptor)",
    "class_gradient": "functionality (class-gradient descriptor, after CAPTOR, ours)",
}


def functionality_label(cfg: FunctionalityConfig) -> str:
    """The main functionality column's label: says which descriptor ran."""
    return DESCRIPTOR_LABELS[cfg.method.descriptor]
#: Methods whose pruned network does not depend on the seed (without retraining they run once).
DETERMINISTIC = ("l1", "fpgm")
RETRAIN = " + retraining"


def _finetune_default() -> OptimConfig:
    # A brief retraining (ours: the paper's retraining recipe was not retrieved).
    return OptimConfig(epochs=1, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine")


@dataclass(frozen=True)
class Setting:
    """One network of the study: its dense checkpoint, which layers are pruned, the ratios."""

    model: str                                                   # pretrain.models key
    enabled: bool = True                                         # false: listed as not run at this profile
    scope: Scope = "all"                                         # all groups, or only inside residual branches
    layers: str = "all"                                          # 1-based prunable groups, e.g. "1,8-13"
    ratios: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])    # without retraining
    retrain_ratios: list[float] = field(default_factory=lambda: [0.5])        # with the brief retraining

    def __post_init__(self) -> None:
        for r in [*self.ratios, *self.retrain_ratios]:
            if not 0 < r < 1:
                raise ValueError(f"setting {self.model!r}: ratios must be in (0, 1), got {r}")
        parse_layers(self.layers)


@dataclass(frozen=True)
class Variant:
    """An extra functionality column with other choices (an ablation of ours; no verdict uses it)."""

    name: str                                                    # id: variant column "functionality:<name>"
    label: str                                                   # column title, says what differs
    hyper: dict[str, Any] = field(default_factory=dict)          # overrides of functionality.method
    ratios: list[float] | None = None                            # None: the setting's no-retraining ratios

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9_]+", self.name):
            raise ValueError(f"variants: name {self.name!r} must be lower-case letters, digits or _")


@dataclass(frozen=True)
class FiguresConfig:
    """Activation-maximisation grids, similarity matrices and the compensation figure."""

    enabled: bool = True
    setting: str = "vgg16"                                       # key of `settings`
    layers: list[int] = field(default_factory=lambda: [1, 8])    # 1-based prunable groups shown
    ratio: float = 0.5                                           # must be a no-retraining and a retraining ratio
    filters: int = 32                                            # patterns per layer in the grid
    compensation_layer: int = 9                                  # 1-based prunable group of the compensation figure
    compensation_filters: int = 8
    am: ActivationMaxHyper = field(default_factory=ActivationMaxHyper)


@register_section("functionality")
@dataclass(frozen=True)
class FunctionalityConfig:
    """The `functionality` section of params.yaml."""

    settings: dict[str, Setting] = field(default_factory=lambda: {"vgg16": Setting(model="vgg16", layers="1,8-13")})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    workers: int = 1
    subset: SubsetConfig = SubsetConfig()
    batch_size: int = 128
    method: FunctionalityHyper = field(default_factory=FunctionalityHyper)
    variants: list[Variant] = field(default_factory=list)
    baselines: list[str] = field(default_factory=lambda: ["l1", "fpgm", "random"])
    finetune: OptimConfig = field(default_factory=_finetune_default)
    # claim 1 counts near-duplicates with a descriptor the method did not cluster by (independent of it)
    duplicate_descriptor: Literal["class_gradient", "activation_max", "response"] = "class_gradient"
    duplicate_similarity: Literal["cosine", "correlation"] = "correlation"
    duplicate_threshold: float = 0.9         # claim 1: kept pairs at least this similar are near-duplicates
    eval_images: int = 256                   # claim 1's evaluation batch (validation images outside the descriptor batch)
    figures: FiguresConfig = FiguresConfig()
    runtime: RuntimeConfig = RuntimeConfig(progress=False)
    latency: LatencySettings = LatencySettings()

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        for b in self.baselines:
            if b not in ("l1", "fpgm", "random"):
                raise ValueError(f"baselines: {b!r} is not one of l1, fpgm, random")
        if not -1 <= self.duplicate_threshold <= 1:
            raise ValueError("duplicate_threshold must be a similarity in [-1, 1]")
        if self.duplicate_descriptor == self.method.descriptor:
            raise ValueError(f"duplicate_descriptor: claim 1 must count near-duplicates with another descriptor than "
                             f"the one the method clusters by ({self.method.descriptor!r}), or it is circular")
        if len({v.name for v in self.variants}) != len(self.variants):
            raise ValueError("variants: two share a name")
        f = self.figures
        s = self.settings.get(f.setting)
        if f.enabled and s is not None and s.enabled:
            if not any(abs(f.ratio - r) < 1e-9 for r in s.ratios) or not any(abs(f.ratio - r) < 1e-9 for r in s.retrain_ratios):
                raise ValueError(f"figures.ratio {f.ratio:g} must be a ratio of settings.{f.setting} both without "
                                 "and with retraining (the compensation figure compares the two networks)")
            layers = parse_layers(s.layers)
            for k in [*f.layers, f.compensation_layer]:
                if layers is not None and k not in layers:
                    raise ValueError(f"figures: layer {k} is not pruned in settings.{f.setting} (layers {s.layers})")

    def pretrain_keys(self) -> dict[str, str]:
        """Key path (in this section) -> the pretrain.models key it names (checked by `config check`)."""
        return {f"settings.{name}.model": s.model for name, s in self.settings.items() if s.enabled}


# ---------------------------------------------------------------------------------------------
# planning


def parse_layers(text: str) -> list[int] | None:
    """``"all"`` -> None; ``"1,8-13"`` -> [1, 8, 9, 10, 11, 12, 13] (1-based, sorted, unique)."""
    if text.strip() == "all":
        return None
    out: set[int] = set()
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise ValueError(f"layers: cannot read {part!r} of {text!r} (write e.g. '1,8-13' or 'all')")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if lo < 1 or hi < lo:
            raise ValueError(f"layers: bad range {part!r} in {text!r}")
        out.update(range(lo, hi + 1))
    return sorted(out)


def layer_groups(dense: nn.Module, setting: Setting, example_shape: Sequence[int]) -> dict[int, ChannelGroup]:
    """The setting's pruned groups by their 1-based index among the prunable groups of its scope
    (model order: VGG-16's conv 1 ... 13), filtered by `layers`."""
    groups = find_groups(dense, torch.zeros(tuple(example_shape)))
    prunable = [g for g in groups if in_scope(g, setting.scope)]
    layers = parse_layers(setting.layers)
    if layers is None:
        return {i: g for i, g in enumerate(prunable, start=1)}
    if layers[-1] > len(prunable):
        raise ValueError(f"setting {setting.model!r}: layer {layers[-1]} asked, the network has {len(prunable)} "
                         f"prunable groups in scope {setting.scope!r}")
    return {i: prunable[i - 1] for i in layers}


def chosen_groups(dense: nn.Module, setting: Setting, example_shape: Sequence[int]) -> list[ChannelGroup]:
    """The setting's pruned groups, in model order."""
    return list(layer_groups(dense, setting, example_shape).values())


def variant_hyper(cfg: FunctionalityConfig, variant: Variant | None, seed: int, scope: Scope) -> FunctionalityHyper:
    """The functionality method's hyper-parameters of a column, with the run's seed and scope."""
    base = dataclasses.asdict(cfg.method)
    if variant is not None:
        base.update(variant.hyper)
    base.update(seed=seed, scope=scope)
    return from_dict(FunctionalityHyper, base, f"functionality.variants.{variant.name}" if variant else "functionality.method")


def column_labels(cfg: FunctionalityConfig) -> dict[str, str]:
    """Column id -> label: the paper's method, the baselines, the variants (ours)."""
    out = {"functionality": functionality_label(cfg), **{b: LABELS[b] for b in cfg.baselines}}
    for v in cfg.variants:
        out[f"functionality:{v.name}"] = v.label
    if len(set(out.values())) != len(out):
        raise ValueError(f"functionality: two columns share a label ({list(out.values())})")
    return out


def plan(cfg: FunctionalityConfig, dense_models: Mapping[str, nn.Module],
         example_shape: Sequence[int]) -> tuple[list[RunSpec], list[dict[str, str]]]:
    """Every run (retraining runs first: they are the long ones), and the settings not run.

    Labels read ``<column>[ + retraining]@<setting> r=<ratio>``; tags carry ``setting``,
    ``variant`` (column id), ``ratio`` and ``retrain``.
    """
    labels = column_labels(cfg)
    # the retraining's recorded batch size is the one its loader uses
    finetune = dataclasses.replace(cfg.finetune, batch_size=cfg.batch_size)
    runs: list[RunSpec] = []
    skipped: list[dict[str, str]] = []
    for name, s in cfg.settings.items():
        if not s.enabled or s.model not in dense_models:
            skipped.append({"setting": name, "model": s.model,
                            "reason": "disabled at this profile" if not s.enabled else "no dense checkpoint"})
            continue
        chosen = chosen_groups(dense_models[s.model], s, example_shape)
        for retrain, ratios in ((True, s.retrain_ratios), (False, s.ratios)):
            for r in ratios:
                budget = Budget(ratios={g.id: r for g in chosen})
                columns: list[tuple[str, Variant | None]] = [("functionality", None), *((b, None) for b in cfg.baselines)]
                if not retrain:
                    columns += [(f"functionality:{v.name}", v) for v in cfg.variants
                                if v.ratios is None or any(abs(r - x) < 1e-9 for x in v.ratios)]
                for column, variant in columns:
                    method = column.split(":")[0]
                    seeds = cfg.seeds[:1] if (method in DETERMINISTIC and not retrain) else cfg.seeds
                    for seed in seeds:
                        hyper: Any = (variant_hyper(cfg, variant, seed, s.scope) if method == "functionality"
                                      else OneShotHyper(scope=s.scope, seed=seed))
                        runs.append(RunSpec(
                            method=method, budget=budget, hyper=hyper, finetune=finetune if retrain else None,
                            select="last", seed=seed, batch_size=cfg.batch_size, runtime=cfg.runtime,
                            label=f"{labels[column]}{RETRAIN if retrain else ''}@{name} r={r:g}", model=s.model,
                            tags={"setting": name, "variant": column, "ratio": r, "retrain": retrain}))
    return runs, skipped


# ---------------------------------------------------------------------------------------------
# records -> frame


def results_frame(records: Sequence[RunRecord], cfg: FunctionalityConfig) -> Any:
    """One row per run: the plan's coordinates, the record's metrics and the method's numbers."""
    import pandas as pd

    labels = column_labels(cfg)
    rows = []
    for rec in records:
        row = {**rec.row(), "setting": rec.tags["setting"], "variant": rec.tags["variant"],
               "column": labels.get(rec.tags["variant"], rec.tags["variant"]), "ratio": rec.tags["ratio"],
               "retrain": bool(rec.tags["retrain"])}
        groups = (rec.summary or {}).get("groups", {})
        if groups:
            sizes = [s["channels"] / max(s["clusters"], 1) for s in groups.values()]
            row["mean_cluster_size"] = sum(sizes) / len(sizes)
        rows.append(row)
    return pd.DataFrame(rows)


def no_retrain_acc(df: Any, setting: str, variant: str, ratio: float, seeds: Sequence[int]) -> dict[int, float]:
    """seed -> test accuracy without retraining of one column at one ratio.

    From the no-retraining runs (a deterministic method's one run is paired with every seed), or,
    where none ran, from the retraining runs' accuracy right after pruning (the same network).
    """
    sub = df[(df.setting == setting) & (df.variant == variant) & ((df.ratio - ratio).abs() < 1e-9)]
    plain = sub[~sub.retrain]
    if len(plain):
        values = dict(zip(plain.seed, plain.test_acc, strict=True))
    else:
        values = dict(zip(sub.seed, sub.test_acc_before_finetune, strict=True))
    if variant.split(":")[0] in DETERMINISTIC and len(values) == 1:
        (only,) = values.values()
        return {int(s): float(only) for s in seeds}
    return {int(s): float(v) for s, v in values.items()}


def retrain_acc(df: Any, setting: str, variant: str, ratio: float) -> tuple[dict[int, float], dict[int, float]]:
    """(seed -> accuracy right after pruning, seed -> accuracy after the brief retraining)."""
    sub = df[(df.setting == setting) & (df.variant == variant) & ((df.ratio - ratio).abs() < 1e-9) & df.retrain]
    return (dict(zip(sub.seed.astype(int), sub.test_acc_before_finetune.astype(float), strict=True)),
            dict(zip(sub.seed.astype(int), sub.test_acc.astype(float), strict=True)))


#: Our column -> (row of references/paper_results/functionality.yaml without retraining, with retraining).
PAPER_ROWS = {"functionality": ("functionality no retraining", None), "l1": ("L1 no retraining", "L1 retrained")}


def _paper_cell(paper: Any, row: str | None, model: str) -> Any:
    """The paper's value for one of our cells: a number, "not transcribed", or "—" (no such row,
    or another network / dataset than the paper's)."""
    from prunerep.reporting.paper import paper_value

    if paper is None or paper.empty or row is None:
        return "—"
    sel = paper[(paper.row == row) & (paper.model == model)] if "model" in paper else paper[paper.row == row]
    if sel.empty:
        return "—"
    return paper_value(sel, row=row, metric="test_acc")


def accuracy_table(cfg: FunctionalityConfig, df: Any, dense_acc: Mapping[str, float], paper: Any = None) -> Any:
    """Per setting, ratio and column: accuracy without retraining and after it (mean ± std over
    seeds), the drop from dense, the share of the drop the retraining recovered, and the paper's
    numbers where its data file has a row for the column (shown only on the paper's dataset)."""
    import pandas as pd

    labels = column_labels(cfg)
    rows = []
    for name, s in cfg.settings.items():
        d = df[df.setting == name] if len(df) else df
        if not len(d):
            continue
        dense = dense_acc.get(s.model, math.nan)
        for r in sorted(set(d.ratio)):
            for column, label in labels.items():
                before = no_retrain_acc(d, name, column, r, cfg.seeds)
                if not before:
                    continue
                pre, post = retrain_acc(d, name, column, r)
                row: dict[str, Any] = {"setting": name, "r": r, "column": label,
                                       "no retraining (%)": fmt_mean_std(list(before.values())),
                                       "drop from dense (points)": fmt_mean_std([dense - v for v in before.values()])}
                row["after retraining (%)"] = fmt_mean_std(list(post.values())) if post else "not run"
                rec = [(post[k] - pre[k]) / (dense - pre[k]) for k in post if dense - pre[k] > 0]
                row["share of the drop recovered"] = fmt_mean_std(rec) if rec else "—"
                if paper is not None and not paper.empty:
                    plain, retrained = PAPER_ROWS.get(column, (None, None))
                    row["paper, no retraining (%)"] = _paper_cell(paper, plain, s.model)
                    row["paper, retrained (%)"] = _paper_cell(paper, retrained, s.model)
                rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# claim 1: near-duplicate pairs the pruned networks keep


def validation_set(splits: Any, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The validation split's images, normalised as every run's validation loader gives them (same
    order, so that indices into it are the indices of the methods' descriptor batches), and labels."""
    loader = splits.loader(splits.val, 512, train=False, device=device)
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def validation_images(splits: Any, device: str | torch.device = "cpu") -> torch.Tensor:
    """The validation images of :func:`validation_set`."""
    return validation_set(splits, device)[0]


def input_bounds(splits: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel range of normalised images (pixel values 0 and 1): the clamp of the ascent."""
    mean = torch.as_tensor(splits.mean, dtype=torch.float32)
    std = torch.as_tensor(splits.std, dtype=torch.float32)
    return -mean / std, (1 - mean) / std


def eval_indices(n: int, descriptor_images: int, seed: int, size: int) -> torch.Tensor:
    """Validation indices outside seed `seed`'s descriptor batch, a seeded sample of `size` of them:
    the batch on which claim 1 measures functional duplicates (disjoint from what clustered)."""
    used = set(sample_indices(n, descriptor_images, seed).tolist())
    rest = torch.tensor([i for i in range(n) if i not in used], dtype=torch.long)
    if len(rest) == 0:
        raise ValueError("functionality: the validation split has no image outside the descriptor batch; "
                         "raise subset.val or lower method.images")
    pick = sample_indices(len(rest), size, seed + 1_000_003)
    return rest[pick]


DUPLICATE_NAMES = {"class_gradient": "class-gradient", "activation_max": "activation-maximisation pattern",
                   "response": "response"}


def duplicate_measure(cfg: FunctionalityConfig) -> str:
    """Claim 1's similarity in words, e.g. "class-gradient correlation"."""
    return f"{DUPLICATE_NAMES[cfg.duplicate_descriptor]} {cfg.duplicate_similarity}"


def duplicate_similarities(cfg: FunctionalityConfig, dense: nn.Module, groups: Sequence[ChannelGroup],
                           images: torch.Tensor, labels: torch.Tensor | None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Claim 1's similarity of every pair of channels of the dense network, per group, under
    ``cfg.duplicate_descriptor`` (not the descriptor the method clustered by)."""
    kind, how = cfg.duplicate_descriptor, cfg.duplicate_similarity
    if kind == "response":
        return group_similarities(dense, groups, images, how)[0]
    if kind == "class_gradient":
        if labels is None:
            raise ValueError("functionality: the class-gradient descriptor of claim 1 needs the images' labels")
        was = dense.training
        dense.eval()
        with torch.no_grad():
            out = dense(images[:1])
        dense.train(was)
        num_classes = int((out["out"] if isinstance(out, Mapping) else out).shape[1])
        desc = class_gradients(dense, groups, images, labels, num_classes)
        return {gid: similarity_from_vectors(d, how) for gid, d in desc.items()}
    lo, hi = images.amin(dim=(0, 2, 3)).cpu(), images.amax(dim=(0, 2, 3)).cpu()
    return {g.id: similarity_from_vectors(activation_maximization(dense, am_module(g), range(g.channels), images.shape[1:],
                                                                  cfg.figures.am, seed=seed, bounds=(lo, hi)).cpu(), how)
            for g in groups}


#: Columns whose kept sets claim 1 counts (random: the base rate of a selection blind to function).
DUPLICATE_COLUMNS = ("l1", "fpgm", "random", "functionality")


def duplicates_frame(cfg: FunctionalityConfig, records: Sequence[RunRecord], dense_models: Mapping[str, nn.Module],
                     val_images: torch.Tensor, example_shape: Sequence[int],
                     val_labels: torch.Tensor | None = None) -> Any:
    """Per setting, ratio, seed and method: near-duplicate pairs among the kept channels.

    Similarities are :func:`duplicate_similarities` of the *dense* network on seed `s`'s evaluation
    batch (:func:`eval_indices`: validation images the descriptor batch did not use), with a
    descriptor the method did not cluster by, summed over the pruned groups; a pair is a
    near-duplicate at ``cfg.duplicate_threshold``. ``max_similarity`` is the mean, over kept
    channels, of their largest similarity to another kept channel of their group (a measure
    without threshold). Kept sets are the ones the runs recorded (``summary()["kept"]``). Rows for
    "dense" count all channels; "random" is the base rate.
    """
    import pandas as pd

    rows = []
    for name, s in cfg.settings.items():
        recs = [r for r in records if r.tags["setting"] == name and not r.tags["retrain"]]
        if not recs or s.model not in dense_models:
            continue
        dense = dense_models[s.model]
        chosen = chosen_groups(dense, s, example_shape)
        device = next(dense.parameters()).device
        for seed in cfg.seeds:
            idx = eval_indices(len(val_images), cfg.method.images, seed, cfg.eval_images)
            sims = duplicate_similarities(cfg, dense, chosen, val_images[idx].to(device),
                                          None if val_labels is None else val_labels[idx].to(device), seed)
            kept_sets: list[tuple[str, float | None, dict[str, list[int]]]] = [
                ("dense", None, {g.id: list(range(g.channels)) for g in chosen})]
            for r in sorted({rec.tags["ratio"] for rec in recs}):
                for rec in (rec for rec in recs if abs(rec.tags["ratio"] - r) < 1e-9):
                    col = rec.tags["variant"]
                    if col in DUPLICATE_COLUMNS and (rec.seed == seed or col in DETERMINISTIC):
                        kept_sets.append((col, r, rec.summary["kept"]))
            for method, r, kept in kept_sets:
                pairs, maxima = 0, []
                for g in chosen:
                    keep = torch.zeros(g.channels, dtype=torch.bool)
                    keep[kept.get(g.id, list(range(g.channels)))] = True
                    sim = sims[g.id]
                    pairs += near_duplicate_pairs(sim, keep, cfg.duplicate_threshold)
                    sub = sim[keep][:, keep].clone()
                    sub.fill_diagonal_(-math.inf)
                    if sub.shape[0] > 1:
                        maxima += sub.max(1).values.tolist()
                rows.append({"setting": name, "ratio": r, "seed": seed, "method": method, "pairs": pairs,
                             "max_similarity": sum(maxima) / len(maxima) if maxima else math.nan})
    return pd.DataFrame(rows)


def duplicates_table(cfg: FunctionalityConfig, dup: Any) -> Any:
    """Claim 1's table: kept near-duplicate pairs per method (mean ± std over evaluation batches)."""
    import pandas as pd

    labels = {"dense": "dense (all channels)", **column_labels(cfg)}
    rows = []
    if not len(dup):
        return pd.DataFrame(rows)
    for name in dup.setting.unique():
        d = dup[dup.setting == name]
        dense = d[d.method == "dense"]
        for r in sorted(x for x in d.ratio.dropna().unique()):
            sub = d[(d.ratio - r).abs() < 1e-9]
            row: dict[str, Any] = {"setting": name, "r": r, f"dense: pairs >= {cfg.duplicate_threshold:g}":
                                   fmt_mean_std(list(dense.pairs), digits=1)}
            for m in (m for m in DUPLICATE_COLUMNS if m in labels):
                x = sub[sub.method == m]
                row[f"{labels[m]}: pairs"] = fmt_mean_std(list(x.pairs), digits=1) if len(x) else "—"
                row[f"{labels[m]}: mean max similarity"] = fmt_mean_std(list(x.max_similarity), digits=3) if len(x) else "—"
            rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# evidence


def verdict_budget(cfg: FunctionalityConfig, splits: Any, profile: str) -> str:
    """The budget of a verdict in one phrase (captions carry `budget_text`)."""
    f = cfg.finetune
    return (f"`{profile}`: descriptor batch {cfg.method.images} validation images ({cfg.method.descriptor}); "
            f"retraining {f.epochs:g} epoch(s) on {len(splits.train)} training images; {len(splits.test)} test images")


def budget_text(cfg: FunctionalityConfig, splits: Any, profile: str) -> str:
    """One sentence on what every run got, for every caption."""
    m, f = cfg.method, cfg.finetune
    settings = "; ".join(f"{name}: layers {s.layers} ({s.scope}), r = {', '.join(f'{r:g}' for r in s.ratios)} "
                         f"without retraining, {', '.join(f'{r:g}' for r in s.retrain_ratios) or 'none'} with"
                         for name, s in cfg.settings.items() if s.enabled)
    steps = round(f.epochs * (len(splits.train) // cfg.batch_size))
    return (f"Profile `{profile}`: {settings}. Functionality: {m.descriptor} descriptor on {m.images} validation "
            f"images, {m.similarity} similarity, {m.cluster} clustering"
            + (f" ({m.linkage} linkage)" if m.cluster == "agglomerative" else "")
            + f", representative = {m.representative}" + (", with folding" if m.fold else "")
            + f". Retraining: {f.epochs:g} epoch(s) (≈{steps} iterations, batch {cfg.batch_size}) on "
            f"{len(splits.train)} training images, lr {f.lr:g} ({f.schedule}), last weights; seeds {list(cfg.seeds)}.")


def evidence(cfg: FunctionalityConfig, df: Any, dup: Any, dense_acc: Mapping[str, float], budget: str) -> list[Evidence]:
    """The claims' evidence by the one verdict rule, in the order of claims.yaml."""
    claims = load_claims()
    out: list[Evidence] = []
    lab = column_labels(cfg)
    det_note = "L1 does not depend on the seed without retraining: its one run is paired with every seed."
    for name, s in cfg.settings.items():
        d = df[df.setting == name] if len(df) else df
        if not s.enabled or not len(d):
            for cid in ("functionality.l1_keeps_duplicates", "functionality.vs_l1_no_retrain",
                        "functionality.no_retrain_drop", "functionality.retrain_recovers_l1",
                        "functionality.retrain_gain_smaller"):
                out.append(Evidence.judge(claims[cid], None, test=f"{name}: not run", budget=budget))
            continue
        dense = dense_acc[s.model]
        # claim 1: L1 keeps more near-duplicate pairs than functionality pruning
        dd = dup[dup.setting == name] if len(dup) else dup
        for r in sorted(dd.ratio.dropna().unique()) if len(dd) else []:
            sub = dd[(dd.ratio - r).abs() < 1e-9]
            a = {int(x.seed): float(x.pairs) for x in sub[sub.method == "l1"].itertuples()}
            b = {int(x.seed): float(x.pairs) for x in sub[sub.method == "functionality"].itertuples()}
            iv = paired_difference(a, b) if set(a) & set(b) else None
            dense_pairs = [float(x) for x in dd[dd.method == "dense"].pairs]
            none = (" The dense network has no pair at this threshold in these layers: the count cannot differ."
                    if dense_pairs and max(dense_pairs) == 0 else "")
            rand = [float(x) for x in sub[sub.method == "random"].pairs]
            base = (f" Random channels at the same widths keep {fmt_mean_std(rand, digits=1)} pairs (the base rate)."
                    if rand else "")
            measure = duplicate_measure(cfg)
            out.append(Evidence.judge(
                claims["functionality.l1_keeps_duplicates"], iv, budget=budget,
                test=f"{name}, r = {r:g}: kept pairs with {measure} >= {cfg.duplicate_threshold:g}, L1 − ours",
                note=(f"Dense network's {measure} on each seed's evaluation batch ({cfg.eval_images} validation images "
                      f"outside its descriptor batch), summed over the pruned layers; paired over "
                      f"{seeds_text(sorted(set(a) & set(b)))}. The method clustered by its {cfg.method.descriptor} "
                      "descriptor on other images: this counts duplicates by another descriptor." + base + none)))
            a = {int(x.seed): float(x.max_similarity) for x in sub[sub.method == "l1"].itertuples()}
            b = {int(x.seed): float(x.max_similarity) for x in sub[sub.method == "functionality"].itertuples()}
            iv = paired_difference(a, b) if set(a) & set(b) else None
            out.append(Evidence.judge(
                claims["functionality.l1_keeps_duplicates"], iv, budget=budget,
                test=f"{name}, r = {r:g}: mean over kept filters of the largest {measure} to another kept filter, L1 − ours",
                note="The same question without a threshold (same descriptor, images and seeds)."))
        # claims 2: without retraining
        for r in sorted(s.ratios):
            ours = no_retrain_acc(d, name, "functionality", r, cfg.seeds)
            l1 = no_retrain_acc(d, name, "l1", r, cfg.seeds)
            iv = paired_difference(ours, l1) if set(ours) & set(l1) else None
            out.append(Evidence.judge(claims["functionality.vs_l1_no_retrain"], iv, budget=budget,
                                      test=f"{name}, r = {r:g}: {lab['functionality']} − {lab['l1']}, test accuracy (points)",
                                      note=det_note))
        for r in sorted(s.ratios):
            ours = no_retrain_acc(d, name, "functionality", r, cfg.seeds)
            iv = mean_interval([dense - v for v in ours.values()]) if ours else None
            out.append(Evidence.judge(claims["functionality.no_retrain_drop"], iv, budget=budget,
                                      test=f"{name}, r = {r:g}: dense − {lab['functionality']} (points)",
                                      note=f"Dense {s.model}: {dense:.2f} % on the same test images."))
        # claim 3: retraining recovers most of L1's loss, and has less to recover after ours
        for r in sorted(s.retrain_ratios):
            pre, post = retrain_acc(d, name, "l1", r)
            shares = {k: (post[k] - pre[k]) / (dense - pre[k]) for k in post if dense - pre[k] > 0}
            iv = mean_interval(list(shares.values())) if shares else None
            out.append(Evidence.judge(
                claims["functionality.retrain_recovers_l1"], iv, budget=budget,
                test=f"{name}, r = {r:g}: (L1 after − L1 before) / (dense − L1 before)",
                note="" if shares else "L1 lost nothing without retraining: no share to recover."))
            fpre, fpost = retrain_acc(d, name, "functionality", r)
            gain_l1 = {k: post[k] - pre[k] for k in post}
            gain_f = {k: fpost[k] - fpre[k] for k in fpost}
            iv = paired_difference(gain_l1, gain_f) if set(gain_l1) & set(gain_f) else None
            out.append(Evidence.judge(
                claims["functionality.retrain_gain_smaller"], iv, budget=budget,
                test=f"{name}, r = {r:g}: retraining gain of L1 − retraining gain of {lab['functionality']} (points)",
                note=f"Paired over {seeds_text(sorted(set(gain_l1) & set(gain_f)))}; the same retraining for both."))
    return out


# ---------------------------------------------------------------------------------------------
# figures


def _denormalise(p: torch.Tensor) -> torch.Tensor:
    """A pattern scaled to [0, 1] for display (per pattern; the figure shows shapes, not levels)."""
    p = p.float()
    lo, hi = p.amin(), p.amax()
    return (p - lo) / (hi - lo).clamp_min(1e-12)


def _show(ax: Any, pattern: torch.Tensor) -> None:
    img = _denormalise(pattern.cpu())
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(img[:3].permute(1, 2, 0).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def grid_order(labels: Sequence[int], kept: Sequence[int], n: int) -> list[tuple[int, int, bool]]:
    """Which filters the grid shows: whole clusters, largest first (ties: smallest label), up to `n`
    filters; (channel, cluster, kept) each."""
    by: dict[int, list[int]] = {}
    for ch, c in enumerate(labels):
        by.setdefault(int(c), []).append(ch)
    order = sorted(by, key=lambda c: (-len(by[c]), c))
    out: list[tuple[int, int, bool]] = []
    keep = set(kept)
    for c in order:
        if out and len(out) + len(by[c]) > n:
            break
        out += [(ch, c, ch in keep) for ch in by[c]]
    return out[:n]


def am_grid(dense: nn.Module, group: ChannelGroup, labels: Sequence[int], kept: Sequence[int], n: int,
            input_shape: Sequence[int], am: ActivationMaxHyper, bounds: tuple[torch.Tensor, torch.Tensor],
            title: str, seed: int = 0) -> Any:
    """Activation-maximisation patterns of one layer's filters, grouped by cluster: each cluster one
    frame colour, its kept representative framed thick and marked "kept"."""
    import matplotlib.pyplot as plt

    shown = grid_order(labels, kept, n)
    pats = activation_maximization(dense, am_module(group), [ch for ch, _, _ in shown], input_shape, am,
                                   seed=seed, bounds=bounds)
    cols = min(8, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.25 * cols, 1.4 * rows + 0.5), squeeze=False)
    colors = plt.cm.tab10.colors
    cluster_ids = list(dict.fromkeys(c for _, c, _ in shown))
    for ax in axes.flat:
        ax.axis("off")
    for k, (ch, c, is_kept) in enumerate(shown):
        ax = axes.flat[k]
        ax.axis("on")
        _show(ax, pats[k])
        color = colors[cluster_ids.index(c) % len(colors)]
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(3.5 if is_kept else 1.2)
        ax.set_title(f"#{ch}" + (" kept" if is_kept else ""), fontsize=7, color=color)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def similarity_figure(sims: Mapping[str, torch.Tensor], labels: Mapping[str, Sequence[int]], names: Mapping[str, str],
                      title: str) -> Any:
    """Response similarity matrices of the shown layers, channels ordered by cluster (largest first),
    with the boundaries of the multi-filter clusters drawn."""
    import matplotlib.pyplot as plt

    gids = list(sims)
    fig, axes = plt.subplots(1, len(gids), figsize=(4.2 * len(gids), 4.0), squeeze=False)
    for ax, gid in zip(axes[0], gids, strict=True):
        lab = list(labels[gid])
        order = [ch for ch, _, _ in grid_order(lab, [], len(lab))]
        s = sims[gid][order][:, order].float().numpy()
        im = ax.imshow(s, cmap="viridis", vmin=min(0.0, float(s.min())), vmax=1.0)
        sizes: dict[int, int] = {}
        for c in lab:
            sizes[c] = sizes.get(c, 0) + 1
        pos = 0
        for c in sorted(sizes, key=lambda c: (-sizes[c], c)):
            size = sizes[c]
            if size > 1:
                ax.add_patch(plt.Rectangle((pos - 0.5, pos - 0.5), size, size, fill=False, ec="red", lw=0.8))
            pos += size
        ax.set_title(f"{names[gid]} ({len(lab)} channels, {len(sizes)} clusters)", fontsize=9)
        ax.set_xlabel("channel (ordered by cluster)")
        fig.colorbar(im, ax=ax, fraction=0.046, label="response cosine")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def accuracy_figure(df: Any, cfg: FunctionalityConfig, setting: str, retrain: bool, dense_acc: float, title: str) -> Any:
    """Test accuracy against the pruning ratio, one line per column (mean ± std over seeds)."""
    from prunerep.reporting.figures import mean_spread_plot

    d = df[(df.setting == setting) & (df.retrain == retrain)].copy()
    fig = mean_spread_plot(d, x="ratio", y="test_acc", hue="column", title=title, xlabel="pruning ratio r (per pruned layer)",
                           ylabel="test accuracy (%)")
    ax = fig.axes[0]
    ax.axhline(dense_acc, color="black", ls=":", lw=1)
    ax.annotate("dense", (0.01, dense_acc), xycoords=("axes fraction", "data"), fontsize=8, va="bottom")
    return fig


def find_record(records: Sequence[RunRecord], setting: str, variant: str, ratio: float, retrain: bool,
            seed: int | None) -> RunRecord | None:
    for r in records:
        if (r.tags["setting"] == setting and r.tags["variant"] == variant and abs(r.tags["ratio"] - ratio) < 1e-9
                and bool(r.tags["retrain"]) == retrain and (seed is None or r.seed == seed)):
            return r
    return None


def compensation(cfg: FunctionalityConfig, records: Sequence[RunRecord], dense_models: Mapping[str, nn.Module],
                 val_images: torch.Tensor, example_shape: Sequence[int]) -> tuple[Any, dict[str, Any]]:
    """How much the brief retraining changes the kept filters' function, after L1 and after ours.

    For every seed: the response cosine, on the seed's evaluation batch, between each kept filter
    of the pruned layers before and after the retraining (the network right after pruning vs the
    retrained one), averaged per layer and method. Returns (frame with one row per seed, method
    and layer, the networks of the figure's seed for `compensation_figure`).
    """
    import pandas as pd

    from prunerep.models.checkpoint import load_model

    f = cfg.figures
    s = cfg.settings.get(f.setting)
    rows: list[dict[str, Any]] = []
    nets: dict[str, Any] = {}
    if s is None or not s.enabled or s.model not in dense_models:
        return pd.DataFrame(rows), nets
    chosen = layer_groups(dense_models[s.model], s, example_shape)
    for seed in cfg.seeds:
        idx = eval_indices(len(val_images), cfg.method.images, seed, cfg.eval_images)
        images = val_images[idx]
        for variant in ("l1", "functionality"):
            before_rec = find_record(records, f.setting, variant, f.ratio, False, None if variant in DETERMINISTIC else seed)
            after_rec = find_record(records, f.setting, variant, f.ratio, True, seed)
            if before_rec is None or after_rec is None or not before_rec.model_path or not after_rec.model_path:
                continue
            before, _ = load_model(before_rec.model_path)
            after, _ = load_model(after_rec.model_path)
            gb = find_groups(before, torch.zeros(tuple(example_shape)))
            ga = find_groups(after, torch.zeros(tuple(example_shape)))
            for k, g in chosen.items():
                if g.id not in gb or g.id not in ga:
                    continue
                a = channel_responses(before, gb[g.id], images)
                b = channel_responses(after, ga[g.id], images)
                cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
                rows.append({"seed": seed, "method": variant, "layer": k, "group": g.id,
                             "cosine": float(cos.mean()), "filters": int(a.shape[0])})
            if seed == cfg.seeds[0]:
                nets[variant] = (before, after)
    return pd.DataFrame(rows), nets


def compensation_figure(cfg: FunctionalityConfig, nets: Mapping[str, Any], comp: Any, dense: nn.Module,
                        input_shape: Sequence[int], bounds: tuple[torch.Tensor, torch.Tensor],
                        example_shape: Sequence[int], title: str) -> Any:
    """Top: activation-maximisation patterns of the first kept filters of one pruned layer, right
    after pruning and after the brief retraining (rows), after L1 and after ours. Bottom: the
    response cosine before/after retraining per pruned layer (mean over kept filters; one point
    per seed)."""
    import matplotlib.pyplot as plt

    f = cfg.figures
    s = cfg.settings[f.setting]
    labels = column_labels(cfg)
    layer = layer_groups(dense, s, example_shape)[f.compensation_layer]
    methods = [m for m in ("l1", "functionality") if m in nets]
    n = f.compensation_filters
    fig = plt.figure(figsize=(1.3 * n + 1.5, 1.35 * 2 * len(methods) + 3.2), layout="constrained")
    sub = fig.subfigures(2, 1, height_ratios=[1.35 * 2 * max(len(methods), 1), 3.0])
    axes = sub[0].subplots(max(2 * len(methods), 1), n, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, m in enumerate(methods):
        before, after = nets[m]
        for j, (net, when) in enumerate(((before, "right after pruning"), (after, "after retraining"))):
            gid = layer.id
            module = am_module(find_groups(net, torch.zeros(tuple(example_shape)))[gid])
            pats = activation_maximization(net, module, range(n), input_shape, f.am, seed=0, bounds=bounds)
            for k in range(min(n, len(pats))):
                ax = axes[2 * i + j, k]
                ax.axis("on")
                _show(ax, pats[k])
                if k == 0:
                    ax.set_ylabel(f"{labels[m]}\n{when}", fontsize=7)
    sub[0].suptitle(f"{title}\nkept filters of layer {f.compensation_layer} ({layer.id}): activation-maximisation "
                    "patterns (same starting noise)", fontsize=9)
    ax = sub[1].subplots(1, 1)
    if len(comp):
        for m, marker in (("l1", "o"), ("functionality", "s")):
            c = comp[comp.method == m]
            if len(c):
                ax.plot(c.layer + (-0.08 if m == "l1" else 0.08), c.cosine, ls="none", marker=marker, ms=5, alpha=0.7,
                        label=labels[m])
        ax.legend(fontsize=8)
        ax.set_xticks(sorted(int(x) for x in comp.layer.unique()))
    ax.set(xlabel="pruned layer (index among the prunable layers)", ylabel="cosine, before vs after retraining",
           title="How much retraining changed the kept filters' responses (1 = unchanged)")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    return fig


def compensation_table(cfg: FunctionalityConfig, comp: Any) -> Any:
    """Mean (over layers) before/after-retraining response cosine of the kept filters per method and seed."""
    import pandas as pd

    if not len(comp):
        return pd.DataFrame()
    labels = column_labels(cfg)
    rows = []
    for m in comp.method.unique():
        c = comp[comp.method == m]
        per_seed = c.groupby("seed").cosine.mean()
        rows.append({"method": labels[m], "mean cosine over pruned layers": fmt_mean_std(list(per_seed), digits=3),
                     "lowest layer": f"{c.groupby('layer').cosine.mean().idxmin()}"})
    return pd.DataFrame(rows)


def compensation_gap(comp: Any) -> Interval | None:
    """Seed-paired difference of the mean cosine (ours − L1): > 0 means retraining changed the
    kept filters less after functionality pruning."""
    if not len(comp):
        return None
    a = comp[comp.method == "functionality"].groupby("seed").cosine.mean().to_dict()
    b = comp[comp.method == "l1"].groupby("seed").cosine.mean().to_dict()
    return paired_difference(a, b) if set(a) & set(b) else None


def metrics(profile: str, n_runs: int, dense_acc: Mapping[str, float], df: Any, dup: Any,
            gap: Interval | None) -> dict[str, Any]:
    """The stage's metrics.json: dense accuracy, mean test accuracy per setting, ratio, column and
    retraining, mean kept near-duplicate pairs per method, and the compensation gap."""
    out: dict[str, Any] = {"profile": profile, "runs": n_runs, **{f"dense/{k}/test_acc": v for k, v in dense_acc.items()}}
    if len(df):
        for (name, v, r, rt), g in df.groupby(["setting", "variant", "ratio", "retrain"]):
            out[f"{name}/r={r:g}/{v}/{'retrained' if rt else 'no_retrain'}/test_acc_mean"] = float(g.test_acc.mean())
    if len(dup):
        for (name, r, m), g in dup.dropna(subset=["ratio"]).groupby(["setting", "ratio", "method"]):
            out[f"{name}/r={r:g}/{m}/duplicate_pairs_mean"] = float(g.pairs.mean())
    if gap is not None:
        out["compensation/cosine_gap_functionality_minus_l1"] = gap.mean
    return out


# ---------------------------------------------------------------------------------------------
# text


def scope_sentence(cfg: FunctionalityConfig, skipped: Sequence[Mapping[str, str]], n_runs: int) -> str:
    """What ran and what did not, from the config and the plan."""
    parts = [f"{n_runs} runs"]
    for s in skipped:
        parts.append(f"setting `{s['setting']}` ({s['model']}) is not run: {s['reason']}")
    return "; ".join(parts) + "."


def assumptions_table(cfg: FunctionalityConfig, paper_cfg: FunctionalityConfig, df: Any, data_text: str,
                      dense_acc: Mapping[str, float]) -> Any:
    """"Assumptions and deviations": the paper's | ours | why | measured effect, from the configs and
    the runs (every choice of the reconstruction; the paper's text did not pin them down)."""
    import pandas as pd

    m, pm = cfg.method, paper_cfg.method
    rows: list[dict[str, str]] = []

    def add(theirs: str, ours: str, why: str, effect: str = "not measured") -> None:
        rows.append({"the paper's": theirs, "ours": ours, "why": why, "measured effect": effect})

    def variant_effect(key: str, value: Any) -> str:
        effects = []
        for v in cfg.variants:
            if v.hyper.get(key) == value and len(v.hyper) == 1:
                for name, s in cfg.settings.items():
                    for r in sorted(v.ratios or s.ratios):
                        a = no_retrain_acc(df, name, f"functionality:{v.name}", r, cfg.seeds) if len(df) else {}
                        b = no_retrain_acc(df, name, "functionality", r, cfg.seeds) if len(df) else {}
                        if set(a) & set(b):
                            effects.append(f"{name} r = {r:g}: {v.label} − {functionality_label(cfg)} = "
                                           f"{paired_difference(a, b)} points (no retraining)")
        return "; ".join(effects) or "not run at this profile"

    add("filters interpreted by visualisation (the abstract); the descriptor used to compare them is not stated",
        f"`{m.descriptor}` (paper profile: `{pm.descriptor}`); activation-maximisation patterns are drawn in the figures",
        "CPU budget: the patterns take a gradient ascent per filter of every pruned layer in every run; "
        "feature-map responses cost one forward pass of the descriptor batch",
        variant_effect("descriptor", "class_gradient"))
    add("similarity and clustering not stated (the digest: cosine; hierarchical, k-means or a threshold)",
        f"{m.similarity} similarity, {m.cluster} clustering"
        + (f" ({m.linkage} linkage)" if m.cluster == "agglomerative" else f" ({m.kmeans_iters} iterations)")
        + (f", cut at similarity {m.threshold:g}" if m.threshold is not None else ", as many clusters as kept filters"),
        "the cluster count then equals the kept width of L1 at the same ratio (the columns compare which filters "
        "stay); complete linkage was chosen a priori, on a toy case, before any accuracy was seen: it makes every "
        "cluster a set of mutually similar filters (average linkage chains moderately similar ones into one large "
        "cluster)")
    add("one representative per cluster (rule not stated)", f"`{m.representative}`",
        "the filter most similar to its cluster stands for it")
    add("removed filters are dropped", "dropped" + ("; their outgoing weights folded into the twin" if m.fold else
                                                    "; folding into the twin is an ablation column (ours)"),
        "folding is exact for exact duplicates (tests/unit/test_functionality.py)", variant_effect("fold", True))
    add("descriptors on the training data (not stated)",
        f"a seeded batch of {m.images} validation images (held out of the training split), per seed",
        "never the test split; the seed of the batch is the seed of the functionality runs")
    for name, s in cfg.settings.items():
        ps = paper_cfg.settings.get(name)
        add("VGG-16, arXiv:1811.02639 (CIFAR-10 experiments, a recollection); which layers and ratios: not retrieved",
            f"{name}: layers {s.layers} ({s.scope}), r = {', '.join(f'{r:g}' for r in s.ratios)}"
            + ("" if s.enabled else " (not run at this profile)"),
            "Li et al.'s VGG-16 setting (conv 1 and 8-13) for the L1 baseline the paper compares with"
            + ("" if ps is None or ps == s else "; the paper profile sweeps more ratios"))
    f, pf = cfg.finetune, paper_cfg.finetune
    add(f"retraining recipe not retrieved (paper profile, ours: {pf.epochs:g} epochs, lr {pf.lr:g})",
        f"{f.epochs:g} epoch(s), lr {f.lr:g}, {f.schedule}, last weights, batch {cfg.batch_size}",
        "a brief retraining, the same for every column; the claims are about how much it recovers")
    add("L1-norm pruning (Li et al., 2017) and its retraining", "one-shot L1 at the same widths, same retraining",
        "the comparison the abstract makes")
    add("FPGM (He et al., 2019): soft pruning during training, norm pre-selection optional",
        "its distance criterion, one-shot, hard, widths as L1", "compare selection criteria from one checkpoint")
    add("near-duplicate: not quantified", f"{duplicate_measure(cfg)} >= {cfg.duplicate_threshold:g} on {cfg.eval_images} "
        "validation images outside the descriptor batch; random channels at the same widths as the base rate",
        f"our test of claim 1: a descriptor other than the one the method clusters by ({m.descriptor}), so the count "
        "is not circular; threshold set before any default run")
    ours_dense = "; ".join(f"dense {k} at {v:.2f} % on our test images" for k, v in dense_acc.items())
    add("arXiv:1811.02639 (CIFAR-10, fully trained dense network; its accuracy not transcribed)", "; ".join(x for x in (data_text, ours_dense) if x),
        "the offline copy and the CPU budget of the `pretrain` stage: compare methods, not absolute accuracies")
    return pd.DataFrame(rows)
