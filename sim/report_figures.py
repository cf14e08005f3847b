"""The report's matplotlib figures (object-oriented API on the Agg canvas: no pyplot, no global
state). Each ``_fig_*`` function takes the loaded inputs and returns a ``Figure`` or ``None``
when its data is absent; :func:`render_figures` writes the PNGs under deterministic names."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from sim.report import (
    AsvHistory,
    AsvSeries,
    GateResult,
    Inputs,
    RunResult,
    ScaleResult,
    loader_peer,
)

__all__ = ["FIGURE_FILES", "FigureInfo", "render_figures"]

DPI = 100
MAX_TIMELINES = 4
MAX_PEER_LINES = 8  # more peers than this: draw a median line and a min-max band instead
MAX_ASV_BENCHMARKS = 6
MAX_ASV_LINES = 6
MAX_XTICKS = 12
# The benchmarks the asv figure shows first when they exist (name suffixes, in this order).
MAIN_ASV_BENCHMARKS = (
    "StreamingLoad.time_load",
    "Scaling.track_time_exponent",
    "MultiPeerLoad.time_load",
    "StreamingLoad.track_scan_steps",
    "StreamingLoad.peakmem_load",
    "SyncToNewPeer.time_sync",
)
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
PATH_COLORS = {"full": "#1f77b4", "naive": "#d62728"}
PHASES = (
    ("read_s", "read", "#8c564b"),
    ("parse_s", "parse", "#9467bd"),
    ("manifest_s", "manifests", "#2ca02c"),
    ("insert_s", "insert", "#1f77b4"),
    ("sync_gen_s", "sync gen", "#ff7f0e"),
    ("network_s", "network", "#17becf"),
)
FIGURE_FILES = (
    "latency_timeline.png",
    "ttfc_vs_size.png",
    "scaling_loglog.png",
    "phases.png",
    "asv_history.png",
    "gate_ratios.png",
)


@dataclass(frozen=True, slots=True)
class FigureInfo:
    filename: str
    title: str
    caption: str


def _t(text: str) -> str:
    """Make data safe as matplotlib text: no mathtext from "$", no legend-hiding leading "_"."""
    text = text.replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _style(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(_t(title), fontsize=10)
    ax.set_xlabel(_t(xlabel))
    ax.set_ylabel(_t(ylabel))
    ax.grid(True, which="major", alpha=0.3)


def _plain(value: float, _pos: object = None) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:g}"


def _log_axes(ax: Axes, sizes: Sequence[float]) -> None:
    """Log-log axes with plain-number labels (call after plotting). The x ticks sit on the
    measured sizes; the y axis gets 1-2-5 ticks when the data span three decades or less."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = sorted({s for s in sizes if s > 0})
    if 0 < len(ticks) <= 10:
        ax.set_xticks(ticks, [_plain(t) for t in ticks])
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(_plain))
    ax.xaxis.set_minor_formatter(NullFormatter())
    lo, hi = ax.get_ylim()
    if lo > 0 and math.log10(hi / lo) <= 3:
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _ms(value: float | None) -> float:
    return math.nan if value is None else value * 1000.0


# --------------------------------------------------------------------------- (1) latency


def _latency_lines(ax: Axes, run: RunResult) -> None:
    xs = [b.index for b in run.batches]
    for i, peer in enumerate(run.peers):
        ys = [_ms(b.latency_s.get(peer.name)) for b in run.batches]
        if not any(math.isfinite(y) for y in ys):
            continue
        label = f"{peer.name} ({peer.behaviour})" if peer.behaviour else peer.name
        ax.plot(
            xs,
            ys,
            marker=None if len(xs) > 60 else "o",
            markersize=3,
            linewidth=1.2,
            color=COLORS[i % len(COLORS)],
            label=_t(_short(label, 30)),
        )


