"""The README's results section, generated from the committed outputs.

Numbers typed into a README drift from the runs that produced them; this module renders the
section between `<!-- results:begin -->` and `<!-- results:end -->` from `results/ledger/ledger.csv`,
each paper's `results/<slug>/metrics.json` (its "profile" and, if present, "budget") and the
comparison's `results/compare/tables/comparison.csv` (all methods on one budget), and
`tests/unit/test_readme_results.py` fails when the committed README differs from that rendering.

Only files tracked by git count as "committed outputs": a local `dvc repro` leaves untracked
results behind, and a README rendered from them would fail on a fresh clone. `tracked_view`
copies the tracked files into a scratch folder that `render_results` then reads.

It is a top-level module, not part of `prunerep.reporting` (every paper stage depends on
`reporting/`) nor of `prunerep.report` (the report stage's package imports only itself): no stage
runs it, so an edit to the README's layout makes no committed result stale.

CLI: `python -m prunerep.readme` rewrites the section; `--check` exits 1 if it is stale.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from prunerep.io import atomic_write_text
from prunerep.reporting.ledger import PAPERS
from prunerep.reporting.stats import VERDICT_RULE

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"
LINK_ROOT = "results"  # links in the README are repo-relative, whatever folder was read
COMMAND = "`dvc repro <stage>` (all stages: `python3 run.py repro`)"
TABLE_COLUMNS = ("paper", "claim", "our test", "n", "paper value", "ours", "verdict", "notebook")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _paper_runs(root: Path) -> list[tuple[str, str, str]]:
    """(slug, profile, budget) for each paper whose metrics.json is present."""
    out = []
    for slug in PAPERS:
        path = root / slug / "metrics.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            continue
        budget = data.get("budget")
        out.append((slug, str(data.get("profile", "unknown")),
                    budget if isinstance(budget, str) else ""))
    return out


def _rule() -> str:
    return f"**Verdict rule.** {VERDICT_RULE}"


#: What a verdict says and does not say (the word "reproduced" is never used bare).
MEANING = (
    "*Supported* means the effect lies on the side of the threshold the paper claims (for a gain: "
    "the same sign, a gain larger than zero), at our budget; it does not mean the paper's size of "
    "effect was reproduced: compare *paper value* (the paper's own number, on its budget, shown "
    "only where it was transcribed) with *ours*."
)
FIGURE = "ledger/accuracy_vs_macs.png"
COMPARISON = "compare/tables/comparison.csv"
COMPARISON_CAPTION = "compare/tables/comparison.md"
COMPARISON_FIGURE = "compare/figures/accuracy_vs_macs.png"


def _leading_float(text: str) -> float:
    """72.50 from "72.50 ± 0.61 (n=3)"; NaN when the cell holds no number."""
    try:
        return float(str(text).split()[0])
    except (ValueError, IndexError):
        return math.nan


def _comparison_budget(root: Path) -> str:
    """The budget sentence of the comparison table's caption ("Profile `...`: ..."), or ""."""
    path = root / COMPARISON_CAPTION
    if not path.exists():
        return ""
    caption = path.read_text().split("\n\n", 1)[0]
    start = caption.find("Profile `")
    if start < 0:
        return ""
    return caption[start:].split(" Same for every row")[0].strip()


