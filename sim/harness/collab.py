"""The collaboration scenarios: peers that edit while the load streams, after it, through a
failed load and through a partition (``nbstream sim --scenario edits|edits-rollback|partition``;
``typists`` is in :mod:`sim.harness.typists`).

Every scenario runs against the bundled daemon, takes a seed, and draws all its choices (who
edits, which edit, which cell, the batch of the fault or the partition) from one
``random.Random(f"{name}:{seed}")``. Edits are made through ``NotebookClient.doc`` and sent with
``sync_now()``; :class:`sim.harness.edits.EditLog` records them. Actions "at batch k" run in the
daemon's in-process batch hook, as in :mod:`sim.harness.runner`. Two invariants are checked in
every scenario: **convergence** (every peer's document equals the server's) and **no
acknowledged edit lost** (``edits_lost``, see :mod:`sim.harness.edits`). Every wait has a
safety timeout; hitting it is a failed check, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

from core import __version__
from core.blob_store import BlobStore
from core.client import NotebookClient
from core.daemon import DaemonConfig
from core.errors import CoreError
from core.ipynb import parse_notebook
from core.loader import InsertPath
from core.notebook_doc import NotebookDoc
from core.room import NotebookRoom
from sim.harness.convergence import check_convergence
from sim.harness.editor import Editor
from sim.harness.edits import EditLog
from sim.harness.metrics import batch_rows, load_summary, peer_row, phases
from sim.harness.scenarios import COLLAB_SCENARIOS, disk_full
from sim.harness.target import BundledTarget
from sim.harness.trace import Trace, trace_sha256
from sim.harness.watchdog import HarnessStuck, bounded
from sim.harness.workcopy import private_copy
from sim.net.connect import Transport
from sim.results.base import Check
from sim.results.collab import EditSummary
from sim.results.sim import NotebookInfo, SimResult
from sim.workload.generator import notebook_fingerprint

__all__ = ["COLLAB_SCENARIOS", "CollabRun", "run_collab"]


WAVES = 3  # rounds of edits after the load
EDITS_PER_WAVE = 2


class CollabRun:
    """One collaboration run: the bundled daemon, the editors, the edit log and the trace."""

    def __init__(
        self,
        name: str,
        notebook: Path,
        *,
        seed: int,
        transport: Transport,
        batch_size: int,
        insert_path: InsertPath,
        timeout: float,
        blob_store: BlobStore | None,
    ) -> None:
        self.name = name
        shown = Path(os.path.realpath(notebook))
        self.seed = seed
        self.rng = random.Random(f"{name}:{seed}")
        self.timeout = timeout
        self.batch_size = batch_size
        self.insert_path = insert_path
        data = shown.read_bytes()
        parsed = parse_notebook(data)
        # The run edits a private copy, never the user's notebook (sim.harness.workcopy);
        # close() removes it.
        self._workdir = contextlib.ExitStack()
        self.notebook = self._workdir.enter_context(private_copy(shown))
        self.notebook_id = str(self.notebook)
        self.file_cells = [c.id for c in parsed.cells]
        self.info = NotebookInfo(
            str(shown), len(parsed.cells), len(data), notebook_fingerprint(data)
        )
        self.batches = -(-len(parsed.cells) // batch_size)
        config = DaemonConfig(
            batch_size=batch_size,
            insert_path=insert_path,
            eviction_delay=timeout,
            notebook_root=self.notebook.parent,
        )
        self.target = BundledTarget(
            config, transport=transport, blob_store=blob_store, before_batch=self._before_batch
        )
        self.trace = Trace()
        self.log = EditLog()
        self.editors: dict[str, Editor] = {}
        self.join_batch: dict[str, int | None] = {}
        self.checks: list[Check] = []
        self.at_batch: dict[int, list[Callable[[], Awaitable[None]]]] = {}
        self.fail_at: int | None = None
        self.initial_open = asyncio.Event()
        self.converged = True
        self.summary: EditSummary | None = None

    # ------------------------------------------------------------------ the batch hook
    async def _before_batch(self, _room: NotebookRoom, index: int) -> None:
        if index == 0:
            await self.initial_open.wait()
        self.trace.event(f"batch {index}")
        for action in self.at_batch.get(index, []):
            try:
                await action()
            except Exception as exc:  # the harness's own fault: a failed check, not the load's
                self.checks.append(Check(f"harness action at batch {index}", False, repr(exc)))
        if self.fail_at == index:
            self.fail_at = None
            self.trace.event(f"fault blob store full at batch {index}")
            raise disk_full(index)

    def on_batch(self, index: int, action: Callable[[], Awaitable[None]]) -> None:
        self.at_batch.setdefault(index, []).append(action)

    # ------------------------------------------------------------------ peers and edits
    async def join(
        self,
        name: str,
        batch: int | None = None,
        *,
        doc: NotebookDoc | None = None,
        partitionable: bool = False,
        read_delay: float = 0.0,
    ) -> Editor:
        editor = self.editors.get(name) or Editor(name, self.trace, read_delay=read_delay)
        self.editors[name] = editor
        self.join_batch.setdefault(name, batch)
        await editor.connect(
            self.target, self.notebook, self.timeout, doc=doc, partitionable=partitionable
        )
        return editor

    def connected(self) -> list[Editor]:
        """The editors that are connected and hold the document's structure."""
        return [
            e
            for e in self.editors.values()
            if e.client is not None and e.ready and not e.disconnected
        ]

    def edit(self, editor: Editor, *, online: bool = True) -> None:
        """One random edit by ``editor`` on its local document: add a cell (25%), type into a
        cell (60%) or delete one (15%; never the last two cells)."""
        doc = editor.doc
        cells = doc.get_cells()
        roll = self.rng.random()
        if not cells or roll < 0.25:
            editor.added += 1
            cell_id = f"{editor.name}-c{editor.added}"
            at = self.rng.randint(0, len(cells))
            made = self.log.add(
                doc, editor.name, at, cell_id, f"[{editor.name} cell {editor.added}]"
            )
        elif roll < 0.85 or len(cells) <= 2:
            cell = cells[self.rng.randrange(len(cells))]
            editor.typed += 1
            token = f" {editor.name}.{editor.typed}"
            made = self.log.type(doc, editor.name, cell.id, cell.source, token)
        else:
            cell = cells[self.rng.randrange(len(cells))]
            made = self.log.delete(doc, editor.name, cell.id)
        editor.made(made.change)
        self.trace.event(made.trace())
        if online and editor.client is not None:
            editor.client.sync_now()

    def edits_by_everyone(self, probability: float) -> None:
        """Each connected editor, in join order, edits with ``probability``."""
        for editor in self.connected():
            if self.rng.random() < probability:
                self.edit(editor)

    # ------------------------------------------------------------------ the server's side
    async def read_server(self) -> NotebookDoc:
        """The server's document through ``get_doc_bytes`` (a checkpoint: it acknowledges
        every edit whose change the answer holds)."""
        for editor in self.connected():
            assert editor.client is not None
            with contextlib.suppress(CoreError, asyncio.TimeoutError):
                data = await asyncio.wait_for(editor.client.get_doc_bytes(), self.timeout)
                server = NotebookDoc.load(data)
                acked = self.log.acknowledge(server)
                self.trace.event(f"checkpoint {len(server.get_cells())} cells, {acked} acked")
                return server
        raise CoreError("no connected peer could read the server's document")

    async def settle(self, phase: str, stage: str) -> NotebookDoc | None:
        """Wait until every connected editor holds every edit of a connected peer (and every
        acknowledged one) and the server's heads, then check convergence. Returns the server's
        document (None: a peer never settled). A peer that left may have made edits the server
        never got: nobody can hold those."""
        here = {e.name for e in self.connected()}
        wanted = {e.change for e in self.log.edits if e.peer in here or e.acknowledged}
        late: list[str] = []
        # One deadline for the whole settle: per-editor timeouts added up to N x the timeout
        # (5 editors x 30 s outlived pytest-timeout's 120 s when a peer never settled).
        deadline = asyncio.get_running_loop().time() + self.timeout
        for editor in self.connected():
            client = editor.client
            assert client is not None

            def has_all(ed: Editor = editor) -> bool:
                return wanted <= ed.seen

            try:
                await _until(client, has_all, deadline)
            except (asyncio.TimeoutError, CoreError) as exc:
                late.append(f"{editor.name}: {len(wanted - editor.seen)} edits missing ({exc!r})")
        server = await self.read_server() if not late else None
        if server is not None:
            heads = set(server.heads())
            for editor in self.connected():
                client = editor.client
                assert client is not None

                def done(c: NotebookClient = client) -> bool:
                    s = c.load_status
                    return s is not None and s.phase == phase and set(c.doc.heads()) == heads

                try:
                    await _until(client, done, deadline)
                except (asyncio.TimeoutError, CoreError) as exc:
                    late.append(f"{editor.name} ({exc!r})")
        self.checks.append(Check(f"{stage}: every peer settled", not late, "; ".join(late)))
        if server is None or late:
            self.converged = False
            return None
        peers = {e.name: e.doc.materialize() for e in self.connected()}
        report = check_convergence(server.materialize(), peers)
        detail = report.describe() if not report.ok else f"{len(peers)} peers equal the server"
        self.checks.append(Check(f"{stage}: converged", report.ok, detail))
        self.converged = self.converged and report.ok
        return server

    async def wait_phase(self, phase: str, *, judge: Editor | None = None) -> bool:
        """Every connected editor has heard the load end in ``phase``. With ``judge`` (the peer
        whose open started a retry), its outcome decides, then the others must hear that phase
        itself (they may still hold the status of the load before)."""
        editors = self.connected()
        if judge is not None:
            editors = [judge, *(e for e in editors if e is not judge)]
        deadline = asyncio.get_running_loop().time() + self.timeout  # one for all editors
        for i, editor in enumerate(editors):
            client = editor.client
            assert client is not None
            exact = judge is not None and i > 0

            def ended(c: NotebookClient = client, exact: bool = exact) -> bool:
                s = c.load_status
                if exact:
                    return s is not None and s.phase == phase
                return s is not None and s.phase in ("ready", "failed")

            try:
                await _until(client, ended, deadline)
            except (asyncio.TimeoutError, CoreError) as exc:
                self.checks.append(Check(f"load {phase}", False, f"{editor.name}: {exc!r}"))
                return False
            status = client.load_status
            assert status is not None
            if status.phase != phase:
                self.checks.append(Check(f"load {phase}", False, status.reason or status.phase))
                return False
        self.trace.event(f"load {phase}")
        return True

    # ------------------------------------------------------------------ the verdict
    def check_rollback(self, server: NotebookDoc) -> None:
        """After a failed load: the server holds exactly the peers' live cells. Only edits
        the server got count (``server`` was just read by :meth:`settle`): a peer that left
        may have added a cell it never delivered."""
        got = [e for e in self.log.edits if e.acknowledged]
        added = {e.cell_id for e in got if e.kind == "add"}
        deleted = {e.cell_id for e in got if e.kind == "delete"}
        kept = [c.id for c in server.get_cells()]
        want = added - deleted
        self.checks.append(
            Check(
                "rollback removed exactly the load's cells",
                set(kept) == want and len(kept) == len(want),
                f"server holds {kept}; peers' live cells {sorted(want)}",
            )
        )

    def judge(self, server: NotebookDoc | None) -> None:
        """The invariant checks on the final server document."""
        if server is None:
            return
        summary = self.log.verdict(server.materialize(), set(self.file_cells))
        self.summary = summary
        here = {e.name for e in self.connected()}
        stranded = [e for e in self.log.edits if not e.acknowledged and e.peer in here]
        self.checks.append(
            Check(
                "every edit of a connected peer acknowledged by the server",
                not stranded,
                f"{summary.acknowledged} of {summary.made} acknowledged"
                + (f"; never: {', '.join(e.describe() for e in stranded[:5])}" if stranded else "")
                + f"; {summary.unacknowledged - len(stranded)} by peers that left unsent",
            )
        )
        self.checks.append(
            Check(
                "no acknowledged edit lost",
                summary.lost == 0,
                f"{summary.lost} lost: " + "; ".join(summary.lost_detail)
                if summary.lost
                else f"{summary.survived} survived, {summary.removed_by_delete} removed by a "
                f"later delete, {summary.rolled_back} rolled back with the load's cells",
            )
        )

    def result(self) -> SimResult:
        figures = self.target.figures()
        reports = list(figures.load_reports)
        ok = [r for r in reports if r.ok]
        report = ok[-1] if ok else (reports[-1] if reports else None)
        room = figures.rooms.get(self.notebook_id)
        rows = []
        for name, editor in self.editors.items():
            rows.append(
                peer_row(editor, self.join_batch.get(name), report, converged=self.converged)
            )
        counters = {}
        if room is not None:
            counters = {
                "ops": room.doc.ops,
                "transactions": room.doc.transactions,
                "scan_steps": room.doc.scan_steps,
                "sync_messages": room.doc.sync_messages_generated,
                "sync_bytes": room.doc.sync_bytes_generated,
            }
        summary = self.summary
        return SimResult(
            version=__version__,
            seed=self.seed,
            scenario=self.name,
            transport=self.target.transport,
            insert_path=self.insert_path,
            batch_size=self.batch_size,
            notebook=self.info,
            converged=self.converged and summary is not None,
            cells=room.cells if room is not None else 0,
            peers=tuple(rows),
            batches=tuple(batch_rows(report, self.editors, self.join_batch))
            if report is not None
            else (),
            phases=phases(report, figures) if report is not None else None,
            counters=counters,
            raw_automerge_s=0.0,
            daemon_overhead_ratio=0.0,
            checks=tuple(self.checks),
            loads=tuple(load_summary(r) for r in reports),
            server=self.target.description,
            edits=summary,
            trace_sha256=trace_sha256(self.trace.lines()),
        )

    async def close(self) -> None:
        """Disconnect every editor and stop the daemon; :class:`HarnessStuck` (with what was
        pending) if that takes longer than the run's timeout instead of hanging."""
        try:
            await bounded(self._close(), self.timeout, f"{self.name}: closing the run")
        finally:
            self._workdir.close()

    async def _close(self) -> None:
        for editor in self.editors.values():
            await editor.close()
        await self.target.stop()


