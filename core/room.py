"""A notebook room: one Automerge doc, its lock, its peers, and the loading claim.

Change notification is *coalescing*: :meth:`NotebookRoom.notify` only sets a dirty flag on every
subscriber, and each subscriber's own writer generates one sync message for everything that
changed since it last wrote. A slow peer therefore never blocks the others (nobody waits for it),
never grows an unbounded queue, and never misses the final state (its flag stays set until it has
caught up).

The loading claim is a small state machine::

    empty ──try_start_loading──▶ streaming ──finish_loading(ok)──▶ ready
      ▲                              │
      └──────── failed ◀─finish_loading(error)

Only one loader wins the claim (asyncio is single-threaded, so the check-and-set is atomic), the
winner re-checks that the room is still unloaded (no double load), and the loader releases the
claim in ``finally`` so a dying loader cannot wedge the room.

A room knows what its file was when it loaded or last saved it (:attr:`NotebookRoom.file`, a
:class:`~core.file_identity.FileIdentity`) and the document heads at that moment: it is *dirty*
when the heads moved since. The registry keys rooms by the file's ``(st_dev, st_ino)``, so two
hard-linked names of one file are one room, and it follows the file through saves (an atomic
save gives it a new inode) with :meth:`RoomRegistry.rekey`; the names a room was opened by find
it too, after an outside program replaced the file.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .file_identity import FileIdentity
from .notebook_doc import NotebookDoc

__all__ = ["LoadState", "NotebookRoom", "RoomPhase", "RoomRegistry", "Subscription"]

log = logging.getLogger("nbstream.daemon")


class RoomPhase(str, enum.Enum):
    """The room's own load state. The wire's ``core.protocol.LoadPhase`` has no ``empty``: a room
    is empty only until its first opener claims the load (the session maps one to the other)."""

    EMPTY = "empty"
    STREAMING = "streaming"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class LoadState:
    phase: RoomPhase
    reason: str | None = None
    cells_loaded: int = 0
    total_cells: int | None = None


class Subscription:
    """One peer's view of the room's changes: a dirty flag plus a wake-up event."""

    __slots__ = ("_event", "broadcasts", "dirty", "name", "status_dirty")

    def __init__(self, name: str) -> None:
        self.name = name
        self.dirty = True  # a new subscriber needs an initial sync
        self.status_dirty = True  # ... and the current load status
        self.broadcasts: deque[dict[str, Any]] = deque()  # BROADCAST bodies still to send
        self._event = asyncio.Event()
        self._event.set()

    def post(self, message: dict[str, Any]) -> None:
        self.broadcasts.append(message)
        self._event.set()

    def mark(self) -> None:
        self.dirty = True
        self._event.set()

    def mark_status(self) -> None:
        self.status_dirty = True
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event.clear()


class NotebookRoom:
    """The shared state of everyone who opened one notebook path."""

    def __init__(self, notebook_id: str, path: Path) -> None:
        self.notebook_id = notebook_id
        self.path = path
        self.doc = NotebookDoc(notebook_id)
        self.lock = asyncio.Lock()
        self._subscribers: dict[int, Subscription] = {}
        self._next_id = 0
        self._state = LoadState(RoomPhase.EMPTY)
        # The ready state's cell count, as of the last notify(): every write to the document is
        # followed by one, and a count walks the cells list (19 us at 3200 cells), which every
        # peer's writer would otherwise repeat after every edit.
        self._ready_count: int | None = None
        self._loaded_event = asyncio.Event()
        self._waiters: list[asyncio.Future[LoadState]] = []  # for the end of this load
        self.notifications = 0
        self.loads_started = 0
        # What the current (or last) load wrote, so a rollback removes exactly that: the map
        # object of every cell it inserted, in order, and the notebook metadata it put.
        self.load_cells: list[bytes] = []
        self.load_metadata: dict[str, str] = {}
        self.load_extra = False  # the load wrote the file's unmodelled top-level keys
        self.load_next_index = 0  # where the load's next batch goes, unless peers moved cells
        # True while the loader appends a large source in steps: the one time the writers hold
        # a large message until its peer answers (session.py), so ordinary loads keep a
        # deterministic frame count.
        self.writing_large_source = False
        self.key: Hashable = notebook_id  # the registry's key: (st_dev, st_ino) in the daemon
        self.file: FileIdentity | None = None  # the file as loaded or last saved
        self._clean_heads: list[bytes] | None = None  # heads then; None: no clean point
        self.edits = 0  # sync messages from peers that changed the doc
        self._edits_at_load = 0
        self.save_lock = asyncio.Lock()  # one save (check + write) or file check at a time
        self.opening = 0  # handshakes resolving this room, not yet subscribed: never evicted
        self.conflict: dict[str, Any] | None = None  # the last file_conflict broadcast, if current
        self.recovered_heads: list[bytes] | None = None  # heads last written to a recovery file
        self.recovered_path: Path | None = None  # ... and where

    # ------------------------------------------------------------------ peers
    def subscribe(self, name: str) -> tuple[int, Subscription]:
        sub = Subscription(name)
        key = self._next_id
        self._next_id += 1
        self._subscribers[key] = sub
        if self.conflict is not None:  # a peer joining a conflicted room is told at once
            sub.post(self.conflict)
        return key, sub

    def unsubscribe(self, key: int) -> None:
        self._subscribers.pop(key, None)

    @property
    def peer_count(self) -> int:
        return len(self._subscribers)

    def notify(self) -> None:
        """The doc changed: every subscriber must sync (coalesced, never blocks)."""
        self.notifications += 1
        self._ready_count = None
        for sub in self._subscribers.values():
            sub.mark()

    def peer_edited(self) -> None:
        """A peer's sync message changed the doc: count it (dirtiness) and notify."""
        self.edits += 1
        self.notify()

    def broadcast(self, message: dict[str, Any]) -> None:
        """Send every peer of the room one BROADCAST frame with body ``message``."""
        for sub in self._subscribers.values():
            sub.post(message)

    def _broadcast_status(self) -> None:
        for sub in self._subscribers.values():
            sub.mark_status()

    # ------------------------------------------------------------------ the file
    def record_load(self, identity: FileIdentity | None) -> None:
        """The load read ``identity``. The doc is clean unless a peer edited during the load."""
        self.file = identity
        clean = self.edits == self._edits_at_load
        self._clean_heads = self.doc.heads() if clean else None
        self.conflict = None

    def record_save(self, identity: FileIdentity, heads: list[bytes]) -> None:
        """The doc at ``heads`` was written to the file, now ``identity``."""
        self.file = identity
        self._clean_heads = heads
        self.conflict = None

    def is_dirty(self) -> bool:
        """True when the doc has changes that neither came from the file nor were saved to it."""
        if self._clean_heads is None:
            return True
        return sorted(self.doc.heads()) != sorted(self._clean_heads)

    # ------------------------------------------------------------------ loading claim
    @property
    def state(self) -> LoadState:
        """The load state. Once ``ready``, its counts are the document's cells *now* (peers add
        and delete cells after the load): a status must be true of the document it describes,
        or a client waiting for ``cells_loaded`` cells after a deletion would wait forever."""
        state = self._state
        if state.phase is RoomPhase.READY:
            if self._ready_count is None:
                self._ready_count = self.doc.cell_count()
            count = self._ready_count
            if count != state.cells_loaded:
                return LoadState(RoomPhase.READY, None, count, count)
        return state

    @property
    def is_loading(self) -> bool:
        return self._state.phase is RoomPhase.STREAMING

    def needs_load(self) -> bool:
        """True when an opener should try to load (never loaded, or the last load failed)."""
        return self._state.phase in (RoomPhase.EMPTY, RoomPhase.FAILED)

    def try_start_loading(self) -> bool:
        """Atomically claim the load. False if another loader holds it or the room is loaded.

        A room still holding cells of an earlier load (its rollback could not delete them) is
        never loaded again: that would duplicate them. Cells peers added are no obstacle: the
        load inserts the file's cells before them.
        """
        if not self.needs_load():
            return False
        if self.load_cells:  # defensive: a failed load's rollback deletes its cells
            return False
        self.load_metadata.clear()
        self.load_extra = False
        self.load_next_index = 0
        self.loads_started += 1
        if self.doc.cell_count() == 0 and not self.doc.get_notebook_metadata():
            # Nothing a peer wrote is in the doc: the load's end can be a clean point. (A doc
            # still holding a peer's work keeps the old count, so the load ends dirty.)
            self._edits_at_load = self.edits
        self._loaded_event.clear()
        self._state = LoadState(RoomPhase.STREAMING)
        self._broadcast_status()
        return True

    def report_progress(self, cells_loaded: int, total_cells: int | None) -> None:
        """The load has inserted ``cells_loaded`` cells: every peer is sent the new status."""
        if self._state.phase is not RoomPhase.STREAMING:
            return
        new = LoadState(RoomPhase.STREAMING, None, cells_loaded, total_cells)
        if new != self._state:
            self._state = new
            self._broadcast_status()

    def finish_loading(self, *, error: str | None = None) -> None:
        """Release the claim: ``ready`` on success, ``failed`` (with ``error``) otherwise."""
        if self._state.phase is not RoomPhase.STREAMING:
            return
        if error is None:
            count = self.doc.cell_count()
            self._state = LoadState(RoomPhase.READY, None, count, count)
            self._ready_count = count
        else:
            self._state = LoadState(RoomPhase.FAILED, error, 0, self._state.total_cells)
        self._loaded_event.set()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(self._state)
        self._broadcast_status()

    async def wait_load_finished(self) -> LoadState:
        """The outcome (ready or failed) of the load running now, or of the next one if none is
        running and none has finished yet; the outcome of the last load if one has finished.

        The state returned is the one the load finished with, even if a new load has been
        claimed by the time the waiter runs."""
        if self._loaded_event.is_set():
            return self._state
        waiter: asyncio.Future[LoadState] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return await waiter


