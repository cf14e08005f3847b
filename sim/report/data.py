"""The report's input data model and the schema parsers that build it from result JSON.

Frozen dataclasses for every result the report reads (``sim``/``profile`` runs, ``scale``
sweeps, ``gate`` verdicts, asv history) and :class:`Inputs`, which gathers them; ``_Obj``, a
JSON-object reader whose errors name the offending field (raising :class:`SchemaError`); and
the ``_parse_*`` functions that validate one result file into those dataclasses. Loading files
and the command live in :mod:`sim.report.command`, which re-exports every public name here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "AsvBenchmark",
    "AsvHistory",
    "AsvPoint",
    "AsvSeries",
    "BatchTrend",
    "Check",
    "GateResult",
    "Inputs",
    "NotebookInfo",
    "Peer",
    "Phases",
    "RunBatch",
    "RunResult",
    "ScalePath",
    "ScalePoint",
    "ScaleResult",
    "SchemaError",
    "loader_peer",
]

PHASE_KEYS = ("read_s", "parse_s", "manifest_s", "insert_s", "sync_gen_s", "network_s")


class SchemaError(ValueError):
    """A result file does not match its schema (the message names the offending field)."""


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True, slots=True)
class Check:
    source: Path
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class NotebookInfo:
    path: str
    cells: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Phases:
    read_s: float
    parse_s: float
    manifest_s: float
    insert_s: float
    sync_gen_s: float
    network_s: float
    total_s: float


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    behaviour: str
    joined_at_batch: int | None
    time_to_first_cell_s: float | None
    time_to_full_s: float | None
    converged: bool


@dataclass(frozen=True, slots=True)
class RunBatch:
    index: int
    cells: int
    started_at: float
    finished_at: float
    latency_s: Mapping[str, float | None]  # peer name -> seconds (None: not delivered / not joined)


@dataclass(frozen=True, slots=True)
class RunResult:
    """A ``sim`` or ``profile`` result (profile has no peers, no checks, no convergence)."""

    source: Path
    label: str
    command: str
    notebook: NotebookInfo
    phases: Phases
    batches: tuple[RunBatch, ...]
    peers: tuple[Peer, ...] = ()
    converged: bool | None = None
    cells: int | None = None
    scenario: str | None = None
    insert_path: str | None = None
    daemon_overhead_ratio: float | None = None
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True, slots=True)
class ScalePoint:
    cells: int
    total_s: float
    ops: int | None = None
    scan_steps: int | None = None
    time_to_first_cell_s: float | None = None
    time_to_full_s: float | None = None


@dataclass(frozen=True, slots=True)
class BatchTrend:
    relative_slope: float
    robust_relative_slope: float
    flat: bool
    cells: int
    latencies_s: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class ScalePath:
    name: str
    exponent: float
    ci: tuple[float, float]
    verdict: str
    r_squared: float
    points: tuple[ScalePoint, ...]
    counters: Mapping[str, tuple[str, float | None]]  # counter -> (verdict, exponent)
    batch_trend: BatchTrend | None


@dataclass(frozen=True, slots=True)
class ScaleResult:
    source: Path
    label: str
    paths: Mapping[str, ScalePath]
    raw_points: tuple[ScalePoint, ...] = ()
    raw_exponent: float | None = None
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True, slots=True)
class GateResult:
    """A ``gate`` or ``gate-self-test`` result (see :func:`_parse_gate`)."""

    source: Path
    label: str
    command: str
    verdict: str  # "pass", "regression", "error", ...
    threshold: float | None = None  # on the paired time ratio (candidate / base)
    ratios: tuple[float, ...] = ()
    median_ratio: float | None = None
    ci: tuple[float, float] | None = None
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True, slots=True)
class AsvBenchmark:
    name: str
    type: str  # "time", "peakmem", "mem", "track" (or "" when unknown)
    unit: str
    param_names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AsvPoint:
    commit: str
    date_ms: float
    value: float


@dataclass(frozen=True, slots=True)
class AsvSeries:
    benchmark: str
    params: str  # "n_cells=50, path='full'" ("" for an unparametrized benchmark)
    machine_env: str
    points: tuple[AsvPoint, ...]


@dataclass(frozen=True, slots=True)
class AsvHistory:
    root: Path
    benchmarks: Mapping[str, AsvBenchmark]
    series: tuple[AsvSeries, ...]
    commits: tuple[tuple[str, float], ...]  # (hash, date ms), oldest first
    files: tuple[Path, ...]


@dataclass(slots=True)
class Inputs:
    """Everything the report read, plus what it skipped and why."""

    runs: list[RunResult] = field(default_factory=list)
    scales: list[ScaleResult] = field(default_factory=list)
    gates: list[GateResult] = field(default_factory=list)
    asv: AsvHistory | None = None
    scanned: list[Path] = field(default_factory=list)  # the --input arguments, as given
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def sims(self) -> list[RunResult]:
        return [r for r in self.runs if r.command == "sim"]

    @property
    def sources(self) -> list[Path]:
        found: list[Path] = [r.source for r in self.runs]
        found += [s.source for s in self.scales] + [g.source for g in self.gates]
        return sorted(set(found))

    def usable(self) -> bool:
        return bool(self.runs or self.scales or self.gates or (self.asv and self.asv.series))


def loader_peer(run: RunResult) -> Peer | None:
    """The peer that opened the notebook: behaviour "loader", else the first peer present from the
    start (``joined_at_batch`` null or 0), else the first peer."""
    for peer in run.peers:
        if peer.behaviour == "loader":
            return peer
    for peer in run.peers:
        if peer.joined_at_batch in (None, 0):
            return peer
    return run.peers[0] if run.peers else None


# --------------------------------------------------------------------------- schema reader


class _Obj:
    """A JSON object with typed accessors whose errors name the offending field."""

    __slots__ = ("d", "where")

    def __init__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: expected an object")
        self.d: dict[str, Any] = value
        self.where = where

    def _at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def raw(self, key: str) -> Any:
        if key not in self.d:
            raise SchemaError(f"{self.where or '$'}: missing {key!r}")
        return self.d[key]

    def number(self, key: str) -> float:
        return _number(self.raw(key), self._at(key))

    def opt_number(self, key: str, *, required: bool = False) -> float | None:
        """The number at *key*, or None when it is null (or absent, unless *required*)."""
        value = self.raw(key) if required else self.d.get(key)
        return None if value is None else _number(value, self._at(key))

    def integer(self, key: str) -> int:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(f"{self._at(key)}: expected an integer")
        return value

    def opt_integer(self, key: str) -> int | None:
        return None if self.d.get(key) is None else self.integer(key)

    def text(self, key: str) -> str:
        value = self.raw(key)
        if not isinstance(value, str):
            raise SchemaError(f"{self._at(key)}: expected a string")
        return value

    def opt_text(self, key: str) -> str | None:
        return None if self.d.get(key) is None else self.text(key)

    def flag(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise SchemaError(f"{self._at(key)}: expected true/false")
        return value

    def child(self, key: str) -> _Obj:
        return _Obj(self.raw(key), self._at(key))

    def items(self, key: str) -> list[Any]:
        value = self.raw(key)
        if not isinstance(value, list):
            raise SchemaError(f"{self._at(key)}: expected a list")
        return value

    def children(self, key: str) -> list[_Obj]:
        return [_Obj(v, f"{self._at(key)}[{i}]") for i, v in enumerate(self.items(key))]

    def numbers(self, key: str) -> tuple[float, ...]:
        return tuple(_number(v, f"{self._at(key)}[{i}]") for i, v in enumerate(self.items(key)))


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(f"{where}: expected a number")
    return float(value)


def _checks(objs: list[_Obj], source: Path) -> tuple[Check, ...]:
    out = []
    for c in objs:
        detail = c.d.get("detail", c.d.get("reason", ""))
        detail = detail if isinstance(detail, str) else json.dumps(detail)
        out.append(Check(source, c.text("name"), c.flag("ok"), detail))
    return tuple(out)


# --------------------------------------------------------------------------- result parsers


def _parse_batch(b: _Obj) -> RunBatch:
    lat = b.child("latency_s") if "latency_s" in b.d else _Obj({}, "")
    return RunBatch(
        index=b.integer("index"),
        cells=b.integer("cells"),
        started_at=b.number("started_at"),
        finished_at=b.number("finished_at"),
        latency_s={name: lat.opt_number(name) for name in lat.d},
    )


def _parse_peer(p: _Obj) -> Peer:
    return Peer(
        name=p.text("name"),
        behaviour=p.opt_text("behaviour") or "",
        joined_at_batch=p.opt_integer("joined_at_batch"),
        time_to_first_cell_s=p.opt_number("time_to_first_cell_s", required=True),
        time_to_full_s=p.opt_number("time_to_full_s", required=True),
        converged=p.flag("converged"),
    )


def _parse_run(d: _Obj, source: Path, label: str) -> RunResult:
    nb, ph = d.child("notebook"), d.child("phases")
    notebook = NotebookInfo(nb.text("path"), nb.integer("cells"), nb.integer("bytes"))
    phases = Phases(*(ph.number(k) for k in (*PHASE_KEYS, "total_s")))
    batches = tuple(_parse_batch(b) for b in d.children("batches"))
    command = d.text("command")
    if command == "profile":
        return RunResult(source, label, command, notebook, phases, batches)
    return RunResult(
        source,
        label,
        command,
        notebook,
        phases,
        batches,
        peers=tuple(_parse_peer(p) for p in d.children("peers")),
        converged=d.flag("converged"),
        cells=d.integer("cells"),
        scenario=d.opt_text("scenario"),
        insert_path=d.opt_text("insert_path"),
        daemon_overhead_ratio=d.opt_number("daemon_overhead_ratio"),
        checks=_checks(d.children("checks"), source) if "checks" in d.d else (),
    )


def _parse_point(p: _Obj) -> ScalePoint:
    return ScalePoint(
        cells=p.integer("cells"),
        total_s=p.number("total_s"),
        ops=p.opt_integer("ops"),
        scan_steps=p.opt_integer("scan_steps"),
        time_to_first_cell_s=p.opt_number("time_to_first_cell_s"),
        time_to_full_s=p.opt_number("time_to_full_s"),
    )


def _parse_scale_path(name: str, d: _Obj) -> ScalePath:
    ci = d.numbers("ci")
    if len(ci) != 2:
        raise SchemaError(f"{d.where}.ci: expected [lo, hi]")
    counters: dict[str, tuple[str, float | None]] = {}
    if "counters" in d.d:
        cs = d.child("counters")
        for cname in cs.d:
            c = cs.child(cname)
            counters[cname] = (c.text("verdict"), c.opt_number("exponent"))
    trend: BatchTrend | None = None
    if d.d.get("batch_trend") is not None:
        t = d.child("batch_trend")
        trend = BatchTrend(
            relative_slope=t.number("relative_slope"),
            robust_relative_slope=t.number("robust_relative_slope"),
            flat=t.flag("flat"),
            cells=t.integer("cells"),
            latencies_s=t.numbers("latencies_s") if "latencies_s" in t.d else (),
        )
    return ScalePath(
        name=name,
        exponent=d.number("exponent"),
        ci=(ci[0], ci[1]),
        verdict=d.text("verdict"),
        r_squared=d.opt_number("r_squared") or math.nan,
        points=tuple(_parse_point(p) for p in d.children("points")),
        counters=counters,
        batch_trend=trend,
    )


def _parse_scale(d: _Obj, source: Path, label: str) -> ScaleResult:
    paths_obj = d.child("paths")
    if not paths_obj.d:
        raise SchemaError("paths: empty")
    paths = {name: _parse_scale_path(name, paths_obj.child(name)) for name in paths_obj.d}
    checks = _checks(d.children("checks"), source) if "checks" in d.d else ()
    if d.d.get("raw_automerge") is None:
        return ScaleResult(source, label, paths, checks=checks)
    raw = d.child("raw_automerge")
    points = tuple(_parse_point(p) for p in raw.children("points"))
    return ScaleResult(source, label, paths, points, raw.opt_number("exponent"), checks)


def _gate_checks(d: _Obj, source: Path) -> list[Check]:
    """The gate's judgements as checks: time, each counter, the exponent (``regressed`` = fail)."""
    checks = []
    if isinstance(d.d.get("time"), dict):
        t = d.child("time")
        detail = f"median ratio {t.number('median_ratio'):.3f}, CI {list(t.numbers('ci'))}"
        detail += f", threshold {t.number('threshold'):g}"
        if t.d.get("inconclusive"):
            detail += " (inconclusive: median above the threshold, CI is not)"
        checks.append(Check(source, "time (paired ratio)", not t.flag("regressed"), detail))
    if isinstance(d.d.get("counters"), dict):
        cs = d.child("counters")
        for name in cs.d:
            c = cs.child(name)
            detail = f"base {c.d.get('base')} -> candidate {c.d.get('candidate')}"
            checks.append(Check(source, f"counter {name}", not c.flag("regressed"), detail))
    if isinstance(d.d.get("exponent"), dict):
        e = d.child("exponent")
        detail = f"k base {e.opt_number('base')} -> candidate {e.opt_number('candidate')}"
        checks.append(Check(source, "scaling exponent", not e.flag("regressed"), detail))
    if d.d.get("error") is not None:
        checks.append(Check(source, "gate ran", False, str(d.d["error"])))
    for key in ("checks", "cases"):  # gate-self-test (and any other list of checks)
        if key in d.d:
            checks += _checks(d.children(key), source)
    return checks


