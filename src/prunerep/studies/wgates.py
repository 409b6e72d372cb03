"""W-Gates' study: the latency dataset, LPNet against two simple predictors, and pruning under a
measured-latency target against uniform, L1 and FLOPs-targeted pruning (notebooks/wgates.ipynb).

The algorithm is :mod:`prunerep.methods.wgates`; the dataset and the predictors are shared
infrastructure (:mod:`prunerep.pruning.latency_dataset`, :mod:`prunerep.pruning.latency_model`);
the dataset cache, LPNet's fitting and the interleaved final measurement are shared with the
compare study (:mod:`prunerep.studies.latency`).

* **Dataset** (:func:`ensure_datasets`, called by the notebook before any run): per model of
  ``dataset.models``, sampled width configurations measured on this device, serially, one file
  per device under ``artifacts/latency_dataset/``. Those files are a cache keyed by the device
  fingerprint, the measurement settings and the network, not a DVC output (what they hold
  depends on the machine, which DVC's content hashes cannot see), like the runs' resume
  checkpoints: the first run on a device measures them, later runs reuse them, and a corrupt or
  foreign file is refused. The results name the device, the key and the digest of the file every
  predictor was fitted on (:func:`provenance_table`, ``metrics.json``).
  ``python -m prunerep.studies latency_dataset`` measures them ahead of time (:func:`main`).
* **Claim 1** (LPNet's held-out accuracy): for every split seed of ``predictor.seeds``, a random
  ``test_share`` of the sampled networks is held out (never used to fit or choose), LPNet is
  fitted on the rest (its stopping iteration chosen on ``val_share``), and the MACs and
  per-layer lookup predictors are fitted (two coefficients each) on the same non-held-out rows.
  Networks other methods produced are scored apart, never fitted, if ``dataset.given_from``
  names their studies: off by default, since it reads ``results/<slug>/runs.jsonl`` of those
  stages, which the ``wgates`` stage must then list as dependencies in dvc.yaml.
* **Runs** at each latency target ``t`` (fraction of the dense network's latency at
  ``latency_batch``): W-Gates with ``Budget(latency_keep=t)`` through the LPNet of the first
  split seed; and at the MACs of the largest *uniform* network the dataset measured at or
  below ``t`` (``macs_for_latency``): W-Gates in FLOPs mode, L1-norm pruning and uniform random
  pruning (same uniform widths). Every arm gets the same total training by default
  (``equal_total_epochs``: the one-shot baselines fine-tune for W-Gates' search plus fine-tuning
  epochs).
* **Claim 2**: every final network is measured again after all runs, interleaved with the dense
  network (ratio to dense per round, median), and compared with its target, allowing the
  dataset's repeat noise.
* **Claims 3 and 4**: test accuracy paired by seed at the same latency target, with the
  measured latency of every arm beside it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from prunerep import paths
from prunerep.config import register_section
from prunerep.data import SubsetConfig
from prunerep.engine import OptimConfig, RuntimeConfig
from prunerep.methods.base import Budget, MethodContext
from prunerep.methods.baselines import OneShotHyper
from prunerep.methods.wgates import WGates, WGatesHyper, choices_of_ours
from prunerep.pruning.latency_dataset import LatencyDataset, MeasureFn, SamplerConfig
from prunerep.pruning.latency_model import within
from prunerep.reporting.ledger import Evidence, load_claims
from prunerep.reporting.stats import fmt_mean_std, mean_interval, paired_difference
from prunerep.runner import LatencySettings, RunRecord, RunSpec, StudyContext
from prunerep.studies import latency
from prunerep.studies.latency import (  # noqa: F401  (shared with the compare study; re-exported here)
    DATASET_DIR,
    LPNET_DIR,
    DatasetConfig,
    PredictorConfig,
    PredictorFit,
    provenance_table,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

DATASET_LOG = paths.run_logs("wgates") / "latency_dataset.log"   # progress of a measurement in the notebook

Arm = Literal["wgates", "wgates_flops", "l1", "random"]

#: What each arm is, as tables and figures name it (says what ran).
ARMS: dict[str, str] = {
    "wgates": "W-Gates, latency target (LPNet)",
    "wgates_flops": "W-Gates, FLOPs target (uniform's MACs)",
    "l1": "L1-norm, uniform widths",
    "random": "uniform widths, random channels",
}


def arm_name(arm: str, hyper: Mapping[str, Any] | None = None) -> str:
    """What an arm ran, as tables and figures name it: W-Gates' choices of ours say so."""
    base = ARMS.get(arm, arm)
    notes = choices_of_ours(hyper) if arm.startswith("wgates") else []
    return f"{base} ({'; '.join(notes)})" if notes else base


