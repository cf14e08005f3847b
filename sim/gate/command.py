"""The CI performance gate: ``nbstream gate [--base REF]`` and ``nbstream gate --self-test``.

The working tree (the current checkout, uncommitted changes included) is compared with a base
git ref checked out in a temporary ``git worktree``, on the same machine in the same run. Each
side is measured by its own long-lived subprocess (``sim/gate/worker.py`` of *this* tree, run as
a file with ``PYTHONPATH`` set to the side's tree), fed one JSON command per line, so samples can
be interleaved base/candidate/candidate/base/... at no interpreter-start cost. Both sides load
the same notebook files, generated once by :mod:`sim.workload.generator`.

Judgement (see :mod:`sim.analysis.stats`): paired time ratios (CI of the median ratio against a
threshold, never a stored baseline), deterministic counters (any increase fails) and the fitted
time exponent over a small size sweep. Exit status: 0 pass, 1 regression, 2 error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sim.cli.argtypes import float_at_least, int_at_least
from sim.gate.measure import compare, measure_instructions
from sim.gate.self_test import SELF_TEST_CELLS, SELF_TEST_PAIRS, run_self_test, self_test_settings
from sim.gate.settings import (
    DEFAULT_BASES,
    DEFAULT_BUDGET_S,
    DEFAULT_CELLS,
    DEFAULT_COUNTER_TOLERANCE,
    DEFAULT_EXPONENT_TOLERANCE,
    DEFAULT_INSTRUCTION_TOLERANCE,
    DEFAULT_LARGE_CELLS,
    DEFAULT_MEMORY_TOLERANCES,
    DEFAULT_PAIRS,
    DEFAULT_TARGET_TIMEOUT_S,
    DEFAULT_TIME_THRESHOLD,
    GateSettings,
    Progress,
)
from sim.gate.workers import BudgetExhausted, GateError, Worker, budget, workers
from sim.gate.workload import Workload, make_workload, notebook_cells
from sim.results.gate import UNAVAILABLE_OUTSIDE, GateErrorResult, GateResult, GateThresholds
from sim.results.gate_signals import InstructionJudgement

__all__ = [
    "DEFAULT_CELLS",
    "DEFAULT_MEMORY_TOLERANCES",
    "DEFAULT_PAIRS",
    "DEFAULT_TIME_THRESHOLD",
    "GateError",
    "GateResult",
    "GateSettings",
    "Worker",
    "Workload",
    "add_gate_arguments",
    "compare",
    "gate_settings",
    "main",
    "make_workload",
    "measure_instructions",
    "run_gate",
    "run_gate_command",
]

# --------------------------------------------------------------------------- git


def _git(args: Sequence[str], cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise GateError(f"git {' '.join(args)} failed: {lines[-1]}")
    return proc.stdout.strip()


def _commit_of(root: Path, ref: str) -> str | None:
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def repo_root(cwd: Path) -> Path:
    try:
        return Path(_git(["rev-parse", "--show-toplevel"], cwd))
    except (GateError, OSError):
        raise GateError(f"not a git repository: {cwd}") from None


def resolve_base(root: Path, ref: str | None) -> tuple[str, str]:
    """``(ref, commit)``; the default ref is the first of origin/main, main, HEAD~1 that exists."""
    candidates = (ref,) if ref is not None else DEFAULT_BASES
    for name in candidates:
        commit = _commit_of(root, name)
        if commit is not None:
            return name, commit
    if ref is not None:
        raise GateError(f"unknown git ref: {ref!r}")
    raise GateError("no base ref: none of origin/main, main, HEAD~1 exists (use --base REF)")


@contextlib.contextmanager
def base_worktree(root: Path, commit: str) -> Iterator[Path]:
    """Check ``commit`` out in a temporary detached worktree; always removed afterwards."""
    holder = Path(tempfile.mkdtemp(prefix="nbstream-gate-"))
    path = holder / "base"
    try:
        _git(["worktree", "add", "--detach", "--quiet", str(path), commit], root)
        yield path
    finally:
        for args in (["worktree", "remove", "--force", str(path)], ["worktree", "prune"]):
            subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)
        shutil.rmtree(holder, ignore_errors=True)


# --------------------------------------------------------------------------- the gate


def run_gate(
    settings: GateSettings,
    base_ref: str | None = None,
    cwd: Path | None = None,
    progress: Progress | None = None,
) -> GateResult:
    """Compare the working tree of the repository at ``cwd`` with ``base_ref``."""
    t0 = time.perf_counter()
    deadline = None if settings.budget_s is None else time.monotonic() + settings.budget_s
    root = repo_root(cwd or Path.cwd())
    ref, commit = resolve_base(root, base_ref)
    head = _commit_of(root, "HEAD")
    dirty = _git(["status", "--porcelain"], root) != ""
    with (
        tempfile.TemporaryDirectory(prefix="nbstream-gate-nb-") as nb_dir,
        base_worktree(root, commit) as base_tree,
    ):
        workload = make_workload(Path(nb_dir), settings)
        specs: tuple[tuple[str, Path], ...] = (
            (f"base {ref} ({commit[:10]})", base_tree),
            ("candidate", root),
        )
        target = (
            None if settings.target_cmd is None else (settings.target_cmd, settings.target_timeout)
        )
        # Instructions first, both sides at once: nothing else runs while the clocks are read.
        phase = "instructions"
        instructions = None
        try:
            with budget(deadline):
                if target is None:
                    instructions = measure_instructions(specs, workload, settings, progress)
                else:
                    instructions = InstructionJudgement(False, UNAVAILABLE_OUTSIDE["instructions"])
                phase = "counters, memory and time"
                with workers(*specs, target=target) as (base, candidate):
                    comparison = compare(
                        base,
                        candidate,
                        workload,
                        settings,
                        instructions=instructions,
                        progress=progress,
                    )
        except BudgetExhausted:
            flagged = ""
            if instructions is not None and instructions.regressed:
                flagged = (
                    f"; instructions had already flagged a regression (x{instructions.ratio:.4f})"
                )
            raise BudgetExhausted(
                f"budget of {settings.budget_s:g} s exhausted after "
                f"{time.perf_counter() - t0:.0f} s, while measuring {phase}{flagged} (--budget)"
            ) from None
    return GateResult(
        base_ref=ref,
        base_commit=commit,
        candidate_commit=head,
        dirty=dirty,
        pairs=settings.pairs,
        cells=settings.cells,
        seed=settings.seed,
        thresholds=GateThresholds(
            settings.time_threshold,
            settings.exponent_tolerance,
            settings.counter_tolerance,
            settings.instruction_tolerance,
            settings.instruction_exponent_tolerance,
            settings.memory_tolerance,
        ),
        comparison=comparison,
        elapsed_s=time.perf_counter() - t0,
        target=settings.target_cmd,
        notebooks=workload.sources,
    )


# --------------------------------------------------------------------------- CLI


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``nbstream gate`` (the lead wires them into the CLI)."""
    parser.add_argument(
        "--base",
        metavar="REF",
        help="git ref to compare against (default: origin/main, else main, else HEAD~1)",
    )
    parser.add_argument(
        "--pairs",
        type=int_at_least(1),
        default=None,
        help=f"interleaved base/candidate timing pairs (default {DEFAULT_PAIRS}; "
        f"self-test {SELF_TEST_PAIRS})",
    )
    parser.add_argument(
        "--cells",
        type=int_at_least(1),
        default=None,
        help=f"cells in the main load (default {DEFAULT_CELLS}; with --notebook, the first "
        "notebook's own count; min 16)",
    )
    parser.add_argument(
        "--notebook",
        type=Path,
        action="append",
        default=None,
        metavar="PATH",
        help="load your own notebook instead of a generated one (repeatable): the first seeds "
        "every size of the run from its own cells, each further one is loaded as it is and its "
        "counters judged apart (default: generated, --seed)",
    )
    parser.add_argument(
        "--time-threshold",
        type=float_at_least(1.0),
        default=DEFAULT_TIME_THRESHOLD,
        metavar="RATIO",
        help="flag a time regression when the CI's lower bound of the median "
        f"candidate/base ratio exceeds RATIO (default {DEFAULT_TIME_THRESHOLD})",
    )
    parser.add_argument(
        "--exponent-tolerance",
        type=float_at_least(0.0),
        default=DEFAULT_EXPONENT_TOLERANCE,
        metavar="DK",
        help="exponent increase tolerated; a larger one whose CI excludes 0 fails "
        f"(default {DEFAULT_EXPONENT_TOLERANCE})",
    )
    parser.add_argument(
        "--counter-tolerance",
        type=float_at_least(0.0),
        default=DEFAULT_COUNTER_TOLERANCE,
        metavar="FRACTION",
        help="relative counter increase allowed (default 0: any increase fails)",
    )
    parser.add_argument(
        "--instruction-tolerance",
        type=float_at_least(0.0),
        default=DEFAULT_INSTRUCTION_TOLERANCE,
        metavar="FRACTION",
        help="relative increase of instructions per load (valgrind) allowed "
        f"(default {DEFAULT_INSTRUCTION_TOLERANCE:g})",
    )
    parser.add_argument(
        "--no-instructions",
        action="store_true",
        help="do not count instructions under valgrind (the signal is reported unavailable; "
        "default: count them when valgrind is installed)",
    )
    parser.add_argument(
        "--memory-tolerance",
        type=float_at_least(0.0),
        default=DEFAULT_MEMORY_TOLERANCES["python_heap_peak_kib"],
        metavar="FRACTION",
        help="relative growth of the load's peak Python heap allowed (default "
        f"{DEFAULT_MEMORY_TOLERANCES['python_heap_peak_kib']:g}; the RSS high-water rule, "
        f"{DEFAULT_MEMORY_TOLERANCES['rss_peak_kib']:g} by default, scales with it)",
    )
    parser.add_argument(
        "--budget",
        type=float_at_least(0.0),
        default=DEFAULT_BUDGET_S,
        metavar="SECONDS",
        help="stop the run after SECONDS and exit 2, saying what was still being measured "
        f"(default {DEFAULT_BUDGET_S:g}; 0: no limit)",
    )
    parser.add_argument(
        "--large-cells",
        type=int_at_least(0),
        default=None,
        metavar="N",
        help="also load an N-cell notebook in lock-step per side and compare its exact "
        f"counters and core call counts (default {DEFAULT_LARGE_CELLS}, off when the main load "
        "is that large already; 0: off)",
    )
    parser.add_argument(
        "--target-cmd",
        metavar="CMD",
        help="measure your own server from outside instead of importing the tree's core: CMD "
        "runs in each tree under test (the base worktree, then the working tree) with {socket} "
        "replaced by a fresh socket path (default: none, the tree's bundled daemon)",
    )
    parser.add_argument(
        "--target-timeout",
        type=float_at_least(0.0),
        default=DEFAULT_TARGET_TIMEOUT_S,
        metavar="SECONDS",
        help=f"seconds --target-cmd may take to listen on {{socket}} "
        f"(default {DEFAULT_TARGET_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--output",
        metavar="FILE",
        type=Path,
        help="also write the result JSON, with its schema, machine and git blocks, to FILE "
        "(default: none; compare two with `nbstream compare`)",
    )
    parser.add_argument("--seed", type=int, default=0, help="workload notebook seed (default 0)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the JSON result instead of the Markdown table (default: the table)",
    )
    parser.add_argument(
        "--markdown",
        metavar="PATH",
        type=Path,
        help="write the Markdown summary to PATH (default: none; it is also appended to "
        "$GITHUB_STEP_SUMMARY when that is set)",
    )
    parser.add_argument(
        "--json-out", metavar="PATH", type=Path, help="write the JSON to PATH (default: none)"
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="prove the gate here against real code changes of core/ (an O(n^2) scan, more CPU "
        "per cell, retained memory, work above 400 cells, a slower client) and unchanged code, "
        f"--reruns times each; main load {SELF_TEST_CELLS} cells unless --cells (default: off)",
    )
    parser.add_argument(
        "--reruns",
        type=int_at_least(1),
        default=1,
        help="self-test reruns per condition (default 1: the deterministic signals decide; "
        "20 to measure the rates)",
    )


