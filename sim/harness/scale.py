"""O(n²) detection: size sweeps per insert path, per-batch trends and counter fits.

Three detectors, reported per insert path (``nbstream scale``):

1. a size sweep with a log-log fit of the load's time against the cell count (exponent with a
   confidence interval, then a verdict). The fitted time is the **daemon's own work** — read,
   parse, manifests, inserts, metadata and sync-message generation — because the simulated peer
   runs on the same event loop: its ``receive_sync_message`` cost grows with the document
   (~1.1 → 1.8 ms per batch from the first to the last tenth of a 3200-cell load, measured) and
   would otherwise be billed to the daemon. The wall-clock load time is fitted too
   (``wall_exponent``), next to the raw Automerge build+sync cost (``raw_automerge``);
2. within the largest load, the trend of per-batch daemon work (manifests + insert) against
   batch index (flat = O(1) per batch, i.e. O(n) for the whole load);
3. the deterministic counters (``scan_steps``, ``ops``) fitted the same way — exact, so their
   verdict never flickers with machine noise.

The naive path's sweep stops at 800 cells by default: its quadratic scan costs ~15 s there
(measured on the reference workload), and ~60 s at 1600.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.blob_store import MemoryBlobStore
from core.client import NotebookClient
from core.daemon import DaemonConfig
from core.ipynb import parse_notebook
from core.loader import InsertPath
from sim.analysis.complexity import (
    PowerLawFit,
    classify_counter,
    classify_exponent,
    fit_counter,
    fit_linear_trend,
    fit_power_law,
    is_flat,
)
from sim.analysis.stats import log_slope
from sim.gate import valgrind
from sim.gate.instructions import count_loads
from sim.gate.workers import GateError
from sim.harness.metrics import raw_automerge_seconds
from sim.harness.scale_calls import count_path_calls
from sim.harness.target import BundledTarget
from sim.results.base import Check
from sim.results.scale import (
    BatchTrend,
    CallFit,
    CounterFit,
    InstructionFit,
    RawAutomerge,
    RawPoint,
    ScalePath,
    ScalePoint,
    ScaleResult,
)
from sim.workload.generator import generate_notebook
from sim.workload.sweep import NotebookSweep

__all__ = [
    "DEFAULT_INSTRUCTION_MAX_CELLS",
    "DEFAULT_SIZES",
    "LoadMeasurement",
    "ScaleResult",
    "SweepMeasurements",
    "assemble_scale",
    "batch_trend",
    "check_sweep",
    "chosen_sizes",
    "count_exact",
    "count_path_instructions",
    "first_cell_fit",
    "fit_counters",
    "measure_load",
    "measure_units",
    "plan_sweep",
    "run_scale",
    "scale_checks",
    "summarize_path",
    "sweep_builder",
    "sweep_units",
]

DEFAULT_SIZES: dict[str, tuple[int, ...]] = {
    "full": (50, 100, 200, 400, 800, 1600, 3200),
    "naive": (100, 200, 400, 800),
}

Progress = Callable[[str], None]
# Instructions are counted under valgrind (≈ 50x slower) for the full path's sizes up to this.
DEFAULT_INSTRUCTION_MAX_CELLS = 100
WORKER_BATCH_SIZE = 3  # the measuring worker loads with DaemonConfig's defaults
TREE = Path(__file__).resolve().parents[2]
MIN_LOADS = 3  # a fit with a confidence interval needs 3 points (1 degree of freedom)
MIN_BATCHES = 3  # the per-batch trend of the largest load needs 3 batches
BUNDLED_SERVER = "bundled daemon (in this process, in-memory streams and blobs)"


def check_sweep(sizes: Sequence[int], repeats: int, batch_size: int) -> None:
    """Raise ValueError (one line, naming the option) unless the sweep can be fitted."""
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    bad = [n for n in sizes if n < 1]
    if bad:
        raise ValueError(f"--sizes must be positive cell counts, got {bad[0]}")
    distinct = sorted(set(sizes))
    if len(distinct) < 2:
        raise ValueError(
            f"--sizes needs at least two distinct sizes to fit an exponent, got {distinct}"
        )
    loads = len(distinct) * repeats
    if loads < MIN_LOADS:
        raise ValueError(
            f"{len(distinct)} sizes x {repeats} repeat{'s' if repeats > 1 else ''} = {loads} "
            f"loads per path; an exponent with a confidence interval needs at least {MIN_LOADS} "
            "(add a size to --sizes or use --repeats 2)"
        )
    if distinct[-1] < MIN_BATCHES * batch_size:
        raise ValueError(
            f"the largest of --sizes must give at least {MIN_BATCHES} batches for the per-batch "
            f"trend: >= {MIN_BATCHES * batch_size} cells with --batch-size {batch_size}, "
            f"got {distinct[-1]}"
        )


@dataclass(frozen=True, slots=True)
class LoadMeasurement:
    cells: int
    total_s: float  # wall clock, load start to finish (includes the in-process peer's work)
    server_s: float  # the daemon's own work (see the module docstring)
    time_to_first_cell_s: float | None
    time_to_full_s: float | None
    batch_s: tuple[float, ...]
    ops: int
    transactions: int
    scan_steps: int
    frames: int
    bytes_in: int


async def measure_load(
    notebook: Path, *, insert_path: InsertPath = "full", batch_size: int = 3
) -> LoadMeasurement:
    """One streaming load of ``notebook`` to one peer over in-memory streams."""
    # In-memory blobs: no I/O to overlap, so manifests run inline and are timed as pure work.
    target = BundledTarget(
        DaemonConfig(
            batch_size=batch_size,
            insert_path=insert_path,
            offload_blobs=False,
            notebook_root=notebook.resolve().parent,
        ),
        blob_store=MemoryBlobStore(),
    )
    await target.start()
    client = NotebookClient(*await target.connect(), name="measure")
    try:
        await client.open(notebook)
        await client.wait_loaded()
        stats = client.statistics()
        figures = target.figures()
    finally:
        await client.close()
        await target.stop()
    (room,) = figures.rooms.values()
    doc_stats = room.doc
    sync_gen_s = figures.sync_gen_s
    report = figures.load_reports[0]
    return LoadMeasurement(
        cells=report.cells,
        total_s=report.total_s,
        server_s=report.read_s
        + report.parse_s
        + report.metadata_s
        + sum(b.manifest_s + b.insert_s for b in report.batches)
        + sync_gen_s,
        time_to_first_cell_s=stats.time_to_first_cell_s,
        time_to_full_s=stats.time_to_full_s,
        batch_s=tuple(b.manifest_s + b.insert_s for b in report.batches),
        ops=doc_stats.ops,
        transactions=doc_stats.transactions,
        scan_steps=doc_stats.scan_steps,
        frames=stats.frames_in,
        bytes_in=stats.bytes_in,
    )


def summarize_path(points: Sequence[LoadMeasurement]) -> ScalePath:
    """One insert path's measurements, fitted: exponent, verdicts, counters, per-batch trend."""
    ns = [p.cells for p in points]
    fit = fit_power_law(ns, [p.server_s for p in points])
    wall = fit_power_law(ns, [p.total_s for p in points])
    first = first_cell_fit(points)
    largest = max(points, key=lambda p: (p.cells, -p.total_s))
    counters = fit_counters(points, ("scan_steps", "ops"))
    return ScalePath(
        exponent=fit.exponent,
        ci=(fit.ci[0], fit.ci[1]),
        verdict=classify_exponent(fit),
        r_squared=fit.r_squared,
        wall_exponent=wall.exponent,
        wall_ci=(wall.ci[0], wall.ci[1]),
        points=tuple(
            ScalePoint(
                cells=p.cells,
                total_s=p.total_s,
                server_s=p.server_s,
                time_to_first_cell_s=p.time_to_first_cell_s,
                time_to_full_s=p.time_to_full_s,
                ops=p.ops,
                scan_steps=p.scan_steps,
                transactions=p.transactions,
                frames=p.frames,
                bytes_in=p.bytes_in,
            )
            for p in points
        ),
        counters=counters,
        batch_trend=batch_trend(largest.cells, largest.batch_s),
        first_cell_exponent=None if first is None else first.exponent,
        first_cell_ci=None if first is None else (first.ci[0], first.ci[1]),
    )


