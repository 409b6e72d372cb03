"""The claim ledger: every quantitative claim of the six papers, our evidence, and the verdict.

`references/claims/` lists the claims (what each paper says, where it was read, how much
the digest trusts it, and which side of which threshold the claim puts the tested quantity).
Each notebook ends with `write_claims(slug, evidence, out_dir)`: one row per claim, with our
number, its spread and n, the budget and the verdict. `build_ledger` (CLI: `python -m
prunerep.reporting.ledger`) collects the six papers into `results/ledger/ledger.{csv,md}`; the CLI
also draws every paper's runs in one figure, `results/ledger/accuracy_vs_macs.png`.

Verdicts are computed, never typed: an `Evidence` gets its verdict from
`stats.verdict(interval, claim.direction, claim.threshold)`, `claims_table` recomputes it and
rejects a row that disagrees, and the ledger recomputes it again from the interval stored in
each `claims.csv` against the current references/claims/, so a changed threshold cannot leave a stale
verdict behind.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

import pandas as pd
import yaml

from prunerep.io import atomic_write_text
from prunerep.reporting.stats import (
    DIRECTIONS,
    NOT_IMPLEMENTED,
    NOT_RUN,
    VERDICT_RULE,
    VERDICTS,
    Direction,
    Interval,
    verdict,
)

CLAIMS_PATH = Path("references/claims")   # one <slug>.yaml per paper (or one file)
PAPERS: tuple[str, ...] = ("gdp", "wgates", "functionality", "dsa", "dais", "greg")
TRUST_LABELS: tuple[str, ...] = ("PAPER", "CODE", "ABS", "3RD", "UNVERIFIED")
WORDINGS: tuple[str, ...] = ("quoted", "paraphrased")
SOURCE_PREFIXES: tuple[str, ...] = ("abstract", "Table ", "Figure ", "Section ")
NOT_TRANSCRIBED = "not transcribed"

#: Columns of a notebook's claims table (claims.md and the DataFrame a notebook shows).
TABLE_COLUMNS: tuple[str, ...] = (
    "claim", "statement", "source", "our test", "n", "paper value", "ours", "verdict", "budget",
    "note",
)
#: Extra columns of claims.csv: the interval itself, so the ledger can recompute the verdict.
INTERVAL_COLUMNS: tuple[str, ...] = ("mean", "lo", "hi", "level")
#: Columns of results/ledger/ledger.csv.
LEDGER_COLUMNS: tuple[str, ...] = (
    "paper", "claim", "source", "trust", "statement", "our test", "n", "paper value", "ours",
    "verdict", "budget", "profile", "notebook", "note",
)


# ----------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class PaperRef:
    """Where in references/paper_results/ the paper's per-row numbers of a claim are."""

    paper: str
    table: str


@dataclass(frozen=True)
class Claim:
    """One quantitative claim of one paper, as listed in references/claims/."""

    id: str
    paper: str
    source: str
    trust: str
    wording: str
    statement: str
    metric: str
    comparison: str
    direction: Direction
    threshold: float
    paper_value: float | str
    unit: str
    paper_values_from: PaperRef | None = None
    note: str = ""

    @property
    def paper_value_display(self) -> str:
        """The paper's value with its unit, or the text the yaml holds ("not transcribed", ...)."""
        if isinstance(self.paper_value, str):
            return self.paper_value
        v = f"{self.paper_value:g}"
        if self.unit in ("%", "x"):
            return f"{v}{self.unit}"
        return f"{v} {self.unit}"


_REQUIRED = tuple(f.name for f in fields(Claim) if f.name not in ("paper_values_from", "note"))
_OPTIONAL = ("paper_values_from", "note")


def _bad(cid: str, key: str, problem: str, fix: str) -> ValueError:
    return ValueError(f"references/claims: claim {cid!r}, key {key!r}: {problem}; fix: {fix}")


