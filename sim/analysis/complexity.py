"""Complexity detection: size sweeps, log-log power-law fits and per-batch latency trends.

Everything here is a pure function over plain numbers (stdlib ``math``/``statistics``/``random``
only: no numpy, no I/O), so it is cheap to import and easy to audit.

* :func:`fit_power_law` fits ``y ≈ a·n^k`` by ordinary least squares of ``log y`` on ``log n`` and
  gives a Student-t confidence interval for the exponent ``k``;
  :func:`classify_exponent` turns ``k`` into a verdict ("linear", "quadratic", ...).
* :func:`fit_counter` / :func:`classify_counter` do the same for deterministic counters (frames,
  ops, scan steps), where the fit is exact and a counter may be identically zero.
* :func:`fit_linear_trend` fits per-batch latency against batch index (or cells loaded so far);
  :func:`is_flat` reads its outlier-resistant :func:`theil_sen` slope to decide whether the
  per-batch cost stays flat across the whole load.
* :func:`sweep_sizes` gives the geometric size sweep (50, 100, ..., 3200 cells by default).

The Student-t quantile (:func:`student_t_quantile`) inverts the t CDF by bisection, the CDF being
written with the regularized incomplete beta function (continued fraction, Lentz's method); for
very large degrees of freedom it switches to the Cornish-Fisher expansion of the normal quantile.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_CONFIDENCE",
    "LINEAR_MAX",
    "LINEAR_MIN",
    "QUADRATIC_MIN",
    "THEIL_SEN_EXACT_MAX_POINTS",
    "THEIL_SEN_SAMPLED_PAIRS",
    "CounterVerdict",
    "ExponentVerdict",
    "LinearTrend",
    "PowerLawFit",
    "classify_counter",
    "classify_exact_sweep",
    "classify_exponent",
    "fit_counter",
    "fit_linear_trend",
    "fit_power_law",
    "is_flat",
    "local_exponents",
    "log_slope",
    "student_t_quantile",
    "sweep_sizes",
    "theil_sen",
]

DEFAULT_CONFIDENCE = 0.95

# Verdict thresholds for a fitted exponent k (see classify_exponent for the reasoning).
LINEAR_MIN = 0.7
LINEAR_MAX = 1.15
QUADRATIC_MIN = 1.7
# A counter whose fitted exponent is within this distance of 0 is "constant" (O(1) per run).
COUNTER_CONSTANT_MAX = 0.15

# Theil-Sen uses every pair up to this many points (≈ 2 million pairs), then a seeded sample.
THEIL_SEN_EXACT_MAX_POINTS = 2000
THEIL_SEN_SAMPLED_PAIRS = 200_000

# Above this many degrees of freedom the Cornish-Fisher expansion is accurate to ~1e-12 and the
# incomplete-beta continued fraction would need many iterations.
_CORNISH_FISHER_MIN_DF = 1000.0
# Residuals whose RMS is below this fraction of the data's magnitude are floating-point noise.
_ZERO_RESIDUAL_RTOL = 1e-12

ExponentVerdict = Literal["linear", "superlinear", "quadratic", "sublinear"]
CounterVerdict = Literal["zero", "constant", "sublinear", "linear", "superlinear", "quadratic"]


@dataclass(frozen=True, slots=True)
class PowerLawFit:
    """``y ≈ coefficient · n^exponent``, fitted in log-log space.

    ``ci`` is the two-sided confidence interval of the exponent (collapsed to
    ``(exponent, exponent)`` when the data fit exactly); ``r_squared`` is in log space.
    """

    exponent: float
    ci: tuple[float, float]
    coefficient: float
    r_squared: float
    n_points: int


@dataclass(frozen=True, slots=True)
class LinearTrend:
    """``y ≈ intercept + slope · x`` (OLS), plus outlier-resistant Theil-Sen variants.

    ``relative_slope = slope · (max x - min x) / median y`` is the fractional change of ``y``
    across the whole range of ``x`` (e.g. how much the per-batch latency grows over the load);
    ``robust_relative_slope`` is the same with the Theil-Sen slope.
    """

    slope: float
    ci: tuple[float, float]
    intercept: float
    r_squared: float
    relative_slope: float
    n_points: int
    robust_slope: float
    robust_relative_slope: float


@dataclass(frozen=True, slots=True)
class _Ols:
    slope: float
    intercept: float
    ci: tuple[float, float]
    r_squared: float


# --------------------------------------------------------------------------- Student-t quantile


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (modified Lentz's method)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) >= tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) >= tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) >= tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) >= tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) >= tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) <= 1e-15:
            break
    return h


def _regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
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


def _t_upper_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0."""
    return 0.5 * _regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def _t_quantile_cornish_fisher(p: float, df: float) -> float:
    z = statistics.NormalDist().inv_cdf(p)
    z2 = z * z
    return z * (
        1.0
        + (z2 + 1.0) / (4.0 * df)
        + ((5.0 * z2 + 16.0) * z2 + 3.0) / (96.0 * df**2)
        + (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) / (384.0 * df**3)
        + ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) / (92160.0 * df**4)
    )