class _Load(Protocol):
    """What a sweep's load measured, in-process (LoadMeasurement) or from outside."""

    @property
    def cells(self) -> int: ...
    @property
    def time_to_first_cell_s(self) -> float | None: ...


def fit_counters(points: Sequence[Any], names: Sequence[str]) -> dict[str, CounterFit]:
    """The verdict and exponent of each counter attribute ``names`` of the loads."""
    ns = [p.cells for p in points]
    counters: dict[str, CounterFit] = {}
    for name in names:
        values = [getattr(p, name) for p in points]
        cfit = fit_counter(ns, values)
        counters[name] = CounterFit(
            classify_counter(ns, values), None if cfit is None else cfit.exponent
        )
    return counters


def batch_trend(cells: int, batch_s: Sequence[float]) -> BatchTrend | None:
    """The per-batch latency trend of one load (None under MIN_BATCHES batches)."""
    if len(batch_s) < MIN_BATCHES:
        return None
    trend = fit_linear_trend(range(len(batch_s)), batch_s)
    return BatchTrend(
        cells=cells,
        relative_slope=trend.relative_slope,
        robust_relative_slope=trend.robust_relative_slope,
        flat=is_flat(trend),
        latencies_s=tuple(batch_s),
    )


def first_cell_fit(points: Sequence[_Load]) -> PowerLawFit | None:
    """The loading peer's time to first cell against the cell count, where it can be fitted."""
    timed = [(p.cells, p.time_to_first_cell_s) for p in points if p.time_to_first_cell_s]
    try:
        return fit_power_law([n for n, _ in timed], [t for _, t in timed if t is not None])
    except ValueError:  # fewer than 3 timed points or 2 sizes
        return None


