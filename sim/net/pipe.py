"""One direction of a memory stream pair: :class:`MemoryPipe`, its hooks and its statistics.

:class:`MemoryPipe` is the network between one sender and one receiver: it queues written bytes
as segments (``_Segment``, delayed by the ``latency`` hook), pumps at most one piece per loop
iteration into the receiving protocol, and counts what it carries (:class:`StreamStatistics`).
:class:`StreamHooks` inject chunking, latency, stalls and drops. The endpoints and the pair
factories that wire two pipes together live in :mod:`sim.net.streams`, which re-exports these names.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import math
import weakref
from dataclasses import dataclass, field
from typing import Any, Protocol


class PipeEnd(Protocol):
    """What a pipe needs of the transports at its two ends (``sim.net.streams.MemoryTransport``
    is the one implementation; declared here so the pipe never imports the streams module)."""

    _sockname: str
    _closing: bool
    _reading_paused: bool

    def _unread_in_reader(self) -> int: ...
    def _maybe_pause_protocol(self) -> None: ...
    def _maybe_resume_protocol(self) -> None: ...
    def _deliver_data(self, data: bytes) -> None: ...
    def _deliver_eof(self) -> None: ...
    def _reset_after_incoming_eof(self) -> None: ...
    def _network_reset(self) -> None: ...
    def _lose(self, exc: Exception | None) -> None: ...


__all__ = ["MemoryPipe", "StreamHooks", "StreamStatistics"]


def _reset_error() -> ConnectionResetError:
    return ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")


# --------------------------------------------------------------------------- hooks and statistics
@dataclass(eq=False)
class StreamHooks:
    """Fault injection for one direction; plain attributes a test may change at any time.

    Assigning any attribute (or calling :meth:`set_stalled`) re-runs the pumps of the pipes using
    these hooks on their next loop iteration. Mutate only from the event loop's thread.
    """

    max_chunk: int | None = None
    """Most bytes handed to the reader per delivery (one delivery per loop iteration)."""
    latency: float = 0.0
    """Seconds (``loop.call_later``) before each write's bytes become deliverable. Order is
    kept: a write never overtakes an earlier one, even if ``latency`` is lowered meanwhile."""
    stalled: bool = False
    """While true, nothing (data or EOF) is delivered; writes still queue up to backpressure."""
    drop_after: int | None = None
    """Reset the whole connection once this many bytes have been delivered in this direction:
    the reader gets exactly that prefix, then ``ConnectionResetError``; both sides are reset."""
    _pipes: weakref.WeakSet[MemoryPipe] = field(
        default_factory=weakref.WeakSet, init=False, repr=False, compare=False
    )

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            _validate_hook(name, value)
        super().__setattr__(name, value)
        if not name.startswith("_"):
            self.kick()

    def set_stalled(self, stalled: bool) -> None:
        """Stop (``True``) or resume (``False``) delivery; resuming restarts the pump."""
        self.stalled = stalled

    def kick(self) -> None:
        """Re-evaluate the hooks now (delivery resumes on the next loop iteration)."""
        pipes: weakref.WeakSet[MemoryPipe] | None = self.__dict__.get("_pipes")
        for pipe in list(pipes or ()):
            pipe._schedule_pump()


def _validate_hook(name: str, value: Any) -> None:
    if name in ("max_chunk", "drop_after"):
        minimum = 1 if name == "max_chunk" else 0
        if value is not None and (not isinstance(value, int) or value < minimum):
            raise ValueError(f"{name} must be None or an int >= {minimum}, not {value!r}")
    elif name == "latency":
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"latency must be a finite number >= 0, not {value!r}")
    elif name == "stalled" and not isinstance(value, bool):
        raise ValueError(f"stalled must be a bool, not {value!r}")


@dataclass(frozen=True, slots=True)
class StreamStatistics:
    """Deterministic counters of one direction (see :meth:`MemoryPipe.statistics`)."""

    bytes_written: int
    """Bytes accepted by ``write()`` into this direction."""
    bytes_delivered: int
    """Bytes handed to the receiving protocol (``data_received``)."""
    bytes_discarded: int
    """Bytes dropped in flight: by a reset/abort, or because the receiver had closed."""
    in_flight: int
    """Written but not yet delivered now (the writer transport's ``get_write_buffer_size()``)."""
    max_in_flight: int
    max_unread: int
    """Largest in flight + bytes unread in the receiving ``StreamReader``, sampled at writes."""
    writer_pauses: int
    """How many times the writer's protocol was paused (``drain()`` would block)."""
    eof_delivered: bool


# --------------------------------------------------------------------------- one direction
class _Segment:
    __slots__ = ("data", "eof", "offset", "ready", "timer")

    def __init__(self, data: bytes, *, eof: bool = False) -> None:
        self.data = data
        self.eof = eof
        self.offset = 0
        self.ready = True
        self.timer: asyncio.TimerHandle | None = None


class MemoryPipe:
    """One direction of a memory stream pair: the network between a sender and a receiver.

    Obtain it from :attr:`MemoryStreamPair.a_to_b` / ``b_to_a`` or ``transport.outgoing``.
    """

    _sender: PipeEnd
    _receiver: PipeEnd

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        hooks: StreamHooks,
        capacity: int,
        reader_limit: int,
    ) -> None:
        self._loop = loop
        self._hooks = hooks
        self._capacity = capacity
        self._high = capacity
        self._low = capacity // 4
        self._reader_limit = reader_limit
        self._segments: collections.deque[_Segment] = collections.deque()
        self._in_flight = 0
        self._pump_handle: asyncio.Handle | None = None
        self._dead = False
        self._eof_queued = False
        self._eof_delivered = False
        self._reset_receiver_after_eof = False
        self._bytes_written = 0
        self._bytes_delivered = 0
        self._bytes_discarded = 0
        self._max_in_flight = 0
        self._max_unread = 0
        self._writer_pauses = 0
        hooks._pipes.add(self)

    def __repr__(self) -> str:
        name = f"{self._sender._sockname}->{self._receiver._sockname}"
        return f"<MemoryPipe {name} in_flight={self._in_flight} dead={self._dead}>"

    @property
    def hooks(self) -> StreamHooks:
        return self._hooks

    @property
    def capacity(self) -> int:
        """In-flight high-water mark: ``drain()`` blocks while more than this is in flight."""
        return self._high

    @property
    def reader_limit(self) -> int:
        """The receiving ``StreamReader``'s ``limit`` (also the largest single delivery)."""
        return self._reader_limit

    def statistics(self) -> StreamStatistics:
        return StreamStatistics(
            bytes_written=self._bytes_written,
            bytes_delivered=self._bytes_delivered,
            bytes_discarded=self._bytes_discarded,
            in_flight=self._in_flight,
            max_in_flight=self._max_in_flight,
            max_unread=self._max_unread,
            writer_pauses=self._writer_pauses,
            eof_delivered=self._eof_delivered,
        )

    # ----------------------------------------------------------------- sender side
    def _push(self, data: bytes) -> None:
        if self._dead:
            self._bytes_discarded += len(data)
            return
        self._append(_Segment(data))
        n = len(data)
        self._bytes_written += n
        self._in_flight += n
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        unread = self._in_flight + self._receiver._unread_in_reader()
        self._max_unread = max(self._max_unread, unread)
        self._sender._maybe_pause_protocol()

    def _push_eof(self) -> None:
        if self._dead or self._eof_queued:
            return
        self._eof_queued = True
        self._append(_Segment(b"", eof=True))

    def _append(self, segment: _Segment) -> None:
        latency = self._hooks.latency
        if latency > 0:
            segment.ready = False
            segment.timer = self._loop.call_later(latency, self._segment_ready, segment)
        self._segments.append(segment)
        self._schedule_pump()

    def _segment_ready(self, segment: _Segment) -> None:
        segment.ready = True
        segment.timer = None
        self._schedule_pump()

    # ----------------------------------------------------------------- the pump
    def _schedule_pump(self) -> None:
        if self._dead or self._pump_handle is not None or self._loop.is_closed():
            return
        self._pump_handle = self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        """Deliver at most one piece (or the EOF), then reschedule: one delivery per iteration."""
        self._pump_handle = None
        if self._dead:
            return
        hooks = self._hooks
        receiver = self._receiver
        if hooks.drop_after is not None and self._bytes_delivered >= hooks.drop_after:
            receiver._network_reset()
            return
        if receiver._closing:
            self._discard_for_closed_receiver()
            return
        if hooks.stalled or receiver._reading_paused or not self._segments:
            return
        head = self._segments[0]
        if not head.ready:
            return
        if head.eof:
            self._segments.popleft()
            self._eof_delivered = True
            receiver._deliver_eof()
            if self._reset_receiver_after_eof:
                receiver._lose(_reset_error())
            return
        cap = self._reader_limit
        if hooks.max_chunk is not None:
            cap = min(cap, hooks.max_chunk)
        if hooks.drop_after is not None:
            cap = min(cap, hooks.drop_after - self._bytes_delivered)
        piece = self._take(cap)
        self._in_flight -= len(piece)
        self._bytes_delivered += len(piece)
        self._sender._maybe_resume_protocol()
        receiver._deliver_data(piece)
        cut = hooks.drop_after is not None and self._bytes_delivered >= hooks.drop_after
        if cut or (self._segments and self._segments[0].ready):
            # Runs after the reader's wake-up (queued by feed_data), so it consumes the piece first.
            self._schedule_pump()

    def _take(self, cap: int) -> bytes:
        parts: list[bytes] = []
        need = cap
        segments = self._segments
        while need > 0 and segments:
            seg = segments[0]
            if not seg.ready or seg.eof:
                break
            start = seg.offset
            avail = len(seg.data) - start
            if avail <= need:
                parts.append(seg.data[start:] if start else seg.data)
                segments.popleft()
                need -= avail
            else:
                parts.append(seg.data[start : start + need])
                seg.offset = start + need
                need = 0
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _discard_for_closed_receiver(self) -> None:
        discarded = self._clear()
        self._sender._maybe_resume_protocol()
        if discarded:
            # TCP answers data for a closed socket with RST: reset the sender (after its EOF).
            self._sender._reset_after_incoming_eof()

    def _clear(self) -> int:
        discarded = 0
        for seg in self._segments:
            if seg.timer is not None:
                seg.timer.cancel()
            discarded += len(seg.data) - seg.offset
        self._segments.clear()
        self._in_flight = 0
        self._bytes_discarded += discarded
        return discarded

    def _kill(self) -> None:
        if self._dead:
            return
        self._dead = True
        if self._pump_handle is not None:
            self._pump_handle.cancel()
            self._pump_handle = None
        self._clear()
