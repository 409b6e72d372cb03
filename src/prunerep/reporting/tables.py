"""Writing tables (CSV + Markdown), figures (PNG) and DVC metrics, atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from prunerep.io import atomic_write_text, write_json


def write_table(df: pd.DataFrame, out_dir: str | Path, name: str, caption: str = "") -> pd.DataFrame:
    """`<name>.csv` and `<name>.md` (with the caption, e.g. the profile and budget, on top)."""
    out = Path(out_dir)
    atomic_write_text(df.to_csv(index=False), out / f"{name}.csv")
    md = (f"{caption}\n\n" if caption else "") + df.to_markdown(index=False, floatfmt=".2f") + "\n"
    atomic_write_text(md, out / f"{name}.md")
    return df


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
