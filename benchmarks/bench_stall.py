"""Cross-room stall: another room's time to first cell while one 4 MiB cell loads, ÷ alone.

Measured from outside by :func:`sim.harness.outside.figure_stall`: a real ``nbstream serve``;
the big cell's loader runs in a process of its own, and small rooms open one after another
(every 50 ms) for as long as the big load lasts. ``track_median_ratio`` is the median probe's
ratio to the same room opened on an idle server, ``track_worst_ratio`` the slowest probe's (a
stall anywhere in the load shows there), ``track_big_load_s`` the big load itself. Ratios from
one run on a shared machine: noisy, so read trends, not single points.
Run directly for a one-line report: ``python -m benchmarks.bench_stall [MiB]``.
"""

from __future__ import annotations

import sys
from typing import Any

from .common import check_cache, missing, outside_figure

BIG_CELL_MIB = 4.0


def measure(mib: float = BIG_CELL_MIB) -> dict[str, Any]:
    """``figure_stall`` of the tree under test, one repeat."""
    return outside_figure("figure_stall", mib, 1)


class CrossRoomStall:
    """Another room's first cell while a 4 MiB cell loads, against the same room alone."""

    timeout = 600.0

    def setup_cache(self) -> dict[str, Any]:
        try:
            result = measure()
        except NotImplementedError as exc:
            return missing(exc)
        return {
            "median": result["ratio"],
            "worst": result["worst_ratio"],
            "big_load_s": result["big_load_s"],
        }

    def setup(self, cache: dict[str, Any]) -> None:
        check_cache(cache)

    def track_median_ratio(self, cache: dict[str, Any]) -> float:
        return float(cache["median"])

    def track_worst_ratio(self, cache: dict[str, Any]) -> float:
        return float(cache["worst"])

    def track_big_load_s(self, cache: dict[str, Any]) -> float:
        return float(cache["big_load_s"])

    track_median_ratio.unit = "ratio"  # type: ignore[attr-defined]
    track_worst_ratio.unit = "ratio"  # type: ignore[attr-defined]
    track_big_load_s.unit = "seconds"  # type: ignore[attr-defined]


if __name__ == "__main__":
    mib = float(sys.argv[1]) if len(sys.argv) > 1 else BIG_CELL_MIB
    r = measure(mib)
    print(
        f"big cell {r['big_cell_bytes'] / 2**20:.1f} MiB: other room median "
        f"{r['ratio']:.2f}x alone, worst {r['worst_ratio']:.1f}x "
        f"({r['worst_first_cell_s'] * 1e3:.0f} ms, {r['probes']} probes); "
        f"big load {r['big_load_s']:.2f} s"
    )
