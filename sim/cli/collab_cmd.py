"""``nbstream sim``'s collaboration scenarios and ``--check-determinism``.

:func:`add_collab_arguments` adds the options and routes ``sim``: a collaboration scenario
(``edits``, ``edits-rollback``, ``partition``, ``typists``) runs here, any scenario with
``--check-determinism`` runs twice here, everything else goes to the plain ``sim`` command.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import CoreError
from sim.cli.output import UsageError, emit_json, finish
from sim.harness.scenarios import COLLAB_SCENARIOS, SCENARIOS
from sim.workload.generator import default_notebook_path

if TYPE_CHECKING:
    from sim.results.sim import SimResult

__all__ = ["add_collab_arguments"]

Command = Callable[[argparse.Namespace], int]


def add_collab_arguments(p: argparse.ArgumentParser, plain: Command) -> None:
    """The collaboration options of ``sim``; ``plain`` runs every other scenario."""
    p.add_argument(
        "--typists-max",
        type=int,
        default=None,
        metavar="N",
        help="typists: also sweep K = 1, 2, 4, ..., N and report the largest K whose p99 "
        "edit-to-visible latency stays under 100 ms",
    )
    p.add_argument(
        "--typist-rate", type=float, default=10.0, help="typists: edits per second each (10)"
    )
    p.add_argument(
        "--typist-duration", type=float, default=2.0, help="typists: seconds of typing (2)"
    )
    p.add_argument(
        "--clock",
        choices=["real", "virtual"],
        default="real",
        help="virtual: virtual time (looptime), blob I/O inline, seeded Automerge actors, so "
        "a run is a function of its seed (memory transport, bundled daemon only)",
    )
    p.add_argument(
        "--check-determinism",
        action="store_true",
        help="run the scenario twice with the same seed; exit 1 if the traces differ, "
        "printing the first diverging event",
    )

    def dispatch(args: argparse.Namespace) -> int:
        collab = args.scenario in COLLAB_SCENARIOS or args.clock == "virtual"
        if args.workers is not None and (collab or args.check_determinism):
            raise UsageError(
                "--workers runs the load scenarios (" + ", ".join(sorted(SCENARIOS)) + ") "
                "on real time: drop --workers, --clock virtual or --check-determinism"
            )
        if args.check_determinism:
            return _check_determinism(args)
        if args.scenario in COLLAB_SCENARIOS or args.clock == "virtual":
            return _report(_run(args), args)
        return plain(args)

    p.set_defaults(func=dispatch)


def _notebook(args: argparse.Namespace) -> Path:
    if args.notebook is None:
        return default_notebook_path()
    path = Path(args.notebook).expanduser()
    if not path.is_file():
        raise UsageError(f"no such notebook file: {args.notebook}")
    return path.resolve()


def _run(args: argparse.Namespace, trace: list[str] | None = None) -> SimResult:
    """One run of ``args.scenario`` against the bundled daemon; ``trace`` gets its events."""
    if args.connect is not None or args.target_cmd is not None:
        raise UsageError(
            f"--scenario {args.scenario} and --check-determinism need the bundled daemon: "
            "drop --connect/--target-cmd"
        )
    if args.clock == "virtual" and args.transport != "memory":
        raise UsageError(
            "--clock virtual runs over the memory transport only (a kernel socket "
            "delivers when the kernel does)"
        )
    if args.typists_max is not None and args.typists_max < 1:
        raise UsageError(f"--typists-max must be >= 1, got {args.typists_max}")
    notebook = _notebook(args)
    common: dict[str, Any] = {
        "seed": args.seed,
        "transport": args.transport,
        "batch_size": args.batch_size,
        "insert_path": args.insert,
        "timeout": args.timeout,
    }
    try:
        from sim.harness.virtual import run

        coro = _run_async(args, notebook, common, trace)
        result = run(coro, clock=args.clock, seed=args.seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if trace is not None and not trace:  # a scenario of the plain runner: its result's trace
        from sim.harness.trace import result_trace

        trace.extend(result_trace(result))
    return result


async def _run_async(
    args: argparse.Namespace, notebook: Path, common: dict[str, Any], trace: list[str] | None
) -> SimResult:
    name = args.scenario
    if name == "typists":
        from sim.harness.typists import run_typists

        return await run_typists(
            notebook,
            peers=args.peers,
            rate_hz=args.typist_rate,
            duration_s=args.typist_duration,
            typists_max=args.typists_max,
            trace_out=trace,
            **common,
        )
    if name in COLLAB_SCENARIOS:
        from sim.harness.collab import run_collab

        return await run_collab(name, notebook, peers=args.peers, trace_out=trace, **common)
    from core.ipynb import parse_notebook
    from sim.harness.runner import run_scenario
    from sim.harness.scenarios import build_scenario

    try:
        cells = len(parse_notebook(notebook.read_bytes()).cells)
    except CoreError as exc:
        raise UsageError(f"{notebook}: {exc}") from None
    scenario = build_scenario(
        name,
        seed=args.seed,
        batches=-(-cells // args.batch_size),
        peers=args.peers,
        fail_at_batch=args.fail_at,
    )
    return await run_scenario(scenario, notebook, joins=args.joins, **common)


def _check_determinism(args: argparse.Namespace) -> int:
    """Run twice; compare the traces (the collaboration scenarios' own event traces, otherwise
    the trace of the result: loads, batches, every frame's size at every peer, checks)."""
    from sim.harness.trace import first_difference, trace_sha256

    if args.scenario not in SCENARIOS and args.scenario not in COLLAB_SCENARIOS:
        raise UsageError(f"unknown scenario {args.scenario!r}")
    runs = []
    for _ in range(2):
        lines: list[str] = []
        result = _run(args, lines)
        runs.append((result, lines, trace_sha256(lines)))
    (first, a, sha_a), (_, b, sha_b) = runs
    diff = first_difference(a, b) if sha_a != sha_b else None
    data = {
        "scenario": args.scenario,
        "seed": args.seed,
        "clock": args.clock,
        "identical": diff is None,
        "trace_sha256": [sha_a, sha_b],
        "events": [len(a), len(b)],
        "first_difference": None
        if diff is None
        else {"index": diff[0], "first_run": diff[1], "second_run": diff[2]},
        "ok": first.ok and runs[1][0].ok,
    }
    data = finish(data, args)
    if args.json:
        emit_json(data)
    else:
        print(
            f"nbstream sim --check-determinism — scenario {args.scenario!r}, seed {args.seed}, "
            f"clock {args.clock}"
        )
        print(f"run 1: {sha_a} ({len(a)} events)\nrun 2: {sha_b} ({len(b)} events)")
        if diff is None:
            print("identical: yes")
        else:
            print(f"identical: NO — first diverging event #{diff[0]}:")
            print(f"  run 1: {diff[1]}\n  run 2: {diff[2]}")
    return 0 if diff is None and data["ok"] else 1


def _report(result: SimResult, args: argparse.Namespace) -> int:
    data = finish(result.to_json(), args)
    if args.json:
        emit_json(data)
        return 0 if result.ok else 1
    nb = data["notebook"]
    print(f"nbstream sim — scenario {data['scenario']!r}: {COLLAB_SCENARIOS[data['scenario']]}")
    print(f"notebook: {nb['path']} ({nb['cells']} cells), seed {data['seed']}, {data['transport']}")
    for p in data["peers"]:
        print(f"  peer {p['name']:<10} frames in {p['frames_in']:>5}, converged {p['converged']}")
    e = data.get("edits")
    if e is not None:
        print(
            f"edits: {e['made']} made, {e['acknowledged']} acknowledged, {e['survived']} in the "
            f"final document, {e['removed_by_delete']} removed by a later delete, "
            f"{e['rolled_back']} rolled back with the load's cells; edits_lost {e['lost']}"
        )
    t = data.get("typists")
    if t is not None:
        print(
            f"typists: K={t['k']} at {t['rate_hz']:g}/s for {t['duration_s']:g} s: "
            f"edit-to-visible p50 {t['p50_s'] * 1e3:.1f} ms, p99 {t['p99_s'] * 1e3:.1f} ms "
            f"over {t['samples']} samples"
        )
        for pt in t["sweep"]:
            print(
                f"  K={pt['k']:<4} p50 {pt['p50_s'] * 1e3:7.1f} ms  p99 {pt['p99_s'] * 1e3:7.1f} ms"
                f"  ({pt['samples']} samples)"
            )
        if t["sweep"]:
            print(f"largest K with p99 < 100 ms: {t['max_k_under_limit']}")
    for check in data["checks"]:
        mark = "ok  " if check["ok"] else "FAIL"
        detail = check["detail"] if not check["ok"] else check["detail"].split("\n")[0]
        print(f"[{mark}] {check['name']}" + (f" — {detail}" if detail else ""))
    print(f"trace_sha256: {data.get('trace_sha256')}")
    print(f"converged: {'yes' if data['converged'] else 'NO'}")
    return 0 if result.ok else 1
