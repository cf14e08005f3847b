"""Bounded in-memory duplex streams for asyncio: the simulator's network.

``await memory_stream_pair(capacity)`` returns two connected endpoints, each a REAL
``(asyncio.StreamReader, asyncio.StreamWriter)`` pair, so code written against asyncio streams
(an ``asyncio.start_unix_server`` callback, ``asyncio.open_connection`` clients) runs over it
unchanged. It plays the part of tokio's ``duplex(cap)`` / trio's ``memory_stream_pair()``: two
one-way :class:`MemoryPipe` s (A→B and B→A), each with swappable :class:`StreamHooks` that inject
chunking, latency, stalls and drops, and deterministic :class:`StreamStatistics`.

How it is wired (the standard asyncio protocol dance, as ``asyncio.open_connection`` does it):
each endpoint has one :class:`MemoryTransport` (an ``asyncio.Transport``, like a socket transport),
an ``asyncio.StreamReaderProtocol`` and ``StreamWriter(transport, protocol, reader, loop)``.
``transport.write()`` appends to the outgoing pipe; a pump (``loop.call_soon``, one delivery per
loop iteration) hands the bytes to the peer protocol's ``data_received()``. Flow control is
asyncio's own: the peer ``StreamReader`` calls ``pause_reading()`` on its transport once its
buffer exceeds ``2 * limit`` (the pump stops) and ``resume_reading()`` once it drains to
``limit``; the writer's transport calls ``protocol.pause_writing()`` when the pipe's in-flight
bytes exceed ``capacity`` (``drain()`` then blocks) and ``resume_writing()`` at ``capacity // 4``
(asyncio's high/low-water convention; ``set_write_buffer_limits()`` adjusts both).

Backpressure bound. Per direction, "unread" = bytes in flight + bytes in the receiving
``StreamReader``'s buffer. For a writer that awaits ``drain()`` after each ``write()``::

    unread <= capacity + largest_write + 3 * limit     (limit defaults to capacity // 2,
                                                        i.e. <= 2.5 * capacity + largest_write)

because in flight stays <= ``capacity`` before a write, deliveries are at most ``limit`` bytes,
and the reader pauses the pump once it holds more than ``2 * limit``. ``drain()`` blocks as soon
as in flight exceeds ``capacity``, and resumes when the peer reads. (A peer blocked in
``readexactly(n)``/``readuntil()`` resumes reading until it has what it asked for, so it may
hold up to ``n`` bytes, exactly as over a socket.)

Socket-like behaviours (each mirrors asyncio over a real socket):

* ``write()`` never blocks and never raises for a lost connection: after ``close()``, ``abort()``
  or a reset the bytes are silently dropped (as ``_SelectorSocketTransport`` does); the failure
  surfaces in ``await drain()``, which raises ``ConnectionResetError``. ``write()`` after
  ``write_eof()`` raises ``RuntimeError``.
* ``write_eof()`` half-closes: the peer reads the queued bytes, then EOF; it may still write back.
* ``close()`` is graceful: queued bytes (and then EOF) still reach the peer even if it is slow or
  stalled (the pipe plays the kernel's buffers), while this side's ``connection_lost(None)`` runs
  on the next loop iteration (``wait_closed()`` returns). This side reads nothing more: bytes that
  arrive for it afterwards (or were in flight) are discarded and, like TCP answering with RST, the
  sending side is reset once it has read this side's EOF.
* ``abort()``: this endpoint vanishes. Its unsent bytes are discarded, its own protocol gets
  ``connection_lost(None)``, and the peer is reset.
* A reset (``close_abruptly()`` on the pair or a transport, the peer's ``abort()``, or the
  ``drop_after`` hook) gives the affected side ``connection_lost(ConnectionResetError())`` with
  errno ``ECONNRESET``: its reader raises ``ConnectionResetError``; ``drain()`` and
  ``wait_closed()`` raise it too.
  As with a real asyncio socket, ``StreamReader`` raises its exception before returning bytes
  still sitting unread in its buffer; the reset is scheduled after the final delivery's reader
  wake-up, so a reader waiting in ``read()`` gets every byte delivered before the cutoff.
* ``get_extra_info("sockname")`` / ``("peername")`` are ``"memory-a"`` / ``"memory-b"``
  (``name`` prefix configurable); ``"socket"`` is ``None``.

``socketpair_streams()`` gives the same endpoint shape over ``socket.socketpair(AF_UNIX)`` for the
``--transport socketpair`` mode. Everything runs on the calling loop; nothing is global, so pairs
in different event loops (``asyncio.run`` twice) never share state.

This module holds the endpoint transport and the pair factories; the one-way pipe
(:class:`MemoryPipe`, :class:`StreamHooks`, :class:`StreamStatistics`) lives in
:mod:`sim.net.pipe` and is re-exported here.
"""

from __future__ import annotations

import asyncio
import socket
from typing import NamedTuple, TypeAlias

from sim.net.pipe import MemoryPipe, StreamHooks, StreamStatistics, _reset_error

