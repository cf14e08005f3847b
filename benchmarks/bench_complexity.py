"""Scaling: fitted exponents of the streaming load over a size sweep (O(n) vs O(n^2)).

``setup_cache`` runs the sweep once per commit (full path 50 -> 800 cells, naive path 50 -> 400,
``SWEEP_REPEATS`` loads per size) and the ``track_*`` benchmarks report fits from
``sim.analysis.complexity``. A load that is linear in the number of cells has a time exponent
near 1 (a
little above: Automerge's per-transaction cost grows slowly with the document); the naive path's
``scan_steps`` exponent is exactly ~2. The counter exponents are deterministic; the time exponent
is a fit over noisy times, so asv shows it with its run-to-run spread.
"""

from __future__ import annotations

from typing import Any

from .common import (
    INSERT_PATHS,
    SWEEP_FULL,
    SWEEP_NAIVE,
    SWEEP_REPEATS,
    NotebookFiles,
    check_cache,
    missing,
    require,
    require_load_api,
    run_load,
)


def _sweep(insert_path: str, files: NotebookFiles) -> dict[str, Any]:
    sizes = SWEEP_FULL if insert_path == "full" else SWEEP_NAIVE
    points: list[tuple[int, float, int, int]] = []
    batch_latencies: tuple[float, ...] = ()
    for cells in sizes:
        for _ in range(SWEEP_REPEATS):
            result = run_load(files.path(cells), insert_path=insert_path)
            points.append((cells, result.load_s, result.ops, result.scan_steps))
            if cells == sizes[-1]:
                batch_latencies = result.batch_latencies_s
    return {"points": points, "batch_latencies_s": batch_latencies}


class Scaling:
    """Exponent ``k`` of ``y ~ a * cells^k`` for load time and the deterministic counters."""

    params = (list(INSERT_PATHS),)
    param_names = ("insert_path",)
    timeout = 900.0

    def setup_cache(self) -> dict[str, Any]:
        try:
            require_load_api()
            require("sim.analysis.complexity", "fit_power_law", "fit_counter", "fit_linear_trend")
        except NotImplementedError as exc:
            return missing(exc)
        files = NotebookFiles()
        try:
            return {path: _sweep(path, files) for path in INSERT_PATHS}
        finally:
            files.cleanup()

    setup_cache.timeout = 900.0  # type: ignore[attr-defined]

    def setup(self, cache: dict[str, Any], insert_path: str) -> None:
        self.sweep = check_cache(cache)[insert_path]
        self.complexity = require("sim.analysis.complexity", "fit_power_law", "fit_counter")
        self.points = self.sweep["points"]

    def _fit(self) -> Any:
        ns = [float(p[0]) for p in self.points]
        return self.complexity.fit_power_law(ns, [p[1] for p in self.points])

    def _counter_exponent(self, column: int) -> float:
        ns = [float(p[0]) for p in self.points]
        fit = self.complexity.fit_counter(ns, [float(p[column]) for p in self.points])
        return 0.0 if fit is None else float(fit.exponent)  # None: identically zero

    def track_time_exponent(self, cache: dict[str, Any], insert_path: str) -> float:
        return float(self._fit().exponent)

    track_time_exponent.unit = "k (load time ~ cells^k)"  # type: ignore[attr-defined]

    def track_time_exponent_upper(self, cache: dict[str, Any], insert_path: str) -> float:
        return float(self._fit().ci[1])

    track_time_exponent_upper.unit = "k, 95% CI upper bound"  # type: ignore[attr-defined]

    def track_ops_exponent(self, cache: dict[str, Any], insert_path: str) -> float:
        return self._counter_exponent(2)

    track_ops_exponent.unit = "k (ops ~ cells^k)"  # type: ignore[attr-defined]

    def track_scan_steps_exponent(self, cache: dict[str, Any], insert_path: str) -> float:
        return self._counter_exponent(3)

    track_scan_steps_exponent.unit = "k (cells visited ~ cells^k; 0 = none)"  # type: ignore[attr-defined]

    def track_batch_latency_growth(self, cache: dict[str, Any], insert_path: str) -> float:
        """Fitted last-batch / first-batch latency at the largest size: ~1 = flat per batch.

        ``1 + robust_relative_slope`` of a Theil-Sen line through per-batch latencies, so that
        asv's ratio between two commits means something (a slope near 0 has no useful ratio).
        """
        latencies = list(self.sweep["batch_latencies_s"])
        trend = require("sim.analysis.complexity", "fit_linear_trend").fit_linear_trend(
            [float(i) for i in range(len(latencies))], latencies
        )
        return 1.0 + float(trend.robust_relative_slope)

    track_batch_latency_growth.unit = "last/first batch latency"  # type: ignore[attr-defined]
