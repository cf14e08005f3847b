"""The ``nbstream`` command.

Exit codes (every subcommand): 0 ok, 1 a check failed (divergence, regression, missed verdict),
2 bad usage or bad input (one line on stderr saying why).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from core import __version__
from core.errors import CoreError
from sim.cli.argtypes import int_at_least
from sim.cli.collab_cmd import add_collab_arguments
from sim.cli.explore_cmd import add_explore_commands
from sim.cli.live import Progress
from sim.cli.output import UsageError, emit_json, finish, output_option
from sim.cli.scale_cmd import add_scale_arguments, run_scale_command
from sim.cli.text import count, print_profile, print_sim, size
from sim.gate.command import add_gate_arguments, run_gate_command
from sim.harness.scenarios import ALL_SCENARIOS
from sim.harness.watchdog import HarnessStuck
from sim.report.command import add_report_arguments, run_report_command

if TYPE_CHECKING:
    from sim.harness.external import SocketTarget
    from sim.harness.scenarios import Scenario
    from sim.results.profile import ProfileResult
    from sim.results.sim import SimResult
from sim.workload.generator import (
    DEFAULT_CELLS,
    DEFAULT_SEED,
    default_notebook_path,
    write_notebook,
)

__all__ = ["main"]

POSITIVE = int_at_least(1)


def _notebook_arg(value: str | None) -> Path:
    if value is None:
        return default_notebook_path()
    path = Path(value).expanduser()
    if not path.exists():
        raise UsageError(f"no such notebook: {value}")
    if not path.is_file():
        raise UsageError(f"not a file: {value}")
    return path.resolve()


# --------------------------------------------------------------------------- sim
def _cmd_sim(args: argparse.Namespace) -> int:
    from core.ipynb import parse_notebook
    from sim.harness.external import fresh_copy
    from sim.harness.runner import run_scenario
    from sim.harness.scenarios import build_scenario

    notebook = _notebook_arg(args.notebook)
    try:
        cells = len(parse_notebook(notebook.read_bytes()).cells)
    except CoreError as exc:
        raise UsageError(f"{notebook}: {exc}") from None
    batches = -(-cells // args.batch_size)
    scenario = build_scenario(
        args.scenario, seed=args.seed, batches=batches, peers=args.peers, fail_at_batch=args.fail_at
    )
    external = args.connect is not None or args.target_cmd is not None
    if external and scenario.fail_at_batch is not None:
        raise UsageError(
            "an injected fault needs the bundled daemon (it is raised inside it): "
            "drop --connect/--target-cmd or pick another scenario"
        )
    if args.joins == "progress" and scenario.fail_at_batch is not None:
        raise UsageError("--joins progress cannot inject a fault: use --joins hook")
    progress = Progress()
    if args.workers is not None:
        return _sim_workers(args, scenario, notebook, progress)

    async def run() -> SimResult:
        target = _external_target(args)
        if target is None:
            return await run_scenario(
                scenario,
                notebook,
                transport=args.transport,
                batch_size=args.batch_size,
                insert_path=args.insert,
                seed=args.seed,
                timeout=args.timeout,
                progress=progress,
                joins=args.joins,
            )
        async with target:
            with fresh_copy(notebook, "sim") as copy:
                return await run_scenario(
                    scenario,
                    copy,
                    batch_size=args.batch_size,
                    seed=args.seed,
                    timeout=args.timeout,
                    progress=progress,
                    target=target,
                    shown_as=notebook,
                )

    result = asyncio.run(run())
    return _report_sim(result, args, scenario, progress)


def _report_sim(
    result: SimResult, args: argparse.Namespace, scenario: Scenario, progress: Progress
) -> int:
    """Print (or emit as JSON) and save a sim result; 0 when every check passed."""
    progress.done()
    data = finish(result.to_json(), args)
    if args.json:
        emit_json(data)
    else:
        print_sim(data, scenario.description)
    return 0 if result.ok else 1


def _sim_workers(
    args: argparse.Namespace, scenario: Scenario, notebook: Path, progress: Progress
) -> int:
    """``sim --workers N``: the peers in N processes against the bundled daemon's socket, or
    the ``--connect`` / ``--target-cmd`` server's."""
    from sim.harness.external import fresh_copy
    from sim.harness.multi_runner import WorkerFailed, run_scenario_workers

    if args.transport == "socketpair":
        raise UsageError("--workers connects over the daemon's Unix socket: drop --transport")
    external = _external_target(args)
    if args.joins == "progress" and external is None:
        raise UsageError("--workers times joins by the bundled daemon's batch hook: drop --joins")

    async def run() -> SimResult:
        if external is None:
            return await run_scenario_workers(
                scenario,
                notebook,
                workers=args.workers,
                batch_size=args.batch_size,
                insert_path=args.insert,
                seed=args.seed,
                timeout=args.timeout,
                progress=progress,
            )
        async with external:
            with fresh_copy(notebook, "sim") as copy:
                return await run_scenario_workers(
                    scenario,
                    copy,
                    workers=args.workers,
                    batch_size=args.batch_size,
                    seed=args.seed,
                    timeout=args.timeout,
                    progress=progress,
                    target=external,
                    shown_as=notebook,
                )

    try:
        result = asyncio.run(run())
    except WorkerFailed as exc:
        progress.done()
        print(f"nbstream sim: {exc}", file=sys.stderr)
        return 1
    return _report_sim(result, args, scenario, progress)