def arm_names(records: Sequence[RunRecord]) -> dict[str, str]:
    """``{arm: name}`` from the first record of each arm."""
    out: dict[str, str] = {}
    for r in records:
        arm = r.tags.get("arm")
        if arm and arm not in out:
            out[arm] = arm_name(arm, r.hyper)
    return out


PREDICTORS: dict[str, str] = {
    "lpnet": "LPNet",
    "macs": "MACs (a·MACs + b)",
    "lookup": "per-layer lookup (a·Σ layers + b)",
}


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class FinalMeasureConfig:
    """The final networks' latency, measured after all runs, interleaved with the dense network."""

    enabled: bool = True
    repeats: list[int] = field(default_factory=lambda: [30, 10])   # per dataset batch size
    warmup: int = 5
    chunk: int = 16


@dataclass(frozen=True)
class LargeScaleConfig:
    """An ImageNet setting of the paper (configuration; runnable where ImageNet and a GPU exist)."""

    name: str
    model: str                       # registry name, e.g. tv_resnet50
    dataset: str = "imagenet"
    input_size: int = 224
    in_channels: int = 3
    num_classes: int = 1000
    latency_keep: float = 0.5
    latency_batch: int = 1
    sampler: SamplerConfig = SamplerConfig()
    method: WGatesHyper = WGatesHyper()


