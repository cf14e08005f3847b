"""Instruction counts of a marked region, from valgrind's callgrind: the gate's deterministic cost.

A process run under ``valgrind --tool=callgrind`` with :func:`command_prefix` counts every
instruction it executes (Ir). Two libc calls that nothing else in a measuring worker makes act
as markers: ``sched_get_priority_max`` **zeroes** the counts on entry and
``sched_get_priority_min`` **dumps** them on entry (``--zero-before`` / ``--dump-before``), so
the n-th dump file (``callgrind.<pid>.<n>``) holds exactly the instructions between the n-th
pair of markers: one load, with nothing of the interpreter's start, the imports or the other
loads. :func:`read_dump` reads its total and the inclusive count of every (native) function.

Counts repeat closely because nothing in them depends on time: ``PYTHONHASHSEED=0`` (set by
the worker's parent) fixes str hashing, ASLR is switched off with ``setarch -R`` where that
works (address-keyed hashing and allocation then repeat too), valgrind runs the threads of the
process one at a time. What still varies between processes (≈ 0.1-0.5 %) is how often the
event loop turns while a worker thread runs (reading, parsing, manifests run off the loop);
a ``getrandom()`` made deterministic through ``LD_PRELOAD`` (same Automerge actor ids, same
seeds for Rust's hash maps) was tried and made no measurable difference (0.26 % against
0.25 % at 25 cells, 6 processes each). See docs/gate.md for the measured spread.

:func:`unavailable` says why counting is not possible here (no valgrind, or it does not run);
the gate then reports the signal as unavailable instead of failing.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DUMP_MARK",
    "ZERO_MARK",
    "Dump",
    "command_prefix",
    "dump_path",
    "read_dump",
    "start_instrumentation",
    "unavailable",
]

ZERO_MARK = "sched_get_priority_max"
DUMP_MARK = "sched_get_priority_min"
DUMP_PREFIX = "callgrind"
PROBE_TIMEOUT_S = 60.0


@functools.cache
def _probe() -> tuple[str | None, bool]:
    """``(why valgrind cannot be used or None, whether setarch -R works)``."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return "valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)", False
    try:
        proc = subprocess.run(
            [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", "true"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"valgrind does not run here: {exc}", False
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return f"valgrind does not run here: {tail}", False
    setarch = shutil.which("setarch")
    no_aslr = False
    if setarch is not None:
        try:
            no_aslr = (
                subprocess.run(
                    [setarch, "-R", "true"], capture_output=True, timeout=10, check=False
                ).returncode
                == 0
            )
        except (OSError, subprocess.TimeoutExpired):
            no_aslr = False
    return None, no_aslr


def unavailable() -> str | None:
    """None when instructions can be counted here, else the reason (one line)."""
    return _probe()[0]


@functools.cache
def _control() -> str | None:
    """``callgrind_control`` (valgrind's package ships it; a Perl script) when it runs here,
    else None: the workers are then instrumented from the start."""
    control = shutil.which("callgrind_control")
    if control is None:
        return None
    try:
        ok = subprocess.run(
            [control, "--version"], capture_output=True, timeout=PROBE_TIMEOUT_S, check=False
        ).returncode
    except (OSError, subprocess.TimeoutExpired):
        return None
    return control if ok == 0 else None


def command_prefix(out_dir: Path) -> list[str]:
    """The argv prefix that runs a process under callgrind, dumping into ``out_dir``.

    With ``callgrind_control`` at hand the process starts **uninstrumented**
    (``--instr-atstart=no``: the interpreter's start and the imports run ≈ 4x faster than under
    full instrumentation — 2.2 s against 8.2 s for a Python process importing the core) and
    :func:`start_instrumentation` switches it on once the worker is ready, before its warm-up
    load; the marked regions are counted alike (145,633,421 against 145,633,408 instructions
    for the same region, measured 2026-12-08)."""
    reason, no_aslr = _probe()
    if reason is not None:
        raise RuntimeError(reason)
    return [
        *(["setarch", "-R"] if no_aslr else []),
        "valgrind",
        "--tool=callgrind",
        "--quiet",
        *(["--instr-atstart=no"] if _control() is not None else []),
        f"--callgrind-out-file={out_dir}/{DUMP_PREFIX}.%p",
        f"--zero-before={ZERO_MARK}",
        f"--dump-before={DUMP_MARK}",
        "--compress-strings=no",
        "--compress-pos=no",
    ]


def start_instrumentation(pid: int) -> None:
    """Switch instrumentation on in the callgrind process ``pid`` (started by
    :func:`command_prefix`); nothing to do when it was instrumented from the start. Raises
    RuntimeError (one line) when ``callgrind_control`` fails."""
    control = _control()
    if control is None:
        return
    try:
        proc = subprocess.run(
            [control, "--instr=on", str(pid)],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"callgrind_control --instr=on {pid}: {exc}") from None
    if proc.returncode != 0 or "OK" not in proc.stdout:
        said = proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}"
        raise RuntimeError(f"callgrind_control --instr=on {pid}: {said.splitlines()[0]}")


def dump_path(out_dir: Path, pid: int, marker: int) -> Path:
    """The dump of the ``marker``-th marked region (1-based) of process ``pid``."""
    return out_dir / f"{DUMP_PREFIX}.{pid}.{marker}"


@dataclass(frozen=True, slots=True)
class Dump:
    """One marked region: its instruction count and each function's inclusive count."""

    instructions: int
    inclusive: dict[str, int]  # function name -> instructions in it and in what it called


def _cost(fields: Sequence[str], positions: int) -> int:
    return int(fields[positions]) if len(fields) > positions else 0


def read_dump(path: Path) -> Dump:
    """Parse a callgrind dump written with ``--compress-strings=no --compress-pos=no``."""
    total: int | None = None
    positions = 1
    inclusive: dict[str, int] = {}
    fn = ""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for raw in fh:
            line = raw.rstrip("\n")
            if not line:
                continue
            head = line[0]
            if head.isdigit() or head in "+-*":
                # A self-cost line, or (after ``calls=``) the inclusive cost of a call: both
                # are part of the current function's inclusive count.
                inclusive[fn] = inclusive.get(fn, 0) + _cost(line.split(), positions)
            elif line.startswith("fn="):
                fn = line[3:]
            elif line.startswith("summary:"):
                total = int(line.split()[1])
            elif line.startswith("positions:"):
                positions = len(line.split()) - 1
    if total is None:
        raise ValueError(f"{path}: not a callgrind dump (no summary line)")
    return Dump(total, inclusive)
