"""The README's results section equals what the committed outputs say (issue #12, item 7)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from prunerep import readme as R
from prunerep.reporting.ledger import (
    Evidence,
    build_ledger,
    load_claims,
    write_claims,
    write_ledger,
)
from prunerep.reporting.stats import VERDICT_RULE, Interval

REPO = Path(__file__).resolve().parents[2]


def test_committed_readme_matches_committed_results(tmp_path: Path) -> None:
    """Fails when README.md's section differs from render_results() over the tracked results/.

    Fix: `git add` the results, `python -m prunerep.readme`, commit README.md."""
    root = R.tracked_view(REPO / "results", tmp_path)
    readme = REPO / "README.md"
    assert readme.read_text() == R.rendered_readme(readme, root), (
        "README.md results section is stale: run `python -m prunerep.readme`"
    )


def _claims(tmp: Path) -> Path:
    entry = {"id": "greg.b", "paper": "greg", "source": "Table 1", "trust": "PAPER",
             "wording": "paraphrased", "statement": "GReg-1 | beats L1", "metric": "acc",
             "comparison": "GReg-1 - L1", "direction": "greater", "threshold": 0.0,
             "paper_value": 2.15, "unit": "points"}
    gdp = {**entry, "id": "gdp.z", "paper": "gdp", "source": "abstract", "trust": "ABS"}
    path = tmp / "claims.yaml"
    path.write_text(yaml.safe_dump({"claims": [gdp, entry]}, sort_keys=False))
    return path


def _results(tmp: Path) -> Path:
    claims_path = _claims(tmp)
    claims = load_claims(claims_path)
    res = tmp / "results"
    ev = Evidence.judge(claims["greg.b"], Interval(5.2, 3.1, 7.3, 3), test="ResNet-56 r=0.9",
                        budget="3 epochs")
    write_claims("greg", [ev], res / "greg", claims=claims)
    (res / "greg" / "metrics.json").write_text(
        json.dumps({"profile": "default", "budget": "fine-tune 3 epochs"}))
    (tmp / "notebooks").mkdir()
    write_ledger(build_ledger(res, claims_path, tmp / "notebooks"), res / "ledger")
    return res


def test_render_without_results_says_how_to_produce_them(tmp_path: Path) -> None:
    text = R.render_results(tmp_path / "nothing")
    assert "No results are committed yet" in text
    assert "python3 run.py repro" in text and "python -m prunerep.readme" in text
    assert VERDICT_RULE in text


def test_render_with_a_ledger(tmp_path: Path) -> None:
    text = R.render_results(_results(tmp_path))
    lines = text.splitlines()
    assert lines[0] == "## Results"
    # the table of every claim comes first, right under the heading and one sentence
    assert lines[6] == "| paper | claim | our test | n | paper value | ours | verdict | notebook |"
    provenance = next(x for x in lines if x.startswith("Numbers from"))
    assert "`greg`: profile `default`, budget: fine-tune 3 epochs" in provenance
    assert "dvc repro <stage>" in provenance
    assert f"**Verdict rule.** {VERDICT_RULE}" in lines
    assert "| paper | claim | our test | n | paper value | ours | verdict | notebook |" in lines
    assert ("| greg | greg.b | ResNet-56 r=0.9 | 3 | 2.15 points | +5.20 [+3.1, +7.3] (n=3) "
            "| supported | [greg.ipynb](results/greg/greg.ipynb) |") in lines
    assert "| gdp | gdp.z | — | 0 | 2.15 points | — | not implemented | — |" in lines
    assert R.MEANING in lines and "same sign" in R.MEANING and "reproduced" in R.MEANING
    assert not any("accuracy_vs_macs.png" in x for x in lines)  # no figure drawn: no link


def test_render_links_the_cross_paper_figure_when_drawn(tmp_path: Path) -> None:
    res = _results(tmp_path)
    (res / "ledger" / "accuracy_vs_macs.png").write_bytes(b"png")
    lines = R.render_results(res).splitlines()
    link = [x for x in lines if x.startswith("![")]
    assert len(link) == 1 and link[0].endswith("(results/ledger/accuracy_vs_macs.png)")
    assert lines.index(link[0]) > lines.index(f"**Verdict rule.** {VERDICT_RULE}")


def test_budget_falls_back_to_the_rows(tmp_path: Path) -> None:
    res = _results(tmp_path)
    (res / "greg" / "metrics.json").write_text(json.dumps({"profile": "smoke"}))
    text = R.render_results(res)
    assert "`greg`: profile `smoke`, budget: 3 epochs)" in text


def test_update_readme_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = _results(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# T\n\nintro\n\n<!-- results:begin -->\nSTALE-TEXT\n<!-- results:end -->\n\nrest\n")
    args = ["--readme", str(readme), "--results", str(res), "--untracked"]
    assert R.main([*args, "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert R.update_readme(readme, res) is True
    text = readme.read_text()
    assert text.startswith("# T\n\nintro\n\n<!-- results:begin -->\n## Results\n")
    assert ("(n=3) | supported | [greg.ipynb](results/greg/greg.ipynb) |\n" in text)
    assert text.endswith("<!-- results:end -->\n\nrest\n")
    assert "STALE-TEXT" not in text
    assert R.update_readme(readme, res) is False
    assert R.main([*args, "--check"]) == 0


def test_missing_markers_raise(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="results:begin"):
        R.update_readme(readme, tmp_path)
    readme.write_text(f"{R.END}\n{R.BEGIN}\n")
    with pytest.raises(ValueError, match="exactly one"):
        R.update_readme(readme, tmp_path)


def test_tracked_view_ignores_untracked_files(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "results" / "greg").mkdir(parents=True)
    (repo / "results" / "greg" / "metrics.json").write_text('{"profile": "smoke"}')
    (repo / "results" / "greg" / "local.json").write_text("{}")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "results/greg/metrics.json"], cwd=repo, check=True)
    view = R.tracked_view(repo / "results", tmp_path / "view")
    assert sorted(p.name for p in view.rglob("*") if p.is_file()) == ["metrics.json"]
    assert (view / "greg" / "metrics.json").read_text() == '{"profile": "smoke"}'


def _comparison(res: Path) -> None:
    """A comparison table as the compare stage writes it: two targets, L1 and two methods."""
    rows = []
    for target, accs in (("0.7", {"l1": "76.52 ± 0.40 (n=3)", "greg": "76.75 ± 0.30 (n=3)",
                                  "dais": "67.83 ± 0.98 (n=3)"}),
                         ("0.5", {"l1": "72.50 ± 0.60 (n=3)", "greg": "73.00 ± 0.30 (n=3)",
                                  "dais": ""})):
        for method, acc in accs.items():
            diff = "" if method == "l1" else ("+0.50 [-0.7, +1.7] (n=3)" if method == "greg"
                                              else "-8.68 [-11.7, -5.7] (n=3)")
            verdict = "" if method == "l1" else ("inconclusive (within noise)" if method == "greg"
                                                 else "not supported")
            if method == "dais" and target == "0.5":
                diff = verdict = ""
            rows.append({"MACs target": target, "method": method, "what ran": f"{method} (ours)",
                         "n": 3, "MACs kept": target, "test acc (%)": acc,
                         "latency bs1 (ms)": "", "− L1-norm (points, 95% CI)": diff,
                         "better than L1-norm?": verdict, "− random (points, 95% CI)": "",
                         "better than random?": ""})
    tables = res / "compare" / "tables"
    tables.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(tables / "comparison.csv", index=False)
    (tables / "comparison.md").write_text(
        "Each method minus L1. Profile `default`: resnet20 dense checkpoint, MACs targets 0.7, 0.5. "
        "Same for every row: n 3.\n\n| table |\n")


def test_render_includes_the_comparison_best_first(tmp_path: Path) -> None:
    res = _results(tmp_path)
    assert "The six methods on one budget" not in R.render_results(res)  # no comparison: none
    _comparison(res)
    lines = R.render_results(res).splitlines()
    start = lines.index("### The six methods on one budget")
    assert start > lines.index(f"**Verdict rule.** {VERDICT_RULE}")
    header = lines[start + 4]
    assert header == ("| method | what ran | keep 0.7: test acc (%) | keep 0.7: − L1 (points, 95% CI), "
                      "better? | keep 0.5: test acc (%) | keep 0.5: − L1 (points, 95% CI), better? |")
    body = lines[start + 6:start + 9]
    # best first at the middle target (0.5 of two targets sorted high to low); no number: last
    assert [r.split(" | ")[0] for r in body] == ["| greg", "| l1", "| dais"]
    assert body[0] == ("| greg | greg (ours) | 76.75 ± 0.30 (n=3) | +0.50 [-0.7, +1.7] (n=3), "
                       "inconclusive (within noise) | 73.00 ± 0.30 (n=3) | +0.50 [-0.7, +1.7] "
                       "(n=3), inconclusive (within noise) |")
    assert body[1].endswith("| 72.50 ± 0.60 (n=3) | — |")
    provenance = next(x for x in lines if x.startswith("From `results/compare/tables/comparison.csv`"))
    assert "(Profile `default`: resnet20 dense checkpoint, MACs targets 0.7, 0.5.)" in provenance
    assert "[compare.ipynb](results/compare/compare.ipynb)" in provenance


def test_render_includes_the_rounded_arms_when_the_comparison_ran_them(tmp_path: Path) -> None:
    res = _results(tmp_path)
    _comparison(res)
    assert "Widths rounded down" not in R.render_results(res)
    pd.DataFrame([{"MACs target": 0.5, "what ran": "L1-norm", "rounded to": 8, "n": 3, "MACs kept": "0.490 → 0.410",
                   "latency bs64 (ms)": "20.00 → 17.00", "latency bs64 change": "-15.0%",
                   "test acc (%)": "60.00 ± 1.00 (n=3) → 58.00 ± 1.00 (n=3)",
                   "rounded − as pruned (points, 95% CI)": "-2.00 [-3.0, -1.0] (n=3)"}]
                 ).to_csv(res / "compare" / "tables" / "rounding.csv", index=False)
    lines = R.render_results(res).splitlines()
    head = next(i for i, x in enumerate(lines) if x.startswith("**Widths rounded down to multiples of 8** (keep 0.5"))
    assert lines[head + 2] == ("| what ran | MACs kept | latency bs64 (ms) | latency bs64 change | test acc (%) | "
                               "rounded − as pruned (points, 95% CI) |")
    assert lines[head + 4] == ("| L1-norm | 0.490 → 0.410 | 20.00 → 17.00 | -15.0% | 60.00 ± 1.00 (n=3) → 58.00 ± 1.00 "
                               "(n=3) | -2.00 [-3.0, -1.0] (n=3) |")


def test_render_includes_the_equal_latency_arm_when_the_comparison_ran_it(tmp_path: Path) -> None:
    res = _results(tmp_path)
    _comparison(res)
    assert "W-Gates at L1's measured latency" not in R.render_results(res)
    pd.DataFrame([{"MACs target": 0.5, "latency target": "0.929 → 0.732", "set from L1's measured ratios": "median of",
                   "rounds": "round 1: ...", "what ran": "W-Gates (latency mode, LPNet)", "status": "ran: seeds [0, 1, 2]",
                   "n": 3, "W-Gates (latency mode): test acc (%)": "75.00 ± 1.00 (n=3)",
                   "L1-norm: test acc (%)": "73.00 ± 0.50 (n=3)",
                   "latency, W-Gates − L1 (95% CI; equal within ±0.05)": "+0.010 [+0.00, +0.02] (n=3): equal",
                   "− L1 (points, 95% CI)": "+2.00 [+1.0, +3.0] (n=3)",
                   "better than L1 at equal latency?": "supported"}]
                 ).to_csv(res / "compare" / "tables" / "equal_latency.csv", index=False)
    lines = R.render_results(res).splitlines()
    head = next(i for i, x in enumerate(lines) if x.startswith("**W-Gates at L1's measured latency** (W-Gates (latency"))
    assert lines[head + 2] == ("| MACs target | latency target | status | W-Gates (latency mode): test acc (%) | "
                               "L1-norm: test acc (%) | latency, W-Gates − L1 (95% CI; equal within ±0.05) | "
                               "− L1 (points, 95% CI) | better than L1 at equal latency? |")
    assert lines[head + 4] == ("| 0.5 | 0.929 → 0.732 | ran: seeds [0, 1, 2] | 75.00 ± 1.00 (n=3) | 73.00 ± 0.50 (n=3) "
                               "| +0.010 [+0.00, +0.02] (n=3): equal | +2.00 [+1.0, +3.0] (n=3) | supported |")
