"""Shared plumbing of the report's figures: the palette, the figure factory and axis styling.

The resolution (:data:`DPI`), line colours (:data:`COLORS`, :data:`PATH_COLORS`), a figure on the
Agg canvas (``_new_figure``: no pyplot, no global state), matplotlib-safe text (``_t``,
``_short``), title/label/grid styling (``_style``) and log-log axes with plain-number ticks
(``_log_axes``). Used by :mod:`sim.report.figures` and :mod:`sim.report.charts_scaling`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

__all__ = ["COLORS", "DPI", "PATH_COLORS"]

DPI = 100
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
PATH_COLORS = {"full": "#1f77b4", "naive": "#d62728"}


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
