from __future__ import annotations

import dataclasses
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.analysis import complexity as complexity
from sim.analysis.complexity import (
    THEIL_SEN_EXACT_MAX_POINTS,
    LinearTrend,
    PowerLawFit,
    classify_counter,
    classify_exponent,
    fit_counter,
    fit_linear_trend,
    fit_power_law,
    is_flat,
    student_t_quantile,
    sweep_sizes,
    theil_sen,
)

SWEEP = sweep_sizes()


def _fit(exponent: float) -> PowerLawFit:
    return PowerLawFit(
        exponent=exponent, ci=(exponent, exponent), coefficient=1.0, r_squared=1.0, n_points=7
    )


def _noisy_power_law(
    seed: int, a: float, k: float, sigma: float = 0.2, repeats: int = 3
) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    ns = [float(n) for n in SWEEP for _ in range(repeats)]
    ys = [a * n**k * math.exp(rng.gauss(0.0, sigma)) for n in ns]
    return ns, ys


# --------------------------------------------------------------------------- sweep sizes


def test_sweep_sizes_default() -> None:
    assert sweep_sizes() == [50, 100, 200, 400, 800, 1600, 3200]


def test_sweep_sizes_custom_and_stop_not_reached() -> None:
    assert sweep_sizes(1, 10, 3) == [1, 3, 9]
    assert sweep_sizes(5, 5) == [5]


@pytest.mark.parametrize(
    ("args", "match"),
    [((0, 10, 2), "start"), ((10, 5, 2), "stop"), ((1, 10, 1), "factor")],
)
def test_sweep_sizes_rejects_bad_arguments(args: tuple[int, int, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sweep_sizes(*args)


# --------------------------------------------------------------------------- Student t


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        (0.975, 1, 12.706),
        (0.975, 3, 3.182),
        (0.975, 10, 2.228),
        (0.975, 30, 2.042),
        (0.95, 5, 2.015),
        (0.95, 1, 6.314),
        (0.995, 2, 9.925),
        (0.995, 20, 2.845),
        (0.90, 8, 1.397),
        (0.975, 120, 1.980),
    ],
)
def test_t_quantile_table(p: float, df: int, expected: float) -> None:
    assert student_t_quantile(p, df) == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995, 0.9999])
