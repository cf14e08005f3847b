"""One connected peer: a reader task, a writer task and a request task over a stream pair.

* The **reader** owns the socket's read side. It reads whatever bytes are available, feeds the
  I/O-free :class:`~core.connection.Connection` (so no read can ever be cut mid-frame), applies
  the sync messages among its events at once and queues requests in order (bounded: a client
  that floods requests is slowed down, not dropped). It never writes, so it never blocks on a
  peer that does not read.
* The **writer** is the only task that writes. It sleeps on the peer's :class:`Subscription`;
  when woken it sends queued control frames (responses), then *one* sync message covering
  everything the peer has not seen yet (generated just before it is written, so a slow peer gets
  fewer, larger messages rather than a growing queue), then the current load status if it
  changed. Every write is followed by ``await drain()`` (backpressure stays on this peer only).
  **One large sync message in flight** while the loader writes a large source in steps
  (``room.writing_large_source``): after sending a message of at least :data:`HOLD_MIN_BYTES`,
  the writer holds the next (and the status that follows it) until the peer's next sync message
  arrives, or :data:`REPLY_WAIT_S` passes.
  Applying a sync message costs the receiver time proportional to the Text objects it touches
  (automerge 0.2.0.dev4: 0.37 s for 1 character appended to a 1 MiB source, the same for 32
  changes in one message), so a peer sent one message per step of a large cell would pay that
  for every step; held back, it gets what piled up in one message. Nothing else is held: a round
  trip per batch through a busy loop costs ordinary loads, and when a message goes out would
  depend on when answers arrive, which would make the gate's frame counts vary run to run.
* The **request** task answers requests one by one.

Limits (PROTOCOL.md "Limits"): a frame that has started arriving must be complete within
``frame_progress_timeout`` seconds of waiting for the peer (idle time between frames is never
timed out), else the session closes with ``frame_timeout``; and every byte the session holds for
its peer — the decoder's partial frame, the queued responses, the transport's unsent bytes — is
reported to the daemon's :class:`~core.budget.MemoryBudget` before it is buffered, which may
close the session with ``over_budget``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from automerge import core as am

from . import protocol as p
from .blob_store import BlobStore
from .budget import MemoryBudget
from .connection import (
    BroadcastEvent,
    ClosingEvent,
    Connection,
    Event,
    RequestEvent,
    ResponseEvent,
    StatusEvent,
    SyncData,
)
from .errors import (
    CoreError,
    FrameTimeout,
    LocalProtocolError,
    OverBudget,
    ProtocolError,
    SaveRefused,
    TransportClosed,
)
from .room import NotebookRoom, RoomPhase

__all__ = ["PeerSession", "SessionHost", "SessionStatistics"]


class SessionHost(Protocol):
    """What a session needs from the server that owns it (the daemon implements it)."""

    @property
    def blob_store(self) -> BlobStore: ...

    async def save_room(self, room: NotebookRoom) -> tuple[Path, int, tuple[str, ...]]: ...

    def statistics_response(self, request_id: int, room: NotebookRoom) -> p.StatisticsResponse:
        """The answer to a ``statistics`` request from a peer of ``room``."""
        ...


REPLY_WAIT_S = 0.5
"""How long the writer holds a sync message for a peer that has not answered the last one."""
HOLD_MIN_BYTES = 8 * 1024
"""A sync message this large makes the writer wait for the peer's answer before the next."""

log = logging.getLogger("nbstream.session")


@dataclass(frozen=True, slots=True)
class SessionStatistics:
    frames_in: int
    bytes_in: int
    frames_out: int
    bytes_out: int
    sync_frames_out: int
    sync_frames_in: int
    requests: int
    sync_gen_s: float
    send_s: float


