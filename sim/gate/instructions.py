"""The gate's deterministic cost: instructions per load, both sides under callgrind at once.

One measuring worker per side (:mod:`sim.gate.worker`, as for the timed loads) runs under
valgrind's callgrind (:mod:`sim.gate.valgrind`). After one warm-up load whose counts are
dropped (the first load of a process pays for lazy imports and first-time code paths: +2 %,
measured; a lock-step load with tracemalloc before it, +19 %), each worker makes lock-step
loads bracketed by the markers, and the parent reads
the dump of each: the instructions of exactly that load, daemon and client together, and each
native function's inclusive count (for "where").

Instruction counts do not depend on time, so the two workers run **concurrently** (one per
core) and other processes on the machine cannot change them; only their duration (valgrind
runs Python ≈ 50x slower). The gate therefore counts small loads: cells/8 and cells/4 of the
main notebook (25 and 50 cells by default), after a warm-up load of 25 whose counts are dropped.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sim.gate import valgrind
from sim.gate.workers import GateError, Worker

__all__ = [
    "INSTRUCTION_DIVISORS",
    "InstructionRuns",
    "count_instructions",
    "count_loads",
    "instruction_plan",
    "warm_up_size",
]

INSTRUCTION_DIVISORS = (8, 4)  # counted sizes: cells/8 and cells/4
READY_TIMEOUT_S = 600.0  # python's start and imports under valgrind: ≈ 20 s here, more if busy

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class InstructionRuns:
    """Every counted load of both sides, in the order measured."""

    base: tuple[tuple[int, valgrind.Dump], ...]  # (cells, dump)
    candidate: tuple[tuple[int, valgrind.Dump], ...]

    def counts(self, side: str) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for n, dump in self.base if side == "base" else self.candidate:
            out.setdefault(n, []).append(dump.instructions)
        return out

    def first(self, side: str, cells: int) -> valgrind.Dump:
        runs = self.base if side == "base" else self.candidate
        return next(d for n, d in runs if n == cells)


def instruction_plan(cells: int) -> tuple[int, ...]:
    """The counted loads, in order: each size once, smallest first.

    No size is counted twice: a process's counts drift down from load to load (Python 3.11's
    adaptive interpreter keeps specialising code as it runs more often: 308.73, 308.67,
    308.53, 308.42 M instructions for four 25-cell loads of one process), so a repeat would
    measure that drift, not noise. Both sides run the same sequence, so the drift cancels in
    the comparison of equal positions."""
    return tuple(sorted({max(2, cells // d) for d in INSTRUCTION_DIVISORS}))


def warm_up_size(cells: int) -> int:
    """The warm-up load's size: the smallest counted one. (A smaller notebook leaves first-time
    code paths for the first counted load: +0.8 % for a 12-cell load after a 6-cell warm-up.)"""
    return min(instruction_plan(cells))


@contextlib.contextmanager
def _valgrind_workers(
    specs: Sequence[tuple[str, Path]], out_dirs: Sequence[Path]
) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    try:
        for (label, root), out in zip(specs, out_dirs, strict=True):
            wrapper = valgrind.command_prefix(out)
            started.append(Worker(label, root, wrapper=wrapper))
        for w in started:
            w.wait_ready(timeout=READY_TIMEOUT_S)
            try:
                valgrind.start_instrumentation(w.proc.pid)
            except RuntimeError as exc:
                raise GateError(f"{w.label}: {exc}") from None
        yield started
    finally:
        for w in started:
            w.close()


def _both(
    pair: Sequence[Worker], message: Mapping[str, object], cells: int
) -> list[dict[str, object]]:
    for w in pair:
        w.send(message)
    replies = [w.check(w.receive()) for w in pair]
    for w, reply in zip(pair, replies, strict=True):
        if reply.get("cells") != cells:
            raise GateError(f"{w.label}: loaded {reply.get('cells')} of {cells} cells")
    return replies


def count_instructions(
    specs: Sequence[tuple[str, Path]],
    paths: Mapping[int, Path],
    plan: Sequence[int],
    *,
    warm_up: int,
    progress: Progress | None = None,
) -> InstructionRuns:
    """Count the loads of ``plan`` (cell counts, each a key of ``paths``) on both sides, after
    one marked load of ``warm_up`` cells (a key of ``paths`` too) whose counts are dropped.

    ``specs`` are the ``(label, tree)`` of base and candidate, as for
    :func:`sim.gate.workers.workers`. Raises GateError when a worker fails.
    """
    if len(specs) != 2:
        raise ValueError("count_instructions: need a base and a candidate")
    base, candidate = count_loads(specs, paths, plan, warm_up=warm_up, progress=progress)
    return InstructionRuns(base, candidate)


def count_loads(
    specs: Sequence[tuple[str, Path]],
    paths: Mapping[int, Path],
    plan: Sequence[int],
    *,
    warm_up: int,
    progress: Progress | None = None,
) -> list[tuple[tuple[int, valgrind.Dump], ...]]:
    """:func:`count_instructions` for any number of workers (all run at once): per spec, the
    ``(cells, dump)`` of each load of ``plan``."""
    reason = valgrind.unavailable()
    if reason is not None:
        raise GateError(reason)
    runs: list[list[tuple[int, valgrind.Dump]]] = [[] for _ in specs]
    with contextlib.ExitStack() as stack:
        out_dirs = [
            Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nbstream-gate-cg-")))
            for _ in specs
        ]
        t0 = time.monotonic()
        with _valgrind_workers(specs, out_dirs) as started:
            if progress is not None:
                took = time.monotonic() - t0
                progress(
                    f"instructions: {len(specs)} workers started under valgrind ({took:.0f} s)"
                )
            for i, n in enumerate((warm_up, *plan)):
                replies = _both(started, {"cmd": "instructions", "path": str(paths[n])}, n)
                if i == 0:
                    continue  # the warm-up's counts are not used
                for out, side, reply in zip(out_dirs, runs, replies, strict=True):
                    pid, marker = int(str(reply["pid"])), int(str(reply["markers"]))
                    try:
                        side.append((n, valgrind.read_dump(valgrind.dump_path(out, pid, marker))))
                    except (OSError, ValueError) as exc:
                        raise GateError(
                            f"instructions: cannot read callgrind's dump: {exc}"
                        ) from None
                if progress is not None:
                    counts = ", ".join(f"{s[-1][1].instructions:,}" for s in runs)
                    took = time.monotonic() - t0
                    progress(f"instructions: {n} cells counted ({counts}; {took:.0f} s)")
    return [tuple(r) for r in runs]


# --------------------------------------------------------------------------- where

# Native entry points that bound a phase (their inclusive counts do not nest in each other);
# what none of them covers is the Python code of the daemon and the client and the event loop.
_PHASES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    (
        "sync: receive (the peer's side)",
        lambda f: f == "automerge::Document::__pymethod_receive_sync_message__",
    ),
    (
        "sync: generate (the daemon's side)",
        lambda f: f == "automerge::Document::__pymethod_generate_sync_message__",
    ),
    ("insert: Automerge writes", lambda f: f.startswith("automerge::Transaction::__pymethod_")),
    (
        "Automerge reads",
        lambda f: f.startswith("automerge::Document::__pymethod_") and "sync_message" not in f,
    ),
    ("read, parse, manifests (worker threads)", lambda f: f == "start_thread"),
)
PYTHON_PHASE = "Python: daemon, client, framing, event loop"
_GENERIC = re.compile(
    r"^(_?Py|0x|\(below|cfunction_|method_vectorcall|partial_vectorcall|task_|context_run|"
    r"TaskStep|__libc_start|main$|run_mod|pyo3::impl_|slot_|vectorcall|clone$|thread_run|"
    r"pythread_wrapper|start_thread|gen_|builtin_)"
)
TOP_FUNCTIONS = 8


def phase_counts(dump: valgrind.Dump) -> dict[str, int]:
    """The dump's instructions split into the phases of :data:`_PHASES`, plus the rest."""
    out = {name: 0 for name, _ in _PHASES}
    for fn, count in dump.inclusive.items():
        for name, match in _PHASES:
            if match(fn):
                out[name] += count
                break
    out[PYTHON_PHASE] = dump.instructions - sum(out.values())
    return out


def changed_functions(base: valgrind.Dump, candidate: valgrind.Dump) -> list[tuple[str, int, int]]:
    """The specific (non-interpreter) functions whose inclusive counts changed most."""
    names = set(base.inclusive) | set(candidate.inclusive)
    limit = 0.5 * max(base.instructions, 1)
    rows = [
        (fn, base.inclusive.get(fn, 0), candidate.inclusive.get(fn, 0))
        for fn in names
        if fn and not _GENERIC.match(fn) and base.inclusive.get(fn, 0) <= limit
    ]
    rows = [r for r in rows if r[1] != r[2]]
    rows.sort(key=lambda r: (-abs(r[2] - r[1]), r[0]))
    return rows[:TOP_FUNCTIONS]