class RoomRegistry:
    """Rooms by file identity, evicted ``eviction_delay`` seconds after their last peer leaves.

    The key is what the daemon passes (``(st_dev, st_ino)`` of the file; the notebook id when
    none is given); :meth:`by_name` finds a room by a path it was opened by. Before a room is
    dropped, ``before_evict`` (if set) runs: it saves or recovers unsaved work, and a False
    answer keeps the room for another ``eviction_delay``."""

    def __init__(self, *, eviction_delay: float = 30.0) -> None:
        self.eviction_delay = eviction_delay
        self._all: dict[NotebookRoom, None] = {}  # every room, in creation order
        self._rooms: dict[Hashable, NotebookRoom] = {}  # by key
        self._names: dict[Path, NotebookRoom] = {}
        self._evictions: dict[NotebookRoom, asyncio.TimerHandle] = {}
        self._settling: dict[NotebookRoom, asyncio.Task[None]] = {}
        self.evicted = 0
        self.on_evict: Callable[[NotebookRoom], None] | None = None
        self.before_evict: Callable[[NotebookRoom], Awaitable[bool]] | None = None

    def get_or_create(
        self, notebook_id: str, path: Path, key: Hashable | None = None
    ) -> NotebookRoom:
        """The room of ``key`` (default: ``notebook_id``), created if there is none."""
        room = self._rooms.get(notebook_id if key is None else key)
        if room is None:
            return self.create(notebook_id, path, key)
        self.hold(room)
        self.add_name(room, path)
        return room

    def create(self, notebook_id: str, path: Path, key: Hashable | None = None) -> NotebookRoom:
        """A new room for ``key``; a room that held the key keeps only its names."""
        room = NotebookRoom(notebook_id, path)
        room.key = notebook_id if key is None else key
        self._all[room] = None
        self._rooms[room.key] = room
        self.add_name(room, path)
        return room

    def by_key(self, key: Hashable) -> NotebookRoom | None:
        return self._rooms.get(key)

    def by_name(self, path: Path) -> NotebookRoom | None:
        return self._names.get(path)

    def hold(self, room: NotebookRoom) -> None:
        """A peer is about to join ``room``: its pending eviction is cancelled."""
        self._cancel_eviction(room)

    def add_name(self, room: NotebookRoom, path: Path) -> None:
        self._names[path] = room

    def names(self, room: NotebookRoom) -> list[Path]:
        """Every path ``room`` was opened by (hard links of its file, unless changed since)."""
        return [path for path, r in self._names.items() if r is room]

    def forget_name(self, room: NotebookRoom, path: Path) -> None:
        if self._names.get(path) is room:
            del self._names[path]

    def rekey(self, room: NotebookRoom, key: Hashable) -> None:
        """``room``'s file is now ``key`` (a save replaced it, a load read a new one)."""
        if room not in self._all:
            return
        if self._rooms.get(room.key) is room:
            del self._rooms[room.key]
        room.key = key
        self._rooms[key] = room  # a stale holder (a reused inode number) loses it

    def drop(self, room: NotebookRoom) -> None:
        """Remove ``room`` now (its file changed outside and it holds nothing unsaved)."""
        self._cancel_eviction(room)
        self._all.pop(room, None)
        if self._rooms.get(room.key) is room:
            del self._rooms[room.key]
        for path in self.names(room):
            del self._names[path]

    def get(self, notebook_id: str) -> NotebookRoom | None:
        return next((r for r in self._all if r.notebook_id == notebook_id), None)

    def __len__(self) -> int:
        return len(self._all)

    def __contains__(self, room: object) -> bool:
        return room in self._all

    def rooms(self) -> list[NotebookRoom]:
        return list(self._all)

    def _cancel_eviction(self, room: NotebookRoom) -> None:
        handle = self._evictions.pop(room, None)
        if handle is not None:
            handle.cancel()

    def _idle(self, room: NotebookRoom) -> bool:
        return room.peer_count == 0 and not room.is_loading and room.opening == 0

    def release(self, room: NotebookRoom) -> None:
        """Call when a peer left; schedules eviction once the room has no peers."""
        if not self._idle(room) or room not in self._all:
            return
        self._cancel_eviction(room)
        loop = asyncio.get_running_loop()
        self._evictions[room] = loop.call_later(self.eviction_delay, self._evict, room)

    def _evict(self, room: NotebookRoom) -> None:
        self._evictions.pop(room, None)
        if not self._idle(room) or room not in self._all:
            return
        if self.before_evict is None:
            self._remove(room)
        elif room not in self._settling:
            task = asyncio.get_running_loop().create_task(self._settle_then_evict(room))
            self._settling[room] = task

    async def _settle_then_evict(self, room: NotebookRoom) -> None:
        try:
            assert self.before_evict is not None
            settled = await self.before_evict(room)
        except Exception:  # a bug there must not drop the room, nor leave it unevictable
            log.exception("%s: settling before eviction failed; kept", room.notebook_id)
            settled = False
        finally:
            self._settling.pop(room, None)
        if not self._idle(room) or room not in self._all:
            return  # a peer came back meanwhile: the room lives on
        if settled:
            self._remove(room)
        else:  # its work could be written nowhere: keep it, try again later
            self.release(room)

    def _remove(self, room: NotebookRoom) -> None:
        self.drop(room)
        self.evicted += 1
        if self.on_evict is not None:
            self.on_evict(room)

    async def wait_settling(self) -> None:
        """Wait for the evictions whose ``before_evict`` is running."""
        while self._settling:
            await asyncio.wait(list(self._settling.values()))

    def close(self) -> None:
        for handle in self._evictions.values():
            handle.cancel()
        self._evictions.clear()
        self._all.clear()
        self._rooms.clear()
        self._names.clear()
