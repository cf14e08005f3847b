"""Tests for core.connection: the I/O-free protocol of one connection, both roles.

Like tests/test_framing.py, every exchange is fed whole, one byte at a time, and followed by
trailing bytes of the next frame (which must produce nothing until they complete it).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import protocol as p
from core.connection import (
    BroadcastEvent,
    ClosingEvent,
    Connection,
    ConnectionClosed,
    Event,
    Handshake,
    Hello,
    RequestEvent,
    ResponseEvent,
    Role,
    State,
    StatusEvent,
    SyncData,
)
from core.errors import (
    HandshakeError,
    LocalProtocolError,
    MessageError,
    ProtocolError,
    TransportClosed,
    UnknownFrameType,
)
from core.framing import FrameType, encode_frame, encode_untyped

OPEN = p.OpenNotebook("/abs/nb.ipynb")
INFO = p.NotebookConnectionInfo(notebook_id="/abs/nb.ipynb", cell_count=3)
STATUS = p.LoadStatus(phase="streaming", cells_loaded=3, total_cells=9)


def pair() -> tuple[Connection, Connection]:
    return Connection(Role.CLIENT), Connection(Role.SERVER)


def received(role: Role, data: bytes, *, prime: Sequence[Event] = ()) -> list[list[Event]]:
    """The events ``data`` yields: whole, byte by byte, and with a trailing partial frame."""
    outcomes = []
    trailing = encode_frame(FrameType.SYNC, b"next")[:-1]
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))], [data + trailing]):
        conn = Connection(role)
        for event in prime:  # put a client in AWAIT_HELLO before it hears the reply
            conn.send(event)
        events: list[Event] = []
        for chunk in chunks:
            events.extend(conn.receive_data(chunk))
        if chunks[-1].endswith(trailing) and trailing:
            assert conn.buffered == len(trailing)
            with pytest.raises(TransportClosed, match="mid-frame"):
                conn.receive_data(b"")
        else:
            assert conn.buffered == 0
            assert conn.receive_data(b"") == [ConnectionClosed()]
            assert conn.peer_closed
        outcomes.append(events)
    return outcomes


# ------------------------------------------------------------------------- the server side
def test_server_reads_a_handshake_with_pipelined_sync_and_requests() -> None:
    client = Connection(Role.CLIENT)
    data = client.send(Handshake(OPEN)) + client.send(SyncData(b"\x42\x01"))
    assert client.state is State.AWAIT_HELLO
    data += encode_frame(FrameType.REQUEST, p.encode_request(p.Ping(7)))
    expected = [Handshake(OPEN), SyncData(b"\x42\x01"), RequestEvent(p.Ping(7))]
    for events in received(Role.SERVER, data):
        assert events == expected


def test_server_state_and_reply() -> None:
    client, server = pair()
    (event,) = server.receive_data(client.send(Handshake(OPEN)))
    assert isinstance(event, Handshake) and event.message == OPEN
    assert event.wire_size == len(p.encode_handshake(OPEN)) + 4
    assert server.state is State.AWAIT_HELLO
    with pytest.raises(LocalProtocolError, match="sync before the handshake is done"):
        server.send(SyncData(b"x"))
    with pytest.raises(LocalProtocolError, match="before the reply"):
        server.send(StatusEvent(STATUS))
    reply = server.send(Hello(INFO))
    assert server.state is State.OPEN
    assert client.receive_data(reply) == [Hello(INFO)]
    assert client.state is State.OPEN
    with pytest.raises(LocalProtocolError, match="cannot send a reply in open"):
        server.send(Hello(INFO))


def test_server_ignores_frames_only_a_server_may_send() -> None:
    client, server = pair()
    data = client.send(Handshake(OPEN))
    data += encode_frame(FrameType.RESPONSE, p.encode_response(p.Pong(1)))
    data += encode_frame(FrameType.SESSION_CONTROL, p.encode_session_control(STATUS))
    data += encode_frame(FrameType.BROADCAST, p.encode_broadcast({"event": "note"}))
    data += encode_frame(FrameType.SYNC, b"s")
    assert server.receive_data(data) == [Handshake(OPEN), SyncData(b"s")]
    stats = server.statistics()
    assert (stats.frames_in, stats.ignored_frames, stats.bytes_in) == (5, 3, len(data))
    assert stats.events_in == {"Handshake": 1, "SyncData": 1}


def test_a_refusal_may_precede_any_valid_handshake() -> None:
    server = Connection(Role.SERVER)
    with pytest.raises(HandshakeError):
        server.receive_data(encode_untyped(b"not a handshake"))
    refusal = p.NotebookConnectionInfo(notebook_id="", cell_count=0, error="bad handshake")
    data = server.send(Hello(refusal))
    assert server.state is State.CLOSED
    with pytest.raises(LocalProtocolError, match="connection closed"):
        server.send(SyncData(b"x"))
    client = Connection(Role.CLIENT)
    client.send(Handshake(OPEN))
    assert client.receive_data(data) == [Hello(refusal)]
    assert client.state is State.CLOSED
    with pytest.raises(LocalProtocolError, match="connection closed"):
        client.send(RequestEvent(p.Ping(1)))


def test_a_reply_without_an_error_needs_a_handshake_first() -> None:
    with pytest.raises(LocalProtocolError, match="cannot send a reply in await_handshake"):
        Connection(Role.SERVER).send(Hello(INFO))


# ------------------------------------------------------------------------- the client side
def test_client_reads_everything_a_server_sends() -> None:
    server = Connection(Role.SERVER)
    server.receive_data(Connection(Role.CLIENT).send(Handshake(OPEN)))
    closing = p.Closing("frame_too_large", "too big")
    data = b"".join(
        server.send(event)
        for event in (
            Hello(INFO),
            SyncData(b"\x00\x01"),
            StatusEvent(STATUS),
            ResponseEvent(p.Pong(3)),
            BroadcastEvent({"event": "note"}),
            ClosingEvent(closing),
        )
    )
    expected = [
        Hello(INFO),
        SyncData(b"\x00\x01"),
        StatusEvent(STATUS),
        ResponseEvent(p.Pong(3)),
        BroadcastEvent({"event": "note"}),
        ClosingEvent(closing),
    ]
    for events in received(Role.CLIENT, data, prime=[Handshake(OPEN)]):
        assert events == expected
        assert [e.kind for e in events[1:]] == [
            "sync",
            "session_control",
            "response",
            "broadcast",
            "session_control",
        ]
        assert events[1].wire_size == 2 + 5


def test_client_rejects_a_request_from_the_server() -> None:
    client = Connection(Role.CLIENT)
    client.send(Handshake(OPEN))
    server = Connection(Role.SERVER)
    server.receive_data(Connection(Role.CLIENT).send(Handshake(OPEN)))
    data = server.send(Hello(INFO)) + encode_frame(FrameType.REQUEST, p.encode_request(p.Ping(1)))
    with pytest.raises(MessageError, match="unexpected REQUEST frame from the server"):
        client.receive_data(data)


def test_client_state_rules() -> None:
    client = Connection(Role.CLIENT)
    with pytest.raises(LocalProtocolError, match="sync before the handshake"):
        client.send(SyncData(b"x"))
    with pytest.raises(LocalProtocolError, match="reply before sending a handshake"):
        refusal = p.NotebookConnectionInfo("", 0, "e")
        client.receive_data(Connection(Role.SERVER).send(Hello(refusal)))
    client = Connection(Role.CLIENT)
    client.send(Handshake(OPEN))
    with pytest.raises(LocalProtocolError, match="cannot send a handshake"):
        client.send(Handshake(OPEN))
    client.send(SyncData(b"pipelined"))  # allowed before the reply
    with pytest.raises(LocalProtocolError, match="request before the reply"):
        client.send(RequestEvent(p.Ping(1)))
    for event in (StatusEvent(STATUS), ResponseEvent(p.Pong(1)), Hello(INFO)):
        with pytest.raises(LocalProtocolError):
            client.send(event)
    with pytest.raises(LocalProtocolError, match="never sent"):
        client.send(ConnectionClosed())


def test_bad_frames_raise_the_codecs_errors() -> None:
    client, server = pair()
    server.receive_data(client.send(Handshake(OPEN)))
    with pytest.raises(UnknownFrameType):
        server.receive_data(b"\x00\x00\x00\x02\x09x")
    server = Connection(Role.SERVER)
    server.receive_data(Connection(Role.CLIENT).send(Handshake(OPEN)))
    with pytest.raises(ProtocolError):
        server.receive_data(encode_frame(FrameType.REQUEST, b"{not json"))


def test_counters_count_both_directions() -> None:
    client, server = pair()
    out = client.send(Handshake(OPEN)) + client.send(SyncData(b"abc"))
    server.receive_data(out)
    back = server.send(Hello(INFO)) + server.send(SyncData(b"de"))
    client.receive_data(back)
    c, s = client.statistics(), server.statistics()
    assert (c.frames_out, c.bytes_out, s.frames_in, s.bytes_in) == (2, len(out), 2, len(out))
    assert (s.frames_out, s.bytes_out, c.frames_in, c.bytes_in) == (2, len(back), 2, len(back))
    assert c.events_out == {"Handshake": 1, "SyncData": 1}
    assert s.events_out == {"Hello": 1, "SyncData": 1}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=40), max_size=6),
    st.data(),
)
def test_any_split_yields_the_same_events(payloads: list[bytes], data: st.DataObject) -> None:
    client = Connection(Role.CLIENT)
    stream = client.send(Handshake(OPEN)) + b"".join(client.send(SyncData(x)) for x in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    server = Connection(Role.SERVER)
    events: list[Event] = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        if b > a:
            events.extend(server.receive_data(stream[a:b]))
    assert events == [Handshake(OPEN), *(SyncData(x) for x in payloads)]


def test_the_module_is_free_of_io() -> None:
    code = textwrap.dedent(
        """
        import sys
        import core.connection
        bad = [m for m in ("asyncio", "socket", "automerge", "selectors") if m in sys.modules]
        print(",".join(bad))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
