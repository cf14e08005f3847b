"""How often the complexity detectors give a wrong verdict, over seeded synthetic cost curves.

Issue 13 item 8. Each curve is a cost ``y(n)`` of one of four shapes, with parameters drawn from
the curve's seed:

* ``linear``: ``c + a·n``;
* ``nlogn``: ``c + a·n·log2(n)``;
* ``quadratic``: ``c + a·n + b·n²``, the quadratic term equal to the linear one at a crossover
  ``n0`` drawn from 200-1600 cells (a scan per insert, diluted by the per-cell work);
* ``quadratic_above``: ``c + a·n + b·max(0, n - s)²`` with ``s`` drawn from 200-800 cells and
  ``b`` such that the curve is 2-8x the linear one at 1600 cells (a cost that starts only once the
  document is large, as in the issue's 3.1x-at-1600 regression).

``c`` (a fixed start cost) is 0-50 cells' worth of per-cell work. Each detector sees the curve
through its own measurement and noise, and gives its verdict with the code ``nbstream scale``
and the gate use:

* ``time``: ``nbstream scale``'s advisory wall-time verdict (:func:`fit_power_law` and
  :func:`classify_exponent`) on the default full-path sweep, 50-3200 cells x 2 repeats, each load
  with multiplicative log-normal noise. ``calm``: sigma 0.12, the robust sigma of 30 loads of
  200 cells on this machine at load average 1.1 (the gate's samples, 2026-12-07); ``busy``:
  sigma 0.25 and 10 % of loads stalled x1.5-3.
* ``instructions``: the exponent of instruction counts at 50 and 100 cells (``scale``'s
  deterministic verdict, valgrind), noise sigma 0.0013 (the measured spread of counts between
  processes, sd 0.13 %).
* ``counts_large``: the exponent of exact counts (calls, ops) between 200 and 1600 cells, as the
  gate's large load sees them, no noise.
* ``scale calls``: ``nbstream scale``'s core calls at 50-1600 cells (:func:`classify_exact_sweep`:
  the whole-sweep exponent, unless the steepest local exponent between neighbouring sizes
  crosses 1.15), no noise (the counts repeat to one sync round, ≈ 70 calls of 8,000-280,000).

A verdict is **wrong** when it would mislead: ``linear`` called anything but linear or
sublinear (a false alarm: ``scale`` fails the full path); ``nlogn`` called quadratic;
``quadratic`` or ``quadratic_above`` called linear or sublinear (a miss). Run
``python -m sim.analysis.error_rates`` for the table (``--json`` for the figures).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sim.analysis.complexity import (
    PowerLawFit,
    classify_exact_sweep,
    classify_exponent,
    fit_power_law,
    log_slope,
)

__all__ = ["CURVES", "DETECTORS", "Curve", "draw_curve", "error_rates", "is_wrong", "main"]

CURVES = ("linear", "nlogn", "quadratic", "quadratic_above")
TIME_SIZES = (50, 100, 200, 400, 800, 1600, 3200)
TIME_REPEATS = 2
INSTRUCTION_SIZES = (50, 100)
LARGE_SIZES = (200, 1600)
CALL_SIZES = (50, 100, 200, 400, 800, 1600)  # nbstream scale --calls-max-cells 1600
CALM_SIGMA = 0.12
BUSY_SIGMA = 0.25
BUSY_STALL_RATE = 0.10
INSTRUCTION_SIGMA = 0.0013


@dataclass(frozen=True, slots=True)
class Curve:
    """One synthetic cost curve: ``cost(n)`` in units of one cell's linear work."""

    shape: str
    fixed: float  # c
    b: float  # the quadratic coefficient (0 for linear / nlogn)
    start: float  # s: where the quadratic term starts (0: from the first cell)

    def cost(self, n: float) -> float:
        if self.shape == "nlogn":
            return self.fixed + n * math.log2(n)
        return self.fixed + n + self.b * max(0.0, n - self.start) ** 2


def draw_curve(shape: str, seed: int) -> Curve:
    """The curve of ``shape`` drawn from ``seed`` (a pure function of both)."""
    rng = random.Random(f"curve:{shape}:{seed}")
    fixed = rng.uniform(0.0, 50.0)
    if shape in ("linear", "nlogn"):
        return Curve(shape, fixed, 0.0, 0.0)
    if shape == "quadratic":
        crossover = rng.uniform(200.0, 1600.0)  # b·n0² = n0
        return Curve(shape, fixed, 1.0 / crossover, 0.0)
    if shape == "quadratic_above":
        start = rng.uniform(200.0, 800.0)
        factor = rng.uniform(2.0, 8.0)  # cost(1600) = factor x the linear curve's
        b = (factor - 1.0) * (fixed + 1600.0) / (1600.0 - start) ** 2
        return Curve(shape, fixed, b, start)
    raise ValueError(f"unknown curve shape {shape!r}; expected one of {', '.join(CURVES)}")