def test_t_quantile_closed_forms(p: float) -> None:
    # df=1 is Cauchy; df=2 has a closed form too.
    assert student_t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
    df2 = (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    assert student_t_quantile(p, 2) == pytest.approx(df2, rel=1e-9)


def test_t_quantile_symmetry_median_and_normal_limit() -> None:
    assert student_t_quantile(0.5, 7) == 0.0
    assert student_t_quantile(0.025, 10) == pytest.approx(-student_t_quantile(0.975, 10))
    assert student_t_quantile(0.975, math.inf) == pytest.approx(1.959964, abs=1e-6)
    assert student_t_quantile(0.975, 1e7) == pytest.approx(1.959964, abs=1e-6)


def test_t_quantile_is_continuous_across_the_large_df_switch() -> None:
    # At the switch the exact (incomplete-beta) inversion and Cornish-Fisher agree closely.
    for p in (0.9, 0.975, 0.9995):
        exact = complexity._t_quantile_bisect(p, 1000.0)
        assert complexity._t_quantile_cornish_fisher(p, 1000.0) == pytest.approx(exact, abs=1e-9)
    # Monotone decreasing in df towards the normal quantile.
    values = [student_t_quantile(0.975, df) for df in (1, 2, 5, 30, 500, 999, 1000, 5000)]
    assert values == sorted(values, reverse=True)


@pytest.mark.parametrize(("p", "df"), [(0.0, 3), (1.0, 3), (0.5, 0), (0.9, -1), (0.9, math.nan)])
def test_t_quantile_rejects_bad_arguments(p: float, df: float) -> None:
    with pytest.raises(ValueError):
        student_t_quantile(p, df)


# --------------------------------------------------------------------------- power-law fits


def test_exact_linear_data() -> None:
    fit = fit_power_law(SWEEP, [3.0 * n for n in SWEEP])
    assert fit.exponent == pytest.approx(1.0, abs=1e-9)
    assert fit.ci == (fit.exponent, fit.exponent)
    assert fit.coefficient == pytest.approx(3.0, rel=1e-9)
    assert fit.r_squared == 1.0
    assert fit.n_points == len(SWEEP)
    assert classify_exponent(fit) == "linear"


def test_exact_quadratic_and_superlinear_data() -> None:
    quad = fit_power_law(SWEEP, [float(n) ** 2 for n in SWEEP])
    assert quad.exponent == pytest.approx(2.0, abs=1e-9)
    assert classify_exponent(quad) == "quadratic"
    mid = fit_power_law(SWEEP, [float(n) ** 1.5 for n in SWEEP])
    assert mid.exponent == pytest.approx(1.5, abs=1e-9)
    assert classify_exponent(mid) == "superlinear"


def test_constant_data_has_zero_exponent() -> None:
    fit = fit_power_law(SWEEP, [7.0] * len(SWEEP))
    assert fit.exponent == 0.0
    assert fit.ci == (0.0, 0.0)
    assert fit.r_squared == 1.0
    assert classify_exponent(fit) == "sublinear"


def test_power_law_fit_is_frozen_and_slotted() -> None:
    fit = fit_power_law(SWEEP, [float(n) for n in SWEEP])
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.exponent = 2.0  # type: ignore[misc]
    assert not hasattr(fit, "__dict__")


def test_repeated_measurements_add_points() -> None:
    ns, ys = _noisy_power_law(seed=1, a=2.0, k=1.0)
    fit = fit_power_law(ns, ys)
    assert fit.n_points == 3 * len(SWEEP)
    assert fit.ci[0] < fit.exponent < fit.ci[1]
    assert 0.0 < fit.r_squared < 1.0
    # A wider confidence gives a wider interval.
    wide = fit_power_law(ns, ys, confidence=0.99)
    assert wide.ci[0] < fit.ci[0] and wide.ci[1] > fit.ci[1]


@pytest.mark.parametrize("k", [1.0, 2.0])
def test_noisy_fit_ci_coverage(k: float) -> None:
    covered = 0
    for seed in range(100):
        ns, ys = _noisy_power_law(seed, a=2.5, k=k)
        fit = fit_power_law(ns, ys)
        covered += fit.ci[0] <= k <= fit.ci[1]
        # The verdict is robust to this noise level.
        assert classify_exponent(fit) == ("linear" if k == 1.0 else "quadratic")
    assert covered >= 90


def test_ci_matches_hand_computation() -> None:
    ns = [1.0, math.e, math.e**2, math.e**3]
    ys = [1.0, math.e**1.1, math.e**1.9, math.e**3.2]
    fit = fit_power_law(ns, ys)
    # Log space: (0, 0), (1, 1.1), (2, 1.9), (3, 3.2). Sxx = 5, Sxy = 5.2, Syy = 5.45,
    # slope = 1.04, residual SS = 5.45 - 5.2**2 / 5 = 0.042, se = sqrt(0.042 / 2 / 5),
    # t(0.975, 2) = 4.302653.
    assert fit.exponent == pytest.approx(1.04)
    assert fit.coefficient == pytest.approx(math.exp(1.55 - 1.04 * 1.5))
    half = 4.302652729749464 * math.sqrt(0.042 / 2 / 5)
    assert fit.ci == pytest.approx((1.04 - half, 1.04 + half))
    assert fit.r_squared == pytest.approx(1 - 0.042 / 5.45)


@given(
    a=st.floats(min_value=1e-3, max_value=1e3),
    k=st.floats(min_value=0.5, max_value=2.5),
)
def test_exact_power_law_recovered(a: float, k: float) -> None:
    fit = fit_power_law(SWEEP, [a * float(n) ** k for n in SWEEP])
    assert fit.exponent == pytest.approx(k, abs=1e-6)
    assert fit.coefficient == pytest.approx(a, rel=1e-6)
    assert fit.ci[0] <= fit.exponent <= fit.ci[1]
    assert fit.ci[1] - fit.ci[0] < 1e-6


@pytest.mark.parametrize(
    ("ns", "ys", "match"),
    [
        ([1.0, 2.0], [1.0, 2.0], "at least 3 points"),
        ([1.0, 2.0, 3.0], [1.0, 2.0], "3 x values but 2 y values"),
        ([1.0, 2.0, 3.0], [1.0, 0.0, 3.0], "y values must be positive"),
        ([1.0, -2.0, 3.0], [1.0, 2.0, 3.0], "n values must be positive"),
        ([5.0, 5.0, 5.0], [1.0, 2.0, 3.0], "at least 2 distinct"),
        ([1.0, 2.0, 3.0], [1.0, math.nan, 3.0], "finite"),
        ([1.0, 2.0, math.inf], [1.0, 2.0, 3.0], "finite"),
    ],
)
def test_power_law_errors(ns: list[float], ys: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_power_law(ns, ys)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5])
def test_power_law_rejects_bad_confidence(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence"):
        fit_power_law(SWEEP, [float(n) for n in SWEEP], confidence=confidence)


# --------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize(
    ("k", "verdict"),
    [
        (-0.5, "sublinear"),
        (0.0, "sublinear"),
        (0.69, "sublinear"),
        (0.7, "linear"),
        (1.0, "linear"),
        (1.15, "linear"),
        (1.16, "superlinear"),
        (1.69, "superlinear"),
        (1.7, "quadratic"),
        (2.0, "quadratic"),
        (3.0, "quadratic"),
    ],
)
def test_classify_exponent_thresholds(k: float, verdict: str) -> None:
    assert classify_exponent(_fit(k)) == verdict


