"""The daemon's limits on what peers can make it hold (issue 12 item 8), through the real daemon
on a real Unix socket, and the resource survivals that must stay true.

* A frame that has started arriving must complete within ``frame_progress_timeout``: stalled
  partial frames are closed with ``frame_timeout``; an idle connection is never timed out.
* A daemon-wide ``memory_budget`` covers partial frames and queued output: the connection
  holding the most is closed with ``over_budget`` before the total would exceed it, and the
  daemon's own accounting (``Daemon.budget``) never goes over.
* Handshake-less connections and connect/close cycles leave the daemon's open file descriptors
  (``/proc/self/fd``: the daemon runs in this process) and its bookkeeping where they started.
* Traversal blob ids never touch the filesystem over the Unix socket either.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import resource
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from automerge import core as am

from core import protocol as p
from core.blob_store import DiskBlobStore
from core.connection import (
    ClosingEvent,
    Connection,
    Handshake,
    Hello,
    RequestEvent,
    ResponseEvent,
    Role,
    SyncData,
)
from core.daemon import Daemon
from core.framing import FrameType, encode_frame
from core.notebook_doc import NotebookDoc
from core.session import PeerSession

from .conftest import Harness, HarnessFactory, simple_cells, write_notebook
from .endpoint import Endpoint
from .test_security import HOSTILE_IDS, recording

WAIT = 30.0  # safety net of every wait; hitting it fails the test
MIB = 1024 * 1024


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait for ``predicate`` to hold, re-checking as the loop runs (never a fixed sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


async def raw_peer(h: Harness, notebook: Path) -> tuple[Endpoint, PeerSession]:
    """A handshaken raw client endpoint and the daemon's session for it."""
    before = set(h.daemon.sessions)
    reader, writer = await h.streams()
    end = Endpoint(Connection(Role.CLIENT), reader, writer)
    end.send(Handshake(p.OpenNotebook(path=str(notebook))))
    hello = await end.next(Hello)
    assert isinstance(hello, Hello) and hello.message.error is None
    await until(lambda: len(set(h.daemon.sessions) - before) == 1, "the session")
    (session,) = set(h.daemon.sessions) - before
    return end, session


def partial_frame(announced: int, sent: int) -> bytes:
    """The first ``sent`` bytes of a REQUEST frame whose header announces ``announced``."""
    return struct.pack(">IB", announced, FrameType.REQUEST) + b"x" * (sent - 1)


async def closed(h: Harness, session: PeerSession) -> None:
    await asyncio.wait_for(h.daemon.wait_for(lambda: session not in h.daemon.sessions), WAIT)


async def others_still_served(h: Harness, notebook: Path) -> None:
    """A fresh client of the same room loads, edits, saves and pings."""
    client = await h.connect(notebook)
    await asyncio.wait_for(client.wait_loaded(), WAIT)
    cell = client.doc.get_cells()[0].id
    client.doc.update_source(cell, "edited = True")
    client.sync_now()
    room = h.daemon.rooms.rooms()[0]
    await until(lambda: room.doc.get_cells()[0].source == "edited = True", "the edit")
    await asyncio.wait_for(client.save(), WAIT)
    await asyncio.wait_for(client.ping(), WAIT)


# =========================================================================== progress timeout
async def test_stalled_partial_frames_are_closed_after_the_progress_timeout(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """8 peers that announced 100 MiB frames and stalled used to be held forever (546 MB)."""
    h = await make_harness("unix", frame_progress_timeout=0.3)
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(6))
    idle, idle_session = await raw_peer(h, nb)  # handshakes, then sends nothing at all
    stalled = [await raw_peer(h, nb) for _ in range(4)]
    for end, _session in stalled:
        end.writer.write(partial_frame(100 * MIB, 256 * 1024))
    await until(
        lambda: all(s.statistics().bytes_in >= 256 * 1024 for _e, s in stalled), "partial frames"
    )
    for end, session in stalled:
        closing = await end.next(ClosingEvent)
        assert isinstance(closing, ClosingEvent)
        assert closing.message.reason == "frame_timeout"
        assert closing.message.detail == (
            "frame not complete within 0.3 s: 262148 bytes of it received, "
            "then the peer stopped sending"
        )
        await closed(h, session)
        assert session.close_reason == "frame_timeout"
        end.writer.close()
    # The idle peer has been idle longer than the timeout by now, and is still served.
    assert idle_session in h.daemon.sessions
    idle.send(RequestEvent(p.Ping(7)))
    pong = await idle.next(ResponseEvent)
    assert isinstance(pong, ResponseEvent) and pong.message == p.Pong(7)
    await others_still_served(h, nb)
    assert h.daemon.budget.held(stalled[0][1]) == 0
    idle.writer.close()


