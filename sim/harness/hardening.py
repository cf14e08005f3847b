"""Load figures: many peers in one room, many rooms at once, a peer stalled the whole time.

``python -m sim.harness.hardening --json`` runs the three workloads, each in its own subprocess (so
each
peak RSS is that workload's own), and prints one JSON object::

    {"command": "hardening", "version": str, "ok": bool,
     "workloads": {"many-peers": {...}, "many-rooms": {...}, "stalled-peer": {...}}}

Every workload runs a real :class:`core.daemon.Daemon` in-process with its peers on bounded
in-memory streams, waits only on conditions (each with a safety timeout: hitting it is a failed
check, never a hang), and reports what it held and what it cost:

* ``many-peers`` — one room, the bundled 50-cell notebook, 500 peers (``--peers``) joining at
  seeded random batches *during* the load, plus one peer that never reads behind a 4 KiB buffer
  the whole time. Every reading peer must converge on the server and the source notebook.
* ``many-rooms`` — 50 notebooks (``--rooms``) loaded at once, one loader each, plus one stalled
  peer in the first room. Every room must load fully and every loader converge.
* ``stalled-peer`` — the *loading* peer is stalled from its first byte on (its 4 KiB pipe never
  delivers), while 20 peers join mid-load. The load and every other peer must finish; the bytes
  queued for the stalled peer stay within its buffer plus one frame.

Figures per workload: ``peers`` / ``rooms`` held, ``converged``, ``wall_s``,
``baseline_rss_kib`` (``ru_maxrss`` before the workload) and ``peak_rss_kib`` (after; KiB on
Linux), plus workload-specific counters. ``ok`` is true when every check passed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from automerge import core as am

from core import __version__
from core.blob_store import MemoryBlobStore
from core.client import NotebookClient
from core.daemon import DaemonConfig
from core.ipynb import parse_notebook
from core.notebook_doc import NotebookDoc
from core.room import NotebookRoom
from sim.harness.convergence import check_convergence, expected_document
from sim.harness.peers import PeerSpec, open_silently
from sim.harness.runner import run_scenario
from sim.harness.scenarios import SLOW_BUFFER, Scenario
from sim.harness.target import BundledTarget
from sim.net.streams import StreamHooks, memory_transport_of
from sim.workload.generator import default_notebook_path, write_notebook

__all__ = ["WORKLOADS", "main", "many_peers", "many_rooms", "peak_rss_kib", "stalled_peer"]

WORKLOADS = ("many-peers", "many-rooms", "stalled-peer")


def peak_rss_kib() -> int:
    """This process's peak resident set size (``ru_maxrss``: KiB on Linux)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# =========================================================================== many peers


async def _teardown(
    clients: Iterable[NotebookClient],
    stalled_writer: asyncio.StreamWriter | None,
    target: BundledTarget,
) -> None:
    """Close the clients and the stalled peer, stop the target (it reaps its connections)."""
    for client in clients:
        await client.close()
    if stalled_writer is not None:
        stalled_writer.close()
    await target.stop()


