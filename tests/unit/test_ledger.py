"""The claim ledger: claims.yaml's content and validation, Evidence, claim tables, the ledger."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from prunerep.reporting import ledger as L
from prunerep.reporting.ledger import (
    Evidence,
    build_ledger,
    claims_table,
    load_claims,
    write_claims,
)
from prunerep.reporting.paper import load_paper_results
from prunerep.reporting.stats import (
    FEW_SEEDS,
    INCONCLUSIVE,
    NOT_IMPLEMENTED,
    NOT_RUN,
    NOT_SUPPORTED,
    SUPPORTED,
    VERDICT_RULE,
    Interval,
    mean_interval,
)

REPO = Path(__file__).resolve().parents[2]
CLAIMS = REPO / "references" / "claims"
PAPER_RESULTS = REPO / "references" / "paper_results"

# Ids the studies emit evidence for: renaming one breaks a notebook.
STUDY_IDS = {
    "gdp.polarization": ("at_most", 0.01), "gdp.no_damage": ("at_most", 1e-4),
    "gdp.acc_vs_l1": ("at_least", 0.0), "gdp.acc_vs_slimming": ("at_least", 0.0),
    "gdp.stability": ("less", 0.0), "dsa.learned_vs_uniform": ("greater", 0.0),
    "dsa.pruning_time": ("at_least", 1.5), "dsa.budget_met": ("at_most", 0.01),
    "greg.table1_gain": ("greater", 0.0), "greg.table2_greg1_vs_l1": ("greater", 0.0),
    "greg.figure1_std_rises": ("greater", 0.0),
}


def _entry(cid: str = "greg.a", **over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": cid, "paper": cid.split(".")[0], "source": "abstract", "trust": "ABS",
        "wording": "quoted", "statement": "A beats B", "metric": "acc", "comparison": "A - B",
        "direction": "greater", "threshold": 0.0, "paper_value": "not transcribed",
        "unit": "points",
    }
    base.update(over)
    return base


def _write(tmp: Path, entries: list[dict[str, object]], name: str = "claims.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump({"claims": entries}, sort_keys=False))
    return path


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """Two greg claims, one gdp claim (order matters: tables follow yaml order)."""
    return _write(tmp_path, [
        _entry("greg.b", direction="greater"),
        _entry("greg.a", direction="at_most", threshold=1.0, paper_value=0.5, unit="%"),
        _entry("gdp.z"),
    ])


# ----------------------------------------------------------------------------- the real file


def test_committed_claims_load_and_cover_the_six_papers() -> None:
    claims = load_claims(CLAIMS)
    assert {c.paper for c in claims.values()} == set(L.PAPERS)
    for cid, (direction, threshold) in STUDY_IDS.items():
        assert claims[cid].direction == direction, cid
        assert claims[cid].threshold == threshold, cid


def test_committed_paper_values_agree_with_paper_results() -> None:
    claims = load_claims(CLAIMS)
    rows = load_paper_results(PAPER_RESULTS)
    tables = {(r["paper"], r["table"]) for r in rows}
    for c in claims.values():
        if c.paper_values_from is not None:
            assert (c.paper_values_from.paper, c.paper_values_from.table) in tables, c.id

    def acc(row: str) -> float:
        (v,) = [r["value"] for r in rows if r["table"] == "Table 1" and r["row"] == row
                and r["metric"] == "test_acc_mean"]
        return float(v)

    # The quoted Table 1 gains are GReg-1 minus L1 of the transcribed means.
    text = str(claims["greg.table1_gain"].paper_value)
    gains = [float(g) for g in re.findall(r"\+(\d+\.\d+)", text)]
    for r, gain in zip(("0.9", "0.925", "0.95"), gains, strict=True):
        assert acc(f"GReg-1 r={r}") - acc(f"L1 r={r}") == pytest.approx(gain, abs=1e-9)
    t = [r["value"] for r in rows if r["paper"] == "dsa" and r["metric"] == "time_speedup_min"]
    assert claims["dsa.pruning_time"].paper_value == t[0] == 1.5


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("entry", "key", "fix"),
    [
        (_entry(colour="red"), "colour", "remove it"),
        ({k: v for k, v in _entry().items() if k != "unit"}, "unit", "add it"),
        (_entry(direction="bigger"), "direction", "greater"),
        (_entry(trust="SURE"), "trust", "PAPER"),
        (_entry(paper="resnet"), "paper", "gdp"),
        (_entry("gdp.x", paper="greg"), "id", "greg.<name>"),
        (_entry(threshold="zero"), "threshold", "number"),
        (_entry(paper_value="about 2"), "paper_value", "paper_values_from"),
        (_entry(source="somewhere"), "source", "abstract"),
        (_entry(wording="verbatim"), "wording", "quoted"),
    ],
)
def test_invalid_claims_name_id_key_and_fix(tmp_path: Path, entry: dict[str, object], key: str,
                                            fix: str) -> None:
    path = _write(tmp_path, [entry])
    with pytest.raises(ValueError) as err:
        load_claims(path)
    msg = str(err.value)
    assert repr(str(entry["id"])) in msg and repr(key) in msg and "fix:" in msg and fix in msg


def test_duplicate_ids_and_bad_top_level(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        load_claims(_write(tmp_path, [_entry(), _entry()]))
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: x\n")
    with pytest.raises(ValueError, match="top-level key"):
        load_claims(bad)


def test_text_paper_value_allowed_with_a_table_reference(tmp_path: Path) -> None:
    path = _write(tmp_path, [_entry(paper_value="+1 / +2",
                                    paper_values_from={"paper": "greg", "table": "Table 1"})])
    claim = load_claims(path)["greg.a"]
    assert claim.paper_value_display == "+1 / +2"
    assert claim.paper_values_from == L.PaperRef("greg", "Table 1")


# ----------------------------------------------------------------------------- evidence, tables


def test_evidence_judge_computes_the_verdict(small: Path) -> None:
    claims = load_claims(small)
    ev = Evidence.judge(claims["greg.b"], mean_interval([4.0, 5.0, 6.0]), test="t", budget="b")
    assert (ev.verdict, ev.n, ev.ours) == (SUPPORTED, 3, "+5.00 [+2.5, +7.5] (n=3)")
    ev = Evidence.judge(claims["greg.a"], mean_interval([0.5, 1.5, -0.2]), test="t", ours="x",
                        budget="b")
    assert (ev.verdict, ev.ours) == (INCONCLUSIVE, "x")
    ev = Evidence.judge(claims["greg.a"], None, test="t", budget="b")
    assert (ev.verdict, ev.n, ev.ours) == (NOT_RUN, 0, "—")


def test_claims_table_order_multiplicity_and_not_run(small: Path) -> None:
    claims = load_claims(small)
    evs = [
        Evidence.judge(claims["greg.a"], mean_interval([2.0, 2.1, 2.2]), test="r=0.9", budget="b1"),
        Evidence.judge(claims["greg.a"], mean_interval([7.0]), test="r=0.95", budget="b1"),
    ]
    df = claims_table("greg", evs, claims)
    assert list(df.columns) == list(L.TABLE_COLUMNS)
    assert list(df["claim"]) == ["greg.b", "greg.a", "greg.a"]  # yaml order, both rows kept
    assert list(df["verdict"]) == [NOT_RUN, NOT_SUPPORTED, FEW_SEEDS]
    assert list(df["n"]) == [0, 3, 1]
    assert df["paper value"].iloc[1] == "0.5%"
    assert list(df["our test"]) == ["—", "r=0.9", "r=0.95"]


def test_claims_table_rejects_foreign_unknown_and_typed_evidence(small: Path) -> None:
    claims = load_claims(small)
    gdp = Evidence.judge(claims["gdp.z"], None, test="t", budget="b")
    with pytest.raises(ValueError, match="belongs to paper 'gdp'"):
        claims_table("greg", [gdp], claims)
    ghost = Evidence("greg.ghost", "t", "o", None, 0, "b", NOT_RUN)
    with pytest.raises(ValueError, match="no such claim"):
        claims_table("greg", [ghost], claims)
    typed = Evidence("greg.b", "t", "o", Interval(0.1, -1.0, 1.2, 3), 3, "b", SUPPORTED)
    with pytest.raises(ValueError, match="computed, never typed"):
        claims_table("greg", [typed], claims)
    with pytest.raises(ValueError, match="no claims for paper"):
        claims_table("dais", [], claims)


def test_write_claims_files(tmp_path: Path, small: Path) -> None:
    claims = load_claims(small)
    ev = Evidence.judge(claims["greg.b"], Interval(5.2, 3.1, 7.3, 3), test="t", budget="b")
    table = write_claims("greg", [ev], tmp_path / "out", claims=small)
    csv = pd.read_csv(tmp_path / "out" / "claims.csv")
    assert list(csv.columns) == [*L.TABLE_COLUMNS, *L.INTERVAL_COLUMNS]
    assert csv.loc[0, ["mean", "lo", "hi", "level"]].tolist() == [5.2, 3.1, 7.3, 0.95]
    md = (tmp_path / "out" / "claims.md").read_text()
    assert VERDICT_RULE in md and "| greg.b |" in md and "+5.20 [+3.1, +7.3] (n=3)" in md
    assert list(table.columns) == list(L.TABLE_COLUMNS)


# ----------------------------------------------------------------------------- the ledger


def _results(tmp_path: Path, small: Path) -> tuple[Path, Path]:
    claims = load_claims(small)
    res, nbs = tmp_path / "results", tmp_path / "notebooks"
    nbs.mkdir()
    (nbs / "gdp.ipynb").write_text("{}")
    evs = [Evidence.judge(claims["greg.b"], Interval(1.0, 0.2, 1.8, 3), test="r=0.9", budget="b")]
    write_claims("greg", evs, res / "greg", claims=claims)
    (res / "greg" / "metrics.json").write_text(json.dumps({"profile": "default"}))
    return res, nbs


def test_build_ledger_statuses_profile_and_links(tmp_path: Path, small: Path) -> None:
    res, nbs = _results(tmp_path, small)
    led = build_ledger(res, small, nbs)
    assert list(led.columns) == list(L.LEDGER_COLUMNS)
    by = {(r["claim"], r["our test"]): r for r in led.to_dict("records")}
    assert by[("greg.b", "r=0.9")]["verdict"] == SUPPORTED
    assert by[("greg.b", "r=0.9")]["profile"] == "default"
    assert by[("greg.b", "r=0.9")]["notebook"] == "results/greg/greg.ipynb"
    assert by[("greg.a", "—")]["verdict"] == NOT_RUN  # in the csv, without evidence
    assert by[("gdp.z", "—")]["verdict"] == NOT_RUN  # notebook exists, no claims.csv
    (nbs / "gdp.ipynb").unlink()
    led = build_ledger(res, small, nbs)
    assert led.loc[led["claim"] == "gdp.z", "verdict"].item() == NOT_IMPLEMENTED
    assert list(led["paper"]) == ["gdp", "greg", "greg"]  # PAPERS order


def test_ledger_recomputes_verdicts_against_current_claims(tmp_path: Path, small: Path) -> None:
    res, nbs = _results(tmp_path, small)
    # the threshold moved above the stored interval [0.2, 1.8] after the run
    moved = _write(tmp_path, [_entry("greg.b", threshold=2.0), _entry("greg.a"),
                              _entry("greg.c"), _entry("gdp.z")], "moved.yaml")
    led = build_ledger(res, moved, nbs)
    row = led[led["claim"] == "greg.b"].iloc[0]
    assert row["verdict"] == NOT_SUPPORTED and "'supported' at run time" in row["note"]
    added = led[led["claim"] == "greg.c"].iloc[0]
    assert added["verdict"] == NOT_RUN and added["note"] == "claim added after this run"


def test_ledger_rejects_stale_claim_ids(tmp_path: Path, small: Path) -> None:
    res, nbs = _results(tmp_path, small)
    renamed = _write(tmp_path, [_entry("greg.a"), _entry("gdp.z")], "renamed.yaml")
    with pytest.raises(ValueError, match="'greg.b' is not a `greg` claim"):
        build_ledger(res, renamed, nbs)


def test_ledger_cli_writes_csv_and_md(tmp_path: Path, small: Path) -> None:
    res, nbs = _results(tmp_path, small)
    rc = L.main(["--results", str(res), "--claims", str(small), "--notebooks", str(nbs)])
    assert rc == 0
    csv = pd.read_csv(res / "ledger" / "ledger.csv", dtype=str, keep_default_na=False)
    assert len(csv) == 3
    md = (res / "ledger" / "ledger.md").read_text()
    assert VERDICT_RULE in md
    assert "| greg | 1 | 1 |" in md  # verdict counts: supported 1, not run 1
