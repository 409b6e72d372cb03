"""The report's own pages: the index (every paper's claims, verdicts and notebook) and the ledger.

Both are plain HTML with a small inline stylesheet and no script. Every value comes from
`results/ledger/ledger.csv` (the index) or `ledger.md` (the ledger page) and is escaped; nothing
is typed here but headings and the explanation of what the page shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

#: Verdicts in the order the summary shows them; others follow in order of appearance.
VERDICT_ORDER = ("supported", "not supported", "inconclusive (within noise)",
                 "fewer than 3 seeds: no verdict", "not run at this budget", "not implemented")
NOT_RUN = "not run"
GENERATOR = '<meta name="generator" content="prunerep.report">'

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
  max-width: 1400px; padding: 16px 24px; color: #1b1b1b; line-height: 1.4; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; }
th { background: #f2f2f2; }
td.num { text-align: right; }
code { background: #f4f4f4; padding: 0 3px; }
.v-supported { background: #dff3e0; }
.v-not-supported { background: #f8dcdc; }
.v-inconclusive { background: #fdf1cf; }
.v-none { color: #666; }
.not-run { color: #a33; font-weight: 600; }
nav.toc a { margin-right: 12px; }
img { max-width: 100%; }
details { margin: 4px 0 8px; font-size: 14px; }
"""


@dataclass(frozen=True)
class NotebookEntry:
    """One executed notebook's place in the report (`page` is None when it was not run)."""

    slug: str
    source: str                 # repository-relative path of the executed notebook
    page: str | None = None     # the rendered page, relative to the report folder
    anchor: str | None = None   # the verdict heading's id on that page, if it has one
    figures: int = 0
    title: str = ""             # the notebook's own title (its first level-1 heading)


def page(title: str, body: str) -> str:
    """A whole HTML document: `body` under a heading-free page frame titled `title`."""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n{GENERATOR}\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1.0">\n'
            f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n"
            f"</body>\n</html>\n")


def verdict_class(verdict: str) -> str:
    """The CSS class that colours a verdict cell."""
    if verdict == "supported":
        return "v-supported"
    if verdict == "not supported":
        return "v-not-supported"
    if verdict.startswith("inconclusive"):
        return "v-inconclusive"
    return "v-none"


def verdict_columns(rows: Sequence[Mapping[str, str]]) -> list[str]:
    """The verdicts present in the ledger, known ones first in `VERDICT_ORDER`."""
    seen = list(dict.fromkeys(r["verdict"] for r in rows))
    return [v for v in VERDICT_ORDER if v in seen] + [v for v in seen if v not in VERDICT_ORDER]


def _unique(rows: Sequence[Mapping[str, str]], column: str) -> list[str]:
    values = (str(r.get(column) or "").strip() for r in rows)
    return list(dict.fromkeys(v for v in values if v and v != "—"))


def _figures(n: int) -> str:
    return f"{n} figure" if n == 1 else f"{n} figures"


def _notebook_link(entry: NotebookEntry | None, label: str | None = None) -> str:
    if entry is None or entry.page is None:
        return f'<span class="not-run">{NOT_RUN}</span>'
    href = entry.page + (f"#{entry.anchor}" if entry.anchor else "")
    return f'<a href="{escape(href)}">{escape(label or entry.slug + ".ipynb")}</a>'


def _row_notebook(row: Mapping[str, str], paper: NotebookEntry | None,
                  notebooks: Mapping[str, NotebookEntry]) -> NotebookEntry | None:
    """The notebook a ledger row names (its `notebook` column), else its paper's own."""
    named = str(row.get("notebook") or "").strip()
    if named.endswith(".ipynb"):
        stem = named.rsplit("/", 1)[-1].removesuffix(".ipynb")
        if stem in notebooks and notebooks[stem].page is not None:
            return notebooks[stem]
    return paper


