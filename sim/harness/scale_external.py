"""``nbstream scale --connect/--target-cmd``: the size sweep against a server of another process.

Every load goes to the server over its socket, each on a fresh copy of the sweep notebook (a
server keeps a room open after its last peer leaves: reopening a path would measure a sync).
What only the bundled daemon in this process can give — instructions per load (valgrind runs
the daemon), Automerge ops, scan steps — is reported **unavailable**, never as a failure.
Measured from outside, and what decides the exit status:

* the loading peer's **time to full** per size, fitted log-log: the exponent with its 95% CI
  (``exponent_of: "time_to_full_s"``); the check fails only when its verdict is ``quadratic``
  (k >= 1.7): a linear server sits near 1 even on a busy machine, an O(n²) one tends to 2;
* the **bytes** the loading peer receives per load (``counters.bytes_in``), near-deterministic:
  the check fails unless they grow at most linearly (a server that resends the document per
  batch sends O(n²) bytes).

The server's own phase figures (the per-batch trend, ``server_s``) come from the optional
``statistics`` request and are absent when the server does not answer it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.client import NotebookClient
from core.ipynb import parse_notebook
from sim.analysis.complexity import (
    classify_exponent,
    fit_power_law,
)
from sim.harness.external import SocketTarget, TargetError, fresh_copy
from sim.harness.metrics import raw_automerge_seconds
from sim.harness.scale import (
    DEFAULT_SIZES,
    batch_trend,
    check_sweep,
    first_cell_fit,
    fit_counters,
    raw_automerge,
)
from sim.results.base import Check
from sim.results.scale import (
    CallFit,
    CounterFit,
    InstructionFit,
    ScalePath,
    ScalePoint,
    ScaleResult,
)
from sim.workload.generator import generate_notebook
from sim.workload.sweep import NotebookSweep

__all__ = [
    "EXTERNAL_PATH",
    "UNAVAILABLE",
    "ExternalLoad",
    "external_checks",
    "measure_external_load",
    "run_external_scale",
    "summarize_external",
]

EXTERNAL_PATH = "server"  # the key of the sweep in ``paths``: the server has its own insert path
UNAVAILABLE = "unavailable"
NEEDS_BUNDLED = (
    "needs the bundled daemon in this process (--connect/--target-cmd measure from outside)"
)
FINE_BYTES = ("zero", "constant", "sublinear", "linear")


@dataclass(frozen=True, slots=True)
class ExternalLoad:
    cells: int
    time_to_first_cell_s: float | None
    time_to_full_s: float
    frames: int
    bytes_in: int
    server_s: float | None  # the server's own load work, from `statistics` (None: not answered)
    batch_s: tuple[float, ...]  # its per-batch work (manifests + insert), from `statistics`


async def measure_external_load(target: SocketTarget, notebook: Path) -> ExternalLoad:
    """One load of ``notebook`` through ``target``'s socket; then its `statistics`, if any."""
    reader, writer = await target.connect()
    client = NotebookClient(reader, writer, name="measure")
    try:
        await client.open(notebook)
        await client.wait_loaded()
        stats = client.statistics()
    finally:
        await client.close()
    figures = await target.server_figures(notebook)
    report = figures.load_reports[0] if figures is not None and figures.load_reports else None
    batch_s = () if report is None else tuple(b.manifest_s + b.insert_s for b in report.batches)
    return ExternalLoad(
        cells=client.doc.cell_count(),
        time_to_first_cell_s=stats.time_to_first_cell_s,
        time_to_full_s=stats.time_to_full_s or 0.0,
        frames=stats.frames_in,
        bytes_in=stats.bytes_in,
        server_s=None
        if report is None
        else report.read_s + report.parse_s + report.metadata_s + sum(batch_s),
        batch_s=batch_s,
    )


def summarize_external(points: Sequence[ExternalLoad]) -> ScalePath:
    """The sweep of the server: the time-to-full exponent, bytes and frames fitted; the
    in-process signals unavailable."""
    fit = fit_power_law([p.cells for p in points], [p.time_to_full_s for p in points])
    first = first_cell_fit(points)
    counters = {
        "scan_steps": CounterFit(UNAVAILABLE, None),
        "ops": CounterFit(UNAVAILABLE, None),
        **fit_counters(points, ("bytes_in", "frames")),
    }
    largest = max(points, key=lambda p: (p.cells, -p.time_to_full_s))
    return ScalePath(
        exponent=fit.exponent,
        ci=(fit.ci[0], fit.ci[1]),
        verdict=classify_exponent(fit),
        r_squared=fit.r_squared,
        wall_exponent=fit.exponent,
        wall_ci=(fit.ci[0], fit.ci[1]),
        points=tuple(
            ScalePoint(
                cells=p.cells,
                total_s=p.time_to_full_s,
                server_s=p.server_s,
                time_to_first_cell_s=p.time_to_first_cell_s,
                time_to_full_s=p.time_to_full_s,
                frames=p.frames,
                bytes_in=p.bytes_in,
            )
            for p in points
        ),
        counters=counters,
        batch_trend=batch_trend(largest.cells, largest.batch_s),
        first_cell_exponent=None if first is None else first.exponent,
        first_cell_ci=None if first is None else (first.ci[0], first.ci[1]),
        instructions=InstructionFit(False, NEEDS_BUNDLED),
        calls=CallFit(False, NEEDS_BUNDLED),
        deterministic_verdict=None,
        exponent_of="time_to_full_s",
    )


