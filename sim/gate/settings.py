"""The gate's settings and defaults (every threshold, with the measurement behind it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_BUDGET_S",
    "DEFAULT_CALL_EXPONENT_TOLERANCE",
    "DEFAULT_CALL_TOLERANCE",
    "DEFAULT_CELLS",
    "DEFAULT_COUNTER_TOLERANCE",
    "DEFAULT_EXPONENT_TOLERANCE",
    "DEFAULT_INSTRUCTION_EXPONENT_TOLERANCE",
    "DEFAULT_INSTRUCTION_TOLERANCE",
    "DEFAULT_LARGE_CELLS",
    "DEFAULT_MEMORY_TOLERANCES",
    "DEFAULT_PAIRS",
    "DEFAULT_TARGET_TIMEOUT_S",
    "DEFAULT_TIME_THRESHOLD",
    "GateSettings",
    "Progress",
    "memory_tolerances",
]

DEFAULT_CELLS = 200
DEFAULT_PAIRS = 30
DEFAULT_TIME_THRESHOLD = 1.2
DEFAULT_EXPONENT_TOLERANCE = 0.15
DEFAULT_COUNTER_TOLERANCE = 0.0
DEFAULT_BASES = ("origin/main", "main", "HEAD~1")
SWEEP_DIVISORS = (8, 4, 2, 1)  # sweep sizes: cells/8, cells/4, cells/2, cells
SWEEP_REPEATS = 3
COUNTER_RUNS = 2  # lock-step counter runs per side (they double as the warm-up)
# Instructions per load may grow by this much (relative) before the gate fails. Unchanged code
# in separate processes differed by at most 0.52 % (12 processes, 25 and 50 cells); 1.5 % is
# ~3x that, and 1/3 of the smallest constant slowdown the gate must catch (5 %). docs/gate.md.
DEFAULT_INSTRUCTION_TOLERANCE = 0.015
# The exponent of instructions against cells may grow by this much: the spread above moves it
# by at most log2(1.005 / 0.995) ≈ 0.014 over the default 25 -> 50 cells.
DEFAULT_INSTRUCTION_EXPONENT_TOLERANCE = 0.05
# Peak memory of the main load may grow by this much (see docs/gate.md for the spreads).
DEFAULT_MEMORY_TOLERANCES = {"python_heap_peak_kib": 0.03, "rss_peak_kib": 0.10}
# The large lock-step load (cProfile call counts and exact counters; valgrind cannot afford
# it): 1600 cells, ≈ 5 s per side (both at once). Calls of unchanged code differ by at most one
# sync round at the load's end, which races with "loaded" (≈ 95 calls: 0.04 % of a 1600-cell
# load's 260,000, 0.3 % at 200 cells); +2 % is 50x that at 1600 cells, and the call exponent
# between the main size and 1600 may grow by 0.05 (that noise moves it by < 0.002).
DEFAULT_LARGE_CELLS = 1600
DEFAULT_CALL_TOLERANCE = 0.02
DEFAULT_CALL_EXPONENT_TOLERANCE = 0.05
# A hard stop for the whole run (seconds): a default run takes 60-90 s on this 2-core machine
# (load average 2-5); a regression that makes loads many times slower must not hang CI.
DEFAULT_BUDGET_S = 240.0
# Seconds --target-cmd may take to listen on {socket} (as on sim and profile).
DEFAULT_TARGET_TIMEOUT_S = 30.0
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class GateSettings:
    pairs: int = DEFAULT_PAIRS
    cells: int = DEFAULT_CELLS
    time_threshold: float = DEFAULT_TIME_THRESHOLD
    exponent_tolerance: float = DEFAULT_EXPONENT_TOLERANCE
    counter_tolerance: float = DEFAULT_COUNTER_TOLERANCE
    seed: int = 0
    sweep_repeats: int = SWEEP_REPEATS
    instruction_tolerance: float = DEFAULT_INSTRUCTION_TOLERANCE
    instruction_exponent_tolerance: float = DEFAULT_INSTRUCTION_EXPONENT_TOLERANCE
    memory_tolerance: float = DEFAULT_MEMORY_TOLERANCES["python_heap_peak_kib"]
    instructions: bool = True  # count instructions under valgrind when it is available
    budget_s: float | None = DEFAULT_BUDGET_S  # None: no limit
    large_cells: int = DEFAULT_LARGE_CELLS  # 0: no large load
    call_tolerance: float = DEFAULT_CALL_TOLERANCE
    call_exponent_tolerance: float = DEFAULT_CALL_EXPONENT_TOLERANCE
    target_cmd: str | None = None  # --target-cmd: the server to measure from outside
    target_timeout: float = DEFAULT_TARGET_TIMEOUT_S
    notebooks: tuple[Path, ...] = ()  # --notebook: the user's own (empty: generated)

    def sweep_sizes(self) -> tuple[int, ...]:
        return tuple(sorted({max(2, self.cells // d) for d in SWEEP_DIVISORS}))


def memory_tolerances(settings: GateSettings) -> dict[str, float]:
    """Per metric: ``--memory-tolerance`` for the Python heap; the RSS rule scales with it."""
    scale = settings.memory_tolerance / DEFAULT_MEMORY_TOLERANCES["python_heap_peak_kib"]
    return {
        "python_heap_peak_kib": settings.memory_tolerance,
        "rss_peak_kib": DEFAULT_MEMORY_TOLERANCES["rss_peak_kib"] * scale,
    }
