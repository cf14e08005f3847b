"""Seeded data and helpers shared by the asv suites.

APPEND-ONLY. Do not change or remove anything below; only append. asv compares each benchmark
with itself across commits, so its input must never change: a new notebook size, seed or helper
goes at the end of this file, under a new name. (numpy's ``benchmarks/common.py`` has the same
rule.) The default 50-cell notebook is pinned by sha256 (:func:`notebook_bytes` checks it
against ``sim.workload.generator.DEFAULT_NOTEBOOK_SHA256``) and the other sizes come from the same
versioned generator, so a generator change that would make old and new numbers incomparable
fails loudly instead of drifting silently.

The suites may run against old commits where part of the public API does not exist yet.
:func:`require` turns such an ImportError/AttributeError into ``NotImplementedError``, which asv
reports as a *skipped* benchmark (n/a) rather than a failure. Call it from ``setup()`` (or let a
helper call it there) -- never at module import time, or discovery would lose the whole module.
A benchmark class without ``setup`` (see below) uses :func:`optional` at import time instead and
raises :class:`SkipNotImplemented` from its body, the one exception asv skips from there.
``setup_cache()`` must not raise it either (asv would mark every benchmark of the class failed):
catch it there and return :func:`missing`, which ``setup()`` re-raises through
:func:`check_cache`.

Since asv_runner 0.3, a ``setup`` method runs before *every* timed call (asv#966), so a time
benchmark with ``setup`` times one call per sample. That is right for the loads and inserts here
(milliseconds or more, and they mutate state); a sub-microsecond benchmark keeps its inputs at
module level and has no ``setup``, so asv can calibrate ``number`` (many calls per sample).

Only the project's public names are used: ``core.*`` modules' ``__all__``/documented names,
``sim.workload.generator``, ``sim.analysis.complexity`` and ``sim.net.streams``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import importlib
import random
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

SEED = 0
"""Seed of every generated notebook."""

DEFAULT_CELLS = 50
"""The reference notebook: 50 cells, ~1.4 MB, 11 PNG outputs (``generate_notebook()``)."""

LOAD_CELLS = (50, 200, 800)
DOC_CELLS = (50, 200)
BATCH_SIZES = (3, 30)
INSERT_PATHS = ("full", "naive")
PEERS = (1, 10)
TRANSPORTS = ("socketpair", "memory")

NAIVE_MAX_CELLS = 200
"""The naive (scanning) path is O(n^2): a load of 800 cells takes ~25 s, too slow to repeat."""

SWEEP_FULL = (50, 100, 200, 400, 800)
SWEEP_NAIVE = (50, 100, 200, 400)
SWEEP_REPEATS = 2

LOAD_TIMEOUT_S = 600.0
"""Safety net only: a hung load fails instead of hanging the run."""


# --------------------------------------------------------------------------- optional API
MOVED = {
    "sim.workload.generator": "sim.notebook_gen",
    "sim.analysis.complexity": "sim.complexity",
    "sim.net.streams": "sim.streams",
}
"""Public modules that moved when ``sim/`` became subpackages: new path -> path at older commits.
:func:`require` falls back to the old path, so a commit from before the move still measures the
same inputs (its history stays comparable) instead of being skipped."""


def require(module: str, *names: str) -> ModuleType:
    """Import ``module`` and check ``names`` exist, else raise NotImplementedError (asv: skip)."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        old = MOVED.get(module)
        if old is None:
            raise NotImplementedError(f"{module} is not available at this commit ({exc})") from exc
        return require(old, *names)
    absent = [name for name in names if not hasattr(mod, name)]
    if absent:
        raise NotImplementedError(f"{module} has no {', '.join(absent)} at this commit")
    return mod


try:  # asv_runner is always importable inside an asv benchmark process
    from asv_runner.benchmarks.mark import SkipNotImplemented
except ImportError:  # pragma: no cover - imported outside asv

    class SkipNotImplemented(NotImplementedError):  # type: ignore[no-redef]
        """Stand-in for asv_runner's: skips a benchmark raised from its body (no setup)."""


def optional(module: str, *names: str) -> ModuleType | None:
    """Like :func:`require`, but None instead of raising (for module-level, setup-free state)."""
    try:
        return require(module, *names)
    except NotImplementedError:
        return None


def outside_figure(name: str, *args: Any) -> dict[str, Any]:
    """``sim.harness.outside.<name>(workdir, *args)`` of the tree under test, in a fresh temporary
    directory: a figure measured against a real ``nbstream serve``."""
    outside = require("sim.harness.outside", name)
    with tempfile.TemporaryDirectory() as tmp:
        result: dict[str, Any] = asyncio.run(getattr(outside, name)(Path(tmp), *args))
    return result