def external_checks(path: ScalePath) -> tuple[Check, ...]:
    """What decides the exit status from outside: bytes at most linear, time not quadratic."""
    bytes_fit = (path.counters or {}).get("bytes_in")
    verdict = UNAVAILABLE if bytes_fit is None else bytes_fit.verdict
    k = "" if bytes_fit is None or bytes_fit.exponent is None else f" (k {bytes_fit.exponent:.3f})"
    lo, hi = path.ci
    return (
        Check(
            "bytes to the loading peer grow at most linearly",
            verdict in FINE_BYTES,
            f"bytes_in {verdict}{k}; instructions, ops and scan steps {UNAVAILABLE} from outside",
        ),
        Check(
            "time to full is not quadratic",
            path.verdict != "quadratic",
            f"time-to-full exponent {path.exponent:.2f} [{lo:.2f}, {hi:.2f}] ({path.verdict}; "
            "fails at >= 1.7)",
        ),
    )


async def run_external_scale(
    target: SocketTarget,
    *,
    sizes: Sequence[int] | None = None,
    repeats: int = 2,
    seed: int = 0,
    batch_size: int = 3,
    notebook: NotebookSweep | None = None,
    workdir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> ScaleResult:
    """The sweep through ``target`` (started by the caller). The sweep notebooks are written
    in ``workdir`` (default: beside ``--notebook``, else the current directory) as hidden
    ``.nbstream-scale-*`` files, removed afterwards: a server confined to a notebook root must
    be able to open them, as it opens the user's notebooks."""
    chosen = sorted(set(sizes or DEFAULT_SIZES["full"]))
    check_sweep(chosen, repeats, batch_size)
    where = workdir or (notebook.path.resolve().parent if notebook is not None else Path.cwd())

    def build(n: int) -> bytes:
        return (
            generate_notebook(cells=n, seed=seed)
            if notebook is None
            else notebook.notebook_bytes(n)
        )

    t0 = time.monotonic()
    points: list[ExternalLoad] = []
    raw_points: list[tuple[int, float]] = []
    labels: list[tuple[str, int]] = [("warm-up", chosen[0]), *((str(c), c) for c in chosen)]
    for n, cells in labels:
        data = build(cells)
        base = where / f".nbstream-scale-{os.getpid()}-{n}.ipynb"
        try:
            base.write_bytes(data)
        except OSError as exc:
            raise TargetError(f"cannot write the sweep notebook {base}: {exc.strerror}") from None
        try:
            for r in range(1 if n == "warm-up" else repeats):
                if progress is not None:
                    progress(f"{target.description}: {cells} cells, run {r + 1}/{repeats}")
                with fresh_copy(base, f"r{r}") as copy:
                    load = await measure_external_load(target, copy)
                if load.cells != cells:
                    raise TargetError(f"the server loaded {load.cells} of {cells} cells")
                if n != "warm-up":  # the first load pays for the server's start-up: discarded
                    points.append(load)
        finally:
            base.unlink(missing_ok=True)
        if n != "warm-up":
            raw_points.append((cells, raw_automerge_seconds(parse_notebook(data), batch_size)))
    path = summarize_external(points)
    checks = external_checks(path)
    path = dataclasses.replace(
        path, deterministic_verdict="linear" if checks[0].ok else "not linear"
    )
    return ScaleResult(
        sizes=tuple(chosen),
        sizes_by_path={EXTERNAL_PATH: tuple(chosen)},
        repeats=repeats,
        seed=seed,
        batch_size=batch_size,
        paths={EXTERNAL_PATH: path},
        raw_automerge=raw_automerge(raw_points),
        elapsed_s=time.monotonic() - t0,
        checks=checks,
        default_sizes={k: tuple(v) for k, v in DEFAULT_SIZES.items()},
        server=target.description,
        notebook=None if notebook is None else notebook.source,
    )
