"""Run one scenario against a real daemon and measure it.

The daemon runs in this process; peers connect over the chosen transport. The load's own hook
(``Daemon(before_batch=…)``) drives the scenario: at batch k it opens the peers that join at k,
disconnects the ones that leave at k, and injects the scenario's fault. So "joins at batch k" is
exact, whatever the machine's speed, and the run is reproducible from its seed.

Every wait has a safety timeout; hitting it is a failed check ("deadlock?"), never a hang.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core import __version__
from core.blob_store import BlobStore, DiskBlobStore, MemoryBlobStore
from core.client import NotebookClient
from core.daemon import Daemon, DaemonConfig
from core.errors import BlobStoreError
from core.ipynb import parse_notebook
from core.loader import InsertPath, LoadReport
from core.room import LoadPhase, NotebookRoom
from sim.analysis.complexity import fit_linear_trend, is_flat
from sim.harness.convergence import (
    ConvergenceReport,
    check_convergence,
    empty_document,
    expected_document,
)
from sim.harness.metrics import (
    batch_rows,
    load_summary,
    peer_row,
    phases,
    raw_automerge_seconds,
)
from sim.harness.peers import PeerSpec, StreamPair, Transport, VirtualPeer, connect_streams
from sim.harness.scenarios import Scenario
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
)
from sim.workload.generator import notebook_fingerprint

__all__ = ["Check", "SimResult", "run_scenario"]

Progress = Callable[[str], None]


@dataclass(slots=True)
class _Draft:
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
        )
        loader = result.loading_peer()
        ratio = 0.0
        if loader is not None and loader.time_to_full_s and self.raw_automerge_s > 0:
            ratio = loader.time_to_full_s / self.raw_automerge_s
        return replace(result, daemon_overhead_ratio=ratio, targets=targets(result))


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


class _Run:
    """The mutable state of one scenario run."""

    def __init__(
        self,
        scenario: Scenario,
        notebook: Path,
        transport: Transport,
        timeout: float,
        progress: Progress | None,
    ) -> None:
        self.scenario = scenario
        self.notebook = notebook
        self.transport = transport
        self.timeout = timeout
        self.progress = progress
        self.daemon: Daemon | None = None
        self.peers: dict[str, VirtualPeer] = {}
        self.join_batch: dict[str, int | None] = {}
        self.server_tasks: set[asyncio.Task[None]] = set()
        self.fault_armed = scenario.fail_at_batch is not None
        self.total_batches = 0
        self.room: NotebookRoom | None = None
        # Set once every peer with ``join_at_batch=None`` has opened. The first batch waits for
        # it: those peers are specified to be in the room *before* the load, but used to be
        # opened concurrently with it, so a load that failed early (the loader leaving at
        # batch 1, say) could end before they arrived -- their late handshakes then started a
        # second load, or a scheduled disconnect closed a peer still in its handshake.
        # Found by tests/test_faults.py's random schedules.
        self.initial_open = asyncio.Event()

    async def connect(self, buffer: int | None) -> StreamPair:
        assert self.daemon is not None
        return await connect_streams(self.transport, self.daemon, buffer, self.server_tasks)

    async def open_peer(self, spec: PeerSpec, batch: int | None) -> VirtualPeer:
        peer = VirtualPeer(spec)
        self.peers[spec.name] = peer
        self.join_batch[spec.name] = batch
        await asyncio.wait_for(peer.open(self.notebook, self.connect), self.timeout)
        return peer

    async def before_batch(self, room: NotebookRoom, index: int) -> None:
        if index == 0:
            await self.initial_open.wait()
        if self.progress is not None and self.total_batches:
            self.progress(f"batch {index + 1}/{self.total_batches}")
        for spec in self.scenario.peers:
            if spec.join_at_batch == index and spec.name not in self.peers:
                await self.open_peer(spec, index)
            if spec.disconnect_at_batch == index and spec.name in self.peers:
                peer = self.peers[spec.name]
                if not peer.disconnected:
                    await self._disconnect(room, peer)
        if self.fault_armed and index == self.scenario.fail_at_batch:
            self.fault_armed = False
            raise BlobStoreError(
                f"blob store write failed: [Errno 28] No space left on device "
                f"(injected at batch {index})"
            )

    async def _disconnect(self, room: NotebookRoom, peer: VirtualPeer) -> None:
        daemon = self.daemon
        assert daemon is not None
        before = sum(1 for s in daemon.sessions if s.room is room)
        await peer.disconnect()
        await asyncio.wait_for(
            daemon.wait_for(lambda: sum(1 for s in daemon.sessions if s.room is room) < before),
            self.timeout,
        )

    async def settle(self, room: NotebookRoom, *, loaded: bool) -> list[str]:
        """Wait until every reading peer holds the server's heads; returns peers that timed out."""
        target = room.doc.heads()
        phase = "ready" if loaded else "failed"
        late: list[str] = []

        def done(c: NotebookClient) -> bool:
            s = c.load_status
            return s is not None and s.phase == phase and c.doc.heads() == target

        for peer in self.peers.values():
            try:
                await asyncio.wait_for(peer.wait_settled(done), self.timeout)
            except (asyncio.TimeoutError, Exception) as exc:
                late.append(f"{peer.name} ({type(exc).__name__}: {exc})")
        return late

    def materialized(self) -> dict[str, dict[str, Any]]:
        return {
            name: peer.client.doc.materialize()
            for name, peer in self.peers.items()
            if peer.client is not None and not peer.disconnected and peer.spec.expects_convergence
        }

    async def close(self) -> None:
        for peer in self.peers.values():
            await peer.close()
        if self.daemon is not None:
            await self.daemon.stop()
        for task in list(self.server_tasks):
            task.cancel()
        await asyncio.gather(*self.server_tasks, return_exceptions=True)


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
) -> SimResult:
    """Run ``scenario`` on ``notebook``; checks (convergence, completion) are in the result."""
    notebook = Path(os.path.realpath(notebook))
    data = notebook.read_bytes()
    parsed = parse_notebook(data)
    notebook_id = str(notebook)
    expected = expected_document(parsed, notebook_id)
    result = _Draft(
        scenario,
        transport,
        insert_path,
        batch_size,
        seed,
        NotebookInfo(notebook_id, len(parsed.cells), len(data), notebook_fingerprint(data)),
    )
    run = _Run(scenario, notebook, transport, timeout, progress)
    run.total_batches = -(-len(parsed.cells) // batch_size)
    with tempfile.TemporaryDirectory(prefix="nbsim-") as tmp:
        if blob_store is None:
            blob_store = (
                DiskBlobStore(Path(tmp) / "blobs") if transport == "unix" else (MemoryBlobStore())
            )
        config = DaemonConfig(
            socket_path=Path(tmp) / "d.sock" if transport == "unix" else None,
            batch_size=batch_size,
            insert_path=insert_path,
            eviction_delay=timeout,
        )
        daemon = Daemon(config, blob_store=blob_store, before_batch=run.before_batch)
        run.daemon = daemon
        try:
            await daemon.start()
            await _drive(run, result, expected, notebook_id)
        finally:
            await run.close()
    result.load_reports = list(daemon.load_reports)
    _measure(run, result, parsed, batch_size)
    return result.freeze()


async def _drive(run: _Run, result: _Draft, expected: dict[str, Any], notebook_id: str) -> None:
    scenario, daemon = run.scenario, run.daemon
    assert daemon is not None
    initial = [s for s in scenario.peers if s.join_at_batch is None]
    await run.open_peer(initial[0], None)
    room = daemon.rooms.get(notebook_id)
    run.room = room
    if room is None:
        result.checks.append(Check("open", False, "the daemon created no room for the loader"))
        return
    try:
        await asyncio.gather(*(run.open_peer(s, None) for s in initial[1:]))
    finally:
        run.initial_open.set()
    try:
        state = await asyncio.wait_for(room.wait_load_finished(), run.timeout)
    except asyncio.TimeoutError:
        result.checks.append(Check("load finished", False, f"no result in {run.timeout:g} s"))
        return
    # `fail_at_batch` is a fault of the *first* load only (Scenario's contract). If that load
    # ended before reaching the batch (e.g. the loader left earlier), the still-armed fault
    # used to fire during the retry and fail it. Found by tests/test_faults.py's random schedules.
    run.fault_armed = False
    first_ok = state.phase is LoadPhase.READY
    if first_ok:
        _verify(run, result, room, expected, "load", await run.settle(room, loaded=True))
        return
    # The load failed: everyone must converge to the empty notebook, then a retry loads fully.
    expect_failure = scenario.fail_at_batch is not None or any(
        s.disconnect_at_batch is not None and s is scenario.loader for s in scenario.peers
    )
    result.checks.append(Check("failure was expected", expect_failure, state.reason or ""))
    _verify(
        run,
        result,
        room,
        empty_document(notebook_id),
        "rollback",
        await run.settle(room, loaded=False),
    )
    await run.open_peer(PeerSpec("retry"), None)
    try:
        state = await asyncio.wait_for(room.wait_load_finished(), run.timeout)
    except asyncio.TimeoutError:
        result.checks.append(Check("retry finished", False, f"no result in {run.timeout:g} s"))
        return
    result.checks.append(Check("retry loaded", state.phase is LoadPhase.READY, state.reason or ""))
    _verify(run, result, room, expected, "retry", await run.settle(room, loaded=True))


def _verify(
    run: _Run,
    result: _Draft,
    room: NotebookRoom,
    expected: dict[str, Any],
    stage: str,
    late: list[str],
) -> None:
    result.checks.append(Check(f"{stage}: every peer settled", not late, "; ".join(late)))
    report = check_convergence(room.doc.materialize(), run.materialized(), expected=expected)
    result.convergence.append(report)
    result.checks.append(Check(f"{stage}: converged", report.ok, report.describe()))
    result.converged = report.ok and not late


def _measure(run: _Run, result: _Draft, parsed: Any, batch_size: int) -> None:
    ok_reports = [r for r in result.load_reports if r.ok]
    report = (
        ok_reports[-1] if ok_reports else (result.load_reports[-1] if result.load_reports else None)
    )
    clients = {n: p for n, p in run.peers.items() if p.client is not None}
    if report is not None:
        result.cells = report.cells if report.ok else 0
        result.batches = batch_rows(report, clients, run.join_batch)
        result.phases = phases(report, run.daemon)
    for n, p in run.peers.items():
        conv = [c for c in result.convergence if n in c.checked]
        converged = bool(conv) and all(n not in c.diffs for c in conv)
        result.peers.append(peer_row(p, run.join_batch.get(n), report, converged=converged))
    if run.room is not None:
        room_stats = run.room.doc.statistics()
        result.counters = {
            "ops": room_stats.ops,
            "transactions": room_stats.transactions,
            "scan_steps": room_stats.scan_steps,
            "sync_messages": room_stats.sync_messages_generated,
            "sync_bytes": room_stats.sync_bytes_generated,
        }
    result.raw_automerge_s = raw_automerge_seconds(parsed, batch_size)
