"""Shared figures: error bars only where n > 1, legends that name every line style."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from prunerep.reporting.figures import (
    accuracy_vs_latency,
    accuracy_vs_macs,
    gain_plot,
    mean_spread_plot,
    training_curves,
)
from prunerep.runner.record import RunRecord


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _bars(ax: plt.Axes) -> list[int]:
    """Number of error bars (segments) of each errorbar container of `ax`."""
    out = []
    for c in ax.containers:
        if isinstance(c, ErrorbarContainer):
            out.append(sum(len(col.get_segments()) for col in c.lines[2]))
    return out


def _legend(ax: plt.Axes) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _mean_lines(ax: plt.Axes) -> list[str]:
    return [line.get_label() for line in ax.lines if not line.get_label().startswith("_")]


def test_mean_spread_plot_bars_only_where_several_seeds():
    df = pd.DataFrame({"r": [0.5, 0.5, 0.9, 0.9, 0.9, 0.5],
                       "acc": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                       "method": ["L1", "L1", "L1", "GReg", "GReg", "GReg"]})
    fig = mean_spread_plot(df, "r", "acc", "method", "T", "ratio r", "acc (%)")
    ax = fig.axes[0]
    assert _mean_lines(ax) == ["L1", "GReg"]
    # L1: n=2 at 0.5 (bar), n=1 at 0.9 (none); GReg: n=1 at 0.5 (none), n=2 at 0.9 (bar)
    assert _bars(ax) == [1, 1]
    assert ax.get_title() == "T" and ax.get_xlabel() == "ratio r" and ax.get_ylabel() == "acc (%)"
    assert _legend(ax) == ["L1", "GReg", "each seed", "± std over seeds (only where n > 1)"]


def test_mean_spread_plot_single_seeds_have_no_bars_and_no_bar_legend():
    df = pd.DataFrame({"budget": ["0.5", "0.35"], "acc": [1.0, 2.0]})
    ax = mean_spread_plot(df, "budget", "acc", None, "T", "x", "y").axes[0]
    assert _bars(ax) == [] and _mean_lines(ax) == ["mean over seeds"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.5", "0.35"]
    assert "± std over seeds (only where n > 1)" not in _legend(ax)


def test_gain_plot_draws_intervals_where_n_gt_1_and_a_zero_line():
    nan = float("nan")
    rows = [{"r": 0.9, "mean": 5.0, "lo": 3.0, "hi": 7.0, "n": 3},
            {"r": 0.925, "mean": 7.0, "lo": 5.0, "hi": 9.0, "n": 3},
            {"r": 0.5, "mean": 1.0, "lo": nan, "hi": nan, "n": 1}]
    ax = gain_plot(rows, "r", "T", "r", "gain").axes[0]
    assert _bars(ax) == [2]
    (container,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    spans = sorted(tuple(seg[:, 1]) for seg in container.lines[2][0].get_segments())
    assert spans == [(3.0, 7.0), (5.0, 9.0)]  # the interval itself, not mean ± std
    zero = [line for line in ax.lines if list(line.get_ydata()) == [0, 0]]
    assert len(zero) == 1 and zero[0].get_linestyle() == "--"
    assert _legend(ax) == ["mean gain", "zero: no gain", "95% t-interval over paired seeds (n > 1)"]


def test_gain_plot_one_series_per_label():
    rows = [{"x": "a", "mean": 1.0, "lo": 0.0, "hi": 2.0, "n": 2, "label": "ResNet-20"},
            {"x": "a", "mean": 2.0, "lo": 1.0, "hi": 3.0, "n": 2, "label": "ResNet-56"}]
    ax = gain_plot(rows, "x", "T", "x", "y").axes[0]
    assert _mean_lines(ax) == ["ResNet-20", "ResNet-56"] and _bars(ax) == [1, 1]


def _record(label: str, seed: int, acc: float, latency: float | None, macs: int = 50) -> RunRecord:
    return RunRecord(slug="x", label=label, method=label.split("@")[0], model="m", seed=seed,
                     budget={"describe": "", "macs_keep": 0.5}, dense_macs=100, dense_params=10,
                     macs=macs, params=5, widths={}, val_acc=acc, test_acc=acc,
                     val_acc_before_finetune=acc, test_acc_before_finetune=acc, selection="last",
                     phase_time_s={}, latency=None if latency is None else {"batch_1_ms": latency})


def test_accuracy_vs_latency_one_marker_per_method_bars_where_n_gt_1():
    records = [_record("gdp@0.5", 0, 70.0, 2.0), _record("gdp@0.5", 1, 72.0, 2.2),
               _record("gdp@0.35", 0, 65.0, 1.5), _record("l1@0.5", 0, 69.0, 2.1),
               _record("l1@0.35", 0, 60.0, None)]   # no latency: left out
    fig = accuracy_vs_latency(records, "T", dense={"latency_ms": 3.0, "test_acc": 75.0})
    ax = fig.axes[0]
    assert _mean_lines(ax) == ["gdp", "l1", "dense (unpruned reference)"]
    gdp = ax.lines[0]
    assert sorted(gdp.get_xdata()) == [1.5, pytest.approx(2.1)] and len(gdp.get_ydata()) == 2
    # one point with n = 2 (gdp@0.5): one bar on each axis
    assert _bars(ax) == [2]
    assert "latency" in ax.get_xlabel() and ax.get_ylabel() == "test accuracy (%)"
    assert "± std over seeds (only where n > 1)" in _legend(ax)


def test_accuracy_vs_latency_without_latency_says_so():
    ax = accuracy_vs_latency([_record("l1@0.5", 0, 60.0, None)], "T").axes[0]
    assert _mean_lines(ax) == [] and any("not measured" in t.get_text() for t in ax.texts)


def test_accuracy_vs_macs_places_points_at_the_kept_fraction():
    ax = accuracy_vs_macs([_record("l1@0.5", 0, 60.0, None, macs=25)], "T").axes[0]
    assert list(ax.lines[0].get_xdata()) == [0.25] and _bars(ax) == []


def test_training_curves_legend_names_the_styles_it_draws():
    hist = {"resnet56": [{"epoch": 1, "train_loss": 1.0, "train_acc": 50.0, "val_acc": 55.0}]}
    fig = training_curves(hist, "T")
    ax_acc = fig.axes[1]
    styles = {line.get_linestyle() for line in ax_acc.lines}
    assert styles == {"--", "-"}
    # a single epoch still shows: every line has a marker
    assert all(line.get_marker() not in (None, "None", "") for line in ax_acc.lines)
    assert _legend(ax_acc) == ["validation (solid)", "train (dashed)"]


def test_ledger_draws_every_papers_runs_one_panel_per_model(tmp_path):
    import dataclasses
    import json

    from prunerep.reporting.ledger import cross_paper_figure
    from prunerep.runner.record import write_records

    def rec(slug: str, model: str, label: str, seed: int, acc: float) -> RunRecord:
        return dataclasses.replace(_record(label, seed, acc, None), slug=slug, model=model,
                                   provenance={"profile": "smoke"})

    write_records([rec("greg", "resnet56", "GReg-1@0.9", 0, 50.0), rec("greg", "resnet56", "GReg-1@0.9", 1, 52.0),
                   rec("greg", "resnet56", "L1@0.9", 0, 45.0)], tmp_path / "greg" / "runs.jsonl")
    write_records([rec("dsa", "resnet20", "dsa@0.5", 0, 70.0)], tmp_path / "dsa" / "runs.jsonl")
    (tmp_path / "pretrain" / "resnet56").mkdir(parents=True)
    (tmp_path / "pretrain" / "resnet56" / "metrics.json").write_text(json.dumps({"test_acc": 75.0}))
    fig = cross_paper_figure(tmp_path)
    left, right = fig.axes
    assert left.get_title() == "resnet20" and right.get_title() == "resnet56"  # PAPERS order: dsa first
    assert _mean_lines(left) == ["dsa: dsa"]
    assert _mean_lines(right) == ["greg: GReg-1", "greg: L1", "dense checkpoint (unpruned)"]
    assert _bars(right) == [2] and _bars(left) == []
    assert "greg at profile smoke" in fig._suptitle.get_text()


def test_ledger_cli_writes_the_figure(tmp_path):
    from prunerep.reporting.ledger import main

    (tmp_path / "results").mkdir()
    assert main(["--results", str(tmp_path / "results"), "--notebooks", str(tmp_path)]) == 0
    assert (tmp_path / "results" / "ledger" / "accuracy_vs_macs.png").stat().st_size > 0


def test_gain_plot_wraps_long_category_labels_instead_of_warning():
    # labels as long as W-Gates' arm names once made tight_layout warn into the executed notebook
    long = "W-Gates, FLOPs target (uniform's MACs) (33% per-group floor, ours; generators initialised to the L1 ranking, ours)"
    rows = [{"x": f"resnet{k}: {long} {i}", "mean": 1.0, "lo": 0.0, "hi": 2.0, "n": 3}
            for k in (20, 56) for i in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ax = gain_plot(rows, "x", "T", "setting and arm", "gain").axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert all(max(len(line) for line in label.split("\n")) <= 40 for label in labels)
    assert [label.replace("\n", " ") for label in labels] == [r["x"] for r in rows]


def test_gain_plot_keeps_short_labels_unwrapped():
    rows = [{"x": "a b c", "mean": 1.0, "lo": 0.0, "hi": 2.0, "n": 3}]
    ax = gain_plot(rows, "x", "T", "x", "gain").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a b c"]
