"""The papers' printed numbers, from one data file (references/paper_results.yaml).

Each entry: paper, table, row, metric, value, unit, source. A value that could not be
transcribed is null with a note naming the arXiv id and table, and is shown as "not transcribed"
beside our number. A user with the PDFs fills the cells there; no number lives in code.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

PAPER_RESULTS = Path("references/paper_results.yaml")
NOT_TRANSCRIBED = "not transcribed"


def paper_numbers(paper: str, table: str | None = None, path: str | Path = PAPER_RESULTS) -> pd.DataFrame:
    """Entries of `paper` (optionally one table) as a DataFrame with a display column."""
    data = yaml.safe_load(Path(path).read_text())
    rows = [r for r in data["results"] if r["paper"] == paper and (table is None or r["table"] == table)]
    if not rows:
        raise KeyError(f"{path}: no entries for paper={paper!r} table={table!r}")
    df = pd.DataFrame(rows)
    df["display"] = [NOT_TRANSCRIBED if pd.isna(v) else v for v in df["value"]]
    return df


def paper_value(df: pd.DataFrame, **match: str) -> float | str:
    """One printed value selected by column equality, or "not transcribed"."""
    sel = df
    for key, val in match.items():
        sel = sel[sel[key] == val]
    if len(sel) != 1:
        raise KeyError(f"paper_value: {len(sel)} entries match {match}")
    v = sel["value"].iloc[0]
    return NOT_TRANSCRIBED if pd.isna(v) else float(v)


def dense_reference(model_key: str, path: str | Path = PAPER_RESULTS) -> dict[str, object]:
    """A paper's printed dense accuracy for pretrain model `model_key` (value or "not transcribed")."""
    data = yaml.safe_load(Path(path).read_text())
    for r in data["results"]:
        if r.get("model") == model_key and r["metric"] == "dense_test_acc":
            value = NOT_TRANSCRIBED if r["value"] is None else r["value"]
            return {"paper_test_acc": value, "paper_source": r["source"]}
    return {"paper_test_acc": "n/a", "paper_source": ""}
