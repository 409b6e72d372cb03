"""The verdict cell and the recipe summary every notebook shows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from prunerep.config import resolve_section
from prunerep.reporting.ledger import Claim, Evidence, claims_table, write_claims
from prunerep.reporting.notebook import (
    NotebookContext,
    recipe_differences,
    recipe_summary,
    short_repr,
    show_verdicts,
)
from prunerep.reporting.stats import VERDICT_RULE, Interval

CLAIMS = {
    "greg.a": Claim(id="greg.a", paper="greg", source="Table 1", trust="PAPER", wording="quoted",
                    statement="GReg-1 beats L1", metric="acc", comparison="gain", direction="greater",
                    threshold=0.0, paper_value=2.15, unit="points"),
    "greg.b": Claim(id="greg.b", paper="greg", source="Figure 1", trust="PAPER", wording="paraphrased",
                    statement="std rises", metric="std", comparison="slope", direction="greater",
                    threshold=0.0, paper_value="not transcribed", unit="1"),
    "greg.c": Claim(id="greg.c", paper="greg", source="Table 3", trust="PAPER", wording="paraphrased",
                    statement="ImageNet", metric="acc", comparison="gain", direction="greater",
                    threshold=0.0, paper_value=1.0, unit="%"),
}


def _evidence() -> list[Evidence]:
    return [
        Evidence.judge(CLAIMS["greg.a"], Interval(5.2, 3.1, 7.3, 3), test="GReg-1 minus L1, paired",
                       budget="b1"),
        Evidence.judge(CLAIMS["greg.b"], Interval(0.1, -0.2, 0.4, 3), test="slope of std/mean",
                       budget="b1"),
    ]


def test_show_verdicts_renders_every_claim_with_its_computed_verdict(tmp_path):
    table = write_claims("greg", _evidence(), tmp_path, claims=CLAIMS)
    md = show_verdicts(table, claims=CLAIMS).markdown
    lines = md.splitlines()
    assert lines[0].startswith("| claim ") and "| statement " in lines[0] and "| verdict " in lines[0]
    assert "| budget " in lines[0]  # budgets differ (one claim not run): a column
    rows = {line.split("|")[1].strip(): line for line in lines[2:5]}
    assert set(rows) == {"greg.a", "greg.b", "greg.c"}
    assert "“GReg-1 beats L1”" in rows["greg.a"] and "**supported**" in rows["greg.a"]
    assert "std rises (paraphrased)" in rows["greg.b"]
    assert "*inconclusive (within noise)*" in rows["greg.b"]
    assert "*not run at this budget*" in rows["greg.c"]
    assert "+5.20 [+3.1, +7.3] (n=3)" in rows["greg.a"] and "| 2.15 points " in rows["greg.a"]
    assert f"**Verdict rule.** {VERDICT_RULE}" in md


def test_show_verdicts_says_a_shared_budget_once():
    not_run = Evidence.judge(CLAIMS["greg.c"], None, test="ImageNet run", budget="b1")
    table = claims_table("greg", [*_evidence(), not_run], CLAIMS)
    md = show_verdicts(table, claims=CLAIMS).markdown
    assert md.startswith("Same for every row: budget b1.\n\n| claim ")
    assert "| budget " not in md


def test_show_verdicts_refuses_another_table():
    with pytest.raises(ValueError, match="write_claims"):
        show_verdicts(pd.DataFrame({"claim": ["x"]}))


def test_short_repr():
    assert short_repr(None) == "none" and short_repr(1e-5) == "1e-05"
    assert short_repr({"x": [0.5, 0.9]}) == "{x: [0.5, 0.9]}"
    assert short_repr("x" * 50, width=10) == "x" * 9 + "…"


PARAMS = {
    "profile": "smoke",
    "data": {"dataset": "cifar10", "source": "download", "val_size": 5000, "split_seed": 0},
    "baseline": {
        "models": ["resnet56"], "latency_batch_sizes": [1, 64], "device": "cpu",
        "profiles": {"smoke": {"subset": {"test": 512}, "latency_repeats": 3},
                     "paper": {"latency_repeats": 100}},
    },
}


def test_recipe_differences_lists_exactly_the_changed_keys():
    smoke = resolve_section("baseline", PARAMS, profile="smoke")
    paper = resolve_section("baseline", PARAMS, profile="paper")
    assert recipe_differences(smoke, paper) == [("subset.test", 512, None), ("latency_repeats", 3, 100)]
    assert recipe_differences(paper, paper) == []


def _ctx(profile: str) -> NotebookContext:
    return NotebookContext(slug="baseline", profile=profile,
                           cfg=resolve_section("baseline", PARAMS, profile=profile),
                           data=resolve_section("data", PARAMS, profile=profile),
                           out_dir=Path("results/baseline"), params=PARAMS)


def test_recipe_summary_is_a_short_table_not_a_config_dump():
    md = recipe_summary(_ctx("smoke")).markdown
    first, *rest = md.splitlines()
    assert first.startswith("Profile `smoke` · device cpu · ") and "data `cifar10`" in first
    table = [line for line in rest if line.startswith("|")]
    assert table[0].split("|")[1:4] == [" key                      ", " this run (smoke)   ",
                                        " paper profile   "]
    assert [line.split("|")[1].strip() for line in table[2:]] == ["baseline.subset.test",
                                                                   "baseline.latency_repeats"]
    assert "| none " in table[2] and "| 100 " in table[3]
    assert "BaselineConfig(" not in md and "SubsetConfig(" not in md


def test_recipe_summary_at_the_paper_profile_says_so():
    md = recipe_summary(_ctx("paper")).markdown
    assert "This is the `paper` profile" in md and "|" not in md


def test_recipe_differences_compare_lists_of_mappings_item_by_item():
    a = {"grids": [{"models": ["r20"], "inits": ["p"]}], "seeds": [0], "x": {"y": 1}}
    r = {"grids": [{"models": ["r20", "r56"], "inits": ["p"]}], "seeds": [0, 1, 2], "z": 3}
    assert recipe_differences(a, r) == [("grids[0].models", ["r20"], ["r20", "r56"]),
                                        ("seeds", [0], [0, 1, 2]), ("x", {"y": 1}, None), ("z", None, 3)]
