"""``nbstream scale``'s options and command: the size sweep of the bundled daemon's insert paths,
or of your server (``--connect`` / ``--target-cmd``), on generated or your own cells; with
``--shard I/N`` one shard of the bundled sweep (:mod:`sim.harness.scale_shards`)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sim.cli.argtypes import int_at_least, parse_shard
from sim.cli.live import Progress
from sim.cli.output import UsageError, emit_json, finish, output_option
from sim.cli.text import table
from sim.harness.scale import DEFAULT_INSTRUCTION_MAX_CELLS, DEFAULT_SIZES
from sim.harness.scale_calls import DEFAULT_CALL_MAX_CELLS
from sim.workload.generator import DEFAULT_SEED

__all__ = ["add_scale_arguments", "print_scale", "run_scale_command"]


def add_scale_arguments(p: argparse.ArgumentParser) -> None:
    sizes = "; ".join(f"{k}: {','.join(map(str, v))}" for k, v in DEFAULT_SIZES.items())
    p.add_argument(
        "--insert",
        choices=["full", "naive", "both"],
        default=None,
        help="the bundled daemon's insert path(s) to sweep (default: both; not with "
        "--connect/--target-cmd, whose server has its own)",
    )
    p.add_argument("--sizes", help=f"comma-separated cell counts (default per path: {sizes})")
    p.add_argument(
        "--repeats",
        default="2",
        help="loads per size; sizes x repeats must give at least 3 loads per path",
    )
    p.add_argument(
        "--instructions-max-cells",
        type=int_at_least(0),
        default=DEFAULT_INSTRUCTION_MAX_CELLS,
        metavar="N",
        help="count the full path's instructions under valgrind at its sizes up to N cells "
        "(0: off); the bundled daemon's exit status comes from instructions, ops and scan "
        "steps, never from time",
    )
    p.add_argument(
        "--calls-max-cells",
        type=int_at_least(0),
        default=DEFAULT_CALL_MAX_CELLS,
        metavar="N",
        help="count the full path's core calls (cProfile, lock-step: exact) at its sizes up to "
        "N cells (0: off); a steepest local exponent above 1.15 fails the run "
        "(default %(default)s)",
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the generator's seed")
    p.add_argument("--batch-size", type=int_at_least(1), default=3, help="cells per batch")
    p.add_argument(
        "--notebook",
        type=Path,
        metavar="PATH",
        help="build the sweep from this notebook's cells (the first N, then repeated in order "
        "with fresh ids) instead of the generated workload",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--connect",
        metavar="SOCKET",
        help="sweep a server already listening on this Unix socket (PROTOCOL.md); measured "
        "from outside: exit status from bytes to the peer and the time-to-full exponent",
    )
    g.add_argument(
        "--target-cmd",
        metavar="CMD",
        help="start your server with this command, {socket} replaced by a fresh socket path, "
        "stopped (SIGTERM) afterwards; measured as for --connect",
    )
    p.add_argument(
        "--target-timeout",
        type=float,
        default=30.0,
        help="seconds --target-cmd may take to listen on {socket}",
    )
    p.add_argument(
        "--shard",
        metavar="I/N",
        default=None,
        help="measure only the sweep's loads (size, repeat in run order) whose index %% N == I, "
        "unfitted (a scale-shard result); `nbstream merge` of all N fits them as one run "
        "(bundled daemon only)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    output_option(p)


def run_scale_command(args: argparse.Namespace) -> int:
    from sim.harness.external import CommandTarget, SocketTarget
    from sim.harness.scale import check_sweep, run_scale
    from sim.harness.scale_external import run_external_scale
    from sim.results.scale import ScaleResult
    from sim.workload.sweep import NotebookSweep, SweepError

    external = args.connect is not None or args.target_cmd is not None
    shard = None
    if args.shard is not None:
        shard = parse_shard(args.shard)
        if external:
            raise UsageError(
                "--shard splits the bundled daemon's sweep; with --connect/--target-cmd run "
                "the whole sweep"
            )
    if external and args.insert is not None:
        raise UsageError("--insert picks the bundled daemon's insert path; your server has its own")
    insert = args.insert or "both"
    paths: list[Any] = ["full", "naive"] if insert == "both" else [insert]
    if external:
        paths = ["full"]
    try:
        repeats = int_at_least(1)(args.repeats)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"--repeats: {exc}; see --help") from None
    sizes: dict[str, Sequence[int]] | None = None
    if args.sizes:
        try:
            chosen = [int(s) for s in args.sizes.split(",")]
        except ValueError:
            raise UsageError(
                f"--sizes must be comma-separated integers, got {args.sizes!r}; see --help"
            ) from None
        sizes = {str(p): chosen for p in paths}
    try:
        for p in paths:
            check_sweep((sizes or {}).get(p) or DEFAULT_SIZES[p], repeats, args.batch_size)
    except ValueError as exc:
        raise UsageError(f"{exc}; see --help") from None
    notebook = None
    if args.notebook is not None:
        try:
            notebook = NotebookSweep(args.notebook.expanduser())
        except SweepError as exc:
            raise UsageError(str(exc)) from None
    if shard is not None:
        return _run_shard(args, paths, sizes, repeats, notebook, shard)
    progress = Progress(label="nbstream scale", heartbeat=True)

    async def run() -> ScaleResult:
        if not external:
            return await run_scale(
                paths,
                sizes=sizes,
                repeats=repeats,
                seed=args.seed,
                batch_size=args.batch_size,
                progress=progress,
                instructions_max_cells=args.instructions_max_cells,
                notebook=notebook,
                calls_max_cells=args.calls_max_cells,
            )
        target: SocketTarget = (
            SocketTarget(Path(args.connect).expanduser())
            if args.connect is not None
            else CommandTarget(args.target_cmd, start_timeout=args.target_timeout)
        )
        async with target:
            return await run_external_scale(
                target,
                sizes=(sizes or {}).get("full"),
                repeats=repeats,
                seed=args.seed,
                batch_size=args.batch_size,
                notebook=notebook,
                progress=progress,
            )

    try:
        result = asyncio.run(run())
    finally:
        progress.done()
    data = finish(result.to_json(), args)
    if args.json:
        emit_json(data)
    else:
        _print(data, result)
    return 0 if result.ok else 1


def _run_shard(
    args: argparse.Namespace,
    paths: list[Any],
    sizes: dict[str, Sequence[int]] | None,
    repeats: int,
    notebook: Any,
    shard: tuple[int, int],
) -> int:
    from sim.harness.scale import chosen_sizes, sweep_units
    from sim.harness.scale_shards import run_scale_shard

    index, count = shard
    units = len(sweep_units(chosen_sizes(paths, sizes), repeats))
    if count > units:
        raise UsageError(
            f"--shard {index}/{count}: the sweep has {units} loads per path (sizes x repeats), "
            f"so at most {units} shards; see --help"
        )
    progress = Progress(label=f"nbstream scale shard {index}/{count}", heartbeat=True)
    try:
        result = asyncio.run(
            run_scale_shard(
                paths,
                index=index,
                shards=count,
                sizes=sizes,
                repeats=repeats,
                seed=args.seed,
                batch_size=args.batch_size,
                progress=progress,
                instructions_max_cells=args.instructions_max_cells,
                notebook=notebook,
                calls_max_cells=args.calls_max_cells,
            )
        )
    finally:
        progress.done()
    data = finish(result.to_json(), args)
    if args.json:
        emit_json(data)
        return 0
    loads = ", ".join(f"{x.path} {x.figures['cells']}" for x in result.loads)
    print(
        f"nbstream scale: shard {index}/{count} measured {len(result.loads)} loads "
        f"({loads}) in {result.elapsed_s:.1f} s; unfitted: `nbstream merge` all {count} "
        "shard files for the verdicts"
    )
    return 0


def print_scale(data: dict[str, Any], result: Any) -> None:
    """The human-readable scale result (``nbstream scale`` and the merge of its shards)."""
    _print(data, result)


def _per_batch(calls: dict[str, Any], trend: dict[str, Any] | None) -> str:
    """The per-batch verdict: from the exact call counts when counted, else from time."""
    per = calls.get("per_batch")
    if per:
        return ("flat" if per["flat"] else "GROWING") + " (calls)"
    if trend is None:
        return "absent"
    return ("flat" if trend["flat"] else "GROWING") + " (time)"


def _print(data: dict[str, Any], result: Any) -> None:
    rows = []
    for name, pr in data["paths"].items():
        trend = pr.get("batch_trend")
        counters = pr["counters"]
        rows.append(
            [
                name,
                f"{pr['exponent']:.3f}",
                f"[{pr['ci'][0]:.3f}, {pr['ci'][1]:.3f}]",
                pr["verdict"],
                counters["scan_steps"]["verdict"],
                counters["ops"]["verdict"],
                "-" if trend is None else f"{trend['robust_relative_slope']:+.2f}",
                _per_batch(pr.get("calls") or {}, trend),
            ]
        )
    heads = ["path", "exponent", "95% CI", "verdict", "scan_steps", "ops", "time trend"]
    print(table(rows, [*heads, "per batch"]))
    if "server" in data:
        print(f"measured: {data['server']}; exponent of {data['paths'][name]['exponent_of']}")
    if "notebook" in data:
        nb = data["notebook"]
        print(f"sweep built from {nb['path']} ({nb['cells']} cells, repeated with fresh ids)")
    for name, pr in data["paths"].items():
        instr = pr.get("instructions")
        if instr and instr["available"]:
            counts = ", ".join(f"{p['cells']}: {p['instructions']:,}" for p in instr["points"])
            print(
                f"{name}: instructions per load {counts}; exponent "
                f"{instr['exponent']:.3f} ({instr['verdict']}, exact: decides the exit status)"
            )
        elif instr:
            print(f"{name}: instructions not counted: {instr['reason']}")
        calls = pr.get("calls")
        if calls and calls["available"]:
            local = ", ".join(f"{x['from']}-{x['to']}: {x['exponent']:.2f}" for x in calls["local"])
            print(
                f"{name}: core calls per load, exponent {calls['exponent']:.3f} "
                f"({calls['verdict']}); local exponents {local} (exact: decides the exit status)"
            )
            per = calls.get("per_batch")
            if per:
                print(
                    f"{name}: core calls per batch at {per['cells']} cells "
                    f"{'flat' if per['flat'] else 'GROWING'} ({per['robust_relative_slope']:+.2f} "
                    f"across the load, tolerance {per['tolerance']:g}; the time trend is advisory)"
                )
            for g in calls["growing"][:3]:
                print(
                    f"  fastest-growing: {g['name']} {g['calls_before']:,} -> {g['calls']:,} "
                    f"(k {g['exponent']:.2f})"
                )
        elif calls:
            print(f"{name}: calls not counted: {calls['reason']}")
    raw = data["raw_automerge"]
    if "exponent" in raw:
        print(f"raw Automerge build+sync exponent: {raw['exponent']:.3f}")
    for name, pr in data["paths"].items():
        if "first_cell_exponent" in pr:
            lo, hi = pr["first_cell_ci"]
            print(
                f"{name}: time to first cell exponent {pr['first_cell_exponent']:.3f} "
                f"[{lo:.3f}, {hi:.3f}] (0 = independent of the notebook's size)"
            )
    for c in result.checks or ():
        print(f"[{'ok  ' if c.ok else 'FAIL'}] {c.name} — {c.detail}")
    shards = "" if result.shards is None else f", the longest of {result.shards} shards"
    print(f"({result.elapsed_s or 0.0:.0f} s{shards})")
