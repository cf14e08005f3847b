"""Issue 12 items 2 and 3 through the daemon: a failed load removes only what it inserted, and a
``ready`` status is always true of the document (nobody's work lost, nobody waiting forever)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from core.client import NotebookClient
from core.protocol import GetLoadStatus, LoadStatusResponse
from core.room import NotebookRoom

from .conftest import TRANSPORTS, Harness, HarnessFactory, simple_cells, write_notebook

pytestmark = pytest.mark.parametrize("transport", TRANSPORTS)

WAIT = 30.0  # safety timeout of every condition wait (never a sleep to let something happen)
CELLS = 30  # batch size 3 (the default): 10 batches


async def until(room: NotebookRoom, predicate: Callable[[], bool]) -> None:
    """Wait until ``predicate`` (about the daemon's document) holds, re-checked on every change
    of the room (a subscription of our own, like a peer's)."""
    key, sub = room.subscribe("test")
    try:
        async with asyncio.timeout(WAIT):
            while not predicate():
                await sub.wait()
    finally:
        room.unsubscribe(key)


def ids(client: NotebookClient) -> list[str]:
    return [c.id for c in client.doc.get_cells()]


def held_at(index: int) -> tuple[asyncio.Event, Callable[[NotebookRoom, int], object]]:
    """A ``before_batch`` hook that holds the load before batch ``index`` until released."""
    release = asyncio.Event()

    async def hook(_room: NotebookRoom, batch: int) -> None:
        if batch == index:
            await release.wait()

    return release, hook


async def leaves(h: Harness, client: NotebookClient, room: NotebookRoom) -> None:
    """Close ``client`` and wait until the daemon has ended its session."""
    before = sum(1 for s in h.daemon.sessions if s.room is room)
    await client.close()
    await asyncio.wait_for(
        h.daemon.wait_for(lambda: sum(1 for s in h.daemon.sessions if s.room is room) < before),
        WAIT,
    )


async def add_own_cell(client: NotebookClient, index: int, cell_id: str, text: str) -> None:
    client.doc.add_cell(index, cell_id, "markdown")
    assert client.doc.update_source(cell_id, text)
    client.sync_now()


# ------------------------------------------------------------------ item 2: rollback
async def test_a_failed_load_keeps_the_cells_peers_added(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    release, hook = held_at(3)
    h = await make_harness(transport, before_batch=hook)
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(CELLS))
    loader = await h.connect(nb, name="loader")
    peer = await h.connect(nb, name="peer")
    await asyncio.wait_for(peer.wait_for_cells(9), WAIT)
    await add_own_cell(peer, 9, "mine", "my notes, typed while the file loaded")
    room = h.daemon.rooms.rooms()[0]
    await until(room, lambda: room.doc.find_cell_index("mine") is not None)

    await leaves(h, loader, room)  # the loading client leaves mid-load: the load rolls back
    release.set()
    await asyncio.wait_for(peer.wait_for(lambda: _phase(peer) == "failed"), WAIT)
    await asyncio.wait_for(peer.wait_for(lambda: ids(peer) == ["mine"]), WAIT)
    assert [c.id for c in room.doc.get_cells()] == ["mine"]
    assert room.doc.get_cells()[0].source == "my notes, typed while the file loaded"

    # The next opener loads the file again; the peer's cell is kept, after the file's cells.
    retry = await h.connect(nb, name="retry")
    await asyncio.wait_for(retry.wait_loaded(), WAIT)
    expected = [f"c{i + 1}" for i in range(CELLS)] + ["mine"]
    assert ids(retry) == expected
    await asyncio.wait_for(peer.wait_for(lambda: ids(peer) == expected), WAIT)


async def test_the_files_cells_stay_together_when_a_peer_inserts_mid_load(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    release, hook = held_at(4)
    h = await make_harness(transport, before_batch=hook)
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(CELLS))
    loader = await h.connect(nb, name="loader")
    await asyncio.wait_for(loader.wait_for_cells(12), WAIT)
    await add_own_cell(loader, 0, "top", "a title the loading peer typed first")
    room = h.daemon.rooms.rooms()[0]
    await until(room, lambda: room.doc.find_cell_index("top") == 0)
    release.set()
    await asyncio.wait_for(loader.wait_loaded(), WAIT)
    assert ids(loader) == ["top"] + [f"c{i + 1}" for i in range(CELLS)]
    assert [c.id for c in room.doc.get_cells()] == ids(loader)


async def test_a_rollback_keeps_metadata_a_peer_wrote(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    release, hook = held_at(2)
    h = await make_harness(transport, before_batch=hook)
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(CELLS))
    loader = await h.connect(nb, name="loader")
    peer = await h.connect(nb, name="peer")
    await asyncio.wait_for(peer.wait_for_cells(6), WAIT)
    peer.doc.update_notebook_metadata({"authors": '[{"name": "peer"}]'})
    peer.sync_now()
    room = h.daemon.rooms.rooms()[0]
    await until(room, lambda: "authors" in room.doc.get_notebook_metadata())
    await leaves(h, loader, room)
    release.set()
    await asyncio.wait_for(peer.wait_for(lambda: _phase(peer) == "failed"), WAIT)
    assert room.doc.get_notebook_metadata() == {"authors": '[{"name": "peer"}]'}
    assert room.doc.cell_count() == 0


# ------------------------------------------------------------------ item 3: readiness
async def test_ready_after_a_deletion_is_true_of_the_document(
    transport: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness(transport)
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(6))
    editor = await h.connect(nb, name="editor")
    await asyncio.wait_for(editor.wait_loaded(), WAIT)
    watcher = await h.connect(nb, name="watcher")
    await asyncio.wait_for(watcher.wait_loaded(), WAIT)

    assert editor.doc.delete_cell("c2")
    editor.sync_now()
    # Every peer is told the new count, the one that deleted included.
    for client in (editor, watcher):
        await asyncio.wait_for(client.wait_for(lambda c=client: _cells(c) == 5), WAIT)  # type: ignore[misc]

    # A later opener is promised 5 cells, receives 5, and is ready (it used to wait for 6).
    late = await h.connect(nb, name="late")
    status = await asyncio.wait_for(late.wait_loaded(), WAIT)
    assert status.cells_loaded == status.total_cells == 5
    assert late.doc.cell_count() == 5
    response = await late.request(GetLoadStatus(late.next_id()))
    assert isinstance(response, LoadStatusResponse) and response.cells_loaded == 5

    # And adding a cell back is announced too.
    await add_own_cell(late, 5, "new", "after the load")
    await asyncio.wait_for(watcher.wait_for(lambda: _cells(watcher) == 6), WAIT)


def _phase(client: NotebookClient) -> str | None:
    return None if client.load_status is None else client.load_status.phase


def _cells(client: NotebookClient) -> int | None:
    return None if client.load_status is None else client.load_status.cells_loaded
