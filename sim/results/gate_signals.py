"""The gate's deterministic signals beside time: instruction counts and peak memory.

:class:`InstructionJudgement` (made by :func:`sim.analysis.stats.judge_instructions`) and
:class:`MemoryJudgement` (:func:`sim.analysis.stats.judge_memory`) are parts of a
:class:`sim.results.gate.Comparison`; each can be *unavailable* (``available`` false, with the
``reason``), which never fails a gate by itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.results.base import JsonDict, Reader

__all__ = [
    "CallsJudgement",
    "FunctionDelta",
    "InstructionJudgement",
    "InstructionPoint",
    "MemoryJudgement",
    "MemoryMetric",
]


@dataclass(frozen=True, slots=True)
class InstructionPoint:
    """Instructions of every counted load at one size, per side."""

    cells: int
    base: tuple[int, ...]
    candidate: tuple[int, ...]

    @property
    def ratio(self) -> float:
        """Candidate over base, range against range: the candidate's smallest count over the
        base's largest (exact when each side repeats to the instruction)."""
        return min(self.candidate) / max(self.base)

    def to_json(self) -> JsonDict:
        return {
            "cells": self.cells,
            "base": list(self.base),
            "candidate": list(self.candidate),
            "ratio": self.ratio,
        }

    @classmethod
    def read(cls, r: Reader) -> InstructionPoint:
        return cls(
            r.integer("cells"),
            tuple(int(v) for v in r.integers("base")),
            tuple(int(v) for v in r.integers("candidate")),
        )


@dataclass(frozen=True, slots=True)
class FunctionDelta:
    """One native function's inclusive instructions at the largest counted size."""

    name: str
    base: int
    candidate: int

    def to_json(self) -> JsonDict:
        return {"name": self.name, "base": self.base, "candidate": self.candidate}

    @classmethod
    def read(cls, r: Reader) -> FunctionDelta:
        return cls(r.text("name"), r.integer("base"), r.integer("candidate"))


