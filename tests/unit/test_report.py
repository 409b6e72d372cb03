"""The offline HTML report (`python -m prunerep.report`, issue #19 item 3), built from a copy of the
committed results: the index lists every paper of the ledger with its verdicts, every executed
notebook is a page with all its figures, every page loads from disk alone, and no request leaves
the machine (checked statically, and in headless Chromium when one is installed).

These checks parse the pages with BeautifulSoup, independently of the report's own checker
(`prunerep.report.offline`), which has tests of its own below.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
import yaml
from bs4 import BeautifulSoup

from prunerep.report import OTHER_NOTEBOOKS, ReportError, build_report, offline
from prunerep.report.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"
#: Tags whose URL attributes the browser loads on its own.
FETCHING = {"script": ["src"], "link": ["href"], "img": ["src", "srcset"], "iframe": ["src"],
            "frame": ["src"], "embed": ["src"], "object": ["data"], "source": ["src", "srcset"],
            "video": ["src", "poster"], "audio": ["src"], "track": ["src"], "input": ["src"]}
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml")


def _committed_notebooks() -> dict[str, Path]:
    return {p.parent.name: p for p in sorted(RESULTS.glob("*/*.ipynb")) if p.stem == p.parent.name}


def _copy_results(dest: Path, skip: tuple[str, ...] = ()) -> Path:
    """The committed executed notebooks and ledger, copied into `dest` (the report reads only these)."""
    assert (RESULTS / "ledger" / "ledger.csv").is_file(), "results/ledger/ledger.csv is not committed"
    shutil.copytree(RESULTS / "ledger", dest / "ledger")
    for slug, path in _committed_notebooks().items():
        if slug not in skip:
            (dest / slug).mkdir(parents=True)
            shutil.copyfile(path, dest / slug / path.name)
    return dest


def _ledger_rows(results: Path) -> list[dict[str, str]]:
    with (results / "ledger" / "ledger.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def _images(nb_path: Path) -> list[tuple[str, str]]:
    """(mime, payload) of every image output of an executed notebook."""
    nb = json.loads(nb_path.read_text())
    out = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            for mime in IMAGE_MIMES:
                if mime in o.get("data", {}):
                    value = o["data"][mime]
                    out.append((mime, "".join(value) if isinstance(value, list) else value))
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(results copy, report folder, summary) of one build on the committed results."""
    results = _copy_results(tmp_path_factory.mktemp("committed") / "results")
    summary = build_report(results, results / "report")
    return results, results / "report", summary


def _pages(report: Path) -> list[Path]:
    return sorted(report.rglob("*.html"))


# --------------------------------------------------------------------------- what the index shows

def test_the_index_lists_every_ledger_paper_with_each_claim_and_its_verdict(built):
    results, report, summary = built
    rows = _ledger_rows(results)
    index = _soup(report / "index.html")
    papers = list(dict.fromkeys(r["paper"] for r in rows))
    assert summary.papers == papers
    for paper in papers:
        section = index.find("section", id=f"paper-{paper}")
        assert section is not None, f"index has no section for {paper}"
        shown = [(tr["data-claim"], tr.find("td", class_="verdict").get_text(strip=True))
                 for tr in section.find_all("tr", attrs={"data-claim": True})]
        expected = [(r["claim"], r["verdict"]) for r in rows if r["paper"] == paper]
        assert shown == expected, paper
        # the summary row counts the same verdicts
        summary_row = index.find("table", class_="summary").find("tr", attrs={"data-paper": paper})
        assert summary_row is not None
    heads = [th.get_text(strip=True) for th in index.find("table", class_="summary").find_all("th")]
    for paper in papers:
        cells = [td.get_text(strip=True) for td in index.find("table", class_="summary")
                 .find("tr", attrs={"data-paper": paper}).find_all("td")]
        for verdict, count in zip(heads[2:], cells[2:], strict=True):
            assert int(count) == sum(1 for r in rows if r["paper"] == paper and r["verdict"] == verdict)