@register_section("wgates")
@dataclass(frozen=True)
class WGatesConfig:
    """The `wgates` section of params.yaml (notebooks/wgates.ipynb)."""

    models: list[str] = field(default_factory=lambda: ["resnet20"])    # accuracy runs (pretrain.models keys)
    targets: list[float] = field(default_factory=lambda: [0.6])       # fractions of the dense latency
    seeds: list[int] = field(default_factory=lambda: [0])
    arms: list[Arm] = field(default_factory=lambda: ["wgates", "wgates_flops", "l1", "random"])
    latency_batch: int = 1                     # the batch size the latency target is about
    scope: Literal["all", "internal"] = "all"  # prunable groups, for every arm and the dataset
    equal_total_epochs: bool = True            # one-shot baselines fine-tune for search + fine-tuning epochs
    select: Literal["best_val", "last"] = "last"
    batch_size: int = 128
    workers: int = 1
    subset: SubsetConfig = SubsetConfig()
    runtime: RuntimeConfig = RuntimeConfig(progress=False)
    latency: LatencySettings = LatencySettings()
    search: OptimConfig = OptimConfig(epochs=1, lr=0.02)      # W-Gates' gated training
    finetune: OptimConfig = OptimConfig(epochs=1, lr=0.01)
    method: WGatesHyper = WGatesHyper()
    dataset: DatasetConfig = DatasetConfig()
    predictor: PredictorConfig = PredictorConfig()
    final: FinalMeasureConfig = FinalMeasureConfig()
    large_scale: list[LargeScaleConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.models or not self.targets or not self.seeds or not self.arms:
            empty = next(k for k in ("models", "targets", "seeds", "arms") if not getattr(self, k))
            raise ValueError(f"{empty}: empty, so the stage runs nothing; give at least one value")
        missing = [m for m in self.models if m not in self.dataset.models]
        if missing:
            raise ValueError(f"models {missing} have no latency dataset: add them to dataset.models")
        if self.latency_batch not in self.dataset.measure.batch_sizes:
            raise ValueError(f"latency_batch {self.latency_batch} is not among dataset.measure.batch_sizes")
        if len(self.final.repeats) != len(self.dataset.measure.batch_sizes):
            raise ValueError("final.repeats needs one count per dataset.measure.batch_sizes entry")
        for t in self.targets:
            if not 0 < t <= 1:
                raise ValueError(f"targets: {t} is not a fraction of the dense latency in (0, 1]")
        if self.dataset.sampler.scope != self.scope:
            raise ValueError(f"dataset.sampler.scope ({self.dataset.sampler.scope}) must be the runs' scope ({self.scope})")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

    def pretrain_keys(self) -> dict[str, str]:
        """Key path (in this section) -> the pretrain.models key it names (checked by `config check`)."""
        keys = {f"models[{i}]": key for i, key in enumerate(self.models)}
        keys.update({f"dataset.models[{i}]": key for i, key in enumerate(self.dataset.models)})
        return keys


# ---------------------------------------------------------------------------------------------
# the latency dataset


def given_widths(cfg: WGatesConfig, model_key: str, results: Path = paths.RESULTS) -> list[dict[str, int]]:
    """Final widths of other studies' runs on ``model_key`` (``dataset.given_from``): see
    :func:`prunerep.studies.latency.given_widths`."""
    return latency.given_widths(cfg.dataset, model_key, results)


def ensure_datasets(cfg: WGatesConfig, example_shape: Sequence[int], load_dense: Callable[[str], nn.Module], *,
                    directory: Path = DATASET_DIR, measure_fn: MeasureFn | None = None,
                    fingerprint: Mapping[str, Any] | None = None, allow_build: bool = True,
                    results: Path = paths.RESULTS, progress: bool = True, log: Path | None = None
                    ) -> dict[str, LatencyDataset]:
    """The dataset of every model of ``dataset.models`` on this device: reused, or measured now
    (:func:`prunerep.studies.latency.ensure_datasets`, shared with the compare study)."""
    return latency.ensure_datasets(cfg.dataset, example_shape, load_dense, directory=directory,
                                   measure_fn=measure_fn, fingerprint=fingerprint, allow_build=allow_build,
                                   results=results, progress=progress, log=log)


def macs_for_latency(ds: LatencyDataset, target: float, batch_size: int) -> tuple[float, float] | None:
    """(MACs fraction, measured latency ratio) of the largest uniform network at or below ``target``.

    The uniform grid of the dataset measured every uniform width; the largest one whose latency
    (ratio to the dense network in the same rounds) is at most ``target`` sets the MACs budget of
    the FLOPs-targeted arms. None if no uniform network is that fast.
    """
    ok = [(m, r) for m, r, _ in ds.uniform_curve(batch_size) if r <= target]
    return max(ok) if ok else None


# ---------------------------------------------------------------------------------------------
# claim 1: LPNet vs two simple predictors


def fit_predictors(cfg: WGatesConfig, ds: LatencyDataset, model_key: str, *,
                   directory: Path = LPNET_DIR) -> PredictorFit:
    """Claim 1 on one dataset: per split seed, LPNet and the two alternatives on the held-out rows
    (:func:`prunerep.studies.latency.fit_predictors`, shared with the compare study)."""
    return latency.fit_predictors(cfg.predictor, ds, model_key, directory=directory)


def predictor_table(fits: Mapping[str, PredictorFit], tolerance: float = 0.10) -> pd.DataFrame:
    """MAPE, Spearman and the share within ±tolerance of every predictor, mean ± std over split seeds."""
    import pandas as pd

    out = []
    for fit in fits.values():
        df = fit.metrics
        for (b, part, name), g in df.groupby(["batch", "rows", "predictor"], sort=False):
            out.append({"model": fit.model, "batch": b,
                        "networks": "held out (sampled)" if part == "held_out" else "other methods' (never fitted)",
                        "predictor": PREDICTORS[name], "n networks": int(g["n"].iloc[0]),
                        "MAPE (%)": fmt_mean_std(list(100 * g["mape"])),
                        "Spearman": fmt_mean_std(list(g["spearman"]), 3),
                        f"within ±{tolerance:.0%} (%)": fmt_mean_std(list(100 * g["within"]), 1)})
    return pd.DataFrame(out)


def dataset_table(datasets: Mapping[str, LatencyDataset], batch: int) -> pd.DataFrame:
    """How each dataset was measured: networks by kind, time, noise."""
    import pandas as pd

    rows = []
    for key, ds in datasets.items():
        src = ds.sources()
        t = ds.data["timing"]
        row: dict[str, Any] = {"model": key, "networks": len(ds), **{k: src.count(k) for k in
                                                                     ("uniform", "stage", "layer", "given")},
                               "device": ds.data["fingerprint"].get("device_name", "?"), "threads": ds.data["threads"],
                               "build + measure (min)": t["total_s"] / 60, "of which timing (min)": t["measure_s"] / 60}
        for b in ds.batch_sizes:
            n = ds.noise(b)
            row[f"dense, batch {b} (ms)"] = ds.dense_ms(b)
            row[f"repeat |Δ|, median / p90, batch {b} (%)"] = f"{100 * n['repeat_median']:.2f} / {100 * n['repeat_p90']:.2f}"
            row[f"dense drift over the build, batch {b} (%)"] = 100 * n["drift"]
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# the runs


def _baseline_finetune(cfg: WGatesConfig) -> OptimConfig:
    """The one-shot baselines' fine-tuning: as long as W-Gates' search plus fine-tuning."""
    ft = cfg.finetune
    if not cfg.equal_total_epochs:
        return ft
    steps = None
    if ft.max_steps is not None and cfg.search.max_steps is not None:
        steps = ft.max_steps + cfg.search.max_steps
    return dataclasses.replace(ft, epochs=ft.epochs + cfg.search.epochs, max_steps=steps)


def plan(cfg: WGatesConfig, datasets: Mapping[str, LatencyDataset], fits: Mapping[str, PredictorFit]
         ) -> tuple[list[RunSpec], list[dict[str, Any]]]:
    """Every run of the section, and one row per (model, target) saying what budget it got.

    Returns:
        ``(specs, targets)``; a target no uniform network of the dataset reaches is listed in
        ``targets`` with ``macs_keep`` None and gets no runs.
    """
    specs, targets = [], []
    base_ft = _baseline_finetune(cfg)
    for model in cfg.models:
        ds, fit = datasets[model], fits[model]
        for t in cfg.targets:
            hit = macs_for_latency(ds, t, cfg.latency_batch)
            targets.append({"model": model, "latency target": t, "macs_keep": hit[0] if hit else None,
                            "uniform network's measured latency ratio": hit[1] if hit else None})
            if hit is None:
                continue
            for seed in cfg.seeds:
                for arm in cfg.arms:
                    tags = {"arm": arm, "target": float(t), "macs_keep": float(hit[0]), "model": model, "seed": seed,
                            "latency_batch": cfg.latency_batch}
                    common = {"seed": seed, "batch_size": cfg.batch_size, "runtime": cfg.runtime, "model": model,
                              "label": f"{arm}-t{t:g}", "tags": tags, "select": cfg.select}
                    if arm in ("wgates", "wgates_flops"):
                        hyper = dataclasses.replace(cfg.method, train=cfg.search, scope=cfg.scope,
                                                    latency_batch=cfg.latency_batch)
                        if arm == "wgates":
                            hyper = dataclasses.replace(hyper, lpnet=fit.lpnet_path, lpnet_digest=fit.lpnet_digest)
                            budget = Budget(latency_keep=float(t))
                        else:
                            budget = Budget(macs_keep=float(hit[0]))
                        specs.append(RunSpec(method="wgates", budget=budget, hyper=hyper, finetune=cfg.finetune,
                                             **common))
                    else:
                        specs.append(RunSpec(method=arm, budget=Budget(macs_keep=float(hit[0])),
                                             hyper=OneShotHyper(scope=cfg.scope, seed=seed), finetune=base_ft,
                                             **common))
    return specs, targets


# ---------------------------------------------------------------------------------------------
# claim 2: the final networks, measured


def measure_final(records: Sequence[RunRecord], ctx: StudyContext, cfg: WGatesConfig, *,
                  measure_fn: MeasureFn | None = None, load_dense: Callable[[str], nn.Module] | None = None
                  ) -> pd.DataFrame:
    """Latency of every saved final network, interleaved with its dense network
    (:func:`prunerep.studies.latency.measure_interleaved`, at every batch size of the dataset).

    One row per run: ``ratio_b<B>`` (the median over rounds of its time over the dense network's
    time in the same round, or the ratio of medians if the measure function gives no paired
    ratio) and ``ms_b<B>`` per batch size of the dataset.
    """
    import pandas as pd

    if not cfg.final.enabled:
        return pd.DataFrame()
    settings = cfg.dataset.measure
    return latency.measure_interleaved(
        records, load_dense or ctx.load_dense, ctx.input_shape, settings.batch_sizes, cfg.final.repeats,
        warmup=cfg.final.warmup, chunk=cfg.final.chunk, measure_fn=measure_fn or latency.default_measure(settings),
        describe=lambda r: {"arm": r.tags.get("arm"), "target": r.tags.get("target"), "test_acc": r.test_acc,
                            "macs_keep": r.macs_keep})


def target_table(records: Sequence[RunRecord], final: pd.DataFrame, datasets: Mapping[str, LatencyDataset],
                 batch: int) -> pd.DataFrame:
    """Claim 2, per W-Gates latency run: target, LPNet's prediction, measurement, the noise allowed."""
    import pandas as pd

    rows = []
    for r in records:
        if r.tags.get("arm") != "wgates":
            continue
        m = final[(final["label"] == r.label) & (final["seed"] == r.seed) & (final["model"] == r.model)] \
            if len(final) else final
        measured = float(m[f"ratio_b{batch}"].iloc[0]) if len(m) else math.nan
        noise = datasets[r.model].noise(batch)["repeat_p90"] if r.model in datasets else math.nan
        t = float(r.tags["target"])
        rows.append({"model": r.model, "target": t, "seed": r.seed,
                     "LPNet's ratio (at freezing)": r.summary.get("final_ratio"),
                     "measured ratio": measured, "measured / target − 1": measured / t - 1,
                     "repeat noise p90": noise, "excess beyond noise": measured / t - 1 - noise,
                     "forced closures": r.summary.get("forced_closures"), "reopened": r.summary.get("reopened")})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# claims 3 and 4


COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("wgates", "random", "wgates.vs_uniform_latency"),
    ("wgates", "l1", "wgates.vs_l1_latency"),
    ("wgates", "wgates_flops", "wgates.latency_vs_flops"),
)


