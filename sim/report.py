"""``nbstream report``: read result JSON files (and asv results) and write a static HTML report.

The report only reads and plots; it never imports ``core`` and never measures anything.

Inputs are the files that ``nbstream <cmd> --json`` prints (see "Result JSON files" in the
project's interface notes), dispatched on their ``"command"`` key: ``sim``, ``profile``,
``scale``, ``gate`` and ``gate-self-test``. Each file is validated into frozen dataclasses here;
a file that is not JSON, has no known ``"command"`` or does not match its schema is skipped with
one warning line. asv results (``<machine>/<hash>-<env>.json`` plus ``benchmarks.json``) are read
straight from asv's JSON format (version 2), without importing asv.

This module holds the data model, the loaders and the command; figures live in
:mod:`sim.report_figures` and the page in :mod:`sim.report_html` (both imported lazily, so that
building the CLI parser does not import matplotlib).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
PHASE_KEYS = ("read_s", "parse_s", "manifest_s", "insert_s", "sync_gen_s", "network_s")
ASV_COLUMNS = ["result", "params", "version", "started_at", "duration"]  # asv results v2


class SchemaError(ValueError):
    """A result file does not match its schema (the message names the offending field)."""


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True, slots=True)
class Check:
    source: Path
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class NotebookInfo:
    path: str
    cells: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Phases:
    read_s: float
    parse_s: float
    manifest_s: float
    insert_s: float
    sync_gen_s: float
    network_s: float
    total_s: float


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    behaviour: str
    joined_at_batch: int | None
    time_to_first_cell_s: float | None
    time_to_full_s: float | None
    converged: bool


@dataclass(frozen=True, slots=True)
class RunBatch:
    index: int
    cells: int
    started_at: float
    finished_at: float
    latency_s: Mapping[str, float | None]  # peer name -> seconds (None: not delivered / not joined)


@dataclass(frozen=True, slots=True)
class RunResult:
    """A ``sim`` or ``profile`` result (profile has no peers, no checks, no convergence)."""

    source: Path
    label: str
    command: str
    notebook: NotebookInfo
    phases: Phases
    batches: tuple[RunBatch, ...]
    peers: tuple[Peer, ...] = ()
    converged: bool | None = None
    cells: int | None = None
    scenario: str | None = None
    insert_path: str | None = None
    daemon_overhead_ratio: float | None = None
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True, slots=True)
class ScalePoint:
    cells: int
    total_s: float
    ops: int | None = None
    scan_steps: int | None = None
    time_to_first_cell_s: float | None = None
    time_to_full_s: float | None = None


@dataclass(frozen=True, slots=True)
class BatchTrend:
    relative_slope: float
    robust_relative_slope: float
    flat: bool
    cells: int
    latencies_s: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class ScalePath:
    name: str
    exponent: float
    ci: tuple[float, float]
    verdict: str
    r_squared: float
    points: tuple[ScalePoint, ...]
    counters: Mapping[str, tuple[str, float | None]]  # counter -> (verdict, exponent)
    batch_trend: BatchTrend | None


@dataclass(frozen=True, slots=True)
class ScaleResult:
    source: Path
    label: str
    paths: Mapping[str, ScalePath]
    raw_points: tuple[ScalePoint, ...] = ()
    raw_exponent: float | None = None
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True, slots=True)
class GateResult:
    """A ``gate`` or ``gate-self-test`` result (see :func:`_parse_gate`)."""

    source: Path
    label: str
    command: str
    verdict: str  # "pass", "regression", "error", ...
    threshold: float | None = None  # on the paired time ratio (candidate / base)
    ratios: tuple[float, ...] = ()
    median_ratio: float | None = None
    ci: tuple[float, float] | None = None
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True, slots=True)
class AsvBenchmark:
    name: str
    type: str  # "time", "peakmem", "mem", "track" (or "" when unknown)
    unit: str
    param_names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AsvPoint:
    commit: str
    date_ms: float
    value: float


@dataclass(frozen=True, slots=True)
class AsvSeries:
    benchmark: str
    params: str  # "n_cells=50, path='full'" ("" for an unparametrized benchmark)
    machine_env: str
    points: tuple[AsvPoint, ...]


@dataclass(frozen=True, slots=True)
class AsvHistory:
    root: Path
    benchmarks: Mapping[str, AsvBenchmark]
    series: tuple[AsvSeries, ...]
    commits: tuple[tuple[str, float], ...]  # (hash, date ms), oldest first
    files: tuple[Path, ...]


@dataclass(slots=True)
class Inputs:
    """Everything the report read, plus what it skipped and why."""

    runs: list[RunResult] = field(default_factory=list)
    scales: list[ScaleResult] = field(default_factory=list)
    gates: list[GateResult] = field(default_factory=list)
    asv: AsvHistory | None = None
    scanned: list[Path] = field(default_factory=list)  # the --input arguments, as given
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def sims(self) -> list[RunResult]:
        return [r for r in self.runs if r.command == "sim"]

    @property
    def sources(self) -> list[Path]:
        found: list[Path] = [r.source for r in self.runs]
        found += [s.source for s in self.scales] + [g.source for g in self.gates]
        return sorted(set(found))

    def usable(self) -> bool:
        return bool(self.runs or self.scales or self.gates or (self.asv and self.asv.series))


def loader_peer(run: RunResult) -> Peer | None:
    """The peer that opened the notebook: behaviour "loader", else the first peer present from the
    start (``joined_at_batch`` null or 0), else the first peer."""
    for peer in run.peers:
        if peer.behaviour == "loader":
            return peer
    for peer in run.peers:
        if peer.joined_at_batch in (None, 0):
            return peer
    return run.peers[0] if run.peers else None


# --------------------------------------------------------------------------- schema reader


class _Obj:
    """A JSON object with typed accessors whose errors name the offending field."""

    __slots__ = ("d", "where")

    def __init__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: expected an object")
        self.d: dict[str, Any] = value
        self.where = where

    def _at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def raw(self, key: str) -> Any:
        if key not in self.d:
            raise SchemaError(f"{self.where or '$'}: missing {key!r}")
        return self.d[key]

    def number(self, key: str) -> float:
        return _number(self.raw(key), self._at(key))

    def opt_number(self, key: str, *, required: bool = False) -> float | None:
        """The number at *key*, or None when it is null (or absent, unless *required*)."""
        value = self.raw(key) if required else self.d.get(key)
        return None if value is None else _number(value, self._at(key))

    def integer(self, key: str) -> int:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(f"{self._at(key)}: expected an integer")
        return value

    def opt_integer(self, key: str) -> int | None:
        return None if self.d.get(key) is None else self.integer(key)

    def text(self, key: str) -> str:
        value = self.raw(key)
        if not isinstance(value, str):
            raise SchemaError(f"{self._at(key)}: expected a string")
        return value

    def opt_text(self, key: str) -> str | None:
        return None if self.d.get(key) is None else self.text(key)

    def flag(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise SchemaError(f"{self._at(key)}: expected true/false")
        return value

    def child(self, key: str) -> _Obj:
        return _Obj(self.raw(key), self._at(key))

    def items(self, key: str) -> list[Any]:
        value = self.raw(key)
        if not isinstance(value, list):
            raise SchemaError(f"{self._at(key)}: expected a list")
        return value

    def children(self, key: str) -> list[_Obj]:
        return [_Obj(v, f"{self._at(key)}[{i}]") for i, v in enumerate(self.items(key))]

    def numbers(self, key: str) -> tuple[float, ...]:
        return tuple(_number(v, f"{self._at(key)}[{i}]") for i, v in enumerate(self.items(key)))


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(f"{where}: expected a number")
    return float(value)


def _checks(objs: list[_Obj], source: Path) -> tuple[Check, ...]:
    out = []
    for c in objs:
        detail = c.d.get("detail", c.d.get("reason", ""))
        detail = detail if isinstance(detail, str) else json.dumps(detail)
        out.append(Check(source, c.text("name"), c.flag("ok"), detail))
    return tuple(out)


# --------------------------------------------------------------------------- result parsers


def _parse_batch(b: _Obj) -> RunBatch:
    lat = b.child("latency_s") if "latency_s" in b.d else _Obj({}, "")
    return RunBatch(
        index=b.integer("index"),
        cells=b.integer("cells"),
        started_at=b.number("started_at"),
        finished_at=b.number("finished_at"),
        latency_s={name: lat.opt_number(name) for name in lat.d},
    )


def _parse_peer(p: _Obj) -> Peer:
    return Peer(
        name=p.text("name"),
        behaviour=p.opt_text("behaviour") or "",
        joined_at_batch=p.opt_integer("joined_at_batch"),
        time_to_first_cell_s=p.opt_number("time_to_first_cell_s", required=True),
        time_to_full_s=p.opt_number("time_to_full_s", required=True),
        converged=p.flag("converged"),
    )


def _parse_run(d: _Obj, source: Path, label: str) -> RunResult:
    nb, ph = d.child("notebook"), d.child("phases")
    notebook = NotebookInfo(nb.text("path"), nb.integer("cells"), nb.integer("bytes"))
    phases = Phases(*(ph.number(k) for k in (*PHASE_KEYS, "total_s")))
    batches = tuple(_parse_batch(b) for b in d.children("batches"))
    command = d.text("command")
    if command == "profile":
        return RunResult(source, label, command, notebook, phases, batches)
    return RunResult(
        source,
        label,
        command,
        notebook,
        phases,
        batches,
        peers=tuple(_parse_peer(p) for p in d.children("peers")),
        converged=d.flag("converged"),
        cells=d.integer("cells"),
        scenario=d.opt_text("scenario"),
        insert_path=d.opt_text("insert_path"),
        daemon_overhead_ratio=d.opt_number("daemon_overhead_ratio"),
        checks=_checks(d.children("checks"), source) if "checks" in d.d else (),
    )


def _parse_point(p: _Obj) -> ScalePoint:
    return ScalePoint(
        cells=p.integer("cells"),
        total_s=p.number("total_s"),
        ops=p.opt_integer("ops"),
        scan_steps=p.opt_integer("scan_steps"),
        time_to_first_cell_s=p.opt_number("time_to_first_cell_s"),
        time_to_full_s=p.opt_number("time_to_full_s"),
    )


def _parse_scale_path(name: str, d: _Obj) -> ScalePath:
    ci = d.numbers("ci")
    if len(ci) != 2:
        raise SchemaError(f"{d.where}.ci: expected [lo, hi]")
    counters: dict[str, tuple[str, float | None]] = {}
    if "counters" in d.d:
        cs = d.child("counters")
        for cname in cs.d:
            c = cs.child(cname)
            counters[cname] = (c.text("verdict"), c.opt_number("exponent"))
    trend: BatchTrend | None = None
    if d.d.get("batch_trend") is not None:
        t = d.child("batch_trend")
        trend = BatchTrend(
            relative_slope=t.number("relative_slope"),
            robust_relative_slope=t.number("robust_relative_slope"),
            flat=t.flag("flat"),
            cells=t.integer("cells"),
            latencies_s=t.numbers("latencies_s") if "latencies_s" in t.d else (),
        )
    return ScalePath(
        name=name,
        exponent=d.number("exponent"),
        ci=(ci[0], ci[1]),
        verdict=d.text("verdict"),
        r_squared=d.opt_number("r_squared") or math.nan,
        points=tuple(_parse_point(p) for p in d.children("points")),
        counters=counters,
        batch_trend=trend,
    )


def _parse_scale(d: _Obj, source: Path, label: str) -> ScaleResult:
    paths_obj = d.child("paths")
    if not paths_obj.d:
        raise SchemaError("paths: empty")
    paths = {name: _parse_scale_path(name, paths_obj.child(name)) for name in paths_obj.d}
    checks = _checks(d.children("checks"), source) if "checks" in d.d else ()
    if d.d.get("raw_automerge") is None:
        return ScaleResult(source, label, paths, checks=checks)
    raw = d.child("raw_automerge")
    points = tuple(_parse_point(p) for p in raw.children("points"))
    return ScaleResult(source, label, paths, points, raw.opt_number("exponent"), checks)


def _gate_checks(d: _Obj, source: Path) -> list[Check]:
    """The gate's judgements as checks: time, each counter, the exponent (``regressed`` = fail)."""
    checks = []
    if isinstance(d.d.get("time"), dict):
        t = d.child("time")
        detail = f"median ratio {t.number('median_ratio'):.3f}, CI {list(t.numbers('ci'))}"
        detail += f", threshold {t.number('threshold'):g}"
        if t.d.get("inconclusive"):
            detail += " (inconclusive: median above the threshold, CI is not)"
        checks.append(Check(source, "time (paired ratio)", not t.flag("regressed"), detail))
    if isinstance(d.d.get("counters"), dict):
        cs = d.child("counters")
        for name in cs.d:
            c = cs.child(name)
            detail = f"base {c.d.get('base')} -> candidate {c.d.get('candidate')}"
            checks.append(Check(source, f"counter {name}", not c.flag("regressed"), detail))
    if isinstance(d.d.get("exponent"), dict):
        e = d.child("exponent")
        detail = f"k base {e.opt_number('base')} -> candidate {e.opt_number('candidate')}"
        checks.append(Check(source, "scaling exponent", not e.flag("regressed"), detail))
    if d.d.get("error") is not None:
        checks.append(Check(source, "gate ran", False, str(d.d["error"])))
    for key in ("checks", "cases"):  # gate-self-test (and any other list of checks)
        if key in d.d:
            checks += _checks(d.children(key), source)
    return checks


