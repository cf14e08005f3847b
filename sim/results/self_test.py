"""The result of ``nbstream gate --self-test``: the gate against itself (:class:`SelfTestResult`).

Built by :func:`sim.gate.self_test.run_self_test`: ``reruns`` comparisons per condition (an
unchanged copy of the tree, and each real code change of :mod:`sim.gate.self_test_changes`). The
rates, detections, margins and ``targets_met`` in the JSON are derived from the runs;
``targets_met`` decides the exit status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from sim.results.base import Check, JsonDict, Reader, SchemaError, schema_id

__all__ = ["SELF_TEST_SCHEMA", "SelfTestResult", "SelfTestRun", "detection_target"]

SELF_TEST_SCHEMA = schema_id("gate-self-test")


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
    instruction_ratio: float | None = None  # B/A instructions at the worst size (None: not counted)
    memory_ratios: Mapping[str, float] | None = None  # metric -> smallest paired B/A peak ratio

    def to_json(self) -> JsonDict:
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
            "instruction_ratio": self.instruction_ratio,
            "memory_ratios": None if self.memory_ratios is None else dict(self.memory_ratios),
        }

    @classmethod
    def read(cls, r: Reader) -> SelfTestRun:
        ratios = r.child("ratios")
        return cls(
            condition=r.text("condition"),
            rerun=r.integer("rerun"),
            flagged=r.flag("flagged"),
            flagged_by=r.texts("flagged_by"),
            median_ratio=r.number("median_ratio"),
            ci=r.pair("ci"),
            cpu_ratio=r.number("cpu_ratio"),
            cpu_ci=r.pair("cpu_ci"),
            exponent_delta=r.number("exponent_delta"),
            exponent_ci=r.pair("exponent_ci"),
            elapsed_s=r.number("elapsed_s"),
            wall_ratios=ratios.numbers("wall"),
            cpu_ratios=ratios.numbers("cpu"),
            instruction_ratio=r.opt_number("instruction_ratio"),
            memory_ratios=r.number_map("memory_ratios") if r.present("memory_ratios") else None,
        )

    def summary(self) -> str:
        """One progress line."""
        flag = "FLAGGED by " + ", ".join(self.flagged_by) if self.flagged else "pass"
        instr = (
            ""
            if self.instruction_ratio is None
            else f"instructions x{self.instruction_ratio:.4f}, "
        )
        return (
            f"{self.condition}: {flag}; {instr}wall x{self.median_ratio:.3f} "
            f"[{self.ci[0]:.3f}, {self.ci[1]:.3f}], cpu x{self.cpu_ratio:.3f} "
            f"[{self.cpu_ci[0]:.3f}, {self.cpu_ci[1]:.3f}], Δk {self.exponent_delta:+.3f} "
            f"[{self.exponent_ci[0]:+.3f}, {self.exponent_ci[1]:+.3f}]; {self.elapsed_s:.1f} s"
        )


def detection_target(reruns: int, condition: str) -> int:
    """Flags required: every rerun, for every change (the deterministic signals decide them)."""
    del condition
    return reruns


@dataclass(frozen=True, slots=True)
class SelfTestResult:
    reruns: int
    pairs: Mapping[str, int]  # pairs per comparison, per condition
    cells: int
    time_threshold: float
    runs: tuple[SelfTestRun, ...]
    elapsed_s: float
    changes: Mapping[str, str] | None = None  # condition -> what the code change does
    command: ClassVar[str] = "gate-self-test"

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

    def checks(self) -> tuple[Check, ...]:
        """The targets as checks: no false alarm on unchanged code, each injection detected."""
        unchanged = len(self._of("unchanged"))
        out = [
            Check(
                "unchanged code: no false alarm",
                self.false_alarms == 0 and unchanged == self.reruns,
                f"{self.false_alarms}/{unchanged} flagged",
            )
        ]
        for name, (flagged, runs) in self.detections.items():
            need = detection_target(self.reruns, name)
            out.append(
                Check(
                    f"{name} detected",
                    runs == self.reruns and flagged >= need,
                    f"{flagged}/{runs} flagged (target ≥ {need}/{self.reruns})",
                )
            )
        return tuple(out)

    def margins(self) -> dict[str, float | None]:
        """How close the time and exponent rules came to a wrong verdict."""

        def extreme(condition: str, pick: Any, value: Any) -> float | None:
            runs = self._of(condition)
            return float(pick(value(r) for r in runs)) if runs else None

        detected = [n for n in self.detections]
        metrics = sorted({k for r in self.runs for k in (r.memory_ratios or {})})
        return {
            "unchanged_max_ci_low": extreme("unchanged", max, lambda r: r.ci[0]),
            "unchanged_max_cpu_ci_low": extreme("unchanged", max, lambda r: r.cpu_ci[0]),
            "unchanged_max_median_ratio": extreme("unchanged", max, lambda r: r.median_ratio),
            "unchanged_max_exponent_delta": extreme("unchanged", max, lambda r: r.exponent_delta),
            "unchanged_max_instruction_ratio": extreme(
                "unchanged", max, lambda r: r.instruction_ratio or 0.0
            ),
            **{
                f"{name}_min_instruction_ratio": extreme(
                    name, min, lambda r: r.instruction_ratio or 0.0
                )
                for name in detected
            },
            **{
                f"unchanged_max_memory_ratio:{m}": extreme(
                    "unchanged", max, lambda r, m=m: (r.memory_ratios or {}).get(m, 0.0)
                )
                for m in metrics
            },
        }

    def to_json(self) -> JsonDict:
        unchanged = len(self._of("unchanged"))
        return {
            "command": self.command,
            "schema": SELF_TEST_SCHEMA,
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
            "runs": [r.to_json() for r in self.runs],
            "elapsed_s": self.elapsed_s,
            **({} if self.changes is None else {"changes": dict(self.changes)}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SelfTestResult:
        """Validate ``nbstream gate --self-test --json`` output (the rates, detections and
        margins are recomputed from the runs); :class:`SchemaError` names the bad key."""
        r = Reader(data)
        r.envelope(("gate-self-test",), SELF_TEST_SCHEMA)
        result = cls(
            reruns=r.integer("reruns"),
            pairs=r.int_map("pairs"),
            cells=r.integer("cells"),
            time_threshold=r.number("time_threshold"),
            runs=tuple(SelfTestRun.read(x) for x in r.children("runs")),
            elapsed_s=r.number("elapsed_s"),
            changes={
                k: v.text(k) for k, v in [(k, r.child("changes")) for k in r.child("changes").d]
            }
            if r.present("changes")
            else None,
        )
        if r.has("targets_met") and r.flag("targets_met") != result.targets_met:
            raise SchemaError("targets_met: contradicts the runs")
        return result

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
                f"| {name} (detections) | {self.pairs.get(name, 0)} | {flagged}/{runs} "
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


def _changes(r: Reader) -> dict[str, str] | None:
    if not r.present("changes"):
        return None
    changes = r.child("changes")
    return {name: changes.text(name) for name in changes.d}