def render_comparison(results_root: str | Path = "results") -> list[str]:
    """The comparison's lines: one row per method, test accuracy and the paired difference to L1
    (with its verdict) at each MACs target, best first at the middle target; [] without results."""
    root = Path(results_root)
    path = root / COMPARISON
    table = _read_table(path)
    if table is None:
        return []
    need = {"MACs target", "method", "what ran", "test acc (%)", "− L1-norm (points, 95% CI)",
            "better than L1-norm?"}
    missing = sorted(need - set(table.columns))
    if missing:
        raise ValueError(f"{path}: columns {missing} missing; rerun `dvc repro compare`")
    targets = sorted(dict.fromkeys(table["MACs target"]), key=float, reverse=True)
    middle = targets[len(targets) // 2]
    rows: dict[str, dict[str, str]] = {}
    for rec in table.to_dict("records"):
        row = rows.setdefault(rec["method"], {"what ran": rec["what ran"]})
        target = rec["MACs target"]
        row[f"acc {target}"] = rec["test acc (%)"]
        diff, verdict = (rec[c].strip(" —") for c in ("− L1-norm (points, 95% CI)",
                                                       "better than L1-norm?"))
        row[f"l1 {target}"] = ", ".join(x for x in (diff, verdict) if x) or "—"
    def rank(method: str) -> tuple[bool, float]:  # methods without a number at `middle` last
        acc = _leading_float(rows[method].get(f"acc {middle}", ""))
        return (math.isnan(acc), -acc if not math.isnan(acc) else 0.0)

    order = sorted(rows, key=rank)
    header = ["method", "what ran"]
    for t in targets:
        header += [f"keep {t}: test acc (%)", f"keep {t}: − L1 (points, 95% CI), better?"]
    lines = [
        "### The six methods on one budget",
        "",
        "Every registered method pruning the same dense checkpoint to the same MACs targets, with the "
        "same fine-tuning and selection rule (the `compare` stage). Best first at keep "
        f"{middle}; \"− L1\" is paired by seed and judged by the rule above.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for method in order:
        row = rows[method]
        cells = [method, row["what ran"]]
        for t in targets:
            cells += [row.get(f"acc {t}", "—"), row.get(f"l1 {t}", "—")]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines.append("")
    if (root / COMPARISON_FIGURE).exists():
        lines += [f"![Test accuracy against the fraction of dense MACs kept, every method]"
                  f"({LINK_ROOT}/{COMPARISON_FIGURE})", ""]
    budget = _comparison_budget(root)
    lines.append(f"From `{LINK_ROOT}/{COMPARISON}`" + (f" ({budget})" if budget else "") +
                 f"; latency, pruning time, the difference to random channels and the width "
                 f"profiles are in [compare.ipynb]({LINK_ROOT}/compare/compare.ipynb); "
                 "produced by `dvc repro compare`.")
    return [*lines, "", *render_rounding(root), *render_equal_latency(root)]


ROUNDING = "compare/tables/rounding.csv"
EQUAL_LATENCY = "compare/tables/equal_latency.csv"


def _read_table(path: Path) -> pd.DataFrame | None:
    """A table the compare stage wrote, as text; None when it is absent or has no row (the
    stage ran no such arm)."""
    if not path.exists():
        return None
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    return None if table.empty else table


def _markdown(table: pd.DataFrame, shown: Sequence[str]) -> list[str]:
    """`table`'s `shown` columns as markdown rows, header first."""
    return ["| " + " | ".join(shown) + " |", "|" + "|".join("---" for _ in shown) + "|",
            *("| " + " | ".join(_cell(rec[c]) for c in shown) + " |" for rec in table.to_dict("records"))]


def render_equal_latency(root: Path) -> list[str]:
    """The comparison's latency arm (W-Gates in latency mode at L1's measured latency): per MACs
    target, both accuracies, both measured latencies, whether they are equal and the verdict;
    [] when the stage ran no arm."""
    table = _read_table(root / EQUAL_LATENCY)
    if table is None:
        return []
    shown = [c for c in table.columns
             if c not in ("set from L1's measured ratios", "rounds", "what ran", "n") and not c.startswith("_")]
    name = table["what ran"].iloc[0]
    return [f"**W-Gates at L1's measured latency** ({name}; its latency target set from L1's measured "
            "latency, run again at a new target when it missed; a verdict only where both measure the same latency):", "",
            *_markdown(table, shown), "",
            f"From `{LINK_ROOT}/{EQUAL_LATENCY}` (the rounds and how each target was set are in "
            f"[compare.ipynb]({LINK_ROOT}/compare/compare.ipynb)).", ""]


def render_rounding(root: Path) -> list[str]:
    """The rounded arms of the comparison (widths rounded down to multiples for the hardware):
    MACs, measured latency and accuracy as pruned → rounded; [] when the stage ran none."""
    table = _read_table(root / ROUNDING)
    if table is None:
        return []
    multiple, target = table["rounded to"].iloc[0], table["MACs target"].iloc[0]
    shown = [c for c in table.columns if c not in ("MACs target", "rounded to", "n")]
    return [f"**Widths rounded down to multiples of {multiple}** (keep {target}; every method as pruned → "
            "rounded, then the same fine-tuning; the channels with the smallest filter L1 norm go):", "",
            *_markdown(table, shown), "", f"From `{LINK_ROOT}/{ROUNDING}`.", ""]


def render_results(results_root: str | Path = "results") -> str:
    """The generated section (without the markers): the table of every claim first, then what a
    verdict means, the rule, the cross-paper figure (if the ledger stage drew it), provenance."""
    root = Path(results_root)
    ledger_csv = root / "ledger" / "ledger.csv"
    head = ("## Results\n\n"
            "<!-- generated by `python -m prunerep.readme` from the committed "
            "results/; do not edit by hand -->\n\n")
    if not ledger_csv.exists():
        return (head +
                "No results are committed yet. To produce them, run every study and the ledger "
                f"with {COMMAND}, which writes `results/ledger/ledger.csv`, commit the outputs, "
                "then regenerate this section with `python -m prunerep.readme`.\n\n"
                f"{_rule()}\n")
    ledger = pd.read_csv(ledger_csv, dtype=str, keep_default_na=False)
    missing = sorted(set(TABLE_COLUMNS) - set(ledger.columns))
    if missing:
        raise ValueError(f"{ledger_csv}: columns {missing} missing; rebuild it with "
                         "`python -m prunerep.reporting.ledger`")
    parts = []
    for slug, profile, budget in _paper_runs(root):
        if not budget:  # fall back to the budgets the paper's rows name
            rows = ledger[ledger["paper"] == slug]["budget"]
            budget = "; ".join(dict.fromkeys(b for b in rows if b and b != "—"))
        parts.append(f"`{slug}`: profile `{profile}`" + (f", budget: {budget}" if budget else ""))
    provenance = "; ".join(parts) if parts else "no paper's metrics.json is committed"
    lines = [
        head.rstrip("\n"),
        "",
        "Every claim of the six papers (`references/claims/`), our test of it, and the verdict; "
        "each row links the executed notebook that computed it.",
        "",
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|",
    ]
    for rec in ledger.to_dict("records"):
        cells = []
        for col in TABLE_COLUMNS:
            value = rec[col]
            if col == "notebook" and value and value != "—":
                slug = rec["paper"]
                value = f"[{slug}.ipynb]({LINK_ROOT}/{slug}/{slug}.ipynb)"
            cells.append(_cell(value))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", MEANING, "", _rule(), ""]
    if (root / FIGURE).exists():
        lines += [f"![Test accuracy against the fraction of dense MACs kept, every paper's runs]"
                  f"({LINK_ROOT}/{FIGURE})", "",
                  "Every paper's runs: test accuracy against the fraction of the dense MACs kept, "
                  "one panel per dense model (mean over seeds, ± std where n > 1; the star is the "
                  "dense checkpoint). Drawn by the `ledger` stage from each paper's `runs.jsonl`.",
                  ""]
    lines.append(f"Numbers from `results/ledger/ledger.csv` ({provenance}), produced by {COMMAND} "
                 "and `python -m prunerep.reporting.ledger`.")
    comparison = render_comparison(root)
    if comparison:
        lines += ["", *comparison[:-1]]
    return "\n".join(lines) + "\n"


def _split(text: str, path: str | Path) -> tuple[str, str, str]:
    """(before BEGIN, between, from END on), or a ValueError saying how to add the markers."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(
            f"{path}: needs exactly one {BEGIN} followed by one {END}; add both on their own "
            "lines where the results section belongs"
        )
    i = text.index(BEGIN) + len(BEGIN)
    j = text.index(END)
    return text[:i], text[i:j], text[j:]


def rendered_readme(path: str | Path = "README.md", results_root: str | Path = "results") -> str:
    """The README's text with the section replaced by `render_results(results_root)`."""
    before, _, after = _split(Path(path).read_text(), path)
    return f"{before}\n{render_results(results_root)}{after}"


def update_readme(path: str | Path = "README.md", results_root: str | Path = "results") -> bool:
    """Rewrite the section in place; True if the file changed."""
    old = Path(path).read_text()
    new = rendered_readme(path, results_root)
    if new == old:
        return False
    atomic_write_text(new, path)
    return True


def tracked_view(results_root: str | Path, dest: str | Path) -> Path:
    """Copy the git-tracked files under `results_root` into `dest`; return the copy's results root.

    Outside a git work tree, or without git, the folder itself is returned (nothing to filter)."""
    root = Path(results_root).resolve()
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root.parent,
                             capture_output=True, text=True, check=True).stdout.strip()
        listed = subprocess.run(["git", "ls-files", "-z", "--", str(root)], cwd=top,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return Path(results_root)
    out = Path(dest) / "results"
    out.mkdir(parents=True, exist_ok=True)
    for rel in filter(None, listed.split("\0")):
        src = Path(top) / rel
        if not src.is_file():  # tracked but deleted in the work tree
            continue
        target = out / src.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prunerep.readme",
                                     description="Regenerate the README's results section.")
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--results", default="results")
    parser.add_argument("--check", action="store_true", help="exit 1 if the section is stale")
    parser.add_argument("--untracked", action="store_true",
                        help="read every file under --results, not only the git-tracked ones")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.results) if args.untracked else tracked_view(args.results, tmp)
        if args.check:
            old = Path(args.readme).read_text()
            new = rendered_readme(args.readme, root)
            if old == new:
                print(f"{args.readme}: results section up to date")
                return 0
            diff = difflib.unified_diff(old.splitlines(), new.splitlines(), args.readme,
                                        "rendered", lineterm="", n=1)
            print("\n".join(list(diff)[:40]))
            print(f"{args.readme}: results section is stale; run `python -m "
                  "prunerep.readme` (after `git add` of the results) and commit it",
                  file=sys.stderr)
            return 1
        changed = update_readme(args.readme, root)
    print(f"{args.readme}: {'rewritten' if changed else 'unchanged'} (read "
          f"{'all' if args.untracked else 'git-tracked'} files under {args.results})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