async def _until(client: NotebookClient, predicate: Callable[[], bool], deadline: float) -> None:
    """``client.wait_for(predicate)`` until ``deadline`` (the running loop's clock);
    TimeoutError after it. A predicate that already holds passes even past the deadline."""
    if predicate():
        return
    left = max(deadline - asyncio.get_running_loop().time(), 0.0)
    await asyncio.wait_for(client.wait_for(predicate), left)


# ---------------------------------------------------------------------------- the scenarios
async def _edits(run: CollabRun, peers: int) -> None:
    """Peers edit at every batch of the load (each with probability 0.6), join at random
    batches, and edit in waves after it."""
    last = max(0, run.batches - 1)
    loader = await run.join("loader")
    for i in range(1, peers):
        name = f"editor{i}"
        if i == 1:
            await run.join(name)
        else:
            k = run.rng.randint(0, last)
            run.on_batch(k, functools.partial(_join_quietly, run, name, k))
    run.initial_open.set()
    for k in range(run.batches):
        run.on_batch(k, _later(run.edits_by_everyone, 0.6))
    del loader
    if not await run.wait_phase("ready"):
        return
    await _waves(run)
    run.judge(await run.settle("ready", "after the edits"))


async def _edits_rollback(run: CollabRun, peers: int) -> None:
    """The blob store fails at a seeded batch k >= 2 while peers edit; every peer hears
    ``failed``; the server must then hold exactly the peers' own cells; a retry loads the file
    again, peers edit on, and the file's cells must be back in file order."""
    if run.batches < 3:
        raise ValueError(f"edits-rollback needs at least 3 batches, the notebook has {run.batches}")
    k = run.rng.randint(2, run.batches - 1)
    run.fail_at = k
    await run.join("loader")
    for i in range(1, peers):
        await run.join(f"editor{i}")
    run.initial_open.set()
    for b in range(k + 1):
        run.on_batch(b, _later(run.edits_by_everyone, 0.7))
    if not await run.wait_phase("failed"):
        return
    run.log.mark_rollback()
    run.at_batch.clear()  # the retry's batches have no edits scheduled; the waves follow it
    server = await run.settle("failed", "rollback")
    if server is None:
        return
    run.check_rollback(server)
    retry = await run.join("retry")
    if not await run.wait_phase("ready", judge=retry):
        return
    await _waves(run)
    server = await run.settle("ready", "retry and edits")
    run.judge(server)
    if server is not None:
        deleted_after = {
            e.cell_id for e in run.log.edits[run.log.rollback_seq or 0 :] if e.kind == "delete"
        }
        files = set(run.file_cells)
        got = [c.id for c in server.get_cells() if c.id in files]
        expected = [c for c in run.file_cells if c not in deleted_after]
        run.checks.append(
            Check("the file's cells are back, in file order", got == expected, f"{got}")
        )


