"""Figures shared by the notebooks (seaborn on matplotlib, saved as PNG by `save_figure`).

Conventions, for every paper:
- a mean over seeds carries an error bar only where there is more than one seed (n > 1): a
  single run has no spread, and a bar of zero would claim one;
- a gain (ours minus a baseline, paired by seed) is plotted with its 95% interval and a zero line;
- titles and axis labels are passed in by the caller (they name model, budget and seeds);
- the legend explains every line style and marker used.
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg") if not matplotlib.get_backend().lower().startswith(("module://", "inline")) else None
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

__all__ = ["accuracy_vs_latency", "accuracy_vs_macs", "accuracy_vs_macs_by_model", "gain_plot", "mean_spread_plot",
           "training_curves"]

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


def _palette(n: int) -> list[Any]:
    return list(sns.color_palette("colorblind", max(n, 1)))


def _note(ax: plt.Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4")


def _positions(values: Sequence[Any]) -> tuple[list[float], list[Any] | None]:
    """Numeric x as is; categorical x as 0, 1, ... in order of appearance (and the tick labels)."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values], None
    order = list(dict.fromkeys(values))
    return [float(order.index(v)) for v in values], order


def _ticks(ax: plt.Axes, positions: Sequence[float], labels: list[Any] | None) -> None:
    """Categorical labels, or the numeric x values themselves when there are few of them."""
    if labels is not None:
        ax.set_xticks(range(len(labels)), [str(t) for t in labels], rotation=20 if len(labels) > 4 else 0)
        return
    values = sorted(set(positions))
    if 1 < len(values) <= 8:
        ax.set_xticks(values, [f"{v:g}" for v in values])


def _summary(df: pd.DataFrame, keys: list[str], y: str) -> pd.DataFrame:
    """Mean, sample std and n of `y` per `keys` (std NaN when n = 1)."""
    g = df.groupby(keys, sort=False, dropna=False)[y]
    return g.agg(mean="mean", std="std", n="count").reset_index()


def mean_spread_plot(df: pd.DataFrame, x: str, y: str, hue: str | None, title: str, xlabel: str,
                     ylabel: str) -> plt.Figure:
    """Mean of `y` against `x` per `hue` (one line each), ± sample std over seeds where n > 1.

    `df` has one row per run (seed); single seeds are drawn as small dots as well."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    data = df.copy()
    hue_col = hue or "_all"
    if hue is None:
        data[hue_col] = ""
    data = data.dropna(subset=[y])
    if data.empty:
        _note(ax, "no runs")
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        return fig
    pos, ticks = _positions(list(data[x]))
    data["_x"] = pos
    summary = _summary(data, [hue_col, "_x"], y).sort_values([hue_col, "_x"], kind="stable")
    levels = list(dict.fromkeys(data[hue_col]))
    colors = dict(zip(levels, _palette(len(levels)), strict=True))
    sns.scatterplot(data=data, x="_x", y=y, hue=hue_col, palette=colors, ax=ax, s=14, alpha=0.45,
                    legend=False, linewidth=0)
    spread = False
    for i, level in enumerate(levels):
        s = summary[summary[hue_col] == level]
        ax.plot(s["_x"], s["mean"], color=colors[level], marker=MARKERS[i % len(MARKERS)], ms=6,
                label=str(level) if hue else "mean over seeds")
        many = s[s["n"] > 1]
        if len(many):
            spread = True
            ax.errorbar(many["_x"], many["mean"], yerr=many["std"], fmt="none", ecolor=colors[level],
                        capsize=3, lw=1)
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], ls="none", marker="o", ms=4, color="0.5", alpha=0.6))
    labels.append("each seed")
    if spread:
        handles.append(Line2D([], [], color="0.3", lw=1, marker="|", ms=10))
        labels.append("± std over seeds (only where n > 1)")
    ax.legend(handles, labels, fontsize=8, title=hue if hue else None, title_fontsize=8)
    _ticks(ax, pos, ticks)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def gain_plot(rows: Sequence[Mapping[str, Any]], x: str, title: str, xlabel: str, ylabel: str) -> plt.Figure:
    """A paired gain (ours minus the baseline, per seed) against `x`, with its 95% interval.

    Each row: `x`, "mean", "lo", "hi", "n" and an optional "label" (one series per label). The
    interval is drawn only where n > 1 and it is finite; a dashed line marks zero (no gain)."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.axhline(0.0, color="0.35", ls="--", lw=1)
    if not rows:
        _note(ax, "no paired runs")
    frame = pd.DataFrame([dict(r) for r in rows]) if rows else pd.DataFrame()
    interval = False
    if not frame.empty:
        if "label" not in frame:
            frame["label"] = ""
        frame["label"] = frame["label"].fillna("")
        pos, ticks = _positions(list(frame[x]))
        frame["_x"] = pos
        labels = list(dict.fromkeys(frame["label"]))
        colors = _palette(len(labels))
        for i, label in enumerate(labels):
            s = frame[frame["label"] == label].sort_values("_x", kind="stable")
            ax.plot(s["_x"], s["mean"], color=colors[i], marker=MARKERS[i % len(MARKERS)], ms=6, lw=1,
                    label=str(label) if label else "mean gain")
            ok = s[(s["n"] > 1) & s["lo"].map(_finite) & s["hi"].map(_finite)]
            if len(ok):
                interval = True
                ax.errorbar(ok["_x"], ok["mean"], yerr=[ok["mean"] - ok["lo"], ok["hi"] - ok["mean"]],
                            fmt="none", ecolor=colors[i], capsize=3, lw=1)
            for _, r in s.iterrows():
                ax.annotate(f"n={int(r['n'])}", (r["_x"], r["mean"]), textcoords="offset points",
                            xytext=(5, 4), fontsize=7, color="0.3")
        _ticks(ax, pos, ticks)
    handles, names = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="0.35", ls="--", lw=1))
    names.append("zero: no gain")
    if interval:
        handles.append(Line2D([], [], color="0.3", lw=1, marker="|", ms=10))
        names.append("95% t-interval over paired seeds (n > 1)")
    ax.legend(handles, names, fontsize=8)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    _tight_layout(fig, ax)
    return fig


