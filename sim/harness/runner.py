"""Run one scenario against a target (:mod:`sim.harness.target`) and measure it.

Peers connect through the target; everything the run checks, it learns as a peer: the load's
outcome from the load-status frames, the server's document from ``get_doc_bytes``. Joins and
leaves at batch k come from one of two clocks. ``joins="hook"`` (the default, bundled target
only) uses the load's in-process batch hook: at batch k it opens the peers that join at k,
disconnects the ones that leave at k, and injects the scenario's fault, so "joins at batch k" is
exact whatever the machine's speed. ``joins="progress"`` watches the load-status progress the
loader receives, which any server that speaks PROTOCOL.md sends.

Every wait has a safety timeout; hitting it is a failed check ("deadlock?"), never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from core import __version__
from core.blob_store import BlobStore
from core.client import NotebookClient
from core.daemon import DaemonConfig
from core.errors import CoreError, TransportClosed
from core.ipynb import parse_notebook
from core.loader import InsertPath, LoadReport
from core.notebook_doc import NotebookDoc
from core.room import NotebookRoom
from sim.analysis.complexity import fit_linear_trend, is_flat
from sim.harness.convergence import (
    ConvergenceReport,
    check_convergence,
    empty_document,
    expected_document,
)
from sim.harness.memory import peak_rss_kib, reset_peak_rss
from sim.harness.metrics import (
    batch_rows,
    load_summary,
    peer_row,
    phases,
    raw_automerge_seconds,
)
from sim.harness.peers import PeerSpec, VirtualPeer
from sim.harness.scenarios import Scenario, disk_full
from sim.harness.target import BundledTarget, ServerFigures, Target
from sim.harness.trace import result_trace, trace_sha256
from sim.net.connect import StreamPair, Transport
from sim.results.base import Check
from sim.results.sim import (
    BatchRow,
    LatencyTrend,
    NotebookInfo,
    PeerRow,
    Phases,
    SimResult,
    Targets,
    TtfcTarget,
    WorkerRow,
)
from sim.workload.generator import notebook_fingerprint

__all__ = ["Check", "Draft", "SimResult", "run_scenario", "targets"]

Progress = Callable[[str], None]


@dataclass(slots=True)
class Draft:
    """The result while the run builds it (the checks accumulate); :meth:`freeze` makes the
    :class:`SimResult`."""

    scenario: Scenario
    transport: str
    insert_path: str
    batch_size: int
    seed: int
    notebook: NotebookInfo
    cells: int = 0
    converged: bool = False
    checks: list[Check] = field(default_factory=list)
    peers: list[PeerRow] = field(default_factory=list)
    batches: list[BatchRow] = field(default_factory=list)
    phases: Phases | None = None
    counters: dict[str, int] = field(default_factory=dict)
    raw_automerge_s: float = 0.0
    load_reports: list[LoadReport] = field(default_factory=list)
    convergence: list[ConvergenceReport] = field(default_factory=list)
    peak_rss_kib: int | None = None
    server: str | None = None
    workers: tuple[WorkerRow, ...] | None = None

    def freeze(self) -> SimResult:
        result = SimResult(
            version=__version__,
            seed=self.seed,
            scenario=self.scenario.name,
            transport=self.transport,
            insert_path=self.insert_path,
            batch_size=self.batch_size,
            notebook=self.notebook,
            converged=self.converged,
            cells=self.cells,
            peers=tuple(self.peers),
            batches=tuple(self.batches),
            phases=self.phases,
            counters=dict(self.counters),
            raw_automerge_s=self.raw_automerge_s,
            daemon_overhead_ratio=0.0,
            checks=tuple(self.checks),
            loads=tuple(load_summary(r) for r in self.load_reports),
            peak_rss_kib=self.peak_rss_kib,
            server=self.server,
            workers=self.workers,
        )
        loader = result.loading_peer()
        ratio = 0.0
        if loader is not None and loader.time_to_full_s and self.raw_automerge_s > 0:
            ratio = loader.time_to_full_s / self.raw_automerge_s
        result = replace(result, daemon_overhead_ratio=ratio, targets=targets(result))
        return replace(result, trace_sha256=trace_sha256(result_trace(result)))


def targets(result: SimResult) -> Targets:
    """Timing targets, measured in this run. Informational: timings never fail a run."""
    loader = result.loading_peer()
    if loader is None or loader.time_to_first_cell_s is None or not loader.time_to_full_s:
        return Targets()
    ratio = loader.time_to_first_cell_s / loader.time_to_full_s
    ttfc = TtfcTarget(peer=loader.name, value=ratio, target=0.25, met=ratio <= 0.25)
    lat = [b.latency_s.get(loader.name) for b in result.batches]
    points = [(i, v) for i, v in enumerate(lat) if v is not None]
    if len(points) >= 3 and len({i for i, _ in points}) >= 2:
        trend = fit_linear_trend([i for i, _ in points], [v for _, v in points])
        flat = LatencyTrend(
            peer=loader.name,
            robust_relative_slope=trend.robust_relative_slope,
            relative_slope=trend.relative_slope,
            flat=is_flat(trend),
        )
        return Targets(ttfc, flat)
    return Targets(ttfc)


FINAL_PHASES = ("ready", "failed")
Joins = Literal["hook", "progress"]


class _Run:
    """The mutable state of one scenario run."""

    def __init__(
        self,
        scenario: Scenario,
        notebook: Path,
        timeout: float,
        progress: Progress | None,
        batch_size: int,
    ) -> None:
        self.scenario = scenario
        self.notebook = notebook
        self.notebook_id = str(notebook)
        self.timeout = timeout
        self.progress = progress
        self.batch_size = batch_size
        self.target: Target | None = None
        self.owns_target = True  # False: the caller's target, started and stopped by it
        self.peers: dict[str, VirtualPeer] = {}
        self.join_batch: dict[str, int | None] = {}
        self.fault_armed = scenario.fail_at_batch is not None
        self.total_batches = 0
        self.server_doc: dict[str, Any] | None = None
        self.server_cells = 0  # cells of the server's document when the load settled
        # Set once every peer with ``join_at_batch=None`` has opened. The first batch waits for
        # it: those peers are specified to be in the room *before* the load, but used to be
        # opened concurrently with it, so a load that failed early (the loader leaving at
        # batch 1, say) could end before they arrived -- their late handshakes then started a
        # second load, or a scheduled disconnect closed a peer still in its handshake.
        # Found by tests/test_faults.py's random schedules.
        self.initial_open = asyncio.Event()
        self.peers_changed = asyncio.Event()  # set when a peer has opened

    async def connect(self, buffer: int | None) -> StreamPair:
        assert self.target is not None
        return await self.target.connect(buffer)

    async def open_peer(self, spec: PeerSpec, batch: int | None) -> VirtualPeer:
        peer = VirtualPeer(spec)
        self.peers[spec.name] = peer
        self.join_batch[spec.name] = batch
        await asyncio.wait_for(peer.open(self.notebook, self.connect), self.timeout)
        self.peers_changed.set()
        return peer

    async def before_batch(self, _room: NotebookRoom, index: int) -> None:
        """The bundled target's in-process hook: exact joins, leaves and faults at batch k."""
        if index == 0:
            await self.initial_open.wait()
        await self.at_batch(index)
        if self.fault_armed and index == self.scenario.fail_at_batch:
            self.fault_armed = False
            raise disk_full(index)

    async def at_batch(self, index: int) -> None:
        """Open the peers that join at batch ``index``; disconnect the ones that leave at it."""
        if self.progress is not None and self.total_batches:
            self.progress(f"batch {index + 1}/{self.total_batches}")
        for spec in self.scenario.peers:
            if spec.join_at_batch == index and spec.name not in self.peers:
                await self.open_peer(spec, index)
            if spec.disconnect_at_batch == index and spec.name in self.peers:
                peer = self.peers[spec.name]
                if not peer.disconnected:
                    await self._disconnect(peer)

    async def follow_progress(self, loader: VirtualPeer) -> None:
        """Without the hook: batch k begins once the loader has seen ``k * batch_size`` cells
        announced by the server's load-status progress. Whatever is scheduled after the load
        has ended (or after the loader left) happens then, in batch order."""
        index = 0
        client = loader.client
        while index < self.total_batches:
            if index and client is not None and not loader.disconnected:
                wanted = index * self.batch_size

                def reached(c: NotebookClient = client, n: int = wanted) -> bool:
                    s = c.load_status
                    return s is not None and (s.phase != "streaming" or s.cells_loaded >= n)

                with contextlib.suppress(TransportClosed):
                    await asyncio.wait_for(client.wait_for(reached), self.timeout)
            await self.at_batch(index)
            index += 1

    async def _disconnect(self, peer: VirtualPeer) -> None:
        target = self.target
        before = None
        if isinstance(target, BundledTarget):
            room = target.figures().rooms.get(self.notebook_id)
            before = room.peers if room is not None else None
        await peer.disconnect()
        if isinstance(target, BundledTarget) and before is not None:
            await asyncio.wait_for(target.wait_peers_below(self.notebook_id, before), self.timeout)

    def watchers(self) -> list[VirtualPeer]:
        """Connected peers that read: the harness's eyes on the server."""
        return [p for p in list(self.peers.values()) if p.client is not None and not p.disconnected]

    async def wait_load_finished(
        self, watchers: Callable[[], list[VirtualPeer]]
    ) -> tuple[str, str | None]:
        """The load's outcome as the first watching peer hears it: (phase, reason).

        ``watchers()`` is re-read whenever a peer opens, so a peer that joins mid-load can be the
        one that hears the outcome (the loader itself may have left). When no watcher is left,
        the bundled target is asked on its own side; any other target fails the wait."""
        heard: dict[str, asyncio.Future[tuple[str, str | None]]] = {}
        server: asyncio.Future[tuple[str, str | None]] | None = None
        try:
            while True:
                self.peers_changed.clear()
                for peer in watchers():
                    if peer.name not in heard and peer.client is not None:
                        heard[peer.name] = asyncio.ensure_future(_final_status(peer.client))
                for outcome in (*heard.values(), server):
                    if outcome is not None and outcome.done() and not outcome.exception():
                        return outcome.result()
                live: list[asyncio.Future[Any]] = [t for t in heard.values() if not t.done()]
                if not live and server is None:
                    if not isinstance(self.target, BundledTarget):
                        raise TransportClosed("every peer watching the load left before it ended")
                    server = asyncio.ensure_future(self.target.wait_load_finished(self.notebook_id))
                joined = asyncio.ensure_future(self.peers_changed.wait())
                waits = [*live, joined] if server is None else [*live, joined, server]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                joined.cancel()
        finally:
            pending = [*heard.values(), *([server] if server is not None else [])]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def read_server(self) -> NotebookDoc | None:
        """The server's document, as a peer sees it: ``get_doc_bytes`` through a watcher (or,
        when no peer is left to ask, from the bundled target's own side)."""
        for peer in self.watchers():
            assert peer.client is not None
            with contextlib.suppress(CoreError, asyncio.TimeoutError):
                data = await asyncio.wait_for(peer.client.get_doc_bytes(), self.timeout)
                return NotebookDoc.load(data)
        if isinstance(self.target, BundledTarget):
            saved = self.target.document_bytes(self.notebook_id)
            if saved is not None:
                return NotebookDoc.load(saved)
        return None

    async def settle(self, *, loaded: bool) -> tuple[dict[str, Any] | None, list[str]]:
        """Wait until every reading peer holds the server's heads.

        Returns the server's document and the peers that timed out."""
        server = await self.read_server()
        if server is None:
            return None, ["no connected peer could read the server's document"]
        self.server_cells = server.cell_count()
        target = server.heads()
        phase = "ready" if loaded else "failed"
        late: list[str] = []

        def done(c: NotebookClient) -> bool:
            s = c.load_status
            return s is not None and s.phase == phase and c.doc.heads() == target

        for peer in list(self.peers.values()):
            try:
                await asyncio.wait_for(peer.wait_settled(done), self.timeout)
            except (asyncio.TimeoutError, Exception) as exc:
                late.append(f"{peer.name} ({type(exc).__name__}: {exc})")
        return server.materialize(), late

    def materialized(self) -> dict[str, dict[str, Any]]:
        return {
            name: peer.client.doc.materialize()
            for name, peer in self.peers.items()
            if peer.client is not None and not peer.disconnected and peer.spec.expects_convergence
        }

    async def close(self) -> None:
        for peer in self.peers.values():
            await peer.close()
        if self.target is not None and self.owns_target:
            await self.target.stop()