def _parse_claim(entry: Any, index: int) -> Claim:
    """One yaml entry to a Claim, or one ValueError naming the id, the key and the fix."""
    if not isinstance(entry, dict):
        raise ValueError(f"references/claims: entry #{index} is {type(entry).__name__}, not a mapping")
    cid = str(entry.get("id", f"#{index}"))
    unknown = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise _bad(cid, unknown[0], "unknown field",
                   f"remove it or use one of {list(_REQUIRED) + list(_OPTIONAL)}")
    for key in _REQUIRED:
        if key not in entry or entry[key] is None or entry[key] == "":
            raise _bad(cid, key, "missing", "add it (see the field list in references/claims/README.md)")
    for key in ("id", "paper", "source", "trust", "wording", "statement", "metric", "comparison",
                "direction", "unit"):
        if not isinstance(entry[key], str):
            raise _bad(cid, key, f"{entry[key]!r} is not a string", "quote the value")
    if entry["paper"] not in PAPERS:
        raise _bad(cid, "paper", f"{entry['paper']!r} is not a slug", f"use one of {PAPERS}")
    if not cid.startswith(entry["paper"] + ".") or cid == entry["paper"] + ".":
        raise _bad(cid, "id", "does not start with '<paper>.'", f"rename it {entry['paper']}.<name>")
    if entry["direction"] not in DIRECTIONS:
        raise _bad(cid, "direction", f"{entry['direction']!r} is not a direction",
                   f"use one of {DIRECTIONS}")
    if entry["trust"] not in TRUST_LABELS:
        raise _bad(cid, "trust", f"{entry['trust']!r} is not a digest label",
                   f"use one of {TRUST_LABELS}")
    if entry["wording"] not in WORDINGS:
        raise _bad(cid, "wording", f"{entry['wording']!r}", f"use one of {WORDINGS}")
    if not entry["source"].startswith(SOURCE_PREFIXES):
        raise _bad(cid, "source", f"{entry['source']!r} does not say where it was read",
                   f"start it with one of {SOURCE_PREFIXES}")
    thr = entry["threshold"]
    if isinstance(thr, bool) or not isinstance(thr, int | float) or not math.isfinite(thr):
        raise _bad(cid, "threshold", f"{thr!r} is not a finite number", "write a number in `unit`")
    ref = None
    if "paper_values_from" in entry:
        raw = entry["paper_values_from"]
        if not isinstance(raw, dict) or set(raw) != {"paper", "table"}:
            raise _bad(cid, "paper_values_from", f"{raw!r}",
                       'write {paper: <slug>, table: "<table of paper_results.yaml>"}')
        ref = PaperRef(str(raw["paper"]), str(raw["table"]))
    pv = entry["paper_value"]
    if isinstance(pv, bool) or not isinstance(pv, int | float | str):
        raise _bad(cid, "paper_value", f"{pv!r}", f'a number or "{NOT_TRANSCRIBED}"')
    if isinstance(pv, str) and pv != NOT_TRANSCRIBED and ref is None:
        raise _bad(cid, "paper_value", f"text {pv!r} without paper_values_from",
                   f'write a number, "{NOT_TRANSCRIBED}", or add paper_values_from')
    note = entry.get("note", "")
    if not isinstance(note, str):
        raise _bad(cid, "note", f"{note!r} is not a string", "quote the value")
    return Claim(
        id=cid, paper=entry["paper"], source=entry["source"], trust=entry["trust"],
        wording=entry["wording"], statement=entry["statement"].strip(), metric=entry["metric"],
        comparison=entry["comparison"], direction=cast(Direction, entry["direction"]), threshold=float(thr),
        paper_value=pv if isinstance(pv, str) else float(pv), unit=entry["unit"],
        paper_values_from=ref, note=note,
    )