def raw_automerge(points: Sequence[tuple[int, float]]) -> RawAutomerge:
    exponent = None
    if len({n for n, _ in points}) >= 2 and len(points) >= 3:
        exponent = fit_power_law([n for n, _ in points], [t for _, t in points]).exponent
    return RawAutomerge(tuple(RawPoint(n, t) for n, t in points), exponent)


def exponent_verdict(k: float) -> str:
    """:func:`classify_exponent`'s verdict for an exact exponent."""
    return classify_exponent(PowerLawFit(k, (k, k), 1.0, 1.0, 2))


def deterministic_verdict(name: str, pr: ScalePath) -> tuple[bool, str]:
    """The path's verdict from exact signals only (instructions, calls, ops, scan steps): whether it
    is what the path must be (full: linear; naive: quadratic) and the detail line. The time
    exponents never decide it: they are shown beside it, as advisory."""
    scans = pr.counter_verdict("scan_steps")
    ops = pr.counter_verdict("ops")
    parts = [f"scan steps {scans}", f"ops {ops}"]
    instr = pr.instructions
    instr_ok = True
    if instr is not None and instr.available and instr.exponent is not None:
        span = f"{instr.points[0][0]}-{instr.points[-1][0]} cells"
        parts.insert(0, f"instructions k {instr.exponent:.3f} ({instr.verdict}, {span})")
        instr_ok = instr.verdict in ("linear", "sublinear")
    elif instr is not None:
        parts.insert(0, f"instructions not counted ({instr.reason})")
    calls, calls_ok = pr.calls, True
    if calls is not None and calls.available and calls.worst_local is not None:
        a, b, k = calls.worst_local
        span = f"{calls.points[0][0]}-{calls.points[-1][0]} cells"
        parts.insert(1, f"calls {calls.verdict} ({span}, steepest k {k:.2f} at {a}-{b})")
        calls_ok = calls.verdict in ("linear", "sublinear", "constant")  # steepest k included
        if calls.batch_flat is not None:
            trend = "flat" if calls.batch_flat else "GROWING"
            parts.insert(
                2,
                f"calls per batch {trend} at {calls.batch_cells} cells "
                f"({calls.batch_slope:+.2f} across the load, tolerance {calls.batch_tolerance:g})",
            )
            calls_ok = calls_ok and calls.batch_flat
    elif calls is not None:
        parts.insert(1, f"calls not counted ({calls.reason})")
    if name == "full":
        ok = (
            scans == "zero" and ops in ("linear", "sublinear", "constant") and instr_ok and calls_ok
        )
    else:
        ok = scans == "quadratic"
    wall = "" if pr.wall_exponent is None else f", wall clock {pr.wall_exponent:.2f}"
    advisory = f"; advisory: time exponent {pr.exponent:.2f} ({pr.verdict}){wall}"
    return ok, ", ".join(parts) + advisory


