"""The papers' printed numbers, one data file per paper (references/paper_results/<slug>.yaml).

Each entry: paper, table, row, metric, value, unit, source, dataset. A value that could not be
transcribed is null with a note naming the arXiv id and table, and is shown as "not transcribed"
beside our number. A user with the PDFs fills the cells there; no number lives in code.

One policy for every notebook: **a paper's row is shown only beside a result on the paper's
dataset**. Pass the run's dataset (``data.dataset``, or the DataConfig) as ``dataset=`` and the
entries on other datasets are left out (`paper_numbers`) or shown as "n/a (paper reports
CIFAR-10)" (`dense_reference`). Matching is by name (`prunerep.data.paper_dataset_matches`):
``cifar10`` matches ``data.dataset: cifar10`` whatever copy ``data.source`` names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from prunerep.data.config import DataConfig
from prunerep.data.describe import dataset_display_name, paper_dataset_matches

PAPER_RESULTS = Path("references/paper_results")   # a directory of <slug>.yaml, or one file
NOT_TRANSCRIBED = "not transcribed"
COLUMNS = ("paper", "table", "row", "model", "metric", "value", "unit", "dataset", "source", "note")
REQUIRED = ("paper", "table", "row", "metric", "value", "unit", "source", "dataset")


def _data_config(dataset: str | DataConfig) -> DataConfig:
    if isinstance(dataset, DataConfig):
        return dataset
    if not isinstance(dataset, str) or not dataset.strip():
        raise ValueError(f"dataset= must be a data.dataset name such as 'cifar10', got {dataset!r}")
    return DataConfig(dataset=dataset)


def load_paper_results(path: str | Path = PAPER_RESULTS, paper: str | None = None) -> list[dict[str, Any]]:
    """Every entry of the data file(s), each checked to carry the required fields.

    `path`: a directory of ``<slug>.yaml`` files (each holding one paper's entries: a stage
    depends on its own paper's file) or one file. With `paper`, only that paper's file is read.

    Raises:
        ValueError: an entry lacks a field (e.g. `dataset`), or sits in another paper's file;
            the message names the entry.
    """
    path = Path(path)
    if path.is_dir():
        files = [path / f"{paper}.yaml"] if paper is not None else sorted(path.glob("*.yaml"))
        out: list[dict[str, Any]] = []
        for file in files:
            if not file.exists():
                continue          # a paper without a file has no printed numbers (`paper_numbers` says so)
            entries = _load_file(file)
            wrong = [e for e in entries if e["paper"] != file.stem]
            if wrong:
                raise ValueError(f"{file}: entry {wrong[0].get('row')!r} says paper: {wrong[0]['paper']}; move it "
                                 f"to {path / (str(wrong[0]['paper']) + '.yaml')}")
            out += entries
        return out
    return [e for e in _load_file(path) if paper is None or e["paper"] == paper]


def _load_file(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text()) or {}
    entries = data.get("results") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a top-level `results:` list of entries")
    for i, entry in enumerate(entries):
        missing = [k for k in REQUIRED if not isinstance(entry, dict) or k not in entry]
        if missing or not str(entry.get("dataset") or "").strip():
            where = f"{entry.get('paper')} / {entry.get('table')} / {entry.get('row')}" if isinstance(entry, dict) else entry
            raise ValueError(
                f"{path}: results[{i}] ({where}) lacks {missing or ['dataset']}; every entry needs "
                f"{', '.join(REQUIRED)} (dataset: cifar10 | cifar100 | imagenet | voc2012 | ...)"
            )
    return entries


def paper_numbers(paper: str, table: str | None = None, path: str | Path = PAPER_RESULTS, *,
                  dataset: str | DataConfig | None = None) -> pd.DataFrame:
    """Entries of `paper` (optionally one table) as a DataFrame with a display column.

    Args:
        paper: slug, e.g. ``greg``.
        table: keep only this table, e.g. ``Table 1``.
        path: the data file.
        dataset: the run's ``data.dataset`` (or its DataConfig): keep only entries on that
            dataset. The result may then be empty (same columns): a run on another dataset
            shows no paper row. None keeps every entry.

    Raises:
        KeyError: the file has no entry for `paper` / `table` at all (a misspelt name).
    """
    rows = [r for r in load_paper_results(path, paper) if table is None or r["table"] == table]
    if not rows:
        raise KeyError(f"{path}: no entries for paper={paper!r} table={table!r}")
    if dataset is not None:
        data_cfg = _data_config(dataset)
        rows = [r for r in rows if paper_dataset_matches(data_cfg, str(r["dataset"]))]
    df = pd.DataFrame(rows, columns=list(dict.fromkeys([*COLUMNS, *(k for r in rows for k in r)])))
    df["display"] = [NOT_TRANSCRIBED if pd.isna(v) else v for v in df["value"]]
    return df


def paper_datasets(paper: str, path: str | Path = PAPER_RESULTS) -> list[str]:
    """The datasets `paper`'s entries report on, in file order (e.g. ``['cifar10', 'imagenet']``)."""
    return list(dict.fromkeys(str(r["dataset"]) for r in load_paper_results(path, paper)))


def paper_rows_note(paper: str, dataset: str | DataConfig, path: str | Path = PAPER_RESULTS) -> str:
    """A caption sentence saying whether `paper`'s printed numbers are shown beside this run.

    E.g. "Paper rows: the paper's CIFAR-10 numbers." or "Paper rows: none (the paper reports
    CIFAR-10, CIFAR-100, ImageNet; this run is on synthetic)."
    """
    data_cfg = _data_config(dataset)
    reported = paper_datasets(paper, path)
    if not reported:
        raise KeyError(f"{path}: no entries for paper={paper!r}")
    shown = [d for d in reported if paper_dataset_matches(data_cfg, d)]
    if shown:
        return f"Paper rows: the paper's {dataset_display_name(shown[0])} numbers."
    names = ", ".join(dataset_display_name(d) for d in reported)
    return (f"Paper rows: none (the paper reports {names}; this run is on "
            f"{dataset_display_name(data_cfg.dataset)}).")


def paper_value(df: pd.DataFrame, **match: str) -> float | str:
    """One printed value selected by column equality, or "not transcribed"."""
    sel = df
    for key, val in match.items():
        sel = sel[sel[key] == val]
    if len(sel) != 1:
        raise KeyError(f"paper_value: {len(sel)} entries match {match}")
    v = sel["value"].iloc[0]
    return NOT_TRANSCRIBED if pd.isna(v) else float(v)


def dense_reference(model_key: str, path: str | Path = PAPER_RESULTS, *,
                    dataset: str | DataConfig | None = None) -> dict[str, object]:
    """A paper's printed dense accuracy for pretrain model `model_key`.

    Args:
        model_key: key of ``pretrain.models`` (e.g. ``resnet56``).
        path: the data file.
        dataset: the run's ``data.dataset`` (or its DataConfig). When the paper's dense number
            is on another dataset, the value is ``"n/a (paper reports CIFAR-10)"``.

    Returns:
        ``{"paper_test_acc": value | "not transcribed" | "n/a ...", "paper_source": str}``; the
        source is empty when the value is "n/a" (no paper row beside a result on another dataset).
    """
    rows = [r for r in load_paper_results(path) if r.get("model") == model_key and r["metric"] == "dense_test_acc"]
    for r in sorted(rows, key=lambda r: r["value"] is None):      # a transcribed number first
        if dataset is not None and not paper_dataset_matches(_data_config(dataset), str(r["dataset"])):
            reported = dataset_display_name(str(r["dataset"]))
            return {"paper_test_acc": f"n/a (paper reports {reported})", "paper_source": ""}
        value = NOT_TRANSCRIBED if r["value"] is None else r["value"]
        return {"paper_test_acc": value, "paper_source": r["source"]}
    return {"paper_test_acc": "n/a", "paper_source": ""}
