"""The streaming load: file → parse → batches of cells → doc → every peer, batch by batch.

Per batch of ``batch_size`` cells:

0. take the batch from a :class:`~core.notebook_source.NotebookSource`, read (256 KiB at a
   time) and parsed on the loop; the file is opened, and in the rare fallback parsed whole, in a
   worker thread. The file is read only as far as the batch needs, so batch 0 waits for its
   own bytes, not the whole file; ``total_cells`` is known once the last cell is parsed. When
   the source falls back to the whole-file parse it says ``restart`` and the cells streamed so
   far are cleared first;
1. build output manifests (blob store I/O) **outside** the doc lock, in a worker thread when a
   value is large enough to become a content blob;
2. under the lock, insert the whole batch with :meth:`NotebookDoc.add_cells_full` (one
   transaction, no scans) — or, for the ``naive`` path, the scanning 4-call sequence. A source
   over ``source_step`` code points goes in as its first step; the rest follows in steps, one
   transaction and one notification each, the loop free between them (:func:`_append_in_steps`);
3. notify the room: every peer's writer (the loading peer's included) generates one sync message
   covering what it has not seen yet and sends it. The loader does not wait for any peer, so a
   peer that never reads slows nobody down, and the daemon keeps *reading* every peer during the
   load, so the loading client's sync replies are applied at once and each batch frame carries
   that batch's cells (reference §4.4 explains why the reference's did not).

Notebook metadata goes last. On any failure — unreadable file, invalid notebook (found at any
point of the file), blob store error, the loading client gone, cancellation — the rollback runs
synchronously in this order: clear the cells, release the claim (``failed`` with the reason),
notify once. Each peer's writer then sends the empty state followed by the ``failed`` status.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from . import protocol as p
from .blob_store import BlobStore
from .errors import CoreError
from .ipynb import MAX_NOTEBOOK_BYTES, CellRecord, notebook_metadata_to_doc, record_to_cell
from .manifest import INLINE_THRESHOLD, has_large_value, outputs_to_refs
from .notebook_doc import NewCell
from .notebook_source import NotebookSource, SourceBatch
from .room import NotebookRoom

__all__ = [
    "BatchTiming",
    "InsertPath",
    "LoadAborted",
    "LoadOptions",
    "LoadReport",
    "start_load_task",
    "stream_load",
]

InsertPath = Literal["full", "naive"]
SOURCE_STEP = 16 * 1024
BatchHook = Callable[[int], Awaitable[None]]
_R = TypeVar("_R")


class LoadAborted(CoreError):
    """The load stopped because its client went away or the load was cancelled."""


@dataclass(frozen=True, slots=True)
class LoadOptions:
    batch_size: int = 3
    insert_path: InsertPath = "full"
    max_notebook_bytes: int = MAX_NOTEBOOK_BYTES
    inline_threshold: int = INLINE_THRESHOLD
    offload_blobs: bool = True  # build manifests in a worker thread (keeps the loop reading)
    # A source longer than this (code points) goes in as steps of this size, each its own
    # transaction and sync message, with the loop free between them (see _append_in_steps).
    source_step: int = SOURCE_STEP

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.source_step < 1:
            raise ValueError(f"source_step must be >= 1, got {self.source_step}")
        if self.insert_path not in ("full", "naive"):
            raise ValueError(f"insert_path must be 'full' or 'naive', got {self.insert_path!r}")


BatchTiming = p.BatchFigures
"""Server-side phase times of one batch (seconds; ``started_at``/``finished_at`` are
``time.perf_counter`` readings): the record the ``statistics`` response carries as it is."""


def _batch_dict(b: BatchTiming, origin: float) -> dict[str, Any]:
    """JSON-able, with ``started_at``/``finished_at`` relative to ``origin``."""
    out = dataclasses.asdict(b)
    out["started_at"] -= origin
    out["finished_at"] -= origin
    return out


@dataclass(slots=True)
class LoadReport:
    """What one streaming load did and how long each phase took."""

    notebook_id: str
    insert_path: str
    batch_size: int
    ok: bool = False
    error: str | None = None
    cells: int = 0
    total_cells: int | None = None
    file_bytes: int = 0
    read_s: float = 0.0
    parse_s: float = 0.0
    metadata_s: float = 0.0
    total_s: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    batches: list[BatchTiming] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
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
            "batches": [_batch_dict(b, self.started_at) for b in self.batches],
        }


def load_figures(report: LoadReport) -> p.LoadFigures:
    """``report`` as the ``statistics`` response carries it (clock readings kept absolute)."""
    return p.LoadFigures(
        ok=report.ok,
        error=report.error,
        cells=report.cells,
        total_cells=report.total_cells,
        file_bytes=report.file_bytes,
        read_s=report.read_s,
        parse_s=report.parse_s,
        metadata_s=report.metadata_s,
        total_s=report.total_s,
        started_at=report.started_at,
        batches=tuple(report.batches),
    )


async def _next_batch(source: NotebookSource, size: int) -> SourceBatch:
    """The next batch, read and parsed on the loop; the whole-file fallback in a thread.

    Reads are 256 KiB from a file just opened (page cache: ~50 µs each). A thread hop per read
    would let the peers' round trips interleave with the batches by timing, and the gate's
    frame counts would vary run to run on the same code."""
    batch = source.take(size, may_reparse=False)
    if batch is None:
        batch = await asyncio.to_thread(source.take, size)
    assert batch is not None  # may_reparse=True always answers
    return batch


def _batch_refs(
    batch: Sequence[CellRecord], store: BlobStore, inline_threshold: int
) -> list[list[str]]:
    return [
        outputs_to_refs(record.outputs, store, inline_threshold=inline_threshold)
        if record.outputs
        else []
        for record in batch
    ]


async def stream_load(
    room: NotebookRoom,
    store: BlobStore,
    options: LoadOptions,
    *,
    client_alive: Callable[[], bool] = lambda: True,
    before_batch: BatchHook | None = None,
) -> LoadReport:
    """Load ``room.path`` into ``room.doc`` progressively. The caller must hold the claim.

    Never raises for a load failure: the report says ``ok=False`` with the reason, the room is
    rolled back (cells cleared, claim released as ``failed``, one notification). Cancellation
    rolls back the same way and then propagates.
    """
    report = LoadReport(room.notebook_id, options.insert_path, options.batch_size)
    report.started_at = time.perf_counter()
    doc = room.doc
    source = NotebookSource(str(room.path), max_bytes=options.max_notebook_bytes)
    try:
        await asyncio.to_thread(source.open)
        size = options.batch_size
        index = 0
        while not source.finished:
            batch = await _next_batch(source, size)
            if batch.restart:  # the whole-file parse replaced the stream: start over
                async with room.lock:
                    doc.delete_cells(room.load_cells)
                room.load_cells.clear()
                room.load_next_index = 0
                report.cells = 0
            report.total_cells = source.total_cells
            if not batch.records:
                break
            if before_batch is not None:
                await before_batch(index)
            if not client_alive():
                raise LoadAborted(f"loading client disconnected before batch {index}")
            await _insert_batch(room, store, options, report, index, batch.records, client_alive)
            index += 1
        report.file_bytes, report.read_s, report.parse_s = (
            source.file_bytes,
            source.read_s,
            source.parse_s,
        )
        t0 = time.perf_counter()
        header = source.header
        metadata = header.metadata if header is not None else {}
        if metadata:
            values = notebook_metadata_to_doc(metadata)
            async with room.lock:
                room.load_metadata.update(values)  # before the write: a rollback may follow
                doc.update_notebook_metadata(values)
            room.notify()
        if (
            header is not None
            and header.nbformat == 4
            and (header.extra or header.nbformat_minor > 5)
        ):
            async with room.lock:  # the keys nbstream does not model, and a newer minor (item 13)
                room.load_extra = True  # before the write: a rollback may follow
                doc.set_notebook_extra(
                    notebook_metadata_to_doc(header.extra), header.nbformat_minor
                )
            room.notify()
        report.metadata_s = time.perf_counter() - t0
        if not client_alive():
            raise LoadAborted("loading client disconnected before the load completed")
    except asyncio.CancelledError:
        _rollback(room, report, "load cancelled")
        raise
    except CoreError as exc:
        _rollback(room, report, str(exc))
        return report
    except Exception as exc:  # a bug must still leave the room consistent and retryable
        _rollback(room, report, f"internal error during load: {type(exc).__name__}: {exc}")
        return report
    finally:
        source.close()
    report.ok = True
    room.record_load(source.identity())  # what was loaded: the baseline of saves and dirtiness
    room.finish_loading()
    report.finished_at = time.perf_counter()
    report.total_s = report.finished_at - report.started_at
    return report


async def _insert_batch(
    room: NotebookRoom,
    store: BlobStore,
    options: LoadOptions,
    report: LoadReport,
    index: int,
    batch: Sequence[CellRecord],
    client_alive: Callable[[], bool],
) -> None:
    """Manifests (in a thread when a blob is large), then one insert, then wake every peer.

    A source over ``options.source_step`` code points goes in as its first step; the rest
    follows in steps (:func:`_append_in_steps`) before the next batch."""
    doc, start, step = room.doc, report.cells, options.source_step
    t0 = time.perf_counter()
    n_outputs = sum(len(r.outputs) for r in batch)
    # Hop to a thread only for content blobs: the hop costs ~0.2 ms, more than the
    # manifests of a batch of small outputs (measured on 800 cells, issue 11).
    if options.offload_blobs and any(
        has_large_value(r.outputs, options.inline_threshold) for r in batch
    ):
        refs = await asyncio.to_thread(_batch_refs, batch, store, options.inline_threshold)
    else:
        refs = _batch_refs(batch, store, options.inline_threshold)
    t1 = time.perf_counter()
    snapshots = [record_to_cell(r, ref) for r, ref in zip(batch, refs, strict=True)]
    rest: list[tuple[int, str]] = []  # (position in the batch, source still to write)
    if options.insert_path == "full":
        for i, snap in enumerate(snapshots):
            if len(snap.source) > step:
                rest.append((i, snap.source[step:]))
                snapshots[i] = dataclasses.replace(snap, source=snap.source[:step])
    new: list[NewCell] = []
    async with room.lock:
        at = _insert_position(room)
        if options.insert_path == "full":
            new = doc.add_cells_full(at, snapshots)
            room.load_cells.extend(cell.key for cell in new)
        else:
            for offset, snap in enumerate(snapshots):
                doc.add_cell_naive(at + offset, snap)
                key = doc.cell_key_at(at + offset)
                if key is not None:
                    room.load_cells.append(key)
        room.load_next_index = at + len(snapshots)
    t2 = time.perf_counter()
    report.cells = start + len(batch)
    room.report_progress(report.cells, report.total_cells)
    room.notify()
    await asyncio.sleep(0)  # let the peers' writers ship this batch now
    insert_s = t2 - t1
    for i, more in rest:
        insert_s += await _append_in_steps(room, new[i].source, step, more, client_alive)
    t3 = time.perf_counter()
    report.batches.append(
        BatchTiming(
            index,
            len(batch),
            n_outputs,
            t1 - t0,
            insert_s,
            t3 - t1 - insert_s,
            t0,
            t3,
            doc.cell_count(),
        )
    )


def _insert_position(room: NotebookRoom) -> int:
    """Where the load's next batch goes: right after the last cell it inserted.

    Peers may add and delete cells while the file streams in; the file's cells stay together,
    in file order, from index 0 (a peer's cell added before the load's first batch, or kept
    from a failed load, ends up after them). The common case is one lookup, no scan."""
    cells = room.load_cells
    if not cells:
        return 0
    guess = room.load_next_index
    if guess > 0 and room.doc.cell_key_at(guess - 1) == cells[-1]:
        return guess
    where = {key: i for i, key in enumerate(room.doc.cell_keys())}
    for key in reversed(cells):  # the last of the load's cells that a peer has not deleted
        if key in where:
            return where[key] + 1
    return 0


async def _append_in_steps(
    room: NotebookRoom, text: bytes, step: int, more: str, client_alive: Callable[[], bool]
) -> float:
    """Write ``more`` after the first ``step`` code points of ``text``, ``step`` at a time.

    Automerge holds the GIL while it splices (~0.5 µs per code point, so 4 MiB in one call is
    seconds with every room frozen); a step is milliseconds, and between steps every room's
    tasks and every peer's writer run. Returns the seconds spent in the transactions."""
    at, spent = step, 0.0
    room.writing_large_source = True
    try:
        for piece in range(0, len(more), step):
            chunk = more[piece : piece + step]
            if not client_alive():
                raise LoadAborted("loading client disconnected while a large cell was loading")
            async with room.lock:
                t0 = time.perf_counter()
                room.doc.append_source(text, at, chunk)
                spent += time.perf_counter() - t0
            at += len(chunk)
            room.notify()
            await asyncio.sleep(0)
    finally:
        room.writing_large_source = False
    return spent