@dataclass(frozen=True, slots=True)
class InstructionJudgement:
    """Instructions per load (valgrind callgrind), base against candidate.

    Regressed when at some size the candidate's count exceeds the base's by more than
    ``tolerance`` (relative), or when the exponent of instructions against cells grew by more
    than ``exponent_tolerance``. ``spread`` is the largest relative difference between two
    counts of the same load on one side (the measured reproducibility of this run)."""

    available: bool
    reason: str | None = None
    tolerance: float = 0.0
    exponent_tolerance: float = 0.0
    points: tuple[InstructionPoint, ...] = ()
    spread: float | None = None
    base_exponent: float | None = None
    candidate_exponent: float | None = None
    phases: tuple[tuple[str, int, int], ...] = ()  # (phase, base, candidate) at the largest size
    functions: tuple[FunctionDelta, ...] = ()  # the largest changes at the largest size
    elapsed_s: float | None = None

    @property
    def ratio(self) -> float | None:
        return max((p.ratio for p in self.points), default=None)

    @property
    def delta_exponent(self) -> float | None:
        if self.base_exponent is None or self.candidate_exponent is None:
            return None
        return self.candidate_exponent - self.base_exponent

    @property
    def ratio_regressed(self) -> bool:
        r = self.ratio
        return self.available and r is not None and r > 1.0 + self.tolerance

    @property
    def exponent_regressed(self) -> bool:
        d = self.delta_exponent
        return self.available and d is not None and d > self.exponent_tolerance

    @property
    def regressed(self) -> bool:
        return self.ratio_regressed or self.exponent_regressed

    def to_json(self) -> JsonDict:
        out: JsonDict = {"available": self.available, "regressed": self.regressed}
        if not self.available:
            out["reason"] = self.reason
            return out
        out.update(
            {
                "tolerance": self.tolerance,
                "exponent_tolerance": self.exponent_tolerance,
                "ratio": self.ratio,
                "spread": self.spread,
                "points": [p.to_json() for p in self.points],
                "exponent": {
                    "base": self.base_exponent,
                    "candidate": self.candidate_exponent,
                    "delta": self.delta_exponent,
                },
                "phases": [
                    {"phase": name, "base": b, "candidate": c} for name, b, c in self.phases
                ],
                "functions": [f.to_json() for f in self.functions],
                "elapsed_s": self.elapsed_s,
            }
        )
        return out

    @classmethod
    def read(cls, r: Reader) -> InstructionJudgement:
        if not r.flag("available"):
            return cls(False, r.opt_text("reason"))
        exponent = r.child("exponent")
        return cls(
            True,
            None,
            r.number("tolerance"),
            r.number("exponent_tolerance"),
            tuple(InstructionPoint.read(p) for p in r.children("points")),
            r.opt_number("spread"),
            exponent.opt_number("base"),
            exponent.opt_number("candidate"),
            tuple(
                (p.text("phase"), p.integer("base"), p.integer("candidate"))
                for p in r.children("phases")
            ),
            tuple(FunctionDelta.read(f) for f in r.children("functions")),
            r.opt_number("elapsed_s"),
        )

    def markdown_rows(self) -> list[str]:
        if not self.available:
            why = f"⚪ unavailable: {self.reason}"
            return [f"| instructions per load (valgrind) | - | - | - | - | {why} |"]
        rows = []
        for p in self.points:
            mark = "❌ regression" if p.ratio > 1.0 + self.tolerance else "✅"
            rows.append(
                f"| instructions per load, {p.cells} cells | {max(p.base):,} "
                f"| {min(p.candidate):,} "
                f"| x{p.ratio:.4f} ({p.ratio - 1:+.2%}) | ≤ +{self.tolerance:.1%} | {mark} |"
            )
        d = self.delta_exponent
        if d is not None and self.base_exponent is not None and self.candidate_exponent is not None:
            sizes = f"{self.points[0].cells} to {self.points[-1].cells} cells"
            mark = "❌ regression" if self.exponent_regressed else "✅"
            rows.append(
                f"| instruction exponent k ({sizes}) | {self.base_exponent:.3f} "
                f"| {self.candidate_exponent:.3f} | Δk {d:+.3f} | Δk ≤ {self.exponent_tolerance:g} "
                f"| {mark} |"
            )
        return rows

    def where_lines(self) -> list[str]:
        """Markdown naming the phases and functions whose counts changed most."""
        if not self.available or not self.points:
            return []
        cells = self.points[-1].cells
        lines = []
        moved = [(n, b, c) for n, b, c in self.phases if c != b]
        if moved:
            moved.sort(key=lambda t: -abs(t[2] - t[1]))
            parts = [
                f"{n} {c - b:+,} ({(c - b) / b:+.1%})" if b else f"{n} {c - b:+,}"
                for n, b, c in moved
            ]
            lines.append(
                f"Instructions by phase at {cells} cells (candidate - base): "
                + "; ".join(parts)
                + "."
            )
        if self.functions:
            lines.append("")
            lines.append(f"Functions whose inclusive instructions changed most at {cells} cells:")
            lines.append("")
            lines.append("| function | base | candidate | Δ |")
            lines.append("|---|---:|---:|---:|")
            for f in self.functions:
                lines.append(
                    f"| `{f.name[:90]}` | {f.base:,} | {f.candidate:,} "
                    f"| {f.candidate - f.base:+,} |"
                )
        return lines


@dataclass(frozen=True, slots=True)
class MemoryMetric:
    """One peak-memory figure (KiB) of each side; ``base[i]`` and ``candidate[i]`` come from the
    i-th measured load of each side (the same load in the same order)."""

    name: str
    base: tuple[float, ...]
    candidate: tuple[float, ...]
    tolerance: float

    @property
    def ratio(self) -> float:
        """The smallest paired ratio ``candidate[i] / base[i]``: a regression must show in every
        pair of loads."""
        pairs = [(b, c) for b, c in zip(self.base, self.candidate, strict=False) if b > 0]
        return min((c / b for b, c in pairs), default=1.0)

    @property
    def regressed(self) -> bool:
        return self.ratio > 1.0 + self.tolerance

    def to_json(self) -> JsonDict:
        return {
            "base": list(self.base),
            "candidate": list(self.candidate),
            "ratio": self.ratio,
            "tolerance": self.tolerance,
            "regressed": self.regressed,
        }

    @classmethod
    def read(cls, name: str, r: Reader) -> MemoryMetric:
        return cls(name, r.numbers("base"), r.numbers("candidate"), r.number("tolerance"))


MEMORY_LABELS = {
    "python_heap_peak_kib": "peak Python heap (tracemalloc)",
    "rss_peak_kib": "peak RSS growth, first load (VmHWM)",
}