def _t_quantile_bisect(p: float, df: float) -> float:
    """Upper quantile (p > 0.5) by bisection on the exact upper-tail probability."""
    tail = 1.0 - p
    lo, hi = 0.0, 1.0
    while _t_upper_tail(hi, df) > tail:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_upper_tail(mid, df) > tail:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return 0.5 * (lo + hi)


def student_t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t distribution with ``df`` degrees of freedom.

    Accurate to ~1e-10 (e.g. ``student_t_quantile(0.975, 10) ≈ 2.228139``). ``df`` may be
    fractional or ``math.inf`` (the normal quantile).
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile probability must be in (0, 1), got {p!r}")
    if not df > 0.0:  # also rejects NaN
        raise ValueError(f"degrees of freedom must be positive, got {df!r}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    if math.isinf(df):
        return statistics.NormalDist().inv_cdf(p)
    if df >= _CORNISH_FISHER_MIN_DF:
        return _t_quantile_cornish_fisher(p, df)
    return _t_quantile_bisect(p, df)


# --------------------------------------------------------------------------- least squares


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _check_points(what: str, xs: Sequence[float], ys: Sequence[float]) -> None:
    if len(xs) != len(ys):
        raise ValueError(f"{what}: got {len(xs)} x values but {len(ys)} y values")
    if len(xs) < 3:
        raise ValueError(
            f"{what}: need at least 3 points for a fit with a confidence interval, got {len(xs)}"
        )
    for name, values in (("x", xs), ("y", ys)):
        for v in values:
            if not math.isfinite(v):
                raise ValueError(f"{what}: {name} values must be finite, got {v!r}")
    if len(set(xs)) < 2:
        raise ValueError(f"{what}: need at least 2 distinct x values, got only {xs[0]!r}")


def _ols(xs: Sequence[float], ys: Sequence[float], confidence: float) -> _Ols:
    """OLS of ys on xs (validated: >= 3 finite points, >= 2 distinct xs)."""
    n = len(xs)
    x_mean = math.fsum(xs) / n
    y_mean = math.fsum(ys) / n
    dxs = [x - x_mean for x in xs]
    dys = [y - y_mean for y in ys]
    sxx = math.fsum(dx * dx for dx in dxs)
    if sxx == 0.0:
        raise ValueError("least squares: x values are numerically identical")
    sxy = math.fsum(dx * dy for dx, dy in zip(dxs, dys, strict=True))
    syy = math.fsum(dy * dy for dy in dys)
    slope = sxy / sxx
    intercept = y_mean - slope * x_mean
    residuals = [y - (intercept + slope * x) for x, y in zip(xs, ys, strict=True)]
    ssr = math.fsum(r * r for r in residuals)
    scale = max(
        max(abs(y) for y in ys), abs(intercept), abs(slope) * max(abs(x) for x in xs), 1e-300
    )
    if math.sqrt(ssr / n) <= _ZERO_RESIDUAL_RTOL * scale:
        # Exact data (deterministic counters, synthetic laws): the interval collapses.
        return _Ols(slope=slope, intercept=intercept, ci=(slope, slope), r_squared=1.0)
    stderr = math.sqrt(ssr / (n - 2) / sxx)
    half = student_t_quantile(1.0 - (1.0 - confidence) / 2.0, n - 2) * stderr
    r_squared = 1.0 - ssr / syy if syy > 0.0 else 1.0
    return _Ols(
        slope=slope,
        intercept=intercept,
        ci=(slope - half, slope + half),
        r_squared=max(0.0, min(1.0, r_squared)),
    )


def fit_power_law(
    ns: Sequence[float], ys: Sequence[float], *, confidence: float = DEFAULT_CONFIDENCE
) -> PowerLawFit:
    """Fit ``y ≈ a·n^k`` by OLS of ``log y`` on ``log n``.

    Repeated measurements at the same ``n`` are separate points. The exponent's two-sided
    ``confidence`` interval uses the slope's standard error and the Student-t quantile with
    ``len(ns) - 2`` degrees of freedom; it collapses to ``(k, k)`` (with ``r_squared = 1``) when the
    data fit a power law exactly.

    Raises ValueError for fewer than 3 points, mismatched lengths, non-finite or non-positive
    values, fewer than 2 distinct ``n``, or a confidence outside (0, 1).
    """
    _check_confidence(confidence)
    _check_points("fit_power_law", ns, ys)
    for name, values in (("n", ns), ("y", ys)):
        for v in values:
            if not v > 0.0:
                raise ValueError(
                    f"fit_power_law: {name} values must be positive (a log-log fit), got {v!r}"
                )
    log_ns = [math.log(v) for v in ns]
    log_ys = [math.log(v) for v in ys]
    ols = _ols(log_ns, log_ys, confidence)
    return PowerLawFit(
        exponent=ols.slope,
        ci=ols.ci,
        coefficient=math.exp(ols.intercept),
        r_squared=ols.r_squared,
        n_points=len(ns),
    )


def theil_sen(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Theil-Sen slope: the median of the slopes of all pairs of points with distinct x.

    Robust to up to ~29% arbitrary outliers. With more than ``THEIL_SEN_EXACT_MAX_POINTS``
    points, ``THEIL_SEN_SAMPLED_PAIRS`` pairs are drawn with ``random.Random(0)`` (deterministic).
    Raises ValueError for mismatched lengths, non-finite values or fewer than 2 distinct x.
    """
    if len(xs) != len(ys):
        raise ValueError(f"theil_sen: got {len(xs)} x values but {len(ys)} y values")
    for v in (*xs, *ys):
        if not math.isfinite(v):
            raise ValueError(f"theil_sen: values must be finite, got {v!r}")
    if len(set(xs)) < 2:
        raise ValueError("theil_sen: need at least 2 distinct x values")
    n = len(xs)
    slopes: list[float] = []
    if n <= THEIL_SEN_EXACT_MAX_POINTS:
        for i in range(n):
            xi, yi = xs[i], ys[i]
            for j in range(i + 1, n):
                if xs[j] != xi:
                    slopes.append((ys[j] - yi) / (xs[j] - xi))
    else:
        rng = random.Random(0)
        # Pairs with equal x are skipped; the attempt cap only matters for heavily tied x.
        for _ in range(4 * THEIL_SEN_SAMPLED_PAIRS):
            i, j = rng.randrange(n), rng.randrange(n)
            if xs[i] != xs[j]:
                slopes.append((ys[j] - ys[i]) / (xs[j] - xs[i]))
                if len(slopes) == THEIL_SEN_SAMPLED_PAIRS:
                    break
        if not slopes:
            raise ValueError("theil_sen: no sampled pair had distinct x values")
    return statistics.median(slopes)


def fit_linear_trend(
    xs: Sequence[float], ys: Sequence[float], *, confidence: float = DEFAULT_CONFIDENCE
) -> LinearTrend:
    """Fit ``y ≈ intercept + slope·x`` (OLS) with a Student-t CI on the slope, plus Theil-Sen.

    Typical use: ``xs`` = batch index (or cells loaded so far), ``ys`` = per-batch latency.
    The relative slopes divide by ``median(ys)``. Raises ValueError for fewer than 3 points,
    mismatched lengths, non-finite values, fewer than 2 distinct x, ``median(ys) == 0`` or a
    confidence outside (0, 1).
    """
    _check_confidence(confidence)
    _check_points("fit_linear_trend", xs, ys)
    median_y = statistics.median(ys)
    if median_y == 0.0:
        raise ValueError("fit_linear_trend: median of y is 0, so the relative slope is undefined")
    ols = _ols(xs, ys, confidence)
    span = max(xs) - min(xs)
    robust = theil_sen(xs, ys)
    return LinearTrend(
        slope=ols.slope,
        ci=ols.ci,
        intercept=ols.intercept,
        r_squared=ols.r_squared,
        relative_slope=ols.slope * span / abs(median_y),
        n_points=len(xs),
        robust_slope=robust,
        robust_relative_slope=robust * span / abs(median_y),
    )


# --------------------------------------------------------------------------- verdicts


def classify_exponent(
    fit: PowerLawFit,
    *,
    linear_max: float = LINEAR_MAX,
    quadratic_min: float = QUADRATIC_MIN,
    linear_min: float = LINEAR_MIN,
) -> ExponentVerdict:
    """Verdict for a fitted exponent ``k``.

    "quadratic" when ``k >= quadratic_min`` (quadratic or worse), "linear" when
    ``linear_min <= k <= linear_max``, "sublinear" below ``linear_min``, "superlinear" in between.

    Why 0.7 / 1.15 / 1.7: an O(n) load gives ``k`` near 1, a little above it because the
    document's fixed per-transaction / per-sync-round cost grows slowly with its size (DESIGN.md:
    ≈ 0.7 → 1.8 ms per sync round from 50 to 3200 cells, a local exponent of
    log(1.8/0.7)/log(64) ≈ 0.23 for that component alone). Sync rounds are a minority of the
    load's cost (the rest — manifests, blobs, cell inserts — is flat per cell), so the whole load
    lands around 1.05-1.1; 1.15 leaves room for timing noise above that. An O(n²) load (a scan per
    insert) tends to 2 as the quadratic term takes over, but a linear term still dilutes it at the
    small end of the sweep; 1.7 leaves room for that and for noise below. The noise itself is
    small over the default sweep: 21 points (7 sizes, 3 repeats each) spanning a 64-fold range
    in n with 20% multiplicative noise put the 95% CI at about ±0.06. A measurement dominated by
    sync rounds alone (≈ 1.2) is reported as "superlinear" on purpose: growing per-transaction cost,
    not O(n²). Below 0.7 the measured quantity is mostly fixed overhead, not per-cell work.
    """
    if not linear_min <= linear_max < quadratic_min:
        raise ValueError(
            "classify_exponent: thresholds must satisfy linear_min <= linear_max < quadratic_min, "
            f"got {linear_min!r}, {linear_max!r}, {quadratic_min!r}"
        )
    k = fit.exponent
    if k >= quadratic_min:
        return "quadratic"
    if k > linear_max:
        return "superlinear"
    if k >= linear_min:
        return "linear"
    return "sublinear"


def is_flat(trend: LinearTrend, *, tolerance: float = 0.5) -> bool:
    """True when the robust (Theil-Sen) trend changes ``y`` by at most ``tolerance`` (fraction of
    the median) across the whole run: ``|robust_relative_slope| <= tolerance``.

    0.5 accepts the slow growth of per-transaction cost seen in a progressive load while still
    rejecting per-batch latency that doubles (or triples) from the first batch to the last.
    """
    if not tolerance >= 0.0:
        raise ValueError(f"is_flat: tolerance must be >= 0, got {tolerance!r}")
    return abs(trend.robust_relative_slope) <= tolerance


def fit_counter(ns: Sequence[float], counts: Sequence[float]) -> PowerLawFit | None:
    """Power-law fit of a deterministic counter (exact data: the CI usually collapses).

    Returns None when every count is 0 ("constant zero", e.g. scan steps on the full-cell path).
    Raises ValueError for negative counts, for a mix of zero and positive counts (no power law
    passes through 0), and for the input errors of :func:`fit_power_law`.
    """
    if len(ns) != len(counts):
        raise ValueError(f"fit_counter: got {len(ns)} sizes but {len(counts)} counts")
    if any(c < 0 for c in counts):
        raise ValueError("fit_counter: counts must be >= 0")
    if counts and all(c == 0 for c in counts):
        return None
    if any(c == 0 for c in counts):
        raise ValueError(
            "fit_counter: counts mix zero and positive values; a power law cannot fit them "
            f"(counts={list(counts)!r})"
        )
    return fit_power_law(ns, counts)


def classify_counter(
    ns: Sequence[float],
    counts: Sequence[float],
    *,
    linear_max: float = LINEAR_MAX,
    quadratic_min: float = QUADRATIC_MIN,
) -> CounterVerdict:
    """Verdict for a deterministic counter: "zero" (all 0), "constant" (``|k| <= 0.15``, the
    same per run whatever the size), otherwise the :func:`classify_exponent` verdict."""
    fit = fit_counter(ns, counts)
    if fit is None:
        return "zero"
    if abs(fit.exponent) <= COUNTER_CONSTANT_MAX:
        return "constant"
    return classify_exponent(fit, linear_max=linear_max, quadratic_min=quadratic_min)


def local_exponents(
    ns: Sequence[float], counts: Sequence[float]
) -> list[tuple[float, float, float]]:
    """``(n0, n1, k)`` between each pair of neighbouring sizes (ascending, counts > 0): the
    exponent of the cost's growth from ``n0`` to ``n1``, where a whole-sweep fit averages it."""
    return [
        (ns[i], ns[i + 1], math.log(counts[i + 1] / counts[i]) / math.log(ns[i + 1] / ns[i]))
        for i in range(len(ns) - 1)
    ]


def classify_exact_sweep(ns: Sequence[float], counts: Sequence[float]) -> CounterVerdict:
    """Verdict for exact counts over a size sweep (``nbstream scale``'s core calls): the
    whole-sweep exponent's verdict (as :func:`classify_counter`, without an interval), unless
    the steepest local exponent crosses ``LINEAR_MAX`` — a cost that starts at some size is then
    called by that local exponent (superlinear or quadratic), not averaged away."""
    k = log_slope(ns, counts)
    whole = PowerLawFit(k, (k, k), 1.0, 1.0, len(ns))
    verdict: CounterVerdict = (
        "constant" if abs(k) <= COUNTER_CONSTANT_MAX else classify_exponent(whole)
    )
    steepest = max((x[2] for x in local_exponents(ns, counts)), default=k)
    if steepest > LINEAR_MAX and verdict != "quadratic":
        verdict = classify_exponent(PowerLawFit(steepest, (steepest, steepest), 1.0, 1.0, 2))
    return verdict


def log_slope(ns: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` on ``log n`` (no interval: for exact counts)."""
    if len(ns) != len(ys) or len(set(ns)) < 2:
        raise ValueError("log_slope: need one y per n and at least 2 distinct n")
    if any(not (v > 0.0 and math.isfinite(v)) for v in (*ns, *ys)):
        raise ValueError("log_slope: values must be positive and finite")
    xs = [math.log(n) for n in ns]
    ls = [math.log(y) for y in ys]
    xm, ym = math.fsum(xs) / len(xs), math.fsum(ls) / len(ls)
    sxx = math.fsum((x - xm) ** 2 for x in xs)
    return math.fsum((x - xm) * (y - ym) for x, y in zip(xs, ls, strict=True)) / sxx


# --------------------------------------------------------------------------- sweeps


def sweep_sizes(start: int = 50, stop: int = 3200, factor: int = 2) -> list[int]:
    """Geometric sizes ``start, start·factor, ...`` up to and including ``stop`` when reached.

    ``sweep_sizes() == [50, 100, 200, 400, 800, 1600, 3200]``.
    """
    if start < 1:
        raise ValueError(f"sweep_sizes: start must be >= 1, got {start!r}")
    if factor < 2:
        raise ValueError(f"sweep_sizes: factor must be >= 2, got {factor!r}")
    if stop < start:
        raise ValueError(f"sweep_sizes: stop ({stop!r}) must be >= start ({start!r})")
    sizes: list[int] = []
    n = start
    while n <= stop:
        sizes.append(n)
        n *= factor
    return sizes