async def _partition(run: CollabRun, peers: int) -> None:
    """``cut`` is partitioned (both directions stalled; memory transport) from a seeded batch
    until after the load and a wave of edits, editing all along; then its connection drops, it
    edits offline while the others edit, and it reconnects with its document."""
    await run.join("loader")
    for i in range(1, max(2, peers - 1)):
        await run.join(f"editor{i}")
    cut = await run.join("cut", partitionable=True)
    run.initial_open.set()
    k = run.rng.randint(1, max(1, run.batches // 2))
    if cut.hooks is not None:

        async def stall() -> None:
            run.trace.event("partition cut")
            cut.set_partitioned(True)

        run.on_batch(k, stall)
    for b in range(run.batches):
        run.on_batch(b, _later(run.edits_by_everyone, 0.6))
    loader = run.editors["loader"]
    assert loader.client is not None
    await asyncio.wait_for(loader.client.wait_for(lambda: _ended(loader)), run.timeout)
    await _waves(run, waves=1)
    if cut.hooks is not None:
        run.trace.event("partition healed")
        cut.set_partitioned(False)
    if not await run.wait_phase("ready"):
        return
    if await run.settle("ready", "after the partition healed") is None:
        return
    # The connection drops; the peer edits offline; the others edit; it reconnects.
    before = run.target.figures().rooms[run.notebook_id].peers
    await cut.disconnect()
    await asyncio.wait_for(run.target.wait_peers_below(run.notebook_id, before), run.timeout)
    run.trace.event("disconnect cut")
    for _ in range(3):
        run.edit(cut, online=False)
    await _waves(run, waves=1)
    await run.join("cut", doc=cut.doc)
    await _waves(run, waves=1)
    run.judge(await run.settle("ready", "after the reconnect"))


def _ended(editor: Editor) -> bool:
    client = editor.client
    s = client.load_status if client is not None else None
    return s is not None and s.phase in ("ready", "failed")


async def _join_quietly(run: CollabRun, name: str, batch: int) -> None:
    if name not in run.editors:
        await run.join(name, batch)


def _later(fn: Callable[[float], None], arg: float) -> Callable[[], Awaitable[None]]:
    async def action() -> None:
        fn(arg)

    return action


async def _waves(run: CollabRun, waves: int = WAVES) -> None:
    """Rounds of edits by every connected editor, a checkpoint after each."""
    for wave in range(waves):
        run.trace.event(f"wave {wave}")
        for editor in run.connected():
            for _ in range(EDITS_PER_WAVE):
                run.edit(editor)
        await run.read_server()


# Every wait of a flow is bounded by the timeout; a flow several times that long is stuck.
FLOW_BOUND = 3

FLOWS = {"edits": _edits, "edits-rollback": _edits_rollback, "partition": _partition}


async def run_collab(
    name: str,
    notebook: Path,
    *,
    seed: int = 0,
    peers: int | None = None,
    transport: Transport = "memory",
    batch_size: int = 3,
    insert_path: InsertPath = "full",
    timeout: float = 120.0,
    blob_store: BlobStore | None = None,
    trace_out: list[str] | None = None,
) -> SimResult:
    """Run the collaboration scenario ``name`` (not ``typists``) against the bundled daemon;
    ``trace_out`` (when given) receives the run's trace lines (:mod:`sim.harness.trace`)."""
    flow = FLOWS[name]
    run = CollabRun(
        name,
        notebook,
        seed=seed,
        transport=transport,
        batch_size=batch_size,
        insert_path=insert_path,
        timeout=timeout,
        blob_store=blob_store,
    )
    try:
        await run.target.start()
        try:
            await bounded(flow(run, peers or 4), FLOW_BOUND * timeout, f"scenario {name}")
        except (asyncio.TimeoutError, CoreError, HarnessStuck) as exc:
            run.checks.append(Check("scenario ran to the end", False, repr(exc)))
            run.converged = False
        return run.result()
    finally:
        await run.close()
        if trace_out is not None:
            trace_out.extend(run.trace.lines())