Detector = Callable[[Curve, random.Random], str]


def _time(sigma: float, stall_rate: float) -> Detector:
    def detect(curve: Curve, rng: random.Random) -> str:
        ns, ys = [], []
        for _ in range(TIME_REPEATS):
            for n in TIME_SIZES:
                y = curve.cost(n) * math.exp(rng.gauss(0.0, sigma))
                if stall_rate and rng.random() < stall_rate:
                    y *= rng.uniform(1.5, 3.0)
                ns.append(float(n))
                ys.append(y)
        return classify_exponent(fit_power_law(ns, ys))

    return detect


def _exact(sizes: Sequence[int], sigma: float) -> Detector:
    def detect(curve: Curve, rng: random.Random) -> str:
        ys = [curve.cost(n) * math.exp(rng.gauss(0.0, sigma)) for n in sizes]
        k = log_slope([float(n) for n in sizes], ys)
        return classify_exponent(PowerLawFit(k, (k, k), 1.0, 1.0, 2))  # an exact exponent

    return detect


def _sweep(sizes: Sequence[int]) -> Detector:
    def detect(curve: Curve, rng: random.Random) -> str:
        del rng  # exact counts
        return classify_exact_sweep([float(n) for n in sizes], [curve.cost(n) for n in sizes])

    return detect


DETECTORS: dict[str, Detector] = {
    "time (calm)": _time(CALM_SIGMA, 0.0),
    "time (busy)": _time(BUSY_SIGMA, BUSY_STALL_RATE),
    "instructions 50-100": _exact(INSTRUCTION_SIZES, INSTRUCTION_SIGMA),
    "counts 200-1600": _exact(LARGE_SIZES, 0.0),
    "scale calls 50-1600": _sweep(CALL_SIZES),
}


def is_wrong(shape: str, verdict: str) -> bool:
    """Whether ``verdict`` misleads about a curve of ``shape`` (see the module docstring)."""
    if shape == "linear":
        return verdict not in ("linear", "sublinear")
    if shape == "nlogn":
        return verdict == "quadratic"
    return verdict in ("linear", "sublinear")


def error_rates(curves: int = 200, seed: int = 0) -> dict[str, dict[str, dict[str, object]]]:
    """Per detector and curve shape: how many of ``curves`` seeded curves got each verdict, and
    the wrong-verdict rate. A pure function of its arguments."""
    out: dict[str, dict[str, dict[str, object]]] = {}
    for name, detect in DETECTORS.items():
        out[name] = {}
        for shape in CURVES:
            verdicts: dict[str, int] = {}
            wrong = 0
            for i in range(curves):
                curve = draw_curve(shape, seed + i)
                rng = random.Random(f"noise:{name}:{shape}:{seed + i}")
                v = detect(curve, rng)
                verdicts[v] = verdicts.get(v, 0) + 1
                wrong += is_wrong(shape, v)
            out[name][shape] = {
                "curves": curves,
                "wrong": wrong,
                "wrong_rate": wrong / curves,
                "verdicts": dict(sorted(verdicts.items())),
            }
    return out


def _table(rates: dict[str, dict[str, dict[str, object]]]) -> str:
    head = "| detector | " + " | ".join(CURVES) + " |"
    rows = [head, "|---|" + "---:|" * len(CURVES)]
    for name, per in rates.items():
        cells = [f"{per[s]['wrong']}/{per[s]['curves']}" for s in CURVES]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sim.analysis.error_rates",
        description="wrong-verdict rates of the complexity detectors over synthetic cost curves",
    )
    parser.add_argument("--curves", type=int, default=200, help="curves per shape (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="first curve seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.curves < 1:
        parser.error(f"--curves must be >= 1, got {args.curves}")
    rates = error_rates(args.curves, args.seed)
    if args.json:
        json.dump(rates, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(f"wrong verdicts per {args.curves} seeded curves of each shape (seed {args.seed})")
        print(_table(rates))
    return 0


if __name__ == "__main__":
    sys.exit(main())
