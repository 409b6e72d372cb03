"""Build the offline report: every executed notebook, the claim ledger and an index, as static HTML.

Layout of the report folder (it mirrors `results/`, so a notebook's relative links keep working):

    index.html              every paper's claims with their verdicts and notebooks, other notebooks
    ledger.html             the claim ledger (ledger.md rendered)
    ledger/                 ledger.csv, ledger.md and the ledger's figures, copied
    <slug>/<slug>.html      each executed notebook results/<slug>/<slug>.ipynb, rendered
    static/<digest>.css     the notebook pages' shared stylesheets

The folder is built beside `out` and moved into place only when every page has passed the
offline check (`offline.external_requests`) and every relative link names a file inside it, so a
failed build leaves the previous report as it was. The output is a function of the inputs only
(no time stamps, content-named stylesheets), so rebuilding unchanged results changes no byte.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from prunerep.report import offline, pages
from prunerep.report.errors import ReportError
from prunerep.report.render import render_notebook

#: Notebooks that are not papers, always listed on the index (as "not run" when missing).
OTHER_NOTEBOOKS: tuple[str, ...] = ("baseline", "compare")
LEDGER_DIR = "ledger"
LEDGER_CSV = "ledger.csv"
LEDGER_MD = "ledger.md"
#: Columns of ledger.csv the index shows (the ledger stage writes more).
REQUIRED_COLUMNS: tuple[str, ...] = ("paper", "claim", "statement", "our test", "n", "paper value",
                                     "ours", "verdict")
VERDICT_ANCHOR = "What-we-found"   # nbconvert's id of the notebooks' "## What we found" heading


@dataclass
class ReportSummary:
    """What a build wrote."""

    out: Path
    papers: list[str]
    rendered: list[str]                  # notebooks rendered, in index order
    not_run: list[str]                   # notebooks listed as not run
    pages: int = 0
    figures: int = 0
    removed: list[str] = field(default_factory=list)   # external elements stripped (page: what)
    seconds: float = 0.0


def find_notebooks(results: Path, exclude: Path | None = None) -> dict[str, Path]:
    """Every executed notebook `results/<slug>/<slug>.ipynb`, by slug (sorted)."""
    found = {}
    for folder in sorted(p for p in results.iterdir() if p.is_dir()):
        if exclude is not None and folder.resolve() == exclude.resolve():
            continue
        notebook = folder / f"{folder.name}.ipynb"
        if notebook.is_file():
            found[folder.name] = notebook
    return found


def read_ledger(path: Path) -> list[dict[str, str]]:
    """The rows of ledger.csv; a `ReportError` naming the file and the fix when it cannot serve."""
    fix = "Fix: build the claim ledger first (`dvc repro ledger`)."
    if not path.is_file():
        raise ReportError(f"{path}: missing, so the index has no claims to show. {fix}")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = [dict(r) for r in reader]
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ReportError(f"{path}: not a readable CSV ({err}). {fix}") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ReportError(f"{path}: lacks the column(s) {missing} (has {columns}). {fix}")
    if not rows:
        raise ReportError(f"{path}: holds no claim. {fix}")
    blank = [i + 2 for i, r in enumerate(rows) if not (r["paper"] or "").strip() or not (r["claim"] or "").strip()]
    if blank:
        raise ReportError(f"{path}: line(s) {blank[:5]} have no paper or claim. {fix}")
    return [{k: (v if v is not None else "") for k, v in r.items() if k is not None} for r in rows]


def _label(results: Path) -> str:
    """How pages name the results folder: as given when relative, else by its name (no host paths)."""
    return results.as_posix() if not results.is_absolute() else results.name


def _check_replaceable(out: Path, results: Path) -> None:
    if out.resolve() == results.resolve() or results.resolve().is_relative_to(out.resolve()):
        raise ReportError(f"{out}: the report needs a folder of its own, not the results folder or one "
                          f"above it. Fix: pass --out {results / 'report'}.")
    if not out.exists():
        return
    if not out.is_dir():
        raise ReportError(f"{out}: exists and is a file, not a report folder. Fix: pass --out a new "
                          f"or empty folder, or remove {out}.")
    index = out / "index.html"
    ours = index.is_file() and pages.GENERATOR in index.read_text(encoding="utf-8", errors="replace")[:4096]
    if any(out.iterdir()) and not ours:
        raise ReportError(f"{out}: exists and is not a report this command built (no index.html from "
                          f"prunerep.report), so it is not replaced. Fix: pass --out a new or empty "
                          f"folder, or remove {out} yourself.")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _target(page: Path, url: str) -> PurePosixPath | None:
    """Where a relative URL of `page` points, relative to the page's folder (None: no file part)."""
    path = unquote(urlsplit(url.strip()).path)
    return PurePosixPath(path) if path else None


def _resolve(root: Path, page: Path, url: str) -> Path | None:
    """The file a relative URL of `page` names, if it stays inside `root` (else None)."""
    rel = _target(page, url)
    if rel is None:
        return page
    target = Path(os.path.normpath(page.parent / rel))
    return target if target.is_relative_to(root) else None