# --------------------------------------------------------------------------- profile
def _cmd_profile(args: argparse.Namespace) -> int:
    from core.ipynb import parse_notebook
    from sim.harness.profile import profile_notebook

    notebook = _notebook_arg(args.notebook)
    try:
        parse_notebook(notebook.read_bytes())
    except CoreError as exc:
        raise UsageError(f"{notebook}: {exc}") from None

    async def run() -> ProfileResult:
        target = _external_target(args)
        if target is None:
            return await profile_notebook(
                notebook, runs=args.runs, batch_size=args.batch_size, insert_path=args.insert
            )
        async with target:
            return await profile_notebook(
                notebook, runs=args.runs, batch_size=args.batch_size, target=target
            )

    result = asyncio.run(run())
    data = finish(result.to_json(), args)
    if args.json:
        emit_json(data)
    else:
        print_profile(data)
    return 0 if result.ok else 1


# --------------------------------------------------------------------------- generate
def _cmd_generate(args: argparse.Namespace) -> int:
    if args.cells < 0:
        raise UsageError("--cells must be >= 0")
    out = args.out.expanduser()
    if not out.parent.is_dir():
        raise UsageError(f"--out {args.out}: no such directory {out.parent} (create it first)")
    umask = os.umask(0)
    os.umask(umask)
    info = write_notebook(out, cells=args.cells, seed=args.seed, mode=0o666 & ~umask)
    print(
        f"wrote {info.path}: {count(info.cells, 'cell')}, {count(info.images, 'image')}, "
        f"{size(info.bytes)}, "
        f"sha256 {info.sha256} (generator v{info.generator_version})"
    )
    return 0


