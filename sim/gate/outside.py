"""The gate's measuring process for a server it only sees from outside (``gate --target-cmd``).

Run as a script like :mod:`sim.gate.worker` and speaking the same JSON lines, but with
``PYTHONPATH`` set to the *gate's* tree and the working directory set to the tree under test: it
starts the user's server there (:class:`sim.harness.external.CommandTarget`, ``{socket}``
replaced by a fresh path), and loads every notebook through the gate's own
:class:`core.client.NotebookClient` speaking PROTOCOL.md. Nothing of the tree under test is
imported, so any server that speaks the protocol can be measured.

Each load opens a fresh copy of the notebook (:func:`sim.harness.external.fresh_copy`): a server
keeps a room open after its last peer leaves, and reopening it would measure a sync, not a load.
The copies are written into the tree under test, the server's working directory
(``.nbstream-gate-<pid>/``, removed when the process ends), so a server that serves the notebooks
under its working directory (``nbstream serve``'s default root) can open them on both sides.
Per load the reply has ``time_s`` (handshake to every cell loaded), ``first_cell_s``, ``cpu_s``
(the CPU time, ``utime + stime``, the server's process tree spent meanwhile, read from
``/proc``), ``cells``, ``rss_hwm_kib`` (the tree's summed ``VmHWM`` before and after) and, for
``counters``, the client's view: ``frames``, ``changed_frames`` (the frames that carried
cells: cells per frame is ``cells / changed_frames``) and ``bytes_per_cell``.
``instructions`` and ``profile`` are refused: they need the server's code in the process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

# Run as a script, sys.path[0] is sim/gate/: drop it, so PYTHONPATH (the gate's tree) supplies
# ``core`` and ``sim``, never the tree under test in the working directory.
if sys.path and os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    del sys.path[0]

from core.client import NotebookClient
from sim.gate.worker import answer, send_line
from sim.harness.external import CommandTarget, fresh_copy

__all__ = ["COUNTERS", "NOISY_TOLERANCE", "main", "process_tree", "tree_cpu_s", "tree_hwm_kib"]

LOAD_TIMEOUT_S = 600.0
COUNTERS = ("frames", "changed_frames", "bytes_per_cell")
# frames and bytes_per_cell race with acknowledgements from outside: +15 % is 2.5x the 6 %
# spread seen over unchanged loads (sim.gate.measure compares changed_frames exactly).
NOISY_TOLERANCE = 0.15
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` fields after the command name (field 3 onwards), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant (a wrapper script's server is its child)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and len(fields) > 1:
                parents.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += parents.get(current, [])
    return out


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of the tree: ``utime + stime`` of each live process plus its reaped
    children's (``cutime + cstime``)."""
    ticks = 0
    for member in process_tree(pid):
        fields = _stat(member)
        if fields is not None and len(fields) > 14:
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / _TICK


def tree_hwm_kib(pid: int) -> int:
    """The summed peak resident set (``VmHWM``) of the tree's live processes."""
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/status", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total


class OutsideMeasurer:
    """Loads notebooks into the started server; one event loop for the whole process."""

    def __init__(
        self, target: CommandTarget, loop: asyncio.AbstractEventLoop, copies: Path
    ) -> None:
        self.target = target
        self.loop = loop
        self.loads = 0
        self.copies = copies  # where each load's fresh copy is written

    @property
    def pid(self) -> int:
        return self.target.pid

    def load(self, path: str, counters: bool) -> dict[str, Any]:
        return self.loop.run_until_complete(
            asyncio.wait_for(self._load(Path(path), counters), LOAD_TIMEOUT_S)
        )

    async def _load(self, path: Path, counters: bool) -> dict[str, Any]:
        self.loads += 1
        with fresh_copy(path, f"gate{self.loads}", into=self.copies) as copy:
            hwm0 = tree_hwm_kib(self.pid)
            c0 = tree_cpu_s(self.pid)
            t0 = time.perf_counter()
            client = await NotebookClient.connect(self.target.socket, copy, name="gate")
            try:
                await client.wait_loaded()
                elapsed = time.perf_counter() - t0
                # /proc counts CPU time in ticks: a load under one tick counts as half of one,
                # so ratios stay defined (a tick is 10 ms: use loads of many ticks)
                cpu = max(tree_cpu_s(self.pid) - c0, 0.5 / _TICK)
                stats = client.statistics()
                cells = int(client.doc.cell_count())
            finally:
                await client.close()
        first = stats.time_to_first_cell_s
        result: dict[str, Any] = {
            "ok": True,
            "time_s": elapsed,
            "cpu_s": cpu,
            "cells": cells,
            "first_cell_s": None if first is None else first + (client.started_at - t0),
            "rss_hwm_kib": {"before": hwm0, "after": tree_hwm_kib(self.pid)},
        }
        if counters:
            result["counters"] = {
                "cells": cells,
                "frames": stats.frames_in,
                "changed_frames": stats.sync_frames_with_changes,  # cells per frame: cells / this
                "bytes_per_cell": stats.bytes_in / max(cells, 1),
            }
        return result


def serve(command: str, start_timeout: float, commands: Any, out: Any) -> int:
    """Start the server, report readiness, answer commands until ``quit`` or EOF, stop it."""
    loop = asyncio.new_event_loop()
    try:
        target = CommandTarget(command, start_timeout=start_timeout)
        loop.run_until_complete(target.start())
    except Exception as exc:  # the command is bad, exits or never listens: one line
        send_line(out, {"ready": False, "error": str(exc)})
        loop.close()
        return 3
    copies = Path.cwd() / f".nbstream-gate-{os.getpid()}"
    try:
        copies.mkdir(mode=0o700)
    except OSError as exc:
        loop.run_until_complete(target.stop())
        loop.close()
        send_line(out, {"ready": False, "error": f"cannot create {copies}: {exc.strerror}"})
        return 3
    measurer = OutsideMeasurer(target, loop, copies)
    send_line(out, {"ready": True, "pid": target.pid, "server": target.description})
    handlers = {
        "run": lambda path: measurer.load(path, False),
        "counters": lambda path: measurer.load(path, True),
    }
    try:
        answer(commands, out, handlers, lambda cmd: f"{cmd!r} is not measurable from outside")
    finally:
        loop.run_until_complete(target.stop())
        loop.close()
        shutil.rmtree(copies, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--target-cmd", required=True, help="the server's command ({socket})")
    parser.add_argument("--target-timeout", type=float, default=30.0, help="seconds to listen")
    args = parser.parse_args(argv)
    out = sys.stdout
    sys.stdout = sys.stderr
    return serve(args.target_cmd, args.target_timeout, sys.stdin, out)


if __name__ == "__main__":
    sys.exit(main())