def load_claims(path: str | Path = CLAIMS_PATH) -> dict[str, Claim]:
    """All claims, in yaml order (papers in `PAPERS` order), keyed by id; strict, so a typo fails
    here and not in a notebook.

    `path`: a directory of ``<slug>.yaml`` files, each holding only that paper's claims (a
    paper's stage depends on its own file), or one file holding any.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.yaml"), key=lambda p: (PAPERS.index(p.stem) if p.stem in PAPERS else len(PAPERS),
                                                         p.stem))
        if not files:
            raise FileNotFoundError(f"{path}: no <slug>.yaml claim files")
    else:
        files = [path]
    out: dict[str, Claim] = {}
    for file in files:
        data = yaml.safe_load(file.read_text())
        if not isinstance(data, dict) or set(data) != {"claims"} or not isinstance(data["claims"], list):
            raise ValueError(f"{file}: expected one top-level key `claims:` holding a list")
        for i, entry in enumerate(data["claims"]):
            claim = _parse_claim(entry, i)
            if claim.id in out:
                raise _bad(claim.id, "id", "duplicate", "give each claim its own id")
            if file is not path and claim.paper != file.stem:
                raise _bad(claim.id, "paper", f"{claim.paper!r} in {file}",
                           f"move the claim to {path / (claim.paper + '.yaml')}")
            out[claim.id] = claim
    return out


# ----------------------------------------------------------------------------- evidence


def _n_of(interval: Interval | None) -> int:
    return 0 if interval is None else int(interval.n)


@dataclass(frozen=True)
class Evidence:
    """What we ran for one claim and what came out; several rows may share one claim id."""

    claim_id: str
    test: str
    ours: str
    interval: Interval | None
    n: int
    budget: str
    verdict: str
    note: str = ""

    @classmethod
    def judge(
        cls,
        claim: Claim,
        interval: Interval | None,
        *,
        test: str,
        ours: str | None = None,
        budget: str,
        note: str = "",
    ) -> Evidence:
        """Evidence whose verdict is computed by the one rule; interval=None means not run.

        `ours` defaults to str(interval) (or "—" when not run)."""
        shown = ours if ours is not None else ("—" if interval is None else str(interval))
        return cls(
            claim_id=claim.id, test=test, ours=shown, interval=interval, n=_n_of(interval),
            budget=budget, verdict=verdict(interval, claim.direction, claim.threshold), note=note,
        )


def _resolve_claims(claims: Mapping[str, Claim] | str | Path | None) -> Mapping[str, Claim]:
    if claims is None:
        return load_claims()
    if isinstance(claims, str | Path):
        return load_claims(claims)
    return claims


def _claim_row(claim: Claim) -> dict[str, Any]:
    return {"claim": claim.id, "statement": claim.statement, "source": claim.source,
            "paper value": claim.paper_value_display}


def _full_rows(
    slug: str, evidence: Sequence[Evidence], claims: Mapping[str, Claim]
) -> list[dict[str, Any]]:
    """Table rows plus the interval columns; checks every Evidence against claims.yaml."""
    mine = [c for c in claims.values() if c.paper == slug]
    if slug not in PAPERS or not mine:
        raise ValueError(f"claims_table: no claims for paper {slug!r} in references/claims/ "
                         f"(papers: {sorted({c.paper for c in claims.values()})})")
    by_id: dict[str, list[Evidence]] = {}
    for ev in evidence:
        claim = claims.get(ev.claim_id)
        if claim is None:
            raise ValueError(f"evidence for {ev.claim_id!r}: no such claim in references/claims/; "
                             "add the claim there or fix the id")
        if claim.paper != slug:
            raise ValueError(f"evidence for {ev.claim_id!r} belongs to paper {claim.paper!r}, "
                             f"not {slug!r}; report it in that paper's notebook")
        expected = verdict(ev.interval, claim.direction, claim.threshold)
        if ev.verdict != expected:
            raise ValueError(f"evidence for {ev.claim_id!r}: verdict {ev.verdict!r} but the rule "
                             f"gives {expected!r}; build it with Evidence.judge (verdicts are "
                             "computed, never typed)")
        if ev.n != _n_of(ev.interval):
            raise ValueError(f"evidence for {ev.claim_id!r}: n={ev.n} but the interval has "
                             f"n={_n_of(ev.interval)}; build it with Evidence.judge")
        by_id.setdefault(ev.claim_id, []).append(ev)
    rows: list[dict[str, Any]] = []
    for claim in mine:
        for ev in by_id.get(claim.id, []):
            iv = ev.interval
            rows.append({
                **_claim_row(claim), "our test": ev.test, "n": ev.n, "ours": ev.ours,
                "verdict": ev.verdict, "budget": ev.budget, "note": ev.note,
                "mean": math.nan if iv is None else iv.mean,
                "lo": math.nan if iv is None else iv.lo,
                "hi": math.nan if iv is None else iv.hi,
                "level": math.nan if iv is None else iv.level,
            })
        if claim.id not in by_id:
            rows.append({
                **_claim_row(claim), "our test": "—", "n": 0, "ours": "—", "verdict": NOT_RUN,
                "budget": "—", "note": claim.note,
                "mean": math.nan, "lo": math.nan, "hi": math.nan, "level": math.nan,
            })
    return rows


def claims_table(
    slug: str,
    evidence: Sequence[Evidence],
    claims: Mapping[str, Claim] | str | Path | None = None,
) -> pd.DataFrame:
    """One row per (claim of `slug`, evidence) in yaml order; a claim without evidence is not run."""
    rows = _full_rows(slug, evidence, _resolve_claims(claims))
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def claims_caption(slug: str) -> str:
    """The caption of a notebook's claims table: where the claims come from, and the rule."""
    return (f"Claims of `{slug}` (references/claims/) and our evidence. "
            f"**Verdict rule.** {VERDICT_RULE}")


