"""Tests for core.client.NotebookClient against a scripted server built on the I/O-free core.

The server side is a :class:`~core.connection.Connection` in the server role plus the raw end
of an in-memory stream pair: each test decides exactly which events the client receives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from automerge import core as am

from core import protocol as p
from core.client import LoadFailed, NotebookClient, OpenRefused
from core.connection import (
    Connection,
    Handshake,
    Hello,
    RequestEvent,
    ResponseEvent,
    Role,
    StatusEvent,
    SyncData,
)
from core.errors import MessageError
from core.framing import FrameType, encode_frame
from core.notebook_doc import CellSnapshot, NotebookDoc
from sim.net.streams import memory_stream_pair
from tests.endpoint import Endpoint

NB = "/abs/nb.ipynb"


@pytest.fixture
async def wired() -> AsyncIterator[tuple[NotebookClient, Endpoint]]:
    (cr, cw), (sr, sw) = await memory_stream_pair()
    client = NotebookClient(cr, cw, name="c")
    server = Endpoint(Connection(Role.SERVER), sr, sw)
    yield client, server
    await client.close()
    sw.close()


async def _open(client: NotebookClient, server: Endpoint, info: p.NotebookConnectionInfo) -> None:
    opening = asyncio.create_task(client.open(NB))
    handshake = await server.next(Handshake)
    assert isinstance(handshake, Handshake) and handshake.message == p.OpenNotebook(NB)
    server.send(Hello(info))
    await opening


async def test_open_pipelines_its_first_sync_and_reads_the_reply(
    wired: tuple[NotebookClient, Endpoint],
) -> None:
    client, server = wired
    await _open(client, server, p.NotebookConnectionInfo(NB, 0))
    assert client.info == p.NotebookConnectionInfo(NB, 0)
    first = await server.next(SyncData)  # sent together with the handshake
    assert isinstance(first, SyncData)
    assert server.conn.statistics().events_in == {"Handshake": 1, "SyncData": 1}


async def test_a_refusal_raises_open_refused(wired: tuple[NotebookClient, Endpoint]) -> None:
    client, server = wired
    with pytest.raises(OpenRefused, match="no such notebook"):
        await _open(client, server, p.NotebookConnectionInfo("", 0, "no such notebook"))


async def test_cells_statuses_and_readiness(wired: tuple[NotebookClient, Endpoint]) -> None:
    client, server = wired
    await _open(client, server, p.NotebookConnectionInfo(NB, 0))
    doc, state = NotebookDoc(NB), am.SyncState()
    doc.add_cells_full(0, [CellSnapshot("a", "code", "1"), CellSnapshot("b", "code", "2")])
    hello = await server.next(SyncData)
    assert isinstance(hello, SyncData)
    doc.receive_sync_message(state, hello.data)
    server.send(StatusEvent(p.LoadStatus("streaming", cells_loaded=0, total_cells=2)))
    message = doc.generate_sync_message(state)
    assert message is not None
    server.send(SyncData(message))
    await asyncio.wait_for(client.wait_for_cells(2), 30)
    assert client.load_status == p.LoadStatus("streaming", cells_loaded=0, total_cells=2)
    server.send(StatusEvent(p.LoadStatus("ready", cells_loaded=2, total_cells=2)))
    status = await asyncio.wait_for(client.wait_loaded(), 30)
    assert status.phase == "ready"
    stats = client.statistics()
    assert stats.time_to_first_cell_s is not None and stats.time_to_full_s is not None
    kinds = [a.frame_type for a in stats.arrivals]
    assert kinds == ["session_control", "sync", "session_control"]
    assert stats.arrivals[1].cell_count == 2 and stats.arrivals[1].changed
    assert stats.arrivals[1].nbytes == len(message) + 5


async def test_a_failed_status_fails_wait_loaded(wired: tuple[NotebookClient, Endpoint]) -> None:
    client, server = wired
    await _open(client, server, p.NotebookConnectionInfo(NB, 0))
    server.send(StatusEvent(p.LoadStatus("failed", reason="disk full")))
    with pytest.raises(LoadFailed, match="disk full"):
        await asyncio.wait_for(client.wait_loaded(), 30)


async def test_requests_match_responses_by_id(wired: tuple[NotebookClient, Endpoint]) -> None:
    client, server = wired
    await _open(client, server, p.NotebookConnectionInfo(NB, 0))
    pinging = asyncio.create_task(client.ping())
    saving = asyncio.create_task(client.save())
    ping = await server.next(RequestEvent)
    save = await server.next(RequestEvent)
    assert isinstance(ping, RequestEvent) and isinstance(save, RequestEvent)
    server.send(ResponseEvent(p.Saved(save.message.id, NB, 10)))  # answered out of order
    server.send(ResponseEvent(p.Pong(ping.message.id)))
    assert await asyncio.wait_for(saving, 30) == p.Saved(save.message.id, NB, 10)
    await asyncio.wait_for(pinging, 30)


async def test_a_request_from_the_server_is_a_protocol_error(
    wired: tuple[NotebookClient, Endpoint],
) -> None:
    client, server = wired
    await _open(client, server, p.NotebookConnectionInfo(NB, 0))
    server.writer.write(encode_frame(FrameType.REQUEST, p.encode_request(p.Ping(1))))
    await asyncio.wait_for(client.closed.wait(), 30)
    assert isinstance(client.error, MessageError)
    assert "unexpected REQUEST frame from the server" in str(client.error)
