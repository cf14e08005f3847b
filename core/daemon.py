"""The nbstream daemon: handshake, rooms, streaming loads and saves over any stream pair.

:meth:`Daemon.handle_connection` takes an asyncio ``(StreamReader, StreamWriter)`` pair and cannot
tell a Unix socket from the simulator's in-memory duplex. :meth:`Daemon.start` binds the real
Unix-socket server (:func:`core.unix_server.bind_unix`: socket 0600) and removes the temp files
a killed writer left in the blob store. Clients may open only ``.ipynb`` files under the notebook
root (:mod:`core.notebook_root`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from . import protocol as p
from .atomic import remove_stale_temps
from .blob_gc import BlobCollector, GcReport
from .blob_store import BlobStore, DiskBlobStore, remove_stale_temp_files
from .budget import MemoryBudget
from .connection import Connection, Event, Handshake, Hello, Role
from .errors import CoreError, HandshakeError, NotebookLoadError, SaveRefused
from .framing import DATA_MAX_SIZE
from .ipynb import MAX_NOTEBOOK_BYTES, parse_notebook
from .ipynb_export import export_for_save, read_previous
from .loader import (
    InsertPath,
    LoadOptions,
    LoadReport,
    load_figures,
    start_load_task,
    stream_load,
)
from .notebook_doc import DocStatistics
from .notebook_file import read_notebook_file
from .notebook_root import check_suffix, confine, inside, resolve_root
from .room import NotebookRoom, RoomPhase, RoomRegistry
from .room_file import RoomFiles, write_notebook_file
from .session import PeerSession
from .unix_server import bind_unix

MAX_SYNC_MESSAGE = 1024 * 1024
"""The largest sync message the daemon applies from a peer: applying one holds the loop (a 10 MiB
paste froze every room for over 130 s, issue 11), so larger ones close that peer in-protocol."""

FRAME_PROGRESS_TIMEOUT = 30.0
"""Seconds a frame that has started arriving may take to complete (PROTOCOL.md "Limits")."""
MEMORY_BUDGET = 256 * 1024 * 1024
"""Bytes the daemon holds for all peers at most: partial frames and queued output."""
GC_INTERVAL = 600.0
"""Seconds between two blob-store garbage collections."""

__all__ = ["Daemon", "DaemonConfig", "DaemonStatistics", "RoomFigures", "default_socket_path"]

log = logging.getLogger("nbstream.daemon")

BatchHook = Callable[[NotebookRoom, int], Awaitable[None]]


def default_state_dir() -> Path:
    """``$XDG_RUNTIME_DIR/nbstream`` if set, else ``~/.cache/nbstream``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "nbstream"
    return Path.home() / ".cache" / "nbstream"


def default_socket_path() -> Path:
    return default_state_dir() / "daemon.sock"


@dataclass(slots=True)
class DaemonConfig:
    socket_path: Path | None = None
    blob_root: Path | None = None
    notebook_root: Path | None = None  # only .ipynb files under it are served; None: the cwd
    batch_size: int = 3
    insert_path: InsertPath = "full"
    handshake_timeout: float = 10.0
    max_frame_size: int = DATA_MAX_SIZE
    max_sync_message: int = MAX_SYNC_MESSAGE
    max_notebook_bytes: int = MAX_NOTEBOOK_BYTES
    eviction_delay: float = 30.0
    read_chunk: int = 64 * 1024
    request_queue_size: int = 64
    offload_blobs: bool = True
    frame_progress_timeout: float | None = FRAME_PROGRESS_TIMEOUT  # None: never
    memory_budget: int | None = MEMORY_BUDGET  # None: unlimited (still counted)
    gc_interval: float | None = GC_INTERVAL  # None: no periodic collection
    # Where unsaved work goes when its notebook's directory cannot take a recovery file
    # (None: the state directory's "recovered", e.g. ~/.cache/nbstream/recovered).
    recovery_dir: Path | None = None
    load_options: LoadOptions = field(init=False)

    def __post_init__(self) -> None:
        self.load_options = LoadOptions(
            batch_size=self.batch_size,
            insert_path=self.insert_path,
            max_notebook_bytes=self.max_notebook_bytes,
            offload_blobs=self.offload_blobs,
        )