@dataclass(frozen=True, slots=True)
class MemoryJudgement:
    """Peak memory of the main load; regressed when any metric grew beyond its tolerance."""

    available: bool
    reason: str | None = None
    metrics: tuple[MemoryMetric, ...] = ()

    @property
    def regressed(self) -> bool:
        return any(m.regressed for m in self.metrics)

    def to_json(self) -> JsonDict:
        out: JsonDict = {"available": self.available, "regressed": self.regressed}
        if not self.available:
            out["reason"] = self.reason
        out["metrics"] = {m.name: m.to_json() for m in self.metrics}
        return out

    @classmethod
    def read(cls, r: Reader) -> MemoryJudgement:
        return cls(
            r.flag("available"),
            r.opt_text("reason"),
            tuple(MemoryMetric.read(n, m) for n, m in r.entries("metrics")),
        )

    def markdown_rows(self) -> list[str]:
        if not self.available:
            return [f"| peak memory | - | - | - | - | ⚪ unavailable: {self.reason} |"]
        rows = []
        for m in self.metrics:
            mark = "❌ regression" if m.regressed else "✅"
            label = MEMORY_LABELS.get(m.name, m.name)
            rows.append(
                f"| {label} | {m.base[-1] / 1024:,.2f} MiB | {m.candidate[-1] / 1024:,.2f} MiB "
                f"| x{m.ratio:.3f} | ≤ +{m.tolerance:.0%} | {mark} |"
            )
        return rows


@dataclass(frozen=True, slots=True)
class CallsJudgement:
    """Calls of core functions (and of built-ins from core) per load, counted by ``cProfile``
    in lock-step loads of the main notebook and of a large one: the cost signal at sizes
    valgrind cannot afford. Regressed when the large load's calls grew by more than
    ``tolerance``, or their exponent between the two sizes by more than
    ``exponent_tolerance``."""

    sizes: tuple[int, ...]  # (main, large)
    base: tuple[int, ...]  # total calls at each size
    candidate: tuple[int, ...]
    tolerance: float
    exponent_tolerance: float
    functions: tuple[FunctionDelta, ...] = ()  # the largest changes at the large size

    @property
    def ratio(self) -> float:
        return self.candidate[-1] / self.base[-1] if self.base[-1] else 1.0

    def exponent(self, counts: tuple[int, ...]) -> float | None:
        if len(counts) < 2 or min(counts) <= 0 or self.sizes[0] == self.sizes[-1]:
            return None
        return math.log(counts[-1] / counts[0]) / math.log(self.sizes[-1] / self.sizes[0])

    @property
    def delta_exponent(self) -> float | None:
        kb, kc = self.exponent(self.base), self.exponent(self.candidate)
        return None if kb is None or kc is None else kc - kb

    @property
    def ratio_regressed(self) -> bool:
        return self.ratio > 1.0 + self.tolerance

    @property
    def exponent_regressed(self) -> bool:
        d = self.delta_exponent
        return d is not None and d > self.exponent_tolerance

    @property
    def regressed(self) -> bool:
        return self.ratio_regressed or self.exponent_regressed

    def to_json(self) -> JsonDict:
        return {
            "sizes": list(self.sizes),
            "base": list(self.base),
            "candidate": list(self.candidate),
            "ratio": self.ratio,
            "tolerance": self.tolerance,
            "exponent": {
                "base": self.exponent(self.base),
                "candidate": self.exponent(self.candidate),
                "delta": self.delta_exponent,
                "tolerance": self.exponent_tolerance,
            },
            "functions": [f.to_json() for f in self.functions],
            "regressed": self.regressed,
        }

    @classmethod
    def read(cls, r: Reader) -> CallsJudgement:
        return cls(
            r.integers("sizes"),
            r.integers("base"),
            r.integers("candidate"),
            r.number("tolerance"),
            r.child("exponent").number("tolerance"),
            tuple(FunctionDelta.read(f) for f in r.children("functions")),
        )

    def markdown_rows(self) -> list[str]:
        n = self.sizes[-1]
        mark = "❌ regression" if self.ratio_regressed else "✅"
        rows = [
            f"| core function calls per load, {n} cells | {self.base[-1]:,} "
            f"| {self.candidate[-1]:,} | x{self.ratio:.4f} ({self.ratio - 1:+.2%}) "
            f"| ≤ +{self.tolerance:.1%} | {mark} |"
        ]
        d = self.delta_exponent
        kb, kc = self.exponent(self.base), self.exponent(self.candidate)
        if d is not None and kb is not None and kc is not None:
            mark = "❌ regression" if self.exponent_regressed else "✅"
            rows.append(
                f"| call exponent k ({self.sizes[0]} to {n} cells) | {kb:.3f} | {kc:.3f} "
                f"| Δk {d:+.3f} | Δk ≤ {self.exponent_tolerance:g} | {mark} |"
            )
        return rows

    def where_lines(self) -> list[str]:
        if not self.functions:
            return []
        n = self.sizes[-1]
        lines = [f"Calls that changed most at {n} cells:", "", "| function | base | candidate |"]
        lines.append("|---|---:|---:|")
        lines += [f"| `{f.name[:90]}` | {f.base:,} | {f.candidate:,} |" for f in self.functions]
        return lines
