"""``nbstream compare A.json B.json``: two saved results of the same kind, side by side, offline.

Like ``asv compare`` and ``pyperf compare_to``: a table of every figure with B/A, and a verdict.
Exit status: 0 no regression, 1 a regression, 2 bad input (unreadable or corrupt file, results
of different kinds, or of different workloads — another notebook, scenario or batch size).

What can fail the comparison, and why only that:

* **deterministic counters** (``ops``, ``transactions``, ``scan_steps``): the same code on the same
  notebook and batch size gives the same counts to the op, so *any* increase is a change in the
  work done;
* **peak memory** (``peak_rss_kib``) above ``--memory-threshold`` (x1.2): repeat runs of one
  workload spread by a few percent, a leak or a retained tree by far more;
* **time**, for ``profile`` only, and only when every run of B is slower than every run of A by
  ``--time-threshold`` (x1.2): the runs of one file are the only spread a saved result carries.
  A ``sim`` result is one run: its times are shown (marked ``slower``/``faster`` beyond the
  threshold) but never fail, because one run of a noisy machine is not evidence. The machine
  blocks of both files are shown so a reader can tell an unfair comparison.

``gate`` results compare their candidate sides (:mod:`sim.report.compare_gate`) and ``scale``
results their insert paths' complexity (:mod:`sim.report.compare_scale`), each by the exact
signals and tolerances of the command that wrote them.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sim.report.compare_gate import gate_rows
from sim.report.compare_rows import (
    CompareError,
    Comparison,
    Row,
    counter_rows,
    memory_row,
    same_workload,
    separated_row,
    time_row,
)
from sim.report.compare_scale import scale_rows
from sim.results.base import SchemaError
from sim.results.gate import GateResult
from sim.results.profile import ProfileResult
from sim.results.scale import ScaleResult
from sim.results.sim import SimResult

__all__ = [
    "CompareError",
    "Comparison",
    "Row",
    "add_compare_arguments",
    "compare",
    "run_compare_command",
]

_READERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "sim": SimResult.from_json,
    "profile": ProfileResult.from_json,
    "scale": ScaleResult.from_json,
    "gate": GateResult.from_json,
}
Rows = Callable[[Mapping[str, Any], Mapping[str, Any], float, float], list[Row]]


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CompareError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompareError(f"{path} is not a JSON result file: {exc}") from None
    if not isinstance(data, dict):
        raise CompareError(f"{path} is not a result file (not a JSON object)")
    kind = data.get("command")
    if kind not in _READERS:
        known = ", ".join(sorted(_READERS))
        raise CompareError(f"{path}: cannot compare results of kind {kind!r} (known: {known})")
    try:
        _READERS[kind](data)
    except SchemaError as exc:
        raise CompareError(f"{path} is not a valid {kind} result: {exc}") from None
    return data


def _loader(data: Mapping[str, Any]) -> Mapping[str, Any]:
    peers = {p["name"]: p for p in data.get("peers", [])}
    return peers.get("retry") or peers.get("loader") or {}


def _sim_rows(a: Mapping[str, Any], b: Mapping[str, Any], t: float, m: float) -> list[Row]:
    same_workload(a, b, ("notebook", "scenario", "batch_size"))
    rows = [
        Row(
            "cells",
            a.get("cells"),
            b.get("cells"),
            "same" if a["cells"] == b["cells"] else "regression",
            fails=a["cells"] != b["cells"],
        )
    ]
    rows += counter_rows(a, b) + memory_row(a, b, m)
    la, lb = _loader(a), _loader(b)
    for key in ("time_to_first_cell_s", "time_to_full_s"):
        rows.append(time_row(f"loader {key}", la.get(key), lb.get(key), t))
    pa, pb = a.get("phases") or {}, b.get("phases") or {}
    for key in sorted(set(pa) | set(pb)):
        rows.append(time_row(f"phase {key}", pa.get(key), pb.get(key), t))
    return rows


def _profile_rows(a: Mapping[str, Any], b: Mapping[str, Any], t: float, m: float) -> list[Row]:
    same_workload(a, b, ("notebook", "batch_size"))
    rows = counter_rows(a, b) + memory_row(a, b, m)
    runs_a = [r["total_s"] for r in a.get("phases_per_run") or [] if r]
    runs_b = [r["total_s"] for r in b.get("phases_per_run") or [] if r]
    if runs_a and runs_b:
        rows.append(separated_row("load total_s (median of runs)", runs_a, runs_b, t))
    pa, pb = a.get("phases") or {}, b.get("phases") or {}
    for key in sorted((set(pa) | set(pb)) - {"total_s"}):
        rows.append(time_row(f"phase {key}", pa.get(key), pb.get(key), t))
    for key in ("time_to_first_cell_s", "time_to_full_s"):
        rows.append(time_row(key, a.get(key), b.get(key), t))
    return rows


def compare(
    a_path: Path, b_path: Path, *, time_threshold: float = 1.2, memory_threshold: float = 1.2
) -> Comparison:
    a, b = _load(a_path), _load(b_path)
    if a["command"] != b["command"]:
        raise CompareError(
            f"different kinds: {a_path} is a {a['command']} result, {b_path} a {b['command']} one"
        )
    kind = a["command"]
    builders: dict[str, Rows] = {
        "sim": _sim_rows,
        "profile": _profile_rows,
        "scale": scale_rows,
        "gate": gate_rows,
    }
    rows = builders[kind](a, b, time_threshold, memory_threshold)
    return Comparison(kind, tuple(rows), (a.get("machine"), b.get("machine")))


def add_compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", type=Path, metavar="A.json", help="the base result (--output of a run)")
    p.add_argument("b", type=Path, metavar="B.json", help="the candidate result, same kind")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="also write the table here")
    p.add_argument(
        "--time-threshold",
        type=float,
        default=1.2,
        help="B/A beyond which a time is slower (fails only for profile, when every run of B "
        "is slower than every run of A) (1.2)",
    )
    p.add_argument(
        "--memory-threshold",
        type=float,
        default=1.2,
        help="B/A of peak_rss_kib above which memory is a regression (1.2)",
    )


def run_compare_command(args: argparse.Namespace) -> int:
    """Print the comparison; 0 no regression, 1 a regression; CompareError → the CLI's exit 2."""
    for name in ("time_threshold", "memory_threshold"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value >= 1.0):
            raise CompareError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    result = compare(
        args.a, args.b, time_threshold=args.time_threshold, memory_threshold=args.memory_threshold
    )
    text = result.markdown(str(args.a), str(args.b))
    print(text, end="")
    if args.markdown is not None:
        try:
            args.markdown.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CompareError(f"--markdown {args.markdown}: {exc.strerror or exc}") from None
    return 1 if result.regression else 0
