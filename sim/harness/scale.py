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

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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
from sim.harness.metrics import raw_automerge_seconds
from sim.harness.target import BundledTarget
from sim.results.base import Check
from sim.results.scale import (
    BatchTrend,
    CounterFit,
    RawAutomerge,
    RawPoint,
    ScalePath,
    ScalePoint,
    ScaleResult,
)
from sim.workload.generator import generate_notebook

__all__ = [
    "DEFAULT_SIZES",
    "LoadMeasurement",
    "ScaleResult",
    "check_sweep",
    "measure_load",
    "run_scale",
    "scale_checks",
    "summarize_path",
]

DEFAULT_SIZES: dict[str, tuple[int, ...]] = {
    "full": (50, 100, 200, 400, 800, 1600, 3200),
    "naive": (100, 200, 400, 800),
}

Progress = Callable[[str], None]
MIN_LOADS = 3  # a fit with a confidence interval needs 3 points (1 degree of freedom)
MIN_BATCHES = 3  # the per-batch trend of the largest load needs 3 batches


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
        DaemonConfig(batch_size=batch_size, insert_path=insert_path, offload_blobs=False),
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
    first = _first_cell_fit(points)
    largest = max(points, key=lambda p: (p.cells, -p.total_s))
    trend = fit_linear_trend(range(len(largest.batch_s)), largest.batch_s)
    counters: dict[str, CounterFit] = {}
    for name in ("scan_steps", "ops"):
        values = [getattr(p, name) for p in points]
        cfit = fit_counter(ns, values)
        counters[name] = CounterFit(
            classify_counter(ns, values), None if cfit is None else cfit.exponent
        )
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
        batch_trend=BatchTrend(
            cells=largest.cells,
            relative_slope=trend.relative_slope,
            robust_relative_slope=trend.robust_relative_slope,
            flat=is_flat(trend),
            latencies_s=tuple(largest.batch_s),
        ),
        first_cell_exponent=None if first is None else first.exponent,
        first_cell_ci=None if first is None else (first.ci[0], first.ci[1]),
    )


def _first_cell_fit(points: Sequence[LoadMeasurement]) -> PowerLawFit | None:
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


def scale_checks(paths: Mapping[str, ScalePath]) -> tuple[Check, ...]:
    """The detectors' verdicts: the full path is linear, the naive path is flagged quadratic."""
    checks = []
    for name, pr in paths.items():
        detail = f"exponent {pr.exponent:.2f}, verdict {pr.verdict}"
        scans = pr.counter_verdict("scan_steps")
        if name == "full":
            ok = pr.verdict in ("linear", "sublinear") and scans == "zero"
            checks.append(Check("full path is linear", ok, detail))
        else:
            ok = pr.verdict == "quadratic" and scans == "quadratic"
            checks.append(Check("naive path is flagged quadratic", ok, detail))
    return tuple(checks)


async def run_scale(
    paths: Sequence[InsertPath],
    *,
    sizes: dict[str, Sequence[int]] | None = None,
    repeats: int = 2,
    seed: int = 0,
    batch_size: int = 3,
    progress: Progress | None = None,
) -> ScaleResult:
    """Sweep notebook sizes for each insert path; interleave paths per size and repeat."""
    chosen: dict[str, list[int]] = {
        str(p): list((sizes or {}).get(p) or DEFAULT_SIZES[p]) for p in paths
    }
    for chosen_sizes in chosen.values():
        check_sweep(chosen_sizes, repeats, batch_size)
    t0 = time.monotonic()
    measured: dict[str, list[LoadMeasurement]] = {str(p): [] for p in paths}
    raw_points: list[tuple[int, float]] = []
    all_sizes = sorted({n for s in chosen.values() for n in s})
    with tempfile.TemporaryDirectory(prefix="nbscale-") as tmp:
        # Warm-up (discarded): the first load of a process pays for imports and thread start-up.
        warm = Path(tmp) / "warm-up.ipynb"
        warm.write_bytes(generate_notebook(cells=all_sizes[0], seed=seed))
        for p in paths:
            await measure_load(warm, insert_path=p, batch_size=batch_size)
        for n in all_sizes:
            data = generate_notebook(cells=n, seed=seed)
            nb = Path(tmp) / f"scale-{n}.ipynb"
            nb.write_bytes(data)
            for r in range(repeats):
                for p in paths:
                    if n not in chosen[p]:
                        continue
                    if progress is not None:
                        progress(f"{p} path: {n} cells, run {r + 1}/{repeats}")
                    m = await measure_load(nb, insert_path=p, batch_size=batch_size)
                    measured[p].append(m)
            if "full" in chosen and n in chosen["full"]:
                parsed = parse_notebook(data)
                raw_points.append((n, raw_automerge_seconds(parsed, batch_size)))
    summaries = {name: summarize_path(points) for name, points in measured.items()}
    return ScaleResult(
        sizes=tuple(all_sizes),
        sizes_by_path={name: tuple(s) for name, s in chosen.items()},
        repeats=repeats,
        seed=seed,
        batch_size=batch_size,
        paths=summaries,
        raw_automerge=raw_automerge(raw_points),
        elapsed_s=time.monotonic() - t0,
        checks=scale_checks(summaries),
        default_sizes={k: tuple(v) for k, v in DEFAULT_SIZES.items()},
    )