__all__ = [
    "DEFAULT_CAPACITY",
    "MemoryPipe",
    "MemoryStreamPair",
    "MemoryTransport",
    "StreamEndpoint",
    "StreamHooks",
    "StreamStatistics",
    "memory_stream_pair",
    "memory_transport_of",
    "socketpair_streams",
]

DEFAULT_CAPACITY = 64 * 1024

StreamEndpoint: TypeAlias = tuple[asyncio.StreamReader, asyncio.StreamWriter]
"""One side of a connection: a real ``StreamReader`` and ``StreamWriter``."""


# --------------------------------------------------------------------------- one endpoint
class MemoryTransport(asyncio.Transport):
    """One endpoint's transport (like a socket transport): writes go out, reads come in."""

    _peer: MemoryTransport

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        outgoing: MemoryPipe,
        incoming: MemoryPipe,
        *,
        sockname: str,
        peername: str,
    ) -> None:
        super().__init__({"sockname": sockname, "peername": peername, "socket": None})
        self._loop = loop
        self._sockname = sockname
        self._outgoing = outgoing
        self._incoming = incoming
        outgoing._sender = self
        incoming._receiver = self
        self._protocol: asyncio.Protocol | None = None
        self._reader: asyncio.StreamReader | None = None
        self._closing = False
        self._conn_lost = False
        self._eof_written = False
        self._reading_paused = False
        self._protocol_paused = False

    def __repr__(self) -> str:
        state = "closed" if self._conn_lost else "closing" if self._closing else "open"
        return f"<MemoryTransport {self._sockname} {state} in_flight={self._outgoing._in_flight}>"

    @property
    def outgoing(self) -> MemoryPipe:
        return self._outgoing

    @property
    def incoming(self) -> MemoryPipe:
        return self._incoming

    # ----------------------------------------------------------------- BaseTransport
    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        if not isinstance(protocol, asyncio.Protocol):
            raise TypeError(f"MemoryTransport needs an asyncio.Protocol, not {protocol!r}")
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Graceful close: queued bytes then EOF still reach the peer; we stop reading."""
        if self._closing:
            return
        self._closing = True
        if not self._eof_written:
            self._outgoing._push_eof()
        self._incoming._schedule_pump()  # discard what is in flight to us (resets the peer)
        self._schedule_connection_lost(None)

    # ----------------------------------------------------------------- ReadTransport
    def is_reading(self) -> bool:
        return not self._closing and not self._reading_paused

    def pause_reading(self) -> None:
        if self.is_reading():
            self._reading_paused = True

    def resume_reading(self) -> None:
        if self._closing or not self._reading_paused:
            return
        self._reading_paused = False
        self._incoming._schedule_pump()

    # ----------------------------------------------------------------- WriteTransport
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be a bytes-like object, not {type(data).__name__!r}")
        if self._eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data or self._closing:
            return  # like asyncio's socket transport: writes to a lost connection are dropped
        self._outgoing._push(bytes(data))

    def write_eof(self) -> None:
        if self._closing or self._eof_written:
            return
        self._eof_written = True
        self._outgoing._push_eof()

    def can_write_eof(self) -> bool:
        return True

    def abort(self) -> None:
        """This endpoint vanishes: unsent bytes are discarded and the peer is reset."""
        self._lose(None)
        self._peer._lose(_reset_error())

    def close_abruptly(self) -> None:
        """The network drops the connection: both endpoints see ``ConnectionResetError``."""
        self._network_reset()

    def get_write_buffer_size(self) -> int:
        return self._outgoing._in_flight

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._outgoing._low, self._outgoing._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = self._outgoing._capacity if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._outgoing._high = high
        self._outgoing._low = low
        self._maybe_pause_protocol()
        self._maybe_resume_protocol()

    # ----------------------------------------------------------------- internals
    def _maybe_pause_protocol(self) -> None:
        pipe = self._outgoing
        if self._conn_lost or self._protocol_paused or pipe._in_flight <= pipe._high:
            return
        self._protocol_paused = True
        pipe._writer_pauses += 1
        assert self._protocol is not None
        self._protocol.pause_writing()

    def _maybe_resume_protocol(self) -> None:
        if not self._protocol_paused or self._outgoing._in_flight > self._outgoing._low:
            return
        self._protocol_paused = False
        if not self._conn_lost and self._protocol is not None:
            self._protocol.resume_writing()

    def _unread_in_reader(self) -> int:
        # Statistics only: asyncio exposes no public count of a StreamReader's buffered bytes.
        buffer = getattr(self._reader, "_buffer", None)
        size: int = len(buffer) if buffer is not None else 0
        return size

    def _deliver_data(self, data: bytes) -> None:
        assert self._protocol is not None
        self._protocol.data_received(data)

    def _deliver_eof(self) -> None:
        assert self._protocol is not None
        if not self._protocol.eof_received():
            self.close()

    def _reset_after_incoming_eof(self) -> None:
        """Our peer closed and discarded our bytes: reset us once we have read its EOF."""
        if self._incoming._eof_delivered or self._incoming._dead:
            self._lose(_reset_error())
        else:
            self._incoming._reset_receiver_after_eof = True

    def _network_reset(self) -> None:
        self._lose(_reset_error())
        self._peer._lose(_reset_error())

    def _lose(self, exc: Exception | None) -> None:
        """Stop both directions of this endpoint now; ``connection_lost(exc)`` runs next."""
        self._outgoing._kill()
        self._incoming._kill()
        self._closing = True
        self._schedule_connection_lost(exc)

    def _schedule_connection_lost(self, exc: Exception | None) -> None:
        if self._conn_lost:
            return
        self._conn_lost = True
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: Exception | None) -> None:
        protocol = self._protocol
        self._reader = None
        if protocol is not None:
            protocol.connection_lost(exc)


# --------------------------------------------------------------------------- factories
class MemoryStreamPair(NamedTuple):
    """``((reader_a, writer_a), (reader_b, writer_b))`` plus access to the two pipes."""

    a: StreamEndpoint
    b: StreamEndpoint

    @property
    def transport_a(self) -> MemoryTransport:
        return memory_transport_of(self.a[1])

    @property
    def transport_b(self) -> MemoryTransport:
        return memory_transport_of(self.b[1])

    @property
    def a_to_b(self) -> MemoryPipe:
        return self.transport_a.outgoing

    @property
    def b_to_a(self) -> MemoryPipe:
        return self.transport_a.incoming

    def close_abruptly(self) -> None:
        """The network drops the connection: both sides see ``ConnectionResetError``."""
        self.transport_a.close_abruptly()


def memory_transport_of(writer: asyncio.StreamWriter) -> MemoryTransport:
    """The :class:`MemoryTransport` under a writer from :func:`memory_stream_pair`."""
    transport = writer.transport
    if not isinstance(transport, MemoryTransport):
        raise TypeError(f"not a memory stream: {transport!r}")
    return transport


async def memory_stream_pair(
    capacity: int = DEFAULT_CAPACITY,
    *,
    limit: int | None = None,
    hooks_a_to_b: StreamHooks | None = None,
    hooks_b_to_a: StreamHooks | None = None,
    name: str = "memory",
) -> MemoryStreamPair:
    """Open a connected pair of in-memory stream endpoints on the running loop.

    Async only so that it is always called inside the loop it binds to (it never blocks).

    Args:
        capacity: per-direction in-flight high-water mark in bytes (``>= 1``).
        limit: each ``StreamReader``'s ``limit`` (readline/readuntil cap; the reader pauses the
            pump above ``2 * limit``); default ``max(1, capacity // 2)``.
        hooks_a_to_b, hooks_b_to_a: fault injection per direction (fresh defaults if None;
            one object may be shared by both directions).
        name: prefix of ``sockname``/``peername`` (``f"{name}-a"``, ``f"{name}-b"``).

    Returns:
        ``MemoryStreamPair(a=(reader, writer), b=(reader, writer))``, a 2-tuple of 2-tuples.
    """
    loop = asyncio.get_running_loop()
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, not {capacity!r}")
    if limit is None:
        limit = max(1, capacity // 2)
    elif limit < 1:
        raise ValueError(f"limit must be >= 1, not {limit!r}")
    if hooks_a_to_b is None:
        hooks_a_to_b = StreamHooks()
    if hooks_b_to_a is None:
        hooks_b_to_a = StreamHooks()
    a_to_b = MemoryPipe(loop, hooks_a_to_b, capacity, limit)
    b_to_a = MemoryPipe(loop, hooks_b_to_a, capacity, limit)
    ta = MemoryTransport(loop, a_to_b, b_to_a, sockname=f"{name}-a", peername=f"{name}-b")
    tb = MemoryTransport(loop, b_to_a, a_to_b, sockname=f"{name}-b", peername=f"{name}-a")
    ta._peer = tb
    tb._peer = ta
    return MemoryStreamPair(_open_endpoint(loop, ta, limit), _open_endpoint(loop, tb, limit))


def _open_endpoint(
    loop: asyncio.AbstractEventLoop, transport: MemoryTransport, limit: int
) -> StreamEndpoint:
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport.set_protocol(protocol)
    transport._reader = reader
    protocol.connection_made(transport)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def socketpair_streams(
    limit: int = 2**16, *, sndbuf: int | None = None, rcvbuf: int | None = None
) -> tuple[StreamEndpoint, StreamEndpoint]:
    """Two connected endpoints over ``socket.socketpair(AF_UNIX)`` and real socket transports.

    ``sndbuf``/``rcvbuf`` set ``SO_SNDBUF``/``SO_RCVBUF`` on both sockets (the kernel may round
    them); asyncio's own 64 KiB transport write buffer sits on top of the kernel's buffers.
    """
    sockets = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    endpoints: list[StreamEndpoint] = []
    try:
        for sock in sockets:
            if sndbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            if rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        for sock in sockets:
            endpoints.append(await asyncio.open_connection(sock=sock, limit=limit))
    except BaseException:
        for _, writer in endpoints:
            writer.close()
        for sock in sockets[len(endpoints) :]:
            sock.close()
        raise
    return endpoints[0], endpoints[1]