def missing(exc: NotImplementedError) -> dict[str, Any]:
    """What ``setup_cache()`` returns when the API it needs is absent at this commit."""
    return {"missing": str(exc)}


def check_cache(cache: dict[str, Any]) -> dict[str, Any]:
    """Re-raise, in ``setup()``, a NotImplementedError that ``setup_cache()`` recorded."""
    if "missing" in cache:
        raise NotImplementedError(cache["missing"])
    return cache


# --------------------------------------------------------------------------- seeded data
@functools.lru_cache(maxsize=8)
def notebook_bytes(cells: int, seed: int = SEED) -> bytes:
    """The seeded reference-shaped notebook of ``cells`` cells (nbformat 4.5 JSON bytes)."""
    gen = require("sim.workload.generator", "generate_notebook")
    data: bytes = gen.generate_notebook(cells, seed)
    pinned = getattr(gen, "DEFAULT_NOTEBOOK_SHA256", None)
    if (cells, seed) == (DEFAULT_CELLS, 0) and pinned is not None:
        digest = fingerprint(data)
        if digest != pinned:
            raise RuntimeError(f"default notebook hashes to {digest}, not the pinned {pinned}")
    return data


def fingerprint(data: bytes) -> str:
    """sha256 hex digest of notebook bytes (recorded next to results)."""
    return hashlib.sha256(data).hexdigest()


def cell_snapshots(cells: int, seed: int = SEED) -> list[Any]:
    """The notebook as ``CellSnapshot`` s, outputs already turned into manifest hashes.

    Exactly what the streaming load inserts: parsed by ``core.ipynb``, outputs stored in a
    ``MemoryBlobStore`` through ``core.manifest``. Picklable (for ``setup_cache``).
    """
    ipynb = require("core.ipynb", "parse_notebook", "record_to_cell")
    manifest = require("core.manifest", "outputs_to_refs")
    blobs = require("core.blob_store", "MemoryBlobStore")
    store = blobs.MemoryBlobStore()
    parsed = ipynb.parse_notebook(notebook_bytes(cells, seed))
    return [
        ipynb.record_to_cell(record, manifest.outputs_to_refs(record.outputs, store))
        for record in parsed.cells
    ]


def new_doc(name: str = "bench") -> Any:
    """A fresh, empty ``NotebookDoc``."""
    doc_mod = require("core.notebook_doc", "NotebookDoc")
    return doc_mod.NotebookDoc(name)


def insert_cells(doc: Any, snapshots: list[Any], insert_path: str, batch_size: int = 3) -> None:
    """Insert every snapshot the way the loader does: batches of ``add_cells_full``, or naive."""
    if insert_path == "full":
        for start in range(0, len(snapshots), batch_size):
            doc.add_cells_full(start, snapshots[start : start + batch_size])
    elif insert_path == "naive":
        for index, snapshot in enumerate(snapshots):
            doc.add_cell_naive(index, snapshot)
    else:
        raise ValueError(f"unknown insert path {insert_path!r}")


