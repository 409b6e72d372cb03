"""One executed notebook -> one static HTML page that loads nothing from the internet.

nbconvert's `lab` template, with the blocks that would load code from a CDN left empty:
require.js, the Jupyter widgets manager, MathJax and mermaid.js. Figures are the PNGs the
notebooks already hold, embedded as data URIs; the notebooks hold no LaTeX or mermaid
diagrams (were one added, it would show as its source text). The template's large stylesheets
are moved out of every page into one shared file per stylesheet (`static/<digest>.css`), so
the pages stay small and the report holds each stylesheet once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from prunerep.report.errors import ReportError

_TEMPLATE_NAME = "prunerep_offline.html.j2"
#: nbconvert's lab page without anything fetched from a CDN, and with a way back to the index.
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_css -%}
<meta name="generator" content="prunerep.report">
<style type="text/css">
nav.prunerep-nav { font-family: var(--jp-ui-font-family); font-size: 14px; padding: 8px 16px;
  border-bottom: 1px solid var(--jp-border-color2); margin-bottom: 8px; }
nav.prunerep-nav a { color: #0645ad; text-decoration: underline; }
.prunerep-external { color: #a33; font-style: italic; }
</style>
{%- endblock html_head_css -%}
{%- block body_header -%}
{{ super() }}
<nav class="prunerep-nav"><a href="{{ resources.prunerep_root }}index.html">&larr; report index</a>
 &middot; <a href="{{ resources.prunerep_root }}ledger.html">claim ledger</a>
 &middot; executed notebook <code>{{ resources.prunerep_source }}</code></nav>
{%- endblock body_header -%}
"""
_HEAD_STYLE = re.compile(r'<style type="text/css">(.*?)</style>', re.DOTALL)
#: Stylesheets shorter than this stay inline (the page's own few rules).
_SHARED_MIN = 2048


@dataclass
class Rendered:
    """A notebook page: its HTML, the shared stylesheets it links (name -> text), figure count."""

    html: str
    stylesheets: dict[str, str] = field(default_factory=dict)
    figures: int = 0
    title: str = ""


@cache
def _exporter() -> Any:
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", theme="light",
                        extra_loaders=[DictLoader({_TEMPLATE_NAME: _TEMPLATE})],
                        template_file=_TEMPLATE_NAME)


def read_notebook(path: Path, slug: str) -> Any:
    """The notebook at `path`, validated; a `ReportError` naming the file and the fix otherwise."""
    import nbformat

    fix = (f"Fix: re-run its stage (`dvc repro {slug}`), or restore the committed copy "
           f"(`git checkout -- {path}`).")
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # NotJSONError, ValidationError, UnicodeDecodeError, KeyError ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ReportError(f"{path}: not a readable notebook ({type(err).__name__}: {reason[:200]}). {fix}") from err
    return nb


def count_figures(nb: Any) -> int:
    """Outputs of the notebook that hold an image (PNG, JPEG or SVG)."""
    return sum(1 for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
               if any(m in out.get("data", {}) for m in ("image/png", "image/jpeg", "image/svg+xml")))


def notebook_title(nb: Any) -> str:
    """The first level-1 heading of the notebook's markdown ("" when it has none)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def _share_styles(html: str, root: str) -> tuple[str, dict[str, str]]:
    """Move the head's large `<style>` blocks to `static/<digest>.css` files linked from the page."""
    head, sep, body = html.partition("</head>")
    if not sep:
        return html, {}
    sheets: dict[str, str] = {}

    def link(match: re.Match[str]) -> str:
        css = match.group(1)
        if len(css) < _SHARED_MIN:
            return match.group(0)
        name = f"static/{hashlib.sha256(css.encode()).hexdigest()[:16]}.css"
        sheets[name] = css
        return f'<link rel="stylesheet" href="{root}{name}">'

    return _HEAD_STYLE.sub(link, head) + sep + body, sheets


def render_notebook(path: Path, slug: str, source_label: str, root: str = "../") -> Rendered:
    """Render the executed notebook at `path` as a page that sits `root` below the report's index.

    Args:
        path: the executed notebook (results/<slug>/<slug>.ipynb).
        slug: the stage that wrote it (named in error messages).
        source_label: how the page names the notebook it shows (a repository-relative path).
        root: the relative URL of the report folder, seen from the page.
    """
    nb = read_notebook(path, slug)
    try:
        html, _ = _exporter().from_notebook_node(
            nb, resources={"metadata": {"name": slug}, "prunerep_root": root,
                           "prunerep_source": source_label})
    except Exception as err:
        raise ReportError(f"{path}: nbconvert could not render it ({type(err).__name__}: {err}). "
                          f"Fix: re-run its stage (`dvc repro {slug}`) and check the notebook opens in "
                          f"JupyterLab.") from err
    html, sheets = _share_styles(html, root)
    return Rendered(html=html, stylesheets=sheets, figures=count_figures(nb), title=notebook_title(nb))