def _parse_gate(d: _Obj, source: Path, label: str) -> GateResult:
    """``{"command": "gate", "verdict", "time": {"median_ratio", "ci", "threshold", "ratios",
    "regressed", ...}, "counters": {name: {..., "regressed"}}, "exponent": {..., "regressed"},
    "flagged_by", "error"?}``; a self-test may give ``ok``/``targets_met`` instead of a verdict
    and ``checks``/``cases`` (``{"name", "ok", "detail"}``)."""
    checks = tuple(_gate_checks(d, source))
    verdict = d.opt_text("verdict")
    flag = next((k for k in ("ok", "passed", "targets_met") if k in d.d), None)
    if verdict is None and flag is not None:
        verdict = "pass" if d.flag(flag) else "fail"
    if verdict is None and not checks:
        raise SchemaError("no verdict and nothing judged")
    result = GateResult(source, label, d.text("command"), verdict or "unknown", checks=checks)
    if not isinstance(d.d.get("time"), dict):
        return result
    t = d.child("time")
    ci = t.numbers("ci")
    return GateResult(
        source,
        label,
        result.command,
        result.verdict,
        threshold=t.number("threshold"),
        ratios=t.numbers("ratios") if "ratios" in t.d else (),
        median_ratio=t.number("median_ratio"),
        ci=(ci[0], ci[1]) if len(ci) == 2 else None,
        checks=checks,
    )


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
        try:
            if command in ("sim", "profile"):
                inputs.runs.append(_parse_run(_Obj(data, ""), path, labels[path]))
            elif command == "scale":
                inputs.scales.append(_parse_scale(_Obj(data, ""), path, labels[path]))
            elif command in ("gate", "gate-self-test"):
                inputs.gates.append(_parse_gate(_Obj(data, ""), path, labels[path]))
            else:
                inputs.skipped.append((path, f"unknown command {command!r}"))
        except SchemaError as exc:
            inputs.skipped.append((path, f"{command}: {exc}"))
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
            d = _Obj(json.loads(path.read_text(encoding="utf-8")), "")
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

    from sim.report_figures import render_figures  # lazy: keeps matplotlib out of CLI start-up
    from sim.report_html import write_index

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        figures = render_figures(inputs, out, asv_filter=args.asv_benchmark or ())
        index = write_index(inputs, figures, out)
    except OSError as exc:
        return _fail(f"cannot write the report to {out}: {exc.strerror or exc}")
    print(f"wrote {index} ({len(figures)} figures)")
    return 0