def _tight_layout(fig: plt.Figure, ax: plt.Axes, width: int = 40) -> None:
    """`tight_layout`, and when long category labels leave it no room (matplotlib then warns into
    the notebook's output), wrap the x tick labels to `width` characters and lay out again."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Tight layout not applied")
        try:
            fig.tight_layout()
            return
        except UserWarning:
            pass
    ticks = ax.get_xticks()
    labels = ["\n".join(textwrap.wrap(t.get_text(), width)) or t.get_text() for t in ax.get_xticklabels()]
    ax.set_xticks(ticks, labels)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Tight layout not applied")
        fig.tight_layout()


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _method_name(record: Any) -> str:
    return str(record.label).split("@")[0]


def _points(records: Sequence[Any], xvalue: Callable[[Any], float | None],
            name: Callable[[Any], str]) -> pd.DataFrame:
    rows = []
    for r in records:
        xv = xvalue(r)
        if xv is None or not _finite(xv) or not _finite(r.test_acc):
            continue
        rows.append({"name": name(r), "label": r.label, "x": float(xv), "y": float(r.test_acc)})
    if not rows:
        return pd.DataFrame(columns=["name", "label", "x_mean", "x_std", "y_mean", "y_std", "n"])
    df = pd.DataFrame(rows)
    g = df.groupby(["name", "label"], sort=False)
    out = g.agg(x_mean=("x", "mean"), x_std=("x", "std"), y_mean=("y", "mean"), y_std=("y", "std"),
                n=("y", "count")).reset_index()
    return out


def _scatter_by_method(ax: plt.Axes, pts: pd.DataFrame) -> bool:
    """One marker and colour per method; ± std bars where n > 1. Returns whether bars were drawn."""
    names = list(dict.fromkeys(pts["name"]))
    colors = _palette(len(names))
    bars = False
    for i, name in enumerate(names):
        s = pts[pts["name"] == name]
        ax.plot(s["x_mean"], s["y_mean"], ls="none", marker=MARKERS[i % len(MARKERS)], ms=7,
                color=colors[i], label=name)
        many = s[s["n"] > 1]
        if len(many):
            bars = True
            ax.errorbar(many["x_mean"], many["y_mean"], xerr=many["x_std"].fillna(0.0),
                        yerr=many["y_std"].fillna(0.0), fmt="none", ecolor=colors[i], capsize=3, lw=1)
    return bars


def _finish_scatter(ax: plt.Axes, bars: bool, title: str, xlabel: str) -> None:
    handles, names = ax.get_legend_handles_labels()
    if bars:
        handles.append(Line2D([], [], color="0.3", lw=1, marker="|", ms=10))
        names.append("± std over seeds (only where n > 1)")
    if handles:
        ax.legend(handles, names, fontsize=8)
    ax.set(title=title, xlabel=xlabel, ylabel="test accuracy (%)")
    ax.grid(alpha=0.3)


def accuracy_vs_latency(records: Sequence[Any], title: str, dense: Mapping[str, float] | None = None,
                        batch_size: int = 1, name: Callable[[Any], str] | None = None) -> plt.Figure:
    """Test accuracy against the measured latency of the pruned networks (batch `batch_size`).

    One marker per method (default name: the record's label before "@"), one point per label:
    mean over seeds, ± std on both axes where n > 1. `dense={"latency_ms": ..., "test_acc": ...}`
    adds the dense network as a reference star. Records without a measured latency are left out
    (and the figure says so when none has one)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    pts = _points(records, lambda r: r.latency_ms(batch_size), name or _method_name)
    bars = _scatter_by_method(ax, pts) if len(pts) else False
    has_dense = dense is not None and _finite(dense.get("latency_ms")) and _finite(dense.get("test_acc"))
    if has_dense:
        assert dense is not None
        ax.plot([dense["latency_ms"]], [dense["test_acc"]], ls="none", marker="*", ms=13, color="black",
                label="dense (unpruned reference)")
    if not len(pts):
        _note(ax, "latency not measured for these runs")
    _finish_scatter(ax, bars, title, f"measured latency, batch {batch_size} (ms, median)")
    fig.tight_layout()
    return fig


def accuracy_vs_macs(records: Sequence[Any], title: str, name: Callable[[Any], str] | None = None,
                     dense: Mapping[str, float] | None = None) -> plt.Figure:
    """Test accuracy against the fraction of dense MACs kept, one marker per method (see
    `accuracy_vs_latency`); `dense={"test_acc": ...}` adds the dense network at 1.0."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    pts = _points(records, lambda r: r.macs_keep, name or _method_name)
    bars = _scatter_by_method(ax, pts) if len(pts) else False
    has_dense = dense is not None and _finite(dense.get("test_acc"))
    if has_dense:
        assert dense is not None
        ax.plot([1.0], [dense["test_acc"]], ls="none", marker="*", ms=13, color="black",
                label="dense (unpruned reference)")
    if not len(pts):
        _note(ax, "no runs")
    _finish_scatter(ax, bars, title, "fraction of the dense MACs kept")
    fig.tight_layout()
    return fig


def training_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], title: str = "") -> plt.Figure:
    """Train loss and train/val accuracy per epoch, one colour per run.

    Validation: solid line with filled markers; train: dashed line with hollow markers (markers
    so that a single epoch still shows); the legend says which is which."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    colors = _palette(len(histories))
    has_val = False
    for color, (name, history) in zip(colors, histories.items(), strict=True):
        epochs = [h["epoch"] for h in history]
        ax_loss.plot(epochs, [h["train_loss"] for h in history], color=color, marker="o", ms=3, label=name)
        ax_acc.plot(epochs, [h["train_acc"] for h in history], color=color, ls="--", marker="o", ms=4,
                    mfc="none", alpha=0.7)
        if all("val_acc" in h for h in history):
            has_val = True
            ax_acc.plot(epochs, [h["val_acc"] for h in history], color=color, marker="o", ms=4)
    ax_loss.set(xlabel="epoch", ylabel="train loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are counted, not 0.96
    ax_loss.legend(fontsize=8, title="model", title_fontsize=8)
    styles = [Line2D([], [], color="0.3", ls="--", marker="o", ms=4, mfc="none", label="train (dashed)")]
    if has_val:
        styles.insert(0, Line2D([], [], color="0.3", marker="o", ms=4, label="validation (solid)"))
    ax_acc.legend(handles=styles, fontsize=8, title="colour: model as on the left", title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def accuracy_vs_macs_by_model(records: Sequence[Any], title: str,
                              dense: Mapping[str, float] | None = None,
                              name: Callable[[Any], str] | None = None) -> plt.Figure:
    """`accuracy_vs_macs` with one panel per dense model (accuracies of different networks are
    not comparable in one panel); `dense` maps a model key to its dense test accuracy."""
    models = list(dict.fromkeys(r.model for r in records)) or [""]
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        mine = [r for r in records if r.model == model]
        pts = _points(mine, lambda r: r.macs_keep, name or _method_name)
        bars = _scatter_by_method(ax, pts) if len(pts) else False
        acc = (dense or {}).get(model)
        if acc is not None and _finite(acc):
            ax.plot([1.0], [acc], ls="none", marker="*", ms=13, color="black",
                    label="dense checkpoint (unpruned)")
        if not len(pts):
            _note(ax, "no runs")
        _finish_scatter(ax, bars, model, "fraction of the dense MACs kept")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