def test_every_executed_notebook_is_a_page_linked_from_the_index_and_missing_ones_read_not_run(built):
    results, report, summary = built
    index = _soup(report / "index.html")
    links = {urlsplit(a["href"]).path for a in index.find_all("a", href=True)}
    committed = _committed_notebooks()
    assert committed, "no executed notebook is committed under results/"
    for slug in committed:
        assert (report / slug / f"{slug}.html").is_file(), slug
        assert f"{slug}/{slug}.html" in links, f"index does not link {slug}"
    papers = {r["paper"] for r in _ledger_rows(results)}
    for slug in (papers | set(OTHER_NOTEBOOKS)) - set(committed):
        assert slug in summary.not_run
        holder = index.find(attrs={"data-paper": slug}) or index.find(attrs={"data-notebook": slug})
        assert holder is not None and "not run" in holder.get_text(), f"{slug} is not shown as not run"
    assert set(summary.rendered) == set(committed)


def test_a_paper_whose_notebook_is_missing_is_listed_as_not_run_with_its_claims(tmp_path):
    slug = next(s for s in _committed_notebooks() if s not in OTHER_NOTEBOOKS)
    results = _copy_results(tmp_path / "results", skip=(slug,))
    summary = build_report(results, tmp_path / "report")
    index = _soup(tmp_path / "report" / "index.html")
    section = index.find("section", id=f"paper-{slug}")
    assert section is not None and "not run" in section.find("p", class_="not-run").get_text()
    assert len(section.find_all("tr", attrs={"data-claim": True})) == \
        sum(1 for r in _ledger_rows(results) if r["paper"] == slug)
    assert slug in summary.not_run and not (tmp_path / "report" / slug).exists()


# --------------------------------------------------------------------- figures, links, no internet

def test_every_figure_of_every_notebook_is_embedded_in_its_page(built):
    _, report, summary = built
    total = 0
    for slug, nb_path in _committed_notebooks().items():
        page = _soup(report / slug / f"{slug}.html")
        srcs = ["".join(img.get("src", "").split()) for img in page.find_all("img")]
        for mime, payload in _images(nb_path):
            if mime == "image/svg+xml":
                assert payload.strip()[:200] in str(page), f"{slug}: an SVG figure is missing"
                continue
            assert f"data:{mime};base64,{''.join(payload.split())}" in srcs, f"{slug}: a figure is missing"
            total += 1
    assert total == summary.figures > 0


