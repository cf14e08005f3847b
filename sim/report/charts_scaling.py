"""The report's performance-trend figures: scaling with size, asv history and the gate's ratios.

``_fig_scaling`` (log-log load time against notebook size with the fitted power law, the
deterministic counters and the per-batch latency trend), ``_fig_asv`` (asv benchmarks by commit)
and ``_fig_gate`` (the paired time ratios of a performance gate run). Like the other figure
builders they take the loaded inputs and return ``(Figure, caption)`` or ``None`` when their
data is absent; :func:`sim.report.figures.render_figures` writes them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sim.report.data import AsvHistory, AsvSeries, GateResult, Inputs, ScaleResult
from sim.report.style import (
    COLORS,
    PATH_COLORS,
    _log_axes,
    _new_figure,
    _short,
    _style,
    _t,
)

__all__ = ["MAIN_ASV_BENCHMARKS", "MAX_ASV_BENCHMARKS", "MAX_ASV_LINES", "MAX_XTICKS"]

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