def write_claims(
    slug: str,
    evidence: Sequence[Evidence],
    out_dir: str | Path,
    claims: Mapping[str, Claim] | str | Path | None = None,
) -> pd.DataFrame:
    """`<out_dir>/claims.csv` (with the intervals) and `claims.md`, atomically; returns the table."""
    rows = _full_rows(slug, evidence, _resolve_claims(claims))
    full = pd.DataFrame(rows, columns=[*TABLE_COLUMNS, *INTERVAL_COLUMNS])
    table = full[list(TABLE_COLUMNS)]
    out = Path(out_dir)
    atomic_write_text(full.to_csv(index=False), out / "claims.csv")
    md = f"{claims_caption(slug)}\n\n{_markdown(table)}\n"
    atomic_write_text(md, out / "claims.md")
    return table


# ----------------------------------------------------------------------------- the ledger


def _cell(value: Any) -> str:
    """A Markdown table cell: text with pipes escaped and newlines folded."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _markdown(df: pd.DataFrame) -> str:
    """A plain pipe table (no tabulate alignment padding, so diffs stay one line per row)."""
    head = "| " + " | ".join(_cell(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def _metrics(results_root: Path, slug: str) -> dict[str, Any]:
    path = results_root / slug / "metrics.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _int(value: Any) -> int:
    x = _float(value)
    return 0 if math.isnan(x) else int(x)


def _recomputed(claim: Claim, row: Mapping[str, Any]) -> tuple[str, str]:
    """(verdict from the stored interval and the current claim, note on any change)."""
    n = _int(row.get("n"))
    mean = _float(row.get("mean"))
    if math.isnan(mean):
        interval = None
    else:
        level = _float(row.get("level"))
        interval = Interval(mean, _float(row.get("lo")), _float(row.get("hi")), n,
                            0.95 if math.isnan(level) else level)
    new = verdict(interval, claim.direction, claim.threshold)
    old = str(row.get("verdict", ""))
    note = "" if old in ("", new) else f"verdict was {old!r} at run time; references/claims/ changed since"
    return new, note


def build_ledger(
    results_root: str | Path = "results",
    claims_path: str | Path = CLAIMS_PATH,
    notebooks_dir: str | Path = "notebooks",
    link_root: str = "results",
) -> pd.DataFrame:
    """Every claim of the six papers, with each paper's evidence from `<slug>/claims.csv`.

    A paper without claims.csv is "not implemented" if it has no notebook, else "not run at
    this budget". `link_root` is the results folder as the links should read (repo-relative)."""
    root = Path(results_root)
    claims = load_claims(claims_path)
    rows: list[dict[str, Any]] = []
    for slug in PAPERS:
        mine = [c for c in claims.values() if c.paper == slug]
        metrics = _metrics(root, slug)
        profile = str(metrics.get("profile", "")) or "—"
        csv = root / slug / "claims.csv"
        if not csv.exists():
            has_nb = (Path(notebooks_dir) / f"{slug}.ipynb").exists()
            for c in mine:
                rows.append({
                    "paper": slug, **_claim_row(c), "trust": c.trust, "our test": "—", "n": 0,
                    "ours": "—", "verdict": NOT_RUN if has_nb else NOT_IMPLEMENTED,
                    "budget": "—", "profile": profile, "notebook": "—", "note": c.note,
                })
            continue
        found = pd.read_csv(csv, dtype=str, keep_default_na=False)
        missing = sorted(set(TABLE_COLUMNS) - set(found.columns))
        if missing:
            raise ValueError(f"{csv}: columns {missing} missing; rerun the `{slug}` notebook, "
                             "which writes it with write_claims")
        link = f"{link_root}/{slug}/{slug}.ipynb"
        seen = set()
        for rec in found.to_dict("records"):
            claim = claims.get(rec["claim"])
            if claim is None or claim.paper != slug:
                raise ValueError(f"{csv}: claim {rec['claim']!r} is not a `{slug}` claim of "
                                 f"{claims_path}; rerun the notebook or restore the id")
            seen.add(claim.id)
            v, change = _recomputed(claim, rec)
            note = "; ".join(x for x in (rec.get("note", ""), change) if x)
            rows.append({
                "paper": slug, **_claim_row(claim), "trust": claim.trust,
                "our test": rec["our test"], "n": _int(rec["n"]),
                "ours": rec["ours"], "verdict": v, "budget": rec["budget"], "profile": profile,
                "notebook": link, "note": note,
            })
        for c in mine:  # claims added to the yaml after this paper's run
            if c.id not in seen:
                rows.append({
                    "paper": slug, **_claim_row(c), "trust": c.trust, "our test": "—", "n": 0,
                    "ours": "—", "verdict": NOT_RUN, "budget": "—", "profile": profile,
                    "notebook": link, "note": "claim added after this run",
                })
    ledger = pd.DataFrame(rows, columns=list(LEDGER_COLUMNS))
    order = {cid: i for i, cid in enumerate(claims)}
    ledger["_paper"] = ledger["paper"].map(PAPERS.index)
    ledger["_claim"] = ledger["claim"].map(order)
    ledger = ledger.sort_values(["_paper", "_claim"], kind="stable")
    return ledger.drop(columns=["_paper", "_claim"]).reset_index(drop=True)


