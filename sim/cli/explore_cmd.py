"""``nbstream explore`` (random schedules, shrunk failures, ``--shard i/N``, ``--replay``) and
``nbstream merge`` (shard results of one run into one result: :mod:`sim.cli.merge_cmd`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from sim.cli.argtypes import parse_shard
from sim.cli.output import UsageError, emit_json, finish, output_option

__all__ = ["add_explore_commands"]


def add_explore_commands(sub: argparse._SubParsersAction[Any]) -> None:
    e = sub.add_parser(
        "explore",
        help="random schedules of joins, leaves, edits, faults, stalls, partitions; "
        "every invariant checked, failures shrunk (exit 1 on a failure)",
    )
    e.add_argument("--schedules", type=int, default=100, help="how many schedules (100)")
    e.add_argument("--seed", type=int, default=0, help="schedule i is drawn from seed S+i (0)")
    e.add_argument(
        "--shard",
        metavar="I/N",
        default=None,
        help="run only the schedules whose index %% N == I (0 <= I < N)",
    )
    e.add_argument(
        "--replay",
        metavar="SCHEDULE",
        default=None,
        help="run the one encoded schedule a failure printed (ignores --schedules/--seed)",
    )
    e.add_argument("--timeout", type=float, default=60.0, help="safety timeout per wait (s)")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    output_option(e)
    e.set_defaults(func=_explore)

    m = sub.add_parser(
        "merge",
        help="merge the shard results of one run (explore --shard, or every scale --shard) "
        "into one result",
    )
    m.add_argument(
        "results", nargs="+", type=Path, metavar="FILE", help="shard result files, one kind"
    )
    m.add_argument("--json", action="store_true", help="print the merged result as JSON")
    output_option(m)
    m.set_defaults(func=_merge)


def _explore(args: argparse.Namespace) -> int:
    from sim.harness.explore import explore
    from sim.harness.schedule import ScheduleError, decode

    if args.schedules < 1:
        raise UsageError(f"--schedules must be >= 1, got {args.schedules}")
    shard = parse_shard(args.shard)
    replay = None
    if args.replay is not None:
        try:
            replay = decode(args.replay)
        except ScheduleError as exc:
            raise UsageError(f"--replay: {exc}") from None
    # The daemon logs what it does with a failed load's unsaved edits: expected, and judged by
    # the checks, so it stays out of the output.
    logger = logging.getLogger("nbstream")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        result = explore(
            args.schedules, args.seed, shard=shard, timeout=args.timeout, replay=replay
        )
    finally:
        logger.setLevel(level)
    return _report(finish(result.to_json(), args), args, result.ok)


def _report(data: dict[str, Any], args: argparse.Namespace, ok: bool) -> int:
    if args.json:
        emit_json(data)
        return 0 if ok else 1
    shard = data["shard"]
    where = (
        f", shards {','.join(map(str, shard['indices']))}/{shard['shards']}"
        if shard["shards"] > 1
        else ""
    )
    print(
        f"nbstream explore: {data['schedules']} schedules from seed {data['seed']}{where} in "
        f"{data['wall_s']:.1f} s ({data['schedules_per_s']:.1f}/s, {data['simulated_s']:.1f} s "
        f"simulated); {data['edits']} edits, edits_lost {data['edits_lost']}; "
        f"{len(data['failures'])} failed"
    )
    for f in data["failures"]:
        print(f"FAIL {f['schedule']}")
        for check in f["failed"]:
            print(f"  {check.splitlines()[0]}")
        print(f"  shrunk ({f['size']} -> {f['shrunk_size']}, {f['shrink_runs']} runs): ")
        print(f"    {f['shrunk_schedule']}")
        print(f"  replay: {f['replay']}")
    return 0 if ok else 1


def _merge(args: argparse.Namespace) -> int:
    from sim.cli.merge_cmd import run_merge

    return run_merge(args, _report)