def gate_settings(args: argparse.Namespace) -> GateSettings:
    """The run's settings from the parsed options (GateError, one line, for a bad combination)."""
    try:
        return _settings(args)
    except GateError as exc:
        raise GateError(f"{exc} (see nbstream gate --help)") from None


def _settings(args: argparse.Namespace) -> GateSettings:
    notebooks = tuple(args.notebook or ())
    cells = args.cells
    if cells is None:
        cells = max(16, notebook_cells(notebooks[0])) if notebooks else DEFAULT_CELLS
    else:
        for path in notebooks[:1]:
            notebook_cells(path)  # readable and valid: one line now, not mid-run
    for path in notebooks[1:]:
        notebook_cells(path)
    if cells < 16:
        raise GateError(f"--cells must be >= 16 (the size sweep needs room), got {cells}")
    large_cells = args.large_cells
    if large_cells is None:
        large_cells = DEFAULT_LARGE_CELLS if cells < DEFAULT_LARGE_CELLS else 0
    elif 0 < large_cells <= cells:
        raise GateError(
            f"--large-cells must be 0 or more than --cells ({cells}), got {large_cells}"
        )
    pairs = DEFAULT_PAIRS if args.pairs is None else args.pairs
    if pairs < 2:
        raise GateError(f"--pairs must be >= 2, got {pairs}")
    return GateSettings(
        pairs=pairs,
        cells=cells,
        time_threshold=args.time_threshold,
        exponent_tolerance=args.exponent_tolerance,
        counter_tolerance=args.counter_tolerance,
        seed=args.seed,
        instruction_tolerance=args.instruction_tolerance,
        memory_tolerance=args.memory_tolerance,
        instructions=not args.no_instructions,
        budget_s=args.budget or None,
        large_cells=large_cells,
        target_cmd=_target_cmd(args.target_cmd),
        target_timeout=args.target_timeout,
        notebooks=tuple(p.resolve() for p in notebooks),
    )


