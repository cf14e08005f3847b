"""The seam between the harness and the system under test.

A :class:`Target` is whatever serves PROTOCOL.md: the harness starts it, connects peers to it
(an in-memory transport or a socket path), asks it for server-side figures *if it has any*, and
stops it. The harness never reaches into a server's internals; everything else it learns, it
learns as a peer does, from the frames it receives (load-status progress, sync messages, the
responses to its requests).

:class:`BundledTarget` is the first implementation: this repository's :class:`core.daemon.Daemon`
in this process. Two things only it can offer, and only as options: the in-process batch hook
(``before_batch``: a scenario's exact "join at batch k" and its injected faults) and
:meth:`BundledTarget.wait_peers_below` (wait until the server has noticed a disconnect).
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable

from core.blob_store import BlobStore, DiskBlobStore
from core.daemon import Daemon, DaemonConfig, RoomFigures
from core.loader import LoadReport
from core.room import NotebookRoom
from sim.net.connect import StreamPair, Transport, connect_transport
from sim.net.streams import StreamHooks

__all__ = ["BatchHook", "BundledTarget", "ServerFigures", "Target"]

BatchHook = Callable[[NotebookRoom, int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ServerFigures:
    """Server-side figures a target may report; absent (None) for a server that reports none."""

    load_reports: tuple[LoadReport, ...] = ()
    rooms: Mapping[str, RoomFigures] = field(default_factory=dict)
    sync_gen_s: float = 0.0  # time the server spent generating sync messages
    send_s: float = 0.0  # time the server spent writing to peers


@runtime_checkable
class Target(Protocol):
    """A server under test, as the harness sees it."""

    @property
    def transport(self) -> Transport: ...

    @property
    def description(self) -> str: ...

    async def start(self) -> None: ...

    async def connect(
        self, buffer: int | None = None, *, hooks_to_client: StreamHooks | None = None
    ) -> StreamPair:
        """A new client connection (``buffer``: bytes per direction; None = the default)."""
        ...

    def figures(self) -> ServerFigures | None:
        """What the server reports about itself now, without asking it; None when nothing."""
        ...

    async def server_figures(self, notebook: Path) -> ServerFigures | None:
        """What the server reports about ``notebook``'s room, asked once the run is measured
        (over the protocol for a server of another process); None when it reports nothing."""
        ...

    async def stop(self) -> None: ...


class BundledTarget:
    """This repository's daemon, in this process, over ``memory``, ``socketpair`` or ``unix``.

    ``blob_store`` defaults to the on-disk store in a private temporary directory (the store
    users run); pass a :class:`core.blob_store.MemoryBlobStore` explicitly to measure without
    disk I/O. ``before_batch`` is the in-process hook, an option only this target has.
    """

    def __init__(
        self,
        config: DaemonConfig | None = None,
        *,
        transport: Transport = "memory",
        blob_store: BlobStore | None = None,
        before_batch: BatchHook | None = None,
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        config = config or DaemonConfig()
        if transport == "unix" and config.socket_path is None:
            config = _with_socket(config, self._tmpdir() / "d.sock")
        if blob_store is None:
            blob_store = DiskBlobStore(config.blob_root or self._tmpdir() / "blobs")
        self._transport: Transport = transport
        self.daemon = Daemon(config, blob_store=blob_store, before_batch=before_batch)
        self._tasks: set[asyncio.Task[None]] = set()

    def _tmpdir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="nbstream-target-")
        return Path(self._tmp.name)

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def description(self) -> str:
        store = type(self.daemon.blob_store).__name__
        return f"bundled daemon ({self._transport}, {store})"

    @property
    def socket_path(self) -> Path | None:
        return self.daemon.config.socket_path

    async def start(self) -> None:
        await self.daemon.start()

    async def connect(
        self,
        buffer: int | None = None,
        *,
        hooks_to_client: StreamHooks | None = None,
        hooks_to_server: StreamHooks | None = None,
    ) -> StreamPair:
        return await connect_transport(
            self._transport,
            serve=self.daemon.handle_connection,
            socket_path=self.daemon.config.socket_path,
            buffer=buffer,
            hooks_to_client=hooks_to_client,
            hooks_to_server=hooks_to_server,
            tasks=self._tasks,
        )

    def figures(self) -> ServerFigures:
        stats = self.daemon.statistics()
        return ServerFigures(
            load_reports=tuple(self.daemon.load_reports),
            rooms=self.daemon.room_figures(),
            sync_gen_s=stats.sync_gen_s,
            send_s=stats.send_s,
        )

    async def server_figures(self, notebook: Path) -> ServerFigures:
        return self.figures()

    async def wait_load_finished(self, notebook_id: str) -> tuple[str, str | None]:
        """Server side: wait until ``notebook_id``'s load has ended; (phase, reason)."""

        def ended() -> RoomFigures | None:
            room = self.daemon.room_figures().get(notebook_id)
            return room if room is not None and room.phase in ("ready", "failed") else None

        await self.daemon.wait_for(lambda: ended() is not None)
        room = ended()
        assert room is not None
        return room.phase, room.reason

    def document_bytes(self, notebook_id: str) -> bytes | None:
        """Server side: the room's document, as ``get_doc_bytes`` would answer."""
        return self.daemon.document_bytes(notebook_id)

    async def wait_peers_below(self, notebook_id: str, count: int) -> None:
        """Wait until fewer than ``count`` peers are attached to ``notebook_id``'s room."""

        def below() -> bool:
            room = self.daemon.room_figures().get(notebook_id)
            return room is None or room.peers < count

        await self.daemon.wait_for(below)

    async def stop(self) -> None:
        await self.daemon.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> BundledTarget:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _with_socket(config: DaemonConfig, path: Path) -> DaemonConfig:
    return dataclasses.replace(config, socket_path=path)
