"""``nbstream report``: read result JSON files (and asv results) and write a static HTML report.

The report only reads and plots; it never imports ``core`` and never measures anything.

Inputs are the files that ``nbstream <cmd> --json`` prints, dispatched on their ``"command"``
key: ``sim``, ``profile``, ``scale``, ``gate`` and ``gate-self-test``. Each file is validated by
its result kind's ``from_json`` (:mod:`sim.results`) and shown through the views of
:mod:`sim.report.data`; a file that is not JSON, has no known ``"command"`` or does not match its
schema is skipped with one warning line. asv results (``<machine>/<hash>-<env>.json`` plus
``benchmarks.json``) are read straight from asv's JSON format (version 2), without importing asv.

This module holds the loaders and the command; the report's views live in
:mod:`sim.report.data` (re-exported here), figures in :mod:`sim.report.figures` and the page in
:mod:`sim.report.html` (both imported lazily, so that building the CLI parser does not import
matplotlib).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sim.report.data import PHASE_KEYS as PHASE_KEYS
from sim.report.data import (
    AsvBenchmark,
    AsvHistory,
    AsvPoint,
    AsvSeries,
    BatchTrend,
    Check,
    GateResult,
    Inputs,
    NotebookInfo,
    Peer,
    Phases,
    RunBatch,
    RunResult,
    ScalePath,
    ScalePoint,
    ScaleResult,
    SchemaError,
    loader_peer,
    view_of,
)
from sim.results import COMMANDS, read_result
from sim.results.base import Reader

__all__ = [
    "AsvBenchmark",
    "AsvHistory",
    "AsvPoint",
    "AsvSeries",
    "BatchTrend",
    "Check",
    "GateResult",
    "Inputs",
    "NotebookInfo",
    "Peer",
    "Phases",
    "RunBatch",
    "RunResult",
    "ScalePath",
    "ScalePoint",
    "ScaleResult",
    "SchemaError",
    "add_report_arguments",
    "load_asv_history",
    "load_inputs",
    "loader_peer",
    "run_report_command",
]

DEFAULT_INPUT = "results"
DEFAULT_ASV_RESULTS = ".asv/results"
DEFAULT_OUT = "reports"
ASV_COLUMNS = ["result", "params", "version", "started_at", "duration"]  # asv results v2


# --------------------------------------------------------------------------- loading


def _json_files(arg: Path) -> tuple[list[Path], str | None]:
    if arg.is_dir():
        return sorted(p for p in arg.glob("*.json") if p.is_file()), None
    if arg.is_file():
        return [arg], None
    return [], "not found"


def _labels(files: Sequence[Path]) -> dict[Path, str]:
    """Short, unique labels: the file stem, prefixed by its folder when stems collide."""
    stems = [p.stem for p in files]
    return {p: (p.stem if stems.count(p.stem) == 1 else f"{p.parent.name}/{p.stem}") for p in files}


def load_inputs(paths: Sequence[Path]) -> Inputs:
    """Read every ``*.json`` in each directory (or each file) of *paths*; never raises for bad
    files (they land in ``Inputs.skipped`` with a reason)."""
    inputs = Inputs(scanned=list(paths))
    files: list[Path] = []
    for arg in paths:
        found, problem = _json_files(arg)
        if problem:
            inputs.skipped.append((arg, problem))
        files += [f for f in found if f not in files]
    labels = _labels(files)
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            inputs.skipped.append((path, f"unreadable: {type(exc).__name__}"))
            continue
        command = data.get("command") if isinstance(data, dict) else None
        if command not in COMMANDS:
            inputs.skipped.append((path, f"unknown command {command!r}"))
            continue
        try:
            view = view_of(read_result(data), path, labels[path])
        except SchemaError as exc:
            inputs.skipped.append((path, f"{command}: {exc}"))
            continue
        if isinstance(view, RunResult):
            inputs.runs.append(view)
        elif isinstance(view, ScaleResult):
            inputs.scales.append(view)
        else:
            inputs.gates.append(view)
    return inputs


def _asv_type(name: str, meta: Mapping[str, Any]) -> str:
    kind = meta.get("type")
    if isinstance(kind, str):  # asv writes "time", "track", "peakmemory", "memory"
        return {"peakmemory": "peakmem", "memory": "mem"}.get(kind, kind)
    last = name.rsplit(".", 1)[-1]
    for prefix in ("time", "peakmem", "mem", "track"):
        if last.startswith(prefix + "_"):
            return prefix
    return ""


def _asv_benchmarks(root: Path) -> dict[str, AsvBenchmark]:
    try:
        data = json.loads((root / "benchmarks.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    out: dict[str, AsvBenchmark] = {}
    if not isinstance(data, dict):
        return out
    for name, meta in data.items():
        if not isinstance(meta, dict):
            continue  # the "version" key
        names = meta.get("param_names") or []
        unit = meta.get("unit")
        out[name] = AsvBenchmark(
            name=name,
            type=_asv_type(name, meta),
            unit=unit if isinstance(unit, str) else "",
            param_names=tuple(str(n) for n in names) if isinstance(names, list) else (),
        )
    return out


def _param_labels(params: Any, names: Sequence[str]) -> list[str]:
    """One label per parameter combination, in asv's order (the cartesian product of the
    ``repr``-ed values, which lose their quotes here: ``insert_path=full``)."""
    if not isinstance(params, list) or not params:
        return [""]
    combos = itertools.product(*[p if isinstance(p, list) else [p] for p in params])
    labels: list[str] = []
    for combo in combos:
        values = [str(v).strip("'\"") for v in combo]
        if len(names) == len(values):
            labels.append(", ".join(f"{n}={v}" for n, v in zip(names, values, strict=True)))
        else:
            labels.append(", ".join(values))
    return labels


def _natural(key: tuple[str, ...]) -> list[tuple[int, int | str]]:
    """Sort key where "n_cells=50" comes before "n_cells=200"."""
    parts = re.split(r"(\d+)", "\0".join(key))
    return [(1, int(p)) if p.isdigit() else (0, p) for p in parts]


def load_asv_history(root: Path) -> tuple[AsvHistory | None, list[tuple[Path, str]]]:
    """Read asv's results tree under *root*. Returns ``(None, [])`` when there is nothing to read;
    unreadable result files are returned as skipped ``(path, reason)`` pairs."""
    if not root.is_dir():
        return None, []
    benchmarks = _asv_benchmarks(root)
    skipped: list[tuple[Path, str]] = []
    files: list[Path] = []
    raw: dict[tuple[str, str, str], list[AsvPoint]] = {}
    commits: dict[str, float] = {}
    for path in sorted(root.glob("*/*.json")):
        if path.name == "machine.json":
            continue
        try:
            d = Reader(json.loads(path.read_text(encoding="utf-8")))
            commit = d.text("commit_hash")
            date = d.opt_number("date") or 0.0
            columns = d.items("result_columns") if "result_columns" in d.d else ASV_COLUMNS
            results = d.child("results").d
            machine_env = f"{path.parent.name}/{d.opt_text('env_name') or ''}"
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            reason = str(exc) if isinstance(exc, SchemaError) else type(exc).__name__
            skipped.append((path, f"asv: {reason}"))
            continue
        files.append(path)
        commits[commit] = max(commits.get(commit, 0.0), date)
        for name, row in results.items():
            if not isinstance(row, list):
                continue
            cols = dict(zip(columns, row, strict=False))
            values = cols.get("result")
            if not isinstance(values, list):
                continue  # a failed benchmark (result null)
            meta = benchmarks.get(name)
            labels = _param_labels(cols.get("params"), meta.param_names if meta else ())
            for label, value in zip(labels, values, strict=False):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                if math.isfinite(value):
                    raw.setdefault((name, label, machine_env), []).append(
                        AsvPoint(commit, date, float(value))
                    )
            if meta is None:
                benchmarks[name] = AsvBenchmark(name, _asv_type(name, {}), "", ())
    if not files:
        return None, skipped
    order = sorted(commits.items(), key=lambda kv: (kv[1], kv[0]))
    rank = {c: i for i, (c, _) in enumerate(order)}
    series = tuple(
        AsvSeries(name, label, env, tuple(sorted(points, key=lambda p: rank[p.commit])))
        for (name, label, env), points in sorted(raw.items(), key=lambda kv: _natural(kv[0]))
    )
    return AsvHistory(root, benchmarks, series, tuple(order), tuple(files)), skipped


# --------------------------------------------------------------------------- command


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``nbstream report``'s options to *parser*."""
    parser.add_argument(
        "--input",
        action="append",
        metavar="DIR_OR_FILE",
        help=f"result JSON file, or a directory whose *.json files are read; repeatable "
        f"(default: {DEFAULT_INPUT}/)",
    )
    parser.add_argument(
        "--asv-results",
        metavar="DIR",
        help=f"asv results directory (default: {DEFAULT_ASV_RESULTS} if it exists)",
    )
    parser.add_argument(
        "--asv-benchmark",
        action="append",
        metavar="SUBSTRING",
        help="plot only asv benchmarks whose name contains SUBSTRING; repeatable "
        "(default: up to six time/track/peakmem benchmarks with the longest history)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=DEFAULT_OUT,
        help=f"output directory (default: {DEFAULT_OUT}/)",
    )