def _by(records: Sequence[RunRecord], model: str, target: float, arm: str) -> dict[int, RunRecord]:
    return {r.seed: r for r in records
            if r.model == model and r.tags.get("arm") == arm and math.isclose(r.tags.get("target", -1), target)}


def _measured(final: pd.DataFrame, r: RunRecord, batch: int) -> float:
    if not len(final):
        return math.nan
    m = final[(final["label"] == r.label) & (final["seed"] == r.seed) & (final["model"] == r.model)]
    return float(m[f"ratio_b{batch}"].iloc[0]) if len(m) else math.nan


def accuracy_table(records: Sequence[RunRecord], final: pd.DataFrame, batch: int) -> pd.DataFrame:
    """Every arm at every target: test accuracy, measured latency ratio, MACs, mean ± std (n)."""
    import pandas as pd

    rows = []
    keys = dict.fromkeys((r.model, float(r.tags["target"]), r.tags["arm"]) for r in records if "arm" in r.tags)
    for model, target, arm in keys:
        recs = list(_by(records, model, target, arm).values())
        lat = [x for x in (_measured(final, r, batch) for r in recs) if math.isfinite(x)]
        rows.append({"model": model, "latency target": target, "arm": arm_name(arm, recs[0].hyper if recs else None),
                     "test acc (%)": fmt_mean_std([r.test_acc for r in recs]),
                     f"measured latency, batch {batch} (fraction of dense)": fmt_mean_std(lat, 3) if lat else "—",
                     "MACs (fraction of dense)": fmt_mean_std([r.macs_keep for r in recs], 3),
                     "test acc right after removal (%)": fmt_mean_std([r.test_acc_before_finetune for r in recs])})
    return pd.DataFrame(rows)


