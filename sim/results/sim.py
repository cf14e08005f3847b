"""The result of ``nbstream sim``: one scenario run against a real daemon (:class:`SimResult`).

Built by :func:`sim.harness.runner.run_scenario`; ``to_json`` is what ``nbstream sim --json``
prints. Keys marked "absent in older files" may be missing from a file; they are then ``None``
here and left out again by ``to_json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from sim.results.base import Check, JsonDict, Reader, all_ok, schema_id
from sim.results.collab import EditSummary, TypistsResult

__all__ = [
    "PHASE_NAMES",
    "SIM_SCHEMA",
    "Arrival",
    "BatchRow",
    "LatencyTrend",
    "LoadBatch",
    "LoadSummary",
    "NotebookInfo",
    "PeerRow",
    "Phases",
    "SimResult",
    "Targets",
    "TtfcTarget",
    "WorkerRow",
]

SIM_SCHEMA = schema_id("sim")
PHASE_NAMES = ("read_s", "parse_s", "manifest_s", "insert_s", "sync_gen_s", "network_s", "total_s")


@dataclass(frozen=True, slots=True)
class NotebookInfo:
    path: str
    cells: int
    bytes: int
    sha256: str

    def to_json(self) -> JsonDict:
        return {"path": self.path, "cells": self.cells, "bytes": self.bytes, "sha256": self.sha256}

    @classmethod
    def read(cls, r: Reader) -> NotebookInfo:
        return cls(r.text("path"), r.integer("cells"), r.integer("bytes"), r.text("sha256"))


@dataclass(frozen=True, slots=True)
class Phases:
    """Where one load's time went (seconds; sync and network summed over every peer)."""

    read_s: float
    parse_s: float
    manifest_s: float
    insert_s: float
    sync_gen_s: float
    network_s: float
    total_s: float

    def get(self, name: str) -> float:
        value: float = getattr(self, name)
        return value

    def to_json(self) -> JsonDict:
        return {name: self.get(name) for name in PHASE_NAMES}

    @classmethod
    def read(cls, r: Reader) -> Phases:
        return cls(*(r.number(name) for name in PHASE_NAMES))

    @staticmethod
    def write_optional(phases: Phases | None) -> JsonDict:
        """``{}`` stands for "no load report" (the load never started)."""
        return {} if phases is None else phases.to_json()

    @classmethod
    def read_optional(cls, r: Reader) -> Phases | None:
        return None if not r.d else cls.read(r)


