"""Turn a load report, the peers' frame arrivals and the daemon's counters into result rows.

Clocks: every time here is ``time.perf_counter()`` of this one process (daemon and peers run
in it), so a batch's server-side start and a frame's arrival at a peer are directly comparable.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from automerge import core as am

from core.blob_store import MemoryBlobStore
from core.ipynb import ParsedNotebook, record_to_cell
from core.loader import BatchTiming, LoadReport
from core.manifest import outputs_to_refs
from core.notebook_doc import CellSnapshot, NotebookDoc
from sim.results.sim import Arrival, BatchRow, LoadBatch, LoadSummary, PeerRow, Phases

if TYPE_CHECKING:
    from sim.harness.peers import VirtualPeer
    from sim.harness.target import ServerFigures

__all__ = [
    "batch_rows",
    "batch_rows_from_peers",
    "load_summary",
    "peer_row",
    "peer_row_at",
    "phases",
    "raw_automerge_seconds",
]


def load_batch(b: BatchTiming, origin: float) -> LoadBatch:
    """``b`` as result data, times relative to ``origin`` (as ``LoadReport.to_dict`` has it)."""
    return LoadBatch(
        index=b.index,
        cells=b.cells,
        outputs=b.outputs,
        manifest_s=b.manifest_s,
        insert_s=b.insert_s,
        notify_s=b.notify_s,
        started_at=b.started_at - origin,
        finished_at=b.finished_at - origin,
        doc_cells_after=b.doc_cells_after,
    )


def load_summary(report: LoadReport) -> LoadSummary:
    """``report`` as result data (as ``LoadReport.to_dict``)."""
    return LoadSummary(
        notebook_id=report.notebook_id,
        insert_path=report.insert_path,
        batch_size=report.batch_size,
        ok=report.ok,
        error=report.error,
        cells=report.cells,
        total_cells=report.total_cells,
        file_bytes=report.file_bytes,
        read_s=report.read_s,
        parse_s=report.parse_s,
        metadata_s=report.metadata_s,
        total_s=report.total_s,
        batches=tuple(load_batch(b, report.started_at) for b in report.batches),
    )


def batch_rows(
    report: LoadReport,
    peers: Mapping[str, VirtualPeer],
    join_batch: Mapping[str, int | None],
) -> list[BatchRow]:
    """One row per batch with each peer's latency: batch start → first frame holding its cells."""
    arrivals: dict[str, list[tuple[float, int]]] = {}
    for name, peer in peers.items():
        client = peer.client
        if client is None:
            continue
        base = client.started_at
        arrivals[name] = [(base + a.t, a.cell_count) for a in client.statistics().arrivals]
    rows: list[BatchRow] = []
    t0 = report.started_at
    for b in report.batches:
        latency: dict[str, float | None] = {}
        for name, seq in arrivals.items():
            joined = join_batch.get(name)
            if joined is not None and joined > b.index:
                latency[name] = None
                continue
            hit = next((t for t, n in seq if t >= b.started_at and n >= b.doc_cells_after), None)
            latency[name] = None if hit is None else hit - b.started_at
        rows.append(BatchRow.with_latency(load_batch(b, t0), latency))
    return rows


def batch_rows_from_peers(
    report: LoadReport, rows: Sequence[PeerRow], join_batch: Mapping[str, int | None]
) -> list[BatchRow]:
    """:func:`batch_rows` from peer rows (arrival times relative to ``report``'s start), as the
    rows of peers in worker processes arrive."""
    t0 = report.started_at
    out: list[BatchRow] = []
    for b in report.batches:
        latency: dict[str, float | None] = {}
        for row in rows:
            if row.sync_frames_with_changes is None:  # no client (never_reads): no arrivals
                continue
            joined = join_batch.get(row.name)
            if joined is not None and joined > b.index:
                latency[row.name] = None
                continue
            hit = next(
                (
                    t0 + a.t
                    for a in row.arrivals
                    if t0 + a.t >= b.started_at and a.cells >= (b.doc_cells_after or 0)
                ),
                None,
            )
            latency[row.name] = None if hit is None else hit - b.started_at
        out.append(BatchRow.with_latency(load_batch(b, t0), latency))
    return out


def phases(report: LoadReport, stats: ServerFigures | None) -> Phases:
    """Where the load's time went, by phase (sync and network summed over every peer)."""
    return Phases(
        read_s=report.read_s,
        parse_s=report.parse_s,
        manifest_s=sum(b.manifest_s for b in report.batches),
        insert_s=sum(b.insert_s for b in report.batches) + report.metadata_s,
        sync_gen_s=stats.sync_gen_s if stats else 0.0,
        network_s=stats.send_s if stats else 0.0,
        total_s=report.total_s,
    )


def peer_row(
    peer: VirtualPeer, joined_at: int | None, report: LoadReport | None, *, converged: bool
) -> PeerRow:
    origin = report.started_at if report is not None else None
    return peer_row_at(peer, joined_at, origin, converged=converged)


def peer_row_at(
    peer: VirtualPeer, joined_at: int | None, origin: float | None, *, converged: bool
) -> PeerRow:
    """:func:`peer_row` with the load's start (``time.perf_counter()``) given as a number, as
    a worker process has it (on Linux ``perf_counter`` is ``CLOCK_MONOTONIC``, one clock for
    every process of the machine); None: times relative to the peer's own start."""
    client = peer.client
    if client is None:
        return PeerRow(
            name=peer.name,
            behaviour=peer.spec.behaviour,
            joined_at_batch=joined_at,
            time_to_first_cell_s=None,
            time_to_full_s=None,
            converged=converged,
            frames_in=0,
            bytes_in=0,
            arrivals=(),
        )
    stats = client.statistics()
    if origin is None:
        origin = client.started_at
    return PeerRow(
        name=peer.name,
        behaviour=peer.spec.behaviour,
        joined_at_batch=joined_at,
        time_to_first_cell_s=stats.time_to_first_cell_s,
        time_to_full_s=stats.time_to_full_s,
        converged=converged,
        frames_in=stats.frames_in,
        bytes_in=stats.bytes_in,
        arrivals=tuple(
            Arrival(
                t=client.started_at + a.t - origin,
                cells=a.cell_count,
                bytes=a.nbytes,
                changed=a.changed,
            )
            for a in stats.arrivals
        ),
        sync_frames_with_changes=stats.sync_frames_with_changes,
    )


def snapshots(parsed: ParsedNotebook) -> list[CellSnapshot]:
    store = MemoryBlobStore()
    return [record_to_cell(r, outputs_to_refs(r.outputs, store)) for r in parsed.cells]


def raw_automerge_seconds(parsed: ParsedNotebook, batch_size: int) -> float:
    """Build the same cells batch by batch and sync them to a second doc, with no daemon:
    the floor the daemon's time-to-full is compared against (manifests excluded)."""
    cells = snapshots(parsed)
    server, client = NotebookDoc("raw"), NotebookDoc.empty()
    ss, cs = am.SyncState(), am.SyncState()
    t0 = time.perf_counter()
    for start in range(0, len(cells), batch_size):
        server.add_cells_full(start, cells[start : start + batch_size])
        _sync(server, ss, client, cs)
    return time.perf_counter() - t0


def _sync(a: NotebookDoc, sa: am.SyncState, b: NotebookDoc, sb: am.SyncState) -> None:
    while True:
        moved = False
        msg = a.generate_sync_message(sa)
        if msg is not None:
            b.receive_sync_message(sb, msg)
            moved = True
        msg = b.generate_sync_message(sb)
        if msg is not None:
            a.receive_sync_message(sa, msg)
            moved = True
        if not moved:
            return