# --------------------------------------------------------------------------- serve / open
def _cmd_serve(args: argparse.Namespace) -> int:
    from core.daemon import Daemon, DaemonConfig, default_socket_path

    config = DaemonConfig(
        socket_path=Path(args.socket) if args.socket else default_socket_path(),
        blob_root=Path(args.blob_root) if args.blob_root else None,
        notebook_root=Path(args.root) if args.root else None,
        batch_size=args.batch_size,
        insert_path=args.insert,
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Daemon(config) as daemon:
            print(
                f"nbstream {__version__} serving on {config.socket_path} "
                f"(notebooks under {daemon.notebook_root})",
                flush=True,
            )
            await stop.wait()
        print("nbstream: stopped", flush=True)

    try:
        asyncio.run(serve())
    except CoreError as exc:
        raise UsageError(str(exc)) from None
    return 0


def _cmd_open(args: argparse.Namespace) -> int:
    from sim.cli.open_cmd import open_notebook

    return asyncio.run(open_notebook(args))


# --------------------------------------------------------------------------- parser
_SUBPARSERS: dict[str, argparse.ArgumentParser] = {}  # command -> its parser (build_parser)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help within 100 columns; ``(default: X)`` on every option that has a default."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=min(100, shutil.get_terminal_size((100, 24)).columns))

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        if action.help is not None and "default" in action.help:  # it says its default itself
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """A usage error is one line and exit 2: ``nbstream sim: <what> (see nbstream sim --help)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nbstream",
        description="Benchmark-and-simulation harness around a progressive notebook sync core.",
    )
    parser.add_argument("--version", action="version", version=f"nbstream {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    def external_target(p: argparse.ArgumentParser) -> None:
        g = p.add_mutually_exclusive_group()
        g.add_argument(
            "--connect",
            metavar="SOCKET",
            help="drive a server already listening on this Unix socket (any server that speaks "
            "PROTOCOL.md; --batch-size then says how many cells it puts in a batch)",
        )
        g.add_argument(
            "--target-cmd",
            metavar="CMD",
            help="start your server with this command, {socket} replaced by a fresh socket path; "
            "stopped (SIGTERM) afterwards",
        )
        p.add_argument(
            "--target-timeout",
            type=float,
            default=30.0,
            help="seconds --target-cmd may take to listen on {socket}",
        )

    def common_load(p: argparse.ArgumentParser) -> None:
        p.add_argument("--batch-size", type=POSITIVE, default=3, help="cells per batch")
        p.add_argument(
            "--insert",
            choices=["full", "naive"],
            default="full",
            help="insert path: full (add_cell_full) or naive (scanning 4-call path)",
        )

    p = sub.add_parser("sim", help="simulate peers loading a notebook (the main job)")
    p.add_argument("notebook", nargs="?", help="a .ipynb (default: the bundled reference notebook)")
    p.add_argument(
        "--scenario",
        choices=sorted(ALL_SCENARIOS),
        default="default",
        metavar="NAME",
        help="who joins, leaves, fails, edits: " + ", ".join(sorted(ALL_SCENARIOS)),
    )
    p.add_argument(
        "--peers", type=POSITIVE, default=None, help="number of peers (scenario-specific)"
    )
    p.add_argument(
        "--transport",
        choices=["memory", "socketpair", "unix"],
        default="memory",
        help="how peers reach the bundled daemon",
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of every random choice")
    p.add_argument("--fail-at", type=int, default=None, help="failure scenario: batch to fail at")
    p.add_argument(
        "--joins",
        choices=["hook", "progress"],
        default="hook",
        help="what times joins and leaves: the bundled daemon's in-process batch hook (exact; "
        "needed by the failure scenario) or the load-status progress a peer receives",
    )
    p.add_argument(
        "--workers",
        type=POSITIVE,
        default=None,
        metavar="N",
        help="run the peers in N worker processes (each its own event loop) against the "
        "daemon's Unix socket (the bundled one, or --connect/--target-cmd); results merged "
        "into one (key workers)",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="safety timeout per wait (s)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    common_load(p)
    external_target(p)
    output_option(p)
    p.set_defaults(func=_cmd_sim)
    add_collab_arguments(p, _cmd_sim)  # edits, edits-rollback, partition, typists; determinism

    add_explore_commands(sub)  # explore, merge

    p = sub.add_parser("scale", help="size sweep: detect O(n²) loads (exponent per insert path)")
    add_scale_arguments(p)
    p.set_defaults(func=run_scale_command)

    p = sub.add_parser("profile", help="profile one load by phase")
    p.add_argument("notebook", nargs="?", help="a .ipynb (default: the bundled reference notebook)")
    p.add_argument("--runs", type=POSITIVE, default=3, help="loads to take the median of")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    external_target(p)
    output_option(p)
    common_load(p)
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser("generate", help="write a deterministic reference-shaped notebook")
    p.add_argument("--cells", type=int, default=DEFAULT_CELLS, help="cells to generate")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the generator's seed")
    p.add_argument(
        "--out", required=True, type=Path, help="the .ipynb to write (its directory must exist)"
    )
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("serve", help="run the daemon on a Unix socket")
    p.add_argument(
        "--socket",
        help="socket path (default: $XDG_RUNTIME_DIR/nbstream/daemon.sock "
        "or ~/.cache/nbstream/daemon.sock)",
    )
    p.add_argument("--blob-root", help="blob store directory (default: next to the socket)")
    p.add_argument(
        "--root",
        help="notebook root: clients may open and save only .ipynb files under it "
        "(default: the current directory)",
    )
    common_load(p)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("open", help="open a notebook through a running daemon")
    p.add_argument("notebook", help="the .ipynb to open (the daemon reads it)")
    p.add_argument("--socket", help="daemon socket (default as for serve)")
    p.add_argument("--export", type=Path, help="write the synced notebook as .ipynb")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the load")
    p.set_defaults(func=_cmd_open)

    p = sub.add_parser("gate", help="CI performance gate: compare the working tree with a base ref")
    add_gate_arguments(p)
    p.set_defaults(func=run_gate_command)

    p = sub.add_parser("schema", help="print the JSON Schema (draft 2020-12) of a result kind")
    p.add_argument(
        "kind",
        choices=["sim", "profile", "scale", "gate", "gate-self-test", "explore", "scale-shard"],
        help="result kind",
    )
    p.set_defaults(func=_cmd_schema)

    p = sub.add_parser(
        "compare",
        help="compare two saved results of the same kind (exit 0 ok, 1 regression, 2 bad input)",
    )
    from sim.report.compare import add_compare_arguments

    add_compare_arguments(p)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("report", help="write reports/index.html and figures from result JSON files")
    add_report_arguments(p)
    p.set_defaults(func=run_report_command)
    _SUBPARSERS.clear()
    _SUBPARSERS.update(sub.choices)
    return parser


def _cmd_schema(args: argparse.Namespace) -> int:
    from sim.results.schemas import schema_for

    emit_json(schema_for(args.kind))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from sim.report.compare import CompareError, run_compare_command

    try:
        return run_compare_command(args)
    except CompareError as exc:
        raise UsageError(str(exc)) from None


def _external_target(args: argparse.Namespace) -> SocketTarget | None:
    """The server of ``--connect`` / ``--target-cmd``; None for the bundled daemon."""
    from sim.harness.external import CommandTarget, SocketTarget

    if args.connect is not None:
        return SocketTarget(Path(args.connect).expanduser())
    if args.target_cmd is not None:
        return CommandTarget(args.target_cmd, start_timeout=args.target_timeout)
    return None


def _with_help(message: str, command: str) -> str:
    """An error about an option (``--sizes must ...``) points at the help, as argparse's do."""
    if message.startswith("--") and "--help" not in message:
        return f"{message} (see nbstream {command} --help)"
    return message


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's own parser: "nbstream sim: ... (see nbstream sim --help)"
        _SUBPARSERS[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        code: int = args.func(args)
    except UsageError as exc:
        print(f"nbstream {args.command}: {_with_help(str(exc), args.command)}", file=sys.stderr)
        return 2
    except CoreError as exc:
        print(f"nbstream {args.command}: {exc}", file=sys.stderr)
        return 2
    except HarnessStuck as exc:  # a harness bug, with what was pending: a failed check
        print(f"nbstream {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"nbstream {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
