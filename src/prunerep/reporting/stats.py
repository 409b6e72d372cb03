"""One statistics module and one verdict rule for every paper's claims.

Every number we report is a mean over seeds with its sample spread, and every comparison is a
seed-paired difference with a Student-t interval, so the six studies speak the same language and
a reader can tell a real effect from seed noise. The verdict rule, quoted by the README:

A claim is *supported* when the whole 95% t-interval of our estimate (over seeds;
paired by seed for a difference) lies on the side of the claim's threshold that the paper claims
(strictly for "greater"/"less", inclusive for "at least"/"at most"), *not supported* when the whole
interval lies on the other side, and *inconclusive (within noise)* when it straddles the threshold.
With fewer than 3 seeds (or seed pairs) there is no verdict ("fewer than 3 seeds: no verdict"),
and a claim without any run at the profile's budget is "not run at this budget".

(Why 3: a 2-seed t-interval has one degree of freedom, its half-width is 12.7 standard errors, and
the project judges no claim from fewer than 3 seeds.)

The Student-t quantile is computed here (regularized incomplete beta by Lentz's continued
fraction, inverted by bisection) because scipy is not a dependency of this project.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive (within noise)"
NOT_RUN = "not run at this budget"
MIN_SEEDS = 3
FEW_SEEDS = f"fewer than {MIN_SEEDS} seeds: no verdict"
NOT_IMPLEMENTED = "not implemented"

VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_RUN, FEW_SEEDS, NOT_IMPLEMENTED)

Direction = Literal["greater", "at_least", "less", "at_most"]
DIRECTIONS: tuple[str, ...] = ("greater", "at_least", "less", "at_most")

VERDICT_RULE = (
    "A claim is *supported* when the whole 95% t-interval of our estimate (over seeds; paired by "
    "seed for a difference) lies on the side of the claim's threshold that the paper claims "
    "(strictly for \"greater\"/\"less\", inclusive for \"at least\"/\"at most\"), *not supported* "
    "when the whole interval lies on the other side, and *inconclusive (within noise)* when it "
    "straddles the threshold. With fewer than 3 seeds (or seed pairs) there is no verdict "
    "(\"fewer than 3 seeds: no verdict\"), and a claim without any run at the profile's budget "
    "is \"not run at this budget\"."
)
"""The rule in two sentences, the same text as in the module docstring (the README quotes it)."""


# ----------------------------------------------------------------------------- summaries


def _checked(values: Sequence[float]) -> list[float]:
    """Floats, or a ValueError: a NaN would silently poison every mean and interval after it."""
    out = [float(v) for v in values]
    bad = [i for i, v in enumerate(out) if math.isnan(v)]
    if bad:
        raise ValueError(
            f"NaN at position(s) {bad} of {out}: a run that diverged or was not evaluated; "
            "drop it explicitly (and say so) before summarising"
        )
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float | None, int]:
    """(mean, sample std with n - 1, n); std is None for n < 2, where no spread is measurable."""
    xs = _checked(values)
    n = len(xs)
    if n == 0:
        raise ValueError("mean_std: no values")
    mean = math.fsum(xs) / n
    if n < 2:
        return mean, None, n
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    return mean, math.sqrt(var), n


def fmt_mean_std(values: Sequence[float], digits: int = 2, unit: str = "") -> str:
    """"50.97 ± 1.06 (n=3)"; one value prints without a fake "± 0"; no values print "—"."""
    if len(values) == 0:
        return "—"
    mean, std, n = mean_std(values)
    u = f" {unit}" if unit and unit not in ("%", "x") else unit
    if std is None:
        return f"{mean:.{digits}f}{u} (n={n})"
    return f"{mean:.{digits}f} ± {std:.{digits}f}{u} (n={n})"


# ----------------------------------------------------------------------------- Student t


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz, Numerical Recipes 6.4)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            return h
    raise ArithmeticError(f"incomplete beta did not converge (a={a}, b={b}, x={x})")


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"t_cdf: df must be > 0, got {df}")
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t value with P(T <= t) = p, by bisection on t_cdf (monotone, so bisection cannot fail)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


# ----------------------------------------------------------------------------- intervals


def _fmt_signed(x: float, digits: int) -> str:
    """Signed fixed-point, or scientific when fixed-point would print a non-zero value as 0."""
    if x != 0.0 and abs(x) < 0.5 * 10.0 ** (-digits):
        return f"{x:+.{max(digits, 1)}e}"
    return f"{x:+.{digits}f}"


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided t-interval; lo and hi are NaN when n < 2 (no spread measurable)."""

    mean: float
    lo: float
    hi: float
    n: int
    level: float = 0.95

    def format(self, digits: int = 2, bound_digits: int | None = None) -> str:
        """"+5.20 [+3.1, +7.3] (n=3)": bounds one digit coarser, since they are less certain, unless
        `bound_digits` says otherwise (a quantity compared with a tolerance at that precision)."""
        mean = _fmt_signed(self.mean, digits)
        if self.n < 2 or math.isnan(self.lo) or math.isnan(self.hi):
            return f"{mean} (n={self.n})"
        bd = max(digits - 1, 1) if bound_digits is None else bound_digits
        level = "" if math.isclose(self.level, 0.95) else f"{self.level:.0%} "
        return f"{mean} {level}[{_fmt_signed(self.lo, bd)}, {_fmt_signed(self.hi, bd)}] (n={self.n})"

    def __str__(self) -> str:
        return self.format()


def mean_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean and the two-sided `level` Student-t interval of the mean (mean ± t·s/sqrt(n))."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"mean_interval: level must be in (0, 1), got {level}")
    mean, std, n = mean_std(values)
    if std is None:
        return Interval(mean, math.nan, math.nan, n, level)
    half = t_quantile(0.5 + level / 2.0, n - 1) * std / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, level)


def paired_difference(
    a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95
) -> Interval:
    """Interval of a[seed] - b[seed] over the seeds in both: pairing removes the seed's own effect
    (data order, initial masks), which is shared by both arms and is often larger than the gap."""
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError(
            f"paired_difference: no seed in common (a has {sorted(a)}, b has {sorted(b)}); "
            "run both arms with the same seeds"
        )
    return mean_interval([float(a[s]) - float(b[s]) for s in shared], level)


# ----------------------------------------------------------------------------- the verdict


def verdict(interval: Interval | None, direction: Direction, threshold: float = 0.0) -> str:
    """THE rule (VERDICT_RULE): where the whole interval lies relative to the threshold.

    "greater": claimed region (threshold, inf); "at_least": [threshold, inf); "less":
    (-inf, threshold); "at_most": (-inf, threshold]. Supported if the interval is inside the
    claimed region, not supported if inside its complement, inconclusive otherwise.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"verdict: direction {direction!r} is not one of {DIRECTIONS}")
    if interval is None:
        return NOT_RUN
    if interval.n < MIN_SEEDS:
        return FEW_SEEDS
    if not math.isclose(interval.level, 0.95):
        raise ValueError(f"verdict: the rule judges 95% intervals, got level {interval.level}; "
                         "build the interval with the default level")
    lo, hi, t = interval.lo, interval.hi, float(threshold)
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise ValueError(f"verdict: interval {interval!r} with n >= 2 needs finite lo <= hi")
    if direction == "greater":
        inside, outside = lo > t, hi <= t
    elif direction == "at_least":
        inside, outside = lo >= t, hi < t
    elif direction == "less":
        inside, outside = hi < t, lo >= t
    else:  # at_most
        inside, outside = hi <= t, lo > t
    if inside:
        return SUPPORTED
    if outside:
        return NOT_SUPPORTED
    return INCONCLUSIVE
