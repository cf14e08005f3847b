"""``nbstream sim --workers N``: a scenario whose peers run in N worker processes.

The parent runs the bundled daemon on a Unix socket (its own event loop) and coordinates; the
scenario's peers are dealt round-robin to the workers (:mod:`sim.harness.worker_pool`; the
loader, the scenario's first peer, goes to worker 0), each a process with its own loop. Joins,
leaves and the injected fault are exact, as with ``joins="hook"`` in
:mod:`sim.harness.runner`: the daemon's batch hook asks the workers holding the peers that join
at batch k to open them, and waits for their replies, before batch k is inserted.

Convergence is judged across processes by hash: every worker reports the sha256 of each of its
reading peers' materialized documents (:func:`sim.harness.worker_proc.doc_sha256`), which must
equal the hash of the server's document; the server's document must equal the source notebook.
Peer rows (time to first cell and to full, frames, bytes, arrivals) come from the workers,
their times relative to the load's start: ``time.perf_counter`` is ``CLOCK_MONOTONIC`` on Linux,
one clock for every process, so a worker's arrival and the daemon's batch start compare
directly. Every request to a worker is bounded; a worker that dies raises
:class:`~sim.harness.worker_pool.WorkerFailed` (one line: which worker, its exit code, its last
stderr lines).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.daemon import DaemonConfig
from core.ipynb import ParsedNotebook, parse_notebook
from core.loader import InsertPath, LoadReport
from core.notebook_doc import NotebookDoc
from core.room import NotebookRoom
from sim.harness.convergence import check_convergence, empty_document, expected_document
from sim.harness.external import SocketTarget
from sim.harness.memory import peak_rss_kib, reset_peak_rss
from sim.harness.metrics import batch_rows_from_peers, phases, raw_automerge_seconds
from sim.harness.peers import PeerSpec
from sim.harness.runner import Draft, Progress
from sim.harness.scenarios import Scenario, disk_full
from sim.harness.target import BundledTarget, ServerFigures
from sim.harness.worker_pool import WorkerFailed, WorkerPool
from sim.harness.worker_proc import doc_sha256, raise_fd_limit
from sim.results.base import Check, Reader
from sim.results.sim import NotebookInfo, PeerRow, SimResult, WorkerRow
from sim.workload.generator import notebook_fingerprint

__all__ = ["WorkerFailed", "run_scenario_workers"]


def _spec_json(spec: PeerSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


class _MultiRun:
    def __init__(
        self, scenario: Scenario, pool: WorkerPool, target: BundledTarget | None, notebook_id: str
    ) -> None:
        self.scenario = scenario
        self.pool = pool
        self.target = target
        self.notebook_id = notebook_id
        self.owner: dict[str, int] = {
            spec.name: i % pool.count for i, spec in enumerate(scenario.peers)
        }
        self.join_batch: dict[str, int | None] = {}
        self.gone: set[str] = set()
        self.fault_armed = scenario.fail_at_batch is not None
        self.initial_open = asyncio.Event()
        self.timeout = pool.timeout
        self.failure: WorkerFailed | None = None

    def _by_worker(self, names: list[str]) -> list[list[str]]:
        groups: list[list[str]] = [[] for _ in range(self.pool.count)]
        for name in names:
            groups[self.owner[name]].append(name)
        return groups

    async def open(self, specs: list[PeerSpec], batch: int | None) -> None:
        by_name = {s.name: s for s in specs}
        for spec in specs:
            self.owner.setdefault(spec.name, 0)
            self.join_batch[spec.name] = batch
        groups = self._by_worker([s.name for s in specs])
        await self.pool.each(
            [
                ("open", {"specs": [_spec_json(by_name[n]) for n in g], "joined_at": batch})
                if g
                else None
                for g in groups
            ]
        )

    async def disconnect(self, names: list[str]) -> None:
        """These peers vanish; with the bundled daemon, wait until it has noticed."""
        room = self.target.figures().rooms.get(self.notebook_id) if self.target else None
        before = room.peers if room is not None else None
        groups = self._by_worker(names)
        await self.pool.each([("disconnect", {"names": g}) if g else None for g in groups])
        self.gone.update(names)
        if self.target is not None and before is not None:
            await asyncio.wait_for(
                self.target.wait_peers_below(self.notebook_id, before - len(names) + 1),
                self.timeout,
            )

    async def before_batch(self, room: NotebookRoom, index: int) -> None:
        """The daemon's hook; a worker's failure in it is kept and raised by the run, not only
        reported as the load's failure."""
        try:
            await self._before_batch(room, index)
        except WorkerFailed as exc:
            self.failure = exc
            raise

    async def _before_batch(self, _room: NotebookRoom | None, index: int) -> None:
        if index == 0:
            await self.initial_open.wait()
        await self.at_batch(index)
        if self.fault_armed and index == self.scenario.fail_at_batch:
            self.fault_armed = False
            raise disk_full(index)

    async def at_batch(self, index: int) -> None:
        """Open the peers that join at batch ``index``; disconnect the ones that leave at it."""
        joining = [
            s
            for s in self.scenario.peers
            if s.join_at_batch == index and s.name not in self.join_batch
        ]
        if joining:
            await self.open(joining, index)
        leaving = [
            s.name
            for s in self.scenario.peers
            if s.disconnect_at_batch == index
            and s.name in self.join_batch
            and s.name not in self.gone
        ]
        if leaving:
            await self.disconnect(leaving)

    async def follow_progress(self, total_batches: int, batch_size: int) -> None:
        """Without the hook (a server of another process): batch k begins once the loader has
        heard ``k * batch_size`` cells announced, as :meth:`sim.harness.runner._Run.
        follow_progress` has it; the loader's worker does the listening."""
        loader = self.scenario.loader.name
        for index in range(total_batches):
            if index:
                worker = self.pool.workers[self.owner[loader]]
                await worker.request("progress", name=loader, cells=index * batch_size)
            await self.at_batch(index)

    async def outcome(self, names: list[str] | None = None) -> tuple[str, str | None]:
        """The load's end as the workers' connected peers hear it (the first that does)."""
        replies = await self.pool.each([("outcome", {"names": names})] * self.pool.count)
        for reply in replies:
            if reply["phase"] is not None:
                return str(reply["phase"]), reply["reason"]
        raise WorkerFailed("no connected peer in any worker heard the load end")

    async def server_document(self) -> bytes | None:
        """The server's document: the bundled daemon's own, else ``get_doc_bytes`` through a
        worker's connected peer."""
        if self.target is not None:
            return self.target.document_bytes(self.notebook_id)
        for worker in self.pool.workers:
            doc = (await worker.request("server_doc"))["doc"]
            if doc is not None:
                return base64.b64decode(doc)
        return None

    async def settle(self, result: Draft, stage: str, expected: dict[str, Any], phase: str) -> None:
        saved = await self.server_document()
        if saved is None:
            result.checks.append(Check(f"{stage}: converged", False, "the server has no document"))
            result.converged = False
            return
        server = NotebookDoc.load(saved)
        heads = [h.hex() for h in server.heads()]
        replies = await self.pool.each(
            [("settle", {"phase": phase, "heads": heads})] * self.pool.count
        )
        late = [x for r in replies for x in r["late"]]
        result.checks.append(Check(f"{stage}: every peer settled", not late, "; ".join(late[:20])))
        doc = server.materialize()
        report = check_convergence(doc, {}, expected=expected)
        result.convergence.append(report)
        what = "the empty notebook" if phase == "failed" else "the source"
        detail = f"the server's document equals {what}" if report.ok else report.describe()
        result.checks.append(Check(f"{stage}: server equals {what}", report.ok, detail))
        result.converged = report.ok and not late


