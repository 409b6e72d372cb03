"""The statistics module and the one verdict rule, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from prunerep.reporting import stats
from prunerep.reporting.stats import (
    FEW_SEEDS,
    INCONCLUSIVE,
    NOT_RUN,
    NOT_SUPPORTED,
    SUPPORTED,
    Interval,
    fmt_mean_std,
    mean_interval,
    mean_std,
    paired_difference,
    t_cdf,
    t_quantile,
    verdict,
)

# t_{0.975, df} from standard tables (and scipy.stats.t.ppf), 6 decimals.
T975 = {1: 12.706205, 2: 4.302653, 4: 2.776445, 10: 2.228139, 29: 2.045230, 1000: 1.962339}


@pytest.mark.parametrize(("df", "expected"), sorted(T975.items()))
def test_t_quantile_matches_tables(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-6)


def test_t_quantile_other_levels_and_symmetry() -> None:
    assert t_quantile(0.95, 10) == pytest.approx(1.812461, abs=1e-6)
    assert t_quantile(0.995, 3) == pytest.approx(5.840909, abs=1e-6)
    assert t_quantile(0.025, 4) == pytest.approx(-2.776445, abs=1e-6)
    assert t_quantile(0.5, 7) == 0.0
    # df = 1 is the Cauchy distribution: P(T <= 1) = 3/4 exactly.
    assert t_cdf(1.0, 1) == pytest.approx(0.75, abs=1e-12)
    assert t_cdf(0.0, 5) == 0.5
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


def test_mean_std_sample_std_and_small_n() -> None:
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)
    mean, std, n = mean_std([49.91, 50.97, 52.03])
    assert (mean, n) == (pytest.approx(50.97), 3)
    assert std == pytest.approx(1.06)
    assert mean_std([5.0]) == (5.0, None, 1)
    with pytest.raises(ValueError, match="no values"):
        mean_std([])


def test_nan_is_rejected_with_its_position() -> None:
    with pytest.raises(ValueError, match=r"NaN at position\(s\) \[1\]"):
        mean_std([1.0, math.nan, 3.0])
    with pytest.raises(ValueError, match="NaN"):
        mean_interval([math.nan, 1.0])


def test_fmt_mean_std() -> None:
    assert fmt_mean_std([49.91, 50.97, 52.03]) == "50.97 ± 1.06 (n=3)"
    assert fmt_mean_std([50.97]) == "50.97 (n=1)"
    assert fmt_mean_std([]) == "—"
    assert fmt_mean_std([1.0, 2.0, 3.0], digits=1, unit="%") == "2.0 ± 1.0% (n=3)"
    assert fmt_mean_std([1.0, 3.0], digits=0, unit="points") == "2 ± 1 points (n=2)"


def test_mean_interval_by_hand() -> None:
    # [1, 2, 3]: mean 2, s = 1, half-width t_{0.975,2} / sqrt(3) = 4.302653 / 1.732051 = 2.484138.
    iv = mean_interval([1.0, 2.0, 3.0])
    assert (iv.mean, iv.n, iv.level) == (2.0, 3, 0.95)
    assert iv.lo == pytest.approx(2.0 - 2.484138, abs=1e-6)
    assert iv.hi == pytest.approx(2.0 + 2.484138, abs=1e-6)
    assert str(iv) == "+2.00 [-0.5, +4.5] (n=3)"
    # [0, 10]: mean 5, s = 7.0711, half-width 12.706205 * 7.0711 / sqrt(2) = 63.531
    iv2 = mean_interval([0.0, 10.0])
    assert iv2.hi - iv2.mean == pytest.approx(63.531024, abs=1e-5)
    # 90% interval of [1, 2, 3]: t_{0.95,2} = 2.919986, half-width 1.685854
    iv90 = mean_interval([1.0, 2.0, 3.0], level=0.90)
    assert iv90.hi == pytest.approx(3.685854, abs=1e-6)
    assert str(iv90) == "+2.00 90% [+0.3, +3.7] (n=3)"


def test_interval_edge_cases() -> None:
    zero = mean_interval([4.0, 4.0, 4.0])
    assert (zero.lo, zero.mean, zero.hi) == (4.0, 4.0, 4.0)
    one = mean_interval([5.0])
    assert one.n == 1 and math.isnan(one.lo) and math.isnan(one.hi)
    assert str(one) == "+5.00 (n=1)"
    assert str(Interval(5.2, 3.1, 7.3, 3)) == "+5.20 [+3.1, +7.3] (n=3)"
    # tiny values (logit changes) must not print as +0.00
    assert str(Interval(2e-6, 1e-6, 3e-6, 3)) == "+2.00e-06 [+1.0e-06, +3.0e-06] (n=3)"
    assert Interval(0.008, 0.00116, 0.0157, 3).format(3, bound_digits=3) == "+0.008 [+0.001, +0.016] (n=3)"
    assert Interval(0.008, 0.00116, 0.0157, 3).format(3) == "+0.008 [+1.16e-03, +0.02] (n=3)"


def test_paired_difference_uses_shared_seeds_only() -> None:
    a = {0: 10.0, 1: 12.0, 2: 14.0, 3: 99.0}
    b = {0: 9.0, 1: 10.0, 2: 11.0, 7: 0.0}
    iv = paired_difference(a, b)  # differences 1, 2, 3 over seeds 0-2
    assert iv.n == 3 and iv.mean == 2.0
    assert iv.hi == pytest.approx(4.484138, abs=1e-6)
    with pytest.raises(ValueError, match="no seed in common"):
        paired_difference({0: 1.0}, {1: 1.0})


@pytest.mark.parametrize(
    ("interval", "direction", "threshold", "expected"),
    [
        (Interval(2.0, 0.5, 3.5, 3), "greater", 0.0, SUPPORTED),
        (Interval(-2.0, -3.0, -1.0, 3), "greater", 0.0, NOT_SUPPORTED),
        (Interval(0.0, -1.0, 1.0, 3), "greater", 0.0, INCONCLUSIVE),
        # lower bound exactly on the threshold: strict fails, inclusive holds
        (Interval(1.0, 0.0, 2.0, 3), "greater", 0.0, INCONCLUSIVE),
        (Interval(1.0, 0.0, 2.0, 3), "at_least", 0.0, SUPPORTED),
        # upper bound exactly on the threshold: "greater" is contradicted, "at_least" is not
        (Interval(-1.0, -2.0, 0.0, 3), "greater", 0.0, NOT_SUPPORTED),
        (Interval(-1.0, -2.0, 0.0, 3), "at_least", 0.0, INCONCLUSIVE),
        (Interval(-1.0, -2.0, -0.5, 3), "at_least", 0.0, NOT_SUPPORTED),
        (Interval(-1.0, -2.0, -0.5, 3), "less", 0.0, SUPPORTED),
        (Interval(-1.0, -2.0, 0.0, 3), "less", 0.0, INCONCLUSIVE),
        (Interval(-1.0, -2.0, 0.0, 3), "at_most", 0.0, SUPPORTED),
        (Interval(1.0, 0.0, 2.0, 3), "less", 0.0, NOT_SUPPORTED),
        (Interval(1.0, 0.0, 2.0, 3), "at_most", 0.0, INCONCLUSIVE),
        (Interval(2.0, 1.6, 2.4, 3), "at_least", 1.5, SUPPORTED),
        (Interval(1.2, 1.0, 1.4, 3), "at_least", 1.5, NOT_SUPPORTED),
        (Interval(2.0, 1.6, 2.4, 2), "at_least", 1.5, FEW_SEEDS),   # 2 seeds: no verdict either
        (Interval(5e-6, 1e-6, 9e-6, 4), "at_most", 1e-4, SUPPORTED),
        (Interval(3.0, 3.0, 3.0, 3), "greater", 3.0, NOT_SUPPORTED),  # zero spread at threshold
        (None, "greater", 0.0, NOT_RUN),
        (Interval(9.0, math.nan, math.nan, 1), "greater", 0.0, FEW_SEEDS),
    ],
)
def test_verdict_rule(interval: Interval | None, direction: str, threshold: float,
                      expected: str) -> None:
    assert verdict(interval, direction, threshold) == expected  # type: ignore[arg-type]


def test_verdict_end_to_end_from_seeds() -> None:
    # differences [1, 2, 3]: interval [-0.48, 4.48] straddles 0; [2, 3, 4]: [-0.48+1, ...] > 0
    assert verdict(mean_interval([1.0, 2.0, 3.0]), "greater") == INCONCLUSIVE
    assert verdict(mean_interval([4.0, 5.0, 6.0]), "greater") == SUPPORTED


def test_verdict_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="direction"):
        verdict(Interval(1.0, 0.5, 1.5, 3), "bigger")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="95% intervals"):
        verdict(mean_interval([4.0, 5.0, 6.0], level=0.9), "greater")
    with pytest.raises(ValueError, match="lo <= hi"):
        verdict(Interval(1.0, math.nan, math.nan, 3), "greater")


def test_rule_is_stated_once_in_the_docstring_with_every_verdict() -> None:
    doc = " ".join((stats.__doc__ or "").split())
    rule = " ".join(stats.VERDICT_RULE.split())
    assert rule in doc
    for label in (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, FEW_SEEDS, NOT_RUN):
        assert label in rule
