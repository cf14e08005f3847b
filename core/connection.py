"""The protocol of one connection, with no I/O: bytes in, events out; events in, bytes out.

In the style of h11's ``Connection``: a :class:`Connection` has a :class:`Role` (the client
that opens a notebook, or the server that answers), is fed whatever bytes arrived with
:meth:`Connection.receive_data` (``b""`` means the peer closed its side) and returns the typed
events those bytes complete, in order; :meth:`Connection.send` turns an event into the bytes
to write. It tracks the protocol state and refuses what PROTOCOL.md forbids, with the same
errors the codec and the message parsers raise (:mod:`core.errors`). No asyncio, no socket, no
document: the daemon's session, :class:`core.client.NotebookClient` and the simulated peers do
the I/O and the document work around it.

States, per role::

    client: IDLE --send(Handshake)--> AWAIT_HELLO --receive Hello--> OPEN
                                          (SyncData may be pipelined in AWAIT_HELLO)
    server: AWAIT_HANDSHAKE --receive Handshake--> AWAIT_HELLO --send(Hello)--> OPEN
                                  (frames pipelined after the handshake are events already)

A ``Hello`` carrying an error moves both sides to CLOSED (nothing more may be sent); a server
may send such a refusal before any valid handshake arrived. ``receive_data(b"")`` returns
:class:`ConnectionClosed` and sets ``peer_closed``: the other side ended its stream (a
half-close; this side may still send). Client-to-server frames other
than sync and requests are ignored by the server (counted in ``ignored_frames``), as PROTOCOL.md
says; a request, or a second untyped frame, sent by a server is a protocol error at the client.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

from core import protocol as p
from core.errors import LocalProtocolError, MessageError
from core.framing import (
    DATA_MAX_SIZE,
    Frame,
    FrameDecoder,
    FrameType,
    encode_frame,
    encode_untyped,
    frame_header_size,
)

__all__ = [
    "BroadcastEvent",
    "ClosingEvent",
    "Connection",
    "ConnectionClosed",
    "ConnectionStatistics",
    "Event",
    "Handshake",
    "Hello",
    "RequestEvent",
    "ResponseEvent",
    "Role",
    "State",
    "StatusEvent",
    "SyncData",
]


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    IDLE = "idle"  # client: nothing sent yet
    AWAIT_HANDSHAKE = "await_handshake"  # server: nothing received yet
    AWAIT_HELLO = "await_hello"  # handshake sent (client) / received (server), no reply yet
    OPEN = "open"
    CLOSED = "closed"


# ------------------------------------------------------------------------------------ events
@dataclass(frozen=True, slots=True)
class Handshake:
    """Client → server, the first frame (untyped): open this notebook."""

    message: p.OpenNotebook
    kind: ClassVar[str] = "raw"
    wire_size: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Hello:
    """Server → client, the first frame (untyped): the handshake's reply (maybe an error)."""

    message: p.NotebookConnectionInfo
    kind: ClassVar[str] = "raw"
    wire_size: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class SyncData:
    """Either way: one Automerge sync message (opaque bytes)."""

    data: bytes
    kind: ClassVar[str] = "sync"
    wire_size: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """Client → server: a request (answered by a response with its id)."""

    message: p.Request
    kind: ClassVar[str] = "request"
    wire_size: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ResponseEvent:
    """Server → client: the response to a request."""

    message: p.Response
    kind: ClassVar[str] = "response"
    wire_size: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """Server → client (session control): the load status of the notebook."""

    message: p.LoadStatus
    kind: ClassVar[str] = "session_control"
    wire_size: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ClosingEvent:
    """Server → client (session control): the server is closing this connection, and why."""

    message: p.Closing
    kind: ClassVar[str] = "session_control"
    wire_size: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class BroadcastEvent:
    """Server → client: a broadcast to the room (a JSON object)."""

    message: dict[str, Any]
    kind: ClassVar[str] = "broadcast"
    wire_size: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its side at a frame boundary (``receive_data(b"")``)."""

    kind: ClassVar[str] = "eof"
    wire_size: int = field(default=0, compare=False)


Event: TypeAlias = (
    Handshake
    | Hello
    | SyncData
    | RequestEvent
    | ResponseEvent
    | StatusEvent
    | ClosingEvent
    | BroadcastEvent
    | ConnectionClosed
)


@dataclass(frozen=True, slots=True)
class ConnectionStatistics:
    frames_in: int
    bytes_in: int
    frames_out: int
    bytes_out: int
    ignored_frames: int
    events_in: dict[str, int]  # event class name -> count
    events_out: dict[str, int]


# -------------------------------------------------------------------------------- connection
class Connection:
    """One end of one connection. See the module docstring for the states and events."""

    def __init__(
        self,
        role: Role,
        *,
        max_frame_size: int = DATA_MAX_SIZE,
        max_sync_size: int | None = None,
    ) -> None:
        """``max_sync_size``: the largest SYNC body accepted from the peer (None: the frame cap)."""
        self.role = role
        self.state = State.IDLE if role is Role.CLIENT else State.AWAIT_HANDSHAKE
        self.peer_closed = False  # the peer ended its side of the stream
        self._decoder = FrameDecoder(
            untyped_first=True, max_frame_size=max_frame_size, max_sync_size=max_sync_size
        )
        self._max_frame_size = max_frame_size
        self._bytes_in = 0
        self._frames_out = 0
        self._bytes_out = 0
        self._ignored = 0
        self._in: Counter[str] = Counter()
        self._out: Counter[str] = Counter()

    # ------------------------------------------------------------------ receiving
    def receive_data(self, data: bytes) -> list[Event]:
        """Feed received bytes; return the events they complete (``b""``: end of stream).

        Raises the codec's and the parsers' :class:`~core.errors.ProtocolError` subclasses
        (the connection should then be closed) and :class:`~core.errors.TransportClosed` when
        the stream ends inside a frame.
        """
        if not data:
            self._decoder.eof()
            self.peer_closed = True  # a half-close: we may still send (a refusal, a closing)
            self._in["ConnectionClosed"] += 1
            return [ConnectionClosed()]
        self._bytes_in += len(data)
        events: list[Event] = []
        for frame in self._decoder.feed(data):
            event = self._event(frame)
            if event is None:
                self._ignored += 1
                continue
            self._in[type(event).__name__] += 1
            events.append(event)
        return events

    def _event(self, frame: Frame) -> Event | None:
        size = len(frame.payload) + frame_header_size + (frame.type is not None)
        if frame.type is None:  # only ever the first frame (the decoder guarantees it)
            if self.role is Role.SERVER:
                self.state = State.AWAIT_HELLO
                return Handshake(p.parse_handshake(frame.payload), wire_size=size)
            if self.state is State.IDLE:
                raise LocalProtocolError("received the server's reply before sending a handshake")
            info = p.parse_connection_info(frame.payload)
            self.state = State.CLOSED if info.error is not None else State.OPEN
            return Hello(info, wire_size=size)
        if frame.type is FrameType.SYNC:
            return SyncData(frame.payload, wire_size=size)
        if self.role is Role.SERVER:
            if frame.type is FrameType.REQUEST:
                return RequestEvent(p.parse_request(frame.payload), wire_size=size)
            return None  # responses, broadcasts, session control: server → client only
        if frame.type is FrameType.RESPONSE:
            return ResponseEvent(p.parse_response(frame.payload), wire_size=size)
        if frame.type is FrameType.BLOB:
            return ResponseEvent(p.parse_blob(frame.payload), wire_size=size)
        if frame.type is FrameType.SESSION_CONTROL:
            message = p.parse_session_control(frame.payload)
            if isinstance(message, p.LoadStatus):
                return StatusEvent(message, wire_size=size)
            return ClosingEvent(message, wire_size=size)
        if frame.type is FrameType.BROADCAST:
            return BroadcastEvent(p.parse_broadcast(frame.payload), wire_size=size)
        raise MessageError(
            f"unexpected {frame.type.name} frame from the server ({len(frame.payload)} B): "
            "requests go client to server only"
        )

    # ------------------------------------------------------------------ sending
    def send(self, event: Event) -> bytes:
        """The bytes that carry ``event`` (raises LocalProtocolError if it is not allowed now)."""
        data = self._encode(event)
        self._frames_out += 1
        self._bytes_out += len(data)
        self._out[type(event).__name__] += 1
        return data

    def _encode(self, event: Event) -> bytes:
        role, state = self.role, self.state
        if isinstance(event, Handshake):
            if role is not Role.CLIENT or state is not State.IDLE:
                raise LocalProtocolError(f"a {role.value} cannot send a handshake in {state.value}")
            self.state = State.AWAIT_HELLO
            return encode_untyped(p.encode_handshake(event.message))
        if isinstance(event, Hello):
            # A refusal may go out before any valid handshake arrived (a garbled or late one).
            refusal = event.message.error is not None and state is State.AWAIT_HANDSHAKE
            if role is not Role.SERVER or not (state is State.AWAIT_HELLO or refusal):
                raise LocalProtocolError(f"a {role.value} cannot send a reply in {state.value}")
            self.state = State.CLOSED if event.message.error is not None else State.OPEN
            return encode_untyped(p.encode_connection_info(event.message))
        if isinstance(event, ConnectionClosed):
            raise LocalProtocolError("ConnectionClosed is received, never sent")
        if state is State.CLOSED:
            raise LocalProtocolError(f"cannot send {type(event).__name__}: connection closed")
        if isinstance(event, SyncData):
            if state is State.IDLE or (role is Role.SERVER and state is not State.OPEN):
                raise LocalProtocolError(f"sync before the handshake is done ({state.value})")
            return encode_frame(FrameType.SYNC, event.data, max_size=self._max_frame_size)
        if role is Role.CLIENT:
            if not isinstance(event, RequestEvent):
                raise LocalProtocolError(f"a client cannot send {type(event).__name__}")
            if state is not State.OPEN:
                raise LocalProtocolError(
                    f"request before the reply to the handshake ({state.value})"
                )
            return encode_frame(FrameType.REQUEST, p.encode_request(event.message))
        if state is not State.OPEN:
            raise LocalProtocolError(f"{type(event).__name__} before the reply ({state.value})")
        if isinstance(event, ResponseEvent) and isinstance(event.message, p.Blob):
            return encode_frame(
                FrameType.BLOB, p.encode_blob(event.message), max_size=self._max_frame_size
            )
        if isinstance(event, ResponseEvent):
            return encode_frame(
                FrameType.RESPONSE, p.encode_response(event.message), max_size=self._max_frame_size
            )
        if isinstance(event, (StatusEvent, ClosingEvent)):
            return encode_frame(FrameType.SESSION_CONTROL, p.encode_session_control(event.message))
        if isinstance(event, BroadcastEvent):
            return encode_frame(FrameType.BROADCAST, p.encode_broadcast(event.message))
        raise LocalProtocolError(f"a server cannot send {type(event).__name__}")

    # ------------------------------------------------------------------ counters
    @property
    def buffered(self) -> int:
        """Bytes received that do not yet complete a frame."""
        return self._decoder.buffered

    def statistics(self) -> ConnectionStatistics:
        decoded = self._decoder.statistics()
        return ConnectionStatistics(
            frames_in=decoded.frames,
            bytes_in=self._bytes_in,
            frames_out=self._frames_out,
            bytes_out=self._bytes_out,
            ignored_frames=self._ignored,
            events_in=dict(self._in),
            events_out=dict(self._out),
        )