def test_classify_exponent_custom_thresholds() -> None:
    assert classify_exponent(_fit(1.3), linear_max=1.4) == "linear"
    assert classify_exponent(_fit(1.3), quadratic_min=1.25) == "quadratic"
    with pytest.raises(ValueError, match="thresholds"):
        classify_exponent(_fit(1.0), linear_max=2.0, quadratic_min=1.5)


# --------------------------------------------------------------------------- counters


def test_counter_all_zero() -> None:
    assert fit_counter(SWEEP, [0] * len(SWEEP)) is None
    assert classify_counter(SWEEP, [0] * len(SWEEP)) == "zero"


def test_counter_triangular_is_quadratic() -> None:
    counts = [n * (n + 1) // 2 * 3 for n in SWEEP]
    fit = fit_counter(SWEEP, counts)
    assert fit is not None
    assert 1.95 < fit.exponent < 2.0
    assert classify_counter(SWEEP, counts) == "quadratic"


def test_counter_linear_is_exact() -> None:
    counts = [9 * n for n in SWEEP]
    fit = fit_counter(SWEEP, counts)
    assert fit is not None
    assert fit.exponent == pytest.approx(1.0, abs=1e-12)
    assert fit.ci == (fit.exponent, fit.exponent)
    assert fit.r_squared == 1.0
    assert classify_counter(SWEEP, counts) == "linear"


def test_counter_other_verdicts() -> None:
    assert classify_counter(SWEEP, [4] * len(SWEEP)) == "constant"
    assert classify_counter(SWEEP, [n // 3 + 1 for n in SWEEP]) == "linear"
    assert classify_counter(SWEEP, [round(n**1.4) for n in SWEEP]) == "superlinear"
    assert classify_counter(SWEEP, [round(n**0.5) for n in SWEEP]) == "sublinear"


def test_counter_errors() -> None:
    with pytest.raises(ValueError, match="mix zero and positive"):
        fit_counter(SWEEP, [0, 0, 0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match=">= 0"):
        classify_counter(SWEEP, [-1, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="7 sizes but 2 counts"):
        fit_counter(SWEEP, [0, 0])
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_counter([50, 100], [1, 2])


# --------------------------------------------------------------------------- linear trends


def test_linear_trend_exact() -> None:
    xs = [float(i) for i in range(10)]
    trend = fit_linear_trend(xs, [2.0 + 0.5 * x for x in xs])
    assert trend.slope == pytest.approx(0.5)
    assert trend.intercept == pytest.approx(2.0)
    assert trend.ci == (trend.slope, trend.slope)
    assert trend.r_squared == 1.0
    assert trend.robust_slope == pytest.approx(0.5)
    # median y = 2 + 0.5 * 4.5 = 4.25; span 9 -> relative 0.5 * 9 / 4.25
    assert trend.relative_slope == pytest.approx(0.5 * 9 / 4.25)
    assert trend.robust_relative_slope == pytest.approx(trend.relative_slope)
    assert trend.n_points == 10
    assert isinstance(trend, LinearTrend)


def test_flat_noisy_series_is_flat() -> None:
    rng = random.Random(7)
    xs = [float(i) for i in range(200)]
    ys = [1.0e-3 * math.exp(rng.gauss(0.0, 0.2)) for _ in xs]  # ~1 ms per batch, 20% noise
    trend = fit_linear_trend(xs, ys)
    assert abs(trend.robust_relative_slope) < 0.1
    assert trend.ci[0] <= 0.0 <= trend.ci[1]
    assert is_flat(trend)


def test_series_growing_threefold_is_not_flat() -> None:
    rng = random.Random(7)
    xs = [float(i) for i in range(200)]
    ys = [(1.0 + 2.0 * x / 199) * math.exp(rng.gauss(0.0, 0.2)) for x in xs]
    trend = fit_linear_trend(xs, ys)
    assert trend.robust_relative_slope == pytest.approx(1.0, abs=0.15)  # +2 over median ~2
    assert not is_flat(trend)
    assert is_flat(trend, tolerance=1.5)


def test_is_flat_rejects_negative_tolerance() -> None:
    trend = fit_linear_trend([0.0, 1.0, 2.0], [1.0, 1.0, 1.0])
    assert is_flat(trend, tolerance=0.0)
    with pytest.raises(ValueError, match="tolerance"):
        is_flat(trend, tolerance=-0.1)


def test_theil_sen_resists_wild_outliers() -> None:
    ols_errors = []
    for seed in range(10):
        rng = random.Random(seed)
        xs = [float(i) for i in range(100)]
        ys = [10.0 + 0.5 * x + rng.gauss(0.0, 1.0) for x in xs]
        for i in rng.sample(range(100), 20):  # 20% of batches hit a 10x stall
            ys[i] *= 10.0
        trend = fit_linear_trend(xs, ys)
        assert trend.robust_slope == pytest.approx(0.5, abs=0.03)
        assert theil_sen(xs, ys) == trend.robust_slope
        ols_errors.append(abs(trend.slope - 0.5))
    assert sum(ols_errors) / len(ols_errors) > 0.5
    assert sum(err > 0.3 for err in ols_errors) >= 8


def test_outliers_do_not_break_flatness_verdict() -> None:
    rng = random.Random(3)
    xs = [float(i) for i in range(100)]
    ys = [1.0 + rng.gauss(0.0, 0.05) for _ in xs]
    for i in range(80, 100, 2):  # a burst of 10x stalls near the end of the run
        ys[i] *= 10.0
    trend = fit_linear_trend(xs, ys)
    assert abs(trend.relative_slope) > 0.5  # OLS is fooled
    assert is_flat(trend)


def test_theil_sen_ignores_tied_x_pairs() -> None:
    assert theil_sen([1.0, 1.0, 2.0, 2.0], [0.0, 2.0, 3.0, 5.0]) == pytest.approx(3.0)


def test_theil_sen_subsamples_large_inputs_deterministically() -> None:
    rng = random.Random(5)
    n = THEIL_SEN_EXACT_MAX_POINTS + 500
    xs = [rng.random() * 100 for _ in range(n)]
    ys = [3.0 * x + rng.gauss(0.0, 1.0) for x in xs]
    first = theil_sen(xs, ys)
    assert first == pytest.approx(3.0, abs=0.01)
    assert theil_sen(xs, ys) == first


def test_theil_sen_errors() -> None:
    with pytest.raises(ValueError, match="distinct"):
        theil_sen([1.0, 1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="2 x values but 1 y values"):
        theil_sen([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        theil_sen([1.0, math.nan], [1.0, 2.0])


@pytest.mark.parametrize(
    ("xs", "ys", "match"),
    [
        ([0.0, 1.0], [1.0, 1.0], "at least 3 points"),
        ([0.0, 0.0, 0.0], [1.0, 2.0, 3.0], "at least 2 distinct"),
        ([0.0, 1.0, 2.0], [0.0, 0.0, 1.0], "median of y is 0"),
        ([0.0, 1.0, 2.0], [1.0, math.inf, 1.0], "finite"),
    ],
)
def test_linear_trend_errors(xs: list[float], ys: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_linear_trend(xs, ys)
