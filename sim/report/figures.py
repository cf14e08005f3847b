"""The report's matplotlib figures (object-oriented API on the Agg canvas: no pyplot, no global
state). Each ``_fig_*`` function takes the loaded inputs and returns a ``Figure`` or ``None``
when its data is absent; :func:`render_figures` writes the PNGs under deterministic names.

This module holds the per-run figures (latency timeline, time to first cell, load phases) and
the driver; the scaling, asv and gate figures live in :mod:`sim.report.charts_scaling` and the
shared palette and styling helpers in :mod:`sim.report.style`."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

# The asv limits moved with the asv figure; re-exported so they stay importable from here.
from sim.report.charts_scaling import MAIN_ASV_BENCHMARKS as MAIN_ASV_BENCHMARKS
from sim.report.charts_scaling import MAX_ASV_BENCHMARKS as MAX_ASV_BENCHMARKS
from sim.report.charts_scaling import MAX_ASV_LINES as MAX_ASV_LINES
from sim.report.charts_scaling import MAX_XTICKS as MAX_XTICKS
from sim.report.charts_scaling import _fig_asv, _fig_gate, _fig_scaling
from sim.report.data import Inputs, RunResult, loader_peer
from sim.report.style import (
    COLORS,
    DPI,
    PATH_COLORS,
    _log_axes,
    _new_figure,
    _plain,
    _short,
    _style,
    _t,
)

__all__ = ["FIGURE_FILES", "FigureInfo", "render_figures"]

MAX_TIMELINES = 4
MAX_PEER_LINES = 8  # more peers than this: draw a median line and a min-max band instead
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