async def many_peers(
    peers: int = 500, *, seed: int = 0, notebook: Path | None = None, timeout: float = 300.0
) -> dict[str, Any]:
    """``peers`` reading peers in one room (all but the loader join mid-load) + one stalled."""
    notebook = notebook or default_notebook_path()
    cells = len(parse_notebook(notebook.read_bytes()).cells)
    batch_size = 3
    batches = max(1, -(-cells // batch_size))
    rng = random.Random(f"hardening:{seed}")
    specs = [PeerSpec("loader")]
    specs += [
        PeerSpec(f"peer{i}", join_at_batch=rng.randint(0, batches - 1)) for i in range(1, peers)
    ]
    specs.append(PeerSpec("stalled", behaviour="never_reads", join_at_batch=0, buffer=SLOW_BUFFER))
    scenario = Scenario("many-peers", f"{peers} peers + 1 stalled", tuple(specs))
    baseline = peak_rss_kib()
    t0 = time.perf_counter()
    result = await run_scenario(
        scenario, notebook, batch_size=batch_size, seed=seed, timeout=timeout
    )
    wall = time.perf_counter() - t0
    peak = peak_rss_kib()
    rows = [r for r in result.peers if r.behaviour != "never_reads"]
    full = [r.time_to_full_s for r in rows if r.time_to_full_s is not None]
    return {
        "workload": "many-peers",
        "ok": result.ok and result.converged,
        "converged": result.converged,
        "checks_failed": [c.to_json() for c in result.checks if not c.ok],
        "peers": len(rows),
        "stalled_peers": 1,
        "joined_mid_load": sum(1 for s in specs if s.join_at_batch is not None) - 1,
        "converged_peers": sum(1 for r in rows if r.converged),
        "cells": result.cells,
        "notebook_bytes": result.notebook.bytes,
        "frames_delivered": sum(r.frames_in for r in rows),
        "bytes_delivered": sum(r.bytes_in for r in rows),
        "slowest_time_to_full_s": max(full) if full else None,
        "wall_s": wall,
        "baseline_rss_kib": baseline,
        "peak_rss_kib": peak,
        "rss_growth_per_peer_kib": (peak - baseline) / max(1, len(rows)),
    }


# =========================================================================== shared helpers
def _server_doc(target: BundledTarget, notebook: Path) -> NotebookDoc:
    """The server's document of ``notebook``, as ``get_doc_bytes`` would answer."""
    data = target.document_bytes(str(notebook))
    if data is None:
        raise LookupError(f"the daemon has no room for {notebook}")
    return NotebookDoc.load(data)


async def _settled(client: NotebookClient, server: NotebookDoc, timeout: float) -> None:
    heads = server.heads()

    def done() -> bool:
        s = client.load_status
        return s is not None and s.phase == "ready" and client.doc.heads() == heads

    await asyncio.wait_for(client.wait_for(done), timeout)


def _full_sync_bytes(doc: NotebookDoc) -> int:
    """Size of the sync message that carries the whole ``doc`` to a peer that has nothing."""
    hello = NotebookDoc.empty().generate_sync_message(am.SyncState())
    fork, state = doc.fork(), am.SyncState()
    if hello is not None:
        fork.receive_sync_message(state, hello)
    message = fork.generate_sync_message(state)
    return len(message) if message is not None else 0


# =========================================================================== many rooms
async def many_rooms(
    rooms: int = 50, *, cells: int = 12, seed: int = 0, timeout: float = 300.0
) -> dict[str, Any]:
    """``rooms`` notebooks loading at once (one loader each) + one stalled peer in room 0."""
    baseline = peak_rss_kib()
    checks: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nbhard-") as tmp:
        paths = []
        for i in range(rooms):
            info = write_notebook(Path(tmp) / f"room{i:03d}.ipynb", cells=cells, seed=seed + i)
            paths.append(Path(os.path.realpath(info.path)))
        concurrent = [0, 0]  # loads in flight now, most ever
        release = asyncio.Event()

        async def gate(room: NotebookRoom, index: int) -> None:
            if index == 0:  # every load is past parsing before any inserts: truly at once
                concurrent[0] += 1
                concurrent[1] = max(concurrent[1], concurrent[0])
                if concurrent[0] == rooms:
                    release.set()
                await release.wait()

        target = BundledTarget(
            DaemonConfig(eviction_delay=timeout, notebook_root=Path(tmp)),
            blob_store=MemoryBlobStore(),
            before_batch=gate,
        )
        clients: list[NotebookClient] = []
        stalled_writer: asyncio.StreamWriter | None = None
        t0 = time.perf_counter()
        try:
            await target.start()
            _, stalled_writer = await target.connect(
                SLOW_BUFFER, hooks_to_client=StreamHooks(stalled=True)
            )

            async def open_one(i: int, path: Path) -> NotebookClient:
                reader, writer = await target.connect()
                client = NotebookClient(reader, writer, name=f"loader{i}")
                clients.append(client)
                await client.open(path)
                return client

            loaders = await asyncio.wait_for(
                asyncio.gather(*(open_one(i, p) for i, p in enumerate(paths))), timeout
            )
            open_silently(stalled_writer, paths[0])
            await asyncio.wait_for(asyncio.gather(*(c.wait_loaded() for c in loaders)), timeout)
            converged = 0
            for client, path in zip(loaders, paths, strict=True):
                server = _server_doc(target, path)
                await _settled(client, server, timeout)
                expected = expected_document(parse_notebook(path.read_bytes()), str(path))
                report = check_convergence(
                    server.materialize(),
                    {client.name: client.doc.materialize()},
                    expected=expected,
                )
                converged += report.ok
                if not report.ok:
                    checks.append(
                        {"name": f"{path.name} converged", "ok": False, "detail": report.describe()}
                    )
            wall = time.perf_counter() - t0
            figures = target.figures()
            loads_ok = sum(1 for r in figures.load_reports if r.ok)
            stalled_room = figures.rooms.get(str(paths[0]))
            stalled_held = stalled_room is not None and stalled_room.peers == 2
        except asyncio.TimeoutError:
            checks.append({"name": "finished", "ok": False, "detail": f"not within {timeout:g} s"})
            wall = time.perf_counter() - t0
            converged = loads_ok = 0
            stalled_held = False
        finally:
            await _teardown(clients, stalled_writer, target)
    peak = peak_rss_kib()
    ok = not checks and converged == rooms and loads_ok == rooms and concurrent[1] == rooms
    return {
        "workload": "many-rooms",
        "ok": ok and stalled_held,
        "converged": converged == rooms,
        "checks_failed": checks,
        "rooms": rooms,
        "cells_per_room": cells,
        "loads_ok": loads_ok,
        "rooms_converged": converged,
        "max_concurrent_loads": concurrent[1],
        "peers": rooms,
        "stalled_peers": 1,
        "stalled_peer_held": stalled_held,
        "wall_s": wall,
        "baseline_rss_kib": baseline,
        "peak_rss_kib": peak,
        "rss_growth_per_room_kib": (peak - baseline) / max(1, rooms),
    }


# =========================================================================== stalled loader
async def stalled_peer(
    others: int = 20, *, notebook: Path | None = None, seed: int = 0, timeout: float = 300.0
) -> dict[str, Any]:
    """The loading peer is stalled behind 4 KiB from its first byte; ``others`` join mid-load."""
    notebook = Path(os.path.realpath(notebook or default_notebook_path()))
    parsed = parse_notebook(notebook.read_bytes())
    cells = len(parsed.cells)
    batches = max(1, -(-cells // 3))
    rng = random.Random(f"stalled:{seed}")
    join_at = sorted(rng.randint(0, batches - 1) for _ in range(others))
    baseline = peak_rss_kib()
    target_box: list[BundledTarget] = []
    joiners: list[NotebookClient] = []

    async def join(room: NotebookRoom, index: int) -> None:
        for k, at in enumerate(join_at):
            if at == index:
                reader, writer = await target_box[0].connect()
                client = NotebookClient(reader, writer, name=f"joiner{k}")
                joiners.append(client)
                await asyncio.wait_for(client.open(notebook), timeout)

    target = BundledTarget(
        DaemonConfig(eviction_delay=timeout, notebook_root=notebook.parent),
        blob_store=MemoryBlobStore(),
        before_batch=join,
    )
    target_box.append(target)
    hooks = StreamHooks(stalled=True)
    checks: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    stalled_writer: asyncio.StreamWriter | None = None
    pipe_stats: Any = None
    try:
        await target.start()
        _, stalled_writer = await target.connect(SLOW_BUFFER, hooks_to_client=hooks)
        open_silently(stalled_writer, notebook)  # the first opener: it is the loader
        phase, reason = await asyncio.wait_for(target.wait_load_finished(str(notebook)), timeout)
        if phase != "ready":
            checks.append({"name": "load", "ok": False, "detail": reason or ""})
        await asyncio.wait_for(asyncio.gather(*(c.wait_loaded() for c in joiners)), timeout)
        expected = expected_document(parsed, str(notebook))
        server = _server_doc(target, notebook)
        for client in joiners:
            await _settled(client, server, timeout)
        report = check_convergence(
            server.materialize(),
            {c.name: c.doc.materialize() for c in joiners},
            expected=expected,
        )
        if not report.ok:
            checks.append({"name": "converged", "ok": False, "detail": report.describe()})
        wall = time.perf_counter() - t0
        pipe_stats = memory_transport_of(stalled_writer).incoming.statistics()
        room = target.figures().rooms.get(str(notebook))
        # Still attached: the stalled loader and every joiner.
        stalled_alive = room is not None and room.peers == len(joiners) + 1 and hooks.stalled
        full_sync = _full_sync_bytes(server)
    except asyncio.TimeoutError:
        checks.append({"name": "finished", "ok": False, "detail": f"not within {timeout:g} s"})
        wall = time.perf_counter() - t0
        stalled_alive = False
        full_sync = 0
    finally:
        await _teardown(joiners, stalled_writer, target)
    peak = peak_rss_kib()
    delivered = pipe_stats.bytes_delivered if pipe_stats is not None else None
    queued = pipe_stats.bytes_written if pipe_stats is not None else None
    # Everything the daemon ever wrote towards the stalled peer: at most its buffer plus one
    # sync message (which can never exceed a full sync of the final document) plus the small
    # reply/status frames -- not one message per batch.
    bounded = queued is not None and queued <= SLOW_BUFFER + full_sync + 1024
    return {
        "workload": "stalled-peer",
        "ok": not checks and stalled_alive and bounded and len(joiners) == others,
        "converged": not checks,
        "checks_failed": checks,
        "peers": len(joiners),
        "stalled_peers": 1,
        "stalled_peer_is_loader": True,
        "stalled_peer_still_connected": stalled_alive,
        "stalled_bytes_delivered": delivered,  # 0: nothing ever reached it
        "stalled_bytes_queued": queued,
        "stalled_queue_bounded": bounded,
        "stalled_buffer_bytes": SLOW_BUFFER,
        "full_sync_bytes": full_sync,
        "cells": cells,
        "wall_s": wall,
        "baseline_rss_kib": baseline,
        "peak_rss_kib": peak,
    }


# =========================================================================== CLI
async def run_workload(name: str, args: argparse.Namespace) -> dict[str, Any]:
    if name == "many-peers":
        return await many_peers(args.peers, seed=args.seed, timeout=args.timeout)
    if name == "many-rooms":
        return await many_rooms(args.rooms, cells=args.cells, seed=args.seed, timeout=args.timeout)
    if name == "stalled-peer":
        return await stalled_peer(args.others, seed=args.seed, timeout=args.timeout)
    raise ValueError(f"unknown workload {name!r}")


def _subprocess(name: str, args: argparse.Namespace) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "sim.harness.hardening",
        "--workload",
        name,
        "--json",
        "--peers",
        str(args.peers),
        "--rooms",
        str(args.rooms),
        "--cells",
        str(args.cells),
        "--others",
        str(args.others),
        "--seed",
        str(args.seed),
        "--timeout",
        str(args.timeout),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    try:
        data: dict[str, Any] = json.loads(proc.stdout)["workloads"][name]
    except (ValueError, KeyError) as exc:
        return {
            "workload": name,
            "ok": False,
            "checks_failed": [
                {"name": "subprocess", "ok": False, "detail": f"{exc}: {proc.stderr[-2000:]}"}
            ],
        }
    return data


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sim.harness.hardening", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--workload", choices=WORKLOADS, action="append", help="run only these")
    parser.add_argument("--peers", type=int, default=500, help="many-peers: reading peers (500)")
    parser.add_argument("--rooms", type=int, default=50, help="many-rooms: rooms (50)")
    parser.add_argument("--cells", type=int, default=12, help="many-rooms: cells per notebook")
    parser.add_argument("--others", type=int, default=20, help="stalled-peer: joiners (20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0, help="safety timeout per wait (s)")
    parser.add_argument(
        "--in-process", action="store_true", help="run every workload in this process"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser


def _print(data: dict[str, Any]) -> None:
    print(f"nbstream hardening (v{data['version']}): {'ok' if data['ok'] else 'FAILED'}")
    for name, w in data["workloads"].items():
        held = w.get("peers", "?")
        extra = f", {w['rooms']} rooms" if "rooms" in w else ""
        rss = w.get("peak_rss_kib")
        print(
            f"  {name:13s} {'ok' if w['ok'] else 'FAIL'}: {held} peers{extra} + "
            f"{w.get('stalled_peers', 0)} stalled; wall {w.get('wall_s', 0):.1f} s; "
            f"peak RSS {rss / 1024 if rss else 0:.0f} MiB"
        )
        for check in w.get("checks_failed", []):
            print(f"    FAIL {check['name']}: {check['detail'][:500]}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names: list[str] = args.workload or list(WORKLOADS)
    results: dict[str, dict[str, Any]] = {}
    if args.in_process or len(names) == 1:
        for name in names:
            results[name] = asyncio.run(run_workload(name, args))
    else:
        for name in names:  # one process each: every peak RSS is that workload's own
            results[name] = _subprocess(name, args)
    data = {
        "command": "hardening",
        "version": __version__,
        "ok": all(r.get("ok") for r in results.values()),
        "workloads": results,
    }
    if args.json:
        json.dump(data, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
    else:
        _print(data)
    return 0 if data["ok"] else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