def test_every_page_parses_and_every_local_reference_names_a_file_in_the_report(built):
    _, report, _ = built
    pages = _pages(report)
    assert len(pages) == len(_committed_notebooks()) + 2       # + index and ledger
    for page in pages:
        soup = _soup(page)
        assert soup.find("html") and soup.find("head") and soup.find("body"), page
        assert soup.title and soup.title.get_text(strip=True), f"{page} has no title"
        for tag in soup.find_all(True):
            for attr in ("href", "src"):
                url = tag.get(attr)
                if not isinstance(url, str) or url.startswith(("#", "data:", "mailto:")):
                    continue
                parts = urlsplit(url)
                if parts.scheme in ("http", "https"):
                    assert tag.name == "a", f"{page.name}: <{tag.name} {attr}={url}> loads from the internet"
                    continue
                assert not parts.scheme and not url.startswith("/"), f"{page.name}: {url} is not relative"
                target = (page.parent / unquote(parts.path)).resolve()
                assert target.is_file(), f"{page.relative_to(report)}: {url} names no file"
                assert target.is_relative_to(report.resolve()), f"{page.name}: {url} leaves the report"
        for img in soup.find_all("img"):
            src = img.get("src", "")
            if src.startswith("data:"):
                header, _, payload = src.partition(",")
                assert header.startswith("data:image/") and ";base64" in header
                base64.b64decode("".join(payload.split()), validate=True)
            else:
                assert src.endswith(".png") and (page.parent / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_page_references_the_internet_in_a_tag_the_browser_loads(built):
    _, report, _ = built
    for page in _pages(report):
        soup = _soup(page)
        for tag in soup.find_all(list(FETCHING)):
            for attr in FETCHING[tag.name]:
                value = tag.get(attr)
                assert not (isinstance(value, str) and re.search(r"(^|\s|,)(https?:)?//", value)), \
                    f"{page.name}: <{tag.name} {attr}={value!r}>"
        assert not soup.find_all("script"), f"{page.name} has a script"
        for style in soup.find_all("style"):
            assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import", style.get_text()), page.name
        for css in page.parent.glob("*.css"):
            text = re.sub(r"/\*.*?\*/", "", css.read_text(), flags=re.DOTALL)   # comments fetch nothing
            assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import", text), css.name
    for css in (report / "static").glob("*.css"):
        text = re.sub(r"/\*.*?\*/", "", css.read_text(), flags=re.DOTALL)
        assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import", text), css.name


def test_the_ledger_page_and_files_are_in_the_report(built):
    results, report, _ = built
    assert (report / "ledger" / "ledger.csv").read_bytes() == (results / "ledger" / "ledger.csv").read_bytes()
    text = _soup(report / "ledger.html").get_text()
    for row in _ledger_rows(results):
        assert row["claim"] in text
    for png in (results / "ledger").glob("*.png"):
        assert (report / "ledger" / png.name).read_bytes() == png.read_bytes()
        assert f"ledger/{png.name}" in (report / "index.html").read_text()


def test_rebuilding_the_same_results_gives_the_same_bytes(built, tmp_path):
    results, report, _ = built
    again = tmp_path / "again"
    build_report(results, again)
    first = {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()}
    second = {p.relative_to(again): p.read_bytes() for p in again.rglob("*") if p.is_file()}
    assert first.keys() == second.keys() and first == second
    build_report(results, again)                # replacing its own report is allowed
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".again")], "temp folder left behind"


# ----------------------------------------------------------------------------- the offline checker

def _tiny_results(root: Path, outputs: list, markdown: str = "# Tiny\n\n## What we found") -> Path:
    (root / "ledger").mkdir(parents=True)
    (root / "ledger" / "ledger.csv").write_text(
        "paper,claim,statement,our test,n,paper value,ours,verdict,notebook\n"
        "tiny,tiny.one,it works,a test,3,1.0,1.1 [1.0, 1.2] (n=3),supported,results/tiny/tiny.ipynb\n")
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("x = 1")
    code.outputs = outputs
    nb.cells = [nbformat.v4.new_markdown_cell(markdown), code]
    (root / "tiny").mkdir()
    nbformat.write(nb, root / "tiny" / "tiny.ipynb")
    return root


def test_elements_that_would_load_from_the_internet_are_removed_and_named(tmp_path):
    html_out = nbformat.v4.new_output("display_data", data={
        "text/html": '<img src="https://example.org/x.png"><script src="//cdn.example.org/a.js"></script>'
                     '<iframe src="http://example.org"></iframe><a href="https://arxiv.org/abs/1">paper</a>'
                     '<div style="background: url(https://example.org/bg.png)">x</div>',
        "text/plain": "<html>"})
    results = _tiny_results(tmp_path / "results", [html_out],
                            "# Tiny\n\n![remote](https://example.org/fig.png)\n\n## What we found")
    summary = build_report(results, tmp_path / "report")
    page = (tmp_path / "report" / "tiny" / "tiny.html").read_text()
    assert offline.external_requests(page) == []
    assert "example.org/x.png" in page and "prunerep-external" in page    # named, not silently gone
    assert 'href="https://arxiv.org/abs/1"' in page                      # a link fetches nothing
    assert len(summary.removed) >= 5, summary.removed