def scale_checks(paths: Mapping[str, ScalePath]) -> tuple[Check, ...]:
    """The detectors' verdicts, from the deterministic signals: the full path is linear, the
    naive path is flagged quadratic."""
    checks = []
    for name, pr in paths.items():
        ok, detail = deterministic_verdict(name, pr)
        title = "full path is linear" if name == "full" else "naive path is flagged quadratic"
        checks.append(Check(title, ok, detail))
    return tuple(checks)


def count_path_instructions(
    sizes: Sequence[int],
    *,
    seed: int,
    batch_size: int,
    max_cells: int,
    progress: Progress | None = None,
    build: Callable[[int], bytes] | None = None,
) -> InstructionFit:
    """Instructions per load of the full path at the ``sizes`` up to ``max_cells`` (valgrind),
    and their exponent; unavailable (with the reason) when they cannot be counted."""
    small = sorted({n for n in sizes if n <= max_cells})
    reason = None
    if max_cells <= 0:
        reason = "switched off (--instructions-max-cells 0)"
    elif batch_size != WORKER_BATCH_SIZE:
        reason = f"the measuring worker loads with batch size {WORKER_BATCH_SIZE} only"
    elif len(small) < 2:
        reason = f"fewer than 2 sizes <= {max_cells} cells (--instructions-max-cells)"
    else:
        reason = valgrind.unavailable()
    if reason is not None:
        return InstructionFit(False, reason)
    with tempfile.TemporaryDirectory(prefix="nbscale-cg-") as tmp:
        paths = {}
        for n in small:
            paths[n] = Path(tmp) / f"scale-{n}.ipynb"
            paths[n].write_bytes(
                generate_notebook(cells=n, seed=seed) if build is None else build(n)
            )
        try:
            (runs,) = count_loads(
                [("full path", TREE)], paths, small, warm_up=small[0], progress=progress
            )
        except GateError as exc:
            return InstructionFit(False, str(exc))
    points = tuple((n, dump.instructions) for n, dump in runs)
    k = log_slope([n for n, _ in points], [c for _, c in points])
    return InstructionFit(True, None, points, k, exponent_verdict(k))


def count_exact(
    chosen: Mapping[str, Sequence[int]],
    *,
    seed: int,
    batch_size: int,
    instructions_max_cells: int,
    calls_max_cells: int,
    progress: Progress | None,
    build: Callable[[int], bytes],
) -> tuple[InstructionFit | None, CallFit | None]:
    """The full path's exact costs (None without a full path): instructions at its small
    sizes, core calls up to ``calls_max_cells``."""
    if "full" not in chosen:
        return None, None
    sizes = chosen["full"]
    fit = count_path_instructions(
        sizes,
        seed=seed,
        batch_size=batch_size,
        max_cells=instructions_max_cells,
        progress=progress,
        build=build,
    )
    calls = count_path_calls(
        sizes,
        tree=TREE,
        batch_size=batch_size,
        worker_batch_size=WORKER_BATCH_SIZE,
        max_cells=calls_max_cells,
        build=build,
        progress=progress,
    )
    return fit, calls