@dataclass(frozen=True, slots=True)
class LoadBatch:
    """One batch of a load (a batch of ``core.loader.LoadReport.to_dict``); times relative to
    the load's start."""

    index: int
    cells: int
    outputs: int
    manifest_s: float
    insert_s: float
    notify_s: float
    started_at: float
    finished_at: float
    doc_cells_after: int | None = None  # absent in older files

    def to_json(self) -> JsonDict:
        out: JsonDict = {
            "index": self.index,
            "cells": self.cells,
            "outputs": self.outputs,
            "manifest_s": self.manifest_s,
            "insert_s": self.insert_s,
            "notify_s": self.notify_s,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        if self.doc_cells_after is not None:
            out["doc_cells_after"] = self.doc_cells_after
        return out

    @staticmethod
    def read_fields(r: Reader) -> dict[str, Any]:
        return {
            "index": r.integer("index"),
            "cells": r.integer("cells"),
            "outputs": r.integer("outputs"),
            "manifest_s": r.number("manifest_s"),
            "insert_s": r.number("insert_s"),
            "notify_s": r.number("notify_s"),
            "started_at": r.number("started_at"),
            "finished_at": r.number("finished_at"),
            "doc_cells_after": r.opt_integer("doc_cells_after"),
        }

    @classmethod
    def read(cls, r: Reader) -> LoadBatch:
        return cls(**LoadBatch.read_fields(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchRow(LoadBatch):
    """A batch of the run's load with each peer's latency: batch start -> first frame holding
    its cells (``None``: not delivered, or the peer had not joined)."""

    latency_s: Mapping[str, float | None]

    def to_json(self) -> JsonDict:
        return {**LoadBatch.to_json(self), "latency_s": dict(self.latency_s)}

    @classmethod
    def with_latency(cls, batch: LoadBatch, latency_s: Mapping[str, float | None]) -> BatchRow:
        timing = {f.name: getattr(batch, f.name) for f in fields(LoadBatch)}
        return cls(**timing, latency_s=latency_s)

    @classmethod
    def read(cls, r: Reader) -> BatchRow:
        return cls(**LoadBatch.read_fields(r), latency_s=r.opt_number_map("latency_s"))


@dataclass(frozen=True, slots=True)
class LoadSummary:
    """One load the daemon ran (``core.loader.LoadReport.to_dict``)."""

    notebook_id: str
    insert_path: str
    batch_size: int
    ok: bool
    error: str | None
    cells: int
    total_cells: int | None
    file_bytes: int
    read_s: float
    parse_s: float
    metadata_s: float
    total_s: float
    batches: tuple[LoadBatch, ...]

    def to_json(self) -> JsonDict:
        return {
            "notebook_id": self.notebook_id,
            "insert_path": self.insert_path,
            "batch_size": self.batch_size,
            "ok": self.ok,
            "error": self.error,
            "cells": self.cells,
            "total_cells": self.total_cells,
            "file_bytes": self.file_bytes,
            "read_s": self.read_s,
            "parse_s": self.parse_s,
            "metadata_s": self.metadata_s,
            "total_s": self.total_s,
            "batches": [b.to_json() for b in self.batches],
        }

    @classmethod
    def read(cls, r: Reader) -> LoadSummary:
        return cls(
            notebook_id=r.text("notebook_id"),
            insert_path=r.text("insert_path"),
            batch_size=r.integer("batch_size"),
            ok=r.flag("ok"),
            error=r.opt_text("error", required=True),
            cells=r.integer("cells"),
            total_cells=r.opt_integer("total_cells", required=True),
            file_bytes=r.integer("file_bytes"),
            read_s=r.number("read_s"),
            parse_s=r.number("parse_s"),
            metadata_s=r.number("metadata_s"),
            total_s=r.number("total_s"),
            batches=tuple(LoadBatch.read(b) for b in r.children("batches")),
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoadSummary:
        return cls.read(Reader(data))


@dataclass(frozen=True, slots=True)
class Arrival:
    """One frame at a peer: ``t`` seconds after the load started, the peer's cell count then."""

    t: float
    cells: int
    bytes: int
    changed: bool

    def to_json(self) -> JsonDict:
        return {"t": self.t, "cells": self.cells, "bytes": self.bytes, "changed": self.changed}

    @classmethod
    def read(cls, r: Reader) -> Arrival:
        return cls(r.number("t"), r.integer("cells"), r.integer("bytes"), r.flag("changed"))


@dataclass(frozen=True, slots=True)
class PeerRow:
    name: str
    behaviour: str
    joined_at_batch: int | None
    time_to_first_cell_s: float | None
    time_to_full_s: float | None
    converged: bool
    frames_in: int
    bytes_in: int
    arrivals: tuple[Arrival, ...]
    sync_frames_with_changes: int | None = None  # absent when the peer never connected

    def to_json(self) -> JsonDict:
        out: JsonDict = {
            "name": self.name,
            "behaviour": self.behaviour,
            "joined_at_batch": self.joined_at_batch,
            "time_to_first_cell_s": self.time_to_first_cell_s,
            "time_to_full_s": self.time_to_full_s,
            "converged": self.converged,
            "frames_in": self.frames_in,
            "bytes_in": self.bytes_in,
            "arrivals": [a.to_json() for a in self.arrivals],
        }
        if self.sync_frames_with_changes is not None:
            out["sync_frames_with_changes"] = self.sync_frames_with_changes
        return out

    @classmethod
    def read(cls, r: Reader) -> PeerRow:
        return cls(
            name=r.text("name"),
            behaviour=r.text("behaviour"),
            joined_at_batch=r.opt_integer("joined_at_batch", required=True),
            time_to_first_cell_s=r.opt_number("time_to_first_cell_s", required=True),
            time_to_full_s=r.opt_number("time_to_full_s", required=True),
            converged=r.flag("converged"),
            frames_in=r.integer("frames_in"),
            bytes_in=r.integer("bytes_in"),
            arrivals=tuple(Arrival.read(a) for a in r.children("arrivals")),
            sync_frames_with_changes=r.opt_integer("sync_frames_with_changes"),
        )


@dataclass(frozen=True, slots=True)
class TtfcTarget:
    """The loading peer's time to first cell over its time to full (target: <= 0.25)."""

    peer: str
    value: float
    target: float
    met: bool

    def to_json(self) -> JsonDict:
        return {"peer": self.peer, "value": self.value, "target": self.target, "met": self.met}

    @classmethod
    def read(cls, r: Reader) -> TtfcTarget:
        return cls(r.text("peer"), r.number("value"), r.number("target"), r.flag("met"))


@dataclass(frozen=True, slots=True)
class LatencyTrend:
    """The trend of the loading peer's per-batch latency over the load (flat = O(1) a batch)."""

    peer: str
    robust_relative_slope: float
    relative_slope: float
    flat: bool

    def to_json(self) -> JsonDict:
        return {
            "peer": self.peer,
            "robust_relative_slope": self.robust_relative_slope,
            "relative_slope": self.relative_slope,
            "flat": self.flat,
        }

    @classmethod
    def read(cls, r: Reader) -> LatencyTrend:
        return cls(
            r.text("peer"),
            r.number("robust_relative_slope"),
            r.number("relative_slope"),
            r.flag("flat"),
        )


@dataclass(frozen=True, slots=True)
class Targets:
    """Timing targets measured in the run; informational (timings never fail a run)."""

    ttfc_over_full: TtfcTarget | None = None
    batch_latency_trend: LatencyTrend | None = None

    def to_json(self) -> JsonDict:
        out: JsonDict = {}
        if self.ttfc_over_full is not None:
            out["ttfc_over_full"] = self.ttfc_over_full.to_json()
        if self.batch_latency_trend is not None:
            out["batch_latency_trend"] = self.batch_latency_trend.to_json()
        return out

    @classmethod
    def read(cls, r: Reader) -> Targets:
        return cls(
            TtfcTarget.read(r.child("ttfc_over_full")) if r.has("ttfc_over_full") else None,
            LatencyTrend.read(r.child("batch_latency_trend"))
            if r.has("batch_latency_trend")
            else None,
        )


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """One worker process of ``nbstream sim --workers N``: how many peers it ran, its peak
    resident set (KiB) over the run."""

    index: int
    peers: int
    peak_rss_kib: int

    def to_json(self) -> JsonDict:
        return {"index": self.index, "peers": self.peers, "peak_rss_kib": self.peak_rss_kib}

    @classmethod
    def read(cls, r: Reader) -> WorkerRow:
        return cls(r.integer("index"), r.integer("peers"), r.integer("peak_rss_kib"))


@dataclass(frozen=True, slots=True)
class SimResult:
    """One scenario run: what every peer saw, per batch and in total, and the run's checks.

    ``ok`` (every check passed) decides ``nbstream sim``'s exit status.
    """

    version: str
    seed: int
    scenario: str
    transport: str
    insert_path: str
    batch_size: int
    notebook: NotebookInfo
    converged: bool
    cells: int
    peers: tuple[PeerRow, ...]
    batches: tuple[BatchRow, ...]
    phases: Phases | None  # None: no load report (written as {})
    counters: Mapping[str, int]
    raw_automerge_s: float
    daemon_overhead_ratio: float
    checks: tuple[Check, ...]
    loads: tuple[LoadSummary, ...] | None = None  # absent in older files
    targets: Targets | None = None  # absent in older files
    # The run's peak resident set (KiB): daemon and virtual peers share the process, so this
    # is everything the run held at once. Absent in older files.
    peak_rss_kib: int | None = None
    # What was measured: "bundled daemon (memory, DiskBlobStore)", "server on /run/x.sock", ...
    # Absent in older files.
    server: str | None = None
    # The collaboration scenarios (edits, edits-rollback, partition, typists): what became of
    # the peers' edits (written with ``edits_lost`` beside it) and the typists' latency.
    edits: EditSummary | None = None
    typists: TypistsResult | None = None
    # sha256 over the run's ordered events (sim.harness.trace). Absent in older files.
    trace_sha256: str | None = None
    # ``--workers N``: the worker processes the peers ran in (``peak_rss_kib`` above is then the
    # daemon's process alone). Absent when the peers ran in the daemon's process.
    workers: tuple[WorkerRow, ...] | None = None
    command: ClassVar[str] = "sim"

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def loading_peer(self) -> PeerRow | None:
        """The peer whose open triggered the successful load ("retry" after a rollback), if it
        got the full notebook."""
        by_name = {p.name: p for p in self.peers}
        for name in ("retry", "loader"):
            row = by_name.get(name)
            if row is not None and row.time_to_full_s:
                return row
        return None

    def to_json(self) -> JsonDict:
        out: JsonDict = {
            "command": self.command,
            "schema": SIM_SCHEMA,
            "version": self.version,
            "seed": self.seed,
            "scenario": self.scenario,
            "transport": self.transport,
            "insert_path": self.insert_path,
            "batch_size": self.batch_size,
            "notebook": self.notebook.to_json(),
            "converged": self.converged,
            "cells": self.cells,
            "ok": self.ok,
            "peers": [p.to_json() for p in self.peers],
            "batches": [b.to_json() for b in self.batches],
            "phases": Phases.write_optional(self.phases),
            "counters": dict(self.counters),
            "raw_automerge_s": self.raw_automerge_s,
            "daemon_overhead_ratio": self.daemon_overhead_ratio,
        }
        if self.loads is not None:
            out["loads"] = [r.to_json() for r in self.loads]
        if self.targets is not None:
            out["targets"] = self.targets.to_json()
        if self.peak_rss_kib is not None:
            out["peak_rss_kib"] = self.peak_rss_kib
        if self.server is not None:
            out["server"] = self.server
        if self.edits is not None:
            out["edits"] = self.edits.to_json()
            out["edits_lost"] = self.edits.lost
        if self.typists is not None:
            out["typists"] = self.typists.to_json()
        if self.trace_sha256 is not None:
            out["trace_sha256"] = self.trace_sha256
        if self.workers is not None:
            out["workers"] = [w.to_json() for w in self.workers]
        out["checks"] = [c.to_json() for c in self.checks]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SimResult:
        """Validate ``nbstream sim --json`` output; :class:`SchemaError` names the bad key."""
        r = Reader(data)
        r.envelope(("sim",), SIM_SCHEMA)
        checks = tuple(Check.read(c) for c in r.children("checks"))
        all_ok(checks, r)
        return cls(
            version=r.text("version"),
            seed=r.integer("seed"),
            scenario=r.text("scenario"),
            transport=r.text("transport"),
            insert_path=r.text("insert_path"),
            batch_size=r.integer("batch_size"),
            notebook=NotebookInfo.read(r.child("notebook")),
            converged=r.flag("converged"),
            cells=r.integer("cells"),
            peers=tuple(PeerRow.read(p) for p in r.children("peers")),
            batches=tuple(BatchRow.read(b) for b in r.children("batches")),
            phases=Phases.read_optional(r.child("phases")),
            counters=r.int_map("counters"),
            raw_automerge_s=r.number("raw_automerge_s"),
            daemon_overhead_ratio=r.number("daemon_overhead_ratio"),
            checks=checks,
            loads=tuple(LoadSummary.read(x) for x in r.children("loads"))
            if r.has("loads")
            else None,
            targets=Targets.read(r.child("targets")) if r.has("targets") else None,
            peak_rss_kib=r.integer("peak_rss_kib") if r.has("peak_rss_kib") else None,
            server=r.text("server") if r.has("server") else None,
            edits=EditSummary.read(r.child("edits")) if r.has("edits") else None,
            typists=TypistsResult.read(r.child("typists")) if r.has("typists") else None,
            trace_sha256=r.text("trace_sha256") if r.has("trace_sha256") else None,
            workers=tuple(WorkerRow.read(w) for w in r.children("workers"))
            if r.has("workers")
            else None,
        )
