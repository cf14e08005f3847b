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
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .notebook_doc import NotebookDoc

__all__ = ["LoadState", "NotebookRoom", "RoomPhase", "RoomRegistry", "Subscription"]


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

    __slots__ = ("_event", "dirty", "name", "status_dirty")

    def __init__(self, name: str) -> None:
        self.name = name
        self.dirty = True  # a new subscriber needs an initial sync
        self.status_dirty = True  # ... and the current load status
        self._event = asyncio.Event()
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

    # ------------------------------------------------------------------ peers
    def subscribe(self, name: str) -> tuple[int, Subscription]:
        sub = Subscription(name)
        key = self._next_id
        self._next_id += 1
        self._subscribers[key] = sub
        return key, sub

    def unsubscribe(self, key: int) -> None:
        self._subscribers.pop(key, None)

    @property
    def peer_count(self) -> int:
        return len(self._subscribers)

    def notify(self) -> None:
        """The doc changed: every subscriber must sync (coalesced, never blocks)."""
        self.notifications += 1
        for sub in self._subscribers.values():
            sub.mark()

    def _broadcast_status(self) -> None:
        for sub in self._subscribers.values():
            sub.mark_status()

    # ------------------------------------------------------------------ loading claim
    @property
    def state(self) -> LoadState:
        """The load state. Once ``ready``, its counts are the document's cells *now* (peers add
        and delete cells after the load): a status must be true of the document it describes,
        or a client waiting for ``cells_loaded`` cells after a deletion would wait forever."""
        state = self._state
        if state.phase is RoomPhase.READY:
            count = self.doc.cell_count()
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
    """Rooms by notebook id, evicted ``eviction_delay`` seconds after their last peer leaves."""

    def __init__(self, *, eviction_delay: float = 30.0) -> None:
        self.eviction_delay = eviction_delay
        self._rooms: dict[str, NotebookRoom] = {}
        self._evictions: dict[str, asyncio.TimerHandle] = {}
        self.evicted = 0
        self.on_evict: Callable[[NotebookRoom], None] | None = None

    def get_or_create(self, notebook_id: str, path: Path) -> NotebookRoom:
        handle = self._evictions.pop(notebook_id, None)
        if handle is not None:
            handle.cancel()
        room = self._rooms.get(notebook_id)
        if room is None:
            room = NotebookRoom(notebook_id, path)
            self._rooms[notebook_id] = room
        return room

    def get(self, notebook_id: str) -> NotebookRoom | None:
        return self._rooms.get(notebook_id)

    def __len__(self) -> int:
        return len(self._rooms)

    def rooms(self) -> list[NotebookRoom]:
        return list(self._rooms.values())

    def release(self, room: NotebookRoom) -> None:
        """Call when a peer left; schedules eviction once the room has no peers."""
        if room.peer_count > 0 or room.is_loading:
            return
        if self._rooms.get(room.notebook_id) is not room:
            return
        old = self._evictions.pop(room.notebook_id, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._evictions[room.notebook_id] = loop.call_later(self.eviction_delay, self._evict, room)

    def _evict(self, room: NotebookRoom) -> None:
        self._evictions.pop(room.notebook_id, None)
        if room.peer_count > 0 or room.is_loading:
            return
        if self._rooms.get(room.notebook_id) is room:
            del self._rooms[room.notebook_id]
            self.evicted += 1
            if self.on_evict is not None:
                self.on_evict(room)

    def close(self) -> None:
        for handle in self._evictions.values():
            handle.cancel()
        self._evictions.clear()
        self._rooms.clear()
