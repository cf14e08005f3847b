"""The result of ``nbstream scale``: size sweeps per insert path, and their fits.

Built by :func:`sim.harness.scale.run_scale` (:class:`ScaleResult`). Keys marked "absent in
older files" may be missing; they are then ``None`` and left out again by ``to_json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from sim.results.base import Check, JsonDict, Reader, SchemaError, all_ok, schema_id

__all__ = [
    "SCALE_SCHEMA",
    "BatchTrend",
    "CallFit",
    "CounterFit",
    "GrowingFunction",
    "InstructionFit",
    "RawAutomerge",
    "RawPoint",
    "ScalePath",
    "ScalePoint",
    "ScaleResult",
]

SCALE_SCHEMA = schema_id("scale")


@dataclass(frozen=True, slots=True)
class ScalePoint:
    """One measured load of the sweep."""

    cells: int
    total_s: float  # wall clock, load start to finish
    server_s: float | None = None  # the daemon's own work (absent in older files, as below)
    time_to_first_cell_s: float | None = None
    time_to_full_s: float | None = None
    ops: int | None = None
    scan_steps: int | None = None
    transactions: int | None = None
    frames: int | None = None
    bytes_in: int | None = None

    def to_json(self) -> JsonDict:
        out: JsonDict = {"cells": self.cells, "total_s": self.total_s}
        if self.server_s is not None:
            out["server_s"] = self.server_s
            out["time_to_first_cell_s"] = self.time_to_first_cell_s
            out["time_to_full_s"] = self.time_to_full_s
        for key in ("ops", "scan_steps", "transactions", "frames", "bytes_in"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def read(cls, r: Reader) -> ScalePoint:
        return cls(
            cells=r.integer("cells"),
            total_s=r.number("total_s"),
            server_s=r.opt_number("server_s"),
            time_to_first_cell_s=r.opt_number("time_to_first_cell_s"),
            time_to_full_s=r.opt_number("time_to_full_s"),
            ops=r.opt_integer("ops"),
            scan_steps=r.opt_integer("scan_steps"),
            transactions=r.opt_integer("transactions"),
            frames=r.opt_integer("frames"),
            bytes_in=r.opt_integer("bytes_in"),
        )


@dataclass(frozen=True, slots=True)
class CounterFit:
    """A deterministic counter fitted against the size: its verdict and exponent."""

    verdict: str
    exponent: float | None

    def to_json(self) -> JsonDict:
        return {"verdict": self.verdict, "exponent": self.exponent}

    @classmethod
    def read(cls, r: Reader) -> CounterFit:
        return cls(r.text("verdict"), r.opt_number("exponent"))


@dataclass(frozen=True, slots=True)
class InstructionFit:
    """Instructions per load (valgrind) against the size, at the sweep's small sizes: exact
    counts, so the exponent and its verdict do not flicker. ``available`` false: not counted
    (``reason`` says why)."""

    available: bool
    reason: str | None = None
    points: tuple[tuple[int, int], ...] = ()  # (cells, instructions)
    exponent: float | None = None
    verdict: str | None = None

    def to_json(self) -> JsonDict:
        if not self.available:
            return {"available": False, "reason": self.reason}
        return {
            "available": True,
            "points": [{"cells": n, "instructions": c} for n, c in self.points],
            "exponent": self.exponent,
            "verdict": self.verdict,
        }

    @classmethod
    def read(cls, r: Reader) -> InstructionFit:
        if not r.flag("available"):
            return cls(False, r.opt_text("reason"))
        return cls(
            True,
            None,
            tuple((p.integer("cells"), p.integer("instructions")) for p in r.children("points")),
            r.opt_number("exponent"),
            r.opt_text("verdict"),
        )


@dataclass(frozen=True, slots=True)
class GrowingFunction:
    """A core function's calls per load at the two largest profiled sizes, and the exponent
    between them."""

    name: str
    calls_before: int
    calls: int
    exponent: float

    def to_json(self) -> JsonDict:
        return {
            "name": self.name,
            "calls_before": self.calls_before,
            "calls": self.calls,
            "exponent": self.exponent,
        }

    @classmethod
    def read(cls, r: Reader) -> GrowingFunction:
        return cls(
            r.text("name"), r.integer("calls_before"), r.integer("calls"), r.number("exponent")
        )


@dataclass(frozen=True, slots=True)
class CallFit:
    """Core calls per load (``cProfile`` in lock-step: exact) against the size, up to 1600
    cells: the exponent over all sizes, the local exponent between neighbouring sizes (where a
    growth starts) and the fastest-growing functions. ``available`` false: not counted."""

    available: bool
    reason: str | None = None
    points: tuple[tuple[int, int], ...] = ()  # (cells, calls)
    exponent: float | None = None
    verdict: str | None = None
    local: tuple[tuple[int, int, float], ...] = ()  # (from cells, to cells, exponent)
    growing: tuple[GrowingFunction, ...] = ()
    # Within the largest profiled load: core calls of each batch (after the first), and their
    # Theil-Sen trend across the load as a fraction of the median (absent in older files).
    batch_cells: int | None = None
    batch_calls: tuple[int, ...] = ()
    batch_slope: float | None = None
    batch_tolerance: float | None = None

    @property
    def batch_flat(self) -> bool | None:
        if self.batch_slope is None or self.batch_tolerance is None:
            return None
        return abs(self.batch_slope) <= self.batch_tolerance

    @property
    def worst_local(self) -> tuple[int, int, float] | None:
        return max(self.local, key=lambda x: x[2], default=None)

    def to_json(self) -> JsonDict:
        if not self.available:
            return {"available": False, "reason": self.reason}
        return {
            "available": True,
            "points": [{"cells": n, "calls": c} for n, c in self.points],
            "exponent": self.exponent,
            "verdict": self.verdict,
            "local": [{"from": a, "to": b, "exponent": k} for a, b, k in self.local],
            "growing": [g.to_json() for g in self.growing],
            **(
                {}
                if self.batch_slope is None
                else {
                    "per_batch": {
                        "cells": self.batch_cells,
                        "calls": list(self.batch_calls),
                        "robust_relative_slope": self.batch_slope,
                        "tolerance": self.batch_tolerance,
                        "flat": self.batch_flat,
                    }
                }
            ),
        }

    @classmethod
    def read(cls, r: Reader) -> CallFit:
        if not r.flag("available"):
            return cls(False, r.opt_text("reason"))
        return cls(
            True,
            None,
            tuple((p.integer("cells"), p.integer("calls")) for p in r.children("points")),
            r.opt_number("exponent"),
            r.opt_text("verdict"),
            tuple(
                (x.integer("from"), x.integer("to"), x.number("exponent"))
                for x in r.children("local")
            ),
            tuple(GrowingFunction.read(g) for g in r.children("growing")),
            *(_per_batch(r.child("per_batch")) if r.present("per_batch") else ()),
        )


def _per_batch(r: Reader) -> tuple[int, tuple[int, ...], float, float]:
    return (
        r.integer("cells"),
        r.integers("calls"),
        r.number("robust_relative_slope"),
        r.number("tolerance"),
    )


@dataclass(frozen=True, slots=True)
class BatchTrend:
    """Per-batch daemon work against batch index, in the sweep's largest load."""

    cells: int
    relative_slope: float
    robust_relative_slope: float
    flat: bool
    latencies_s: tuple[float, ...]

    def to_json(self) -> JsonDict:
        return {
            "cells": self.cells,
            "relative_slope": self.relative_slope,
            "robust_relative_slope": self.robust_relative_slope,
            "flat": self.flat,
            "latencies_s": list(self.latencies_s),
        }

    @classmethod
    def read(cls, r: Reader) -> BatchTrend:
        return cls(
            cells=r.integer("cells"),
            relative_slope=r.number("relative_slope"),
            robust_relative_slope=r.number("robust_relative_slope"),
            flat=r.flag("flat"),
            latencies_s=r.numbers("latencies_s") if r.has("latencies_s") else (),
        )


