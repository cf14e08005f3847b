"""``stream_load`` driven directly on a real NotebookRoom, with the memory and the disk blob store.

What the daemon tests only see from the outside is checked here batch by batch: exactly
``batch_size`` cells per batch (the last one smaller), the room's progress and notifications at
each batch, a document equal to the parsed notebook afterwards, and the rollback in every way a
load can end early (a hook raising, a full disk, the loading client gone, an invalid notebook,
cancellation) — after which the document is empty, the claim is released as ``failed`` with the
reason, the disk store holds no temp file, and a retry loads everything.
"""

from __future__ import annotations

import asyncio
import errno
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pytest

import core.atomic
import core.blob_store
from core.blob_store import BlobStore, DiskBlobStore, MemoryBlobStore
from core.errors import BlobStoreError, NotebookLoadError
from core.ipynb import parse_notebook
from core.loader import LoadAborted, LoadOptions, LoadReport, start_load_task, stream_load
from core.manifest import normalize_output, resolve_refs
from core.room import LoadState, NotebookRoom, RoomPhase
from sim.harness.convergence import expected_document
from sim.workload.generator import write_notebook as generate_notebook

from .conftest import simple_cells, write_notebook
from .test_hostile_inputs import assert_blob_store_whole, tmp_files

WAIT = 30.0  # safety timeout for every condition wait (never a sleep)
STORES = ["memory", "disk"]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "memory":
        return MemoryBlobStore()
    return DiskBlobStore(tmp_path / "blobs")


def claimed(path: Path) -> NotebookRoom:
    room = NotebookRoom(str(path), path)
    assert room.try_start_loading()
    return room


def generated(tmp_path: Path, cells: int, seed: int = 7) -> Path:
    path = tmp_path / f"gen-{cells}-{seed}.ipynb"
    generate_notebook(path, cells=cells, seed=seed)
    return path


def assert_doc_is(room: NotebookRoom, path: Path, store: BlobStore) -> None:
    """The room holds exactly the parsed notebook, and every output resolves from ``store``."""
    parsed = parse_notebook(path.read_bytes())
    assert room.doc.materialize() == expected_document(parsed, room.notebook_id)
    cells = room.doc.get_cells()
    assert [c.id for c in cells] == [r.id for r in parsed.cells]
    assert [(c.cell_type, c.source) for c in cells] == [
        (r.cell_type, r.source) for r in parsed.cells
    ]
    for cell, record in zip(cells, parsed.cells, strict=True):
        assert resolve_refs(cell.outputs, store) == [normalize_output(o) for o in record.outputs]
    if isinstance(store, DiskBlobStore):
        assert_blob_store_whole(store)


def assert_rolled_back(
    room: NotebookRoom, report: LoadReport, reason: str | re.Pattern[str]
) -> None:
    """Empty document, claim released as failed with ``reason``, the report agreeing."""
    state = room.state
    assert state.phase is RoomPhase.FAILED and not room.is_loading and room.needs_load()
    if isinstance(reason, str):
        assert state.reason == reason
    else:
        assert state.reason is not None and reason.fullmatch(state.reason), state.reason
    assert state.cells_loaded == 0
    assert not report.ok and report.error == state.reason
    assert room.doc.cell_count() == 0 and room.doc.get_cells() == []
    assert room.doc.get_notebook_metadata() == {}
    assert room.doc.materialize() == {"notebook_id": room.notebook_id, "cells": [], "metadata": {}}


def batch_sizes(n: int, size: int) -> list[int]:
    return [min(size, n - start) for start in range(0, n, size)]


class Recorder:
    """A ``before_batch`` hook recording the room as each batch is about to start."""

    def __init__(self, room: NotebookRoom) -> None:
        self.room = room
        self.seen: list[tuple[int, LoadState, int, int]] = []

    async def __call__(self, index: int) -> None:
        room = self.room
        self.seen.append((index, room.state, room.doc.cell_count(), room.notifications))


