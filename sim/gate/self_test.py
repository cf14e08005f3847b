"""``nbstream gate --self-test``: prove the gate on this machine against real code changes.

Each condition is a :class:`~sim.gate.self_test_changes.CodeChange` — an edit of ``core/`` such
as a pull request makes (an O(n²) scan, 5 % more CPU per cell, retained memory, work that only
shows above 400 cells, a slower client) — applied to a copy of the gate's own tree. The gate then
compares an unchanged copy (A) with the changed one (B) exactly as ``nbstream gate`` compares a
base with a candidate: instructions under valgrind first, then fresh measuring workers for the
counters, memory, calls at the large size, timed pairs and the sweep, judged by the same code.
``unchanged`` must pass; every other condition must be flagged.

The deterministic signals repeat exactly (instructions to within 0.1 %, counters and calls to
the unit), so one rerun decides a condition; ``--reruns N`` repeats every condition N times (the
conditions interleaved rerun by rerun, so drift of the machine hits them alike) to measure the
rates. The self-test's own defaults (:data:`SELF_TEST_CELLS`, :data:`SELF_TEST_PAIRS`) keep one
rerun of the six conditions within ten minutes on two busy cores.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import TextIO

from sim.gate.measure import compare, measure_instructions
from sim.gate.self_test_changes import CHANGES, CodeChange, patched_tree
from sim.gate.settings import GateSettings
from sim.gate.workers import GateError, workers
from sim.gate.workload import make_workload
from sim.results.self_test import SelfTestResult, SelfTestRun

__all__ = ["SELF_TEST_CELLS", "SELF_TEST_PAIRS", "run_self_test", "self_test_settings"]

# The main load of the self-test: 100 cells (instructions at 12 and 25 cells, ≈ 17 s per
# condition under valgrind) and 10 timed pairs; the large load stays at the gate's 1600.
SELF_TEST_CELLS = 100
SELF_TEST_PAIRS = 10


def run_self_test(
    settings: GateSettings,
    reruns: int = 1,
    progress: TextIO | None = None,
    changes: tuple[CodeChange, ...] = CHANGES,
) -> SelfTestResult:
    """Every change in ``changes``, ``reruns`` times, against an unchanged copy of this tree."""
    t0 = time.perf_counter()
    root = Path(__file__).resolve().parents[2]
    if not (root / "core" / "daemon.py").is_file():
        raise GateError(f"self-test: no core/daemon.py next to the gate in {root}")
    runs: list[SelfTestRun] = []
    with tempfile.TemporaryDirectory(prefix="nbstream-self-test-") as scratch:
        tmp = Path(scratch)
        (tmp / "nb").mkdir()
        workload = make_workload(tmp / "nb", settings)
        base = patched_tree(root, CHANGES[0], tmp / "base")
        trees = {c.name: patched_tree(root, c, tmp / c.name) for c in changes}  # all apply first

        def say(message: str) -> None:
            if progress is not None:
                print(f"nbstream gate --self-test: {message}", file=progress, flush=True)

        for i in range(1, reruns + 1):
            for change in changes:
                t1 = time.perf_counter()
                specs = (
                    ("A (unchanged)", base),
                    (f"B ({change.name})", trees[change.name]),
                )
                instructions = measure_instructions(specs, workload, settings)
                with workers(*specs) as (a, b):
                    c = compare(a, b, workload, settings, instructions=instructions)
                run = SelfTestRun(
                    change.name,
                    i,
                    c.regressed,
                    tuple(c.flagged_by()),
                    c.time.median_ratio,
                    c.time.ci,
                    c.cpu_time.median_ratio,
                    c.cpu_time.ci,
                    c.exponent.delta,
                    c.exponent.delta_ci,
                    time.perf_counter() - t1,
                    c.time.ratios,
                    c.cpu_time.ratios,
                    instruction_ratio=instructions.ratio,
                    memory_ratios=None
                    if c.memory is None
                    else {m.name: m.ratio for m in c.memory.metrics} or None,
                )
                runs.append(run)
                say(f"{i}/{reruns} {run.summary()}")
    return SelfTestResult(
        reruns=reruns,
        pairs={c.name: settings.pairs for c in changes},
        cells=settings.cells,
        time_threshold=settings.time_threshold,
        runs=tuple(runs),
        elapsed_s=time.perf_counter() - t0,
        changes={c.name: c.what for c in changes},
    )


def self_test_settings(
    settings: GateSettings, cells_given: bool, pairs_given: bool
) -> GateSettings:
    """The gate's settings with the self-test's own defaults where the user gave none."""
    return dataclasses.replace(
        settings,
        cells=settings.cells if cells_given else SELF_TEST_CELLS,
        pairs=settings.pairs if pairs_given else SELF_TEST_PAIRS,
    )