@dataclass(frozen=True, slots=True)
class ScalePath:
    """One insert path's sweep: the fitted exponent of the daemon's work, with its CI and
    verdict, the points, the counter fits and the per-batch trend."""

    exponent: float
    ci: tuple[float, float]
    verdict: str
    points: tuple[ScalePoint, ...]
    r_squared: float | None = None  # absent in older files (so are the fields below)
    wall_exponent: float | None = None
    wall_ci: tuple[float, float] | None = None
    counters: Mapping[str, CounterFit] | None = None
    batch_trend: BatchTrend | None = None
    # The loading peer's time to first cell against the cell count (issue 11: a progressive
    # load's first cell must not grow with the file). None when it cannot be fitted.
    first_cell_exponent: float | None = None
    first_cell_ci: tuple[float, float] | None = None
    # Issue 13: instructions per load, and the verdict of the deterministic signals alone
    # (instructions, ops, scan steps), which decides the exit status.
    instructions: InstructionFit | None = None
    deterministic_verdict: str | None = None
    calls: CallFit | None = None  # core calls per load up to 1600 cells (absent before)
    # Issue 14: what ``exponent`` fits — "server_s" (the bundled daemon's own work) or
    # "time_to_full_s" (a server measured from outside, --connect/--target-cmd).
    exponent_of: str | None = None

    def to_json(self) -> JsonDict:
        out: JsonDict = {"exponent": self.exponent, "ci": list(self.ci), "verdict": self.verdict}
        if self.exponent_of is not None:
            out["exponent_of"] = self.exponent_of
        if self.r_squared is not None:
            out["r_squared"] = self.r_squared
        if self.wall_exponent is not None:
            out["wall_exponent"] = self.wall_exponent
        if self.wall_ci is not None:
            out["wall_ci"] = list(self.wall_ci)
        out["points"] = [p.to_json() for p in self.points]
        if self.counters is not None:
            out["counters"] = {name: c.to_json() for name, c in self.counters.items()}
        if self.batch_trend is not None:
            out["batch_trend"] = self.batch_trend.to_json()
        if self.first_cell_exponent is not None:
            out["first_cell_exponent"] = self.first_cell_exponent
        if self.first_cell_ci is not None:
            out["first_cell_ci"] = list(self.first_cell_ci)
        if self.instructions is not None:
            out["instructions"] = self.instructions.to_json()
        if self.calls is not None:
            out["calls"] = self.calls.to_json()
        if self.deterministic_verdict is not None:
            out["deterministic_verdict"] = self.deterministic_verdict
        return out

    @classmethod
    def read(cls, r: Reader) -> ScalePath:
        return cls(
            exponent=r.number("exponent"),
            ci=r.pair("ci"),
            verdict=r.text("verdict"),
            points=tuple(ScalePoint.read(p) for p in r.children("points")),
            r_squared=r.opt_number("r_squared"),
            wall_exponent=r.opt_number("wall_exponent"),
            wall_ci=r.pair("wall_ci") if r.present("wall_ci") else None,
            counters={n: CounterFit.read(c) for n, c in r.entries("counters")}
            if r.present("counters")
            else None,
            batch_trend=BatchTrend.read(r.child("batch_trend"))
            if r.present("batch_trend")
            else None,
            first_cell_exponent=r.opt_number("first_cell_exponent"),
            first_cell_ci=r.pair("first_cell_ci") if r.present("first_cell_ci") else None,
            instructions=InstructionFit.read(r.child("instructions"))
            if r.present("instructions")
            else None,
            deterministic_verdict=r.opt_text("deterministic_verdict"),
            exponent_of=r.opt_text("exponent_of"),
            calls=CallFit.read(r.child("calls")) if r.present("calls") else None,
        )

    def counter_verdict(self, name: str) -> str | None:
        fit = (self.counters or {}).get(name)
        return None if fit is None else fit.verdict


