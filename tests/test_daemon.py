"""The daemon over a real Unix socket, a socketpair and in-memory streams."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from core.client import LoadFailed, NotebookClient, OpenRefused
from core.errors import CoreError
from core.framing import FrameType, encode_frame, encode_untyped
from core.manifest import resolve_ref
from core.protocol import OpenNotebook, encode_handshake
from core.room import NotebookRoom

from .conftest import TRANSPORTS, HarnessFactory, simple_cells, write_notebook

pytestmark = pytest.mark.parametrize("transport", TRANSPORTS)

SEVEN = [
    {
        "id": "c1",
        "source": "1 + 1",
        "outputs": [
            {
                "output_type": "execute_result",
                "execution_count": 1,
                "metadata": {},
                "data": {"text/plain": "2"},
            }
        ],
    },
    {"id": "c2", "cell_type": "markdown", "source": "# Title"},
    {"id": "c3", "source": "y = 3"},
    {
        "id": "c4",
        "source": "print('hi')",
        "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi\n"}],
    },
    {"id": "c5", "cell_type": "markdown", "source": "text"},
    {
        "id": "c6",
        "source": "z",
        "outputs": [
            {
                "output_type": "execute_result",
                "execution_count": 6,
                "metadata": {},
                "data": {"text/plain": "7"},
            }
        ],
    },
    {"id": "c7", "source": "last"},
]


def _is_hash(s: str) -> bool:
    return len(s) == 64 and all(c in "0123456789abcdef" for c in s)


# ------------------------------------------------------------------ reference §6.2
async def test_streaming_load_via_open_notebook(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness(transport)
    nb = write_notebook(tmp_path / "seven.ipynb", SEVEN)
    client = await h.connect(nb)
    assert client.info is not None
    assert client.info.cell_count == 0 and client.info.error is None
    status = await asyncio.wait_for(client.wait_loaded(), 30)
    assert status.phase == "ready" and status.cells_loaded == 7
    cells = client.doc.get_cells()
    assert [c.id for c in cells] == [f"c{i}" for i in range(1, 8)]
    assert (cells[0].cell_type, cells[1].cell_type) == ("code", "markdown")
    assert [cells[i].source for i in (0, 1, 3, 6)] == ["1 + 1", "# Title", "print('hi')", "last"]
    assert len(cells[0].outputs) == 1 and _is_hash(cells[0].outputs[0])
    assert len(cells[3].outputs) == 1 and _is_hash(cells[3].outputs[0])
    assert resolve_ref(cells[3].outputs[0], h.daemon.blob_store)["text"] == "hi\n"
    assert cells[0].execution_count == "1" and cells[2].execution_count == "3"
    assert cells[6].outputs == ()


async def test_second_client_joins_after_load(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness(transport)
    nb = write_notebook(
        tmp_path / "three.ipynb", [{"id": f"a{i}", "source": "first"} for i in (1, 2, 3)]
    )
    c1 = await h.connect(nb)
    await asyncio.wait_for(c1.wait_loaded(), 30)
    c2 = await h.connect(nb, name="c2")
    assert c2.info is not None and c2.info.cell_count == 3
    await asyncio.wait_for(c2.wait_loaded(), 30)
    assert [c.id for c in c2.doc.get_cells()] == ["a1", "a2", "a3"]
    assert c2.doc.get_cells()[0].source == "first"
    assert c1.doc.notebook_id == c2.doc.notebook_id == str(nb.resolve())
    assert len(h.daemon.load_reports) == 1


# ------------------------------------------------------------------ progressive delivery
async def test_load_is_progressive_for_the_loading_client(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """Counters, not timing: batch k+1 is not inserted until the loading client holds batches
    0..k — a load that only delivered at the end (reference §4.4) would stall here."""
    clients: list[NotebookClient] = []
    seen: list[tuple[int, int]] = []

    async def gate(room: NotebookRoom, index: int) -> None:
        if index == 0 or not clients:
            return
        expected = index * 3
        await asyncio.wait_for(clients[0].wait_for_cells(expected), 10)
        assert room.is_loading
        seen.append((index, clients[0].doc.cell_count()))

    h = await make_harness(transport, before_batch=gate)
    nb = write_notebook(tmp_path / "prog.ipynb", simple_cells(30))
    reader, writer = await h.streams()
    client = NotebookClient(reader, writer)
    clients.append(client)
    h.clients.append(client)
    await client.open(nb)
    await asyncio.wait_for(client.wait_loaded(), 30)
    assert seen == [(k, 3 * k) for k in range(1, 10)]
    stats = client.statistics()
    sync = [a for a in stats.arrivals if a.frame_type == "sync"]
    # Every frame that raised the cell count raised it by at most one batch (3 cells):
    # the cells arrived batch by batch, not in one burst at the end.
    counts = [a.cell_count for a in sync if a.changed]
    assert counts[-1] == 30
    assert all(b - a <= 3 for a, b in zip([0, *counts], counts, strict=False))
    assert stats.time_to_first_cell_s is not None
    first_cells_frame = next(i for i, a in enumerate(stats.arrivals) if a.cell_count > 0)
    assert stats.arrivals[first_cells_frame].cell_count == 3


# ------------------------------------------------------------------ joiners mid-load
async def test_joiner_mid_load_gets_deltas_and_converges(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    release = asyncio.Event()
    joined_at = 4

    async def gate(room: NotebookRoom, index: int) -> None:
        if index == joined_at:
            await release.wait()

    h = await make_harness(transport, before_batch=gate)
    nb = write_notebook(tmp_path / "join.ipynb", simple_cells(30))
    loader = await h.connect(nb, name="loader")
    await asyncio.wait_for(loader.wait_for_cells(joined_at * 3), 30)
    joiner = await h.connect(nb, name="joiner")
    assert joiner.info is not None and joiner.info.cell_count == joined_at * 3
    await asyncio.wait_for(joiner.wait_for_cells(joined_at * 3), 30)
    release.set()
    await asyncio.wait_for(joiner.wait_loaded(), 30)
    await asyncio.wait_for(loader.wait_loaded(), 30)
    room = h.daemon.rooms.rooms()[0]
    assert joiner.doc.materialize() == loader.doc.materialize() == room.doc.materialize()
    counts = [a.cell_count for a in joiner.statistics().arrivals if a.changed]
    assert len(counts) >= 3  # snapshot, then deltas — not one burst
    assert len(h.daemon.load_reports) == 1


# ------------------------------------------------------------------ failure and rollback
@pytest.mark.parametrize("fail_at", [0, 4, 9])
async def test_failure_at_batch_rolls_back_and_retry_reloads(
    transport: str, fail_at: int, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    armed = [True]
    joiner_in = asyncio.Event()
    clients: dict[str, NotebookClient] = {}
    notified_before_failure: list[int] = []

    async def gate(room: NotebookRoom, index: int) -> None:
        if index == min(2, fail_at) and fail_at > 0 and "loader" in clients:
            # a joiner arrives mid-load before the failure
            await joiner_in.wait()
        if index == fail_at and armed[0]:
            armed[0] = False
            notified_before_failure.append(room.notifications)
            raise OSError(28, "No space left on device (injected)")

    h = await make_harness(transport, before_batch=gate)
    nb = write_notebook(tmp_path / "fail.ipynb", simple_cells(30))
    loader = await h.connect(nb, name="loader")
    clients["loader"] = loader
    joiner = None
    if fail_at > 0:
        await asyncio.wait_for(loader.wait_for_cells(min(2, fail_at) * 3), 30)
        joiner = await h.connect(nb, name="joiner")
        joiner_in.set()
    with pytest.raises(LoadFailed, match="No space left on device"):
        await asyncio.wait_for(loader.wait_loaded(), 30)
    room = h.daemon.rooms.rooms()[0]
    assert room.doc.cell_count() == 0 and not room.is_loading
    assert room.doc.notebook_id == str(nb.resolve())
    assert room.notifications == notified_before_failure[0] + 1  # the rollback notifies once
    for peer in [loader] + ([joiner] if joiner else []):
        await asyncio.wait_for(
            peer.wait_for(
                lambda p=peer: (
                    p.doc.cell_count() == 0
                    and p.load_status is not None
                    and p.load_status.phase == "failed"
                )
            ),
            30,
        )
        assert peer.doc.notebook_id == room.notebook_id
        assert peer.doc.materialize() == room.doc.materialize()
    report = h.daemon.load_reports[-1]
    assert not report.ok and "No space left" in (report.error or "")
    # The next opener retries cleanly and everyone converges on the full notebook.
    retry = await h.connect(nb, name="retry")
    assert retry.info is not None and retry.info.cell_count == 0
    await asyncio.wait_for(retry.wait_loaded(), 30)
    for peer in [loader, retry] + ([joiner] if joiner else []):
        await asyncio.wait_for(peer.wait_loaded(), 30)
        assert peer.doc.cell_count() == 30
        assert peer.doc.materialize() == room.doc.materialize()
    assert len(h.daemon.load_reports) == 2 and h.daemon.load_reports[-1].ok


async def test_missing_file_and_directory_refused_at_handshake(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness(transport)
    with pytest.raises(OpenRefused, match="no such file"):
        await h.connect(tmp_path / "missing.ipynb")
    with pytest.raises(OpenRefused, match="is a directory"):
        await h.connect(tmp_path)
    # the daemon keeps serving
    nb = write_notebook(tmp_path / "ok.ipynb", simple_cells(2))
    ok = await h.connect(nb)
    await asyncio.wait_for(ok.wait_loaded(), 30)
    assert h.daemon.statistics().handshake_failures == 2


async def test_invalid_json_fails_in_protocol(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness(transport)
    bad = tmp_path / "bad.ipynb"
    bad.write_text('{"cells": [}')
    client = await h.connect(bad)
    with pytest.raises(LoadFailed, match="invalid JSON"):
        await asyncio.wait_for(client.wait_loaded(), 30)
    assert client.doc.cell_count() == 0
    # fix the file: the next opener retries and succeeds
    write_notebook(bad, simple_cells(4))
    again = await h.connect(bad)
    await asyncio.wait_for(again.wait_loaded(), 30)
    assert again.doc.cell_count() == 4


# ------------------------------------------------------------------ peers that misbehave
async def test_non_reading_loader_does_not_stop_the_load_or_others(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness(transport)
    # large outputs so the never-read bytes exceed any socket buffer
    cells = simple_cells(60)
    for c in cells:
        if c.get("cell_type", "code") == "code":
            c["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "x" * 20000}]
    nb = write_notebook(tmp_path / "big.ipynb", cells)
    _reader, writer = await h.streams()
    writer.write(encode_untyped(encode_handshake(OpenNotebook(str(nb)))))
    await writer.drain()  # handshake only; this peer never reads again
    await asyncio.wait_for(h.daemon.wait_for(lambda: bool(h.daemon.sessions)), 30)
    other = await h.connect(nb, name="other")
    await asyncio.wait_for(other.wait_loaded(), 60)
    assert other.doc.cell_count() == 60
    assert h.daemon.load_reports[-1].ok
    writer.close()


async def test_requests_during_load_are_all_answered(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness(transport)
    nb = write_notebook(tmp_path / "req.ipynb", simple_cells(60))
    client = await h.connect(nb)
    pings = [asyncio.create_task(client.ping()) for _ in range(100)]
    docs = [asyncio.create_task(client.get_doc_bytes()) for _ in range(5)]
    await asyncio.wait_for(client.wait_loaded(), 30)
    await asyncio.wait_for(asyncio.gather(*pings, *docs), 30)
    assert all(isinstance(d.result(), bytes) for d in docs)


async def test_two_simultaneous_openers_load_once(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness(transport)
    nb = write_notebook(tmp_path / "race.ipynb", simple_cells(12))
    a, b = await asyncio.gather(h.connect(nb, name="a"), h.connect(nb, name="b"))
    await asyncio.wait_for(asyncio.gather(a.wait_loaded(), b.wait_loaded()), 30)
    room = h.daemon.rooms.rooms()[0]
    assert room.loads_started == 1 and len(h.daemon.load_reports) == 1
    ids = [c.id for c in room.doc.get_cells()]
    assert len(ids) == 12 == len(set(ids))
    assert a.doc.materialize() == b.doc.materialize() == room.doc.materialize()


async def test_cancelled_loader_releases_claim(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    stop = asyncio.Event()

    async def gate(room: NotebookRoom, index: int) -> None:
        if index == 3 and not stop.is_set():
            stop.set()
            await asyncio.Event().wait()  # hang until cancelled

    h = await make_harness(transport, before_batch=gate)
    nb = write_notebook(tmp_path / "cancel.ipynb", simple_cells(30))
    client = await h.connect(nb)
    await asyncio.wait_for(stop.wait(), 30)
    room = h.daemon.rooms.rooms()[0]
    h.daemon.loads[room.notebook_id].cancel()
    with pytest.raises(LoadFailed, match="load cancelled"):
        await asyncio.wait_for(client.wait_loaded(), 30)
    assert not room.is_loading and room.doc.cell_count() == 0
    retry = await h.connect(nb, name="retry")
    await asyncio.wait_for(retry.wait_loaded(), 30)
    assert retry.doc.cell_count() == 30


async def test_loader_disconnect_mid_load_rolls_back(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    gone = asyncio.Event()

    async def gate(room: NotebookRoom, index: int) -> None:
        if index == 3:
            await gone.wait()

    h = await make_harness(transport, before_batch=gate)
    nb = write_notebook(tmp_path / "gone.ipynb", simple_cells(30))
    client = await h.connect(nb)
    await asyncio.wait_for(client.wait_for_cells(9), 30)
    await client.close()
    room = h.daemon.rooms.rooms()[0]
    await asyncio.wait_for(
        h.daemon.wait_for(lambda: not any(s.room is room for s in h.daemon.sessions)), 30
    )
    gone.set()
    await asyncio.wait_for(h.daemon.wait_for(lambda: bool(h.daemon.load_reports)), 30)
    report = h.daemon.load_reports[-1]
    assert not report.ok and "disconnected" in (report.error or "")
    assert room.doc.cell_count() == 0 and not room.is_loading


# ------------------------------------------------------------------ hostile frames
async def test_protocol_error_closes_only_that_peer(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness(transport)
    nb = write_notebook(tmp_path / "p.ipynb", simple_cells(6))
    good = await h.connect(nb, name="good")
    await asyncio.wait_for(good.wait_loaded(), 30)
    bad = await h.connect(nb, name="bad")
    bad.send_raw(b"\x00\x00\x00\x02\x09x")  # unknown frame type 0x09
    await asyncio.wait_for(bad.closed.wait(), 30)
    assert bad.closing is not None and bad.closing.reason == "unknown_frame_type"
    await good.ping()
    assert h.daemon.statistics().protocol_errors == 1


async def test_undecodable_sync_message_is_a_protocol_error(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness(transport)
    nb = write_notebook(tmp_path / "s.ipynb", simple_cells(3))
    bad = await h.connect(nb)
    await asyncio.wait_for(bad.wait_loaded(), 30)
    bad.send_raw(encode_frame(FrameType.SYNC, b"garbage"))
    await asyncio.wait_for(bad.closed.wait(), 30)
    assert bad.closing is not None and bad.closing.reason == "bad_message"


# ------------------------------------------------------------------ save
async def test_save_round_trips_and_is_atomic(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness(transport)
    nb = write_notebook(tmp_path / "save.ipynb", SEVEN)
    client = await h.connect(nb)
    await asyncio.wait_for(client.wait_loaded(), 30)
    saved = await client.save()
    assert saved.path == str(nb.resolve()) and saved.bytes_written == nb.stat().st_size
    assert sorted(os.listdir(tmp_path)) == ["save.ipynb"]  # no temp file left behind
    # the saved file loads back to the same document
    h2 = await make_harness(transport)
    again = await h2.connect(nb)
    await asyncio.wait_for(again.wait_loaded(), 30)
    assert again.doc.get_cells() == client.doc.get_cells()


async def test_save_refused_while_loading_and_after_failure(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    release = asyncio.Event()

    async def gate(room: NotebookRoom, index: int) -> None:
        if index == 2:
            await release.wait()
        if index == 3:
            raise RuntimeError("boom")

    h = await make_harness(transport, before_batch=gate)
    nb = write_notebook(tmp_path / "guard.ipynb", simple_cells(30))
    original = nb.read_bytes()
    client = await h.connect(nb)
    await asyncio.wait_for(client.wait_for_cells(6), 30)
    with pytest.raises(Exception, match="still loading"):
        await client.save()
    release.set()
    with pytest.raises(LoadFailed, match="boom"):
        await asyncio.wait_for(client.wait_loaded(), 30)
    with pytest.raises(Exception, match="the load failed"):
        await client.save()
    assert nb.read_bytes() == original


async def test_empty_room_never_overwrites_a_non_empty_file(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness(transport)
    nb = write_notebook(tmp_path / "empty.ipynb", [])
    client = await h.connect(nb)
    status = await asyncio.wait_for(client.wait_loaded(), 30)
    assert status.cells_loaded == 0
    write_notebook(nb, simple_cells(3))  # someone else filled the file meanwhile
    filled = nb.read_bytes()
    with pytest.raises(CoreError, match="the room is empty but the file on disk has 3 cells"):
        await client.save()
    assert nb.read_bytes() == filled


async def test_room_is_evicted_after_its_last_peer_leaves(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness(transport)  # eviction_delay 0.05 s (conftest)
    nb = write_notebook(tmp_path / "evict.ipynb", simple_cells(3))
    a = await h.connect(nb, name="a")
    b = await h.connect(nb, name="b")
    await asyncio.wait_for(asyncio.gather(a.wait_loaded(), b.wait_loaded()), 30)
    first_room = h.daemon.rooms.rooms()[0]
    await a.close()
    await asyncio.wait_for(h.daemon.wait_for(lambda: first_room.peer_count == 1), 30)
    assert h.daemon.rooms.evicted == 0  # b is still there
    await b.close()
    await asyncio.wait_for(h.daemon.wait_for(lambda: h.daemon.rooms.evicted == 1), 30)
    assert len(h.daemon.rooms) == 0
    # the next opener gets a fresh room and loads again
    c = await h.connect(nb, name="c")
    assert c.info is not None and c.info.cell_count == 0
    await asyncio.wait_for(c.wait_loaded(), 30)
    assert h.daemon.rooms.rooms()[0] is not first_room and len(h.daemon.load_reports) == 2


async def test_unix_socket_permissions(transport: str, make_harness: HarnessFactory) -> None:
    if transport != "unix":
        pytest.skip("socket file permissions only exist for the unix transport")
    h = await make_harness(transport)
    path = h.daemon.config.socket_path
    assert path is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_a_burst_of_simultaneous_connects_is_not_reset(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """asyncio's default listen backlog (100) reset the 101st of a burst; the daemon asks more."""
    if transport != "unix":
        pytest.skip("the listen backlog only exists for the unix transport")
    h = await make_harness(transport)
    nb = write_notebook(tmp_path / "burst.ipynb", simple_cells(3))
    path = h.daemon.config.socket_path
    assert path is not None
    clients = await asyncio.gather(
        *(NotebookClient.connect(path, nb, name=f"p{i}") for i in range(250)),
        return_exceptions=True,
    )
    failed = [c for c in clients if not isinstance(c, NotebookClient)]
    ok = [c for c in clients if isinstance(c, NotebookClient)]
    try:
        assert failed == []
        await asyncio.wait_for(asyncio.gather(*(c.wait_loaded() for c in ok)), 60)
    finally:
        await asyncio.gather(*(c.close() for c in ok))
