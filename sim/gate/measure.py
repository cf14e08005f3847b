"""Measuring both sides of a gate comparison and judging every signal.

:func:`compare` drives two long-lived workers (:mod:`sim.gate.worker`): the first load of each
fresh process (its RSS high-water growth), lock-step counter loads (counters and peak Python
heap), interleaved timed pairs and the size sweep. :func:`measure_instructions` counts both
sides' instructions per load under valgrind (:mod:`sim.gate.instructions`) beforehand.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sim.analysis.stats import (
    judge_calls,
    judge_counters,
    judge_exponent,
    judge_instructions,
    judge_memory,
    judge_time,
)
from sim.gate import valgrind
from sim.gate.instructions import (
    changed_functions,
    count_instructions,
    instruction_plan,
    phase_counts,
    warm_up_size,
)
from sim.gate.outside import COUNTERS as OUTSIDE_COUNTERS
from sim.gate.outside import NOISY_TOLERANCE as OUTSIDE_NOISY_TOLERANCE
from sim.gate.settings import COUNTER_RUNS, GateSettings, Progress, memory_tolerances
from sim.gate.workers import GateError, Worker, workers
from sim.gate.workload import Workload, make_workload
from sim.results.gate import Comparison, CounterJudgement
from sim.results.gate_signals import InstructionJudgement, MemoryJudgement

__all__ = ["Workload", "compare", "make_workload", "measure_instructions"]


def _run_both(pair: Sequence[Worker], message: Mapping[str, Any], cells: int) -> list[Any]:
    """Send to both workers, then collect (they run concurrently: warm-up and counters only)."""
    for w in pair:
        w.send(message)
    replies = [w.check(w.receive()) for w in pair]
    for w, reply in zip(pair, replies, strict=True):
        _check_cells(w, reply, cells)
    return replies


def _check_cells(worker: Worker, reply: Mapping[str, Any], cells: int) -> None:
    if reply.get("cells") != cells:
        raise GateError(f"{worker.label}: loaded {reply.get('cells')} of {cells} cells")


def _timed(worker: Worker, path: Path, cells: int) -> tuple[float, float, float | None]:
    """One timed load: ``(wall-clock seconds, process CPU seconds, first cell seconds)``; the
    last only from outside (``--target-cmd``), else None."""
    reply = worker.call({"cmd": "run", "path": str(path)})
    _check_cells(worker, reply, cells)
    first = reply.get("first_cell_s")
    return float(reply["time_s"]), float(reply["cpu_s"]), None if first is None else float(first)


def compare(
    base: Worker,
    candidate: Worker,
    workload: Workload,
    settings: GateSettings,
    *,
    instructions: InstructionJudgement | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Measure both sides (counters and memory, interleaved timed pairs, sweep) and judge."""
    say = progress or (lambda _message: None)
    both = (base, candidate)
    outside = base.outside or candidate.outside
    counter_runs: tuple[list[dict[str, float]], list[dict[str, float]]] = ([], [])
    memory_runs: tuple[dict[str, list[float]], dict[str, list[float]]] = ({}, {})
    # The first load of each fresh process (also the warm-up): its RSS high-water growth.
    replies = _run_both(both, {"cmd": "run", "path": str(workload.main)}, workload.cells)
    _add_rss(memory_runs, replies)
    for _ in range(COUNTER_RUNS):
        replies = _run_both(both, {"cmd": "counters", "path": str(workload.main)}, workload.cells)
        for runs, mem, reply in zip(counter_runs, memory_runs, replies, strict=True):
            runs.append(reply["counters"])
            for key, value in (reply.get("memory") or {}).items():
                mem.setdefault(key, []).append(float(value))
    say(f"counters and peak memory: {COUNTER_RUNS + 1} loads per side done")
    extra_counters: dict[str, CounterJudgement] = {}
    for load in workload.extra:  # --notebook beyond the first: exact counters of each
        extra_runs: tuple[list[dict[str, float]], list[dict[str, float]]] = ([], [])
        for _ in range(COUNTER_RUNS):
            replies = _run_both(both, {"cmd": "counters", "path": str(load.path)}, load.cells)
            for runs, reply in zip(extra_runs, replies, strict=True):
                runs.append(reply["counters"])
        judged = _judge_counters(extra_runs, settings, outside)
        extra_counters.update({f"{name}@{load.label}": j for name, j in judged.items()})
    if workload.extra:
        say(f"counters of {len(workload.extra)} more notebook(s): done")
    large: dict[str, Any] = {}
    if settings.large_cells and not outside:  # call counts need the server's code in-process
        call_sizes = (workload.cells, settings.large_cells)
        profiles = [
            _run_both(both, {"cmd": "profile", "path": str(workload.files[n])}, n)
            for n in call_sizes
        ]
        large = {
            "large_cells": settings.large_cells,
            "large_counters": judge_counters(
                [profiles[-1][0]["counters"]],
                [profiles[-1][1]["counters"]],
                tolerance=settings.counter_tolerance,
            ),
            "calls": judge_calls(
                call_sizes,
                [p[0]["calls"] for p in profiles],
                [p[1]["calls"] for p in profiles],
                tolerance=settings.call_tolerance,
                exponent_tolerance=settings.call_exponent_tolerance,
            ),
        }
        say(f"calls and counters at {settings.large_cells} cells: done")

    times: dict[Worker, list[tuple[float, float, float | None]]] = {base: [], candidate: []}
    mains = workload.mains
    for i in range(settings.pairs):  # A B, B A, A B, ...: order effects cancel
        load = mains[i % len(mains)]  # with --notebook: each pair loads one of them, in turn
        for w in both if i % 2 == 0 else both[::-1]:
            times[w].append(_timed(w, load.path, load.cells))
        if (i + 1) % 10 == 0 or i + 1 == settings.pairs:
            say(f"timing: {i + 1}/{settings.pairs} pairs")

    sizes: list[int] = []
    sweep: dict[Worker, list[float]] = {base: [], candidate: []}
    k = 0
    for _ in range(settings.sweep_repeats):
        for n, path in workload.sweep:
            sizes.append(n)
            for w in both if k % 2 == 0 else both[::-1]:
                # CPU time: the work done; from outside, the wall clock (the server's CPU time
                # comes in 10 ms ticks, often 0 for the sweep's smallest size)
                wall, cpu, _first = _timed(w, path, n)
                sweep[w].append(wall if outside else cpu)
            k += 1
    say(f"sweep: {settings.sweep_repeats} repeats of {len(workload.sweep)} sizes done")
    threshold = settings.time_threshold
    if outside:
        firsts = [[t[2] or 0.0 for t in times[w]] for w in both]
        large["first_cell"] = judge_time(*firsts, threshold=threshold)
    return Comparison(
        time=judge_time(
            [t[0] for t in times[base]], [t[0] for t in times[candidate]], threshold=threshold
        ),
        cpu_time=judge_time(
            [t[1] for t in times[base]], [t[1] for t in times[candidate]], threshold=threshold
        ),
        counters={**_judge_counters(counter_runs, settings, outside), **extra_counters},
        exponent=judge_exponent(
            sizes, sweep[base], sweep[candidate], tolerance=settings.exponent_tolerance
        ),
        instructions=instructions,
        memory=_memory(both, workload, settings, memory_runs, outside, say),
        **large,
    )


