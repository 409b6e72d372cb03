"""What a reader sees (issue #14): executed notebooks carry no internals, and every paper notebook
states its verdicts near the top.

- Every executed notebook under results/ (those that exist): no stderr output, at most a few
  stream outputs, no TqdmWarning, no absolute path of the machine that ran it.
- Every paper notebook (a registered method slug with a paper notebook): a "## What we found"
  cell, followed by the cell that shows the verdicts, before the sections about the claims, in
  the source notebook (so it cannot silently disappear) and in the executed one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from prunerep.methods import list_methods
from prunerep.reporting.ledger import PAPERS

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"
NOTEBOOKS = ROOT / "notebooks"
MAX_STREAMS = 5
VERDICT_HEADING = "## What we found"
ABSOLUTE = ("/work/", "/root/", "/tmp/", "/home/", "/Users/")
TEXT_MIMES = ("text/plain", "text/markdown", "text/html", "text/latex", "application/json")

EXECUTED = sorted(RESULTS.glob("*/*.ipynb"))
PAPER_SLUGS = [s for s in PAPERS if s in set(list_methods())]
SOURCE_PAPERS = [s for s in PAPER_SLUGS if (NOTEBOOKS / f"{s}.ipynb").exists()]
EXECUTED_PAPERS = [s for s in PAPER_SLUGS if (RESULTS / s / f"{s}.ipynb").exists()]


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _text(output: dict[str, Any]) -> str:
    """Every textual part of an output (images are skipped: base64 holds '/' by chance)."""
    parts = []
    if "text" in output:
        parts.append(output["text"] if isinstance(output["text"], str) else "".join(output["text"]))
    for key in ("ename", "evalue"):
        if key in output:
            parts.append(str(output[key]))
    parts += output.get("traceback", [])
    for mime, value in output.get("data", {}).items():
        if mime in TEXT_MIMES:
            parts.append(value if isinstance(value, str) else json.dumps(value) if mime == "application/json"
                         else "".join(value))
    return "\n".join(parts)


def _outputs(nb: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(i, o) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" for o in c.get("outputs", [])]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _headings(nb: dict[str, Any]) -> list[tuple[int, str]]:
    """(cell index, line) of every level-2 heading of the markdown cells."""
    out = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "markdown":
            out += [(i, line.strip()) for line in _source(cell).splitlines() if line.startswith("## ")]
    return out


def _verdict_cell_problem(nb: dict[str, Any], executed: bool) -> str | None:
    """Why the notebook has no proper verdict cell (None when it has one)."""
    heads = _headings(nb)
    found = [i for i, line in heads if line.startswith(VERDICT_HEADING)]
    if len(found) != 1:
        return f"{len(found)} markdown cells headed {VERDICT_HEADING!r} (want exactly one)"
    at = found[0]
    before = [line for i, line in heads if i < at]
    # only the runs may come before the verdicts: every section about a claim comes after
    early = [line for line in before if "run" not in line.lower()]
    if early:
        return f"sections before {VERDICT_HEADING!r}: {early} (the verdicts come first)"
    code = next((c for c in nb["cells"][at + 1:] if c["cell_type"] == "code"), None)
    if code is None:
        return f"no code cell after {VERDICT_HEADING!r}"
    if "show_verdicts(" not in _source(code):
        return f"the code cell after {VERDICT_HEADING!r} does not call show_verdicts(...)"
    if executed and "verdict" not in "\n".join(_text(o) for o in code.get("outputs", [])):
        return f"the cell after {VERDICT_HEADING!r} shows no verdict"
    return None


@pytest.mark.skipif(not EXECUTED, reason="no executed notebook under results/")
@pytest.mark.parametrize("path", EXECUTED, ids=_rel)
def test_executed_notebook_shows_no_internals(path: Path) -> None:
    nb = _read(path)
    outputs = _outputs(nb)
    streams = [(i, o) for i, o in outputs if o["output_type"] == "stream"]
    stderr = [i for i, o in streams if o.get("name") == "stderr"]
    assert not stderr, f"{_rel(path)}: stderr output in cells {stderr} (send it to a log file)"
    assert len(streams) <= MAX_STREAMS, (
        f"{_rel(path)}: {len(streams)} stream outputs (at most {MAX_STREAMS}: runs log to files)")
    for i, o in outputs:
        text = _text(o)
        assert "TqdmWarning" not in text, f"{_rel(path)}: cell {i} shows a TqdmWarning"
        leaked = [p for p in ABSOLUTE if p in text]
        assert not leaked, f"{_rel(path)}: cell {i} shows an absolute path ({leaked})"


@pytest.mark.skipif(not EXECUTED_PAPERS, reason="no executed paper notebook under results/")
@pytest.mark.parametrize("slug", EXECUTED_PAPERS)
def test_executed_paper_notebook_has_the_verdict_cell(slug: str) -> None:
    problem = _verdict_cell_problem(_read(RESULTS / slug / f"{slug}.ipynb"), executed=True)
    assert problem is None, f"results/{slug}/{slug}.ipynb: {problem}"


@pytest.mark.skipif(not SOURCE_PAPERS, reason="no paper notebook")
@pytest.mark.parametrize("slug", SOURCE_PAPERS)
def test_source_paper_notebook_states_its_verdicts_first(slug: str) -> None:
    problem = _verdict_cell_problem(_read(NOTEBOOKS / f"{slug}.ipynb"), executed=False)
    assert problem is None, f"notebooks/{slug}.ipynb: {problem} (edit tools/notebooks/{slug}.py)"


def test_the_verdict_cell_check_can_fail() -> None:
    def nb(*cells: tuple[str, str]) -> dict[str, Any]:
        return {"cells": [{"cell_type": t, "source": s, "outputs": []} for t, s in cells]}

    good = nb(("markdown", "# T"), ("markdown", "## The runs"), ("code", "execute()"),
              ("markdown", "## What we found"), ("code", "show_verdicts(claims)"),
              ("markdown", "## Claim 1: polarization"))
    assert _verdict_cell_problem(good, executed=False) is None
    late = nb(("markdown", "## Claim 1"), ("markdown", "## What we found"), ("code", "show_verdicts(c)"))
    assert "verdicts come first" in str(_verdict_cell_problem(late, executed=False))
    assert "exactly one" in str(_verdict_cell_problem(nb(("markdown", "## Claim 1")), executed=False))
    assert "show_verdicts" in str(_verdict_cell_problem(
        nb(("markdown", "## What we found"), ("code", "claims")), executed=False))
    assert "shows no verdict" in str(_verdict_cell_problem(good, executed=True))
