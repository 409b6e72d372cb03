"""Writing tables (CSV + Markdown), figures (PNG) and DVC metrics, atomically.

The CSV keeps the raw values; the Markdown is for reading, so it is formatted per column
(`format_table`):

- integer-valued numbers print as integers (`n` reads 1120, not 1120.00);
- other floats with 2 decimals; a column of fractions (every |x| <= 1) given with up to 3
  decimals keeps them (a ratio r = 0.925 stays 0.925, not 0.93);
- values with 0 < |x| < 0.01 in scientific notation (7.5e-09, never "0.00", which reads as an
  exact zero);
- a missing value (NaN, None) as "—" (never 0);
- strings verbatim (never re-parsed as numbers).

Columns that hold the same value on every row (profile, device, threads ...) are folded into the
caption ("Same for every row: profile default, device cpu."), so wide tables show what varies.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from prunerep.io import atomic_write_text, write_json

MISSING = "—"
#: Below this magnitude (and above zero) a number prints in scientific notation.
TINY = 0.01
#: A column of fractions whose values all have at most this many decimals prints them all.
MAX_GIVEN_DECIMALS = 3


class MarkdownText:
    """A Markdown text that Jupyter renders as Markdown (the last expression of a cell).

    `str(obj)` and `obj.markdown` are the text itself; `repr` too, so a plain console shows it."""

    def __init__(self, markdown: str) -> None:
        self.markdown = markdown

    def _repr_markdown_(self) -> str:
        return self.markdown

    def __repr__(self) -> str:
        return self.markdown

    def __str__(self) -> str:
        return self.markdown

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MarkdownText) and other.markdown == self.markdown

    __hash__ = None  # type: ignore[assignment]


class Table(MarkdownText):
    """What `write_table` returns: the written Markdown (shown by Jupyter), the raw frame, paths."""

    def __init__(self, markdown: str, df: pd.DataFrame, csv: Path, md: Path) -> None:
        super().__init__(markdown)
        self.df = df
        self.csv = csv
        self.md = md


# ----------------------------------------------------------------------------- formatting


def _is_missing(x: Any) -> bool:
    if x is None or x is pd.NA or x is pd.NaT:
        return True
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isnan(float(x))


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _is_integral(x: Any) -> bool:
    if isinstance(x, numbers.Integral):
        return True
    return math.isfinite(float(x)) and float(x).is_integer()


def _decimals_needed(x: float) -> int | None:
    """Decimals with which `x` was given (0.925 -> 3), or None beyond MAX_GIVEN_DECIMALS."""
    for d in range(MAX_GIVEN_DECIMALS + 1):
        if math.isclose(x, round(x, d), rel_tol=0.0, abs_tol=1e-12 * max(1.0, abs(x))):
            return d
    return None


def _column_decimals(values: Sequence[float]) -> int:
    """2, or more for a column of fractions given with more (at most MAX_GIVEN_DECIMALS)."""
    regular = [v for v in values if math.isfinite(v) and not 0 < abs(v) < TINY]
    needed = [_decimals_needed(v) for v in regular]
    if not needed or any(d is None for d in needed) or any(abs(v) > 1 for v in regular):
        return 2
    return max(2, *(d for d in needed if d is not None))


def format_number(x: Any, decimals: int = 2, integer: bool = False) -> str:
    """One number as the tables print it (see the module docstring)."""
    if _is_missing(x):
        return MISSING
    if isinstance(x, bool):
        return str(x)
    v = float(x)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if integer:
        return str(int(x)) if isinstance(x, numbers.Integral) else str(round(v))
    if 0 < abs(v) < TINY:
        return f"{v:.1e}"
    return f"{v:.{decimals}f}"


def _format_column(col: pd.Series) -> list[str]:
    values = list(col.astype(object))
    present = [v for v in values if not _is_missing(v)]
    if present and all(_is_number(v) for v in present):
        if all(_is_integral(v) for v in present):
            return [format_number(v, integer=True) for v in values]
        decimals = _column_decimals([float(v) for v in present])
        return [format_number(v, decimals) for v in values]
    out = []
    for v in values:  # a mixed column: strings verbatim, numbers one by one
        if _is_missing(v):
            out.append(MISSING)
        elif _is_number(v):
            out.append(format_number(v, integer=_is_integral(v),
                                     decimals=_column_decimals([float(v)])))
        else:
            out.append(str(v))
    return out


def format_table(df: pd.DataFrame) -> pd.DataFrame:
    """`df` as strings, formatted per column (the Markdown's cells, before folding)."""
    return pd.DataFrame({c: _format_column(df[c]) for c in df.columns}, index=df.index, dtype=object)


def _numeric(col: pd.Series) -> bool:
    present = [v for v in col.astype(object) if not _is_missing(v)]
    return bool(present) and all(_is_number(v) for v in present)


def split_constant(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """(the table without its constant columns, {column: the shared formatted value}).

    Only tables of more than one row fold, and at least one column always stays."""
    shown = format_table(df)
    if len(df) < 2:
        return df, {}
    constant = {c: shown[c].iloc[0] for c in shown.columns if shown[c].nunique(dropna=False) == 1}
    if len(constant) == len(df.columns):
        return df, {}
    return df.drop(columns=list(constant)), constant


def constant_sentence(constant: dict[str, str]) -> str:
    """"Same for every row: profile default, device cpu." ("" when nothing is constant)."""
    if not constant:
        return ""
    sep = "; " if any("," in str(v) for v in constant.values()) else ", "
    return "Same for every row: " + sep.join(f"{k} {v}" for k, v in constant.items()) + "."


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame) -> str:
    """A pipe table of `df`'s formatted cells; numeric columns right-aligned, no re-parsing."""
    cells = format_table(df)
    align = ["right" if _numeric(df[c]) else "left" for c in df.columns]
    rows = [[_escape(v) for v in row] for row in cells.itertuples(index=False)]
    return tabulate(rows, headers=[_escape(c) for c in df.columns], tablefmt="pipe",
                    disable_numparse=True, colalign=align)


def table_markdown(df: pd.DataFrame, caption: str = "", fold_constant: bool = True) -> str:
    """The caption (with the folded constant columns), a blank line, the table."""
    body, constant = split_constant(df) if fold_constant else (df, {})
    head = " ".join(x for x in (caption.strip(), constant_sentence(constant)) if x)
    return (f"{head}\n\n" if head else "") + markdown_table(body) + "\n"


# ----------------------------------------------------------------------------- writers


def write_table(df: pd.DataFrame, out_dir: str | Path, name: str, caption: str = "",
                fold_constant: bool = True) -> Table:
    """`<name>.csv` (every column, raw values) and `<name>.md` (formatted, constant columns in
    the caption); returns the Markdown as a `Table`, which a notebook cell shows as written."""
    out = Path(out_dir)
    csv = atomic_write_text(df.to_csv(index=False), out / f"{name}.csv")
    md_text = table_markdown(df, caption, fold_constant)
    md = atomic_write_text(md_text, out / f"{name}.md")
    return Table(md_text, df, csv, md)


def save_figure(fig: Any, out_dir: str | Path, name: str, dpi: int = 150) -> Path:
    """Save a matplotlib figure as PNG (DVC plots and the README link the PNGs)."""
    path = Path(out_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    tmp.replace(path)
    return path


def write_metrics(metrics: dict[str, Any], out_dir: str | Path, name: str = "metrics.json") -> Path:
    """The stage's DVC metrics file (`dvc metrics show` reads it)."""
    return write_json(metrics, Path(out_dir) / name)
