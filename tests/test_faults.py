"""The fault matrix: a 30-cell notebook (batch size 3, so 10 batches) loaded while things break.

Faults, each injected exactly before batch k, for every k in 0..9 (one test id per cell):

* ``fail``            — the load raises a blob-store error (the runner's injected fault);
* ``disk-full``       — the real on-disk blob store runs out of space *in the middle of a write*
                        (``os.write`` writes half, then ``ENOSPC``), plus two rows where the
                        blob's sidecar write is the one that fails;
* ``loader-leaves``   — the loading client goes away (a clean close on even k, a reset on odd k);
* ``reader-cancelled``— the daemon's reader task of the loading client is cancelled;
* ``load-cancelled``  — the loader task itself is cancelled (``daemon.loads[id].cancel()``);
* ``joiner-reader-cancelled`` — a joined peer's reader task is cancelled: the load carries on.

After each: the room holds no cell, the claim is released, every remaining peer converges on
the server and on the empty document (``sim.harness.convergence.check_convergence``), the blob store
holds no temp file and no torn blob; then a fresh open loads all 30 cells and every peer
(old and new) converges on the server and on the source notebook; no task leaks.

Then a property test: random schedules (batch size 1-5; 1-6 peers joining and leaving at random
batches, slow / non-replying / never-reading peers on 4 KiB buffers; the loader leaving; an
injected failure) through ``sim.harness.runner.run_scenario``: every run passes every check and
converges. 60 schedules by default, 500 with ``-m slow``.
"""

from __future__ import annotations

import asyncio
import errno
import math
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import core.atomic
import core.blob_store
from core.blob_store import DiskBlobStore
from core.client import LoadFailed, NotebookClient
from core.errors import BlobStoreError, TransportClosed
from core.ipynb import parse_notebook
from core.room import NotebookRoom, RoomPhase
from sim.harness.convergence import check_convergence, empty_document, expected_document
from sim.harness.peers import PeerSpec
from sim.harness.runner import run_scenario
from sim.harness.scenarios import SLOW_BUFFER, Scenario
from sim.workload.generator import write_notebook as generate_notebook_file

from .conftest import Harness, HarnessFactory, write_notebook
from .test_hostile_inputs import (
    WAIT,
    assert_blob_store_whole,
    close_and_check_no_leak,
    only_with_m_slow,
)

CELLS, BATCH = 30, 3
BATCHES = CELLS // BATCH


def fault_cells() -> list[dict[str, Any]]:
    """30 code cells, each with its own stream output; every third also has a 10 kB text
    output (stored as its own blob), so every batch writes to the blob store."""
    cells = []
    for i in range(CELLS):
        outputs: list[dict[str, Any]] = [
            {"output_type": "stream", "name": "stdout", "text": f"out {i}\n"}
        ]
        if i % 3 == 0:
            outputs.append(
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {"text/plain": f"{i}:" + "y" * 10_000},
                }
            )
        cells.append({"id": f"f{i}", "source": f"cell {i}", "outputs": outputs})
    return cells