# =========================================================================== a load that succeeds
@pytest.mark.parametrize(
    ("cells", "batch_size"),
    [(10, 3), (9, 3), (1, 3), (7, 1), (30, 4), (5, 10), (12, 12)],
)
async def test_batches_of_exactly_batch_size(
    tmp_path: Path, store: BlobStore, cells: int, batch_size: int
) -> None:
    path = generated(tmp_path, cells)
    parsed = parse_notebook(path.read_bytes())
    room = claimed(path)
    report = await stream_load(room, store, LoadOptions(batch_size=batch_size))

    sizes = batch_sizes(cells, batch_size)
    assert len(sizes) == math.ceil(cells / batch_size)
    assert report.ok and report.error is None
    assert report.cells == report.total_cells == cells
    assert report.file_bytes == path.stat().st_size
    assert report.notebook_id == room.notebook_id
    assert (report.insert_path, report.batch_size) == ("full", batch_size)
    assert [b.index for b in report.batches] == list(range(len(sizes)))
    assert [b.cells for b in report.batches] == sizes
    starts = range(0, cells, batch_size)
    assert [b.outputs for b in report.batches] == [
        sum(len(r.outputs) for r in parsed.cells[s : s + batch_size]) for s in starts
    ]
    assert [b.doc_cells_after for b in report.batches] == [
        min(s + batch_size, cells) for s in starts
    ]
    assert room.state == LoadState(RoomPhase.READY, None, cells, cells)
    assert not room.is_loading and not room.needs_load()
    assert_doc_is(room, path, store)
    # one notification per batch, then one for the notebook metadata
    assert parsed.metadata and room.notifications == len(sizes) + 1


async def test_progress_and_notifications_batch_by_batch(tmp_path: Path, store: BlobStore) -> None:
    path = generated(tmp_path, 11)
    room = claimed(path)
    _, sub = room.subscribe("watcher")
    sub.dirty = sub.status_dirty = False
    marks: list[bool] = []
    recorder = Recorder(room)

    async def hook(index: int) -> None:
        await recorder(index)
        marks.append(sub.dirty)  # the previous batch woke the watcher
        sub.dirty = False

    report = await stream_load(room, store, LoadOptions(batch_size=4), before_batch=hook)
    assert report.ok
    # The file is read as the load goes: the total is unknown until its last cell is parsed.
    assert recorder.seen == [
        (0, LoadState(RoomPhase.STREAMING, None, 0, None), 0, 0),
        (1, LoadState(RoomPhase.STREAMING, None, 4, None), 4, 1),
        (2, LoadState(RoomPhase.STREAMING, None, 8, None), 8, 2),
    ]
    assert report.total_cells == 11
    assert marks == [False, True, True]
    assert sub.dirty and sub.status_dirty  # the last batch, the metadata, and READY
    assert room.notifications == 4


async def test_a_notebook_without_metadata_notifies_once_per_batch(
    tmp_path: Path, store: BlobStore
) -> None:
    path = tmp_path / "bare.ipynb"
    nb = {
        "cells": [
            {"cell_type": "markdown", "id": f"m{i}", "metadata": {}, "source": f"# {i}"}
            for i in range(5)
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))
    room = claimed(path)
    report = await stream_load(room, store, LoadOptions(batch_size=2))
    assert report.ok and [b.cells for b in report.batches] == [2, 2, 1]
    assert room.notifications == 3
    assert room.doc.get_notebook_metadata() == {}
    assert_doc_is(room, path, store)


async def test_an_empty_notebook_loads_as_ready_with_no_batch(
    tmp_path: Path, store: BlobStore
) -> None:
    path = write_notebook(tmp_path / "empty.ipynb", [])
    room = claimed(path)
    report = await stream_load(room, store, LoadOptions(batch_size=3))
    assert report.ok and report.cells == report.total_cells == 0 and report.batches == []
    assert room.state == LoadState(RoomPhase.READY, None, 0, 0)
    assert room.notifications == 1  # the metadata only
    assert_doc_is(room, path, store)


@pytest.mark.parametrize("insert_path", ["full", "naive"])
@pytest.mark.parametrize("offload_blobs", [True, False])
async def test_every_insert_path_gives_the_same_document(
    tmp_path: Path, store: BlobStore, insert_path: Any, offload_blobs: bool
) -> None:
    path = generated(tmp_path, 8, seed=3)
    room = claimed(path)
    options = LoadOptions(batch_size=3, insert_path=insert_path, offload_blobs=offload_blobs)
    report = await stream_load(room, store, options)
    assert report.ok and report.insert_path == insert_path
    assert [b.cells for b in report.batches] == [3, 3, 2]
    assert_doc_is(room, path, store)