def start_load_task(
    room: NotebookRoom, load: Coroutine[Any, Any, _R], *, name: str | None = None
) -> asyncio.Task[_R]:
    """Run ``load`` (a :func:`stream_load`, or a coroutine around one) as a task that always
    releases the room's claim.

    A task cancelled before its first step never enters ``stream_load``'s ``try``: no rollback
    would run and the room would stay claimed (STREAMING, never evictable). The done-callback
    rolls back whenever the task ended with the claim still held."""
    task = asyncio.create_task(load, name=name)

    def release(done: asyncio.Task[_R]) -> None:
        if room.is_loading:
            reason = "load cancelled" if done.cancelled() else "load ended without a result"
            _rollback(room, LoadReport(room.notebook_id, "full", 0), reason)

    task.add_done_callback(release)
    return task


def _rollback(room: NotebookRoom, report: LoadReport, reason: str) -> None:
    """Remove what the load wrote, then release the claim as failed, then notify once.

    Only the load's own cells (with whatever peers edited inside them), the notebook
    metadata keys it put (unless a peer changed them since) and the top-level keys it does not
    model go; cells peers added stay.
    Never awaits."""
    report.ok = False
    report.error = reason
    try:
        room.doc.delete_cells(room.load_cells)
        room.load_cells.clear()
        room.doc.remove_notebook_metadata(room.load_metadata)
        room.load_metadata.clear()
        if room.load_extra:
            room.doc.set_notebook_extra({}, None)
            room.load_extra = False
    except CoreError as exc:  # keep the first reason; note the second
        reason = f"{reason} (and clearing the partial cells failed: {exc})"
        report.error = reason
    room.finish_loading(error=reason)
    room.notify()
    report.finished_at = time.perf_counter()
    report.total_s = report.finished_at - report.started_at