def _parse_gate(d: _Obj, source: Path, label: str) -> GateResult:
    """``{"command": "gate", "verdict", "time": {"median_ratio", "ci", "threshold", "ratios",
    "regressed", ...}, "counters": {name: {..., "regressed"}}, "exponent": {..., "regressed"},
    "flagged_by", "error"?}``; a self-test may give ``ok``/``targets_met`` instead of a verdict
    and ``checks``/``cases`` (``{"name", "ok", "detail"}``)."""
    checks = tuple(_gate_checks(d, source))
    verdict = d.opt_text("verdict")
    flag = next((k for k in ("ok", "passed", "targets_met") if k in d.d), None)
    if verdict is None and flag is not None:
        verdict = "pass" if d.flag(flag) else "fail"
    if verdict is None and not checks:
        raise SchemaError("no verdict and nothing judged")
    result = GateResult(source, label, d.text("command"), verdict or "unknown", checks=checks)
    if not isinstance(d.d.get("time"), dict):
        return result
    t = d.child("time")
    ci = t.numbers("ci")
    return GateResult(
        source,
        label,
        result.command,
        result.verdict,
        threshold=t.number("threshold"),
        ratios=t.numbers("ratios") if "ratios" in t.d else (),
        median_ratio=t.number("median_ratio"),
        ci=(ci[0], ci[1]) if len(ci) == 2 else None,
        checks=checks,
    )