class PeerSession:
    """The daemon's side of one connection, after a successful handshake."""

    def __init__(
        self,
        host: SessionHost,
        room: NotebookRoom,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: Connection,
        name: str,
        pipelined: Sequence[Event] = (),
        *,
        read_chunk: int = 64 * 1024,
        request_queue_size: int = 64,
        frame_progress_timeout: float | None = None,
        budget: MemoryBudget | None = None,
    ) -> None:
        self.host = host
        self.room = room
        self.name = name
        self._reader = reader
        self._writer = writer
        self._conn = connection
        self._read_chunk = read_chunk
        self._pipelined = list(pipelined)
        self.sync_state = am.SyncState()
        self._sub_key, self.sub = room.subscribe(name)
        self._control: deque[bytes] = deque()
        self._control_bytes = 0  # bytes of the responses in _control (the budget counts them)
        self._progress_timeout = frame_progress_timeout
        self._budget = budget if budget is not None else MemoryBudget(None)
        self._requests: asyncio.Queue[p.Request | None] = asyncio.Queue(request_queue_size)
        self.reader_done = asyncio.Event()
        self.close_reason: str | None = None
        self._closing = False
        self._bytes_in = 0
        self._frames_out = 0
        self._bytes_out = 0
        self._sync_out = 0
        self._sync_in = 0
        self._status_cells = -1  # cells_loaded of the last status this peer was sent
        self._n_requests = 0
        self._sync_gen_s = 0.0
        self._sent_at: float | None = None  # loop time of the unanswered sync message, if any
        self._send_s = 0.0

    # ------------------------------------------------------------------ lifecycle
    @property
    def alive(self) -> bool:
        """False once the peer has gone (EOF, reset, protocol error)."""
        return not self.reader_done.is_set()

    async def run(self) -> None:
        """Serve the peer until it leaves; always cleans up."""
        tasks = [
            asyncio.create_task(self._read_loop(), name=f"{self.name}-reader"),
            asyncio.create_task(self._write_loop(), name=f"{self.name}-writer"),
            asyncio.create_task(self._request_loop(), name=f"{self.name}-requests"),
        ]
        for task in tasks[1:]:
            # Whatever ends the writer or the request task ends the session. Before, a writer
            # that died (cancelled, or an unexpected error such as a sync message too large to
            # frame) left the session reading but never writing: a silent zombie whose peer
            # waited forever. Found by tests/test_faults.py (writer task cancelled).
            task.add_done_callback(self._helper_done)
        try:
            await self.reader_done.wait()
            # Let the writer flush a pending `closing` frame (bounded by the peer's reading).
            if self.close_reason is not None:
                self._closing = True
                self.sub.mark_status()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(tasks[1]), timeout=1.0)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.room.unsubscribe(self._sub_key)
            self._budget.release(self)
            self._control.clear()
            self._control_bytes = 0
            self._writer.close()
            try:
                await asyncio.wait_for(self._writer.wait_closed(), timeout=1.0)
            except Exception:
                # A peer that does not read would keep the unsent bytes (and a close waiting
                # for them to flush) forever: drop them.
                self._writer.transport.abort()

    def _helper_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "%s: %s failed, closing the connection: %r",
                self.name,
                task.get_name(),
                task.exception(),
            )
        self.reader_done.set()  # run() wakes up and tears the session down
        self.sub.mark()

    # ------------------------------------------------------------------ reading
    async def _read_loop(self) -> None:
        try:
            for event in self._pipelined:
                await self._dispatch(event)
            self._pipelined.clear()
            stalled = 0.0  # seconds spent waiting for the rest of the current partial frame
            while True:
                if self._conn.buffered and self._progress_timeout is not None:
                    data, stalled = await self._read_rest(stalled)
                else:
                    stalled = 0.0
                    data = await self._reader.read(self._read_chunk)
                if not data:
                    self._conn.receive_data(b"")
                    return
                if not self._account(len(data)):
                    return  # closed over budget: the bytes are dropped, never buffered
                self._bytes_in += len(data)
                events = self._conn.receive_data(data)
                self._account()
                for event in events:
                    await self._dispatch(event)
        except ProtocolError as exc:
            log.info("%s: protocol error, closing: %s", self.name, exc)
            self._fail(exc)
        except TransportClosed as exc:
            log.info("%s: %s", self.name, exc)
        except (ConnectionError, OSError) as exc:
            log.info("%s: connection lost: %s", self.name, exc)
        finally:
            self.reader_done.set()
            self.sub.mark()  # wake the writer so it can finish

    async def _read_rest(self, stalled: float) -> tuple[bytes, float]:
        """Read more of a partial frame; FrameTimeout once the wait for it passes the timeout.

        Only the time spent waiting here counts (not the time the daemon itself spends between
        reads, e.g. when its request queue is full), so a peer is timed out for its own stall.
        """
        assert self._progress_timeout is not None
        loop = asyncio.get_running_loop()
        remaining = self._progress_timeout - stalled
        t0 = loop.time()
        try:
            data = await asyncio.wait_for(self._reader.read(self._read_chunk), max(remaining, 0))
        except TimeoutError:
            raise FrameTimeout(
                f"frame not complete within {self._progress_timeout:g} s: {self._conn.buffered} "
                "bytes of it received, then the peer stopped sending"
            ) from None
        return data, stalled + loop.time() - t0

    async def _dispatch(self, event: Event) -> None:
        # The connection already dropped what a client may not send (responses, broadcasts,
        # session control); only sync messages and requests arrive here.
        if isinstance(event, SyncData):
            self._sync_in += 1
            self._sent_at = None  # the peer answered: the next message may go
            room = self.room
            before = room.doc.heads()
            room.doc.receive_sync_message(self.sync_state, event.data)
            if room.doc.heads() != before:
                room.peer_edited()  # the peer edited: everyone (this peer included) syncs
            else:
                self.sub.mark()  # maybe the peer needs data from us
        elif isinstance(event, RequestEvent):
            self._n_requests += 1
            await self._requests.put(event.message)

    def _fail(self, exc: ProtocolError) -> None:
        self.close_reason = exc.close_reason
        self._control.append(self._conn.send(ClosingEvent(p.closing_for(exc))))

    # ------------------------------------------------------------------ the memory budget
    def _held(self) -> int:
        """Bytes this session holds for its peer now."""
        return self._conn.buffered + self._control_bytes + _unsent(self._writer)

    def _account(self, more: int = 0) -> bool:
        """Report what this session holds (plus ``more`` it is about to buffer) to the budget.

        False when the budget closed this session instead (it must not buffer ``more``)."""
        if self.close_reason == OverBudget.close_reason:
            return False
        return self._budget.update(self, self._held() + more)

    def over_budget(self, detail: str) -> None:
        """Close this session with ``over_budget`` (called by the budget, maybe for another
        session's report): drop the queued responses, stop reading, send ``closing`` if the
        peer still reads; whatever it does not read within a second is dropped."""
        if self.close_reason == OverBudget.close_reason:
            return
        log.info("%s: closing: %s", self.name, detail)
        self._control.clear()
        self._control_bytes = 0
        self._fail(OverBudget(detail))
        self.reader_done.set()
        self.sub.mark_status()

    # ------------------------------------------------------------------ writing
    async def _send(self, *frames: bytes, queued: bool = False) -> bool:
        """Write ``frames`` in one write and wait for the peer to drain them.

        ``queued``: the frames come from the control queue (already counted by the budget);
        otherwise they are new bytes, reported before they are written. False when the budget
        closed the session instead of letting it write them."""
        data = b"".join(frames)
        if not queued and not self._account(len(data)):
            return False
        t0 = time.perf_counter()
        self._writer.write(data)
        self._account()
        await self._writer.drain()
        self._account()
        self._send_s += time.perf_counter() - t0
        self._frames_out += len(frames)
        self._bytes_out += len(data)
        return True

    def _queue_control(self, frame: bytes) -> None:
        if not self._account(len(frame)):
            return  # closed over budget: the response is dropped with the connection
        self._control.append(frame)
        self._control_bytes += len(frame)
        self.sub.mark_status()

    async def _write_loop(self) -> None:
        sub = self.sub
        loop = asyncio.get_running_loop()
        try:
            while True:
                if self._sent_at is not None and sub.dirty:
                    remaining = self._sent_at + REPLY_WAIT_S - loop.time()
                    try:
                        await asyncio.wait_for(sub.wait(), max(remaining, 0.0))
                    except TimeoutError:
                        self._sent_at = None  # no answer: send anyway (it may never answer)
                else:
                    await sub.wait()
                while self._control:
                    frame = self._control.popleft()
                    self._control_bytes = max(0, self._control_bytes - len(frame))
                    await self._send(frame, queued=True)
                while sub.broadcasts:
                    await self._send(self._conn.send(BroadcastEvent(sub.broadcasts.popleft())))
                if self._closing or not self.alive:
                    return
                if self._sent_at is not None and sub.dirty:
                    continue  # still unanswered: hold the sync message and its status
                # The status goes out after the sync message, and is the state as it was when
                # that message was generated: a peer told "N cells loaded" has been sent those
                # N cells (a batch inserted while the message was being written is announced
                # by the next status, after the next message).
                # Both go out in one write.
                if not sub.status_dirty and self._ready_count_changed():
                    sub.status_dirty = True  # a ready room's cell count moved: say so
                status = self._status_frame() if sub.status_dirty else None
                sub.status_dirty = False
                frames: list[bytes] = []
                if sub.dirty:
                    sub.dirty = False
                    t0 = time.perf_counter()
                    message = self.room.doc.generate_sync_message(self.sync_state)
                    self._sync_gen_s += time.perf_counter() - t0
                    if message is not None:
                        self._sync_out += 1
                        if len(message) >= HOLD_MIN_BYTES and self.room.writing_large_source:
                            self._sent_at = loop.time()
                        frames.append(self._conn.send(SyncData(message)))
                if status is not None:
                    frames.append(status)
                if frames:
                    # False: the budget closed this session; the next round sends `closing`.
                    await self._send(*frames)
        except (ConnectionError, OSError) as exc:
            log.info("%s: write failed: %s", self.name, exc)
            self.reader_done.set()

    def _ready_count_changed(self) -> bool:
        state = self.room.state
        return state.phase is RoomPhase.READY and state.cells_loaded != self._status_cells

    def _status_frame(self) -> bytes:
        state = self.room.state
        self._status_cells = state.cells_loaded
        status = p.LoadStatus(
            phase=_wire_phase(state.phase),
            reason=state.reason,
            cells_loaded=state.cells_loaded,
            total_cells=state.total_cells,
        )
        return self._conn.send(StatusEvent(status))

    # ------------------------------------------------------------------ requests
    async def _request_loop(self) -> None:
        while True:
            request = await self._requests.get()
            if request is None or self.close_reason is not None:
                return  # a closing session answers nothing more (e.g. 64 queued doc saves)
            try:
                response = await self._handle(request)
            except CoreError as exc:
                response = p.ErrorResponse(request.id, str(exc))
            except Exception as exc:  # keep serving; report the fault in-protocol
                log.exception("%s: request %r failed", self.name, request)
                response = p.ErrorResponse(request.id, f"internal error: {type(exc).__name__}")
            try:
                frame = self._conn.send(ResponseEvent(response))
            except LocalProtocolError as exc:  # e.g. a document too large for one frame
                error = p.ErrorResponse(request.id, f"response not sendable: {exc}")
                frame = self._conn.send(ResponseEvent(error))
            self._queue_control(frame)

    async def _handle(self, request: p.Request) -> p.Response:
        room = self.room
        if isinstance(request, p.Ping):
            return p.Pong(request.id)
        if isinstance(request, p.GetDocBytes):
            return p.DocBytes(request.id, room.doc.save())
        if isinstance(request, p.GetLoadStatus):
            s = room.state
            return p.LoadStatusResponse(
                request.id, _wire_phase(s.phase), s.reason, s.cells_loaded, s.total_cells
            )
        if isinstance(request, p.GetBlob):
            store = self.host.blob_store
            data = await asyncio.to_thread(store.get, request.hash)
            meta = await asyncio.to_thread(store.get_meta, request.hash)
            if data is None or meta is None:
                return p.ErrorResponse(request.id, f"no blob {request.hash}")
            return p.Blob(request.id, request.hash, meta.media_type, data)
        if isinstance(request, p.Statistics):
            return self.host.statistics_response(request.id, room)
        if isinstance(request, p.Save):
            path, written, repairs = await self.host.save_room(room)
            return p.Saved(request.id, str(path), written, repairs)
        raise SaveRefused(f"unsupported request {type(request).__name__}")  # pragma: no cover

    # ------------------------------------------------------------------ counters
    def statistics(self) -> SessionStatistics:
        return SessionStatistics(
            # every frame the connection decoded, ignored ones included, but the handshake
            frames_in=max(0, self._conn.statistics().frames_in - 1),
            bytes_in=self._bytes_in,
            frames_out=self._frames_out,
            bytes_out=self._bytes_out,
            sync_frames_out=self._sync_out,
            sync_frames_in=self._sync_in,
            requests=self._n_requests,
            sync_gen_s=self._sync_gen_s,
            send_s=self._send_s,
        )


def _unsent(writer: asyncio.StreamWriter) -> int:
    """Bytes written to ``writer`` that its transport has not handed to the kernel yet."""
    try:
        return writer.transport.get_write_buffer_size()
    except (AttributeError, NotImplementedError, RuntimeError):
        return 0


def _wire_phase(phase: RoomPhase) -> p.LoadPhase:
    """The wire has no ``empty``: a room is empty only until its opener claims the load."""
    if phase is RoomPhase.READY:
        return "ready"
    if phase is RoomPhase.FAILED:
        return "failed"
    return "streaming"