async def test_outputs_go_to_the_given_store(tmp_path: Path, store: BlobStore) -> None:
    path = write_notebook(tmp_path / "outs.ipynb", simple_cells(9))
    parsed = parse_notebook(path.read_bytes())
    n_outputs = sum(len(r.outputs) for r in parsed.cells)
    assert n_outputs == 2  # cells 0 and 8 (cell 4 is markdown)
    room = claimed(path)
    assert store.list() == []
    report = await stream_load(room, store, LoadOptions(batch_size=3))
    assert report.ok
    refs = [ref for c in room.doc.get_cells() for ref in c.outputs]
    assert len(refs) == n_outputs and set(refs) <= set(store.list())
    assert_doc_is(room, path, store)


async def test_the_report_timings_are_ordered(tmp_path: Path) -> None:
    path = generated(tmp_path, 7)
    room = claimed(path)
    report = await stream_load(room, MemoryBlobStore(), LoadOptions(batch_size=2))
    assert report.started_at <= report.finished_at
    assert report.total_s == pytest.approx(report.finished_at - report.started_at)
    previous = report.started_at
    for b in report.batches:
        assert previous <= b.started_at <= b.finished_at
        assert min(b.manifest_s, b.insert_s, b.notify_s) >= 0
        assert b.manifest_s + b.insert_s + b.notify_s == pytest.approx(b.finished_at - b.started_at)
        previous = b.finished_at
    assert previous <= report.finished_at
    as_dict = report.to_dict()
    assert as_dict["ok"] is True and as_dict["cells"] == 7
    assert [b["cells"] for b in as_dict["batches"]] == [2, 2, 2, 1]
    assert all(b["started_at"] >= 0 for b in as_dict["batches"])  # relative to the load start


def test_load_options_are_validated() -> None:
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        LoadOptions(batch_size=0)
    with pytest.raises(ValueError, match="insert_path must be"):
        LoadOptions(insert_path="fast")  # type: ignore[arg-type]


# =========================================================================== failures and rollback
N, B = 10, 3  # four batches: 3, 3, 3, 1
BATCHES = math.ceil(N / B)


async def retry_loads_everything(room: NotebookRoom, store: BlobStore) -> None:
    assert room.try_start_loading(), "a failed room must be claimable again"
    report = await stream_load(room, store, LoadOptions(batch_size=B))
    assert report.ok and report.cells == N
    assert room.state == LoadState(RoomPhase.READY, None, N, N)
    assert_doc_is(room, room.path, store)


@pytest.mark.parametrize("at", range(BATCHES))
async def test_a_hook_raising_at_batch_k_rolls_back(
    tmp_path: Path, store: BlobStore, at: int
) -> None:
    path = generated(tmp_path, N)
    room = claimed(path)
    _, sub = room.subscribe("watcher")
    seen: list[int] = []

    async def hook(index: int) -> None:
        seen.append(room.doc.cell_count())
        sub.dirty = sub.status_dirty = False
        if index == at:
            raise BlobStoreError(f"blob store write failed (batch {index})")

    report = await stream_load(room, store, LoadOptions(batch_size=B), before_batch=hook)
    assert seen == [B * i for i in range(at + 1)]  # cells really were in before the failure
    assert_rolled_back(room, report, f"blob store write failed (batch {at})")
    assert room.state.total_cells is None  # the total is known once the last cell went in
    assert len(report.batches) == at
    assert room.notifications == at + 1  # each completed batch, then the rollback
    assert sub.dirty and sub.status_dirty  # the watcher hears the empty doc and "failed"
    if isinstance(store, DiskBlobStore):
        assert_blob_store_whole(store)
    await retry_loads_everything(room, store)


async def test_an_unexpected_exception_rolls_back_as_an_internal_error(
    tmp_path: Path, store: BlobStore
) -> None:
    path = generated(tmp_path, N)
    room = claimed(path)

    async def hook(index: int) -> None:
        if index == 2:
            raise KeyError("oops")

    report = await stream_load(room, store, LoadOptions(batch_size=B), before_batch=hook)
    assert_rolled_back(room, report, "internal error during load: KeyError: 'oops'")
    await retry_loads_everything(room, store)


