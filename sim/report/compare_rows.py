"""The pieces every ``nbstream compare`` kind shares: a :class:`Row` of the table, the
:class:`Comparison` it belongs to, the bad-input error, and the row rules common to kinds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ADVISORY_COUNTERS",
    "COUNTERS",
    "CompareError",
    "Comparison",
    "Row",
    "counter_rows",
    "memory_row",
    "same_workload",
    "separated_row",
    "time_row",
]

COUNTERS = ("ops", "transactions", "scan_steps")
ADVISORY_COUNTERS = ("sync_messages", "sync_bytes")  # depend on how replies interleave


class CompareError(ValueError):
    """Bad input: the files cannot be read or are not comparable (exit 2)."""


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    a: float | None
    b: float | None
    verdict: str  # same | better | worse | regression | faster | slower | n/a
    fails: bool = False

    @property
    def ratio(self) -> float | None:
        if self.a is None or self.b is None or self.a == 0:
            return None
        return self.b / self.a


@dataclass(frozen=True, slots=True)
class Comparison:
    kind: str
    rows: tuple[Row, ...]
    machines: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]

    @property
    def regression(self) -> bool:
        return any(r.fails for r in self.rows)

    def markdown(self, a_name: str, b_name: str) -> str:
        lines = [
            f"### nbstream compare ({self.kind}): {'REGRESSION' if self.regression else 'ok'}",
            "",
            f"| figure | A `{a_name}` | B `{b_name}` | B/A | verdict |",
            "|---|---:|---:|---:|---|",
        ]
        for r in self.rows:
            ratio = "" if r.ratio is None else f"{r.ratio:.3f}"
            lines.append(f"| {r.name} | {_fmt(r.a)} | {_fmt(r.b)} | {ratio} | {r.verdict} |")
        for label, m in zip(("A", "B"), self.machines, strict=True):
            if m:
                lines.append(
                    f"\n{label}: {m.get('cpu_model')} x{m.get('cpu_count')}, python "
                    f"{m.get('python')}, automerge {m.get('automerge')}, load "
                    f"{m.get('load_average')}, {m.get('timestamp')}"
                )
        return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4g}"


def same_workload(a: Mapping[str, Any], b: Mapping[str, Any], keys: Sequence[str]) -> None:
    for key in keys:
        va = a["notebook"]["sha256"] if key == "notebook" else a.get(key)
        vb = b["notebook"]["sha256"] if key == "notebook" else b.get(key)
        if va != vb:
            what = "notebooks" if key == "notebook" else f"{key}s"
            raise CompareError(f"the results measure different {what}: {va!r} vs {vb!r}")


def counter_rows(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Row]:
    rows = []
    ca, cb = a.get("counters", {}), b.get("counters", {})
    for key in COUNTERS + ADVISORY_COUNTERS:
        if key not in ca and key not in cb:
            continue
        va, vb = ca.get(key), cb.get(key)
        if va is None or vb is None:
            rows.append(Row(key, va, vb, "n/a"))
            continue
        worse = vb > va
        if key in COUNTERS:
            verdict = "regression" if worse else ("better" if vb < va else "same")
            rows.append(Row(key, va, vb, verdict, fails=worse))
        else:
            rows.append(Row(key, va, vb, "more" if worse else ("fewer" if vb < va else "same")))
    return rows


def memory_row(a: Mapping[str, Any], b: Mapping[str, Any], threshold: float) -> list[Row]:
    va, vb = a.get("peak_rss_kib"), b.get("peak_rss_kib")
    if va is None and vb is None:
        return []
    if va is None or vb is None or va <= 0:
        return [Row("peak_rss_kib", va, vb, "n/a")]
    ratio = vb / va
    fails = ratio > threshold
    verdict = "regression" if fails else ("better" if ratio < 1 / threshold else "same")
    return [Row("peak_rss_kib", va, vb, verdict, fails=fails)]


def time_row(name: str, va: float | None, vb: float | None, threshold: float) -> Row:
    if va is None or vb is None or va <= 0:
        return Row(name, va, vb, "n/a")
    ratio = vb / va
    verdict = "slower" if ratio > threshold else ("faster" if ratio < 1 / threshold else "same")
    return Row(name, va, vb, verdict)


def exact_row(name: str, va: float | None, vb: float | None) -> Row:
    """A deterministic count: any increase is a regression (same code, same workload, same
    count to the unit)."""
    if va is None or vb is None:
        return Row(name, va, vb, "n/a")
    verdict = "regression" if vb > va else ("better" if vb < va else "same")
    return Row(name, va, vb, verdict, fails=vb > va)


def ratio_row(name: str, va: float | None, vb: float | None, tolerance: float) -> Row:
    """A count that repeats to within ``tolerance`` (relative): fails above ``1 + tolerance``."""
    if va is None or vb is None or va <= 0:
        return Row(name, va, vb, "n/a")
    ratio = vb / va
    fails = ratio > 1.0 + tolerance
    verdict = "regression" if fails else ("better" if ratio < 1.0 - tolerance else "same")
    return Row(name, va, vb, verdict, fails=fails)


def exponent_row(name: str, ka: float | None, kb: float | None, tolerance: float) -> Row:
    """An exponent of exact counts: fails when it grew by more than ``tolerance``."""
    if ka is None or kb is None:
        return Row(name, ka, kb, "n/a")
    fails = kb - ka > tolerance
    verdict = "regression" if fails else ("better" if ka - kb > tolerance else "same")
    return Row(name, ka, kb, verdict, fails=fails)


def separated_row(name: str, runs_a: Sequence[float], runs_b: Sequence[float], t: float) -> Row:
    """Times of many runs: a regression only when every run of B is slower than every run of A
    by ``t`` (the runs of one file are the only spread it carries); the medians are shown."""
    if not runs_a or not runs_b:
        return Row(name, None, None, "n/a")
    median_a, median_b = sorted(runs_a)[len(runs_a) // 2], sorted(runs_b)[len(runs_b) // 2]
    separated = min(runs_b) > max(runs_a) * t
    verdict = "regression" if separated else time_row("", median_a, median_b, t).verdict
    return Row(name, median_a, median_b, verdict, fails=separated)


def info_row(name: str, va: str | None, vb: str | None) -> Row:
    """A text shown for the reader (a verdict, a server): never fails; ``a``/``b`` are absent
    from the numbers and the verdict column says what changed."""
    return Row(name, None, None, f"{va} -> {vb}" if va != vb else f"{vb} (same)")