async def _final_status(client: NotebookClient) -> tuple[str, str | None]:
    def final() -> bool:
        s = client.load_status
        return s is not None and s.phase in FINAL_PHASES

    await client.wait_for(final)
    status = client.load_status
    assert status is not None
    return status.phase, status.reason


async def run_scenario(
    scenario: Scenario,
    notebook: Path,
    *,
    transport: Transport = "memory",
    batch_size: int = 3,
    insert_path: InsertPath = "full",
    seed: int = 0,
    timeout: float = 120.0,
    progress: Progress | None = None,
    blob_store: BlobStore | None = None,
    joins: Joins = "hook",
    target: Target | None = None,
    shown_as: Path | None = None,
) -> SimResult:
    """Run ``scenario`` on ``notebook``; checks (convergence, completion) are in the result.

    The target is the bundled daemon over ``transport`` with the on-disk blob store (pass
    ``blob_store`` to change it), or ``target`` (any server that speaks PROTOCOL.md, e.g. a
    :class:`sim.harness.external.SocketTarget`; ``transport``, ``insert_path`` and
    ``blob_store`` then do not apply, and ``batch_size`` says how many cells the server puts
    in a batch). ``joins="hook"`` makes joins, leaves and the fault exact through the bundled
    target's in-process batch hook; ``"progress"`` drives joins and leaves from the load-status
    progress a peer receives, as against any server (the only choice for ``target``; a
    scenario with an injected fault needs the hook). ``shown_as``: the path the result names
    (when ``notebook`` is a fresh copy of it, see :func:`sim.harness.external.fresh_copy`).
    """
    if target is not None:
        joins = "progress"
    if joins == "progress" and scenario.fail_at_batch is not None:
        raise ValueError("an injected fault needs joins='hook' (it is raised inside the daemon)")
    notebook = Path(os.path.realpath(notebook))
    data = notebook.read_bytes()
    parsed = parse_notebook(data)
    notebook_id = str(notebook)
    expected = expected_document(parsed, notebook_id)
    result = Draft(
        scenario,
        transport,
        insert_path,
        batch_size,
        seed,
        NotebookInfo(
            str(shown_as or notebook_id), len(parsed.cells), len(data), notebook_fingerprint(data)
        ),
    )
    run = _Run(scenario, notebook, timeout, progress, batch_size)
    run.total_batches = -(-len(parsed.cells) // batch_size)
    run.owns_target = target is None
    if target is None:
        config = DaemonConfig(
            batch_size=batch_size,
            insert_path=insert_path,
            eviction_delay=timeout,
            notebook_root=notebook.parent,  # the daemon serves the notebook's own directory
        )
        target = BundledTarget(
            config,
            transport=transport,
            blob_store=blob_store,
            before_batch=run.before_batch if joins == "hook" else None,
        )
    bundled = isinstance(target, BundledTarget)
    result.transport = target.transport
    result.server = target.description
    run.target = target
    reset_peak_rss()  # this run's peak, not the imports' or an earlier run's
    figures: ServerFigures | None = None
    try:
        if run.owns_target:
            await target.start()
        await _drive(run, result, expected, joins)
        if not bundled:  # asked once everything is measured, on a connection of its own
            figures = await target.server_figures(notebook)
    finally:
        # With the bundled daemon the process holds server and peers: its peak is the run's.
        # Another server's memory is not this process's: absent rather than wrong.
        result.peak_rss_kib = peak_rss_kib() if bundled else None
        if bundled:
            figures = target.figures()
        await run.close()
    result.load_reports = list(figures.load_reports) if figures is not None else []
    _measure(run, result, parsed, batch_size, figures)
    return result.freeze()


async def _drive(run: _Run, result: Draft, expected: dict[str, Any], joins: Joins) -> None:
    scenario = run.scenario
    notebook_id = run.notebook_id
    initial = [s for s in scenario.peers if s.join_at_batch is None]
    loader = await run.open_peer(initial[0], None)
    follower: asyncio.Task[None] | None = None
    try:
        try:
            await asyncio.gather(*(run.open_peer(s, None) for s in initial[1:]))
        finally:
            run.initial_open.set()
        if joins == "progress":
            follower = asyncio.ensure_future(run.follow_progress(loader))
        try:
            phase, reason = await asyncio.wait_for(
                run.wait_load_finished(run.watchers), run.timeout
            )
        except asyncio.TimeoutError:
            result.checks.append(Check("load finished", False, f"no result in {run.timeout:g} s"))
            return
        except TransportClosed as exc:
            result.checks.append(Check("load finished", False, str(exc)))
            return
        if follower is not None:
            await asyncio.wait_for(follower, run.timeout)
    finally:
        if follower is not None and not follower.done():
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
    # `fail_at_batch` is a fault of the *first* load only (Scenario's contract). If that load
    # ended before reaching the batch (e.g. the loader left earlier), the still-armed fault
    # used to fire during the retry and fail it. Found by tests/test_faults.py's random schedules.
    run.fault_armed = False
    if phase == "ready":
        _verify(run, result, expected, "load", await run.settle(loaded=True))
        return
    # The load failed: everyone must converge to the empty notebook, then a retry loads fully.
    expect_failure = scenario.fail_at_batch is not None or any(
        s.disconnect_at_batch is not None and s is scenario.loader for s in scenario.peers
    )
    result.checks.append(Check("failure was expected", expect_failure, reason or ""))
    _verify(run, result, empty_document(notebook_id), "rollback", await run.settle(loaded=False))
    retry = await run.open_peer(PeerSpec("retry"), None)
    try:
        phase, reason = await asyncio.wait_for(run.wait_load_finished(lambda: [retry]), run.timeout)
    except asyncio.TimeoutError:
        result.checks.append(Check("retry finished", False, f"no result in {run.timeout:g} s"))
        return
    result.checks.append(Check("retry loaded", phase == "ready", reason or ""))
    _verify(run, result, expected, "retry", await run.settle(loaded=True))


def _verify(
    run: _Run,
    result: Draft,
    expected: dict[str, Any],
    stage: str,
    settled: tuple[dict[str, Any] | None, list[str]],
) -> None:
    server, late = settled
    result.checks.append(Check(f"{stage}: every peer settled", not late, "; ".join(late)))
    if server is None:
        result.converged = False
        return
    report = check_convergence(server, run.materialized(), expected=expected)
    result.convergence.append(report)
    result.checks.append(Check(f"{stage}: converged", report.ok, report.describe()))
    result.converged = report.ok and not late


def _measure(
    run: _Run, result: Draft, parsed: Any, batch_size: int, figures: ServerFigures | None
) -> None:
    ok_reports = [r for r in result.load_reports if r.ok]
    report = (
        ok_reports[-1] if ok_reports else (result.load_reports[-1] if result.load_reports else None)
    )
    clients = {n: p for n, p in run.peers.items() if p.client is not None}
    if report is not None:
        result.cells = report.cells if report.ok else 0
        result.batches = batch_rows(report, clients, run.join_batch)
        result.phases = phases(report, figures)
    else:  # a server that reports no figures: what its document held, seen as a peer
        result.cells = run.server_cells
    for n, p in run.peers.items():
        conv = [c for c in result.convergence if n in c.checked]
        converged = bool(conv) and all(n not in c.diffs for c in conv)
        result.peers.append(peer_row(p, run.join_batch.get(n), report, converged=converged))
    room = figures.rooms.get(run.notebook_id) if figures is not None else None
    if room is not None:
        room_stats = room.doc
        result.counters = {
            "ops": room_stats.ops,
            "transactions": room_stats.transactions,
            "scan_steps": room_stats.scan_steps,
            "sync_messages": room_stats.sync_messages_generated,
            "sync_bytes": room_stats.sync_bytes_generated,
        }
    result.raw_automerge_s = raw_automerge_seconds(parsed, batch_size)