def _fail(message: str) -> int:
    print(f"nbstream report: {message}", file=sys.stderr)
    return 2


def run_report_command(args: argparse.Namespace) -> int:
    """Run ``nbstream report``. Returns 0 on success, 2 (with a one-line reason on stderr) when
    no usable results were found or the output directory cannot be written."""
    input_args = [Path(p) for p in (args.input or [DEFAULT_INPUT])]
    inputs = load_inputs(input_args)
    asv_arg = args.asv_results
    if asv_arg is None and Path(DEFAULT_ASV_RESULTS).is_dir():
        asv_arg = DEFAULT_ASV_RESULTS
    if asv_arg is not None:
        if not Path(asv_arg).is_dir():
            inputs.skipped.append((Path(asv_arg), "asv results directory not found"))
        else:
            inputs.asv, asv_skipped = load_asv_history(Path(asv_arg))
            inputs.skipped += asv_skipped
    listed = "; ".join(f"{p} ({why})" for p, why in inputs.skipped)
    if not inputs.usable():
        where = ", ".join(str(p) for p in input_args)
        bad = [f"{p} ({why})" for p, why in inputs.skipped if p not in input_args]
        unusable = f" (skipped: {'; '.join(bad)})" if bad else ""
        return _fail(
            f"no results found in {where}{unusable}; "
            "run `nbstream sim --json > results/sim.json` first"
        )
    if listed:
        print(f"nbstream report: warning: skipped {len(inputs.skipped)}: {listed}", file=sys.stderr)

    from sim.report.figures import render_figures  # lazy: keeps matplotlib out of CLI start-up
    from sim.report.html import write_index

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        figures = render_figures(inputs, out, asv_filter=args.asv_benchmark or ())
        index = write_index(inputs, figures, out)
    except OSError as exc:
        return _fail(f"cannot write the report to {out}: {exc.strerror or exc}")
    print(f"wrote {index} ({len(figures)} figures)")
    return 0
