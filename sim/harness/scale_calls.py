"""Core calls per load at every size of ``nbstream scale``: an exact counter up to 1600 cells.

Instructions (valgrind, ≈ 50x slower) are affordable only at the sweep's small sizes; a cost
that appears above a few hundred cells is invisible there. ``cProfile``'s call counts cost
≈ 3 s at 1600 cells and are exact in lock-step (the gate's measuring worker, one per scale
run, loads each size once with the peer settled before every batch — see
:mod:`sim.gate.worker`). From them: the total core calls per load against the size (the
exponent of the whole sweep, and the **local** exponent between each pair of neighbouring
sizes, so a cost that only starts at 800 cells shows where it starts), and the functions whose
calls grow fastest between the two largest sizes.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sim.analysis.complexity import (
    classify_exact_sweep,
    fit_linear_trend,
    local_exponents,
    log_slope,
)
from sim.gate.workers import GateError, workers
from sim.results.scale import CallFit, GrowingFunction

__all__ = [
    "BATCH_TREND_TOLERANCE",
    "DEFAULT_CALL_MAX_CELLS",
    "MIN_FUNCTION_CALLS",
    "call_fit",
    "count_path_calls",
]

# Up to this size the sweep's loads are profiled (1600: ≈ 6 s of profiled loads in all).
DEFAULT_CALL_MAX_CELLS = 1600
# A function must be called this often at the largest size to be listed as growing: below it
# a function called once per batch of a small load would show a meaningless exponent.
MIN_FUNCTION_CALLS = 100
TOP_GROWING = 5
# The per-batch trend of core calls within the largest load (Theil-Sen, as a fraction of the
# median across the load) may move by this much. Unchanged code at 1600 cells: 0.00 (OLS
# -0.01; 169 -> 175 calls per batch, first to last tenth); the self-test's large-only change
# 1.97 (169 -> 21,404). Content varies per batch, so exact counts still scatter around the
# trend: 0.10 leaves room for a notebook whose later cells are richer than its first ones.
BATCH_TREND_TOLERANCE = 0.10


def call_fit(
    points: Sequence[tuple[int, Mapping[str, int]]], batch_marks: Sequence[int] = ()
) -> CallFit:
    """The fit of calls per load (``points``: per size ascending, the calls of each function);
    ``batch_marks``: the largest load's core calls so far at the start of each batch, for the
    per-batch trend (none under 4 marks)."""
    ns = [n for n, _ in points]
    totals = [sum(calls.values()) for _, calls in points]
    local = tuple((int(a), int(b), k) for a, b, k in local_exponents(ns, totals))
    growing: list[GrowingFunction] = []
    if len(points) >= 2:
        (na, a), (nb, b) = points[-2], points[-1]
        for name, cb in b.items():
            ca = a.get(name, 0)
            if cb >= MIN_FUNCTION_CALLS and ca > 0:
                ((_, _, k),) = local_exponents([na, nb], [ca, cb])
                growing.append(GrowingFunction(name, ca, cb, k))
        growing.sort(key=lambda g: (-g.exponent, g.name))
    per_batch = tuple(b - a for a, b in itertools.pairwise(batch_marks))
    slope = None
    if len(per_batch) >= 3 and sorted(per_batch)[len(per_batch) // 2] > 0:
        slope = fit_linear_trend(range(len(per_batch)), per_batch).robust_relative_slope
    return CallFit(
        True,
        None,
        tuple(zip(ns, totals, strict=True)),
        log_slope(ns, totals),  # exact counts: a least-squares slope, no interval
        classify_exact_sweep(ns, totals),
        local,
        tuple(growing[:TOP_GROWING]),
        batch_cells=ns[-1] if slope is not None else None,
        batch_calls=per_batch if slope is not None else (),
        batch_slope=slope,
        batch_tolerance=BATCH_TREND_TOLERANCE if slope is not None else None,
    )


def count_path_calls(
    sizes: Sequence[int],
    *,
    tree: Path,
    batch_size: int,
    worker_batch_size: int,
    max_cells: int,
    build: Callable[[int], bytes],
    progress: Callable[[str], None] | None = None,
) -> CallFit:
    """Core calls per load of the full path at ``sizes`` up to ``max_cells``, in one measuring
    worker of ``tree``; unavailable (with the reason) when they cannot be counted."""
    small = sorted({n for n in sizes if n <= max_cells})
    if max_cells <= 0:
        return CallFit(False, "switched off (--calls-max-cells 0)")
    if batch_size != worker_batch_size:
        reason = f"the measuring worker loads with batch size {worker_batch_size} only"
        return CallFit(False, reason)
    if len(small) < 2:
        return CallFit(False, f"fewer than 2 sizes <= {max_cells} cells (--calls-max-cells)")
    points: list[tuple[int, dict[str, int]]] = []
    marks: list[int] = []
    with tempfile.TemporaryDirectory(prefix="nbscale-calls-") as tmp:
        try:
            with workers(("full path", tree)) as (worker,):
                for i, n in enumerate((small[0], *small)):  # the first load warms up
                    path = Path(tmp) / f"scale-{n}.ipynb"
                    if not path.exists():
                        path.write_bytes(build(n))
                    # the per-batch trend is read off the largest load only
                    cmd = "profile_batches" if i and n == small[-1] else "profile"
                    reply = worker.check(worker.call({"cmd": cmd, "path": str(path)}))
                    if i == 0:
                        continue
                    points.append((n, {str(k): int(v) for k, v in reply["calls"].items()}))
                    marks = [int(x) for x in reply.get("batch_calls") or marks]
                    if progress is not None:
                        total = sum(points[-1][1].values())
                        progress(f"calls: {n} cells profiled ({total:,} core calls)")
        except GateError as exc:
            return CallFit(False, str(exc))
    return call_fit(points, marks)
