"""The ``nbstream`` command.

Exit codes (every subcommand): 0 ok, 1 a check failed (divergence, regression, missed verdict),
2 bad usage or bad input (one line on stderr saying why).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from core import __version__
from core.errors import CoreError
from sim.cli.collab_cmd import add_collab_arguments
from sim.gate.command import add_gate_arguments, run_gate_command
from sim.harness.scenarios import ALL_SCENARIOS
from sim.report.command import add_report_arguments, run_report_command

if TYPE_CHECKING:
    from sim.harness.external import SocketTarget
    from sim.results.profile import ProfileResult
    from sim.results.sim import SimResult
from sim.workload.generator import (
    DEFAULT_CELLS,
    DEFAULT_SEED,
    default_notebook_path,
    write_notebook,
)

__all__ = ["main"]


class UsageError(Exception):
    """Bad usage or bad input: exit 2 with this one-line message."""


# --------------------------------------------------------------------------- output helpers
class Progress:
    """A live one-line progress display on a terminal; silent otherwise (CI logs stay clean)."""

    def __init__(self, stream: TextIO = sys.stderr, *, force: bool = False) -> None:
        self.stream = stream
        self.enabled = force or stream.isatty()
        self._last = 0.0

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.05:
            return
        self._last = now
        self.stream.write(f"\r\x1b[K{message}")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append(
            "  ".join(
                str(c).rjust(w) if i else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def _emit_json(data: dict[str, Any]) -> None:
    json.dump(data, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


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
    progress.done()
    data = result.to_json()
    if args.json:
        _emit_json(data)
    else:
        _print_sim(data, scenario.description)
    return 0 if result.ok else 1


def _print_sim(data: dict[str, Any], description: str) -> None:
    nb = data["notebook"]
    print(f"nbstream sim — scenario {data['scenario']!r}: {description}")
    print(f"notebook: {nb['path']} ({nb['cells']} cells, {nb['bytes'] / 1e6:.2f} MB)")
    print(
        f"transport {data['transport']}, insert path {data['insert_path']}, "
        f"batch size {data['batch_size']}, seed {data['seed']}\n"
    )
    peers = [p["name"] for p in data["peers"]][:6]
    rows = []
    for b in data["batches"]:
        lat = b["latency_s"]
        rows.append(
            [
                str(b["index"]),
                str(b["cells"]),
                _ms(b["manifest_s"]),
                _ms(b["insert_s"]),
                *(_ms(lat.get(p)) for p in peers),
            ]
        )
    print("per-batch latency (ms): server phases, then batch start → cells at each peer")
    print(_table(rows, ["batch", "cells", "manifest", "insert", *peers]))
    print()
    prow = [
        [
            p["name"],
            p["behaviour"],
            "-" if p["joined_at_batch"] is None else str(p["joined_at_batch"]),
            _ms(p["time_to_first_cell_s"]),
            _ms(p["time_to_full_s"]),
            str(p["frames_in"]),
            "yes" if p["converged"] else "no",
        ]
        for p in data["peers"]
    ]
    print(
        _table(
            prow, ["peer", "behaviour", "joined", "first cell ms", "full ms", "frames", "converged"]
        )
    )
    ph = data["phases"]
    if ph:
        print("\nphases (ms): " + ", ".join(f"{k[:-2]} {_ms(v)}" for k, v in ph.items()))
    else:
        print("\nphases: absent (the server does not answer `statistics`, PROTOCOL.md 6.7)")
    print(
        f"raw Automerge build+sync of the same cells: {_ms(data['raw_automerge_s'])} ms; "
        f"daemon time-to-full / raw = {data['daemon_overhead_ratio']:.2f}x"
    )
    if data.get("peak_rss_kib") is not None:
        print(f"peak RSS of the run (daemon and peers): {data['peak_rss_kib'] / 1024:.1f} MiB")
    c = data["counters"]
    if c:
        print("counters: " + ", ".join(f"{k} {v}" for k, v in c.items()))
    targets = data.get("targets", {})
    if "ttfc_over_full" in targets:
        t = targets["ttfc_over_full"]
        trend = targets.get("batch_latency_trend")
        line = (
            f"targets: {t['peer']}'s first cell at {100 * t['value']:.0f}% of its time to full "
            f"(target <= 25%: {'met' if t['met'] else 'MISSED'})"
        )
        if trend is not None:
            line += (
                f"; its per-batch latency trend {trend['robust_relative_slope']:+.2f} over the "
                f"load ({'flat' if trend['flat'] else 'NOT flat'})"
            )
        print(line)
    print()
    for check in data["checks"]:
        mark = "ok  " if check["ok"] else "FAIL"
        detail = check["detail"] if not check["ok"] else check["detail"].split("\n")[0]
        print(f"[{mark}] {check['name']}" + (f" — {detail}" if detail else ""))
    print(f"\nconverged: {'yes' if data['converged'] else 'NO'}")


# --------------------------------------------------------------------------- scale
def _cmd_scale(args: argparse.Namespace) -> int:
    from sim.harness.scale import run_scale

    paths: list[Any] = ["full", "naive"] if args.insert == "both" else [args.insert]
    sizes: dict[str, Sequence[int]] | None = None
    if args.sizes:
        try:
            chosen = [int(s) for s in args.sizes.split(",")]
        except ValueError:
            raise UsageError(
                f"--sizes must be comma-separated integers, got {args.sizes!r}"
            ) from None
        if len(set(chosen)) < 2 or min(chosen) < 1:
            raise UsageError("--sizes needs at least two distinct positive sizes")
        sizes = {str(p): chosen for p in paths}
    progress = Progress(force=not args.json)
    result = asyncio.run(
        run_scale(
            paths,
            sizes=sizes,
            repeats=args.repeats,
            seed=args.seed,
            batch_size=args.batch_size,
            progress=progress,
        )
    )
    progress.done()
    data = result.to_json()
    if args.json:
        _emit_json(data)
    else:
        rows = []
        for name, pr in data["paths"].items():
            trend = pr["batch_trend"]
            rows.append(
                [
                    name,
                    f"{pr['exponent']:.3f}",
                    f"[{pr['ci'][0]:.3f}, {pr['ci'][1]:.3f}]",
                    pr["verdict"],
                    pr["counters"]["scan_steps"]["verdict"],
                    pr["counters"]["ops"]["verdict"],
                    f"{trend['robust_relative_slope']:+.2f}",
                    "flat" if trend["flat"] else "GROWING",
                ]
            )
        print(
            _table(
                rows,
                [
                    "path",
                    "exponent",
                    "95% CI",
                    "verdict",
                    "scan_steps",
                    "ops",
                    "batch trend",
                    "per batch",
                ],
            )
        )
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
        print(f"({result.elapsed_s or 0.0:.0f} s)")
    return 0 if result.ok else 1


# --------------------------------------------------------------------------- profile
def _cmd_profile(args: argparse.Namespace) -> int:
    from core.ipynb import parse_notebook
    from sim.harness.profile import PHASES, profile_notebook

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
    data = result.to_json()
    if args.json:
        _emit_json(data)
    elif not data["phases"]:
        nb = data["notebook"]
        print(
            f"profile of {nb['path']} ({nb['cells']} cells) on {data.get('server')}, "
            f"median of {data['runs']} runs: phases absent (the server does not answer "
            "`statistics`, PROTOCOL.md 6.7)"
        )
        print(
            f"time to first cell {_ms(data['time_to_first_cell_s'])} ms, "
            f"time to full {_ms(data['time_to_full_s'])} ms, raw Automerge "
            f"{_ms(data['raw_automerge_s'])} ms"
        )
    else:
        ph = data["phases"]
        total = ph["total_s"] or 1.0
        names = {
            "read_s": "read",
            "parse_s": "parse",
            "manifest_s": "manifests/blobs",
            "insert_s": "insert (add_cell_full)",
            "sync_gen_s": "sync generation",
            "network_s": "network (write+drain)",
            "total_s": "load total",
        }
        rows = [[names[k], _ms(ph[k]), f"{100 * ph[k] / total:.0f}%"] for k in PHASES]
        nb = data["notebook"]
        print(
            f"profile of {nb['path']} ({nb['cells']} cells, {nb['bytes'] / 1e6:.2f} MB), "
            f"median of {data['runs']} runs"
        )
        print(_table(rows, ["phase", "ms", "of load"]))
        print(
            f"time to first cell {_ms(data['time_to_first_cell_s'])} ms, "
            f"time to full {_ms(data['time_to_full_s'])} ms, raw Automerge "
            f"{_ms(data['raw_automerge_s'])} ms"
        )
        print("note: sync generation and network overlap the load; they are not additive.")
    return 0 if result.ok else 1


# --------------------------------------------------------------------------- generate
def _cmd_generate(args: argparse.Namespace) -> int:
    if args.cells < 0:
        raise UsageError("--cells must be >= 0")
    info = write_notebook(args.out, cells=args.cells, seed=args.seed)
    print(
        f"wrote {info.path}: {info.cells} cells, {info.images} images, {info.bytes} bytes, "
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
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbstream",
        description="Benchmark-and-simulation harness around a progressive notebook sync core.",
    )
    parser.add_argument("--version", action="version", version=f"nbstream {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
            help="seconds --target-cmd may take to listen on {socket} (30)",
        )

    def common_load(p: argparse.ArgumentParser) -> None:
        p.add_argument("--batch-size", type=_positive, default=3, help="cells per batch (3)")
        p.add_argument(
            "--insert",
            choices=["full", "naive"],
            default="full",
            help="insert path: full (add_cell_full) or naive (scanning 4-call path)",
        )

    p = sub.add_parser("sim", help="simulate peers loading a notebook (the main job)")
    p.add_argument("notebook", nargs="?", help="a .ipynb (default: the bundled reference notebook)")
    p.add_argument("--scenario", choices=sorted(ALL_SCENARIOS), default="default")
    p.add_argument(
        "--peers", type=_positive, default=None, help="number of peers (scenario-specific)"
    )
    p.add_argument("--transport", choices=["memory", "socketpair", "unix"], default="memory")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--fail-at", type=int, default=None, help="failure scenario: batch to fail at")
    p.add_argument(
        "--joins",
        choices=["hook", "progress"],
        default="hook",
        help="what times joins and leaves: the bundled daemon's in-process batch hook (exact; "
        "needed by the failure scenario) or the load-status progress a peer receives (hook)",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="safety timeout per wait (s)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    common_load(p)
    external_target(p)
    p.set_defaults(func=_cmd_sim)
    add_collab_arguments(p, _cmd_sim)  # edits, edits-rollback, partition, typists; determinism

    p = sub.add_parser("scale", help="size sweep: detect O(n²) loads (exponent per insert path)")
    p.add_argument("--insert", choices=["full", "naive", "both"], default="both")
    p.add_argument("--sizes", help="comma-separated cell counts (default per path)")
    p.add_argument("--repeats", type=_positive, default=2)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--batch-size", type=_positive, default=3)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_scale)

    p = sub.add_parser("profile", help="profile one load by phase")
    p.add_argument("notebook", nargs="?", help="a .ipynb (default: the bundled reference notebook)")
    p.add_argument("--runs", type=_positive, default=3)
    p.add_argument("--json", action="store_true")
    external_target(p)
    common_load(p)
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser("generate", help="write a deterministic reference-shaped notebook")
    p.add_argument("--cells", type=int, default=DEFAULT_CELLS)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--out", required=True, type=Path)
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
    p.add_argument("notebook")
    p.add_argument("--socket", help="daemon socket (default as for serve)")
    p.add_argument("--export", type=Path, help="write the synced notebook as .ipynb")
    p.add_argument("--json", action="store_true")
    p.add_argument("--timeout", type=float, default=120.0)
    p.set_defaults(func=_cmd_open)

    p = sub.add_parser("gate", help="CI performance gate: compare the working tree with a base ref")
    add_gate_arguments(p)
    p.set_defaults(func=run_gate_command)

    p = sub.add_parser("report", help="write reports/index.html and figures from result JSON files")
    add_report_arguments(p)
    p.set_defaults(func=run_report_command)
    return parser


def _external_target(args: argparse.Namespace) -> SocketTarget | None:
    """The server of ``--connect`` / ``--target-cmd``; None for the bundled daemon."""
    from sim.harness.external import CommandTarget, SocketTarget

    if args.connect is not None:
        return SocketTarget(Path(args.connect).expanduser())
    if args.target_cmd is not None:
        return CommandTarget(args.target_cmd, start_timeout=args.target_timeout)
    return None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except UsageError as exc:
        print(f"nbstream {args.command}: {exc}", file=sys.stderr)
        return 2
    except CoreError as exc:
        print(f"nbstream {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nbstream {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