def sweep_units(chosen: Mapping[str, Sequence[int]], repeats: int) -> list[tuple[int, int]]:
    """The sweep's units in run order: (size, repeat) for every distinct size ascending, then
    every repeat. A unit loads every path that has the size (paths interleaved per size)."""
    return [(n, r) for n in sorted({n for s in chosen.values() for n in s}) for r in range(repeats)]


@dataclass(slots=True)
class SweepMeasurements:
    """What a sweep (or a shard of it) measured: each path's loads with their unit index, and
    the raw Automerge floor per size."""

    loads: dict[str, list[tuple[int, LoadMeasurement]]]
    raw_points: list[tuple[int, float]]


async def measure_units(
    paths: Sequence[InsertPath],
    chosen: Mapping[str, Sequence[int]],
    repeats: int,
    *,
    batch_size: int,
    build: Callable[[int], bytes],
    only: Callable[[int], bool] | None = None,
    progress: Progress | None = None,
) -> SweepMeasurements:
    """Measure the sweep's units (``only``: those whose index it accepts), after a discarded
    warm-up load per path. The raw Automerge floor of a size is measured after the unit of its
    last repeat, where the full path has that size."""
    units = sweep_units(chosen, repeats)
    out = SweepMeasurements({str(p): [] for p in paths}, [])
    with tempfile.TemporaryDirectory(prefix="nbscale-") as tmp:
        # Warm-up (discarded): the first load of a process pays for imports and thread start-up.
        warm = Path(tmp) / "warm-up.ipynb"
        warm.write_bytes(build(units[0][0]))
        for p in paths:
            await measure_load(warm, insert_path=p, batch_size=batch_size)
        written: dict[int, bytes] = {}
        for u, (n, r) in enumerate(units):
            if only is not None and not only(u):
                continue
            nb = Path(tmp) / f"scale-{n}.ipynb"
            if n not in written:
                written[n] = build(n)
                nb.write_bytes(written[n])
            data = written[n]
            for p in paths:
                if n not in chosen[p]:
                    continue
                if progress is not None:
                    progress(f"{p} path: {n} cells, run {r + 1}/{repeats}")
                m = await measure_load(nb, insert_path=p, batch_size=batch_size)
                out.loads[p].append((u, m))
            if r == repeats - 1 and "full" in chosen and n in chosen["full"]:
                out.raw_points.append((n, raw_automerge_seconds(parse_notebook(data), batch_size)))
    return out


def assemble_scale(
    chosen: Mapping[str, Sequence[int]],
    measured: Mapping[str, Sequence[LoadMeasurement]],
    raw_points: Sequence[tuple[int, float]],
    instructions: InstructionFit | None,
    *,
    calls: CallFit | None = None,
    repeats: int,
    seed: int,
    batch_size: int,
    elapsed_s: float,
    notebook: Mapping[str, Any] | None,
    shards: int | None = None,
) -> ScaleResult:
    """The result from the loads in run order: fits, verdicts, checks (a sweep's, or the merge
    of its shards': the same function over the same loads gives the same fits)."""
    summaries = {name: summarize_path(points) for name, points in measured.items()}
    if "full" in summaries:
        summaries["full"] = dataclasses.replace(
            summaries["full"], instructions=instructions, calls=calls
        )
    for name in summaries:
        ok, _ = deterministic_verdict(name, summaries[name])
        expected = "linear" if name == "full" else "quadratic"
        verdict = expected if ok else f"not {expected}"
        summaries[name] = dataclasses.replace(
            summaries[name], deterministic_verdict=verdict, exponent_of="server_s"
        )
    return ScaleResult(
        sizes=tuple(sorted({n for s in chosen.values() for n in s})),
        sizes_by_path={name: tuple(s) for name, s in chosen.items()},
        repeats=repeats,
        seed=seed,
        batch_size=batch_size,
        paths=summaries,
        raw_automerge=raw_automerge(raw_points),
        elapsed_s=elapsed_s,
        checks=scale_checks(summaries),
        default_sizes={k: tuple(v) for k, v in DEFAULT_SIZES.items()},
        server=BUNDLED_SERVER,
        notebook=None if notebook is None else dict(notebook),
        shards=shards,
    )