# =========================================================================== a disk that fills up
class DiskFullOs:
    """The blob store's view of :mod:`os` (``core.blob_store`` and ``core.atomic``): once
    ``full``, the next write stores only half its bytes and every later write fails with
    ``ENOSPC`` (what a filling disk does)."""

    def __init__(self, skip_writes: int = 0) -> None:
        self.full = False
        self.skip_writes = (
            skip_writes  # writes still allowed once full (e.g. the blob, not the sidecar)
        )
        self.torn = False
        self.failures = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: Any) -> int:
        if not self.full:
            return os.write(fd, data)
        if self.skip_writes:
            self.skip_writes -= 1
            return os.write(fd, data)
        if not self.torn and len(data) > 1:
            self.torn = True
            return os.write(fd, bytes(data[: len(data) // 2]))
        self.failures += 1
        raise OSError(errno.ENOSPC, "No space left on device")


# =========================================================================== the rig
Inject = Callable[["Rig", NotebookRoom, int], Awaitable[None]]


class Rig:
    """A daemon (on-disk blob store), a loader and a watcher, and a fault before batch ``at``."""

    def __init__(self, h: Harness, notebook: Path, at: int, inject: Inject) -> None:
        self.h = h
        self.notebook = notebook
        self.at = at
        self.inject = inject
        self.armed = True
        self.watcher_in = asyncio.Event()
        self.peers: dict[str, NotebookClient] = {}
        self.writers: dict[str, asyncio.StreamWriter] = {}
        self.sessions: dict[str, Any] = {}
        self.disk: DiskFullOs | None = None

    async def before_batch(self, room: NotebookRoom, index: int) -> None:
        if index == 0:
            await self.watcher_in.wait()  # the watcher is in the room before any cell
        if index == self.at and self.armed:
            self.armed = False
            await self.inject(self, room, index)

    async def open(self, name: str) -> NotebookClient:
        reader, writer = await self.h.streams()
        client = NotebookClient(reader, writer, name=name)
        self.h.clients.append(client)
        known = set(self.h.daemon.sessions)
        await client.open(self.notebook)
        await asyncio.wait_for(
            self.h.daemon.wait_for(lambda: bool(set(self.h.daemon.sessions) - known)), WAIT
        )
        (self.sessions[name],) = set(self.h.daemon.sessions) - known
        self.peers[name] = client
        self.writers[name] = writer
        return client

    async def wait_session_gone(self, name: str) -> None:
        session = self.sessions[name]
        await asyncio.wait_for(
            self.h.daemon.wait_for(lambda: session not in self.h.daemon.sessions), WAIT
        )

    def store(self) -> DiskBlobStore:
        store = self.h.daemon.blob_store
        assert isinstance(store, DiskBlobStore)
        return store


async def settle(rig: Rig, room: NotebookRoom, names: list[str], phase: str) -> None:
    """Wait until each named peer reports ``phase`` and holds exactly the server's heads."""
    for name in names:
        client = rig.peers[name]

        def done(c: NotebookClient = client) -> bool:
            s = c.load_status
            return s is not None and s.phase == phase and c.doc.heads() == room.doc.heads()

        await asyncio.wait_for(client.wait_for(done), WAIT)


async def run_fault(
    make_harness: HarnessFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    at: int,
    inject: Inject,
    reason: str,
    loader_survives: bool,
    disk: DiskFullOs | None = None,
) -> None:
    notebook = write_notebook(tmp_path / "thirty.ipynb", fault_cells())
    expected = expected_document(parse_notebook(notebook.read_bytes()), str(notebook.resolve()))
    rig_box: list[Rig] = []

    async def hook(room: NotebookRoom, index: int) -> None:
        await rig_box[0].before_batch(room, index)

    h = await make_harness("memory", batch_size=BATCH, before_batch=hook)
    h.daemon.blob_store = DiskBlobStore(tmp_path / "blobs")
    rig = Rig(h, notebook, at, inject)
    rig_box.append(rig)
    if disk is not None:
        rig.disk = disk
        monkeypatch.setattr(core.blob_store, "os", disk)
        monkeypatch.setattr(core.atomic, "os", disk)  # the blob store writes through it
    before = set(asyncio.all_tasks())

    await rig.open("loader")
    await rig.open("watcher")
    rig.watcher_in.set()
    room = h.daemon.rooms.rooms()[0]
    state = await asyncio.wait_for(room.wait_load_finished(), WAIT)

    # ---- the failure: rolled back, released, everyone left converges on the empty notebook
    assert state.phase is RoomPhase.FAILED
    assert state.reason is not None and re.fullmatch(reason, state.reason), state.reason
    assert not room.is_loading and room.doc.cell_count() == 0
    assert room.doc.get_notebook_metadata() == {}
    report = h.daemon.load_reports[-1] if h.daemon.load_reports else None
    if report is not None:  # a cancelled load re-raises, so it files no report
        assert not report.ok and report.error == state.reason
    survivors = ["watcher", *(["loader"] if loader_survives else [])]
    await settle(rig, room, survivors, "failed")
    for name in survivors:
        with pytest.raises(LoadFailed, match=re.escape(state.reason)):
            await rig.peers[name].wait_loaded()
    if not loader_survives:
        with pytest.raises((TransportClosed, LoadFailed)):
            await asyncio.wait_for(rig.peers["loader"].wait_loaded(), WAIT)
    empty = empty_document(room.notebook_id)
    docs = {n: rig.peers[n].doc.materialize() for n in survivors}
    verdict = check_convergence(room.doc.materialize(), docs, expected=empty)
    assert verdict.ok, verdict.describe()
    if disk is not None:
        assert disk.failures >= 1
        disk.full = False  # space was freed
    assert_blob_store_whole(rig.store())

    # ---- the next open loads everything, and every peer converges on it
    retry = await rig.open("retry")
    assert retry.info is not None and retry.info.cell_count == 0  # it triggers a fresh load
    state = await asyncio.wait_for(room.wait_load_finished(), WAIT)
    assert state.phase is RoomPhase.READY and room.doc.cell_count() == CELLS
    everyone = [*survivors, "retry"]
    await settle(rig, room, everyone, "ready")
    docs = {n: rig.peers[n].doc.materialize() for n in everyone}
    verdict = check_convergence(room.doc.materialize(), docs, expected=expected)
    assert verdict.ok, verdict.describe()
    assert h.daemon.load_reports[-1].ok and room.loads_started == 2
    assert_blob_store_whole(rig.store())
    await close_and_check_no_leak(h, before)


# =========================================================================== the injections
async def inject_fail(rig: Rig, room: NotebookRoom, index: int) -> None:
    raise BlobStoreError(
        f"blob store write failed: [Errno 28] No space left on device (batch {index})"
    )


async def inject_disk_full(rig: Rig, room: NotebookRoom, index: int) -> None:
    assert rig.disk is not None
    rig.disk.full = True


def inject_loader_leaves(mode: str) -> Inject:
    async def inject(rig: Rig, room: NotebookRoom, index: int) -> None:
        if mode == "reset":
            rig.writers["loader"].transport.abort()  # vanishes: the daemon sees a reset
        else:
            await rig.peers["loader"].close()
        await rig.wait_session_gone("loader")

    return inject


def inject_task_cancelled(peer: str, task_kind: str) -> Inject:
    """Cancel one of the daemon's tasks for ``peer`` (sessions name them f"{name}-{kind}")."""

    async def inject(rig: Rig, room: NotebookRoom, index: int) -> None:
        name = f"{rig.sessions[peer].name}-{task_kind}"
        (task,) = [t for t in asyncio.all_tasks() if t.get_name() == name]
        task.cancel()
        await rig.wait_session_gone(peer)  # the session ends: its peer sees EOF

    return inject


inject_reader_cancelled = inject_task_cancelled("loader", "reader")
inject_writer_cancelled = inject_task_cancelled("loader", "writer")


async def inject_load_cancelled(rig: Rig, room: NotebookRoom, index: int) -> None:
    rig.h.daemon.loads[room.notebook_id].cancel()  # this very task: cancelled at its next await
    await asyncio.Event().wait()


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Inject
    reason: str  # regex (full match) of the failure reason; {k} = the batch index
    loader_survives: bool
    disk_skip: int | None = None  # a DiskFullOs with this many writes still allowed


def _faults() -> list[Any]:
    faults = [
        Fault(
            "fail",
            inject_fail,
            r"blob store write failed: \[Errno 28\] No space left on device \(batch {k}\)",
            True,
        ),
        Fault(
            "disk-full",
            inject_disk_full,
            r"blob store write failed for [0-9a-f]{{64}}: \[Errno 28\] No space left on device",
            True,
            disk_skip=0,
        ),
        Fault(
            "loader-leaves",
            inject_loader_leaves("close"),
            r"loading client disconnected before batch {k}",
            False,
        ),
        Fault(
            "writer-cancelled",
            inject_writer_cancelled,
            r"loading client disconnected before batch {k}",
            False,
        ),
        Fault(
            "reader-cancelled",
            inject_reader_cancelled,
            r"loading client disconnected before batch {k}",
            False,
        ),
        Fault("load-cancelled", inject_load_cancelled, r"load cancelled", True),
    ]
    params = []
    for fault in faults:
        for k in range(BATCHES):
            name = fault.name
            if name == "loader-leaves":  # a clean close on even batches, a reset on odd ones
                mode = "reset" if k % 2 else "close"
                fault = Fault(name, inject_loader_leaves(mode), fault.reason, False)
                name = f"{name}-{mode}"
            params.append(pytest.param(fault, k, id=f"{name}-at-batch-{k}"))
    sidecar = Fault(
        "sidecar-write-fails",
        inject_disk_full,
        r"blob store write failed for [0-9a-f]{{64}}: \[Errno 28\] No space left on device",
        True,
        disk_skip=1,
    )
    params += [pytest.param(sidecar, k, id=f"sidecar-write-fails-at-batch-{k}") for k in (0, 5)]
    return params


FAULTS = _faults()


@pytest.mark.parametrize(("fault", "at"), FAULTS)
async def test_fault_matrix(
    fault: Fault,
    at: int,
    make_harness: HarnessFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await run_fault(
        make_harness,
        tmp_path,
        monkeypatch,
        at=at,
        inject=fault.inject,
        reason=fault.reason.format(k=at),
        loader_survives=fault.loader_survives,
        disk=None if fault.disk_skip is None else DiskFullOs(skip_writes=fault.disk_skip),
    )


@pytest.mark.parametrize("task_kind", ["reader", "writer"])
@pytest.mark.parametrize("at", [0, 4, 9])
async def test_joiner_task_cancelled_load_carries_on(
    at: int, task_kind: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """A joined peer's reader or writer task dies: that peer is dropped (it sees its connection
    end, so it can reconnect), the load and the loader carry on."""
    notebook = write_notebook(tmp_path / "thirty.ipynb", fault_cells())
    expected = expected_document(parse_notebook(notebook.read_bytes()), str(notebook.resolve()))
    rig_box: list[Rig] = []

    async def hook(room: NotebookRoom, index: int) -> None:
        await rig_box[0].before_batch(room, index)

    cancel_watcher_task = inject_task_cancelled("watcher", task_kind)
    h = await make_harness("memory", batch_size=BATCH, before_batch=hook)
    rig = Rig(h, notebook, at, cancel_watcher_task)
    rig_box.append(rig)
    before = set(asyncio.all_tasks())
    await rig.open("loader")
    await rig.open("watcher")
    rig.watcher_in.set()
    room = h.daemon.rooms.rooms()[0]
    state = await asyncio.wait_for(room.wait_load_finished(), WAIT)
    assert state.phase is RoomPhase.READY
    with pytest.raises(TransportClosed):  # the dropped peer sees its connection end
        await asyncio.wait_for(rig.peers["watcher"].wait_loaded(), WAIT)
    late = await rig.open("late")
    await settle(rig, room, ["loader", "late"], "ready")
    docs = {n: rig.peers[n].doc.materialize() for n in ("loader", "late")}
    verdict = check_convergence(room.doc.materialize(), docs, expected=expected)
    assert verdict.ok, verdict.describe()
    assert late.doc.cell_count() == CELLS and len(h.daemon.load_reports) == 1
    await close_and_check_no_leak(h, before)


def test_fault_matrix_size() -> None:
    # 6 faults x 10 batches + 2 sidecar rows (+ 6 joiner rows in their own test)
    assert len(FAULTS) == 6 * BATCHES + 2


# =========================================================================== random schedules
SCHEDULE_CELLS = 12


@st.composite
def schedules(draw: st.DrawFn) -> tuple[Scenario, int]:
    batch_size = draw(st.integers(1, 5))
    batches = math.ceil(SCHEDULE_CELLS / batch_size)
    batch = st.integers(0, batches - 1)
    loader_leaves = draw(st.one_of(st.none(), batch))
    specs = [
        PeerSpec("loader")
        if loader_leaves is None
        else PeerSpec("loader", behaviour="disconnects", disconnect_at_batch=loader_leaves)
    ]
    for i in range(draw(st.integers(0, 5))):
        join = draw(st.one_of(st.none(), batch))
        leave = draw(st.one_of(st.none(), st.integers(join or 0, batches - 1)))
        if leave is not None:
            specs.append(PeerSpec(f"p{i}", "disconnects", join, leave))
            continue
        behaviour = draw(
            st.sampled_from(["normal", "normal", "slow", "never_replies", "never_reads"])
        )
        small = behaviour != "normal" or draw(st.booleans())
        specs.append(
            PeerSpec(
                f"p{i}",
                behaviour,
                join,
                read_delay_s=0.0005 if behaviour == "slow" else 0.0,
                buffer=SLOW_BUFFER if small else None,
            )
        )
    fail = draw(st.one_of(st.none(), batch))
    return Scenario("random", "a random schedule", tuple(specs), fail_at_batch=fail), batch_size


def _check_schedules(notebook: Path, examples: int) -> int:
    ran = [0]

    @settings(
        max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(schedules())
    def run(schedule: tuple[Scenario, int]) -> None:
        scenario, batch_size = schedule
        ran[0] += 1
        result = asyncio.run(run_scenario(scenario, notebook, batch_size=batch_size, timeout=WAIT))
        failed = [c for c in result.checks if not c.ok]
        assert result.ok and result.converged, (scenario, batch_size, failed)
        assert result.cells == SCHEDULE_CELLS

    run()
    return ran[0]


@pytest.fixture(scope="module")
def small_notebook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sched") / "twelve.ipynb"
    generate_notebook_file(path, cells=SCHEDULE_CELLS, seed=5, images=1)
    return path


def test_random_schedules_converge(small_notebook: Path) -> None:
    assert _check_schedules(small_notebook, 60) >= 60


@pytest.mark.slow
@only_with_m_slow
@pytest.mark.timeout(3600)
def test_500_random_schedules_converge(small_notebook: Path) -> None:
    ran = _check_schedules(small_notebook, 500)
    print(f"\n{ran} random schedules: all converged")
    assert ran >= 500