def comparison_table(records: Sequence[RunRecord], final: pd.DataFrame, batch: int) -> pd.DataFrame:
    """Claims 3-4: W-Gates (latency) minus each other arm, test accuracy paired by seed."""
    import pandas as pd

    rows = []
    settings = dict.fromkeys((r.model, float(r.tags["target"])) for r in records if "arm" in r.tags)
    for model, target in settings:
        ours = _by(records, model, target, "wgates")
        for a, b, claim in COMPARISONS:
            other = _by(records, model, target, b)
            shared = sorted(set(ours) & set(other))
            if not shared:
                continue
            iv = paired_difference({s: ours[s].test_acc for s in shared}, {s: other[s].test_acc for s in shared})
            lat_a = [_measured(final, ours[s], batch) for s in shared]
            lat_b = [_measured(final, other[s], batch) for s in shared]
            first = shared[0]
            rows.append({"model": model, "latency target": target,
                         "comparison": f"{arm_name(a, ours[first].hyper)} − {arm_name(b, other[first].hyper)}",
                         "claim": claim, "gain (points)": str(iv), "n": iv.n,
                         "measured latency, W-Gates": fmt_mean_std([x for x in lat_a if math.isfinite(x)], 3),
                         "measured latency, other": fmt_mean_std([x for x in lat_b if math.isfinite(x)], 3),
                         "_interval": iv, "_mean": iv.mean, "_lo": iv.lo, "_hi": iv.hi})
    return pd.DataFrame(rows)