def _copy_linked(root: Path, page: Path, results: Path, slug: str) -> None:
    """Copy into the report the files of results/ that a notebook page links to by relative URL.

    The report mirrors results/, so `tables/x.md` on results/<slug>/<slug>.ipynb is
    report/<slug>/tables/x.md; only files inside results/ are copied, never the report itself.
    """
    for ref in offline.local_references(page.read_text(encoding="utf-8")):
        target = _resolve(root, page, ref.url)
        if target is None or target.exists():
            continue
        source = results / target.relative_to(root)
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        else:
            raise ReportError(
                f"{results / slug / (slug + '.ipynb')}: links to {ref.url!r}, which is not a file under "
                f"{results}. Fix: correct the link in tools/notebooks/{slug}.py (then "
                f"`python tools/nbwrite.py` and `dvc repro {slug}`).")


def verify(root: Path) -> list[str]:
    """Problems of the report folder: external requests, absolute or broken local references."""
    problems = []
    for page in sorted(root.rglob("*.html")):
        html = page.read_text(encoding="utf-8")
        name = page.relative_to(root).as_posix()
        problems += [f"{name}: would fetch {ref} from the internet" for ref in offline.external_requests(html)]
        problems += [f"{name}: absolute reference {ref} breaks when the report moves"
                     for ref in offline.absolute_local_references(html)]
        for ref in offline.local_references(html):
            target = _resolve(root, page, ref.url)
            if target is None:
                problems.append(f"{name}: {ref} points outside the report folder")
            elif not target.is_file():
                problems.append(f"{name}: {ref} names a missing file")
    return problems


def _markdown(text: str) -> str:
    import mistune

    return str(mistune.create_markdown(escape=True, plugins=["table"])(text))


def build_report(results: str | os.PathLike[str], out: str | os.PathLike[str]) -> ReportSummary:
    """Render every executed notebook of `results`, its claim ledger and an index into `out`.

    Args:
        results: the results folder (with ledger/ledger.csv and <slug>/<slug>.ipynb per stage run).
        out: the report folder to (re)build; an existing one must be a report this function built.

    Raises:
        ReportError: bad input (no results folder, no ledger, a corrupt notebook, a broken link),
            with a message naming the file and the fix; nothing is written then.
    """
    start = time.perf_counter()
    results, out = Path(results), Path(out)
    if not results.is_dir():
        raise ReportError(f"{results}: no such results folder. Fix: run from the repository root "
                          f"(the folder holding dvc.yaml), or pass --results DIR; `dvc repro` fills it.")
    rows = read_ledger(results / LEDGER_DIR / LEDGER_CSV)
    papers = list(dict.fromkeys(r["paper"].strip() for r in rows))
    found = find_notebooks(results, exclude=out if out.exists() else None)
    others = [*OTHER_NOTEBOOKS, *sorted(set(found) - set(papers) - set(OTHER_NOTEBOOKS))]
    label = _label(results)
    _check_replaceable(out, results)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    summary = ReportSummary(out=out, papers=papers, rendered=[], not_run=[])
    try:
        entries: dict[str, pages.NotebookEntry] = {}
        sheets: dict[str, str] = {}
        for slug in [*papers, *others]:
            source = f"{label}/{slug}/{slug}.ipynb"
            if slug not in found:
                entries[slug] = pages.NotebookEntry(slug, source)
                summary.not_run.append(slug)
                continue
            rendered = render_notebook(found[slug], slug, source_label=source, root="../")
            html, removed = offline.strip_external(rendered.html)
            summary.removed += [f"{slug}/{slug}.html: {r}" for r in removed]
            page = tmp / slug / f"{slug}.html"
            _write(page, html)
            sheets.update(rendered.stylesheets)
            anchor = VERDICT_ANCHOR if f'id="{VERDICT_ANCHOR}"' in html else None
            entries[slug] = pages.NotebookEntry(slug, source, f"{slug}/{slug}.html", anchor, rendered.figures,
                                                 rendered.title)
            summary.rendered.append(slug)
            summary.figures += rendered.figures
        for name, css in sorted(sheets.items()):
            _write(tmp / name, css)

        ledger_src = results / LEDGER_DIR
        (tmp / LEDGER_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ledger_src / LEDGER_CSV, tmp / LEDGER_DIR / LEDGER_CSV)
        markdown = None
        if (ledger_src / LEDGER_MD).is_file():
            shutil.copyfile(ledger_src / LEDGER_MD, tmp / LEDGER_DIR / LEDGER_MD)
            markdown = _markdown((ledger_src / LEDGER_MD).read_text(encoding="utf-8"))
        figures = []
        for png in sorted(ledger_src.glob("*.png")):
            shutil.copyfile(png, tmp / LEDGER_DIR / png.name)
            figures.append(f"{LEDGER_DIR}/{png.name}")
        columns: Sequence[str] = list(rows[0])
        _write(tmp / "ledger.html", pages.ledger_page(markdown, pages.csv_table(rows, columns), figures))
        _write(tmp / "index.html", pages.index_page(rows, papers, entries, others, figures, label))

        for slug in summary.rendered:
            _copy_linked(tmp, tmp / slug / f"{slug}.html", results, slug)
        problems = verify(tmp)
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise ReportError(f"{out}: the report would not work offline: {shown}. Fix: correct the "
                              f"notebook or ledger named, then rebuild.")
        summary.pages = sum(1 for _ in tmp.rglob("*.html"))
        tmp.chmod(0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            old.rmdir()
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary.seconds = time.perf_counter() - start
    return summary