class NotebookFiles:
    """Seeded notebooks written to a private temp dir: the daemon opens files by absolute path."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="nbstream-bench-"))

    def path(self, cells: int, seed: int = SEED, data: bytes | None = None) -> Path:
        target = self.root / f"bench-{cells}-seed{seed}.ipynb"
        if not target.exists():
            target.write_bytes(notebook_bytes(cells, seed) if data is None else data)
        return target

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------- streaming load
@dataclass(frozen=True, slots=True)
class LoadResult:
    """One full streaming load, seen from the daemon and from its peers."""

    cells: int
    wall_s: float  # first handshake sent -> every peer has every cell (client side)
    load_s: float  # the daemon's LoadReport.total_s (server side)
    ops: int  # DocStatistics of the room's document: deterministic
    transactions: int
    scan_steps: int
    change_frames: int  # frames that changed the loading peer's doc: deterministic
    change_bytes: int  # wire bytes of those frames
    frames_in: int  # every frame the loading peer got (heads-only frames vary run to run)
    bytes_in: int  # wire bytes received, summed over all peers
    batch_latencies_s: tuple[float, ...]  # per batch: manifests + insert + notify
    time_to_first_cell_s: float | None


def require_load_api(transport: str = "socketpair") -> None:
    """Raise NotImplementedError unless this commit has what :func:`run_load` needs."""
    require("core.daemon", "Daemon", "DaemonConfig")
    require("core.blob_store", "MemoryBlobStore")
    require("core.client", "NotebookClient")
    if transport == "memory":
        require("sim.net.streams", "memory_stream_pair")
    elif transport != "socketpair":
        raise ValueError(f"unknown transport {transport!r}")


async def _open_streams(transport: str) -> tuple[Any, Any]:
    """``((client_reader, client_writer), (server_reader, server_writer))``."""
    if transport == "memory":
        streams = require("sim.net.streams", "memory_stream_pair")
        pair = await streams.memory_stream_pair()
        return pair[0], pair[1]
    a, b = socket.socketpair()
    try:
        client = await asyncio.open_connection(sock=a)
    except BaseException:
        a.close()
        b.close()
        raise
    try:
        server = await asyncio.open_connection(sock=b)
    except BaseException:
        client[1].close()
        b.close()
        raise
    return client, server


async def _load(
    path: Path, batch_size: int, insert_path: str, peers: int, transport: str
) -> LoadResult:
    daemon_mod = require("core.daemon", "Daemon", "DaemonConfig")
    blobs = require("core.blob_store", "MemoryBlobStore")
    client_mod = require("core.client", "NotebookClient")
    options: dict[str, Any] = {"batch_size": batch_size, "insert_path": insert_path}
    if "notebook_root" in {f.name for f in dataclasses.fields(daemon_mod.DaemonConfig)}:
        options["notebook_root"] = path.resolve().parent  # older commits serve any path
    config = daemon_mod.DaemonConfig(**options)
    daemon = daemon_mod.Daemon(config, blob_store=blobs.MemoryBlobStore())
    await daemon.start()
    served: list[asyncio.Task[None]] = []
    clients: list[Any] = []
    try:
        for index in range(peers):
            client_end, server_end = await _open_streams(transport)
            served.append(asyncio.create_task(daemon.handle_connection(*server_end)))
            clients.append(client_mod.NotebookClient(*client_end, name=f"peer-{index}"))
        t0 = time.perf_counter()
        await asyncio.gather(*(client.open(path) for client in clients))
        await asyncio.gather(*(client.wait_loaded() for client in clients))
        wall_s = time.perf_counter() - t0
        doc_stats = _doc_statistics(daemon)
        (report,) = daemon.load_reports
        stats = [client.statistics() for client in clients]
    finally:
        for client in clients:
            await client.close()
        await daemon.stop()
        for task in served:
            task.cancel()
        await asyncio.gather(*served, return_exceptions=True)
    first = stats[0]
    changed = [arrival for arrival in first.arrivals if arrival.changed]
    return LoadResult(
        cells=report.cells,
        wall_s=wall_s,
        load_s=report.total_s,
        ops=doc_stats.ops,
        transactions=doc_stats.transactions,
        scan_steps=doc_stats.scan_steps,
        change_frames=len(changed),
        change_bytes=sum(arrival.nbytes for arrival in changed),
        frames_in=first.frames_in,
        bytes_in=sum(s.bytes_in for s in stats),
        batch_latencies_s=tuple(b.finished_at - b.started_at for b in report.batches),
        time_to_first_cell_s=first.time_to_first_cell_s,
    )


def _doc_statistics(daemon: Any) -> Any:
    """The served document's counters: ``Daemon.room_figures()`` where the commit has it; older
    commits expose only their room registry (read here so their history stays comparable)."""
    figures = getattr(daemon, "room_figures", None)
    if figures is not None:
        return next(iter(figures().values())).doc
    return next(iter(daemon.rooms.rooms())).doc.statistics()


def run_load(
    path: Path,
    *,
    batch_size: int = 3,
    insert_path: str = "full",
    peers: int = 1,
    transport: str = "socketpair",
) -> LoadResult:
    """One full streaming load of ``path`` to ``peers`` peers, on a fresh daemon and event loop.

    A fresh ``asyncio.run`` per call: a coroutine cannot be reused across benchmark rounds.
    """
    require_load_api(transport)
    return asyncio.run(
        asyncio.wait_for(
            _load(path, batch_size, insert_path, peers, transport), timeout=LOAD_TIMEOUT_S
        )
    )


# --------------------------------------------------------------------------- framing data
FRAME_PAYLOADS = (64, 4096, 1 << 20)
"""Payload bytes: a small sync (heads-only) message, a one-batch message, a 1 MiB message."""

READ_CHUNKS = (4096, 65536)
"""How the decoder is fed: a small read and the daemon's ``read_chunk`` (64 KiB)."""

FRAME_STREAM_BYTES = 1 << 22
"""A decode benchmark feeds at least this many payload bytes (and at least 8 frames)."""


@functools.lru_cache(maxsize=8)
def payload(size: int, seed: int = SEED) -> bytes:
    """``size`` seeded pseudo-random bytes (incompressible, like an Automerge sync message)."""
    return random.Random(f"payload-{seed}-{size}").randbytes(size)