def _claims_table(rows: Sequence[Mapping[str, str]], paper: NotebookEntry | None,
                  notebooks: Mapping[str, NotebookEntry]) -> str:
    head = ("claim", "the paper says", "our test", "n", "paper value", "ours", "verdict", "notebook")
    out = ["<table class=\"claims\">", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in rows:
        verdict = r["verdict"]
        out.append(
            f'<tr data-claim="{escape(r["claim"])}"><td><code>{escape(r["claim"])}</code></td>'
            f'<td>{escape(r["statement"])}</td><td>{escape(r["our test"])}</td>'
            f'<td class="num">{escape(r["n"])}</td><td>{escape(r["paper value"])}</td>'
            f'<td>{escape(r["ours"])}</td>'
            f'<td class="verdict {verdict_class(verdict)}">{escape(verdict)}</td>'
            f"<td>{_notebook_link(_row_notebook(r, paper, notebooks))}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def index_page(rows: Sequence[Mapping[str, str]], papers: Sequence[str],
               notebooks: Mapping[str, NotebookEntry], others: Sequence[str],
               ledger_figures: Sequence[str], results_label: str) -> str:
    """The report's front page.

    Args:
        rows: the ledger's rows (results/ledger/ledger.csv), in its order.
        papers: the papers of the ledger, in its order.
        notebooks: every notebook slot (papers and `others`), rendered or not.
        others: the notebooks that are not papers (baseline, compare, ...), in the order shown.
        ledger_figures: the ledger's figures, relative to the report folder.
        results_label: how the page names the results folder it was built from.
    """
    columns = verdict_columns(rows)
    by_paper = {p: [r for r in rows if r["paper"] == p] for p in papers}
    profiles = _unique(rows, "profile")
    parts = [
        "<h1>prunerep: results report</h1>",
        f"<p>Built by <code>python -m prunerep.report</code> from <code>{escape(results_label)}/</code>"
        + (f" (profile {', '.join(f'<code>{escape(p)}</code>' for p in profiles)})" if profiles else "")
        + ". Every claim of the papers with our test and its verdict (from the claim ledger), and "
        "every executed notebook as a static page. The report loads nothing from the internet: "
        "figures are embedded in the pages; links to papers and code open only when clicked.</p>",
        '<nav class="toc">' + "".join(f'<a href="#paper-{escape(p)}">{escape(p)}</a>' for p in papers)
        + '<a href="#notebooks">other notebooks</a><a href="#ledger">claim ledger</a></nav>',
        '<h2 id="claims">Claims and verdicts</h2>',
        "<p>Claims per verdict, and each paper's executed notebook (<em>not run</em>: the "
        "notebook is not in the results folder, so its stage has not run at this profile).</p>",
        '<table class="summary"><tr><th>paper</th><th>notebook</th>'
        + "".join(f"<th>{escape(v)}</th>" for v in columns) + "</tr>",
    ]
    for p in papers:
        counts = [sum(1 for r in by_paper[p] if r["verdict"] == v) for v in columns]
        parts.append(f'<tr data-paper="{escape(p)}"><td><a href="#paper-{escape(p)}">{escape(p)}</a></td>'
                     f"<td>{_notebook_link(notebooks.get(p))}</td>"
                     + "".join(f'<td class="num">{c}</td>' for c in counts) + "</tr>")
    parts.append("</table>")
    for p in papers:
        entry = notebooks.get(p)
        parts.append(f'<section class="paper" id="paper-{escape(p)}" data-paper="{escape(p)}">')
        title = f": {escape(entry.title)}" if entry is not None and entry.title else ""
        parts.append(f"<h3>{escape(p)}{title}</h3>")
        if entry is not None and entry.page is not None:
            parts.append(f"<p>Executed notebook: {_notebook_link(entry)} "
                         f"(<code>{escape(entry.source)}</code>, {_figures(entry.figures)}).</p>")
        else:
            source = entry.source if entry is not None else f"{results_label}/{p}/{p}.ipynb"
            parts.append(f'<p class="not-run">Notebook: {NOT_RUN} (no <code>{escape(source)}</code>; '
                         f"<code>dvc repro {escape(p)}</code> makes it).</p>")
        for budget in _unique(by_paper[p], "budget"):
            parts.append(f"<details><summary>budget</summary>{escape(budget)}</details>")
        parts.append(_claims_table(by_paper[p], entry, notebooks))
        parts.append("</section>")
    parts.append('<h2 id="notebooks">Other notebooks</h2>')
    parts.append("<table><tr><th>notebook</th><th>status</th></tr>")
    for slug in others:
        entry = notebooks.get(slug)
        if entry is not None and entry.page is not None:
            name = _notebook_link(entry, slug) + (f" ({escape(entry.title)})" if entry.title else "")
            status = f"executed, {_figures(entry.figures)} (<code>{escape(entry.source)}</code>)"
        else:
            name = f"<code>{escape(slug)}</code>"
            status = (f'<span class="not-run">{NOT_RUN}</span>: <code>dvc repro {escape(slug)}</code> '
                      f"makes it")
        parts.append(f'<tr data-notebook="{escape(slug)}"><td>{name}</td><td>{status}</td></tr>')
    parts.append("</table>")
    parts.append('<h2 id="ledger">Claim ledger</h2>')
    parts.append('<p>The whole ledger, with every column (source, trust, budget, note): '
                 '<a href="ledger.html">ledger page</a> · <a href="ledger/ledger.csv">ledger.csv</a>.</p>')
    for fig in ledger_figures:
        parts.append(f'<figure><img src="{escape(fig)}" alt="{escape(fig)}"></figure>')
    return page("prunerep report", "\n".join(parts))


def ledger_page(markdown_html: str | None, table_html: str, ledger_figures: Sequence[str]) -> str:
    """The claim ledger as a page: `ledger.md` rendered when there is one, else the CSV as a table."""
    body = ['<p><a href="index.html">&larr; report index</a> · <a href="ledger/ledger.csv">ledger.csv</a></p>']
    body.append(markdown_html if markdown_html is not None else f"<h1>Claim ledger</h1>\n{table_html}")
    for fig in ledger_figures:
        body.append(f'<figure><img src="{escape(fig)}" alt="{escape(fig)}"></figure>')
    return page("prunerep claim ledger", "\n".join(body))


def csv_table(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> str:
    """Rows as an HTML table with the given columns (every value escaped)."""
    out = ["<table>", "<tr>" + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{escape(str(r.get(c) or ''))}</td>" for c in columns) + "</tr>" for r in rows]
    out.append("</table>")
    return "\n".join(out)