def gain_rows(comparison: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows for :func:`prunerep.reporting.figures.gain_plot`."""
    return [{"comparison": f"{r['model']} t={r['latency target']:g}: − {r['comparison'].split(' − ')[1]}",
             "mean": r["_mean"], "lo": r["_lo"], "hi": r["_hi"], "n": r["n"]} for _, r in comparison.iterrows()]


def widths_frame(records: Sequence[RunRecord], datasets: Mapping[str, LatencyDataset]) -> pd.DataFrame:
    """Kept fraction of every group in the final networks, per run (W-Gates' two modes and L1)."""
    import pandas as pd

    rows = []
    for r in records:
        arm = r.tags.get("arm")
        if arm not in ("wgates", "wgates_flops", "l1") or r.model not in datasets:
            continue
        channels = dict(zip(datasets[r.model].group_ids, datasets[r.model].channels, strict=True))
        for order, (gid, w) in enumerate(r.widths.items()):
            rows.append({"model": r.model, "target": r.tags["target"], "arm": arm, "seed": r.seed, "group": gid,
                         "order": order, "channels": channels[gid], "width": w, "keep": w / channels[gid]})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# figures


def _pyplot() -> Any:
    import matplotlib

    if not matplotlib.get_backend().lower().startswith(("module://", "inline")):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scatter_figure(fit: PredictorFit, batch: int, tolerance: float = 0.10) -> Figure:
    """Predicted vs measured latency on the held-out networks of the first split seed, per predictor."""
    plt = _pyplot()
    df = fit.scatter[fit.scatter["batch"] == batch]
    names = list(dict.fromkeys(df["predictor"]))
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.6), squeeze=False, sharey=True)
    lo, hi = float(df[["measured_ms", "predicted_ms"]].min().min()), float(df[["measured_ms", "predicted_ms"]].max().max())
    for ax, name in zip(axes[0], names, strict=True):
        d = df[df["predictor"] == name]
        ax.scatter(d["measured_ms"], d["predicted_ms"], s=6, alpha=0.6, color="C0", label="held-out network")
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, label="predicted = measured")
        ax.fill_between([lo, hi], [lo * (1 - tolerance), hi * (1 - tolerance)],
                        [lo * (1 + tolerance), hi * (1 + tolerance)], color="0.85", label=f"±{tolerance:.0%}")
        share = within(torch.tensor(d["predicted_ms"].values), torch.tensor(d["measured_ms"].values), tolerance)
        ax.set(title=f"{PREDICTORS[name]}\n{share:.0%} within ±{tolerance:.0%}", xlabel=f"measured, batch {batch} (ms)")
        ax.title.set_fontsize(9)
    axes[0, 0].set_ylabel("predicted (ms)")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{fit.model}: latency predictors on held-out networks (split seed of the runs' LPNet)", fontsize=9)
    fig.tight_layout()
    return fig


def widths_figure(widths: pd.DataFrame, model: str, target: float, names: Mapping[str, str] | None = None) -> Figure:
    """Per-group kept fraction: W-Gates under the latency target vs under the FLOPs target (and L1).
    `names`: the arms' names (`arm_names`; default: `ARMS`)."""
    plt = _pyplot()
    part = widths[(widths["model"] == model) & (widths["target"] == target)]
    groups = part.sort_values("order").drop_duplicates("group")["group"].tolist()
    arms = [a for a in ("wgates", "wgates_flops", "l1") if a in set(part["arm"])]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.3 * len(groups) + 2), 3.4))
    width = 0.8 / max(1, len(arms))
    for j, arm in enumerate(arms):
        sub = part[part["arm"] == arm]
        mean = sub.groupby("group")["keep"].mean()
        n = sub["seed"].nunique()
        ax.bar([i + (j - (len(arms) - 1) / 2) * width for i in range(len(groups))],
               [mean.get(g, math.nan) for g in groups], width=width, color=f"C{j}",
               label=f"{(names or ARMS).get(arm, arm)} (mean of {n} seed{'s' if n > 1 else ''})")
    ax.set_xticks(range(len(groups)), groups, rotation=90, fontsize=7)
    ax.set(ylabel="kept fraction of the group", ylim=(0, 1.05),
           title=f"{model}, latency target {target:g}: widths per group")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# captions, claims, metrics


def _ep(o: OptimConfig) -> str:
    return f"{o.epochs:g} ep" + (f" (max {o.max_steps} steps)" if o.max_steps else "")