@dataclass(frozen=True, slots=True)
class DaemonStatistics:
    connections: int
    active_connections: int
    handshake_failures: int
    protocol_errors: int
    rooms: int
    loads_started: int
    loads_failed: int
    sync_gen_s: float  # summed over finished sessions: time generating sync messages
    send_s: float  # summed over finished sessions: time in write + drain
    frames_out: int
    bytes_out: int


@dataclass(frozen=True, slots=True)
class RoomFigures:
    """What the daemon can tell about one open notebook (read by harnesses, never mutated)."""

    notebook_id: str
    phase: str  # "empty" | "streaming" | "ready" | "failed"
    reason: str | None  # why the last load failed (phase "failed")
    peers: int  # sessions attached to the room now
    cells: int  # cells in the document now
    doc: DocStatistics  # the document's deterministic counters
    loads_started: int


class Daemon:
    """Serves notebooks to peers. Use as ``async with Daemon(cfg) as d`` or start()/stop()."""

    def __init__(
        self,
        config: DaemonConfig | None = None,
        *,
        blob_store: BlobStore | None = None,
        before_batch: BatchHook | None = None,
    ) -> None:
        self.config = config or DaemonConfig()
        # Fixed once: the cwd at construction when unset (CoreError if it is not a directory).
        self.notebook_root = resolve_root(self.config.notebook_root)
        if blob_store is None:
            root = self.config.blob_root or default_state_dir() / "blobs"
            blob_store = DiskBlobStore(root)
        self.blob_store = blob_store
        self.rooms = RoomRegistry(eviction_delay=self.config.eviction_delay)
        self.rooms.on_evict = lambda _room: self._changed()
        self.files = RoomFiles(
            self.rooms,
            blob_store,
            self.config.recovery_dir or default_state_dir() / "recovered",
            self.save_room,
            # The checked save writes through the root-confined, owner-keeping write (11.1/11.2).
            write_file=lambda path, data: _write_saved(path, data, self.notebook_root),
        )
        self.rooms.before_evict = self.files.settle
        self.before_batch = before_batch
        self.load_reports: list[LoadReport] = []
        self.loads: dict[str, asyncio.Task[LoadReport]] = {}
        self.sessions: set[PeerSession] = set()
        self.started = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._n_connections = 0
        self._handshake_failures = 0
        self._protocol_errors = 0
        self._state_changed = asyncio.Event()  # replaced (after being set) on every change
        self._ended = [0.0, 0.0, 0, 0]  # sync_gen_s, send_s, frames_out, bytes_out
        self.budget = MemoryBudget(self.config.memory_budget)
        self.gc = BlobCollector()
        self._gc_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Daemon:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind the Unix socket (if ``config.socket_path`` is set) and start accepting."""
        if isinstance(self.blob_store, DiskBlobStore):
            swept = await asyncio.to_thread(remove_stale_temp_files, self.blob_store.root)
            if swept:
                log.info("removed %d stale temp files from %s", swept, self.blob_store.root)
        path = self.config.socket_path
        if path is not None:
            self._server = await bind_unix(path, self._on_unix_connection)
        interval = self.config.gc_interval
        if interval is not None and self._gc_task is None:
            self._gc_task = asyncio.create_task(
                self.gc.collect_every(interval, self.collect_garbage), name="blob-gc"
            )
        self.started.set()

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, end every connection and load (graceful up to ``timeout``)."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            path = self.config.socket_path
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            self._server = None
        if self._gc_task is not None:
            self._gc_task.cancel()
            await asyncio.gather(self._gc_task, return_exceptions=True)
            self._gc_task = None
        pending = [*self._connections, *self.loads.values()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        # Unsaved work is saved (or written to a recovery file) before the rooms go.
        await self.rooms.wait_settling()
        for room in self.rooms.rooms():
            try:
                await self.files.settle(room, stopping=True)
            except Exception:  # one room's fault must not stop the others being saved
                log.exception("%s: saving before the stop failed", room.notebook_id)
        self.rooms.close()
        self.gc.close()

    def _on_unix_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Awaitable[None]:
        return self.handle_connection(reader, writer)

    # ------------------------------------------------------------------ connections
    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve one peer over any asyncio stream pair; returns when the peer is gone."""
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        self._n_connections += 1
        name = f"peer-{next(self._ids)}"
        try:
            await self._serve(reader, writer, name)
        except asyncio.CancelledError:
            # Shutdown. Not re-raised: asyncio's server callback would log a cancelled
            # handler task as an error.
            writer.close()
        except Exception:  # never let one peer's fault escape into the server
            log.exception("%s: unexpected error", name)
            writer.close()
        finally:
            if task is not None:
                self._connections.discard(task)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str
    ) -> None:
        conn = Connection(
            Role.SERVER,
            max_frame_size=self.config.max_frame_size,
            max_sync_size=self.config.max_sync_message,
        )
        try:
            handshake, pipelined = await asyncio.wait_for(
                self._read_handshake(reader, conn), self.config.handshake_timeout
            )
            path, notebook_id = _check_notebook_path(
                handshake.path, self.config.max_notebook_bytes, self.notebook_root
            )
        except (asyncio.TimeoutError, CoreError, ConnectionError) as exc:
            self._handshake_failures += 1
            if isinstance(exc, asyncio.TimeoutError):
                msg = f"handshake not received within {self.config.handshake_timeout:g} s"
            elif isinstance(exc, ConnectionError):
                msg = f"connection lost during handshake: {exc}"
            else:
                msg = str(exc)
            await self._reply_error(writer, conn, msg)
            return

        try:  # by file identity: hard links share a room; a changed file may be reloaded
            room = await self.files.open_room(path, notebook_id)
        except CoreError as exc:
            self._handshake_failures += 1
            await self._reply_error(writer, conn, str(exc))
            return
        notebook_id = room.notebook_id  # another name of the file joins the room's id
        will_load = room.needs_load()
        info = p.NotebookConnectionInfo(
            notebook_id=notebook_id, cell_count=0 if will_load else room.doc.cell_count()
        )
        writer.write(conn.send(Hello(info)))
        session = PeerSession(
            self,
            room,
            reader,
            writer,
            conn,
            name,
            pipelined,
            read_chunk=self.config.read_chunk,
            request_queue_size=self.config.request_queue_size,
            frame_progress_timeout=self.config.frame_progress_timeout,
            budget=self.budget,
        )
        self.sessions.add(session)
        self._changed()
        load_task: asyncio.Task[LoadReport] | None = None
        try:
            if will_load and room.try_start_loading():
                load_task = start_load_task(
                    room, self._run_load(room, session), name=f"load-{notebook_id}"
                )
                self.loads[notebook_id] = load_task
            await session.run()
            if session.close_reason is not None:
                self._protocol_errors += 1
        finally:
            self.sessions.discard(session)
            st = session.statistics()
            self._ended[0] += st.sync_gen_s
            self._ended[1] += st.send_s
            self._ended[2] += st.frames_out
            self._ended[3] += st.bytes_out
            self.rooms.release(room)
            self._changed()
        if load_task is not None:
            # The loader notices its peer is gone at the next batch and rolls back.
            await asyncio.wait({load_task})

    async def _read_handshake(
        self, reader: asyncio.StreamReader, conn: Connection
    ) -> tuple[p.OpenNotebook, list[Event]]:
        while True:
            data = await reader.read(self.config.read_chunk)
            if not data:
                conn.receive_data(b"")
                raise HandshakeError("connection closed before the handshake")
            events = conn.receive_data(data)
            if events:
                first = events[0]
                assert isinstance(first, Handshake)  # the connection guarantees it
                # Events pipelined after the handshake go to the session, in order.
                return first.message, events[1:]

    async def _reply_error(
        self, writer: asyncio.StreamWriter, conn: Connection, message: str
    ) -> None:
        info = p.NotebookConnectionInfo(notebook_id="", cell_count=0, error=message)
        with contextlib.suppress(Exception):
            writer.write(conn.send(Hello(info)))
            await asyncio.wait_for(writer.drain(), timeout=1.0)
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), timeout=1.0)

    async def _run_load(self, room: NotebookRoom, session: PeerSession) -> LoadReport:
        hook = self.before_batch

        async def before_batch(index: int) -> None:
            if hook is not None:
                await hook(room, index)

        try:
            # The room is opening: a save of this notebook killed mid-write left its temp file.
            await asyncio.to_thread(_remove_stale_save_temps, room.path)
            # What the load puts stays pinned until its hashes are in the document, so a
            # collection running meanwhile never deletes it (core/blob_gc.py).
            async with self.gc.load_store(self.blob_store) as store:
                report = await stream_load(
                    room,
                    store,
                    self.config.load_options,
                    client_alive=lambda: session.alive,
                    before_batch=before_batch,
                )
        finally:
            self.loads.pop(room.notebook_id, None)
            if room.file is not None:  # the room follows the file it loaded
                self.rooms.rekey(room, room.file.key)
            self.rooms.release(room)
        self.load_reports.append(report)
        self._changed()
        if not report.ok:
            log.info("load of %s failed: %s", room.notebook_id, report.error)
        return report

    # ------------------------------------------------------------------ saving
    async def save_room(self, room: NotebookRoom) -> tuple[Path, int, tuple[str, ...]]:
        """Write the room back to its .ipynb atomically. Refused unless the room is loaded, when
        the file changed on disk (:class:`SaveConflict`, with a ``file_conflict`` broadcast), or
        when the export cannot write it valid (:class:`InvalidNotebook`). Returns the path, the
        bytes written and the export's repairs (PROTOCOL.md 10.6)."""
        state = room.state
        if state.phase is RoomPhase.STREAMING:
            raise SaveRefused("save refused: the notebook is still loading")
        if state.phase is RoomPhase.FAILED:
            raise SaveRefused(f"save refused: the load failed ({state.reason})")
        if state.phase is not RoomPhase.READY:
            raise SaveRefused("save refused: the notebook was never loaded")
        async with room.save_lock:  # one check-and-write at a time per room
            snapshot = room.doc.fork()
            if snapshot.cell_count() == 0:
                # An empty room never overwrites a non-empty file.
                on_disk = await asyncio.to_thread(_cells_on_disk, room.path)
                if on_disk:
                    raise SaveRefused(
                        f"save refused: the room is empty but the file on disk has {on_disk} cells"
                    )
            exported = await asyncio.to_thread(
                export_for_save, snapshot, self.blob_store, read_previous(room.path)
            )
            written = await self.files.write(room, exported.data, snapshot.heads())
        return room.path, written, exported.repairs

    # ------------------------------------------------------------------ blob garbage
    async def collect_garbage(
        self, *, before_sweep: Callable[[], Awaitable[None]] | None = None
    ) -> GcReport:
        """Delete the blobs no open room refers to (mark and sweep: core/blob_gc.py).

        Safe while loads run; skipped (``skipped`` says why) while another process holds the same
        disk store. ``before_sweep`` (tests) runs between the mark and the sweep.

        Raises:
            BlobStoreError: a manifest could not be read; nothing was deleted.
        """
        rooms = self.rooms.rooms
        report = await self.gc.collect(
            self.blob_store, lambda: [r.doc.fork() for r in rooms()], before_sweep=before_sweep
        )
        self._changed()
        return report

    # ------------------------------------------------------------------ waiting
    def _changed(self) -> None:
        """Wake :meth:`wait_for` callers (sessions, rooms or load reports changed)."""
        event, self._state_changed = self._state_changed, asyncio.Event()
        event.set()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, re-checked whenever a session, room or load changes."""
        while not predicate():
            await self._state_changed.wait()

    # ------------------------------------------------------------------ counters
    def room_figures(self) -> dict[str, RoomFigures]:
        """Per open notebook (keyed by notebook id): phase, peers, cells and document counters."""
        return {
            room.notebook_id: RoomFigures(
                notebook_id=room.notebook_id,
                phase=room.state.phase.value,
                reason=room.state.reason,
                peers=room.peer_count,
                cells=room.doc.cell_count(),
                doc=room.doc.statistics(),
                loads_started=room.loads_started,
            )
            for room in self.rooms.rooms()
        }

    def statistics_response(self, request_id: int, room: NotebookRoom) -> p.StatisticsResponse:
        """``statistics`` (PROTOCOL.md 6.7): the room's latest load and the sync counters."""
        report = next(
            (r for r in reversed(self.load_reports) if r.notebook_id == room.notebook_id), None
        )
        stats = self.statistics()
        load = None if report is None else load_figures(report)
        return p.StatisticsResponse(
            request_id, f"nbstream {p.DAEMON_VERSION}", load, stats.sync_gen_s, stats.send_s
        )

    def document_bytes(self, notebook_id: str) -> bytes | None:
        """The saved Automerge document of an open notebook (what ``get_doc_bytes`` answers)."""
        room = self.rooms.get(notebook_id)
        return room.doc.save() if room is not None else None

    def statistics(self) -> DaemonStatistics:
        live = list(self.sessions)
        return DaemonStatistics(
            connections=self._n_connections,
            active_connections=len(self._connections),
            handshake_failures=self._handshake_failures,
            protocol_errors=self._protocol_errors,
            rooms=len(self.rooms),
            loads_started=sum(r.loads_started for r in self.rooms.rooms()),
            loads_failed=sum(1 for r in self.load_reports if not r.ok),
            sync_gen_s=float(self._ended[0]) + sum(s.statistics().sync_gen_s for s in live),
            send_s=float(self._ended[1]) + sum(s.statistics().send_s for s in live),
            frames_out=int(self._ended[2]) + sum(s.statistics().frames_out for s in live),
            bytes_out=int(self._ended[3]) + sum(s.statistics().bytes_out for s in live),
        )


