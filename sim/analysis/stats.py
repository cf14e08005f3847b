"""The CI gate's judgement: paired time ratios, exact counters, the fitted exponent.

Pure functions over plain numbers (no I/O, no subprocesses), so every verdict rule is unit-tested
on synthetic samples.

* **Time** — for each interleaved pair ``i`` the ratio ``r_i = candidate_i / base_i``. The
  estimate is the median ratio; its confidence interval is the distribution-free sign-test
  (binomial order-statistic) interval of the median of the log-ratios. A time regression is
  flagged only when the CI's *lower* bound exceeds the threshold: the slowdown is then both real
  (not noise) and large (not a 3 % wobble). Never compared with a stored absolute baseline.
* **Counters** — deterministic (ops, transactions, scan steps, frames, bytes per cell): any
  increase is a regression. A counter that is not reproducible within one side (two runs
  disagree) is compared range against range: regressed only when the candidate's smallest value
  exceeds the base's largest.
* **Exponent** — ``time ≈ a·cells^k`` fitted per side by
  :func:`sim.analysis.complexity.fit_power_law`;
  the change of ``k`` is fitted on the paired ratios. Regressed when that change's CI lies above
  0 and it exceeds a tolerance, or (CI above 0) when the candidate's verdict turns "quadratic".

The judgement dataclasses (and their Markdown) are result data, in :mod:`sim.results.gate`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

from sim.analysis.complexity import classify_exponent, fit_power_law
from sim.analysis.complexity import log_slope as log_slope

# The judgements are result data: defined once in the result model, re-exported here.
from sim.results.gate import COUNTER_LABELS as COUNTER_LABELS
from sim.results.gate import Comparison as Comparison
from sim.results.gate import CounterJudgement as CounterJudgement
from sim.results.gate import ExponentJudgement as ExponentJudgement
from sim.results.gate import TimeJudgement as TimeJudgement
from sim.results.gate_signals import (
    CallsJudgement,
    FunctionDelta,
    InstructionJudgement,
    InstructionPoint,
)
from sim.results.gate_signals import MemoryJudgement as MemoryJudgement
from sim.results.gate_signals import MemoryMetric as MemoryMetric
from sim.results.self_test import SelfTestResult as SelfTestResult
from sim.results.self_test import SelfTestRun as SelfTestRun
from sim.results.self_test import detection_target as detection_target

__all__ = [
    "COUNTER_NAMES",
    "Comparison",
    "CounterJudgement",
    "ExponentJudgement",
    "SelfTestResult",
    "SelfTestRun",
    "TimeJudgement",
    "judge_calls",
    "judge_counters",
    "judge_exponent",
    "judge_instructions",
    "judge_memory",
    "judge_time",
    "log_slope",
    "sign_test_interval",
]

# Counters the gate judges, in display order (all from the lock-step counter run).
COUNTER_NAMES = (
    "ops",
    "transactions",
    "scan_steps",
    "frames",
    "bytes_per_cell",
    "doc_bytes_per_cell",
)
# --------------------------------------------------------------------------- time


def _binom_cdf_half(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) <= k)."""
    return math.fsum(math.comb(n, i) for i in range(k + 1)) / 2.0**n