def verdict_counts(ledger: pd.DataFrame) -> pd.DataFrame:
    """Rows per paper and verdict (one column per verdict that occurs, in VERDICTS order)."""
    counts = pd.crosstab(ledger["paper"], ledger["verdict"])
    cols = [v for v in VERDICTS if v in counts.columns]
    counts = counts.reindex(index=[p for p in PAPERS if p in counts.index], columns=cols)
    return counts.reset_index()


def ledger_markdown(ledger: pd.DataFrame) -> str:
    """ledger.md: the rule, the verdict counts per paper, then every row."""
    shown = ledger.drop(columns=["statement"])
    return (
        "# Claim ledger\n\n"
        "Every quantitative claim of the six papers (references/claims/) with our evidence; "
        "generated by `python -m prunerep.reporting.ledger`, do not edit.\n\n"
        f"**Verdict rule.** {VERDICT_RULE}\n\n"
        f"{_markdown(verdict_counts(ledger))}\n\n{_markdown(shown)}\n"
    )


def write_ledger(ledger: pd.DataFrame, out_dir: str | Path) -> None:
    """`ledger.csv` and `ledger.md` in `out_dir`, atomically."""
    out = Path(out_dir)
    atomic_write_text(ledger.to_csv(index=False), out / "ledger.csv")
    atomic_write_text(ledger_markdown(ledger), out / "ledger.md")


FIGURE_NAME = "accuracy_vs_macs"


def _run_name(record: Any) -> str:
    """Legend name of a run in the cross-paper figure: the paper and what ran (label before "@")."""
    return f"{record.slug}: {str(record.label).split('@')[0]}"


def cross_paper_figure(results_root: str | Path = "results") -> Any:
    """Test accuracy against the fraction of dense MACs kept, every paper's runs (each paper's
    `runs.jsonl`), one panel per dense model, the dense checkpoint (pretrain stage) as a star."""
    from prunerep.reporting.figures import accuracy_vs_macs_by_model
    from prunerep.runner.record import read_records

    root = Path(results_root)
    records, profiles = [], {}
    for slug in PAPERS:
        path = root / slug / "runs.jsonl"
        if path.exists():
            mine = read_records(path)
            records += mine
            profiles[slug] = ", ".join(sorted({str(r.provenance.get("profile", "?")) for r in mine}))
    dense = {}
    for model in dict.fromkeys(r.model for r in records):
        metrics = root / "pretrain" / model / "metrics.json"
        if metrics.exists():
            dense[model] = _float(json.loads(metrics.read_text()).get("test_acc"))
    where = "; ".join(f"{slug} at profile {p}" for slug, p in profiles.items()) or "no paper's runs yet"
    return accuracy_vs_macs_by_model(records, f"Test accuracy vs MACs kept, every paper's runs ({where}); "
                                     "mean over seeds", dense=dense, name=_run_name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prunerep.reporting.ledger",
                                     description="Collect every paper's claims.csv into the ledger.")
    parser.add_argument("--results", default="results", help="results folder (default: results)")
    parser.add_argument("--out", default=None, help="output folder (default: <results>/ledger)")
    parser.add_argument("--claims", default=str(CLAIMS_PATH), help="references/claims/ (one <slug>.yaml per paper) or one file")
    parser.add_argument("--notebooks", default="notebooks", help="source notebooks folder")
    args = parser.parse_args(argv)
    ledger = build_ledger(args.results, args.claims, args.notebooks)
    out = Path(args.out) if args.out else Path(args.results) / "ledger"
    write_ledger(ledger, out)
    from prunerep.reporting.tables import save_figure

    save_figure(cross_paper_figure(args.results), out, FIGURE_NAME)
    print(f"{out}/ledger.csv, ledger.md: {len(ledger)} rows; {out}/{FIGURE_NAME}.png")
    print(verdict_counts(ledger).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
