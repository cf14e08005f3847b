"""Measuring worker of the CI gate: one long-lived process per side, driven over stdin/stdout.

The gate runs this file **as a script** (``python gate_measure.py --root TREE``) with
``PYTHONPATH=TREE``, so each side imports its *own* ``core`` (the base's git worktree or the
working tree) while the measuring code is always the gate's. It uses only core's public API
(``Daemon``, ``DaemonConfig``, ``NotebookClient``, ``MemoryBlobStore``) and the standard library;
notebooks come in as file paths (the gate generates them once, both sides load the same files).

Protocol: one JSON object per line. At start the worker prints ``{"ready": true, ...}`` or
``{"ready": false, "error": ...}`` (then exits 3). Each command line gets one reply line:

* ``{"cmd": "run", "path": P}`` → ``{"ok": true, "time_s": t, "cells": n}``: one timed streaming
  load of ``P`` by one peer over a ``socket.socketpair()`` (pipelined, as in production); on
  Linux every reply also has ``"rss_hwm_kib": {"before": a, "after": b}``, the process's RSS
  high-water mark (``VmHWM``, never reset) before and after the load: in a fresh process,
  ``b - a`` is the first load's peak resident growth, Automerge's native heap included;
* ``{"cmd": "counters", "path": P}`` → ``{"ok": true, "counters": {...}, "memory": {...}}``: one
  *lock-step* load (before every batch, and at the end, the exchange is left to go quiet), which
  makes frame and byte counts independent of scheduling, so they can be compared exactly;
  ``memory`` has the load's peak Python heap (``tracemalloc``, ``python_heap_peak_kib``);
* ``{"cmd": "instructions", "path": P}`` → as ``counters``, with the load bracketed by the
  markers of :mod:`sim.gate.valgrind` (calls of ``sched_get_priority_max``/``_min``, which
  nothing else in the process makes): a worker run under callgrind with that module's options
  dumps the instruction count of exactly that region; the reply adds ``"pid"`` (to find the
  dump) and ``"markers": n`` (how many regions were bracketed so far);
* ``{"cmd": "profile", "path": P}`` → as ``counters``, plus ``"calls": {name: n}``: how many
  times each function of the tree's ``core`` was called during the load, and each built-in
  (``builtin <name>``) called *from* core (``cProfile``'s call counts; its times are not used;
  paused while the exchange settles, so only the load's own calls count). Deterministic in
  lock-step;
* ``{"cmd": "profile_batches", "path": P}`` → as ``profile``, plus ``"batch_calls": [n, ...]``:
  the core functions' calls so far at the start of each batch after the first (built-ins not
  included; ``nbstream scale``'s per-batch trend — the gate's large load does not pay for it);
* ``{"cmd": "quit"}`` → the worker exits.

A failure replies ``{"ok": false, "error": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import gc
import importlib
import json
import os
import pstats
import re
import socket
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

LOAD_TIMEOUT_S = 600.0
REPLY_TIMEOUT_S = LOAD_TIMEOUT_S + 60.0
READY_TIMEOUT_S = 120.0
# Loop turns without any new frame (and with both sides at the same cell count and every
# client message applied) after which a lock-step exchange is considered settled.
QUIET_TURNS = 30

__all__ = ["answer", "main", "send_line", "serve"]


def _inside(path: str, root: str) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(root) + os.sep)


def _drop_editable_finders() -> None:
    """Remove setuptools' editable-install finders from ``sys.meta_path``.

    An editable install of nbstream maps ``core`` to the installed checkout (the working tree),
    and its finder resolves ``core.X`` there even when ``core`` itself came from PYTHONPATH: a
    base tree without ``core/daemon.py`` would silently be measured with the working tree's.
    """
    sys.meta_path[:] = [
        finder
        for finder in sys.meta_path
        if not str(getattr(finder, "__module__", "")).startswith("__editable__")
    ]


class _Core:
    """The tree under test's core API, imported lazily after the import path is checked."""

    def __init__(self, root: str) -> None:
        _drop_editable_finders()
        try:
            core = importlib.import_module("core")
            origin = os.path.realpath(getattr(core, "__file__", None) or "")
            if not _inside(origin, root):
                raise ImportError(f"no core package in the tree (would import {origin})")
            daemon = importlib.import_module("core.daemon")
            client = importlib.import_module("core.client")
            blob_store = importlib.import_module("core.blob_store")
        except ImportError as exc:
            raise ImportError(
                f"cannot import core.daemon/core.client/core.blob_store from {root}: {exc}"
            ) from exc
        stray = sorted(
            name
            for name, module in list(sys.modules.items())
            if (name == "core" or name.startswith("core."))
            and not _inside(getattr(module, "__file__", None) or "", root)
        )
        if stray:
            raise ImportError(f"{', '.join(stray)} imported from outside {root}")
        self.origin = origin
        self.Daemon: Any = daemon.Daemon
        self.DaemonConfig: Any = daemon.DaemonConfig
        self.NotebookClient: Any = client.NotebookClient
        self.MemoryBlobStore: Any = blob_store.MemoryBlobStore