def _check_notebook_path(raw: str, max_bytes: int, root: Path) -> tuple[Path, str]:
    """Validate at handshake time: absolute, inside ``root`` once resolved, an existing readable
    regular file under the cap, named ``*.ipynb``."""
    if not os.path.isabs(raw):
        raise NotebookLoadError(f"notebook path must be absolute: {raw!r}")
    real = confine(raw, root)
    try:
        st = os.stat(raw)
    except FileNotFoundError:
        raise NotebookLoadError(f"no such file: {raw}") from None
    except OSError as exc:
        raise NotebookLoadError(f"cannot open {raw}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise NotebookLoadError(f"{raw} is a directory, not a notebook file")
    if not stat.S_ISREG(st.st_mode):
        raise NotebookLoadError(f"{raw} is not a regular file")
    if st.st_size > max_bytes:
        raise NotebookLoadError(
            f"{raw} is {st.st_size} bytes, over the {max_bytes}-byte notebook size cap"
        )
    if not os.access(raw, os.R_OK):
        raise NotebookLoadError(f"permission denied: {raw}")
    check_suffix(raw, real)
    return Path(real), real


def _write_saved(path: Path, data: bytes, root: Path) -> None:
    """Replace the notebook file (:func:`atomic_write`: all or nothing, owner and mode kept).

    Refused when its directory no longer resolves to itself inside the root (a component swapped
    for a symlink since the handshake); the name itself is replaced, never followed. An I/O
    failure (a full disk) leaves the file as it was and is reported as :class:`SaveFailed`.
    """
    directory = os.path.realpath(path.parent)
    if directory != str(path.parent) or not inside(directory, root):
        raise SaveRefused(
            f"save refused: {path.parent} now resolves to {directory}, "
            f"not to itself inside the notebook root {root}"
        )
    write_notebook_file(path, data)


def _remove_stale_save_temps(path: Path) -> None:
    removed = remove_stale_temps(str(path.parent), f".{path.name}.")
    if removed:
        log.info("removed %d stale temp files of %s", removed, path)


def _cells_on_disk(path: Path) -> int:
    """Cells in the notebook file at ``path``; 0 when it is unreadable or not a notebook."""
    try:
        return len(parse_notebook(read_notebook_file(str(path))).cells)
    except CoreError:
        return 0