async def run_scenario_workers(
    scenario: Scenario,
    notebook: Path,
    *,
    workers: int,
    batch_size: int = 3,
    insert_path: InsertPath = "full",
    seed: int = 0,
    timeout: float = 120.0,
    progress: Progress | None = None,
    target: SocketTarget | None = None,
    shown_as: Path | None = None,
) -> SimResult:
    """Run ``scenario`` with its peers in ``workers`` processes; one :class:`SimResult` (with
    ``workers``). Raises :class:`WorkerFailed`.

    The server is the bundled daemon on a Unix socket in this process (joins, leaves and the
    fault by its batch hook), or ``target``, a started server of another process (joins and
    leaves by the load-status progress the loader hears; no fault can be injected; the target's
    figures, if it reports any). ``shown_as``: the path the result names."""
    notebook = Path(os.path.realpath(notebook))
    data = notebook.read_bytes()
    parsed = parse_notebook(data)
    notebook_id = str(notebook)
    expected = expected_document(parsed, notebook_id)
    if target is not None and scenario.fail_at_batch is not None:
        raise ValueError("an injected fault needs the bundled daemon (it is raised inside it)")
    result = Draft(
        scenario,
        "unix",
        insert_path,
        batch_size,
        seed,
        NotebookInfo(
            str(shown_as or notebook_id), len(parsed.cells), len(data), notebook_fingerprint(data)
        ),
    )
    raise_fd_limit()  # the bundled daemon holds one socket per peer
    pending: list[_MultiRun] = []  # the run, once its daemon exists (the hook comes first)

    async def hook(room: NotebookRoom, index: int) -> None:
        if progress is not None:
            progress(f"batch {index + 1}")
        await pending[0].before_batch(room, index)

    bundled: BundledTarget | None = None
    if target is None:
        config = DaemonConfig(
            batch_size=batch_size,
            insert_path=insert_path,
            eviction_delay=timeout,
            notebook_root=notebook.parent,
        )
        bundled = BundledTarget(config, transport="unix", before_batch=hook)
        assert bundled.socket_path is not None
        socket, description = bundled.socket_path, bundled.description
    else:
        socket, description = target.socket, target.description
    pool = WorkerPool(workers, socket, notebook, timeout)
    run = _MultiRun(scenario, pool, bundled, notebook_id)
    pending.append(run)
    result.server = f"{description}, peers in {workers} worker processes"
    reset_peak_rss()
    rows: list[PeerRow] = []
    worker_rows: list[WorkerRow] = []
    figures: ServerFigures | None = None
    origin: float | None = None
    try:
        if bundled is not None:
            await bundled.start()
        await pool.start()
        await _drive(run, result, expected, -(-len(parsed.cells) // batch_size), batch_size)
        if bundled is not None:
            figures = bundled.figures()
        elif target is not None:
            figures = await target.server_figures(notebook)
        reports = list(figures.load_reports) if figures is not None else []
        ok = [r for r in reports if r.ok]
        last: LoadReport | None = ok[-1] if ok else (reports[-1] if reports else None)
        origin = last.started_at if last is not None else None
        replies = await pool.each([("report", {"origin": origin})] * workers)
        server_bytes = await run.server_document()
        server_hash = (
            doc_sha256(NotebookDoc.load(server_bytes).materialize()) if server_bytes else ""
        )
        rows, worker_rows = _merge_reports(result, replies, server_hash, scenario)
    finally:
        # The bundled daemon is alone in this process: the peak is its. Another server's
        # memory is not ours: absent rather than wrong.
        result.peak_rss_kib = peak_rss_kib() if bundled is not None else None
        if bundled is not None:
            figures = bundled.figures()
        await pool.stop()
        if bundled is not None:
            await bundled.stop()
    result.workers = tuple(worker_rows)
    _measure(result, rows, run.join_batch, parsed, batch_size, figures, origin)
    return result.freeze()


def _merge_reports(
    result: Draft, replies: Sequence[dict[str, Any]], server_hash: str, scenario: Scenario
) -> tuple[list[PeerRow], list[WorkerRow]]:
    """The workers' peer rows in the scenario's order (a retry last), each converged when its
    document hash is the server's; one row per worker; the hash check."""
    rows: list[PeerRow] = []
    worker_rows: list[WorkerRow] = []
    diverged: list[str] = []
    for index, reply in enumerate(replies):
        hashes: dict[str, str] = reply["hashes"]
        for raw in reply["peers"]:
            row = PeerRow.read(Reader(raw))
            same = row.name in hashes and hashes[row.name] == server_hash
            if row.name in hashes and not same:
                diverged.append(row.name)
            rows.append(dataclasses.replace(row, converged=same))
        worker_rows.append(WorkerRow(index, len(reply["peers"]), int(reply["peak_rss_kib"])))
    order = {spec.name: i for i, spec in enumerate(scenario.peers)}
    rows.sort(key=lambda r: order.get(r.name, len(order)))
    checked = sum(len(r["hashes"]) for r in replies)
    detail = (
        f"{checked} peers equal the server"
        if not diverged
        else "DIVERGED: " + ", ".join(sorted(diverged, key=lambda n: order.get(n, 0))[:20])
    )
    result.checks.append(
        Check(
            "every peer's document hash equals the server's", not diverged and checked > 0, detail
        )
    )
    result.converged = result.converged and not diverged
    return rows, worker_rows


async def _drive(
    run: _MultiRun, result: Draft, expected: dict[str, Any], batches: int, batch_size: int
) -> None:
    scenario = run.scenario
    initial = [s for s in scenario.peers if s.join_at_batch is None]
    try:
        await run.open(initial[:1], None)  # the loader first: its open starts the load
        if initial[1:]:
            await run.open(initial[1:], None)
    finally:
        run.initial_open.set()
    try:
        if run.target is None:
            await asyncio.wait_for(run.follow_progress(batches, batch_size), run.timeout)
            phase, reason = await run.outcome()
        else:
            phase, reason = await asyncio.wait_for(
                run.target.wait_load_finished(run.notebook_id), run.timeout
            )
    except asyncio.TimeoutError:
        result.checks.append(Check("load finished", False, f"no result in {run.timeout:g} s"))
        return
    if run.failure is not None:
        raise run.failure
    run.fault_armed = False
    if phase == "ready":
        await run.settle(result, "load", expected, "ready")
        return
    expect_failure = scenario.fail_at_batch is not None or any(
        s.disconnect_at_batch is not None and s is scenario.loader for s in scenario.peers
    )
    result.checks.append(Check("failure was expected", expect_failure, reason or ""))
    await run.settle(result, "rollback", empty_document(run.notebook_id), "failed")
    try:
        phase, reason = await asyncio.wait_for(_retry(run), run.timeout)
    except asyncio.TimeoutError:
        result.checks.append(Check("retry finished", False, f"no result in {run.timeout:g} s"))
        return
    result.checks.append(Check("retry loaded", phase == "ready", reason or ""))
    await run.settle(result, "retry", expected, "ready")


async def _retry(run: _MultiRun) -> tuple[str, str | None]:
    """A ``retry`` peer opens (its open starts a second load); the second load's end."""
    if run.target is None:
        await run.open([PeerSpec("retry")], None)
        return await run.outcome(["retry"])
    daemon = run.target.daemon
    before = len(daemon.load_reports)
    await run.open([PeerSpec("retry")], None)
    await daemon.wait_for(lambda: len(daemon.load_reports) > before)
    last = daemon.load_reports[-1]
    return ("ready" if last.ok else "failed"), last.error


def _measure(
    result: Draft,
    rows: list[PeerRow],
    join_batch: dict[str, int | None],
    parsed: ParsedNotebook,
    batch_size: int,
    figures: ServerFigures | None,
    origin: float | None,
) -> None:
    reports = list(figures.load_reports) if figures is not None else []
    result.load_reports = reports
    ok = [r for r in reports if r.ok]
    report = ok[-1] if ok else (reports[-1] if reports else None)
    result.peers = rows
    if report is not None and figures is not None:
        result.cells = report.cells if report.ok else 0
        result.phases = phases(report, figures)
        if origin is not None and report.started_at == origin:  # rows timed from its start
            result.batches = batch_rows_from_peers(report, rows, join_batch)
    room = figures.rooms.get(result.notebook.path) if figures is not None else None
    if room is not None:
        stats = room.doc
        result.counters = {
            "ops": stats.ops,
            "transactions": stats.transactions,
            "scan_steps": stats.scan_steps,
            "sync_messages": stats.sync_messages_generated,
            "sync_bytes": stats.sync_bytes_generated,
        }
    result.raw_automerge_s = raw_automerge_seconds(parsed, batch_size)
