"""The result of ``nbstream gate``: the judgements of one base/candidate comparison.

:class:`TimeJudgement`, :class:`CounterJudgement`, :class:`ExponentJudgement` (made by the
``judge_*`` functions of :mod:`sim.analysis.stats`), the :class:`Comparison` holding them, and
:class:`GateResult` (built by :func:`sim.gate.command.run_gate`); :class:`GateErrorResult` is the
JSON of a gate (or self-test) that could not run. ``regressed`` decides the exit status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sim.results.base import JsonDict, Reader, SchemaError, schema_id
from sim.results.gate_signals import CallsJudgement, InstructionJudgement, MemoryJudgement

__all__ = [
    "COUNTER_LABELS",
    "GATE_SCHEMA",
    "Comparison",
    "CounterJudgement",
    "ExponentJudgement",
    "GateErrorResult",
    "GateResult",
    "GateThresholds",
    "TimeJudgement",
]

GATE_SCHEMA = schema_id("gate")

COUNTER_LABELS = {
    "ops": "Automerge ops",
    "transactions": "transactions",
    "scan_steps": "scan steps",
    "frames": "frames to the peer",
    "bytes_per_cell": "wire bytes per cell",
    "doc_bytes_per_cell": "saved doc bytes per cell",
    "changed_frames": "frames carrying cells",
}


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

    def to_json(self) -> JsonDict:
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

    @classmethod
    def read(cls, r: Reader) -> TimeJudgement:
        samples = r.child("samples")
        return cls(
            median_ratio=r.number("median_ratio"),
            ci=r.pair("ci"),
            ci_level=r.number("ci_level"),
            threshold=r.number("threshold"),
            regressed=r.flag("regressed"),
            inconclusive=r.flag("inconclusive"),
            base_median_s=r.number("base_median_s"),
            candidate_median_s=r.number("candidate_median_s"),
            ratios=r.numbers("ratios"),
            base=samples.numbers("base"),
            candidate=samples.numbers("candidate"),
        )


@dataclass(frozen=True, slots=True)
class CounterJudgement:
    name: str
    base: float
    candidate: float
    deterministic: bool  # every run within each side gave the same value
    tolerance: float  # relative increase allowed (0 = none)
    regressed: bool

    def to_json(self) -> JsonDict:
        return {
            "base": self.base,
            "candidate": self.candidate,
            "delta": self.candidate - self.base,
            "deterministic": self.deterministic,
            "tolerance": self.tolerance,
            "regressed": self.regressed,
        }

    @classmethod
    def read(cls, name: str, r: Reader) -> CounterJudgement:
        return cls(
            name,
            r.number("base"),
            r.number("candidate"),
            r.flag("deterministic"),
            r.number("tolerance"),
            r.flag("regressed"),
        )


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

    def to_json(self) -> JsonDict:
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

    @classmethod
    def read(cls, r: Reader) -> ExponentJudgement:
        return cls(
            sizes=r.integers("sizes"),
            base=r.number("base"),
            candidate=r.number("candidate"),
            base_ci=r.pair("base_ci"),
            candidate_ci=r.pair("candidate_ci"),
            base_verdict=r.text("base_verdict"),
            candidate_verdict=r.text("candidate_verdict"),
            delta=r.number("delta"),
            delta_ci=r.pair("delta_ci"),
            tolerance=r.number("tolerance"),
            regressed=r.flag("regressed"),
        )


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
    counters: Mapping[str, CounterJudgement]
    exponent: ExponentJudgement
    instructions: InstructionJudgement | None = None  # None: not measured (older results)
    memory: MemoryJudgement | None = None
    large_cells: int | None = None  # the large lock-step load (None: not measured)
    large_counters: Mapping[str, CounterJudgement] | None = None
    calls: CallsJudgement | None = None
    first_cell: TimeJudgement | None = None  # time to first cell (--target-cmd only): reported

    @property
    def counter_regressions(self) -> list[str]:
        return [name for name, c in self.counters.items() if c.regressed]

    @property
    def time_regressed(self) -> bool:
        """Time fails a job only when CPU time regressed (its CI's lower bound is over the
        threshold) **and** the wall clock agrees (its median is over the threshold too): the
        wall clock alone never fails, nor does CPU time that the wall clock contradicts."""
        return self.cpu_time.regressed and self.time.median_ratio > self.time.threshold

    @property
    def time_verdict(self) -> str:
        """ "regression", "inconclusive" (a clock is over the threshold but the rule above is not
        met) or "pass"."""
        if self.time_regressed:
            return "regression"
        clocks = (self.time, self.cpu_time)
        if any(t.regressed or t.inconclusive for t in clocks):
            return "inconclusive"
        return "pass"

    def _time_mark(self, t: TimeJudgement, wall: bool) -> str:
        if self.time_regressed and t.regressed:
            return "❌ regression"
        if self.time_regressed:
            return "⚠️ agrees (median over the threshold)"
        if t.regressed:
            why = "wall clock alone never fails" if wall else "the wall clock does not agree"
            return f"⚠️ inconclusive ({why})"
        return _mark(False, t.inconclusive)

    def deterministic_flags(self) -> list[str]:
        """The flags raised by instruction counts and peak memory."""
        out = []
        i = self.instructions
        if i is not None and i.ratio_regressed:
            out.append("instructions")
        if i is not None and i.exponent_regressed:
            out.append("instructions:exponent")
        if self.memory is not None:
            out += [f"memory:{m.name}" for m in self.memory.metrics if m.regressed]
        for name, c in (self.large_counters or {}).items():
            if c.regressed:
                out.append(f"large:counter:{name}")
        if self.calls is not None and self.calls.ratio_regressed:
            out.append("calls")
        if self.calls is not None and self.calls.exponent_regressed:
            out.append("calls:exponent")
        return out

    @property
    def regressed(self) -> bool:
        return bool(self.flagged_by())

    def flagged_by(self) -> list[str]:
        reasons = []
        if self.time_regressed:
            reasons = (["time"] if self.time.regressed else []) + ["cpu_time"]
        reasons += [f"counter:{name}" for name in self.counter_regressions]
        reasons += self.deterministic_flags()
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
                f"| CI low ≤ x{t.threshold:g} | {self._time_mark(t, label == 'load time')} |"
            )
        for name, c in self.counters.items():
            limit = "any increase" if c.tolerance == 0 else f"> +{c.tolerance:.1%}"
            if not c.deterministic:
                limit += " (range vs range: not reproducible)"
            counter, _, notebook = name.partition("@")
            label = COUNTER_LABELS.get(counter, counter) + (f" ({notebook})" if notebook else "")
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
        if self.first_cell is not None:
            t = self.first_cell
            rows.append(
                f"| time to first cell (median) | {t.base_median_s * 1e3:.1f} ms"
                f" | {t.candidate_median_s * 1e3:.1f} ms | x{t.median_ratio:.3f} | reported, "
                f"never fails | {_mark(False, t.regressed or t.inconclusive)} |"
            )
        if self.instructions is not None:
            rows += self.instructions.markdown_rows()
        if self.memory is not None:
            rows += self.memory.markdown_rows()
        for name, c in (self.large_counters or {}).items():
            label = f"{COUNTER_LABELS.get(name, name)} at {self.large_cells} cells"
            rows.append(
                f"| {label} | {_num(c.base)} | {_num(c.candidate)} "
                f"| {_delta(c.base, c.candidate)} | any increase | {_mark(c.regressed)} |"
            )
        if self.calls is not None:
            rows += self.calls.markdown_rows()
        return rows

    def large_json(self) -> JsonDict | None:
        if self.large_cells is None:
            return None
        return {
            "cells": self.large_cells,
            "counters": {n: j.to_json() for n, j in (self.large_counters or {}).items()},
            "calls": None if self.calls is None else self.calls.to_json(),
        }


@dataclass(frozen=True, slots=True)
class GateThresholds:
    time: float
    exponent_tolerance: float
    counter_tolerance: float
    instruction_tolerance: float | None = None  # absent in older results, as below
    instruction_exponent_tolerance: float | None = None
    memory_tolerance: float | None = None

    def to_json(self) -> JsonDict:
        out: JsonDict = {
            "time": self.time,
            "exponent_tolerance": self.exponent_tolerance,
            "counter_tolerance": self.counter_tolerance,
        }
        for key in ("instruction_tolerance", "instruction_exponent_tolerance", "memory_tolerance"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def read(cls, r: Reader) -> GateThresholds:
        return cls(
            r.number("time"),
            r.number("exponent_tolerance"),
            r.number("counter_tolerance"),
            r.opt_number("instruction_tolerance"),
            r.opt_number("instruction_exponent_tolerance"),
            r.opt_number("memory_tolerance"),
        )


VERDICTS = ("pass", "regression")
# What the gate cannot see of a server it measures from outside (--target-cmd), and why.
UNAVAILABLE_OUTSIDE = {
    "instructions": "needs the server's code under valgrind in the gate's process",
    "calls": "core call counts need the server's code in the gate's process",
    "automerge_counters": "ops, transactions, scan steps and doc bytes are the server's internals",
    "python_heap_peak_kib": "the server's Python heap is not visible from outside",
}


@dataclass(frozen=True, slots=True)
class GateResult:
    """The working tree against a base ref: ``verdict`` "pass" or "regression" (``regressed``)."""

    base_ref: str
    base_commit: str
    candidate_commit: str | None
    dirty: bool
    pairs: int
    cells: int
    seed: int
    thresholds: GateThresholds
    comparison: Comparison
    elapsed_s: float = 0.0
    target: str | None = None  # --target-cmd: measured from outside (None: in-process)
    # --notebook: path, cells, bytes, sha256 of each of the user's notebooks (empty: generated)
    notebooks: tuple[Mapping[str, Any], ...] = ()
    command: ClassVar[str] = "gate"

    @property
    def regressed(self) -> bool:
        return self.comparison.regressed

    @property
    def verdict(self) -> str:
        return "regression" if self.regressed else "pass"

    def to_json(self) -> JsonDict:
        c = self.comparison
        return {
            "command": self.command,
            "schema": GATE_SCHEMA,
            "verdict": self.verdict,
            "base": {"ref": self.base_ref, "commit": self.base_commit},
            "candidate": {"commit": self.candidate_commit, "dirty": self.dirty},
            "pairs": self.pairs,
            "cells": self.cells,
            "seed": self.seed,
            **({"notebooks": [dict(n) for n in self.notebooks]} if self.notebooks else {}),
            "thresholds": self.thresholds.to_json(),
            "time": c.time.to_json(),
            "cpu_time": c.cpu_time.to_json(),
            "time_verdict": c.time_verdict,
            "counters": {name: j.to_json() for name, j in c.counters.items()},
            "exponent": c.exponent.to_json(),
            **({} if c.instructions is None else {"instructions": c.instructions.to_json()}),
            **({} if c.memory is None else {"memory": c.memory.to_json()}),
            **({} if c.large_cells is None else {"large": c.large_json()}),
            **({} if self.target is None else {"target": self.target_json()}),
            "flagged_by": c.flagged_by(),
            "elapsed_s": self.elapsed_s,
        }

    def target_json(self) -> JsonDict:
        c = self.comparison
        return {
            "command": self.target,
            "first_cell": None if c.first_cell is None else c.first_cell.to_json(),
            "unavailable": dict(UNAVAILABLE_OUTSIDE),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateResult:
        """Validate ``nbstream gate --json`` output (an error payload is a
        :class:`GateErrorResult`); :class:`SchemaError` names the bad key."""
        r = Reader(data)
        r.envelope(("gate",), GATE_SCHEMA)
        base, candidate = r.child("base"), r.child("candidate")
        comparison = Comparison(
            time=TimeJudgement.read(r.child("time")),
            cpu_time=TimeJudgement.read(r.child("cpu_time")),
            counters={n: CounterJudgement.read(n, c) for n, c in r.entries("counters")},
            exponent=ExponentJudgement.read(r.child("exponent")),
            instructions=InstructionJudgement.read(r.child("instructions"))
            if r.present("instructions")
            else None,
            memory=MemoryJudgement.read(r.child("memory")) if r.present("memory") else None,
            **_read_large(r),
            first_cell=_read_first_cell(r),
        )
        result = cls(
            base_ref=base.text("ref"),
            base_commit=base.text("commit"),
            candidate_commit=candidate.opt_text("commit", required=True),
            dirty=candidate.flag("dirty"),
            pairs=r.integer("pairs"),
            cells=r.integer("cells"),
            seed=r.integer("seed"),
            thresholds=GateThresholds.read(r.child("thresholds")),
            comparison=comparison,
            elapsed_s=r.number("elapsed_s"),
            target=r.child("target").text("command") if r.present("target") else None,
            notebooks=tuple(
                {
                    "path": nb.text("path"),
                    "cells": nb.integer("cells"),
                    "bytes": nb.integer("bytes"),
                    "sha256": nb.text("sha256"),
                }
                for nb in r.children("notebooks")
            )
            if r.present("notebooks")
            else (),
        )
        verdict = r.text("verdict")
        if verdict != result.verdict:
            raise SchemaError(f"verdict: {verdict!r} contradicts the judgements")
        return result

    def _workload_text(self) -> str:
        if not self.notebooks:
            return f"{self.cells}-cell generated notebook"
        names = ", ".join(f"`{Path(n['path']).name}` ({n['cells']} cells)" for n in self.notebooks)
        return f"notebooks {names} (every size of the run built from the first one's cells)"

    def to_markdown(self) -> str:
        ok = not self.regressed
        head = "✅ **nbstream perf gate: pass**" if ok else "❌ **nbstream perf gate: regression**"
        if not ok:
            head += " — " + ", ".join(self.comparison.flagged_by())
        cand = (self.candidate_commit or "?")[:10] + (
            " + uncommitted changes" if self.dirty else ""
        )
        outside = (
            ""
            if self.target is None
            else f"Server `{self.target}` measured from outside (unavailable: "
            + ", ".join(UNAVAILABLE_OUTSIDE)
            + "). "
        )
        lines = [
            f"### {head}",
            "",
            f"{outside}Base `{self.base_ref}` ({self.base_commit[:10]}) vs candidate {cand}; "
            f"{self._workload_text()}, {self.pairs} interleaved pairs, "
            f"{self.elapsed_s:.1f} s.",
            "",
            *self.comparison.markdown_rows(self.pairs),
            "",
        ]
        i = self.comparison.instructions
        if i is not None and i.available and self.regressed:
            lines += [*i.where_lines(), ""]
        calls = self.comparison.calls
        if calls is not None and self.regressed and calls.where_lines():
            lines += [*calls.where_lines(), ""]
        return "\n".join(lines)


def _read_first_cell(r: Reader) -> TimeJudgement | None:
    if not r.present("target") or not r.child("target").present("first_cell"):
        return None
    return TimeJudgement.read(r.child("target").child("first_cell"))


def _read_large(r: Reader) -> dict[str, Any]:
    if not r.present("large"):
        return {}
    large = r.child("large")
    return {
        "large_cells": large.integer("cells"),
        "large_counters": {n: CounterJudgement.read(n, c) for n, c in large.entries("counters")},
        "calls": CallsJudgement.read(large.child("calls")) if large.present("calls") else None,
    }


@dataclass(frozen=True, slots=True)
class GateErrorResult:
    """A gate or self-test that could not run (exit status 2): ``verdict`` "error"."""

    command: str  # "gate" or "gate-self-test"
    error: str
    budget_exhausted: bool = False  # the run was stopped by --budget
    verdict: ClassVar[str] = "error"

    def to_json(self) -> JsonDict:
        out: JsonDict = {
            "command": self.command,
            "schema": schema_id(self.command),
            "verdict": self.verdict,
            "error": self.error,
        }
        if self.budget_exhausted:
            out["budget_exhausted"] = True
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateErrorResult:
        r = Reader(data)
        command = r.text("command")
        r.envelope(("gate", "gate-self-test"), schema_id(command))
        if r.text("verdict") != "error":
            raise SchemaError(f"verdict: expected 'error', got {r.text('verdict')!r}")
        return cls(command, r.text("error"), bool(r.opt_flag("budget_exhausted")))

    def to_markdown(self) -> str:
        return f"### ❌ **nbstream perf gate: error**\n\n{self.error}\n"


def is_error(data: Mapping[str, Any]) -> bool:
    """The JSON is a :class:`GateErrorResult` (``"verdict": "error"``)."""
    return data.get("verdict") == "error"