@dataclass(frozen=True, slots=True)
class RawPoint:
    cells: int
    total_s: float

    def to_json(self) -> JsonDict:
        return {"cells": self.cells, "total_s": self.total_s}

    @classmethod
    def read(cls, r: Reader) -> RawPoint:
        return cls(r.integer("cells"), r.number("total_s"))


@dataclass(frozen=True, slots=True)
class RawAutomerge:
    """The raw Automerge build+sync of the same cells, no daemon (the floor)."""

    points: tuple[RawPoint, ...]
    exponent: float | None = None  # present when the points allow a fit

    def to_json(self) -> JsonDict:
        out: JsonDict = {"points": [p.to_json() for p in self.points]}
        if self.exponent is not None:
            out["exponent"] = self.exponent
        return out

    @classmethod
    def read(cls, r: Reader) -> RawAutomerge:
        return cls(tuple(RawPoint.read(p) for p in r.children("points")), r.opt_number("exponent"))


@dataclass(frozen=True, slots=True)
class ScaleResult:
    """Every insert path's sweep, the raw Automerge floor and the detector checks (``ok``:
    every check passed; it decides ``nbstream scale``'s exit status)."""

    sizes: tuple[int, ...]
    repeats: int
    seed: int
    paths: Mapping[str, ScalePath]
    raw_automerge: RawAutomerge | None
    sizes_by_path: Mapping[str, tuple[int, ...]] | None = None  # absent in older files, as below
    batch_size: int | None = None
    elapsed_s: float | None = None
    checks: tuple[Check, ...] | None = None
    default_sizes: Mapping[str, tuple[int, ...]] | None = None
    # Issue 14: who was measured ("bundled daemon" or the --connect/--target-cmd server) and
    # the --notebook the sweep was built from (path, cells, bytes, sha256; None: generated).
    server: str | None = None
    notebook: Mapping[str, Any] | None = None
    # ``nbstream merge`` of ``scale --shard I/N`` results: N (``elapsed_s`` is then the longest
    # shard's, as shards run side by side). Absent for an unsharded run.
    shards: int | None = None
    command: ClassVar[str] = "scale"

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks or ())

    def to_json(self) -> JsonDict:
        out: JsonDict = {"command": self.command, "schema": SCALE_SCHEMA}
        out["sizes"] = list(self.sizes)
        if self.sizes_by_path is not None:
            out["sizes_by_path"] = {k: list(v) for k, v in self.sizes_by_path.items()}
        out["repeats"] = self.repeats
        out["seed"] = self.seed
        if self.batch_size is not None:
            out["batch_size"] = self.batch_size
        out["paths"] = {name: p.to_json() for name, p in self.paths.items()}
        out["raw_automerge"] = None if self.raw_automerge is None else self.raw_automerge.to_json()
        if self.elapsed_s is not None:
            out["elapsed_s"] = self.elapsed_s
        if self.checks is not None:
            out["checks"] = [c.to_json() for c in self.checks]
        if self.default_sizes is not None:
            out["default_sizes"] = {k: list(v) for k, v in self.default_sizes.items()}
        if self.server is not None:
            out["server"] = self.server
        if self.notebook is not None:
            out["notebook"] = dict(self.notebook)
        if self.shards is not None:
            out["shards"] = self.shards
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScaleResult:
        """Validate ``nbstream scale --json`` output; :class:`SchemaError` names the bad key."""
        r = Reader(data)
        r.envelope(("scale",), SCALE_SCHEMA)
        paths = {name: ScalePath.read(p) for name, p in r.entries("paths")}
        if not paths:
            raise SchemaError("paths: empty")
        checks = tuple(Check.read(c) for c in r.children("checks")) if r.has("checks") else None
        all_ok(checks or (), r)
        return cls(
            sizes=r.integers("sizes"),
            repeats=r.integer("repeats"),
            seed=r.integer("seed"),
            paths=paths,
            raw_automerge=RawAutomerge.read(r.child("raw_automerge"))
            if r.present("raw_automerge")
            else None,
            sizes_by_path=_size_lists(r, "sizes_by_path"),
            batch_size=r.opt_integer("batch_size"),
            elapsed_s=r.opt_number("elapsed_s"),
            checks=checks,
            default_sizes=_size_lists(r, "default_sizes"),
            server=r.opt_text("server"),
            notebook=_notebook(r),
            shards=r.opt_integer("shards"),
        )


def _notebook(r: Reader) -> dict[str, Any] | None:
    if not r.present("notebook"):
        return None
    nb = r.child("notebook")
    return {
        "path": nb.text("path"),
        "cells": nb.integer("cells"),
        "bytes": nb.integer("bytes"),
        "sha256": nb.text("sha256"),
    }


def _size_lists(r: Reader, key: str) -> dict[str, tuple[int, ...]] | None:
    if not r.present(key):
        return None
    obj = r.child(key)
    return {name: obj.integers(name) for name in obj.d}