def sign_test_interval(n: int, confidence: float = 0.95) -> tuple[int, int, float]:
    """0-based ranks ``(lo, hi)`` of the sorted sample bounding the median, and the level.

    ``[x_(lo), x_(hi)]`` covers the population median with probability ``level >= confidence``
    whatever the distribution (``level`` is exact). With too few values for ``confidence`` the
    interval is ``[min, max]`` and ``level`` says how much less it is.
    """
    if n < 1:
        raise ValueError("sign_test_interval: need at least one value")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    best = 0
    for k in range((n - 1) // 2 + 1):
        # ranks k .. n-1-k (0-based) cover the median unless >= n-k values fall on one side
        if 1.0 - 2.0 * _binom_cdf_half(k, n) >= confidence:
            best = k
        else:
            break
    level = 1.0 - 2.0 * _binom_cdf_half(best, n)
    return best, n - 1 - best, level


def judge_time(
    base: Sequence[float],
    candidate: Sequence[float],
    *,
    threshold: float,
    confidence: float = 0.95,
) -> TimeJudgement:
    """Judge paired times (``base[i]`` and ``candidate[i]`` measured back to back)."""
    if len(base) != len(candidate) or not base:
        raise ValueError("judge_time: need the same positive number of base and candidate times")
    if not threshold >= 1.0:
        raise ValueError(f"judge_time: threshold must be >= 1, got {threshold!r}")
    for t in (*base, *candidate):
        if not (math.isfinite(t) and t > 0.0):
            raise ValueError(f"judge_time: times must be positive and finite, got {t!r}")
    ratios = [c / b for b, c in zip(base, candidate, strict=True)]
    logs = sorted(math.log(r) for r in ratios)
    lo, hi, level = sign_test_interval(len(logs), confidence)
    median_ratio = math.exp(statistics.median(logs))
    ci = (math.exp(logs[lo]), math.exp(logs[hi]))
    regressed = ci[0] > threshold
    return TimeJudgement(
        median_ratio=median_ratio,
        ci=ci,
        ci_level=level,
        threshold=threshold,
        regressed=regressed,
        inconclusive=not regressed and median_ratio > threshold,
        base_median_s=statistics.median(base),
        candidate_median_s=statistics.median(candidate),
        ratios=tuple(ratios),
        base=tuple(base),
        candidate=tuple(candidate),
    )


# --------------------------------------------------------------------------- counters


def judge_counters(
    base_runs: Sequence[Mapping[str, float]],
    candidate_runs: Sequence[Mapping[str, float]],
    *,
    tolerance: float = 0.0,
    names: Sequence[str] = COUNTER_NAMES,
) -> dict[str, CounterJudgement]:
    """Any increase of a deterministic counter beyond ``tolerance`` (relative) is a regression."""
    if not base_runs or not candidate_runs:
        raise ValueError("judge_counters: need at least one run per side")
    if not tolerance >= 0.0:
        raise ValueError(f"judge_counters: tolerance must be >= 0, got {tolerance!r}")
    out: dict[str, CounterJudgement] = {}
    for name in names:
        if name not in base_runs[0] or name not in candidate_runs[0]:
            continue
        b = [float(run[name]) for run in base_runs]
        c = [float(run[name]) for run in candidate_runs]
        deterministic = len(set(b)) == 1 and len(set(c)) == 1
        limit = max(b) * (1.0 + tolerance)
        # Exact for deterministic counters (min == max); range against range otherwise.
        regressed = min(c) > limit
        out[name] = CounterJudgement(
            name, statistics.median(b), statistics.median(c), deterministic, tolerance, regressed
        )
    return out


# --------------------------------------------------------------------------- exponent


def judge_exponent(
    sizes: Sequence[int],
    base_times: Sequence[float],
    candidate_times: Sequence[float],
    *,
    tolerance: float = 0.15,
) -> ExponentJudgement:
    """Compare the exponents ``k`` of ``time ≈ a·cells^k`` (``sizes[i]`` ↔ ``*_times[i]``).

    Each side's ``k`` (with its CI and verdict) comes from its own log-log fit. The change of
    ``k`` is estimated *paired*: the slope of ``log(candidate_i / base_i)`` against
    ``log(cells_i)``, whose samples were taken back to back, so load on the machine that hits
    both sides of a pair cancels out. Regressed when that slope's CI lies above 0 and the slope
    exceeds ``tolerance``, or when the CI lies above 0 and the candidate's verdict turns
    "quadratic" while the base's was not.
    """
    if not tolerance >= 0.0:
        raise ValueError(f"judge_exponent: tolerance must be >= 0, got {tolerance!r}")
    if len(base_times) != len(sizes) or len(candidate_times) != len(sizes):
        raise ValueError("judge_exponent: need one base and one candidate time per size")
    ns = [float(n) for n in sizes]
    fb = fit_power_law(ns, base_times)
    fc = fit_power_law(ns, candidate_times)
    ratios = [c / b for b, c in zip(base_times, candidate_times, strict=True)]
    paired = fit_power_law(ns, ratios)
    vb, vc = classify_exponent(fb), classify_exponent(fc)
    significant = paired.ci[0] > 0.0
    crossed = vc == "quadratic" and vb != "quadratic"
    return ExponentJudgement(
        sizes=tuple(sorted(set(sizes))),
        base=fb.exponent,
        candidate=fc.exponent,
        base_ci=fb.ci,
        candidate_ci=fc.ci,
        base_verdict=vb,
        candidate_verdict=vc,
        delta=paired.exponent,
        delta_ci=paired.ci,
        tolerance=tolerance,
        regressed=significant and (paired.exponent > tolerance or crossed),
    )


# --------------------------------------------------------------------------- instructions


def _spread(values: Sequence[int]) -> float:
    return (max(values) - min(values)) / min(values)


def judge_instructions(
    base: Mapping[int, Sequence[int]],
    candidate: Mapping[int, Sequence[int]],
    *,
    tolerance: float,
    exponent_tolerance: float,
    phases: Sequence[tuple[str, int, int]] = (),
    functions: Sequence[tuple[str, int, int]] = (),
    elapsed_s: float | None = None,
) -> InstructionJudgement:
    """Judge instruction counts per load (``cells -> counts`` per side, every count > 0).

    Regressed when at some size the candidate's smallest count exceeds the base's largest by
    more than ``tolerance``, or when the exponent of instructions against cells (fitted on the
    median count per size) grew by more than ``exponent_tolerance``.
    """
    if not tolerance >= 0.0 or not exponent_tolerance >= 0.0:
        raise ValueError("judge_instructions: tolerances must be >= 0")
    sizes = sorted(set(base) & set(candidate))
    if not sizes:
        raise ValueError("judge_instructions: no size was counted on both sides")
    for n in sizes:
        if not base[n] or not candidate[n] or min(*base[n], *candidate[n]) <= 0:
            raise ValueError(f"judge_instructions: no positive counts at {n} cells")
    points = tuple(InstructionPoint(n, tuple(base[n]), tuple(candidate[n])) for n in sizes)
    repeated = [_spread(v) for n in sizes for v in (base[n], candidate[n]) if len(v) > 1]
    kb = kc = None
    if len(sizes) >= 2:
        kb = log_slope(sizes, [statistics.median(base[n]) for n in sizes])
        kc = log_slope(sizes, [statistics.median(candidate[n]) for n in sizes])
    return InstructionJudgement(
        available=True,
        tolerance=tolerance,
        exponent_tolerance=exponent_tolerance,
        points=points,
        spread=max(repeated) if repeated else None,
        base_exponent=kb,
        candidate_exponent=kc,
        phases=tuple(phases),
        functions=tuple(FunctionDelta(n, b, c) for n, b, c in functions),
        elapsed_s=elapsed_s,
    )


# --------------------------------------------------------------------------- memory


def judge_memory(
    base: Mapping[str, Sequence[float]],
    candidate: Mapping[str, Sequence[float]],
    *,
    tolerances: Mapping[str, float],
) -> MemoryJudgement:
    """Peak memory per metric (KiB, every measured load): regressed when the candidate's
    smallest peak exceeds the base's largest by more than the metric's tolerance."""
    metrics = []
    for name, tol in tolerances.items():
        b, c = base.get(name), candidate.get(name)
        if not b or not c:
            continue
        metrics.append(MemoryMetric(name, tuple(b), tuple(c), tol))
    if not metrics:
        return MemoryJudgement(False, "no peak-memory figures were reported")
    return MemoryJudgement(True, None, tuple(metrics))


# --------------------------------------------------------------------------- calls

TOP_CALLS = 8


def judge_calls(
    sizes: Sequence[int],
    base: Sequence[Mapping[str, int]],
    candidate: Sequence[Mapping[str, int]],
    *,
    tolerance: float,
    exponent_tolerance: float,
) -> CallsJudgement:
    """Per-function call counts of one load per size and side (``base[i]`` at ``sizes[i]``):
    totals per size, and the functions whose counts changed most at the last size."""
    if not (len(sizes) == len(base) == len(candidate) >= 1):
        raise ValueError("judge_calls: need one call map per size and side")
    last_b, last_c = base[-1], candidate[-1]
    changed = [
        (name, int(last_b.get(name, 0)), int(last_c.get(name, 0)))
        for name in set(last_b) | set(last_c)
        if last_b.get(name, 0) != last_c.get(name, 0)
    ]
    changed.sort(key=lambda t: (-abs(t[2] - t[1]), t[0]))
    return CallsJudgement(
        sizes=tuple(sizes),
        base=tuple(sum(m.values()) for m in base),
        candidate=tuple(sum(m.values()) for m in candidate),
        tolerance=tolerance,
        exponent_tolerance=exponent_tolerance,
        functions=tuple(FunctionDelta(n, b, c) for n, b, c in changed[:TOP_CALLS]),
    )