def describe_budget(cfg: WGatesConfig, n_train: int, profile: str) -> str:
    """The compute budget of the section, for captions."""
    d = cfg.dataset
    return (f"Profile `{profile}`: latency dataset of {d.sampler.configs} sampled networks per model "
            f"({', '.join(d.models)}), batch sizes "
            f"{d.measure.batch_sizes}, {d.measure.repeats} timed rounds; LPNet held-out share "
            f"{cfg.predictor.test_share:.0%}, {len(cfg.predictor.seeds)} split seeds; runs: {n_train} training "
            f"images, W-Gates {_ep(cfg.search)} gated training + {_ep(cfg.finetune)} fine-tuning, one-shot baselines "
            f"{_ep(_baseline_finetune(cfg))} fine-tuning, batch {cfg.batch_size}, {cfg.select} weights reported; "
            f"latency targets at batch {cfg.latency_batch}.")


def evidence(cfg: WGatesConfig, fits: Mapping[str, PredictorFit], final: pd.DataFrame,
             records: Sequence[RunRecord], datasets: Mapping[str, LatencyDataset], budget: str) -> list[Evidence]:
    """The claims' evidence by the one verdict rule (references/claims/wgates.yaml ids wgates.*)."""
    claims = load_claims()
    out: list[Evidence] = []
    tol = cfg.predictor.tolerance
    for model, fit in fits.items():
        df = fit.metrics[fit.metrics["rows"] == "held_out"]
        for b in sorted(set(df["batch"])):
            part = df[df["batch"] == b]
            lp = part[part["predictor"] == "lpnet"].set_index("seed")
            where = (f"{model}, batch {b}, {int(lp['n'].iloc[0])} held-out networks per split, one split per seed "
                     f"(held-out rows never fitted or chosen on)")
            out.append(Evidence.judge(claims["wgates.lpnet_spearman"], mean_interval(list(lp["spearman"])),
                                      test=f"Spearman rank correlation of LPNet with the measured latency; {where}",
                                      budget=budget))
            out.append(Evidence.judge(claims["wgates.lpnet_within10"], mean_interval(list(lp["within"])),
                                      test=f"share of LPNet's predictions within ±{tol:.0%}; {where}", budget=budget))
            for name, cid in (("macs", "wgates.lpnet_vs_macs"), ("lookup", "wgates.lpnet_vs_lookup")):
                alt = part[part["predictor"] == name].set_index("seed")
                if not len(alt):
                    out.append(Evidence.judge(claims[cid], None, test=f"{PREDICTORS[name]}: not measured", budget=budget))
                    continue
                iv = paired_difference(dict(lp["mape"] * 100), dict(alt["mape"] * 100))
                out.append(Evidence.judge(claims[cid], iv, test=f"MAPE of LPNet − MAPE of {PREDICTORS[name]} "
                                          f"(points of %), paired by split; {where}", budget=budget))
    b = cfg.latency_batch
    tt = target_table(records, final, datasets, b)
    for (model, t), part in (tt.groupby(["model", "target"], sort=False) if len(tt) else []):
        vals = [float(v) for v in part["excess beyond noise"] if math.isfinite(v)]
        out.append(Evidence.judge(
            claims["wgates.latency_target_met"], mean_interval(vals) if vals else None,
            test=f"measured latency / target − 1 − repeat noise (p90 of |second / first measurement − 1| in the "
                 f"dataset), {model}, target {t:g} of the dense latency at batch {b}, one W-Gates network per seed",
            budget=budget))
    comp = comparison_table(records, final, b)
    for _, row in comp.iterrows():
        out.append(Evidence.judge(claims[row["claim"]], row["_interval"],
                                  test=f"{row['comparison']}, test accuracy (points) paired by seed, {row['model']} at "
                                       f"latency target {row['latency target']:g} (batch {b}); measured latency "
                                       f"{row['measured latency, W-Gates']} vs {row['measured latency, other']} of dense",
                                  budget=budget))
    return out


