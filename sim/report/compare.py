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
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.results.base import SchemaError
from sim.results.profile import ProfileResult
from sim.results.sim import SimResult

__all__ = ["Comparison", "Row", "add_compare_arguments", "compare", "run_compare_command"]

COUNTERS = ("ops", "transactions", "scan_steps")
ADVISORY_COUNTERS = ("sync_messages", "sync_bytes")  # depend on how replies interleave
_READERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "sim": SimResult.from_json,
    "profile": ProfileResult.from_json,
}


class CompareError(ValueError):
    """Bad input: the files cannot be read or are not comparable (exit 2)."""


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    a: float | None
    b: float | None
    verdict: str  # same | better | worse | regression | faster | slower | n/a
    fails: bool = False

    @property
    def ratio(self) -> float | None:
        if self.a is None or self.b is None or self.a == 0:
            return None
        return self.b / self.a


@dataclass(frozen=True, slots=True)
class Comparison:
    kind: str
    rows: tuple[Row, ...]
    machines: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]

    @property
    def regression(self) -> bool:
        return any(r.fails for r in self.rows)

    def markdown(self, a_name: str, b_name: str) -> str:
        lines = [
            f"### nbstream compare ({self.kind}): {'REGRESSION' if self.regression else 'ok'}",
            "",
            f"| figure | A `{a_name}` | B `{b_name}` | B/A | verdict |",
            "|---|---:|---:|---:|---|",
        ]
        for r in self.rows:
            ratio = "" if r.ratio is None else f"{r.ratio:.3f}"
            lines.append(f"| {r.name} | {_fmt(r.a)} | {_fmt(r.b)} | {ratio} | {r.verdict} |")
        for label, m in zip(("A", "B"), self.machines, strict=True):
            if m:
                lines.append(
                    f"\n{label}: {m.get('cpu_model')} x{m.get('cpu_count')}, python "
                    f"{m.get('python')}, automerge {m.get('automerge')}, load "
                    f"{m.get('load_average')}, {m.get('timestamp')}"
                )
        return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4g}"


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


def _same_workload(a: Mapping[str, Any], b: Mapping[str, Any], keys: Sequence[str]) -> None:
    for key in keys:
        va = a["notebook"]["sha256"] if key == "notebook" else a.get(key)
        vb = b["notebook"]["sha256"] if key == "notebook" else b.get(key)
        if va != vb:
            what = "notebooks" if key == "notebook" else f"{key}s"
            raise CompareError(f"the results measure different {what}: {va!r} vs {vb!r}")


def _counter_rows(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Row]:
    rows = []
    ca, cb = a.get("counters", {}), b.get("counters", {})
    for key in COUNTERS + ADVISORY_COUNTERS:
        if key not in ca and key not in cb:
            continue
        va, vb = ca.get(key), cb.get(key)
        if va is None or vb is None:
            rows.append(Row(key, va, vb, "n/a"))
            continue
        worse = vb > va
        if key in COUNTERS:
            verdict = "regression" if worse else ("better" if vb < va else "same")
            rows.append(Row(key, va, vb, verdict, fails=worse))
        else:
            rows.append(Row(key, va, vb, "more" if worse else ("fewer" if vb < va else "same")))
    return rows


def _memory_row(a: Mapping[str, Any], b: Mapping[str, Any], threshold: float) -> list[Row]:
    va, vb = a.get("peak_rss_kib"), b.get("peak_rss_kib")
    if va is None and vb is None:
        return []
    if va is None or vb is None or va <= 0:
        return [Row("peak_rss_kib", va, vb, "n/a")]
    ratio = vb / va
    fails = ratio > threshold
    verdict = "regression" if fails else ("better" if ratio < 1 / threshold else "same")
    return [Row("peak_rss_kib", va, vb, verdict, fails=fails)]


def _time_row(name: str, va: float | None, vb: float | None, threshold: float) -> Row:
    if va is None or vb is None or va <= 0:
        return Row(name, va, vb, "n/a")
    ratio = vb / va
    verdict = "slower" if ratio > threshold else ("faster" if ratio < 1 / threshold else "same")
    return Row(name, va, vb, verdict)


def _loader(data: Mapping[str, Any]) -> Mapping[str, Any]:
    peers = {p["name"]: p for p in data.get("peers", [])}
    return peers.get("retry") or peers.get("loader") or {}


def _sim_rows(a: Mapping[str, Any], b: Mapping[str, Any], t: float, m: float) -> list[Row]:
    _same_workload(a, b, ("notebook", "scenario", "batch_size"))
    rows = [
        Row(
            "cells",
            a.get("cells"),
            b.get("cells"),
            "same" if a["cells"] == b["cells"] else "regression",
            fails=a["cells"] != b["cells"],
        )
    ]
    rows += _counter_rows(a, b) + _memory_row(a, b, m)
    la, lb = _loader(a), _loader(b)
    for key in ("time_to_first_cell_s", "time_to_full_s"):
        rows.append(_time_row(f"loader {key}", la.get(key), lb.get(key), t))
    pa, pb = a.get("phases") or {}, b.get("phases") or {}
    for key in sorted(set(pa) | set(pb)):
        rows.append(_time_row(f"phase {key}", pa.get(key), pb.get(key), t))
    return rows


def _profile_rows(a: Mapping[str, Any], b: Mapping[str, Any], t: float, m: float) -> list[Row]:
    _same_workload(a, b, ("notebook", "batch_size"))
    rows = _counter_rows(a, b) + _memory_row(a, b, m)
    runs_a = [r["total_s"] for r in a.get("phases_per_run") or [] if r]
    runs_b = [r["total_s"] for r in b.get("phases_per_run") or [] if r]
    if runs_a and runs_b:
        separated = min(runs_b) > max(runs_a) * t  # every run of B slower than every run of A
        median_a, median_b = sorted(runs_a)[len(runs_a) // 2], sorted(runs_b)[len(runs_b) // 2]
        verdict = "regression" if separated else _time_row("", median_a, median_b, t).verdict
        rows.append(
            Row("load total_s (median of runs)", median_a, median_b, verdict, fails=separated)
        )
    pa, pb = a.get("phases") or {}, b.get("phases") or {}
    for key in sorted((set(pa) | set(pb)) - {"total_s"}):
        rows.append(_time_row(f"phase {key}", pa.get(key), pb.get(key), t))
    for key in ("time_to_first_cell_s", "time_to_full_s"):
        rows.append(_time_row(key, a.get(key), b.get(key), t))
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
    build = _sim_rows if kind == "sim" else _profile_rows
    rows = build(a, b, time_threshold, memory_threshold)
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
