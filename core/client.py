"""A peer: connects, handshakes, and keeps a local Automerge notebook in sync with the daemon.

Like the daemon's session, the client reads on one task and writes on another, so it never stops
reading while it waits to write (the socket-buffer deadlock of reference §4.7 cannot happen).
It sends its first sync message right behind the handshake (pipelined), so the daemon knows the
client's heads before the first batch and every batch frame can carry that batch's cells.

Every received frame is recorded with its arrival time and the local cell count after it — the
raw material of the simulator's latency and progressive-delivery measurements.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from automerge import core as am

from . import protocol as p
from .connection import (
    BroadcastEvent,
    ClosingEvent,
    Connection,
    Event,
    Handshake,
    Hello,
    RequestEvent,
    ResponseEvent,
    Role,
    StatusEvent,
    SyncData,
)
from .errors import CoreError, ProtocolError, TransportClosed
from .notebook_doc import NotebookDoc

__all__ = ["Arrival", "ClientStatistics", "LoadFailed", "NotebookClient", "OpenRefused"]

_R = TypeVar("_R", bound=p.Response)


class OpenRefused(CoreError):
    """The daemon refused the handshake (its ``error`` field is the message)."""


class LoadFailed(CoreError):
    """The daemon reported the load as failed (the reason is the message)."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """One received frame: when (seconds since the handshake was sent), what, and the effect."""

    t: float
    frame_type: str
    nbytes: int
    cell_count: int
    changed: bool  # a sync frame that changed the local doc (i.e. carried changes)


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    frames_in: int
    bytes_in: int
    frames_out: int
    bytes_out: int
    sync_frames_in: int
    sync_frames_with_changes: int
    arrivals: tuple[Arrival, ...]
    time_to_first_cell_s: float | None
    time_to_full_s: float | None


class NotebookClient:
    """One connection to a daemon, opened on one notebook."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        name: str = "client",
        auto_reply: bool = True,
        read_chunk: int = 64 * 1024,
        read_delay: float = 0.0,
        on_frame: Callable[[Arrival], None] | None = None,
    ) -> None:
        self.name = name
        self.doc = NotebookDoc.empty()
        self.info: p.NotebookConnectionInfo | None = None
        self.auto_reply = auto_reply
        self.on_frame = on_frame
        self.load_status: p.LoadStatus | None = None
        self.closing: p.Closing | None = None
        self.broadcasts: list[dict[str, object]] = []  # BROADCAST bodies, in arrival order
        self._reader = reader
        self._writer = writer
        self._read_chunk = read_chunk
        self._read_delay = read_delay  # a deliberately slow consumer (simulator knob)
        self._conn = Connection(Role.CLIENT)
        self._sync_state = am.SyncState()
        self._outbox: deque[bytes] = deque()
        self._wake_writer = asyncio.Event()
        self._sync_dirty = False
        self._changed = asyncio.Condition()
        self._responses: dict[int, asyncio.Future[p.Response]] = {}
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._t0 = 0.0  # perf_counter() when the handshake was sent; Arrival.t is relative to it
        self._arrivals: list[Arrival] = []
        self._frames_out = self._bytes_out = 0
        self._frames_in = self._bytes_in = 0
        self._first_cell_at: float | None = None
        self._full_at: float | None = None
        self.error: BaseException | None = None
        self.closed = asyncio.Event()

    # ------------------------------------------------------------------ connecting
    @classmethod
    async def connect(
        cls,
        socket_path: str | os.PathLike[str],
        notebook_path: str | os.PathLike[str],
        **kwargs: object,
    ) -> NotebookClient:
        """Connect to ``nbstream serve`` on ``socket_path`` and open ``notebook_path``."""
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        client = cls(reader, writer, **kwargs)  # type: ignore[arg-type]
        try:
            await client.open(notebook_path)
        except BaseException:
            await client.close()
            raise
        return client

    async def open(
        self, notebook_path: str | os.PathLike[str], *, timeout: float = 30.0
    ) -> p.NotebookConnectionInfo:
        """Handshake, then start the reader and writer. Raises on an ``error`` reply."""
        path = os.path.abspath(os.fspath(notebook_path))
        self._t0 = time.perf_counter()
        hello = self._conn.send(Handshake(p.OpenNotebook(path)))
        first_sync = self.doc.generate_sync_message(self._sync_state)
        data = hello + (self._conn.send(SyncData(first_sync)) if first_sync else b"")
        self._writer.write(data)
        self._frames_out += 2 if first_sync else 1
        self._bytes_out += len(data)
        await self._writer.drain()
        info = await asyncio.wait_for(self._read_info(), timeout)
        self.info = info
        if info.error is not None:
            raise OpenRefused(info.error)
        self._tasks = [
            asyncio.create_task(self._read_loop(), name=f"{self.name}-reader"),
            asyncio.create_task(self._write_loop(), name=f"{self.name}-writer"),
        ]
        return info

    async def _read_info(self) -> p.NotebookConnectionInfo:
        while True:
            data = await self._reader.read(self._read_chunk)
            if not data:
                self._conn.receive_data(b"")
                raise TransportClosed("daemon closed the connection during the handshake")
            self._bytes_in += len(data)  # the reply, and whatever frames came behind it
            events = self._conn.receive_data(data)
            if events:
                first = events[0]
                assert isinstance(first, Hello)  # the connection guarantees it
                self._pending = events[1:]
                return first.message

    # ------------------------------------------------------------------ reading
    async def _read_loop(self) -> None:
        try:
            for event in self._pending:
                await self._dispatch(event)
            self._pending = []
            while True:
                if self._read_delay:
                    await asyncio.sleep(self._read_delay)
                data = await self._reader.read(self._read_chunk)
                if not data:
                    self._conn.receive_data(b"")
                    return
                self._bytes_in += len(data)
                for event in self._conn.receive_data(data):
                    await self._dispatch(event)
        except (CoreError, ConnectionError, OSError) as exc:
            self.error = exc
        finally:
            self.closed.set()
            for fut in self._responses.values():
                if not fut.done():
                    fut.set_exception(TransportClosed("connection closed before the response"))
            async with self._changed:
                self._changed.notify_all()

    async def _dispatch(self, event: Event) -> None:
        self._frames_in += 1
        now = time.perf_counter() - self._t0
        changed = False
        if isinstance(event, SyncData):
            heads = self.doc.heads()
            self.doc.receive_sync_message(self._sync_state, event.data)
            changed = self.doc.heads() != heads
            if self.auto_reply:
                self._sync_dirty = True
                self._wake_writer.set()
        elif isinstance(event, ResponseEvent):
            response = event.message
            fut = self._responses.pop(response.id, None) if response.id is not None else None
            if fut is not None and not fut.done():
                fut.set_result(response)
        elif isinstance(event, StatusEvent):
            self.load_status = event.message
        elif isinstance(event, ClosingEvent):
            self.closing = event.message
        elif isinstance(event, BroadcastEvent):
            self.broadcasts.append(event.message)
        count = self.doc.cell_count()
        if count and self._first_cell_at is None:
            self._first_cell_at = now
        status = self.load_status
        if (
            self._full_at is None
            and status is not None
            and status.phase == "ready"
            and count >= status.cells_loaded
        ):
            self._full_at = now
        arrival = Arrival(now, event.kind, event.wire_size, count, changed)
        self._arrivals.append(arrival)
        if self.on_frame is not None:
            self.on_frame(arrival)
        async with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------------ writing
    async def _write_loop(self) -> None:
        try:
            while True:
                await self._wake_writer.wait()
                self._wake_writer.clear()
                while self._outbox:
                    await self._send(self._outbox.popleft())
                if self._sync_dirty:
                    self._sync_dirty = False
                    message = self.doc.generate_sync_message(self._sync_state)
                    if message is not None:
                        await self._send(self._conn.send(SyncData(message)))
        except (ConnectionError, OSError) as exc:
            self.error = exc

    async def _send(self, data: bytes) -> None:
        self._writer.write(data)
        self._frames_out += 1
        self._bytes_out += len(data)
        await self._writer.drain()

    def send_raw(self, data: bytes) -> None:
        """Queue raw bytes (tests and fuzzers use this to send hostile frames)."""
        self._outbox.append(data)
        self._wake_writer.set()

    def sync_now(self) -> None:
        """Send a sync message now (e.g. after a local edit to ``self.doc``)."""
        self._sync_dirty = True
        self._wake_writer.set()

    # ------------------------------------------------------------------ requests
    async def request(self, request: p.Request) -> p.Response:
        if self.closed.is_set():
            raise TransportClosed("connection is closed")
        fut: asyncio.Future[p.Response] = asyncio.get_running_loop().create_future()
        self._responses[request.id] = fut
        self.send_raw(self._conn.send(RequestEvent(request)))
        return await fut

    def next_id(self) -> int:
        return next(self._ids)

    async def get_doc_bytes(self) -> bytes:
        response = await self.request(p.GetDocBytes(self.next_id()))
        return _expect(response, p.DocBytes).data

    async def save(self) -> p.Saved:
        return _expect(await self.request(p.Save(self.next_id())), p.Saved)

    async def get_blob(self, blob_hash: str) -> p.Blob:
        return _expect(await self.request(p.GetBlob(self.next_id(), blob_hash)), p.Blob)

    async def ping(self) -> None:
        _expect(await self.request(p.Ping(self.next_id())), p.Pong)

    # ------------------------------------------------------------------ waiting
    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; raises TransportClosed if the connection ends first."""
        async with self._changed:
            while not predicate():
                if self.closed.is_set():
                    raise TransportClosed(
                        f"{self.name}: connection closed while waiting"
                        + (f" ({self.error})" if self.error else "")
                    )
                await self._changed.wait()

    async def wait_for_cells(self, n: int) -> None:
        await self.wait_for(lambda: self.doc.cell_count() >= n)

    async def wait_loaded(self) -> p.LoadStatus:
        """Wait for ``ready`` with every loaded cell present locally, or raise LoadFailed."""

        def done() -> bool:
            s = self.load_status
            if s is None:
                return False
            if s.phase == "failed":
                return True
            return s.phase == "ready" and self.doc.cell_count() >= s.cells_loaded

        await self.wait_for(done)
        status = self.load_status
        assert status is not None
        if status.phase == "failed":
            raise LoadFailed(status.reason or "load failed")
        return status

    # ------------------------------------------------------------------ closing
    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        self.closed.set()

    async def __aenter__(self) -> NotebookClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def started_at(self) -> float:
        """``time.perf_counter()`` when the handshake was sent (Arrival.t is relative to it)."""
        return self._t0

    # ------------------------------------------------------------------ counters
    def statistics(self) -> ClientStatistics:
        arrivals = tuple(self._arrivals)
        return ClientStatistics(
            frames_in=self._frames_in,
            bytes_in=self._bytes_in,
            frames_out=self._frames_out,
            bytes_out=self._bytes_out,
            sync_frames_in=sum(1 for a in arrivals if a.frame_type == "sync"),
            sync_frames_with_changes=sum(1 for a in arrivals if a.changed),
            arrivals=arrivals,
            time_to_first_cell_s=self._first_cell_at,
            time_to_full_s=self._full_at,
        )


def _expect(response: p.Response, kind: type[_R]) -> _R:
    if isinstance(response, p.ErrorResponse):
        raise CoreError(response.error)
    if not isinstance(response, kind):
        raise ProtocolError(f"expected {kind.__name__}, got {type(response).__name__}")
    return response
