"""The gate's deterministic signals: instructions (valgrind), peak memory, and honest time."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from sim.analysis.stats import (
    judge_calls,
    judge_counters,
    judge_exponent,
    judge_instructions,
    judge_memory,
    judge_time,
    log_slope,
)
from sim.gate import valgrind
from sim.gate.command import DEFAULT_MEMORY_TOLERANCES, GateSettings, measure_instructions
from sim.gate.instructions import changed_functions, count_instructions, phase_counts
from sim.gate.self_test_changes import CodeChange, Edit, patched_tree
from sim.gate.workers import Worker
from sim.results.gate import Comparison
from sim.results.gate_signals import CallsJudgement, InstructionJudgement, MemoryJudgement
from sim.workload.generator import write_notebook

REPO = Path(__file__).resolve().parents[1]

DUMP = """# callgrind format
version: 1
positions: line
events: Ir
summary: 1000

fl=a.c
fn=outer
10 100
calls=1 20
cfl=b.c
cfn=automerge::Document::__pymethod_receive_sync_message__
20 600
fl=b.c
fn=automerge::Document::__pymethod_receive_sync_message__
+1 550
calls=2 40
cfn=leaf
* 50
fn=leaf
30 50
fn=start_thread
1 300
"""


def test_read_dump_totals_and_inclusive_counts(tmp_path: Path) -> None:
    path = tmp_path / "callgrind.1.1"
    path.write_text(DUMP)
    dump = valgrind.read_dump(path)
    assert dump.instructions == 1000
    assert dump.inclusive["outer"] == 700  # self 100 + the call's inclusive 600
    assert dump.inclusive["automerge::Document::__pymethod_receive_sync_message__"] == 600
    assert dump.inclusive["leaf"] == 50
    phases = phase_counts(dump)
    assert phases["sync: receive (the peer's side)"] == 600
    assert phases["read, parse, manifests (worker threads)"] == 300
    assert sum(phases.values()) == 1000
    (tmp_path / "bad").write_text("events: Ir\n")
    with pytest.raises(ValueError, match="not a callgrind dump"):
        valgrind.read_dump(tmp_path / "bad")


def test_changed_functions_skip_the_interpreter() -> None:
    base = valgrind.Dump(1000, {"_PyEval_EvalFrameDefault": 1000, "f": 100, "g": 50, "h": 7})
    cand = valgrind.Dump(1200, {"_PyEval_EvalFrameDefault": 1200, "f": 100, "g": 240, "h": 9})
    assert changed_functions(base, cand) == [("g", 50, 240), ("h", 7, 9)]


def test_instructions_tolerance_and_exponent() -> None:
    base = {25: [1000_000, 1000_500], 50: [2000_000]}
    same = judge_instructions(base, base, tolerance=0.01, exponent_tolerance=0.05)
    assert not same.regressed and same.ratio == 1.0  # the worst size: 50 cells, x1
    assert same.points[0].ratio == pytest.approx(1000_000 / 1000_500)
    assert same.spread == pytest.approx(0.0005)
    assert same.base_exponent == pytest.approx(log_slope([25, 50], [1000_250, 2000_000]))
    slower = {n: [int(c * 1.05) for c in v] for n, v in base.items()}  # a 5 % constant cost
    j = judge_instructions(base, slower, tolerance=0.01, exponent_tolerance=0.05)
    assert j.ratio_regressed and not j.exponent_regressed and j.regressed
    within = {n: [int(c * 1.009) for c in v] for n, v in base.items()}
    assert not judge_instructions(base, within, tolerance=0.01, exponent_tolerance=0.05).regressed
    # Cheaper at 25 cells, barely dearer at 50: no size over the tolerance, but the growth is.
    steeper = {25: [900_000], 50: [2010_000]}
    k = judge_instructions(base, steeper, tolerance=0.01, exponent_tolerance=0.05)
    assert not k.ratio_regressed and k.exponent_regressed
    assert k.delta_exponent is not None and k.delta_exponent > 0.05
    data = j.to_json()
    assert data["regressed"] and data["points"][0]["cells"] == 25
    assert InstructionJudgement.read(_reader(data)).to_json() == data
    off = InstructionJudgement(False, "valgrind is not installed")
    assert not off.regressed and off.to_json() == {
        "available": False,
        "regressed": False,
        "reason": "valgrind is not installed",
    }
    assert "unavailable" in off.markdown_rows()[0]


def _reader(data: dict[str, object]):  # type: ignore[no-untyped-def]
    from sim.results.base import Reader

    return Reader(json.loads(json.dumps(data)))


def test_memory_rule_is_paired_load_by_load() -> None:
    tol = DEFAULT_MEMORY_TOLERANCES
    base = {"python_heap_peak_kib": [10_000.0, 9_800.0], "rss_peak_kib": [7_300.0]}
    grown = {"python_heap_peak_kib": [12_000.0, 11_800.0], "rss_peak_kib": [7_900.0]}
    j = judge_memory(base, grown, tolerances=tol)
    assert j.available and j.regressed
    assert [m.name for m in j.metrics if m.regressed] == ["python_heap_peak_kib"]
    # within the tolerance in one pair of loads only: not a regression
    one = {"python_heap_peak_kib": [10_500.0, 9_900.0], "rss_peak_kib": [8_100.0]}
    k = judge_memory(base, one, tolerances=tol)
    assert [m.name for m in k.metrics if m.regressed] == ["rss_peak_kib"]
    assert not judge_memory(base, base, tolerances=tol).regressed
    assert not judge_memory({}, {}, tolerances=tol).available
    assert MemoryJudgement.read(_reader(j.to_json())).to_json() == j.to_json()


def _clock(rng: random.Random, factor: float, spread: float) -> tuple[list[float], list[float]]:
    base = [0.2 * rng.lognormvariate(0, spread) for _ in range(30)]
    return base, [b * factor * rng.lognormvariate(0, spread) for b in base]


def _compare(wall: float, cpu: float, wall_spread: float = 0.01) -> Comparison:
    rng = random.Random(1)
    counters = {"ops": 5.0}
    sizes = [25, 50, 100, 200] * 3
    sweep = [1e-3 * n for n in sizes]
    return Comparison(
        time=judge_time(*_clock(rng, wall, wall_spread), threshold=1.2),
        cpu_time=judge_time(*_clock(rng, cpu, 0.01), threshold=1.2),
        counters=judge_counters([counters], [counters]),
        exponent=judge_exponent(sizes, sweep, sweep),
    )


def test_wall_clock_alone_never_fails_and_cpu_needs_the_wall_clock() -> None:
    wall_only = _compare(wall=1.6, cpu=1.0)
    assert wall_only.time.regressed and not wall_only.cpu_time.regressed
    assert not wall_only.regressed and wall_only.time_verdict == "inconclusive"
    assert "wall clock alone never fails" in "\n".join(wall_only.markdown_rows(30))
    both = _compare(wall=1.6, cpu=1.6)
    assert both.flagged_by() == ["time", "cpu_time"] and both.time_verdict == "regression"
    # CPU time over the threshold while the wall clock's median is not: inconclusive.
    cpu_only = _compare(wall=1.0, cpu=1.6)
    assert not cpu_only.regressed and cpu_only.time_verdict == "inconclusive"
    assert _compare(wall=1.0, cpu=1.0).time_verdict == "pass"


def test_counters_reply_carries_peak_memory(tmp_path: Path) -> None:
    notebook = tmp_path / "nb.ipynb"
    write_notebook(notebook, 12, 0)
    worker = Worker("w", REPO)
    try:
        worker.wait_ready()
        first = worker.call({"cmd": "run", "path": str(notebook)})
        reply = worker.call({"cmd": "counters", "path": str(notebook)})
    finally:
        worker.close()
    assert reply["memory"]["python_heap_peak_kib"] > 0
    if os.path.exists("/proc/self/status"):
        hwm = first["rss_hwm_kib"]
        assert hwm["after"] > hwm["before"] > 0  # a fresh process's first load raises its peak


def test_instructions_unavailable_is_reported_not_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(valgrind, "_probe", lambda: ("valgrind is not installed (test)", False))
    j = measure_instructions((), None, GateSettings())  # type: ignore[arg-type]
    assert not j.available and not j.regressed and j.reason == "valgrind is not installed (test)"
    off = measure_instructions((), None, GateSettings(instructions=False))  # type: ignore[arg-type]
    assert not off.available and "--no-instructions" in (off.reason or "")


@pytest.mark.skipif(valgrind.unavailable() is not None, reason="valgrind cannot run here")
def test_instruction_counts_repeat_and_catch_the_quadratic_path(tmp_path: Path) -> None:
    """Under callgrind, the scanning insert path (a copy of this tree whose daemon defaults to
    it) costs more instructions than the tolerance allows, at every size, and grows faster."""
    naive = CodeChange(
        "naive",
        "the scanning insert path by default",
        (
            Edit(
                "core/daemon.py",
                'insert_path: InsertPath = "full"',
                'insert_path: InsertPath = "naive"',
            ),
        ),
    )
    scanning = patched_tree(REPO, naive, tmp_path / "naive")
    paths = {}
    for n in (6, 12):
        paths[n] = tmp_path / f"nb{n}.ipynb"
        write_notebook(paths[n], n, 0)
    runs = count_instructions([("A", REPO), ("B", scanning)], paths, (6, 12), warm_up=6)
    a, b = runs.counts("base"), runs.counts("candidate")
    assert sorted(a) == sorted(b) == [6, 12] and all(len(v) == 1 for v in (*a.values(),))
    j = judge_instructions(a, b, tolerance=0.01, exponent_tolerance=0.05)
    assert j.ratio_regressed and all(p.ratio > 1.01 for p in j.points)
    assert j.delta_exponent is not None and j.delta_exponent > 0
    insert = next(p for p in phase_counts(runs.first("candidate", 12)) if p.startswith("insert"))
    assert phase_counts(runs.first("candidate", 12))[insert] > 0


def test_calls_rule_ratio_exponent_and_where() -> None:
    base = [{"core/a.py:f": 100, "builtin len": 50}, {"core/a.py:f": 800, "builtin len": 400}]
    same = judge_calls((30, 240), base, base, tolerance=0.02, exponent_tolerance=0.05)
    assert not same.regressed and same.functions == () and same.delta_exponent == 0.0
    scan = [base[0], {"core/a.py:f": 800, "builtin len": 400, "core/a.py:<genexpr>": 2000}]
    j = judge_calls((30, 240), base, scan, tolerance=0.02, exponent_tolerance=0.05)
    assert j.ratio_regressed and j.exponent_regressed and j.regressed
    assert j.functions[0].name == "core/a.py:<genexpr>" and j.functions[0].candidate == 2000
    assert "core/a.py:<genexpr>" in "\n".join(j.where_lines())
    assert CallsJudgement.read(_reader(j.to_json())).to_json() == j.to_json()


def test_profile_loads_repeat(tmp_path: Path) -> None:
    notebook = tmp_path / "nb.ipynb"
    write_notebook(notebook, 120, 0)
    worker = Worker("w", REPO)
    try:
        worker.wait_ready()
        worker.call({"cmd": "profile", "path": str(notebook)})  # warm-up
        first, second = (worker.call({"cmd": "profile", "path": str(notebook)}) for _ in "ab")
    finally:
        worker.close()
    # The counters repeat exactly; the calls up to one sync round (≈ 95 calls) at the load's
    # end, which races with "loaded": 0.5 % of a 120-cell load, inside the 2 % tolerance.
    assert first["counters"] == second["counters"]
    a, b = sum(first["calls"].values()), sum(second["calls"].values())
    assert abs(a - b) <= 0.02 * min(a, b)
    names = set(first["calls"]) | set(second["calls"])
    assert max(abs(first["calls"].get(n, 0) - second["calls"].get(n, 0)) for n in names) <= 40
    assert any(name.startswith("core/loader.py:") for name in first["calls"])
    assert not any(" at 0x" in name for name in first["calls"])


@pytest.mark.skipif(
    valgrind.unavailable() is not None or valgrind._control() is None,
    reason="needs valgrind with callgrind_control",
)
def test_switching_instrumentation_on_in_a_process_that_is_not_callgrind_is_one_line() -> None:
    """Workers start uninstrumented and are switched on when ready; a pid callgrind does not
    know is refused in one line, not ignored (its counts would silently be zero)."""
    assert "--instr-atstart=no" in valgrind.command_prefix(Path("/tmp"))
    with pytest.raises(RuntimeError) as exc:
        valgrind.start_instrumentation(os.getpid())
    assert "callgrind_control --instr=on" in str(exc.value) and "\n" not in str(exc.value)


def test_an_rss_flag_alone_is_measured_again_on_a_fresh_pair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One first-load RSS sample per side is the noisiest signal: over its tolerance, a fresh
    pair of workers measures it again and the regression must show in both pairs."""
    from contextlib import contextmanager

    from sim.gate import measure

    started: list[tuple[str, ...]] = []
    again: list[tuple[float, float]] = []

    @contextmanager
    def fresh(*specs: tuple[str, Path]):  # type: ignore[no-untyped-def]
        started.append(tuple(label for label, _ in specs))
        yield ["a2", "b2"]

    def run_both(pair: object, message: object, cells: int) -> list[dict[str, object]]:
        b, c = again.pop(0)
        return [{"rss_hwm_kib": {"before": 0, "after": x}} for x in (b, c)]

    monkeypatch.setattr(measure, "workers", fresh)
    monkeypatch.setattr(measure, "_run_both", run_both)

    class W:
        def __init__(self, label: str) -> None:
            self.label, self.root = label, Path("/tmp")

    both = (W("A"), W("B"))
    workload = type("WL", (), {"main": Path("/tmp/nb.ipynb"), "cells": 200})()
    settings = GateSettings()

    def judged(first: tuple[float, float], second: tuple[float, float] | None, outside: bool):  # type: ignore[no-untyped-def]
        started.clear()
        again[:] = [] if second is None else [second]
        runs = ({"rss_peak_kib": [first[0]]}, {"rss_peak_kib": [first[1]]})
        m = measure._memory(both, workload, settings, runs, outside, lambda _m: None)  # type: ignore[arg-type]
        return m.regressed, len(started)

    assert judged((7000.0, 8400.0), (7000.0, 7100.0), False) == (False, 1)  # noise: cleared
    assert judged((7000.0, 8400.0), (7000.0, 8300.0), False) == (True, 1)  # real: confirmed
    assert judged((7000.0, 7100.0), None, False) == (False, 0)  # under tolerance: no rerun
    assert judged((7000.0, 8400.0), None, True) == (True, 0)  # a server from outside: as measured