def sweep_builder(seed: int, notebook: NotebookSweep | None) -> Callable[[int], bytes]:
    """The sweep's notebook of ``n`` cells: generated from ``seed``, or built from ``notebook``."""

    def build(n: int) -> bytes:
        return (
            generate_notebook(cells=n, seed=seed)
            if notebook is None
            else notebook.notebook_bytes(n)
        )

    return build


def chosen_sizes(
    paths: Sequence[InsertPath], sizes: Mapping[str, Sequence[int]] | None
) -> dict[str, list[int]]:
    return {str(p): list((sizes or {}).get(p) or DEFAULT_SIZES[p]) for p in paths}


def plan_sweep(
    paths: Sequence[InsertPath],
    sizes: Mapping[str, Sequence[int]] | None,
    repeats: int,
    batch_size: int,
    seed: int,
    notebook: NotebookSweep | None,
) -> tuple[Callable[[int], bytes], dict[str, list[int]]]:
    """The sweep's notebook builder and sizes per path, each path's sweep checked (ValueError,
    one line, for one that cannot be fitted): what a run and each of its shards start from."""
    chosen = chosen_sizes(paths, sizes)
    for s in chosen.values():
        check_sweep(s, repeats, batch_size)
    return sweep_builder(seed, notebook), chosen


async def run_scale(
    paths: Sequence[InsertPath],
    *,
    sizes: dict[str, Sequence[int]] | None = None,
    repeats: int = 2,
    seed: int = 0,
    batch_size: int = 3,
    progress: Progress | None = None,
    instructions_max_cells: int = 0,
    notebook: NotebookSweep | None = None,
    calls_max_cells: int = 0,
) -> ScaleResult:
    """Sweep notebook sizes for each insert path; interleave paths per size and repeat; count
    the full path's instructions at its sizes up to ``instructions_max_cells`` (0: not at all;
    ``nbstream scale`` counts up to :data:`DEFAULT_INSTRUCTION_MAX_CELLS`) and its core calls up
    to ``calls_max_cells`` (0: not at all; the command's default is
    :data:`~sim.harness.scale_calls.DEFAULT_CALL_MAX_CELLS`). ``notebook``: the
    sweep is built from that notebook's cells (:mod:`sim.workload.sweep`), else generated."""
    build, chosen = plan_sweep(paths, sizes, repeats, batch_size, seed, notebook)
    t0 = time.monotonic()
    swept = await measure_units(
        paths, chosen, repeats, batch_size=batch_size, build=build, progress=progress
    )
    fit, calls = count_exact(
        chosen,
        seed=seed,
        batch_size=batch_size,
        instructions_max_cells=instructions_max_cells,
        calls_max_cells=calls_max_cells,
        progress=progress,
        build=build,
    )
    return assemble_scale(
        chosen,
        {name: [m for _, m in loads] for name, loads in swept.loads.items()},
        swept.raw_points,
        fit,
        calls=calls,
        repeats=repeats,
        seed=seed,
        batch_size=batch_size,
        elapsed_s=time.monotonic() - t0,
        notebook=None if notebook is None else notebook.source,
    )
