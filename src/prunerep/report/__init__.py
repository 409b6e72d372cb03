"""The offline HTML report (issue #19, item 3): `python -m prunerep.report`.

Renders every executed notebook under `results/<slug>/<slug>.ipynb` (the papers, the baseline,
the comparison when it exists) to static HTML with nbconvert, with the claim ledger and an index
page that links each paper's claims to their verdicts and notebooks, into `results/report/`.
Nothing in it is fetched from the internet: no script at all, figures embedded as data URIs,
stylesheets local. A paper or notebook without results shows as "not run", never dropped.

This package sits beside `prunerep.reporting` rather than inside it: every paper stage depends on
`reporting/`, and the report must not make their committed results stale.
"""

from __future__ import annotations

from prunerep.report.build import (
           OTHER_NOTEBOOKS,
           ReportSummary,
           build_report,
           find_notebooks,
           read_ledger,
           verify,
)
from prunerep.report.errors import ReportError

__all__ = ["OTHER_NOTEBOOKS", "ReportError", "ReportSummary", "build_report", "find_notebooks",
           "read_ledger", "verify"]