def _add_rss(memory_runs: tuple[dict[str, list[float]], ...], replies: Sequence[Any]) -> None:
    for mem, reply in zip(memory_runs, replies, strict=True):
        hwm = reply.get("rss_hwm_kib")
        if hwm:
            mem.setdefault("rss_peak_kib", []).append(float(hwm["after"]) - float(hwm["before"]))


def _memory(
    both: tuple[Worker, Worker],
    workload: Workload,
    settings: GateSettings,
    memory_runs: tuple[dict[str, list[float]], dict[str, list[float]]],
    outside: bool,
    say: Progress,
) -> MemoryJudgement:
    """Peak memory, judged. The RSS growth is one fresh process's first load per side, the
    noisiest signal (one unchanged pair once read x1.163 under heavy load): when it alone is
    over its tolerance, a fresh pair of workers measures it again, and a regression must show
    in both pairs (:attr:`MemoryMetric.ratio` is the smallest paired ratio)."""
    tolerances = memory_tolerances(settings)
    memory = judge_memory(*memory_runs, tolerances=tolerances)
    rss = next((m for m in memory.metrics if m.name == "rss_peak_kib"), None)
    if outside or rss is None or not rss.regressed:
        return memory
    say(f"peak RSS growth x{rss.ratio:.3f}: measuring it again on a fresh pair of workers")
    with workers(*((w.label, w.root) for w in both)) as pair:
        _add_rss(
            memory_runs, _run_both(pair, {"cmd": "run", "path": str(workload.main)}, workload.cells)
        )
    return judge_memory(*memory_runs, tolerances=tolerances)


def _judge_counters(
    runs: tuple[list[dict[str, float]], list[dict[str, float]]],
    settings: GateSettings,
    outside: bool,
) -> dict[str, CounterJudgement]:
    if outside:
        return _outside_counters(runs, settings)
    return judge_counters(*runs, tolerance=settings.counter_tolerance)


def _outside_counters(
    runs: tuple[list[dict[str, float]], list[dict[str, float]]], settings: GateSettings
) -> dict[str, CounterJudgement]:
    """From outside, only the frames that carry cells are reproducible (compared exactly); all
    frames and wire bytes vary with how acknowledgements race the load (46-49 frames over one
    60-cell load): they may grow by :data:`OUTSIDE_NOISY_TOLERANCE` before failing."""
    exact = judge_counters(*runs, tolerance=settings.counter_tolerance, names=OUTSIDE_COUNTERS)
    noisy = judge_counters(
        *runs,
        tolerance=max(settings.counter_tolerance, OUTSIDE_NOISY_TOLERANCE),
        names=OUTSIDE_COUNTERS,
    )
    return {n: exact[n] if n == "changed_frames" else noisy[n] for n in exact}


def measure_instructions(
    specs: Sequence[tuple[str, Path]],
    workload: Workload,
    settings: GateSettings,
    progress: Progress | None = None,
) -> InstructionJudgement:
    """Count both sides' instructions per load (or say why not) and judge them."""
    if not settings.instructions:
        return InstructionJudgement(False, "switched off (--no-instructions)")
    reason = valgrind.unavailable()
    if reason is not None:
        return InstructionJudgement(False, reason)
    t0 = time.perf_counter()
    runs = count_instructions(
        specs,
        workload.files,
        instruction_plan(settings.cells),
        warm_up=warm_up_size(settings.cells),
        progress=progress,
    )
    largest = max(n for n, _ in runs.base)
    b, c = runs.first("base", largest), runs.first("candidate", largest)
    pb, pc = phase_counts(b), phase_counts(c)
    return judge_instructions(
        runs.counts("base"),
        runs.counts("candidate"),
        tolerance=settings.instruction_tolerance,
        exponent_tolerance=settings.instruction_exponent_tolerance,
        phases=[(name, pb[name], pc[name]) for name in pb],
        functions=changed_functions(b, c),
        elapsed_s=time.perf_counter() - t0,
    )