def test_offline_checker_finds_each_kind_of_request():
    html = ('<link rel="stylesheet" href="https://a/x.css"><script src="http://b/y.js"></script>'
            '<img srcset="local.png 1x, //c/z.png 2x"><style>@import "https://d/f.css";</style>'
            '<meta http-equiv="refresh" content="0; url=https://e/"><a href="https://f/">ok</a>'
            '<img src="figures/a.png"><img src="data:image/png;base64,AAAA">')
    found = {r.url for r in offline.external_requests(html)}
    assert found == {"https://a/x.css", "http://b/y.js", "//c/z.png", "https://d/f.css", "https://e/"}
    assert {r.url for r in offline.local_references(html)} == {"local.png", "figures/a.png"}
    cleaned, removed = offline.strip_external(html)
    assert offline.external_requests(cleaned) == [] and len(removed) == 5
    assert offline.strip_external("<p>plain</p>") == ("<p>plain</p>", [])


def test_relative_links_of_a_notebook_are_copied_and_dead_ones_are_an_error(tmp_path):
    results = _tiny_results(tmp_path / "results", [], "# Tiny\n\nSee [the table](tables/t.md).")
    (results / "tiny" / "tables").mkdir()
    (results / "tiny" / "tables" / "t.md").write_text("| a |\n|---|\n| 1 |\n")
    build_report(results, tmp_path / "report")
    assert (tmp_path / "report" / "tiny" / "tables" / "t.md").read_text().startswith("| a |")
    (results / "tiny" / "tables" / "t.md").unlink()
    with pytest.raises(ReportError, match=r"tiny\.ipynb: links to 'tables/t\.md'.*Fix: correct the link"):
        build_report(results, tmp_path / "report2")
    assert not (tmp_path / "report2").exists()


# ------------------------------------------------------------------------------------ bad input