def _target_cmd(command: str | None) -> str | None:
    if command is not None and "{socket}" not in command:
        raise GateError(f"--target-cmd must contain {{socket}}: {command!r}")
    return command


def _write_outputs(args: argparse.Namespace, payload: Mapping[str, Any], markdown: str) -> None:
    if getattr(args, "output", None) is not None:
        from sim.cli.provenance import stamp, write_result

        write_result(args.output, stamp(dict(payload)))
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(payload, indent=2) + "\n")
    if args.markdown is not None:
        args.markdown.write_text(markdown)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(markdown + "\n")


def _emit(args: argparse.Namespace, payload: Mapping[str, Any], markdown: str) -> None:
    _write_outputs(args, payload, markdown)
    print(json.dumps(payload, indent=2) if args.json else markdown)


def _stderr_progress(message: str) -> None:
    print(f"nbstream gate: {message}", file=sys.stderr, flush=True)


def run_gate_command(args: argparse.Namespace) -> int:
    """``nbstream gate``: 0 pass, 1 regression (or self-test targets missed), 2 error."""
    command = "gate-self-test" if args.self_test else "gate"
    try:
        settings = gate_settings(args)
        if args.self_test:
            settings = self_test_settings(
                settings, cells_given=args.cells is not None, pairs_given=args.pairs is not None
            )
            result = run_self_test(settings, args.reruns, progress=sys.stderr)
            _emit(args, result.to_json(), result.to_markdown())
            return 0 if result.targets_met else 1
        gate = run_gate(settings, args.base, progress=_stderr_progress)
        _emit(args, gate.to_json(), gate.to_markdown())
        return 1 if gate.regressed else 0
    except Exception as exc:  # every failure is exit 2 with one line, never a traceback
        message = " ".join(str(exc).split())
        if not isinstance(exc, (GateError, OSError, ValueError)):
            message = f"internal error: {type(exc).__name__}: {message}"
        failure = GateErrorResult(command, message, isinstance(exc, BudgetExhausted))
        payload = failure.to_json()
        with contextlib.suppress(OSError):
            _write_outputs(args, payload, failure.to_markdown())
        if args.json:
            print(json.dumps(payload, indent=2))
        print(f"nbstream gate: error: {message}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbstream gate", description=__doc__.splitlines()[0])
    add_gate_arguments(parser)
    return run_gate_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
