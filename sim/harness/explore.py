"""``nbstream explore``: random schedules against the bundled daemon, every invariant checked,
each on the virtual clock, a failing one shrunk to a minimal one that still fails.

Schedule ``i`` of ``--schedules N --seed S`` is :func:`sim.harness.schedule.draw_schedule`
``(S + i)``; ``--shard k/M`` runs only the ``i`` with ``i % M == k``. :func:`run_schedule` runs
one on the virtual clock (:mod:`sim.harness.virtual`) over memory streams, on a private copy of
a generated notebook at a reproducible path (:mod:`sim.harness.workcopy`), so its outcome and
trace are a pure function of the schedule. The checks of every schedule: the load ends (ready,
or failed only under a fault, then a retry loads), convergence of every connected peer with the
server after each stage, "rollback removed exactly the load's cells" after a failure, every
edit of a connected peer acknowledged, and no acknowledged edit lost (:mod:`sim.harness.edits`).

A failing schedule is shrunk greedily (:func:`shrink`): the first one-step reduction
(:func:`sim.harness.schedule.smaller`) that still fails one of the same checks replaces it,
until none does. The result names the command that replays the shrunk schedule.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import CoreError
from sim.harness.collab import CollabRun
from sim.harness.editor import Editor
from sim.harness.schedule import SLOW_READ_S, PeerPlan, Schedule, draw_schedule, encode, smaller
from sim.harness.trace import trace_sha256
from sim.harness.virtual import run as run_on_clock
from sim.harness.watchdog import HarnessStuck
from sim.results.base import Check
from sim.results.explore import ExploreFailure, ExploreResult
from sim.workload.generator import write_notebook

__all__ = ["Outcome", "explore", "replay_command", "run_schedule", "shrink"]

Action = Callable[[], Awaitable[None]]
EDIT_PROBABILITY = 0.5  # per editing peer, per batch
MAX_SHRINK_RUNS = 200


async def _flow(run: CollabRun, s: Schedule) -> None:
    await run.join("loader")
    for plan in s.peers:
        if plan.join_at is None:
            await run.join(
                plan.name,
                read_delay=SLOW_READ_S if plan.slow else 0.0,
                partitionable=plan.hooked or plan.name == s.partitioned,
            )
        else:
            run.on_batch(plan.join_at, _joiner(run, plan))
        if plan.leave_at is not None:
            run.on_batch(plan.leave_at, _leaver(run, plan.name))
        if plan.stall_at is not None:
            run.on_batch(plan.stall_at, _staller(run, plan.name, True))
            if plan.stall_until is not None:
                run.on_batch(plan.stall_until, _staller(run, plan.name, False))
    if s.fault == "fail":
        run.fail_at = s.fault_at
    elif s.fault == "loader-leaves":
        run.on_batch(s.fault_at, _leaver(run, "loader"))
    if s.partitioned is not None:
        run.on_batch(s.partition_at, _cutter(run, s.partitioned))
    editors = {p.name for p in s.peers if p.edits} | ({"loader"} if s.loader_edits else set())
    for b in range(s.batches):
        run.on_batch(b, _edits(run, editors))
    run.initial_open.set()
    # The load's end, as the server knows it: a peer may be cut off, stalled or gone.
    phase, reason = await asyncio.wait_for(
        run.target.wait_load_finished(run.notebook_id), run.timeout
    )
    _heal_all(run)
    retry: Editor | None = None
    if phase == "failed":
        run.checks.append(
            Check("the load fails only under a fault", s.fault != "none", reason or "")
        )
        run.log.mark_rollback()
        run.at_batch.clear()
        run.fail_at = None
        if run.connected():  # (with nobody left, only a retry can read the document)
            if not await run.wait_phase("failed"):
                return
            server = await run.settle("failed", "rollback")
            if server is None:
                return
            run.check_rollback(server)
        retry = await run.join("retry")
    elif not run.connected():  # everybody left: a late peer reads the result
        await run.join("late")
    if not await run.wait_phase("ready", judge=retry):
        return
    for editor in run.connected():
        if editor.name in editors or editor.name == "retry":
            run.edit(editor)
    await run.read_server()
    run.judge(await run.settle("ready", "end"))


def _heal_all(run: CollabRun) -> None:
    for editor in run.editors.values():
        if editor.hooks is not None and not editor.disconnected:
            run.trace.event(f"healed {editor.name}")
            editor.set_partitioned(False)


def _joiner(run: CollabRun, plan: PeerPlan) -> Action:
    async def join() -> None:
        if plan.name not in run.editors:
            await run.join(plan.name, plan.join_at, read_delay=SLOW_READ_S if plan.slow else 0.0)

    return join


def _leaver(run: CollabRun, name: str) -> Action:
    async def leave() -> None:
        editor = run.editors.get(name)
        if editor is not None and not editor.disconnected and editor.client is not None:
            run.trace.event(f"leave {name}")
            await editor.disconnect()

    return leave


def _staller(run: CollabRun, name: str, stalled: bool) -> Action:
    """A reader that stops reading (the server's writes to it queue), or resumes."""

    async def stall() -> None:
        editor = run.editors.get(name)
        if editor is not None and editor.hooks is not None and not editor.disconnected:
            run.trace.event(f"{'stall' if stalled else 'unstall'} {name}")
            editor.hooks[1].set_stalled(stalled)

    return stall


def _cutter(run: CollabRun, name: str) -> Action:
    async def cut() -> None:
        editor = run.editors.get(name)
        if editor is not None and editor.hooks is not None and not editor.disconnected:
            run.trace.event(f"partition cut {name}")
            editor.set_partitioned(True)

    return cut


def _edits(run: CollabRun, names: set[str]) -> Action:
    async def edit() -> None:
        for editor in run.connected():
            if editor.name in names and run.rng.random() < EDIT_PROBABILITY:
                run.edit(editor)

    return edit


@dataclass(frozen=True, slots=True)
class Outcome:
    schedule: Schedule
    failed: tuple[Check, ...]
    simulated_s: float
    edits: int
    edits_lost: int
    trace_sha256: str

    @property
    def ok(self) -> bool:
        return not self.failed


async def _timed(run: CollabRun, schedule: Schedule) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        await run.target.start()
        try:
            await _flow(run, schedule)
        except (asyncio.TimeoutError, CoreError) as exc:
            run.checks.append(Check("schedule ran to the end", False, repr(exc)))
        if run.summary is None and all(c.ok for c in run.checks):
            run.checks.append(Check("schedule ran to the end", False, "no verdict"))
    finally:
        try:
            await run.close()
        except HarnessStuck as exc:  # a harness bug: this schedule fails, the others go on
            run.checks.append(Check("schedule closed", False, str(exc)))
    return loop.time() - start


def notebook_for(cells: int, workdir: Path) -> Path:
    """The generated notebook of ``cells`` cells in ``workdir`` (written once per run)."""
    path = workdir / f"explore-{cells}.ipynb"
    if not path.exists():
        write_notebook(path, cells=cells, seed=cells)
    return path


def run_schedule(schedule: Schedule, workdir: Path, *, timeout: float = 60.0) -> Outcome:
    """Run one schedule on the virtual clock (its notebook generated into ``workdir``)."""
    run = CollabRun(
        "explore",
        notebook_for(schedule.cells, workdir),
        seed=schedule.seed,
        transport="memory",
        batch_size=schedule.batch_size,
        insert_path="full",
        timeout=timeout,
        blob_store=None,
    )
    simulated = run_on_clock(_timed(run, schedule), clock="virtual", seed=schedule.seed)
    summary = run.summary
    return Outcome(
        schedule,
        tuple(c for c in run.checks if not c.ok),
        simulated,
        summary.made if summary is not None else 0,
        summary.lost if summary is not None else 0,
        trace_sha256(run.trace.lines()),
    )


def shrink(failing: Outcome, workdir: Path, *, timeout: float = 60.0) -> tuple[Outcome, int]:
    """The smallest failing schedule greedy one-step reductions reach from ``failing`` (each
    must still fail one of the checks ``failing`` failed), and how many runs it took."""
    names = {c.name for c in failing.failed}
    best, runs = failing, 0
    progress = True
    while progress and runs < MAX_SHRINK_RUNS:
        progress = False
        for candidate in smaller(best.schedule):
            runs += 1
            outcome = run_schedule(candidate, workdir, timeout=timeout)
            if names & {c.name for c in outcome.failed}:
                best, progress = outcome, True
                break
            if runs >= MAX_SHRINK_RUNS:
                break
    return best, runs


def replay_command(schedule: Schedule) -> str:
    return f"nbstream explore --replay '{encode(schedule)}'"


def _failure(original: Outcome, shrunk: Outcome, runs: int) -> ExploreFailure:
    return ExploreFailure(
        seed=original.schedule.seed,
        failed=tuple(f"{c.name}: {c.detail}" for c in original.failed),
        schedule=original.schedule.describe(),
        shrunk_schedule=shrunk.schedule.describe(),
        shrunk_failed=tuple(f"{c.name}: {c.detail}" for c in shrunk.failed),
        shrink_runs=runs,
        size=original.schedule.size(),
        shrunk_size=shrunk.schedule.size(),
        replay=replay_command(shrunk.schedule),
    )


def explore(
    schedules: int,
    seed: int,
    *,
    shard: tuple[int, int] = (0, 1),
    timeout: float = 60.0,
    replay: Schedule | None = None,
    progress: Callable[[int, Outcome], None] | None = None,
) -> ExploreResult:
    """Schedules ``seed + i`` for ``i`` in ``range(schedules)`` with ``i % N == k`` (``shard``
    ``(k, N)``), or the one schedule ``replay``; failures shrunk."""
    index, count = shard
    todo = (
        [replay]
        if replay is not None
        else [draw_schedule(seed + i) for i in range(schedules) if i % count == index]
    )
    t0 = time.perf_counter()
    ran = 0
    simulated = 0.0
    edits = lost = 0
    failures: list[ExploreFailure] = []
    traces: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nbstream-explore-") as tmp:
        workdir = Path(tmp)
        for i, schedule in enumerate(todo):
            outcome = run_schedule(schedule, workdir, timeout=timeout)
            ran += 1
            simulated += outcome.simulated_s
            edits += outcome.edits
            lost += outcome.edits_lost
            traces.append(outcome.trace_sha256)
            if not outcome.ok:
                if replay is not None:
                    failures.append(_failure(outcome, outcome, 0))
                else:
                    shrunk, runs = shrink(outcome, workdir, timeout=timeout)
                    failures.append(_failure(outcome, shrunk, runs))
            if progress is not None:
                progress(i, outcome)
    return ExploreResult(
        seed=seed,
        schedules=ran,
        requested=1 if replay is not None else schedules,
        shards=count,
        shard_indices=(index,),
        failures=tuple(failures),
        simulated_s=simulated,
        wall_s=time.perf_counter() - t0,
        edits=edits,
        edits_lost=lost,
        trace_sha256=tuple(traces),
        replay=encode(replay) if replay is not None else None,
    )