def test_a_missing_results_folder_is_one_clear_error(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    with pytest.raises(ReportError, match=r"nowhere: no such results folder\. Fix: run from the repository root"):
        build_report(missing, tmp_path / "report")
    assert main(["--results", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere: no such results folder" in err[0] and "Traceback" not in err[0]


def test_a_missing_or_malformed_ledger_names_the_file_and_the_stage(tmp_path):
    (tmp_path / "results").mkdir()
    with pytest.raises(ReportError, match=r"ledger\.csv: missing.*`dvc repro ledger`"):
        build_report(tmp_path / "results", tmp_path / "report")
    (tmp_path / "results" / "ledger").mkdir()
    (tmp_path / "results" / "ledger" / "ledger.csv").write_text("paper,claim\ngdp,gdp.x\n")
    with pytest.raises(ReportError, match=r"ledger\.csv: lacks the column\(s\) \['statement'"):
        build_report(tmp_path / "results", tmp_path / "report")


def test_a_corrupt_notebook_names_the_file_and_how_to_remake_it(tmp_path, capsys):
    results = _tiny_results(tmp_path / "results", [])
    (results / "tiny" / "tiny.ipynb").write_text('{"cells": [')       # cut short, as by a kill
    with pytest.raises(ReportError, match=r"tiny\.ipynb: not a readable notebook .*`dvc repro tiny`"):
        build_report(results, tmp_path / "report")
    assert main(["--results", str(results), "--out", str(tmp_path / "report")]) == 2
    assert "tiny.ipynb: not a readable notebook" in capsys.readouterr().err
    (results / "tiny" / "tiny.ipynb").write_text('{"cells": "not a list", "nbformat": 4}')
    with pytest.raises(ReportError, match=r"tiny\.ipynb: not a readable notebook"):
        build_report(results, tmp_path / "report")
    assert not (tmp_path / "report").exists()


def test_a_folder_that_is_not_a_report_is_never_replaced(tmp_path):
    results = _tiny_results(tmp_path / "results", [])
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ReportError, match=r"precious: exists and is not a report"):
        build_report(results, precious)
    assert (precious / "notes.txt").read_text() == "keep me"
    with pytest.raises(ReportError, match="not the results folder"):
        build_report(results, results)


# ------------------------------------------------------------------------------- the DVC stage

def test_the_report_stage_depends_on_every_executed_notebook_and_the_ledger():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    report = stages["report"]
    assert report["cmd"] == "python -m prunerep.report --results results --out results/report"
    deps = set(report["deps"])
    notebooks = set()
    for stage in stages.values():
        for out in stage.get("do", stage).get("outs", []):
            path = next(iter(out)) if isinstance(out, dict) else out
            if re.fullmatch(r"results/([^/]+)/\1\.ipynb", path):
                notebooks.add(path)
    assert notebooks and notebooks <= deps, f"report stage lacks {sorted(notebooks - deps)}"
    ledger_outs = {next(iter(o)) if isinstance(o, dict) else o for o in stages["ledger"]["outs"]}
    assert ledger_outs <= deps
    assert {"src/prunerep/report", "src/prunerep/__init__.py"} <= deps
    assert report["outs"] == [{"results/report": {"cache": False}}]


def test_the_report_package_imports_only_itself_from_prunerep():
    """So its stage's code dependencies (src/prunerep/report, src/prunerep/__init__.py) are complete."""
    for path in (ROOT / "src" / "prunerep" / "report").glob("*.py"):
        for module in re.findall(r"^\s*(?:from|import)\s+(prunerep[\w.]*)", path.read_text(), re.MULTILINE):
            assert module == "prunerep.report" or module.startswith("prunerep.report."), f"{path.name}: {module}"


# -------------------------------------------------------------------------- in a headless browser

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def _chromium_path() -> str | None:
    for candidate in (os.environ.get("PRUNEREP_CHROMIUM"), shutil.which("chromium"),
                      shutil.which("chromium-browser"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _no_browser(reason: str) -> None:
    if os.environ.get("PRUNEREP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"PRUNEREP_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium():
    executable = _chromium_path()
    if executable is None:
        _no_browser("no Chromium installed (Debian: apt-get install chromium); the static checks above "
                    "still ran")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("the Python package playwright is not installed (it is in requirements.lock)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _visit(browser, url: str) -> dict:
    """Load `url` in a fresh context that aborts every request not to file: or data:."""
    context = browser.new_context()
    seen: dict = {"outside": [], "failed": [], "errors": []}

    def guard(route):
        target = route.request.url
        if target.startswith(("file:", "data:", "about:")):
            route.continue_()
        else:
            seen["outside"].append(target)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.on("request", lambda r: None if r.url.startswith(("file:", "data:", "about:"))
            else seen["outside"].append(r.url))
    page.on("requestfailed", lambda r: seen["failed"].append(r.url))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
    page.goto(url, wait_until="load")
    seen["images"] = page.eval_on_selector_all(
        "img", "els => els.map(e => ({src: e.getAttribute('src').slice(0, 60), ok: e.complete && e.naturalWidth > 0}))")
    seen["stylesheets"] = page.evaluate("document.styleSheets.length")
    context.close()
    return seen


def test_every_page_loads_in_headless_chromium_showing_every_figure_with_no_request_out(built, chromium):
    _, report, _ = built
    figures = {slug: len(_images(p)) for slug, p in _committed_notebooks().items()}
    for page in _pages(report):
        seen = _visit(chromium, page.resolve().as_uri())
        name = page.relative_to(report).as_posix()
        assert seen["outside"] == [], f"{name} requested {seen['outside']}"
        assert seen["failed"] == [] and seen["errors"] == [], f"{name}: {seen['failed']} {seen['errors']}"
        assert all(img["ok"] for img in seen["images"]), f"{name}: not shown {[i for i in seen['images'] if not i['ok']]}"
        slug = page.stem
        if page.parent.name == slug:
            assert len(seen["images"]) >= figures[slug] and seen["stylesheets"] >= 1, name


def test_the_browser_guard_catches_a_request_out(chromium, tmp_path):
    """The check above is not vacuous: a page that loads from elsewhere is caught (and aborted)."""
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><html><head><title>x</title></head>'
                    '<body><img src="http://127.0.0.1:9/x.png"></body></html>')
    seen = _visit(chromium, page.as_uri())
    assert any(u.startswith("http://127.0.0.1:9/") for u in seen["outside"])
    assert not seen["images"][0]["ok"]