# =========================================================================== memory budget
async def test_partial_frames_over_the_budget_close_the_largest_holder(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness("unix", memory_budget=MIB, frame_progress_timeout=None)
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(6))
    (a, a_session), (b, b_session) = [await raw_peer(h, nb) for _ in range(2)]
    a.writer.write(partial_frame(100 * MIB, 700_000))
    await until(lambda: h.daemon.budget.held(a_session) >= 700_000, "a's partial frame")
    b.writer.write(partial_frame(100 * MIB, 500_000))  # the total would pass 1 MiB
    closing = await a.next(ClosingEvent)
    assert isinstance(closing, ClosingEvent) and closing.message.reason == "over_budget"
    assert closing.message.detail.startswith(
        "over the daemon's memory budget: this connection would hold 700004 bytes"
    )
    await closed(h, a_session)
    await until(lambda: h.daemon.budget.held(b_session) >= 500_000, "b's partial frame")
    assert b_session in h.daemon.sessions and b_session.close_reason is None
    stats = h.daemon.budget.statistics()
    assert stats.peak <= MIB and stats.closed == 1
    await others_still_served(h, nb)
    for end in (a, b):
        end.writer.close()


def big_notebook(path: Path, cells: int, source_bytes: int) -> Path:
    """Sources of random hex text, so the saved document does not compress away."""
    rng = random.Random(12)
    return write_notebook(
        path,
        [{"id": f"c{i}", "source": rng.randbytes(source_bytes // 2).hex()} for i in range(cells)],
    )


async def test_a_client_asking_for_doc_bytes_without_reading_is_closed_over_budget(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """It used to grow the daemon by 100 MB: every response was queued, none was read."""
    budget = 4 * MIB
    h = await make_harness("unix", memory_budget=budget)
    nb = big_notebook(tmp_path / "nb.ipynb", cells=16, source_bytes=24_000)
    reader_client = await h.connect(nb)  # a peer that reads normally, in the same room
    await asyncio.wait_for(reader_client.wait_loaded(), WAIT)
    room = h.daemon.rooms.rooms()[0]
    response_size = len(room.doc.save()) * 4 // 3
    assert response_size > 250_000  # so the budget holds only about a dozen of them
    spammer, session = await raw_peer(h, nb)
    for i in range(100):  # never reads a single response
        spammer.send(RequestEvent(p.GetDocBytes(i)))
    await closed(h, session)
    assert session.close_reason == "over_budget"
    stats = h.daemon.budget.statistics()
    assert stats.closed == 1
    assert stats.peak <= budget  # the daemon's own accounting never went over
    assert h.daemon.budget.held(session) == 0
    # The reading peer is still served: a response of the same size arrives whole.
    response = await asyncio.wait_for(reader_client.request(p.GetDocBytes(99)), WAIT)
    assert isinstance(response, p.DocBytes) and response.data == room.doc.save()
    await others_still_served(h, nb)
    spammer.writer.close()


async def test_a_sync_message_over_the_budget_closes_only_its_peer(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """A joiner's first sync message carries the whole document: with a budget smaller than
    that message it is refused before it is written, and the peer is told why."""
    h = await make_harness("unix", memory_budget=200_000)
    nb = big_notebook(tmp_path / "nb.ipynb", cells=16, source_bytes=24_000)
    loader = await h.connect(nb)  # receives the document batch by batch: small messages
    await asyncio.wait_for(loader.wait_loaded(), WAIT)
    joiner, session = await raw_peer(h, nb)
    joiner.send(SyncData(NotebookDoc.empty().generate_sync_message(am.SyncState()) or b""))
    closing = await joiner.next(ClosingEvent)
    assert isinstance(closing, ClosingEvent) and closing.message.reason == "over_budget"
    await closed(h, session)
    assert h.daemon.budget.statistics().peak <= 200_000
    assert loader.doc.cell_count() == 16
    await asyncio.wait_for(loader.ping(), WAIT)
    joiner.writer.close()


# =========================================================================== survivals
def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def live_connections() -> int:
    """Protocol connections (and their decoders' buffers) still reachable in this process."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Connection))


async def settled(daemon: Daemon, failures: int) -> None:
    await until(
        lambda: (
            daemon.statistics().handshake_failures >= failures
            and daemon.statistics().active_connections == 0
        ),
        f"{failures} refused handshakes",
    )


async def handshakeless_connections(h: Harness, n: int) -> None:
    """``n`` connections at once that never send a handshake; each is refused on the timeout."""
    daemon = h.daemon
    failures = daemon.statistics().handshake_failures
    streams = [await h.streams() for _ in range(n)]
    await settled(daemon, failures + n)
    for reader, writer in streams:
        assert await asyncio.wait_for(reader.read(), WAIT)  # the refusal, then EOF
        writer.close()
        await writer.wait_closed()


async def connect_close_cycles(h: Harness, n: int) -> None:
    daemon = h.daemon
    failures = daemon.statistics().handshake_failures
    for _ in range(n):
        _reader, writer = await h.streams()
        writer.close()
        await writer.wait_closed()
    await settled(daemon, failures + n)


async def check_flat(h: Harness, tmp_path: Path, n_idle: int, n_cycles: int) -> None:
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(4))
    await handshakeless_connections(h, 5)  # warm up lazily created state
    await connect_close_cycles(h, 5)
    baseline = open_fds(), live_connections()
    await handshakeless_connections(h, n_idle)
    assert (open_fds(), live_connections()) == baseline
    await connect_close_cycles(h, n_cycles)
    assert (open_fds(), live_connections()) == baseline
    daemon = h.daemon
    assert not daemon.sessions and not daemon.loads and len(daemon.rooms) == 0
    assert daemon.budget.total == 0
    await others_still_served(h, nb)


async def test_handshakeless_connections_and_connect_close_cycles_leave_fds_flat(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness("unix", handshake_timeout=0.3)
    await check_flat(h, tmp_path, n_idle=300, n_cycles=500)


@pytest.mark.slow
async def test_2000_handshakeless_connections_and_15000_cycles_leave_fds_flat(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    h = await make_harness("unix", handshake_timeout=1.0)
    await check_flat(h, tmp_path, n_idle=2000, n_cycles=15_000)


async def test_traversal_blob_ids_over_the_unix_socket_never_touch_the_filesystem(
    make_harness: HarnessFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await make_harness("unix")
    store = DiskBlobStore(tmp_path / "blobs")
    h.daemon.blob_store = store
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(4))
    client = await h.connect(nb)
    await asyncio.wait_for(client.wait_loaded(), WAIT)
    assert store.list()
    end, _session = await raw_peer(h, nb)  # raw frames: no client-side check in the way
    for i, blob_id in enumerate(HOSTILE_IDS):
        frame = encode_frame(FrameType.REQUEST, p.encode_request(p.GetBlob(i, blob_id)))
        with recording(monkeypatch) as rec:
            end.writer.write(frame)
            response = await end.next(ResponseEvent)
        assert isinstance(response, ResponseEvent)
        assert response.message == p.ErrorResponse(
            i, f"invalid blob id {blob_id!r}: expected 64 lowercase hex characters"
        )
        assert rec.paths == [], (blob_id, rec.paths)
    end.writer.close()
    await asyncio.wait_for(client.ping(), WAIT)
