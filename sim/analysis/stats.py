"""The CI gate's judgement: paired time ratios, exact counters, the fitted exponent; Markdown.

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
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sim.analysis.complexity import classify_exponent, fit_power_law

__all__ = [
    "COUNTER_NAMES",
    "Comparison",
    "CounterJudgement",
    "ExponentJudgement",
    "SelfTestResult",
    "SelfTestRun",
    "TimeJudgement",
    "judge_counters",
    "judge_exponent",
    "judge_time",
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
COUNTER_LABELS = {
    "ops": "Automerge ops",
    "transactions": "transactions",
    "scan_steps": "scan steps",
    "frames": "frames to the peer",
    "bytes_per_cell": "wire bytes per cell",
    "doc_bytes_per_cell": "saved doc bytes per cell",
}


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


@dataclass(frozen=True, slots=True)
class TimeJudgement:
    median_ratio: float
    ci: tuple[float, float]
    ci_level: float
    threshold: float
    regressed: bool
    inconclusive: bool  # the median exceeds the threshold but the CI does not
    base_median_s: float
    candidate_median_s: float
    ratios: tuple[float, ...]
    base: tuple[float, ...]
    candidate: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_ratio": self.median_ratio,
            "ci": list(self.ci),
            "ci_level": self.ci_level,
            "threshold": self.threshold,
            "regressed": self.regressed,
            "inconclusive": self.inconclusive,
            "base_median_s": self.base_median_s,
            "candidate_median_s": self.candidate_median_s,
            "ratios": list(self.ratios),
            "samples": {"base": list(self.base), "candidate": list(self.candidate)},
        }


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


@dataclass(frozen=True, slots=True)
class CounterJudgement:
    name: str
    base: float
    candidate: float
    deterministic: bool  # every run within each side gave the same value
    tolerance: float  # relative increase allowed (0 = none)
    regressed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "candidate": self.candidate,
            "delta": self.candidate - self.base,
            "deterministic": self.deterministic,
            "tolerance": self.tolerance,
            "regressed": self.regressed,
        }


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


@dataclass(frozen=True, slots=True)
class ExponentJudgement:
    sizes: tuple[int, ...]
    base: float
    candidate: float
    base_ci: tuple[float, float]
    candidate_ci: tuple[float, float]
    base_verdict: str
    candidate_verdict: str
    delta: float  # paired estimate of candidate k - base k
    delta_ci: tuple[float, float]
    tolerance: float
    regressed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "candidate": self.candidate,
            "delta": self.delta,
            "delta_ci": list(self.delta_ci),
            "base_ci": list(self.base_ci),
            "candidate_ci": list(self.candidate_ci),
            "base_verdict": self.base_verdict,
            "candidate_verdict": self.candidate_verdict,
            "tolerance": self.tolerance,
            "sizes": list(self.sizes),
            "regressed": self.regressed,
        }


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


# --------------------------------------------------------------------------- Markdown


def _mark(regressed: bool, warn: bool = False) -> str:
    if regressed:
        return "❌ regression"
    return "⚠️ inconclusive" if warn else "✅"


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _delta(base: float, candidate: float) -> str:
    d = candidate - base
    text = f"{d:+,.0f}" if float(d).is_integer() else f"{d:+,.2f}"
    if base:
        text += f" ({d / base:+.1%})"
    return text


@dataclass(frozen=True, slots=True)
class Comparison:
    """Every judgement of one base/candidate comparison."""

    time: TimeJudgement  # wall clock of the load
    cpu_time: TimeJudgement  # CPU time of the measuring process during the load
    counters: dict[str, CounterJudgement]
    exponent: ExponentJudgement

    @property
    def counter_regressions(self) -> list[str]:
        return [name for name, c in self.counters.items() if c.regressed]

    @property
    def regressed(self) -> bool:
        return bool(self.flagged_by())

    def flagged_by(self) -> list[str]:
        reasons = [n for n, t in (("time", self.time), ("cpu_time", self.cpu_time)) if t.regressed]
        reasons += [f"counter:{name}" for name in self.counter_regressions]
        return reasons + (["exponent"] if self.exponent.regressed else [])

    def markdown_rows(self, pairs: int) -> list[str]:
        """The summary table: metric | base | candidate | ratio / Δ | threshold | verdict."""
        rows = [
            "| metric | base | candidate | ratio / Δ | threshold | verdict |",
            "|---|---:|---:|---:|---|---|",
        ]
        for label, t in (("load time", self.time), ("load CPU time", self.cpu_time)):
            rows.append(
                f"| {label} (median of {pairs} interleaved pairs) | {t.base_median_s * 1e3:.1f} ms"
                f" | {t.candidate_median_s * 1e3:.1f} ms | x{t.median_ratio:.3f} "
                f"({t.ci_level:.0%} CI x{t.ci[0]:.3f} to x{t.ci[1]:.3f}) "
                f"| CI low ≤ x{t.threshold:g} | {_mark(t.regressed, t.inconclusive)} |"
            )
        for name, c in self.counters.items():
            limit = "any increase" if c.tolerance == 0 else f"> +{c.tolerance:.1%}"
            if not c.deterministic:
                limit += " (range vs range: not reproducible)"
            label = COUNTER_LABELS.get(name, name)
            rows.append(
                f"| {label} | {_num(c.base)} | {_num(c.candidate)} "
                f"| {_delta(c.base, c.candidate)} | {limit} | {_mark(c.regressed)} |"
            )
        e = self.exponent
        span = f"{e.sizes[0]} to {e.sizes[-1]} cells" if e.sizes else "sweep"
        rows.append(
            f"| CPU time exponent k ({span}) | {e.base:.3f} ({e.base_verdict}) "
            f"| {e.candidate:.3f} ({e.candidate_verdict}) "
            f"| Δk {e.delta:+.3f} (CI {e.delta_ci[0]:+.3f} to {e.delta_ci[1]:+.3f}) "
            f"| Δk ≤ {e.tolerance:g} or CI ∋ 0; not turning quadratic | {_mark(e.regressed)} |"
        )
        return rows


# --------------------------------------------------------------------------- self-test


@dataclass(frozen=True, slots=True)
class SelfTestRun:
    """One gate comparison of the self-test."""

    condition: str  # "unchanged" or the name of the injected regression
    rerun: int
    flagged: bool
    flagged_by: tuple[str, ...]
    median_ratio: float
    ci: tuple[float, float]
    cpu_ratio: float
    cpu_ci: tuple[float, float]
    exponent_delta: float
    exponent_ci: tuple[float, float]
    elapsed_s: float
    wall_ratios: tuple[float, ...] = ()  # per pair, for offline analysis of other settings
    cpu_ratios: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "condition": self.condition,
            "rerun": self.rerun,
            "flagged": self.flagged,
            "flagged_by": list(self.flagged_by),
            "median_ratio": self.median_ratio,
            "ci": list(self.ci),
            "cpu_ratio": self.cpu_ratio,
            "cpu_ci": list(self.cpu_ci),
            "exponent_delta": self.exponent_delta,
            "exponent_ci": list(self.exponent_ci),
            "elapsed_s": self.elapsed_s,
            "ratios": {"wall": list(self.wall_ratios), "cpu": list(self.cpu_ratios)},
        }

    def summary(self) -> str:
        """One progress line."""
        flag = "FLAGGED by " + ", ".join(self.flagged_by) if self.flagged else "pass"
        return (
            f"{self.condition}: {flag}; wall x{self.median_ratio:.3f} "
            f"[{self.ci[0]:.3f}, {self.ci[1]:.3f}], cpu x{self.cpu_ratio:.3f} "
            f"[{self.cpu_ci[0]:.3f}, {self.cpu_ci[1]:.3f}], Δk {self.exponent_delta:+.3f} "
            f"[{self.exponent_ci[0]:+.3f}, {self.exponent_ci[1]:+.3f}]; {self.elapsed_s:.1f} s"
        )


def detection_target(reruns: int, condition: str) -> int:
    """Flags required: every rerun for the quadratic path, >= 95 % (19/20) for a slowdown."""
    return reruns if condition == "quadratic" else math.ceil(0.95 * reruns)


@dataclass(frozen=True, slots=True)
class SelfTestResult:
    reruns: int
    pairs: Mapping[str, int]  # pairs per comparison, per condition
    cells: int
    time_threshold: float
    runs: tuple[SelfTestRun, ...]
    elapsed_s: float

    def _of(self, condition: str) -> list[SelfTestRun]:
        return [r for r in self.runs if r.condition == condition]

    @property
    def false_alarms(self) -> int:
        return sum(r.flagged for r in self._of("unchanged"))

    @property
    def detections(self) -> dict[str, list[int]]:
        names = dict.fromkeys(r.condition for r in self.runs if r.condition != "unchanged")
        return {n: [sum(r.flagged for r in self._of(n)), len(self._of(n))] for n in names}

    @property
    def targets_met(self) -> bool:
        ok = self.false_alarms == 0 and len(self._of("unchanged")) == self.reruns
        for name, (flagged, runs) in self.detections.items():
            ok = ok and runs == self.reruns and flagged >= detection_target(self.reruns, name)
        return ok

    def margins(self) -> dict[str, float | None]:
        """How close the time and exponent rules came to a wrong verdict."""

        def extreme(condition: str, pick: Any, value: Any) -> float | None:
            runs = self._of(condition)
            return float(pick(value(r) for r in runs)) if runs else None

        slow = "slowdown_1.5x"
        return {
            "unchanged_max_ci_low": extreme("unchanged", max, lambda r: r.ci[0]),
            "unchanged_max_cpu_ci_low": extreme("unchanged", max, lambda r: r.cpu_ci[0]),
            "unchanged_max_median_ratio": extreme("unchanged", max, lambda r: r.median_ratio),
            "slowdown_min_ci_low": extreme(slow, min, lambda r: r.ci[0]),
            "slowdown_min_cpu_ci_low": extreme(slow, min, lambda r: r.cpu_ci[0]),
            "slowdown_min_best_ci_low": extreme(slow, min, lambda r: max(r.ci[0], r.cpu_ci[0])),
            "slowdown_min_median_ratio": extreme(slow, min, lambda r: r.median_ratio),
            "unchanged_max_exponent_delta": extreme("unchanged", max, lambda r: r.exponent_delta),
            "quadratic_min_exponent_delta": extreme("quadratic", min, lambda r: r.exponent_delta),
        }

    def to_dict(self) -> dict[str, Any]:
        unchanged = len(self._of("unchanged"))
        return {
            "command": "gate-self-test",
            "reruns": self.reruns,
            "false_alarms": self.false_alarms,
            "false_alarm_rate": self.false_alarms / unchanged if unchanged else None,
            "detections": self.detections,
            "detection_rates": {n: f / r if r else None for n, (f, r) in self.detections.items()},
            "targets_met": self.targets_met,
            "pairs": dict(self.pairs),
            "cells": self.cells,
            "time_threshold": self.time_threshold,
            "margins": self.margins(),
            "runs": [r.to_dict() for r in self.runs],
            "elapsed_s": self.elapsed_s,
        }

    def to_markdown(self) -> str:
        ok = self.targets_met
        head = (
            "✅ **nbstream perf gate self-test: targets met**"
            if ok
            else ("❌ **nbstream perf gate self-test: targets missed**")
        )
        rows = [
            f"### {head}",
            "",
            f"{self.cells}-cell notebook, time threshold x{self.time_threshold:g}, "
            f"{self.reruns} reruns per condition, {self.elapsed_s:.0f} s.",
            "",
            "| condition | pairs | flagged | rate | target | verdict |",
            "|---|---:|---:|---:|---|---|",
        ]
        unchanged = len(self._of("unchanged"))
        rows.append(
            f"| unchanged code (false alarms) | {self.pairs.get('unchanged', 0)} "
            f"| {self.false_alarms}/{unchanged} | {self.false_alarms / max(unchanged, 1):.0%} "
            f"| 0 | {'✅' if self.false_alarms == 0 else '❌'} |"
        )
        for name, (flagged, runs) in self.detections.items():
            need = detection_target(self.reruns, name)
            rows.append(
                f"| injected {name} (detections) | {self.pairs.get(name, 0)} | {flagged}/{runs} "
                f"| {flagged / max(runs, 1):.0%} | ≥ {need}/{self.reruns} "
                f"| {'✅' if flagged >= need else '❌'} |"
            )
        m = self.margins()
        rows += [
            "",
            "Margins: " + ", ".join(f"{k} = {v:.3f}" for k, v in m.items() if v is not None),
            "",
        ]
        return "\n".join(rows)
