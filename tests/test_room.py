"""NotebookRoom and RoomRegistry on their own: the loading claim, subscriptions, eviction.

The daemon tests (test_daemon.py, test_faults.py) exercise these end to end; here every
transition of the load-phase state machine and every registry rule is pinned down directly, so a
regression names the rule it broke. No test sleeps for a fixed time: "nothing happened" is
checked either by yielding to the loop (a waiter on an unset event cannot finish) or, for
eviction timers, against a *barrier* room evicted strictly later than the timer under test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.notebook_doc import CellSnapshot
from core.room import LoadState, NotebookRoom, RoomPhase, RoomRegistry, Subscription

WAIT = 30.0  # safety timeout for every condition wait (never a sleep)
PATH = Path("/nonexistent/nb.ipynb")


def make_room(notebook_id: str = "nb") -> NotebookRoom:
    return NotebookRoom(notebook_id, PATH)


def add_cells(room: NotebookRoom, n: int) -> None:
    start = room.doc.cell_count()
    room.doc.add_cells_full(
        start, [CellSnapshot(id=f"c{start + i}", cell_type="code") for i in range(n)]
    )


def clear_flags(*subs: Subscription) -> None:
    for sub in subs:
        sub.dirty = sub.status_dirty = False


async def yield_loop(times: int = 5) -> None:
    """Give every ready callback a chance to run (not a timed sleep)."""
    for _ in range(times):
        await asyncio.sleep(0)


async def consumed(sub: Subscription) -> None:
    """Take the initial wake-up of a new subscription and clear its flags."""
    await asyncio.wait_for(sub.wait(), WAIT)
    clear_flags(sub)


# =========================================================================== the load phase
def test_a_new_room_is_empty_and_needs_a_load() -> None:
    room = make_room()
    assert room.state == LoadState(RoomPhase.EMPTY, None, 0, None)
    assert room.needs_load() and not room.is_loading
    assert room.loads_started == 0 and room.notifications == 0 and room.peer_count == 0
    assert room.doc.cell_count() == 0 and room.notebook_id == "nb" and room.path == PATH


def test_the_first_claim_wins_and_starts_streaming() -> None:
    room = make_room()
    assert room.try_start_loading() is True
    assert room.state == LoadState(RoomPhase.STREAMING, None, 0, None)
    assert room.is_loading and not room.needs_load()
    assert room.loads_started == 1


def test_a_second_claim_while_streaming_is_refused() -> None:
    room = make_room()
    assert room.try_start_loading()
    room.report_progress(3, 9)
    before = room.state
    assert room.try_start_loading() is False
    assert room.try_start_loading() is False
    assert room.state == before and room.is_loading
    assert room.loads_started == 1


def test_report_progress_is_stored_while_streaming() -> None:
    room = make_room()
    assert room.try_start_loading()
    room.report_progress(0, 10)
    assert room.state == LoadState(RoomPhase.STREAMING, None, 0, 10)
    room.report_progress(3, 10)
    assert room.state == LoadState(RoomPhase.STREAMING, None, 3, 10)
    room.report_progress(6, None)  # total unknown is allowed
    assert room.state == LoadState(RoomPhase.STREAMING, None, 6, None)
    assert room.is_loading


@pytest.mark.parametrize("phase", ["empty", "ready", "failed"])
def test_report_progress_outside_streaming_changes_nothing(phase: str) -> None:
    room = make_room()
    if phase != "empty":
        assert room.try_start_loading()
        room.finish_loading(error=None if phase == "ready" else "boom")
    before = room.state
    room.report_progress(5, 10)
    assert room.state == before
    assert room.state.phase.value == phase


def test_finish_ok_makes_the_room_ready_with_the_doc_cell_count() -> None:
    room = make_room()
    assert room.try_start_loading()
    room.report_progress(2, 10)
    add_cells(room, 4)
    room.finish_loading()
    # READY counts what the document holds, not what was last reported.
    assert room.state == LoadState(RoomPhase.READY, None, 4, 4)
    assert not room.is_loading and not room.needs_load()


def test_finish_with_an_error_fails_keeping_the_total_and_the_reason() -> None:
    room = make_room()
    assert room.try_start_loading()
    room.report_progress(6, 12)
    room.finish_loading(error="blob store write failed")
    assert room.state == LoadState(RoomPhase.FAILED, "blob store write failed", 0, 12)
    assert not room.is_loading and room.needs_load()


def test_finish_loading_when_empty_is_a_no_op() -> None:
    room = make_room()
    room.finish_loading()
    assert room.state == LoadState(RoomPhase.EMPTY)
    room.finish_loading(error="boom")
    assert room.state == LoadState(RoomPhase.EMPTY)
    assert room.needs_load() and room.try_start_loading()


def test_finish_loading_when_ready_is_a_no_op() -> None:
    room = make_room()
    assert room.try_start_loading()
    add_cells(room, 2)
    room.finish_loading()
    ready = room.state
    room.finish_loading(error="late failure")
    assert room.state == ready == LoadState(RoomPhase.READY, None, 2, 2)
    add_cells(room, 1)
    room.notify()  # every write to the document is followed by one (NotebookRoom.notify)
    room.finish_loading()
    # Still ready; the counts are the document's now (a status must be true of the document).
    assert room.state == LoadState(RoomPhase.READY, None, 3, 3)


def test_finish_loading_when_failed_is_a_no_op() -> None:
    room = make_room()
    assert room.try_start_loading()
    room.finish_loading(error="first")
    room.finish_loading(error="second")
    room.finish_loading()
    assert room.state == LoadState(RoomPhase.FAILED, "first", 0, None)


def test_ready_refuses_a_new_claim() -> None:
    room = make_room()
    assert room.try_start_loading()
    room.finish_loading()
    assert room.try_start_loading() is False
    assert room.state.phase is RoomPhase.READY and room.loads_started == 1


def test_failed_allows_a_new_claim_that_starts_afresh() -> None:
    room = make_room()
    assert room.try_start_loading()
    room.report_progress(3, 9)
    room.finish_loading(error="boom")
    assert room.try_start_loading() is True
    # The new load starts from scratch: no reason, no progress, no total.
    assert room.state == LoadState(RoomPhase.STREAMING, None, 0, None)
    assert room.loads_started == 2
    assert room.try_start_loading() is False
    add_cells(room, 3)
    room.finish_loading()
    assert room.state == LoadState(RoomPhase.READY, None, 3, 3)


def test_a_room_still_holding_a_failed_loads_cells_is_never_claimed() -> None:
    room = make_room()
    assert room.try_start_loading()
    room.load_cells.extend(c.key for c in room.doc.add_cells_full(0, [CellSnapshot("a", "code")]))
    room.finish_loading(error="boom")  # as if the rollback could not delete them
    before = room.state
    assert room.try_start_loading() is False
    assert room.state == before and room.loads_started == 1


@pytest.mark.parametrize("phase", ["empty", "failed"])
def test_cells_peers_added_do_not_block_a_load(phase: str) -> None:
    room = make_room()
    if phase == "failed":
        assert room.try_start_loading()
        room.finish_loading(error="boom")
    add_cells(room, 1)  # a peer's cell: the load inserts the file's cells before it
    assert room.try_start_loading() is True
    assert room.loads_started == (2 if phase == "failed" else 1)


# =========================================================================== waiting for the load
async def test_wait_load_finished_wakes_every_waiter_on_ready() -> None:
    room = make_room()
    waiters = [asyncio.create_task(room.wait_load_finished()) for _ in range(3)]
    await yield_loop()
    assert not any(w.done() for w in waiters)  # EMPTY: nothing has finished yet
    assert room.try_start_loading()
    await yield_loop()
    assert not any(w.done() for w in waiters)  # STREAMING is not finished
    add_cells(room, 2)
    room.finish_loading()
    states = await asyncio.wait_for(asyncio.gather(*waiters), WAIT)
    assert states == [LoadState(RoomPhase.READY, None, 2, 2)] * 3


async def test_wait_load_finished_wakes_waiters_on_failure() -> None:
    room = make_room()
    assert room.try_start_loading()
    room.report_progress(0, 5)
    waiter = asyncio.create_task(room.wait_load_finished())
    await yield_loop()
    assert not waiter.done()
    room.finish_loading(error="bad json")
    state = await asyncio.wait_for(waiter, WAIT)
    assert state == LoadState(RoomPhase.FAILED, "bad json", 0, 5)


async def test_wait_load_finished_returns_at_once_when_finished() -> None:
    room = make_room()
    assert room.try_start_loading()
    room.finish_loading()
    state = await asyncio.wait_for(room.wait_load_finished(), WAIT)
    assert state.phase is RoomPhase.READY


async def test_a_no_op_finish_does_not_wake_waiters() -> None:
    room = make_room()
    waiter = asyncio.create_task(room.wait_load_finished())
    room.finish_loading()  # EMPTY: no-op, so not "finished"
    await yield_loop()
    assert not waiter.done()
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)


async def test_a_new_claim_after_failure_re_arms_the_wait() -> None:
    room = make_room()
    assert room.try_start_loading()
    room.finish_loading(error="first")
    assert (await asyncio.wait_for(room.wait_load_finished(), WAIT)).phase is RoomPhase.FAILED
    assert room.try_start_loading()
    waiter = asyncio.create_task(room.wait_load_finished())
    await yield_loop()
    assert not waiter.done()  # the retry has not finished yet
    room.finish_loading()
    state = await asyncio.wait_for(waiter, WAIT)
    assert state == LoadState(RoomPhase.READY, None, 0, 0)


async def test_wait_load_finished_returns_the_outcome_that_woke_it() -> None:
    room = make_room()
    assert room.try_start_loading()
    waiter = asyncio.create_task(room.wait_load_finished())
    await yield_loop()
    room.finish_loading(error="boom")
    assert room.try_start_loading()  # a retrying opener claims before the waiter runs
    state = await asyncio.wait_for(waiter, WAIT)
    assert state.phase in (RoomPhase.READY, RoomPhase.FAILED), state


# =========================================================================== subscriptions
async def test_a_new_subscription_is_dirty_and_wakes_at_once() -> None:
    room = make_room()
    key, sub = room.subscribe("alice")
    assert sub.name == "alice" and sub.dirty and sub.status_dirty
    assert room.peer_count == 1
    await asyncio.wait_for(sub.wait(), WAIT)  # the initial sync: no mark needed
    assert isinstance(key, int)


async def test_many_notifies_coalesce_into_one_wakeup() -> None:
    room = make_room()
    _, sub = room.subscribe("alice")
    await consumed(sub)
    wakeups = 0

    async def writer() -> None:
        nonlocal wakeups
        while True:
            await sub.wait()
            wakeups += 1
            clear_flags(sub)

    task = asyncio.create_task(writer())
    await yield_loop()
    assert wakeups == 0  # nothing changed since the initial sync
    for _ in range(25):
        room.notify()
    assert sub.dirty and not sub.status_dirty
    await yield_loop()
    assert wakeups == 1 and not sub.dirty
    assert room.notifications == 25
    room.notify()
    await yield_loop()
    assert wakeups == 2
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_notify_marks_every_subscriber_and_counts_without_any() -> None:
    room = make_room()
    room.notify()
    assert room.notifications == 1
    subs = [room.subscribe(f"p{i}")[1] for i in range(3)]
    for sub in subs:
        await consumed(sub)
    room.notify()
    assert room.notifications == 2
    assert all(s.dirty and not s.status_dirty for s in subs)
    for sub in subs:
        await asyncio.wait_for(sub.wait(), WAIT)


async def test_mark_status_sets_only_the_status_flag_and_wakes() -> None:
    sub = Subscription("alice")
    await consumed(sub)
    waiter = asyncio.create_task(sub.wait())
    await yield_loop()
    assert not waiter.done()
    sub.mark_status()
    await asyncio.wait_for(waiter, WAIT)
    assert sub.status_dirty and not sub.dirty
    clear_flags(sub)
    sub.mark()
    assert sub.dirty and not sub.status_dirty


async def test_the_claim_and_its_release_mark_every_subscriber_s_status() -> None:
    room = make_room()
    subs = [room.subscribe(f"p{i}")[1] for i in range(2)]
    for sub in subs:
        await consumed(sub)
    assert room.try_start_loading()
    assert all(s.status_dirty and not s.dirty for s in subs)
    clear_flags(*subs)
    assert room.try_start_loading() is False  # refused: nothing changed, nothing to send
    assert not any(s.status_dirty for s in subs)
    room.finish_loading(error="boom")
    assert all(s.status_dirty and not s.dirty for s in subs)
    clear_flags(*subs)
    room.finish_loading()  # a no-op release changes nothing either
    assert not any(s.status_dirty for s in subs)
    for sub in subs:
        await asyncio.wait_for(sub.wait(), WAIT)


async def test_unsubscribe_stops_the_marks_and_the_count() -> None:
    room = make_room()
    key_a, a = room.subscribe("a")
    key_b, b = room.subscribe("b")
    assert key_a != key_b and room.peer_count == 2
    await consumed(a)
    await consumed(b)
    room.unsubscribe(key_a)
    assert room.peer_count == 1
    room.notify()
    assert not a.dirty and b.dirty
    room.unsubscribe(key_a)  # twice: a no-op
    room.unsubscribe(12345)  # unknown: a no-op
    assert room.peer_count == 1
    key_c, _ = room.subscribe("c")
    assert key_c not in (key_a, key_b)  # keys are never reused
    assert room.peer_count == 2
    room.unsubscribe(key_b)
    room.unsubscribe(key_c)
    assert room.peer_count == 0


# =========================================================================== the registry
class Evictions:
    """on_evict recorder: the rooms evicted, in order, and a way to wait for one."""

    def __init__(self, registry: RoomRegistry) -> None:
        self.rooms: list[NotebookRoom] = []
        self._events: dict[int, asyncio.Event] = {}
        registry.on_evict = self._on_evict

    def _event(self, room: NotebookRoom) -> asyncio.Event:
        return self._events.setdefault(id(room), asyncio.Event())

    def _on_evict(self, room: NotebookRoom) -> None:
        self.rooms.append(room)
        self._event(room).set()

    async def wait_for(self, room: NotebookRoom) -> None:
        await asyncio.wait_for(self._event(room).wait(), WAIT)


async def barrier(registry: RoomRegistry, ev: Evictions, delay: float) -> NotebookRoom:
    """Release a fresh room with ``delay`` and wait until it is evicted: every eviction timer
    scheduled earlier with a shorter delay has fired (or was cancelled) by then."""
    saved = registry.eviction_delay
    registry.eviction_delay = delay
    room = registry.get_or_create(f"barrier-{len(ev.rooms)}", PATH)
    registry.release(room)
    registry.eviction_delay = saved
    await ev.wait_for(room)
    return room


SHORT, LONGER = 0.001, 0.05


@pytest.fixture
async def registry() -> AsyncIterator[RoomRegistry]:
    reg = RoomRegistry(eviction_delay=SHORT)
    yield reg
    reg.close()


def test_the_default_eviction_delay() -> None:
    assert RoomRegistry().eviction_delay == 30.0


async def test_same_id_gives_the_same_room(registry: RoomRegistry) -> None:
    a = registry.get_or_create("nb-a", Path("/x/a.ipynb"))
    assert registry.get_or_create("nb-a", Path("/x/a.ipynb")) is a
    b = registry.get_or_create("nb-b", Path("/x/b.ipynb"))
    assert b is not a and b.path == Path("/x/b.ipynb")
    assert registry.get("nb-a") is a and registry.get("nb-b") is b
    assert registry.get("nb-c") is None
    assert len(registry) == 2 and set(registry.rooms()) == {a, b}


async def test_eviction_after_the_last_release(registry: RoomRegistry) -> None:
    ev = Evictions(registry)
    room = registry.get_or_create("nb", PATH)
    key1, _ = room.subscribe("a")
    key2, _ = room.subscribe("b")
    room.unsubscribe(key1)
    registry.release(room)  # one peer left: nothing scheduled ...
    room.unsubscribe(key2)  # ... so its leaving without a release does not evict
    await barrier(registry, ev, LONGER)
    assert registry.get("nb") is room
    key3, _ = room.subscribe("c")
    room.unsubscribe(key3)
    registry.release(room)  # the last peer left, with a release
    assert registry.get("nb") is room  # not synchronously: after the delay
    await ev.wait_for(room)
    assert registry.get("nb") is None and len(registry) == 0
    assert registry.evicted == 2  # the barrier and the room
    fresh = registry.get_or_create("nb", PATH)
    assert fresh is not room and fresh.state.phase is RoomPhase.EMPTY


async def test_eviction_waits_for_its_delay() -> None:
    registry = RoomRegistry(eviction_delay=LONGER)
    ev = Evictions(registry)
    room = registry.get_or_create("nb", PATH)
    registry.release(room)
    early = await barrier(registry, ev, SHORT)  # released later, but with a shorter delay
    assert ev.rooms == [early] and registry.get("nb") is room
    await ev.wait_for(room)
    assert ev.rooms == [early, room] and registry.get("nb") is None
    registry.close()


async def test_re_acquiring_before_the_eviction_cancels_it(registry: RoomRegistry) -> None:
    ev = Evictions(registry)
    room = registry.get_or_create("nb", PATH)
    registry.release(room)
    assert registry.get_or_create("nb", PATH) is room
    sentinel = await barrier(registry, ev, LONGER)
    assert registry.get("nb") is room
    assert ev.rooms == [sentinel] and registry.evicted == 1
    registry.release(room)  # released again: this time it goes
    await ev.wait_for(room)
    assert registry.get("nb") is None and registry.evicted == 2


async def test_a_peer_joining_before_the_timer_keeps_the_room(registry: RoomRegistry) -> None:
    ev = Evictions(registry)
    room = registry.get_or_create("nb", PATH)
    registry.release(room)
    room.subscribe("late")  # subscribed without get_or_create: the timer re-checks
    sentinel = await barrier(registry, ev, LONGER)
    assert registry.get("nb") is room and ev.rooms == [sentinel]


async def test_a_loading_room_is_not_evicted(registry: RoomRegistry) -> None:
    ev = Evictions(registry)
    room = registry.get_or_create("nb", PATH)
    assert room.try_start_loading()
    registry.release(room)  # no peer, but loading: not scheduled ...
    room.finish_loading()  # ... so the end of the load alone does not evict it
    await barrier(registry, ev, LONGER)
    assert registry.get("nb") is room
    assert room.try_start_loading() is False  # READY now
    other = registry.get_or_create("nb2", PATH)
    registry.release(other)
    assert other.try_start_loading()  # claimed after scheduling: the timer re-checks
    await barrier(registry, ev, LONGER)
    assert registry.get("nb2") is other
    registry.release(room)  # released after its load: it goes
    await ev.wait_for(room)
    assert registry.get("nb") is None and registry.get("nb2") is other


async def test_releasing_twice_evicts_once(registry: RoomRegistry) -> None:
    ev = Evictions(registry)
    room = registry.get_or_create("nb", PATH)
    registry.release(room)
    registry.release(room)
    await ev.wait_for(room)
    sentinel = await barrier(registry, ev, LONGER)
    assert ev.rooms == [room, sentinel] and registry.evicted == 2


async def test_releasing_a_stale_room_does_not_evict_its_successor(
    registry: RoomRegistry,
) -> None:
    ev = Evictions(registry)
    old = registry.get_or_create("nb", PATH)
    registry.release(old)
    await ev.wait_for(old)
    new = registry.get_or_create("nb", PATH)
    assert new is not old
    registry.release(old)  # e.g. a late peer of the evicted room leaving
    sentinel = await barrier(registry, ev, LONGER)
    assert registry.get("nb") is new and ev.rooms == [old, sentinel]
    registry.release(new)
    registry.release(old)  # ... must not cancel the successor's own eviction either
    await ev.wait_for(new)
    assert registry.get("nb") is None and ev.rooms == [old, sentinel, new]


async def test_on_evict_is_read_when_the_timer_fires() -> None:
    registry = RoomRegistry(eviction_delay=SHORT)
    room = registry.get_or_create("nb", PATH)
    registry.release(room)
    ev = Evictions(registry)  # installed after the eviction was scheduled
    await ev.wait_for(room)
    assert registry.get("nb") is None and registry.evicted == 1 and ev.rooms == [room]
    registry.close()


async def test_close_cancels_pending_evictions_and_forgets_every_room() -> None:
    registry = RoomRegistry(eviction_delay=SHORT)
    ev = Evictions(registry)
    a = registry.get_or_create("a", PATH)
    b = registry.get_or_create("b", PATH)
    b.subscribe("peer")
    registry.release(a)
    registry.close()
    assert len(registry) == 0 and registry.get("a") is None and registry.get("b") is None
    sentinel = await barrier(registry, ev, LONGER)
    assert ev.rooms == [sentinel] and registry.evicted == 1  # a's timer never fired
    registry.close()
