"""The ``typists`` scenario: K peers typing at a fixed rate after the load, and the sweep over K.

The loader loads the notebook; K typists join, each adds a cell of its own, then all type into
their cells at ``rate_hz`` edits a second each (one edit = one word appended, a unique token) for
``duration_s``, each starting at a seeded offset within the first interval. The **edit-to-visible
latency** of an edit at another peer is the time from the edit (``time.perf_counter()`` when it
was made in the typist's document) to the arrival of the frame that brought its change to that
peer; every (edit, other peer) pair is a sample, the loader included among the other peers.
p50/p99 are nearest-rank percentiles of all samples.

The sweep (``--typists-max N``) runs K = 1, 2, 4, ... up to N (N itself included), each a fresh
daemon, and reports the largest K whose p99, and every smaller K's, stayed under 100 ms. These
are timings on the machine at hand: reported, never asserted.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from dataclasses import replace
from pathlib import Path

from core.blob_store import BlobStore
from core.errors import CoreError
from core.loader import InsertPath
from sim.harness.collab import CollabRun
from sim.harness.editor import Editor
from sim.net.connect import Transport
from sim.results.base import Check
from sim.results.collab import TypistPoint, TypistsResult
from sim.results.sim import SimResult

__all__ = ["P99_LIMIT_S", "percentile", "run_typists", "sweep_sizes"]

P99_LIMIT_S = 0.100


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 100]); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def sweep_sizes(top: int) -> list[int]:
    """1, 2, 4, ... below ``top``, then ``top``."""
    sizes = []
    k = 1
    while k < top:
        sizes.append(k)
        k *= 2
    sizes.append(top)
    return sizes


async def _type(run: CollabRun, typist: Editor, cell_id: str, count: int, rate: float) -> None:
    interval = 1.0 / rate
    start = time.perf_counter() + run.rng.uniform(0, interval)
    for i in range(count):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # the typist's pace (the workload), not a wait for a state
        typist.typed += 1
        old = next(c.source for c in typist.doc.get_cells() if c.id == cell_id)
        edit = run.log.type(typist.doc, typist.name, cell_id, old, f" {typist.name}.{i}")
        typist.made(edit.change)
        run.trace.event(edit.trace())
        assert typist.client is not None
        typist.client.sync_now()


async def _typists_flow(run: CollabRun, k: int, rate: float, duration: float) -> list[float]:
    await run.join("loader")
    run.initial_open.set()
    if not await run.wait_phase("ready"):
        return []
    typists = [await run.join(f"typist{i + 1}") for i in range(k)]
    for typist in typists:  # each its own cell, at the end
        edit = run.log.add(
            typist.doc, typist.name, typist.doc.cell_count(), f"{typist.name}-cell", ""
        )
        typist.made(edit.change)
        run.trace.event(edit.trace())
        assert typist.client is not None
        typist.client.sync_now()
    if await run.settle("ready", "typists' cells") is None:
        return []
    first = len(run.log.edits)
    count = max(1, round(rate * duration))
    await asyncio.gather(*(_type(run, t, f"{t.name}-cell", count, rate) for t in typists))
    run.judge(await run.settle("ready", "after the typing"))
    samples = []
    for edit in run.log.edits[first:]:
        for peer in run.editors.values():
            if peer.name != edit.peer and edit.change in peer.seen_at:
                samples.append(peer.seen_at[edit.change] - edit.made_at)
    return samples


async def _one(
    notebook: Path,
    k: int,
    *,
    seed: int,
    rate: float,
    duration: float,
    transport: Transport,
    batch_size: int,
    insert_path: InsertPath,
    timeout: float,
    blob_store: BlobStore | None,
    trace_out: list[str] | None = None,
) -> tuple[SimResult, TypistPoint]:
    run = CollabRun(
        "typists",
        notebook,
        seed=seed,
        transport=transport,
        batch_size=batch_size,
        insert_path=insert_path,
        timeout=timeout,
        blob_store=blob_store,
    )
    samples: list[float] = []
    try:
        await run.target.start()
        try:
            samples = await _typists_flow(run, k, rate, duration)
        except (asyncio.TimeoutError, CoreError) as exc:
            run.checks.append(Check("scenario ran to the end", False, repr(exc)))
            run.converged = False
        result = run.result()
    finally:
        await run.close()
        if trace_out is not None:
            trace_out.extend(run.trace.lines())
    point = TypistPoint(
        k=k,
        samples=len(samples),
        p50_s=percentile(samples, 50),
        p99_s=percentile(samples, 99),
        max_s=max(samples, default=0.0),
        edits_lost=result.edits.lost if result.edits is not None else 0,
        converged=result.converged,
    )
    return result, point


async def run_typists(
    notebook: Path,
    *,
    seed: int = 0,
    peers: int | None = None,
    rate_hz: float = 10.0,
    duration_s: float = 2.0,
    typists_max: int | None = None,
    transport: Transport = "memory",
    batch_size: int = 3,
    insert_path: InsertPath = "full",
    timeout: float = 120.0,
    blob_store: BlobStore | None = None,
    trace_out: list[str] | None = None,
) -> SimResult:
    """K = ``peers`` (default 4) typists; with ``typists_max``, also the sweep up to it.
    ``trace_out`` receives the trace of the run at K = ``peers`` (not of the sweep's runs)."""
    one = functools.partial(
        _one,
        notebook,
        seed=seed,
        rate=rate_hz,
        duration=duration_s,
        transport=transport,
        batch_size=batch_size,
        insert_path=insert_path,
        timeout=timeout,
        blob_store=blob_store,
    )
    result, point = await one(peers or 4, trace_out=trace_out)
    sweep: list[TypistPoint] = []
    best: int | None = None
    if typists_max is not None:
        under = True
        for k in sweep_sizes(typists_max):
            swept = point if k == point.k else (await one(k))[1]
            sweep.append(swept)
            under = under and swept.p99_s < P99_LIMIT_S and swept.samples > 0
            if under:
                best = k
    typists = TypistsResult(
        rate_hz=rate_hz,
        duration_s=duration_s,
        run=point,
        sweep=tuple(sweep),
        p99_limit_s=P99_LIMIT_S,
        max_k_under_limit=best,
    )
    checks = result.checks
    if typists_max is not None:
        bad = [p.k for p in sweep if p.edits_lost or not p.converged]
        checks = (*checks, Check("sweep: every K converged, no edit lost", not bad, f"{bad}"))
    return replace(result, typists=typists, checks=checks)
