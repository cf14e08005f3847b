"""``nbstream compare`` of two gate results: B's candidate measurements against A's.

A gate file already compares a base with a candidate; two files compare their candidates (e.g.
the same pull request before and after a push, or ``main`` today against last week). Both must
measure the same workload: the same cells, seed, notebooks (by SHA-256) and the same kind of
target (in-process or ``--target-cmd`` from outside); else exit 2.

What fails, with the tolerances the gate itself uses (stored in B's file):

* exact counters (``deterministic`` on both files' candidate sides): above B's tolerance for that
  counter (0 for the in-process counters: any increase); the large load's counters the same;
* instructions per load at every size both counted: above ``1 + instruction_tolerance``
  (1.5 %), and the instruction exponent by more than its tolerance (0.05);
* core call counts at the large size: above ``1 + tolerance`` (2 %), the call exponent likewise;
* peak memory (median of each metric's samples) above ``--memory-threshold``;
* load and CPU time only when every sample of B is slower than every sample of A by
  ``--time-threshold``; the first cell from outside is shown, never fails.

The files' own verdicts are shown, not judged: each is about its own base.
"""

from __future__ import annotations

from collections.abc import Mapping
from statistics import median
from typing import Any

from sim.report.compare_rows import (
    CompareError,
    Row,
    exact_row,
    exponent_row,
    info_row,
    ratio_row,
    separated_row,
    time_row,
)

__all__ = ["gate_rows"]


def _workload(data: Mapping[str, Any]) -> tuple[Any, ...]:
    notebooks = tuple(n["sha256"] for n in data.get("notebooks") or ())
    return data["cells"], data["seed"], notebooks, "target" in data


def gate_rows(a: Mapping[str, Any], b: Mapping[str, Any], t: float, m: float) -> list[Row]:
    wa, wb = _workload(a), _workload(b)
    for i, what in enumerate(("cell counts", "seeds", "notebooks", "targets (outside or not)")):
        if wa[i] != wb[i]:
            raise CompareError(f"the results measure different {what}: {wa[i]!r} vs {wb[i]!r}")
    rows = [info_row("gate verdict (each against its own base)", a["verdict"], b["verdict"])]
    rows += _counter_rows("", a["counters"], b["counters"])
    large_a, large_b = a.get("large") or {}, b.get("large") or {}
    if large_a.get("cells") == large_b.get("cells") and large_a:
        rows += _counter_rows(
            f" at {large_a['cells']} cells", large_a["counters"], large_b["counters"]
        )
        rows += _calls_rows(large_a.get("calls"), large_b.get("calls"))
    rows += _instruction_rows(a.get("instructions") or {}, b.get("instructions") or {})
    rows += _memory_rows(a.get("memory") or {}, b.get("memory") or {}, m)
    for key, label in (("time", "load time"), ("cpu_time", "load CPU time")):
        rows.append(
            separated_row(
                f"{label} (median of samples)",
                a[key]["samples"]["candidate"],
                b[key]["samples"]["candidate"],
                t,
            )
        )
    first_a = (a.get("target") or {}).get("first_cell")
    first_b = (b.get("target") or {}).get("first_cell")
    if first_a and first_b:
        rows.append(
            time_row(
                "time to first cell (median)",
                first_a["candidate_median_s"],
                first_b["candidate_median_s"],
                t,
            )
        )
    return rows


def _counter_rows(suffix: str, ca: Mapping[str, Any], cb: Mapping[str, Any]) -> list[Row]:
    rows = []
    for name in sorted(set(ca) | set(cb)):
        ja, jb = ca.get(name), cb.get(name)
        if ja is None or jb is None:
            rows.append(Row(name + suffix, None if ja is None else ja["candidate"], None, "n/a"))
            continue
        va, vb = ja["candidate"], jb["candidate"]
        if ja["deterministic"] and jb["deterministic"] and jb["tolerance"] == 0:
            rows.append(exact_row(name + suffix, va, vb))
        else:
            rows.append(ratio_row(name + suffix, va, vb, jb["tolerance"]))
    return rows


def _calls_rows(ca: Mapping[str, Any] | None, cb: Mapping[str, Any] | None) -> list[Row]:
    if not ca or not cb or ca["sizes"] != cb["sizes"]:
        return []
    size = ca["sizes"][-1]
    return [
        ratio_row(
            f"core calls at {size} cells", ca["candidate"][-1], cb["candidate"][-1], cb["tolerance"]
        ),
        exponent_row(
            "core call exponent",
            ca["exponent"]["candidate"],
            cb["exponent"]["candidate"],
            cb["exponent"]["tolerance"],
        ),
    ]


def _instruction_rows(ia: Mapping[str, Any], ib: Mapping[str, Any]) -> list[Row]:
    if not ia.get("available") or not ib.get("available"):
        return [] if not ia and not ib else [Row("instructions", None, None, "n/a")]
    points_b = {p["cells"]: p for p in ib["points"]}
    rows = []
    for p in ia["points"]:
        q = points_b.get(p["cells"])
        if q is not None:
            rows.append(
                ratio_row(
                    f"instructions per load, {p['cells']} cells",
                    median(p["candidate"]),
                    median(q["candidate"]),
                    ib["tolerance"],
                )
            )
    rows.append(
        exponent_row(
            "instruction exponent",
            ia["exponent"]["candidate"],
            ib["exponent"]["candidate"],
            ib["exponent_tolerance"],
        )
    )
    return rows


def _memory_rows(ma: Mapping[str, Any], mb: Mapping[str, Any], m: float) -> list[Row]:
    metrics_a, metrics_b = ma.get("metrics") or {}, mb.get("metrics") or {}
    rows = []
    for name in sorted(set(metrics_a) & set(metrics_b)):
        va = median(metrics_a[name]["candidate"]) if metrics_a[name]["candidate"] else None
        vb = median(metrics_b[name]["candidate"]) if metrics_b[name]["candidate"] else None
        rows.append(ratio_row(name, va, vb, m - 1.0))
    return rows
