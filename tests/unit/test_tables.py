"""write_table: raw CSV, Markdown formatted per column, constant columns in the caption."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from prunerep.reporting.tables import (
    MarkdownText,
    Table,
    format_number,
    format_table,
    table_markdown,
    write_table,
)


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "model": ["resnet56", "resnet20"],
        "n": [1120.0, 3.0],                 # integer-valued floats (e.g. after a merge with NaN)
        "r": [0.925, 0.95],                 # fractions given with 3 decimals
        "acc": [75.3812, 78.0],
        "chg": [7.5e-9, 0.0],               # tiny but not zero, and an exact zero
        "std": [np.nan, 0.5],               # a missing std (n = 1)
        "ratio": ["0.925", "1"],            # numeric strings: verbatim
        "profile": ["default", "default"],  # constant: folded into the caption
        "device": ["cpu", "cpu"],
    })


EXPECTED = (
    "Cap. Same for every row: profile default, device cpu.\n"
    "\n"
    "| model    |    n |     r |   acc |     chg |   std | ratio   |\n"
    "|:---------|-----:|------:|------:|--------:|------:|:--------|\n"
    "| resnet56 | 1120 | 0.925 | 75.38 | 7.5e-09 |     — | 0.925   |\n"
    "| resnet20 |    3 | 0.950 | 78.00 |    0.00 |  0.50 | 1       |\n"
)


def test_markdown_formats_per_column_and_folds_constant_columns():
    assert table_markdown(_frame(), "Cap.") == EXPECTED


def test_write_table_keeps_raw_csv_and_returns_the_written_markdown(tmp_path):
    df = _frame()
    shown = write_table(df, tmp_path, "t", "Cap.")
    assert (tmp_path / "t.md").read_text() == EXPECTED
    assert isinstance(shown, Table) and shown.markdown == EXPECTED
    assert shown._repr_markdown_() == EXPECTED  # what Jupyter displays
    back = pd.read_csv(tmp_path / "t.csv", dtype={"ratio": str})
    assert list(back.columns) == list(df.columns)  # every column, constant ones too
    assert back["chg"][0] == 7.5e-9 and back["acc"][0] == 75.3812 and math.isnan(back["std"][0])
    assert list(back["ratio"]) == ["0.925", "1"]
    assert shown.df is df


def test_one_row_folds_nothing():
    df = _frame().iloc[:1, [0, 1, 2, 7]]
    assert table_markdown(df) == (
        "| model    |    n |     r | profile   |\n"
        "|:---------|-----:|------:|:----------|\n"
        "| resnet56 | 1120 | 0.925 | default   |\n"
    )


def test_a_table_of_constant_columns_keeps_them():
    df = pd.DataFrame({"a": [1, 1], "b": ["x", "x"]})
    assert table_markdown(df) == "|   a | b   |\n|----:|:----|\n|   1 | x   |\n|   1 | x   |\n"


def test_fold_constant_false_and_caption_with_commas():
    df = pd.DataFrame({"a": [1, 2], "data": ["x, y", "x, y"]})
    assert table_markdown(df, "C.").startswith("C. Same for every row: data x, y.\n\n|   a |")
    df["z"] = ["q", "q"]
    assert table_markdown(df).startswith("Same for every row: data x, y; z q.\n\n")
    assert "data" in table_markdown(df, fold_constant=False).splitlines()[0]


@pytest.mark.parametrize(("value", "kwargs", "text"), [
    (7.5e-09, {}, "7.5e-09"),
    (-0.004, {}, "-4.0e-03"),
    (0.0, {}, "0.00"),
    (0.925, {}, "0.93"),              # a lone float: 2 decimals (columns keep given decimals)
    (1120, {"integer": True}, "1120"),
    (float("nan"), {}, "—"),
    (None, {}, "—"),
    (float("inf"), {}, "inf"),
    (True, {}, "True"),
    (12.3456, {"decimals": 3}, "12.346"),
])
def test_format_number(value, kwargs, text):
    assert format_number(value, **kwargs) == text


def test_columns_of_large_or_long_decimals_use_two_decimals():
    # accuracies given with 3 decimals are not fractions: 2 decimals
    df = pd.DataFrame({"acc": [75.125, 75.5], "frac": [0.48731, 0.5], "keep": [0.5, 0.35]})
    shown = format_table(df)
    assert list(shown["acc"]) == ["75.12", "75.50"]
    assert list(shown["frac"]) == ["0.49", "0.50"]
    assert list(shown["keep"]) == ["0.50", "0.35"]


def test_mixed_columns_format_numbers_one_by_one_and_leave_strings():
    df = pd.DataFrame({"v": [3, "n/a (paper reports CIFAR-10)", 1e-5, None, 2.5]})
    assert list(format_table(df)["v"]) == ["3", "n/a (paper reports CIFAR-10)", "1.0e-05", "—", "2.50"]


def test_pipes_and_newlines_do_not_break_the_table():
    md = table_markdown(pd.DataFrame({"a|b": ["x|y\nz"]}))
    assert md == "| a\\|b   |\n|:-------|\n| x\\|y z |\n"


def test_markdown_text_displays_its_text():
    m = MarkdownText("**x**")
    assert str(m) == repr(m) == m._repr_markdown_() == "**x**"