class _ServerView:
    """The one notebook the measured daemon serves, through its public figures.

    Trees from before ``Daemon.room_figures`` (older gate bases) expose only their room
    registry; :meth:`_legacy` reads that, and nothing else here touches daemon internals."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.modern = hasattr(daemon, "room_figures") and hasattr(daemon, "document_bytes")

    def _legacy(self) -> Any:
        return next(iter(self.daemon.rooms.rooms())).doc

    def statistics(self) -> Any:
        if self.modern:
            return next(iter(self.daemon.room_figures().values())).doc
        return self._legacy().statistics()

    def cell_count(self) -> int:
        if self.modern:
            return int(next(iter(self.daemon.room_figures().values())).cells)
        return int(self._legacy().cell_count())

    def document_size(self) -> int:
        if self.modern:
            (notebook_id,) = self.daemon.room_figures()
            return len(self.daemon.document_bytes(notebook_id))
        return len(self._legacy().save())


async def _settle(client: Any, server: _ServerView) -> None:
    """Wait until the exchange is quiet: same cell count, every client message applied."""
    quiet = 0
    last: tuple[int, ...] = ()
    while quiet < QUIET_TURNS:
        await asyncio.sleep(0)
        cs = client.statistics()
        ds = server.statistics()
        sig = (
            cs.frames_in,
            cs.frames_out,
            ds.sync_messages_received,
            ds.sync_messages_generated,
            client.doc.cell_count(),
            server.cell_count(),
        )
        caught_up = sig[4] == sig[5] and ds.sync_messages_received == cs.frames_out - 1
        quiet = quiet + 1 if sig == last and caught_up else 0
        last = sig


class Measurer:
    """Runs loads of notebooks against this side's core, one event loop for the whole process."""

    def __init__(self, api: _Core) -> None:
        self.api = api
        self.loop = asyncio.new_event_loop()
        self.markers = 0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()

    def _run(self, coro: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        return self.loop.run_until_complete(asyncio.wait_for(coro, LOAD_TIMEOUT_S))

    def timed(self, path: str) -> dict[str, Any]:
        return self._run(self._load(path, lockstep=False))

    def counters(self, path: str) -> dict[str, Any]:
        return self._run(self._load(path, lockstep=True))

    def profile(self, path: str) -> dict[str, Any]:
        return self._profile(path, None)

    def profile_batches(self, path: str) -> dict[str, Any]:
        marks: list[int] = []
        return {**self._profile(path, marks), "batch_calls": marks}

    def _profile(self, path: str, marks: list[int] | None) -> dict[str, Any]:
        profiler = cProfile.Profile()
        reply = self._run(self._load(path, lockstep=True, profiler=profiler, marks=marks))
        return {**reply, "calls": _core_calls(profiler, self.api.origin)}

    def instructions(self, path: str) -> dict[str, Any]:
        self.markers += 1
        reply = self._run(self._load(path, lockstep=True, mark=True))
        return {**reply, "pid": os.getpid(), "markers": self.markers}

    async def _load(
        self,
        path: str,
        *,
        lockstep: bool,
        mark: bool = False,
        profiler: cProfile.Profile | None = None,
        marks: list[int] | None = None,
    ) -> dict[str, Any]:
        api = self.api
        holder: list[Any] = []
        views: list[_ServerView] = []
        core_dir = os.path.dirname(api.origin) + os.sep

        async def before_batch(_room: Any, index: int) -> None:
            if holder:
                if profiler is not None:
                    profiler.disable()
                    if marks is not None:  # core calls so far, at the start of each batch
                        marks.append(_core_call_total(profiler, core_dir))
                await _settle(holder[0], views[0])
                if profiler is not None:
                    profiler.enable()

        hook: Callable[[Any, int], Awaitable[None]] | None = before_batch if lockstep else None
        gc.collect()
        memory = lockstep and not mark and profiler is None
        hwm0 = _rss_kib("VmHWM")  # the process's peak so far (never reset)
        if memory:
            tracemalloc.start()
        if mark:
            os.sched_get_priority_max(os.SCHED_OTHER)  # callgrind: zero the counts here
        if profiler is not None:
            profiler.enable()
        t0 = time.perf_counter()
        c0 = time.process_time()
        options: dict[str, Any] = {}  # none: each tree as it ships, its own defaults
        if "notebook_root" in {f.name for f in dataclasses.fields(api.DaemonConfig)}:
            # serve the notebooks' directory (a base tree from before issue 12 has no root)
            options["notebook_root"] = Path(os.path.realpath(path)).parent
        config = api.DaemonConfig(**options)
        daemon = api.Daemon(config, blob_store=api.MemoryBlobStore(), before_batch=hook)
        views.append(_ServerView(daemon))
        await daemon.start()
        server_end, client_end = socket.socketpair()
        server_task: asyncio.Task[None] | None = None
        client: Any = None
        try:
            sr, sw = await asyncio.open_connection(sock=server_end)
            cr, cw = await asyncio.open_connection(sock=client_end)
            server_task = asyncio.create_task(daemon.handle_connection(sr, sw))
            client = api.NotebookClient(cr, cw, name="gate")
            holder.append(client)
            await client.open(path)
            await client.wait_loaded()
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - c0
            if mark:
                os.sched_get_priority_min(os.SCHED_OTHER)  # callgrind: dump the counts here
            if profiler is not None:
                profiler.disable()
            cells = int(client.doc.cell_count())
            result: dict[str, Any] = {"ok": True, "time_s": elapsed, "cpu_s": cpu, "cells": cells}
            if memory:
                peak = tracemalloc.get_traced_memory()[1]  # the load's peak Python heap
                tracemalloc.stop()
                result["memory"] = {"python_heap_peak_kib": peak / 1024}
            hwm = _rss_kib("VmHWM")
            if hwm0 is not None and hwm is not None:
                result["rss_hwm_kib"] = {"before": hwm0, "after": hwm}
            if lockstep:
                await _settle(client, views[0])
                result["counters"] = _counters(client, views[0], cells)
            return result
        finally:
            if client is not None:
                await client.close()
            await daemon.stop()
            if server_task is not None:
                server_task.cancel()
                await asyncio.gather(server_task, return_exceptions=True)
            server_end.close()
            client_end.close()


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _core_call_total(profiler: cProfile.Profile, core_dir: str) -> int:
    """Calls of the tree's core functions so far (built-ins not included): cheap enough to take
    at every batch boundary (``getstats`` while the profiler is paused)."""
    return sum(
        entry.callcount
        for entry in profiler.getstats()
        if not isinstance(entry.code, str) and entry.code.co_filename.startswith(core_dir)
    )


def _core_calls(profiler: cProfile.Profile, core_init: str) -> dict[str, int]:
    """Call counts of the tree's core functions, and of built-ins called from them."""
    core_dir = os.path.dirname(core_init) + os.sep
    root = os.path.dirname(os.path.dirname(core_init)) + os.sep
    stats: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    calls: dict[str, int] = {}
    for (filename, _line, name), (_cc, nc, _tt, _ct, callers) in stats.items():
        if filename.startswith(core_dir):
            key = f"{filename.removeprefix(root)}:{name}"
        elif filename == "~":
            nc = sum(c[1] for (f, _l, _n), c in callers.items() if f.startswith(core_dir))
            key = "builtin " + re.sub(r" at 0x[0-9a-f]+", "", name)  # no addresses
        else:
            continue
        if nc:
            calls[key] = calls.get(key, 0) + int(nc)
    return calls


def _counters(client: Any, server: _ServerView, cells: int) -> dict[str, float]:
    ds = server.statistics()
    cs = client.statistics()
    per = max(cells, 1)
    return {
        "cells": cells,
        "ops": ds.ops,
        "transactions": ds.transactions,
        "scan_steps": ds.scan_steps,
        "frames": cs.frames_in,
        "bytes_per_cell": cs.bytes_in / per,
        "doc_bytes_per_cell": server.document_size() / per,
    }


def send_line(out: Any, message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def serve(root: str, commands: Any, out: Any) -> int:
    """Import the tree's core, report readiness, then answer commands until ``quit`` or EOF."""
    try:
        api = _Core(root)
    except Exception as exc:  # a base without core.daemon, or with a broken one
        send_line(out, {"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 3
    send_line(out, {"ready": True, "core": api.origin, "pid": os.getpid()})
    measurer = Measurer(api)
    handlers = {
        "run": measurer.timed,
        "counters": measurer.counters,
        "profile": measurer.profile,
        "profile_batches": measurer.profile_batches,
        "instructions": measurer.instructions,
    }
    try:
        answer(commands, out, handlers, lambda cmd: f"unknown command {cmd!r}")
    finally:
        measurer.close()
    return 0


def answer(
    commands: Any,
    out: Any,
    handlers: Mapping[str, Callable[[str], dict[str, Any]]],
    unknown: Callable[[object], str],
) -> None:
    """Reply to each command line until ``quit`` (or the end of input): ``handlers[cmd](path)``,
    or an error reply (``unknown(cmd)``, or the exception a handler raised)."""
    for line in commands:
        request = json.loads(line)
        cmd = request.get("cmd")
        if cmd == "quit":
            break
        handler = handlers.get(cmd)
        try:
            if handler is None:
                reply = {"ok": False, "error": unknown(cmd)}
            else:
                reply = handler(str(request["path"]))
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        send_line(out, reply)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", required=True, help="root of the tree whose core is measured")
    args = parser.parse_args(argv)
    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints from the code under test must not corrupt the protocol
    return serve(args.root, sys.stdin, out)


if __name__ == "__main__":
    # Run as a script, sys.path[0] is the gate's own sim/ directory: drop it, so only
    # PYTHONPATH (the tree under test) supplies importable packages besides site-packages.
    if sys.path and os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
        del sys.path[0]
    sys.exit(main())