class DiskFullOs:
    """``core.atomic``/``core.blob_store``'s view of :mod:`os`: once ``full``, the next write
    stores half its bytes and every later one fails with ``ENOSPC``."""

    def __init__(self) -> None:
        self.full = False
        self.torn = False
        self.failures = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: Any) -> int:
        if not self.full:
            return os.write(fd, data)
        if not self.torn and len(data) > 1:
            self.torn = True
            return os.write(fd, bytes(data[: len(data) // 2]))
        self.failures += 1
        raise OSError(errno.ENOSPC, "No space left on device")


def every_cell_with_outputs(n: int) -> list[dict[str, Any]]:
    """Code cells whose outputs write new blobs in every batch (one 10 kB text per cell)."""
    return [
        {
            "id": f"c{i}",
            "source": f"print({i})",
            "outputs": [
                {"output_type": "stream", "name": "stdout", "text": f"out {i}\n"},
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {"text/plain": f"{i}:" + "y" * 10_000},
                },
            ],
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("at", range(BATCHES))
async def test_a_disk_filling_up_at_batch_k_rolls_back_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: int
) -> None:
    path = write_notebook(tmp_path / "outs.ipynb", every_cell_with_outputs(N))
    store = DiskBlobStore(tmp_path / "blobs")
    disk = DiskFullOs()
    monkeypatch.setattr(core.blob_store, "os", disk)
    monkeypatch.setattr(core.atomic, "os", disk)
    room = claimed(path)

    async def hook(index: int) -> None:
        if index == at:
            disk.full = True

    report = await stream_load(room, store, LoadOptions(batch_size=B), before_batch=hook)
    reason = re.compile(
        r"blob store write failed for [0-9a-f]{64}: \[Errno 28\] No space left on device"
    )
    assert_rolled_back(room, report, reason)
    assert disk.torn and disk.failures >= 1
    assert len(report.batches) == at
    assert tmp_files(Path(store.root)) == []
    assert_blob_store_whole(store)  # earlier batches' blobs are whole, no torn one
    disk.full = False  # space was freed
    await retry_loads_everything(room, store)


@pytest.mark.parametrize("at", range(BATCHES))
async def test_the_loading_client_gone_at_batch_k_rolls_back(
    tmp_path: Path, store: BlobStore, at: int
) -> None:
    path = generated(tmp_path, N)
    room = claimed(path)
    checks: list[int] = []

    def alive() -> bool:
        checks.append(room.doc.cell_count())
        return len(checks) <= at  # the check before batch ``at`` is the first to fail

    report = await stream_load(room, store, LoadOptions(batch_size=B), client_alive=alive)
    assert checks == [B * i for i in range(at + 1)]
    assert_rolled_back(room, report, f"loading client disconnected before batch {at}")
    assert len(report.batches) == at and room.notifications == at + 1
    await retry_loads_everything(room, store)


async def test_the_loading_client_gone_after_the_last_batch_rolls_back_the_metadata(
    tmp_path: Path, store: BlobStore
) -> None:
    path = generated(tmp_path, N)
    room = claimed(path)
    checks = 0
    metadata_seen: list[dict[str, str]] = []

    def alive() -> bool:
        nonlocal checks
        checks += 1
        metadata_seen.append(room.doc.get_notebook_metadata())
        return checks <= BATCHES  # one check per batch, then the final one fails

    report = await stream_load(room, store, LoadOptions(batch_size=B), client_alive=alive)
    assert checks == BATCHES + 1
    assert metadata_seen[-1] != {}  # the metadata was in when the client was found gone
    assert_rolled_back(room, report, "loading client disconnected before the load completed")
    assert len(report.batches) == BATCHES
    assert room.notifications == BATCHES + 1 + 1  # batches, metadata, rollback
    await retry_loads_everything(room, store)


# =========================================================================== invalid notebooks
def _nb(**fields: Any) -> bytes:
    base: dict[str, Any] = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    base.update(fields)
    return json.dumps(base).encode()


INVALID: dict[str, tuple[bytes, str]] = {
    "truncated-json": (_nb()[:-5], r".*"),
    "not-json": (b"this is not json", r".*"),
    "top-level-array": (b"[1, 2, 3]", r"top level must be a JSON object \(got (an )?array\)"),
    "no-nbformat": (b'{"cells": []}', r"not a notebook: the 'nbformat' key is missing"),
    "nbformat-5": (_nb(nbformat=5), r"unsupported nbformat 5: .*"),
    "nbformat-string": (_nb(nbformat="4"), r"'nbformat' must be an integer .*"),
    "cells-not-array": (_nb(cells={"a": 1}), r"'cells' must be an array .*"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
async def test_an_invalid_notebook_fails_with_the_parser_s_reason(
    tmp_path: Path, store: BlobStore, case: str
) -> None:
    data, pattern = INVALID[case]
    path = tmp_path / "bad.ipynb"
    path.write_bytes(data)
    with pytest.raises(NotebookLoadError) as parse_error:
        parse_notebook(data)
    room = claimed(path)
    report = await stream_load(room, store, LoadOptions(batch_size=B))
    assert_rolled_back(room, report, str(parse_error.value))
    assert re.fullmatch(pattern, str(parse_error.value)), str(parse_error.value)
    assert report.file_bytes == 0 and report.cells == 0 and report.total_cells is None
    assert report.batches == [] and room.state.total_cells is None
    assert room.notifications == 1  # the rollback's only
    assert store.list() == []  # nothing was stored


async def test_a_bad_cell_deep_in_the_file_rolls_back_the_cells_before_it(
    tmp_path: Path, store: BlobStore
) -> None:
    cells = json.loads(write_notebook(tmp_path / "ok.ipynb", simple_cells(8)).read_text())["cells"]
    cells[6] = {"cell_type": "code", "id": "bad", "metadata": {}, "source": 42, "outputs": []}
    path = tmp_path / "bad.ipynb"
    path.write_bytes(_nb(cells=cells))
    with pytest.raises(NotebookLoadError) as parse_error:
        parse_notebook(path.read_bytes())
    assert "cells[6]" in str(parse_error.value)
    room = claimed(path)
    report = await stream_load(room, store, LoadOptions(batch_size=2))
    # Cells 0-5 went in as they were read (3 batches); cell 6 fails the load with the error of
    # the whole-file parse, and the rollback removes them.
    assert_rolled_back(room, report, str(parse_error.value))
    assert [b.cells for b in report.batches] == [2, 2, 2]


@pytest.mark.parametrize("case", ["missing", "directory", "relative", "too-large"])
async def test_an_unreadable_file_fails_with_a_precise_reason(
    tmp_path: Path, store: BlobStore, case: str
) -> None:
    good = generated(tmp_path, 3)
    options = LoadOptions(batch_size=B)
    if case == "missing":
        path, reason = tmp_path / "missing.ipynb", f"{tmp_path / 'missing.ipynb'}: no such file"
    elif case == "directory":
        path, reason = tmp_path, f"{tmp_path}: is a directory"
    elif case == "relative":
        path, reason = Path("rel.ipynb"), "'rel.ipynb': the notebook path must be absolute"
    else:
        path, size = good, good.stat().st_size
        options = LoadOptions(batch_size=B, max_notebook_bytes=size - 1)
        reason = f"{good}: file is {size} bytes, over the limit of {size - 1}"
    room = claimed(path)
    report = await stream_load(room, store, options)
    assert_rolled_back(room, report, reason)
    assert report.batches == [] and room.notifications == 1 and store.list() == []


# =========================================================================== cancellation
async def start_and_stop_at(
    room: NotebookRoom, store: BlobStore, at: int
) -> tuple[asyncio.Task[LoadReport], asyncio.Event]:
    """A load task that blocks (forever) before batch ``at``; the event says it got there."""
    reached = asyncio.Event()
    never = asyncio.Event()

    async def hook(index: int) -> None:
        if index == at:
            reached.set()
            await never.wait()

    task = asyncio.create_task(
        stream_load(room, store, LoadOptions(batch_size=B), before_batch=hook)
    )
    await asyncio.wait_for(reached.wait(), WAIT)
    return task, reached


@pytest.mark.parametrize("at", range(BATCHES))
async def test_cancelling_the_load_mid_way_rolls_back_and_releases_the_claim(
    tmp_path: Path, store: BlobStore, at: int
) -> None:
    path = generated(tmp_path, N)
    room = claimed(path)
    task, _ = await start_and_stop_at(room, store, at)
    assert room.is_loading and room.doc.cell_count() == B * at
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    state = room.state
    assert state == LoadState(RoomPhase.FAILED, "load cancelled", 0, None)
    assert not room.is_loading and room.doc.cell_count() == 0
    assert room.doc.get_notebook_metadata() == {}
    assert room.notifications == at + 1
    finished = await asyncio.wait_for(room.wait_load_finished(), WAIT)
    assert finished.phase is RoomPhase.FAILED
    await retry_loads_everything(room, store)


async def test_cancelling_a_batch_waiting_for_the_doc_lock_rolls_back(
    tmp_path: Path, store: BlobStore
) -> None:
    # No outputs: after the hook the loader goes straight to the lock (no worker thread).
    path = tmp_path / "plain.ipynb"
    nb_cells: list[dict[str, Any]] = [
        {
            "cell_type": "code",
            "id": f"c{i}",
            "metadata": {},
            "source": f"x = {i}",
            "execution_count": None,
            "outputs": [],
        }
        for i in range(N)
    ]
    path.write_bytes(_nb(cells=nb_cells))
    room = claimed(path)
    passed = asyncio.Event()

    async def hook(index: int) -> None:
        if index == 2:
            await room.lock.acquire()  # a peer's sync takes the doc just before batch 2
            passed.set()

    task = asyncio.create_task(
        stream_load(room, store, LoadOptions(batch_size=B), before_batch=hook)
    )
    await asyncio.wait_for(passed.wait(), WAIT)
    try:
        assert room.lock.locked() and room.doc.cell_count() == 2 * B
        assert not task.done()  # batch 2 is queued behind the lock
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert room.state == LoadState(RoomPhase.FAILED, "load cancelled", 0, None)
        assert room.doc.cell_count() == 0 and not room.is_loading
    finally:
        room.lock.release()
    await retry_loads_everything(room, store)


async def test_cancelling_while_the_file_is_read_releases_the_claim(
    tmp_path: Path, store: BlobStore
) -> None:
    path = generated(tmp_path, N)
    room = claimed(path)
    task = asyncio.create_task(stream_load(room, store, LoadOptions(batch_size=B)))
    await asyncio.sleep(0)  # one step: the task is now awaiting the read in a worker thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert room.state == LoadState(RoomPhase.FAILED, "load cancelled", 0, None)
    assert room.doc.cell_count() == 0 and room.notifications == 1
    await retry_loads_everything(room, store)


async def test_cancelling_the_load_task_before_it_ran_releases_the_claim(
    tmp_path: Path,
) -> None:
    path = generated(tmp_path, 3)
    room = claimed(path)
    task = start_load_task(room, stream_load(room, MemoryBlobStore(), LoadOptions()))
    task.cancel()  # before its first step: stream_load's body never runs
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not room.is_loading
    assert room.state.phase is RoomPhase.FAILED


# =========================================================================== the claim, always


@pytest.mark.parametrize("outcome", ["ok", "hook", "client-gone", "invalid", "cancelled"])
async def test_the_claim_is_released_in_every_outcome(
    tmp_path: Path, store: BlobStore, outcome: str
) -> None:
    path = generated(tmp_path, N)
    if outcome == "invalid":
        path.write_bytes(b"{")
    room = claimed(path)
    assert room.is_loading
    waiter = asyncio.create_task(room.wait_load_finished())

    async def hook(index: int) -> None:
        if outcome == "hook" and index == 1:
            raise LoadAborted("stop")
        if outcome == "cancelled" and index == 1:
            asyncio.current_task().cancel()  # type: ignore[union-attr]
            await asyncio.sleep(0)

    task = asyncio.create_task(
        stream_load(
            room,
            store,
            LoadOptions(batch_size=B),
            client_alive=lambda: outcome != "client-gone",
            before_batch=hook,
        )
    )
    await asyncio.wait({task})
    assert task.cancelled() == (outcome == "cancelled")
    assert not room.is_loading
    state = await asyncio.wait_for(waiter, WAIT)
    assert state.phase is (RoomPhase.READY if outcome == "ok" else RoomPhase.FAILED)
    assert room.doc.cell_count() == (N if outcome == "ok" else 0)
    assert room.try_start_loading() == (outcome != "ok")
