"""Tests for core.session.PeerSession, driven through the I/O-free core from the client's side.

The session runs over an in-memory stream pair against a small host (a blob store and a save
function, the whole :class:`~core.session.SessionHost` protocol). The test is the client: it
speaks through a :class:`~core.connection.Connection` in the client role and reads whole events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from automerge import core as am

import core.session
from core import protocol as p
from core.blob_store import BlobStore, MemoryBlobStore
from core.connection import (
    ClosingEvent,
    Connection,
    Handshake,
    Hello,
    RequestEvent,
    ResponseEvent,
    Role,
    StatusEvent,
    SyncData,
)
from core.framing import FrameType, encode_frame
from core.notebook_doc import CellSnapshot, NotebookDoc
from core.room import NotebookRoom
from core.session import PeerSession, SessionHost
from sim.net.streams import memory_stream_pair
from tests.endpoint import Endpoint

NB = "/abs/nb.ipynb"


@dataclass
class Host:
    blob_store: BlobStore = field(default_factory=MemoryBlobStore)
    saves: list[NotebookRoom] = field(default_factory=list)

    async def save_room(self, room: NotebookRoom) -> tuple[Path, int, tuple[str, ...]]:
        self.saves.append(room)
        return room.path, 123, ()


@dataclass
class Rig:
    room: NotebookRoom
    host: Host
    session: PeerSession
    peer: Endpoint
    task: asyncio.Task[None]


async def _rig(room: NotebookRoom, host: Host) -> Rig:
    (cr, cw), (sr, sw) = await memory_stream_pair()
    client = Connection(Role.CLIENT)
    server = Connection(Role.SERVER)
    (handshake,) = server.receive_data(client.send(Handshake(p.OpenNotebook(NB))))
    assert isinstance(handshake, Handshake)
    sw.write(server.send(Hello(p.NotebookConnectionInfo(NB, room.doc.cell_count()))))
    host_: SessionHost = host
    session = PeerSession(host_, room, sr, sw, server, "peer-1")
    task = asyncio.create_task(session.run())
    peer = Endpoint(client, cr, cw)
    await peer.next(Hello)
    return Rig(room, host, session, peer, task)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    room = NotebookRoom(NB, Path(NB))
    room.doc.add_cells_full(0, [CellSnapshot("a", "code", "x = 1"), CellSnapshot("b", "markdown")])
    r = await _rig(room, Host())
    yield r
    r.peer.writer.close()
    await asyncio.wait_for(r.task, 30)


async def test_a_new_peer_gets_the_document_and_the_status(rig: Rig) -> None:
    doc, state = NotebookDoc.empty(), am.SyncState()
    while doc.cell_count() < 2:
        event = await rig.peer.next(SyncData)
        assert isinstance(event, SyncData)
        doc.receive_sync_message(state, event.data)
        reply = doc.generate_sync_message(state)
        if reply:
            rig.peer.send(SyncData(reply))
    assert [c.id for c in doc.get_cells()] == ["a", "b"]
    status = await rig.peer.next(StatusEvent)
    assert isinstance(status, StatusEvent) and status.message.phase == "streaming"
    assert rig.session.statistics().sync_frames_out >= 1


async def test_requests_are_answered_in_order(rig: Rig) -> None:
    rig.peer.send(RequestEvent(p.Ping(1)))
    rig.peer.send(RequestEvent(p.GetLoadStatus(2)))
    rig.peer.send(RequestEvent(p.Save(3)))
    rig.peer.send(RequestEvent(p.GetBlob(4, "0" * 64)))
    got = [await rig.peer.next(ResponseEvent) for _ in range(4)]
    messages = [e.message for e in got if isinstance(e, ResponseEvent)]
    assert messages[0] == p.Pong(1)
    assert isinstance(messages[1], p.LoadStatusResponse) and messages[1].id == 2
    assert messages[2] == p.Saved(3, NB, 123)
    assert messages[3] == p.ErrorResponse(4, f"no blob {'0' * 64}")
    assert rig.host.saves == [rig.room]
    assert rig.session.statistics().requests == 4


async def test_doc_bytes_are_the_rooms_document(rig: Rig) -> None:
    rig.peer.send(RequestEvent(p.GetDocBytes(9)))
    event = await rig.peer.next(ResponseEvent)
    assert isinstance(event, ResponseEvent) and isinstance(event.message, p.DocBytes)
    assert NotebookDoc.load(event.message.data).heads() == rig.room.doc.heads()


async def test_a_peers_edit_reaches_the_room(rig: Rig) -> None:
    doc, state = NotebookDoc.empty(), am.SyncState()
    while doc.cell_count() < 2:  # a full exchange: the server learns what the peer holds
        event = await rig.peer.next(SyncData)
        assert isinstance(event, SyncData)
        doc.receive_sync_message(state, event.data)
        reply = doc.generate_sync_message(state)
        if reply:
            rig.peer.send(SyncData(reply))
    doc.update_source("a", "x = 2")
    message = doc.generate_sync_message(state)
    assert message is not None
    rig.peer.send(SyncData(message))
    notified = rig.room.notifications
    for _ in range(100):
        if rig.room.doc.get_cells()[0].source == "x = 2":
            break
        event = await rig.peer.next(SyncData)
        assert isinstance(event, SyncData)
        doc.receive_sync_message(state, event.data)
        reply = doc.generate_sync_message(state)
        if reply:
            rig.peer.send(SyncData(reply))
    assert rig.room.doc.get_cells()[0].source == "x = 2"
    assert rig.room.notifications > notified


async def test_a_malformed_request_closes_only_this_session_in_protocol(rig: Rig) -> None:
    rig.peer.writer.write(encode_frame(FrameType.REQUEST, b"{not json"))
    event = await rig.peer.next(ClosingEvent)
    assert isinstance(event, ClosingEvent)
    assert event.message.reason in p.CLOSE_REASONS
    assert rig.session.close_reason == event.message.reason
    await asyncio.wait_for(rig.task, 30)
    assert rig.room.peer_count == 0  # unsubscribed on the way out


async def test_frames_a_client_may_not_send_are_ignored(rig: Rig) -> None:
    rig.peer.writer.write(encode_frame(FrameType.RESPONSE, p.encode_response(p.Pong(1))))
    rig.peer.send(RequestEvent(p.Ping(5)))
    event = await rig.peer.next(ResponseEvent)
    assert isinstance(event, ResponseEvent) and event.message == p.Pong(5)
    assert rig.session.alive
    assert rig.session.statistics().frames_in == 2


async def test_eof_ends_the_session_and_unsubscribes(rig: Rig) -> None:
    assert rig.room.peer_count == 1
    rig.peer.writer.write_eof()
    await asyncio.wait_for(rig.task, 30)
    assert not rig.session.alive
    assert rig.room.peer_count == 0


async def _apply(rig: Rig, doc: NotebookDoc, state: am.SyncState) -> None:
    event = await rig.peer.next(SyncData)
    assert isinstance(event, SyncData)
    doc.receive_sync_message(state, event.data)


async def test_the_next_sync_message_waits_for_the_peers_answer(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core.session, "REPLY_WAIT_S", 3600.0)  # only the answer releases it
    monkeypatch.setattr(core.session, "HOLD_MIN_BYTES", 0)  # every message counts as large
    rig.room.writing_large_source = True  # as while the loader writes a large source
    doc, state = NotebookDoc.empty(), am.SyncState()
    await _apply(rig, doc, state)  # the first message (sent before the patch); not answered
    rig.room.doc.update_source("a", "x = 9")
    rig.room.notify()
    await _apply(rig, doc, state)  # sent at once (nothing held yet); now it is in flight
    sent = rig.session.statistics().sync_frames_out
    for i in range(5):  # five edits, five wake-ups of the writer
        rig.room.doc.update_source("a", f"x = {i + 10}")
        rig.room.notify()
        for _ in range(20):
            await asyncio.sleep(0)  # every task runs its ready steps: the writer holds
    assert rig.session.statistics().sync_frames_out == sent
    while doc.cell_count() < 2 or doc.get_cells()[0].source != "x = 14":
        reply = doc.generate_sync_message(state)
        if reply:
            rig.peer.send(SyncData(reply))
        await _apply(rig, doc, state)
    # Answered, the peer got all five edits together, not five messages.
    assert rig.session.statistics().sync_frames_out <= sent + 2


async def test_a_peer_that_never_answers_still_gets_every_change(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core.session, "REPLY_WAIT_S", 0.01)
    doc, state = NotebookDoc.empty(), am.SyncState()
    while doc.cell_count() < 2:  # the first exchange (the server must learn what it holds)
        await _apply(rig, doc, state)
        reply = doc.generate_sync_message(state)
        if reply:
            rig.peer.send(SyncData(reply))
    for source in ("x = 98", "x = 99"):  # from now on the peer never answers
        rig.room.doc.update_source("a", source)
        rig.room.notify()
    while doc.get_cells()[0].source != "x = 99":
        await _apply(rig, doc, state)
    assert [c.id for c in doc.get_cells()] == ["a", "b"]


async def test_small_sync_messages_are_not_held(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core.session, "REPLY_WAIT_S", 3600.0)
    doc, state = NotebookDoc.empty(), am.SyncState()
    while doc.cell_count() < 2:  # the first exchange
        await _apply(rig, doc, state)
        reply = doc.generate_sync_message(state)
        if reply:
            rig.peer.send(SyncData(reply))
    sent = rig.session.statistics().sync_frames_out
    for i in range(3):  # small edits, never answered: each still goes out at once
        rig.room.doc.update_source("a", f"x = {i + 20}")
        rig.room.notify()
        for _ in range(20):
            await asyncio.sleep(0)  # the writer runs its ready steps
    assert rig.session.statistics().sync_frames_out >= sent + 3
    while doc.get_cells()[0].source != "x = 22":
        await _apply(rig, doc, state)
