"""The report's input data model, built from the result model (:mod:`sim.results`).

Result files are validated by the result kinds' own ``from_json`` (:func:`sim.results.read_result`);
this module turns each result into what the report shows: :class:`RunResult` (``sim`` and
``profile``), :class:`ScaleResult`, :class:`GateResult` (``gate``, ``gate-self-test`` and their
error payload), each with the file it came from and its label, and the checks as :class:`Check`
rows. Nested shapes (notebook, phases, peers, batches, scale points, batch trends) *are* the
result model's classes. asv history has no result kind of its own and is declared here.
:class:`Inputs` gathers everything. Loading files and the command live in
:mod:`sim.report.command`, which re-exports every public name here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sim.results import AnyResult
from sim.results import base as _base
from sim.results import gate as _gate
from sim.results import profile as _profile
from sim.results import scale as _scale
from sim.results import self_test as _self_test
from sim.results import sim as _sim
from sim.results.base import Reader, SchemaError
from sim.results.scale import BatchTrend, RawPoint, ScalePoint
from sim.results.sim import BatchRow, NotebookInfo, PeerRow, Phases

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
    "Reader",
    "RunBatch",
    "RunResult",
    "ScalePath",
    "ScalePoint",
    "ScaleResult",
    "SchemaError",
    "loader_peer",
    "view_of",
]

PHASE_KEYS = ("read_s", "parse_s", "manifest_s", "insert_s", "sync_gen_s", "network_s")

Peer = PeerRow  # a sim run's peer row (name, behaviour, times to first cell and full, ...)
RunBatch = BatchRow  # a batch with each peer's latency (None: not delivered / not joined)


# --------------------------------------------------------------------------- the report's views


@dataclass(frozen=True, slots=True)
class Check:
    """A check of some result file, as the report lists it."""

    source: Path
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class RunResult:
    """A ``sim`` or ``profile`` result (profile has no peers, no checks, no convergence)."""

    source: Path
    label: str
    command: str
    notebook: NotebookInfo
    phases: Phases
    batches: tuple[BatchRow, ...]
    peers: tuple[PeerRow, ...] = ()
    converged: bool | None = None
    cells: int | None = None
    scenario: str | None = None
    insert_path: str | None = None
    daemon_overhead_ratio: float | None = None
    checks: tuple[Check, ...] = ()


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
    raw_points: tuple[RawPoint, ...] = ()
    raw_exponent: float | None = None
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True, slots=True)
class GateResult:
    """A ``gate`` or ``gate-self-test`` result, or the error payload of either."""

    source: Path
    label: str
    command: str
    verdict: str  # "pass", "regression", "fail" (self-test targets missed), "error"
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


# --------------------------------------------------------------------------- views of results


def _checks(checks: tuple[_base.Check, ...] | None, source: Path) -> tuple[Check, ...]:
    return tuple(Check(source, c.name, c.ok, c.detail) for c in checks or ())


def _run_view(r: _sim.SimResult | _profile.ProfileResult, source: Path, label: str) -> RunResult:
    if r.phases is None:
        raise SchemaError("phases: empty (the load never started)")
    if isinstance(r, _profile.ProfileResult):
        return RunResult(source, label, r.command, r.notebook, r.phases, r.batches)
    return RunResult(
        source,
        label,
        r.command,
        r.notebook,
        r.phases,
        r.batches,
        peers=r.peers,
        converged=r.converged,
        cells=r.cells,
        scenario=r.scenario,
        insert_path=r.insert_path,
        daemon_overhead_ratio=r.daemon_overhead_ratio,
        checks=_checks(r.checks, source),
    )


def _scale_view(r: _scale.ScaleResult, source: Path, label: str) -> ScaleResult:
    paths = {
        name: ScalePath(
            name=name,
            exponent=p.exponent,
            ci=p.ci,
            verdict=p.verdict,
            r_squared=math.nan if p.r_squared is None else p.r_squared,
            points=p.points,
            counters={n: (c.verdict, c.exponent) for n, c in (p.counters or {}).items()},
            batch_trend=p.batch_trend,
        )
        for name, p in r.paths.items()
    }
    checks = _checks(r.checks, source)
    raw = r.raw_automerge
    if raw is None:
        return ScaleResult(source, label, paths, checks=checks)
    return ScaleResult(source, label, paths, raw.points, raw.exponent, checks)


def _gate_checks(c: _gate.Comparison, source: Path) -> list[Check]:
    """The gate's judgements as checks: time, each counter, the exponent (``regressed`` = fail)."""
    t = c.time
    detail = f"median ratio {t.median_ratio:.3f}, CI {list(t.ci)}, threshold {t.threshold:g}"
    if t.inconclusive:
        detail += " (inconclusive: median above the threshold, CI is not)"
    checks = [Check(source, "time (paired ratio)", not t.regressed, detail)]
    for name, j in c.counters.items():
        detail = f"base {j.base} -> candidate {j.candidate}"
        checks.append(Check(source, f"counter {name}", not j.regressed, detail))
    e = c.exponent
    detail = f"k base {e.base} -> candidate {e.candidate}"
    checks.append(Check(source, "scaling exponent", not e.regressed, detail))
    return checks


def _gate_view(
    r: _gate.GateResult | _gate.GateErrorResult | _self_test.SelfTestResult,
    source: Path,
    label: str,
) -> GateResult:
    if isinstance(r, _gate.GateErrorResult):
        return GateResult(
            source, label, r.command, r.verdict, checks=(Check(source, "gate ran", False, r.error),)
        )
    if isinstance(r, _self_test.SelfTestResult):
        verdict = "pass" if r.targets_met else "fail"
        return GateResult(source, label, r.command, verdict, checks=_checks(r.checks(), source))
    t = r.comparison.time
    return GateResult(
        source,
        label,
        r.command,
        r.verdict,
        threshold=t.threshold,
        ratios=t.ratios,
        median_ratio=t.median_ratio,
        ci=t.ci,
        checks=tuple(_gate_checks(r.comparison, source)),
    )


View = RunResult | ScaleResult | GateResult


def view_of(result: AnyResult, source: Path, label: str) -> View:
    """The report's view of one result read by :func:`sim.results.read_result`."""
    if isinstance(result, (_sim.SimResult, _profile.ProfileResult)):
        return _run_view(result, source, label)
    if isinstance(result, _scale.ScaleResult):
        return _scale_view(result, source, label)
    if isinstance(result, (_gate.GateResult, _gate.GateErrorResult, _self_test.SelfTestResult)):
        return _gate_view(result, source, label)
    raise TypeError(f"not a result: {type(result).__name__}")  # pragma: no cover
