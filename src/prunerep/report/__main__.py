"""CLI: `python -m prunerep.report [--results results] [--out results/report]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from prunerep.report.build import build_report
from prunerep.report.errors import ReportError


def main(argv: Sequence[str] | None = None) -> int:
    """Build the report; print what was written, or one line naming the bad input and the fix."""
    parser = argparse.ArgumentParser(
        prog="python -m prunerep.report",
        description="Render the executed notebooks, the claim ledger and an index to offline HTML.")
    parser.add_argument("--results", default="results", help="results folder (default: results)")
    parser.add_argument("--out", default=None, help="report folder (default: <results>/report)")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.results) / "report"
    try:
        summary = build_report(args.results, out)
    except ReportError as err:
        print(f"prunerep.report: error: {err}", file=sys.stderr)
        return 2
    for line in summary.removed:
        print(f"prunerep.report: removed an element that would load from the internet: {line}",
              file=sys.stderr)
    print(f"{out}/index.html: {summary.pages} pages, {summary.figures} figures from "
          f"{len(summary.rendered)} notebooks ({', '.join(summary.rendered) or 'none'}); "
          f"not run: {', '.join(summary.not_run) or 'none'}; {summary.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