def _latency_band(ax: Axes, run: RunResult) -> None:
    """Too many peers for one line each: the loading peer, the median and the min-max band."""
    xs, lows, mids, highs = [], [], [], []
    for b in run.batches:
        values = [v * 1000.0 for v in b.latency_s.values() if v is not None and math.isfinite(v)]
        if values:
            xs.append(b.index)
            lows.append(min(values))
            mids.append(statistics.median(values))
            highs.append(max(values))
    ax.fill_between(xs, lows, highs, color=COLORS[0], alpha=0.2, label="min-max over peers")
    ax.plot(xs, mids, color=COLORS[0], linewidth=1.2, label=f"median of {len(run.peers)} peers")
    peer = loader_peer(run)
    if peer is not None:
        ys = [_ms(b.latency_s.get(peer.name)) for b in run.batches]
        ax.plot(
            [b.index for b in run.batches],
            ys,
            color=COLORS[1],
            linewidth=1.2,
            label=_t(_short(f"{peer.name} (loading peer)", 30)),
        )


def _fig_latency(inputs: Inputs) -> tuple[Figure, str] | None:
    sims = [r for r in inputs.sims if r.batches and r.peers][:MAX_TIMELINES]
    if not sims:
        return None
    fig = _new_figure(10, 0.6 + 3.0 * len(sims))
    axes = fig.subplots(len(sims), 1, squeeze=False)[:, 0]
    for ax, run in zip(axes, sims, strict=False):
        if len(run.peers) > MAX_PEER_LINES:
            _latency_band(ax, run)
        else:
            _latency_lines(ax, run)
        where = ", ".join(x for x in (run.scenario, run.insert_path) if x)
        title = f"{run.label}: {run.notebook.cells} cells" + (f" ({where})" if where else "")
        _style(ax, title, "batch index", "latency (ms)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8, loc="upper left", ncol=4)
    fig.suptitle("Per-batch latency: batch start → arrival at each peer", fontsize=12)
    shown = ", ".join(r.label for r in sims)
    more = len(inputs.sims) - len(sims)
    caption = f"One panel per sim result ({shown})" + (
        f"; {more} more not shown." if more > 0 else "."
    )
    return fig, caption


# --------------------------------------------------------------------------- (2) ttfc


_Curve = dict[str, list[tuple[int, float]]]  # metric ("first" / "full") -> (cells, seconds)


def _size_series(inputs: Inputs) -> dict[str, _Curve]:
    """Time to first cell and to full load against size, per source: each sim scenario (its
    loading peer), profile runs (first batch inserted / total), and the scale sweep's paths.
    Only sources that cover at least two sizes are kept."""
    series: dict[str, _Curve] = {}

    def add(source: str, metric: str, cells: int, value: float | None) -> None:
        if value is not None and math.isfinite(value) and value > 0:
            series.setdefault(source, {}).setdefault(metric, []).append((cells, value))

    for run in inputs.runs:
        peer = loader_peer(run)
        if peer is not None:
            source = f"sim {run.scenario or ''} {run.insert_path or ''}".strip()
            add(source, "first", run.notebook.cells, peer.time_to_first_cell_s)
            add(source, "full", run.notebook.cells, peer.time_to_full_s)
        elif run.command == "profile" and run.batches:
            first = min(run.batches, key=lambda b: b.index)
            add("profile (1st batch / total)", "first", run.notebook.cells, first.finished_at)
            add("profile (1st batch / total)", "full", run.notebook.cells, run.phases.total_s)
    for scale in inputs.scales[:1]:
        for path in scale.paths.values():
            for p in path.points:
                add(f"scale {path.name}", "first", p.cells, p.time_to_first_cell_s)
                add(f"scale {path.name}", "full", p.cells, p.time_to_full_s)
    return {
        source: {m: _median_per_size(pts) for m, pts in curves.items()}
        for source, curves in series.items()
        if len({c for pts in curves.values() for c, _ in pts}) >= 2
    }


def _median_per_size(points: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    by_size: dict[int, list[float]] = {}
    for cells, value in points:
        by_size.setdefault(cells, []).append(value)
    return [(c, statistics.median(v)) for c, v in sorted(by_size.items())]


def _boxes_over_peers(ax: Axes, run: RunResult) -> None:
    """Too many peers for bars: the distribution of both times over peers, loader marked."""
    first = [v for p in run.peers if math.isfinite(v := _ms(p.time_to_first_cell_s))]
    full = [v for p in run.peers if math.isfinite(v := _ms(p.time_to_full_s))]
    ax.boxplot([first, full], tick_labels=["time to first cell", "time to full"], widths=0.5)
    peer = loader_peer(run)
    if peer is not None:
        marks = [_ms(peer.time_to_first_cell_s), _ms(peer.time_to_full_s)]
        ax.plot([1, 2], marks, "D", color=COLORS[1], label=_t(_short(peer.name, 20)))
        ax.legend(fontsize=8, loc="upper left")
    if first and full and min(first + full) > 0:  # the two differ by orders of magnitude
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    _style(ax, f"{run.label}: {run.notebook.cells} cells, {len(run.peers)} peers", "", "time (ms)")


def _bars_per_peer(ax: Axes, run: RunResult) -> None:
    if len(run.peers) > MAX_PEER_LINES:
        _boxes_over_peers(ax, run)
        return
    names = [_t(_short(p.name, 16)) for p in run.peers]
    first = [_ms(p.time_to_first_cell_s) for p in run.peers]
    full = [_ms(p.time_to_full_s) for p in run.peers]
    xs = list(range(len(names)))
    for offset, values, label, color in (
        (-0.2, first, "time to first cell", "#2ca02c"),
        (0.2, full, "time to full", "#1f77b4"),
    ):
        bars = ax.bar([x + offset for x in xs], values, width=0.4, label=label, color=color)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    top = max((v for v in first + full if math.isfinite(v)), default=1.0)
    ax.set_ylim(0, top * 1.3 or 1.0)
    ax.set_xticks(
        xs, names, rotation=20 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center"
    )
    _style(ax, f"{run.label}: {run.notebook.cells} cells, per peer", "peer", "time (ms)")
    ax.legend(fontsize=8, loc="upper center", ncol=2)


def _fig_ttfc(inputs: Inputs) -> tuple[Figure, str] | None:
    series = _size_series(inputs)
    sizes = {c for curves in series.values() for pts in curves.values() for c, _ in pts}
    sims = [r for r in inputs.sims if r.peers]
    primary = sims[0] if sims else None
    vs_size = bool(series)
    if not vs_size and primary is None:
        return None
    panels = int(vs_size) + int(primary is not None)
    fig = _new_figure(6.0 * panels, 4.4)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    if vs_size:
        ax = axes[0]
        for i, (source, curves) in enumerate(sorted(series.items())):
            color = PATH_COLORS.get(source.removeprefix("scale "), COLORS[(i + 2) % len(COLORS)])
            for metric, style in (("first", "-"), ("full", "--")):
                pts = curves.get(metric, [])
                ax.plot(
                    [c for c, _ in pts],
                    [v * 1000.0 for _, v in pts],
                    style,
                    marker="o",
                    markersize=4,
                    color=color,
                )
            ax.plot([], [], "-o", color=color, markersize=4, label=_t(_short(source, 30)))
        ax.plot([], [], "-", color="#333333", label="time to first cell")
        ax.plot([], [], "--", color="#333333", label="time to full load")
        _log_axes(ax, sorted(sizes))
        _style(ax, "Against notebook size (median per size)", "notebook size (cells)", "time (ms)")
        ax.legend(fontsize=8, loc="upper left")
    if primary is not None:
        _bars_per_peer(axes[-1], primary)
    fig.suptitle("Time to first cell", fontsize=12)
    parts = []
    if vs_size:
        parts.append(
            f"Left: time to first cell (solid) and to full load (dashed) over {len(sizes)} "
            f"notebook sizes, one colour per source ({', '.join(sorted(series))})."
        )
    if primary is not None:
        parts.append(f"{'Right' if vs_size else 'Bars'}: each peer of {primary.label}.")
    return fig, " ".join(parts)


# --------------------------------------------------------------------------- (3) scaling


def _fit_line(points: Sequence[tuple[float, float]], k: float) -> tuple[float, float, float] | None:
    """Intercept of log y = b + k log x (least squares with the reported slope k)."""
    logs = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if not logs:
        return None
    b = statistics.fmean(ly - k * lx for lx, ly in logs)
    xs = [lx for lx, _ in logs]
    return b, min(xs), max(xs)


def _plot_fit(
    ax: Axes,
    pts: Sequence[tuple[float, float]],
    k: float,
    ci: tuple[float, float] | None,
    color: str,
) -> None:
    fit = _fit_line(pts, k)
    if fit is None:
        return
    b, lo, hi = fit
    xs = [math.exp(lo + (hi - lo) * i / 20) for i in range(21)]
    ax.plot(xs, [math.exp(b) * x**k for x in xs], "-", color=color, linewidth=1.5)
    if ci is not None and all(math.isfinite(c) for c in ci):
        mid = (lo + hi) / 2  # pivot the CI band at the centre of the fitted range
        ys = [(b + k * mid + c * (math.log(x) - mid)) for x in xs for c in ci]
        lows = [math.exp(min(ys[2 * i], ys[2 * i + 1])) for i in range(len(xs))]
        highs = [math.exp(max(ys[2 * i], ys[2 * i + 1])) for i in range(len(xs))]
        ax.fill_between(xs, lows, highs, color=color, alpha=0.12, linewidth=0)


def _fig_scaling(inputs: Inputs) -> tuple[Figure, str] | None:
    if not inputs.scales:
        return None
    scale: ScaleResult = inputs.scales[0]
    trends = [p for p in scale.paths.values() if p.batch_trend and p.batch_trend.latencies_s]
    has_counters = any(pt.ops or pt.scan_steps for p in scale.paths.values() for pt in p.points)
    # Top row: load time and counters side by side; the per-batch trend spans a second row.
    top = "TC" if has_counters else "T"  # T: time, C: counters, R: per-batch trend
    layout = f"{top};{'R' * len(top)}" if trends else top
    fig = _new_figure(11.0 if has_counters else 7.0, 4.4 + (3.2 if trends else 0.0))
    named = fig.subplot_mosaic(layout, height_ratios=[4, 3] if trends else None)
    axes = [named[k] for k in "TCR" if k in named]
    ax = axes.pop(0)
    for i, path in enumerate(scale.paths.values()):
        color = PATH_COLORS.get(path.name, COLORS[(i + 2) % len(COLORS)])
        pts = [(float(p.cells), p.total_s) for p in path.points]
        ax.plot([x for x, _ in pts], [y for _, y in pts], "o", color=color, markersize=4, alpha=0.7)
        _plot_fit(ax, pts, path.exponent, path.ci, color)
        label = (
            f"{path.name}: k={path.exponent:.2f} [{path.ci[0]:.2f}, {path.ci[1]:.2f}] "
            f"{path.verdict}"
        )
        ax.plot([], [], "o-", color=color, label=_t(label))
    if scale.raw_points:
        pts = [(float(p.cells), p.total_s) for p in scale.raw_points]
        ax.plot([x for x, _ in pts], [y for _, y in pts], "s", color="#7f7f7f", markersize=3)
        if scale.raw_exponent is not None:
            _plot_fit(ax, pts, scale.raw_exponent, None, "#7f7f7f")
        k = f": k={scale.raw_exponent:.2f}" if scale.raw_exponent is not None else ""
        ax.plot([], [], "s-", color="#7f7f7f", label=f"raw automerge{k}")
    _log_axes(ax, [p.cells for path in scale.paths.values() for p in path.points])
    _style(
        ax, "Load time vs size (fit, 95% CI band)", "notebook size (cells)", "total load time (s)"
    )
    ax.legend(fontsize=8, loc="upper left")
    if has_counters:
        ax = axes.pop(0)
        for i, path in enumerate(scale.paths.values()):
            color = PATH_COLORS.get(path.name, COLORS[(i + 2) % len(COLORS)])
            for counter, marker, style in (("ops", "o", "-"), ("scan_steps", "^", ":")):
                pts = sorted(
                    (p.cells, float(getattr(p, counter)))
                    for p in path.points
                    if getattr(p, counter)
                )
                verdict = path.counters.get(counter, ("", None))[0]
                if not pts:  # all zero: cannot sit on a log axis, so say it in the legend
                    if any(getattr(p, counter) == 0 for p in path.points):
                        ax.plot(
                            [],
                            [],
                            style,
                            marker=marker,
                            color=color,
                            alpha=0.5,
                            label=_t(f"{path.name} {counter}: always 0"),
                        )
                    continue
                ax.plot(
                    [c for c, _ in pts],
                    [v for _, v in pts],
                    style,
                    marker=marker,
                    markersize=4,
                    color=color,
                    label=_t(f"{path.name} {counter}" + (f": {verdict}" if verdict else "")),
                )
        _log_axes(ax, [p.cells for path in scale.paths.values() for p in path.points])
        _style(ax, "Deterministic counters vs size", "notebook size (cells)", "count per load")
        ax.legend(fontsize=8, loc="upper left")
    if trends:
        ax = axes.pop(0)
        for i, path in enumerate(trends):
            assert path.batch_trend is not None
            trend = path.batch_trend
            color = PATH_COLORS.get(path.name, COLORS[(i + 2) % len(COLORS)])
            flat = "flat" if trend.flat else "NOT flat"
            ax.plot(
                range(len(trend.latencies_s)),
                [v * 1000 for v in trend.latencies_s],
                "-",
                color=color,
                linewidth=1,
                label=_t(
                    f"{path.name} @ {trend.cells} cells: {flat} "
                    f"(rel. slope {trend.robust_relative_slope:+.2f})"
                ),
            )
        ax.set_ylim(bottom=0)
        _style(ax, "Per-batch latency across one large load", "batch index", "batch latency (ms)")
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Scaling: full vs naive insert path ({scale.label})", fontsize=12)
    return fig, (
        "Log-log load time against notebook size with the fitted power law n^k "
        "(exponent, 95% CI and verdict in the legend)"
        + ("; deterministic counters" if has_counters else "")
        + ("; per-batch latency trend at the largest size" if trends else "")
        + "."
    )


# --------------------------------------------------------------------------- (4) phases


def _fig_phases(inputs: Inputs) -> tuple[Figure, str] | None:
    runs = inputs.runs
    if not runs:
        return None
    fig = _new_figure(12, 1.6 + 0.45 * len(runs))
    ax_abs, ax_pct = fig.subplots(1, 2, width_ratios=(3, 2), sharey=True)
    labels = [_t(_short(f"{r.label} ({r.notebook.cells} cells)", 32)) for r in runs]
    ys = list(range(len(runs)))
    rows = []
    for run in runs:
        parts = [getattr(run.phases, key) * 1000.0 for key, _, _ in PHASES]
        other = max(0.0, run.phases.total_s * 1000.0 - sum(parts))
        rows.append([*parts, other])
    names = [*(name for _, name, _ in PHASES), "other"]
    colors = [*(c for _, _, c in PHASES), "#d9d9d9"]
    for ax, percent in ((ax_abs, False), (ax_pct, True)):
        left = [0.0] * len(runs)
        for j, (name, color) in enumerate(zip(names, colors, strict=False)):
            widths = []
            for row in rows:
                total = sum(row)
                widths.append((100.0 * row[j] / total if total > 0 else 0.0) if percent else row[j])
            ax.barh(ys, widths, left=left, color=color, label=name, height=0.6)
            left = [a + b for a, b in zip(left, widths, strict=False)]
        ax.grid(True, axis="x", alpha=0.3)
    for y, run in zip(ys, runs, strict=False):
        ax_abs.plot([run.phases.total_s * 1000.0], [y], "k|", markersize=14)
    ax_abs.set_yticks(ys, labels)
    ax_abs.invert_yaxis()
    ax_abs.set_xlabel("time (ms); | = reported total")
    ax_abs.set_title("Absolute", fontsize=10)
    ax_pct.set_xlabel("share of total (%)")
    ax_pct.set_xlim(0, 100)
    ax_pct.set_title("Share", fontsize=10)
    fig.legend(
        *ax_abs.get_legend_handles_labels(), loc="outside lower center", ncol=len(names), fontsize=8
    )
    fig.suptitle("Load phases per result", fontsize=12)
    return fig, "Stacked phase times per sim/profile result; 'other' is total minus the phases."


# --------------------------------------------------------------------------- (5) asv


def _select_asv(history: AsvHistory, filters: Sequence[str]) -> list[str]:
    """The benchmarks to plot: those matching *filters*, else the project's main ones
    (:data:`MAIN_ASV_BENCHMARKS`, when present) topped up with time, track and peakmem
    benchmarks that have the longest history."""
    counts: dict[str, int] = {}
    for s in history.series:
        counts[s.benchmark] = max(counts.get(s.benchmark, 0), len(s.points))
    names = list(counts)
    if filters:
        names = [n for n in names if any(f in n for f in filters)]
    rank = {"time": 0, "track": 1, "peakmem": 2, "mem": 3}

    def key(name: str) -> tuple[int, int, int, str]:
        main = next((i for i, m in enumerate(MAIN_ASV_BENCHMARKS) if name.endswith(m)), 99)
        bench = history.benchmarks.get(name)
        return (main, rank.get(bench.type if bench else "", 4), -counts[name], name)

    return sorted(names, key=key)[:MAX_ASV_BENCHMARKS]


def _asv_lines(series: list[AsvSeries]) -> tuple[list[AsvSeries], str]:
    """At most MAX_ASV_LINES series: with more parameter sets than that, keep those sharing the
    largest value of the first parameter (e.g. ``cells=800``) and say so in the title."""
    if len(series) <= MAX_ASV_LINES:
        return series, ""
    first = series[-1].params.split(", ")[0]  # natural order: the last has the largest value
    kept = [s for s in series if s.params.split(", ")[0] == first]
    return kept[:MAX_ASV_LINES], first


def _asv_scale(kind: str, unit: str, values: Sequence[float]) -> tuple[float, str]:
    peak = max((abs(v) for v in values), default=0.0)
    if kind == "time" or unit == "seconds":
        for factor, name in ((1.0, "s"), (1e3, "ms"), (1e6, "µs")):
            if peak * factor >= 1.0:
                return factor, f"time ({name})"
        return 1e9, "time (ns)"
    if kind in ("peakmem", "mem") or unit == "bytes":
        return 1 / 2**20, "peak memory (MiB)"
    return 1.0, unit if unit and unit != "unit" else "value"


def _fig_asv(inputs: Inputs, filters: Sequence[str]) -> tuple[Figure, str] | None:
    history = inputs.asv
    if history is None:
        return None
    names = _select_asv(history, filters)
    if not names:
        return None
    rank = {c: i for i, (c, _) in enumerate(history.commits)}
    cols = 1 if len(names) == 1 else 2
    rows = math.ceil(len(names) / cols)
    fig = _new_figure(6.0 * cols, 0.8 + 3.4 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    envs = {s.machine_env for s in history.series}
    for ax, name in zip(axes, names, strict=False):
        bench = history.benchmarks.get(name)
        series, fixed = _asv_lines([s for s in history.series if s.benchmark == name])
        factor, unit = _asv_scale(
            bench.type if bench else "",
            bench.unit if bench else "",
            [p.value for s in series for p in s.points],
        )
        for i, s in enumerate(series):
            label = s.params.removeprefix(fixed).removeprefix(", ") or "value"
            if len(envs) > 1:
                label += f" [{s.machine_env}]"
            ax.plot(
                [rank[p.commit] for p in s.points],
                [p.value * factor for p in s.points],
                marker="o",
                markersize=4,
                color=COLORS[i % len(COLORS)],
                label=_t(_short(label, 36)),
            )
        title = _short(name, 60) + (f"\n({fixed})" if fixed else "")
        _style(ax, title, "commit (oldest → newest)", unit)
        step = max(1, math.ceil(len(history.commits) / MAX_XTICKS))
        ticks = list(range(0, len(history.commits), step))
        ax.set_xticks(
            ticks, [history.commits[t][0][:8] for t in ticks], rotation=30, ha="right", fontsize=8
        )
        ax.set_xlim(-0.5, len(history.commits) - 0.5)
        peak = max((p.value * factor for s in series for p in s.points), default=1.0)
        ax.set_ylim(0, peak * 1.35 if peak > 0 else 1.0)  # headroom for the legend
        if len(series) > 1 or series[0].params:
            ax.legend(fontsize=7, loc="upper left", ncol=2)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    fig.suptitle(f"asv history over {len(history.commits)} commit(s)", fontsize=12)
    return fig, (
        f"Main asv benchmarks by commit date ({len(history.files)} result file(s) under "
        f"{history.root}); one line per parameter set."
    )


# --------------------------------------------------------------------------- (6) gate


def _fig_gate(inputs: Inputs) -> tuple[Figure, str] | None:
    gate: GateResult | None = next((g for g in inputs.gates if g.ratios), None)
    if gate is None:
        return None
    fig = _new_figure(8, 4.2)
    ax = fig.subplots()
    values = list(gate.ratios)
    marks = [*values, 1.0, *([gate.threshold] if gate.threshold is not None else [])]
    lo, hi = min(marks), max(marks)
    pad = (hi - lo) * 0.05 or 0.05
    bins = [lo - pad + (hi - lo + 2 * pad) * i / 30 for i in range(31)]
    ax.hist(values, bins=bins, color=COLORS[0], alpha=0.85, label=f"{len(values)} paired ratios")
    if gate.ci is not None:
        ax.axvspan(*gate.ci, color=COLORS[0], alpha=0.12, label="CI of the median ratio")
    if gate.median_ratio is not None:
        ax.axvline(gate.median_ratio, color="#1d2330", label=f"median {gate.median_ratio:.3f}")
    ax.axvline(1.0, color="#777777", linestyle=":", label="no change (1.0)")
    if gate.threshold is not None:
        ax.axvline(
            gate.threshold, color="#d62728", linestyle="--", label=f"threshold {gate.threshold:g}"
        )
    _style(
        ax,
        f"{gate.label}: verdict {gate.verdict}",
        "paired ratio (candidate / base time; > 1 is slower)",
        "pairs",
    )
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    fig.suptitle("Performance gate: paired time ratios", fontsize=12)
    return fig, (
        f"Distribution of the {len(values)} interleaved candidate/base time ratios from "
        f"{gate.label}; the gate fails on time when the whole CI lies right of the red line."
    )


# --------------------------------------------------------------------------- driver


def render_figures(
    inputs: Inputs, out: Path, *, asv_filter: Sequence[str] = ()
) -> list[FigureInfo]:
    """Write every figure whose data is present into *out*; remove stale ones (only our own
    deterministic file names) so the page never shows yesterday's figure."""
    builders: list[tuple[str, str, Callable[[], tuple[Figure, str] | None]]] = [
        ("latency_timeline.png", "Per-batch latency per peer", lambda: _fig_latency(inputs)),
        ("ttfc_vs_size.png", "Time to first cell", lambda: _fig_ttfc(inputs)),
        ("scaling_loglog.png", "Scaling, full vs naive", lambda: _fig_scaling(inputs)),
        ("phases.png", "Load phases", lambda: _fig_phases(inputs)),
        ("asv_history.png", "asv history", lambda: _fig_asv(inputs, asv_filter)),
        ("gate_ratios.png", "Performance gate", lambda: _fig_gate(inputs)),
    ]
    written: list[FigureInfo] = []
    for filename, title, build in builders:
        target = out / filename
        made = build()
        if made is None:
            target.unlink(missing_ok=True)
            continue
        fig, caption = made
        fig.savefig(target, format="png", dpi=DPI, metadata={"Software": None})
        written.append(FigureInfo(filename, title, caption))
    return written