def headline_metrics(profile: str, fits: Mapping[str, PredictorFit], records: Sequence[RunRecord],
                     final: pd.DataFrame, claims: pd.DataFrame, batch: int) -> dict[str, Any]:
    """Scalars for the stage's metrics.json."""
    out: dict[str, Any] = {"profile": profile, "runs": len(records)}
    for model, fit in fits.items():
        out[f"{model}/latency_dataset/digest"] = fit.dataset_digest
        out[f"{model}/latency_dataset/device_key"] = fit.dataset_key
        out[f"{model}/latency_dataset/device"] = str(fit.fingerprint.get("device_name", "?"))
        df = fit.metrics[fit.metrics["rows"] == "held_out"]
        for (b, name), g in df.groupby(["batch", "predictor"], sort=False):
            out[f"{model}/b{b}/{name}/mape_mean"] = float(g["mape"].mean())
            out[f"{model}/b{b}/{name}/spearman_mean"] = float(g["spearman"].mean())
            out[f"{model}/b{b}/{name}/within_mean"] = float(g["within"].mean())
    for r in records:
        key = f"{r.model}/t{r.tags.get('target', 0):g}/{r.tags.get('arm')}"
        out.setdefault(f"{key}/test_acc", [])
        out[f"{key}/test_acc"].append(r.test_acc)
    for k in [k for k in out if k.endswith("/test_acc")]:
        out[k + "_mean"] = sum(out[k]) / len(out[k])
        del out[k]
    seen: dict[str, int] = {}
    for row in claims.itertuples(index=False):
        k = seen[row.claim] = seen.get(row.claim, -1) + 1
        out[f"verdict/{row.claim}" + (f"#{k + 1}" if k else "")] = row.verdict
    return out


# ---------------------------------------------------------------------------------------------
# the paper's ImageNet settings (configuration; tested on tiny synthetic inputs)


def large_scale_table(cfg: WGatesConfig) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame([{"name": e.name, "model": e.model, "dataset": e.dataset, "input": e.input_size,
                          "latency target": e.latency_keep, "latency batch": e.latency_batch,
                          "dataset networks": e.sampler.configs, "gated training": _ep(e.method.train)}
                         for e in cfg.large_scale])


def build_large_scale(entry: LargeScaleConfig, *, lpnet_path: str, lpnet_digest: str = "",
                      input_size: int | None = None, model: nn.Module | None = None,
                      device: str | torch.device = "cpu") -> tuple[nn.Module, WGates, MethodContext]:
    """The torchvision model of ``entry`` with W-Gates attached under its latency target.

    ``lpnet_path``: an LPNet fitted on this model's latency dataset on the target device
    (:func:`~prunerep.pruning.latency_dataset.ensure_dataset` + :func:`fit_predictors`).
    Returns ``(model, method, ctx)`` for :func:`prunerep.engine.fit` with ``hooks=[method]``,
    then ``method.finalize(model, ctx)``.
    """
    from prunerep.models import get_model
    from prunerep.pruning.groups import find_groups
    from prunerep.pruning.soft_cost import SoftCostModel

    if model is None:
        model = get_model(entry.model, num_classes=entry.num_classes)
    model = model.to(device)
    size = input_size or entry.input_size
    example = torch.zeros(1, entry.in_channels, size, size, device=device)
    hyper = dataclasses.replace(entry.method, lpnet=lpnet_path, lpnet_digest=lpnet_digest,
                                latency_batch=entry.latency_batch)
    method = WGates(hyper)
    groups = find_groups(model, example)
    ctx = MethodContext(groups=groups, prunable=list(groups.select(method.prunable)), example_input=example,
                        budget=Budget(latency_keep=entry.latency_keep),
                        cost_model=SoftCostModel.from_model(model, example, groups))
    return method.prepare(model, ctx), method, ctx



# ---------------------------------------------------------------------------------------------
# command line: the latency datasets ahead of time


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m prunerep.studies latency_dataset [--params params.yaml] [--profile NAME]``.

    Measures (or reuses) the latency dataset of every model of ``wgates.dataset.models`` on this
    device, exactly as the notebook would (same section, data shape and checkpoints, so the
    notebook reuses the files). Run it with nothing else on the machine. Not a DVC stage: the
    files are a per-device cache (see the module docstring).
    """
    import argparse

    from prunerep.config import active_profile, check_params, read_params, resolve_section

    p = argparse.ArgumentParser(prog="python -m prunerep.studies latency_dataset",
                                description="Measure (or reuse) W-Gates' latency datasets on this device.")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--profile", default=None, help="default: the active profile of params.yaml")
    args = p.parse_args(argv)
    params = read_params(args.params)
    check_params(params)
    profile = args.profile or active_profile(params)
    cfg = resolve_section("wgates", params, profile=profile)
    pretrain = resolve_section("pretrain", params, profile=profile)
    study = StudyContext(slug="wgates", profile=profile, data=resolve_section("data", params, profile=profile),
                         subset=cfg.subset, expected_arch=pretrain.dense_names(), published=pretrain.published)
    ensure_datasets(cfg, study.example_shape, study.load_dense)
    return 0
