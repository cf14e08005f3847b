"""``nbstream compare`` of two scale results: each insert path's complexity, B against A.

Both must sweep the same workload: the same seed, batch size, notebook (``--notebook`` by
SHA-256, or both generated) and server (the bundled daemon, or one measured from outside);
else exit 2. Sizes may differ: per-size rows cover the sizes both measured.

What fails, per insert path both files have:

* the **deterministic verdict** (the one ``scale`` exits on) turning from what the path must be
  (``linear`` for ``full``) to ``not …``;
* a counter's **verdict** getting worse (zero < constant < sublinear < linear < superlinear <
  quadratic), and, for the bundled daemon's exact counters when both files swept the same
  sizes, its exponent growing by more than 0.05 (the fit of equal sizes repeats to the digit;
  from outside, frames and bytes race with acknowledgements, so only their verdicts count);
* **instructions** per load at a size both counted above +1.5 %, or their exponent by more than
  0.05 — the gate's own tolerances (:mod:`sim.gate.settings`);
* **core calls** per load (``cProfile``, lock-step) at a size both counted above +2 %, or the
  local exponent between two neighbouring sizes by more than 0.05 (the gate's call tolerances);
* exact per-load counters (``ops``, ``transactions``, ``scan_steps``) at a size both measured:
  any increase (the bundled daemon only; from outside they are absent);
* the **time exponent** only for a server measured from outside, where nothing exact decides:
  when B's exponent exceeds the upper end of A's interval by more than 0.15 (the gate's
  exponent tolerance). For the bundled daemon it is shown, advisory, as ``scale`` shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sim.gate.settings import (
    DEFAULT_CALL_EXPONENT_TOLERANCE,
    DEFAULT_CALL_TOLERANCE,
    DEFAULT_EXPONENT_TOLERANCE,
    DEFAULT_INSTRUCTION_EXPONENT_TOLERANCE,
    DEFAULT_INSTRUCTION_TOLERANCE,
)
from sim.report.compare_rows import (
    COUNTERS,
    CompareError,
    Row,
    exact_row,
    exponent_row,
    ratio_row,
)

__all__ = ["COUNTER_EXPONENT_TOLERANCE", "scale_rows"]

COUNTER_EXPONENT_TOLERANCE = 0.05
RANK = {v: i for i, v in enumerate(("zero", "constant", "sublinear", "linear", "superlinear"))}
RANK["quadratic"] = len(RANK)


def _workload(data: Mapping[str, Any]) -> tuple[Any, ...]:
    notebook = (data.get("notebook") or {}).get("sha256")
    return data["seed"], data.get("batch_size"), notebook, data.get("server", "bundled daemon")


def scale_rows(a: Mapping[str, Any], b: Mapping[str, Any], t: float, m: float) -> list[Row]:
    del t, m  # scale's verdicts are exponents, not ratios of times or memory
    wa, wb = _workload(a), _workload(b)
    for i, what in enumerate(("seeds", "batch sizes", "notebooks", "servers")):
        if wa[i] != wb[i]:
            raise CompareError(f"the results measure different {what}: {wa[i]!r} vs {wb[i]!r}")
    common = sorted(set(a["paths"]) & set(b["paths"]))
    if not common:
        raise CompareError(
            f"no insert path in both results: {sorted(a['paths'])} vs {sorted(b['paths'])}"
        )
    rows: list[Row] = []
    for name in common:
        rows += _path_rows(name, a["paths"][name], b["paths"][name])
    return rows


def _path_rows(name: str, pa: Mapping[str, Any], pb: Mapping[str, Any]) -> list[Row]:
    rows = []
    da, db = pa.get("deterministic_verdict"), pb.get("deterministic_verdict")
    if da is not None and db is not None:
        turned = not da.startswith("not ") and db.startswith("not ")
        verdict = f"{da} -> {db}" if da != db else f"{db} (same)"
        rows.append(Row(f"{name}: verdict", None, None, verdict, fails=turned))
    # Exact counts fit to the digit on equal sizes; from outside, frames and bytes race with
    # acknowledgements (±6 % per load), so only their verdicts are compared.
    exact = pb.get("exponent_of") != "time_to_full_s"
    same_sizes = [p["cells"] for p in pa["points"]] == [p["cells"] for p in pb["points"]]
    ca, cb = pa.get("counters") or {}, pb.get("counters") or {}
    for counter in sorted(set(ca) & set(cb)):
        va, vb = ca[counter]["verdict"], cb[counter]["verdict"]
        worse = RANK.get(vb, -1) > RANK.get(va, len(RANK))
        label = f"{name}: {counter} exponent"
        if same_sizes and exact:
            row = exponent_row(
                label, ca[counter]["exponent"], cb[counter]["exponent"], COUNTER_EXPONENT_TOLERANCE
            )
            rows.append(
                Row(row.name, row.a, row.b, f"{row.verdict} ({va} -> {vb})", row.fails or worse)
            )
        else:
            rows.append(
                Row(label, ca[counter]["exponent"], cb[counter]["exponent"], f"{va} -> {vb}", worse)
            )
    rows += _instruction_rows(name, pa.get("instructions") or {}, pb.get("instructions") or {})
    rows += _call_rows(name, pa.get("calls") or {}, pb.get("calls") or {})
    # One row per size: the counters are exact, so the repeats of a size agree (the first is
    # compared; a size swept twice is not listed twice).
    points_a = {p["cells"]: p for p in reversed(pa["points"])}
    points_b = {p["cells"]: p for p in reversed(pb["points"])}
    for n, p in sorted(points_a.items()):
        q = points_b.get(n)
        if q is None:
            continue
        for counter in COUNTERS:
            if counter in p and counter in q:
                rows.append(
                    exact_row(f"{name}: {counter} at {p['cells']} cells", p[counter], q[counter])
                )
    rows.append(_time_exponent_row(name, pa, pb))
    return rows


def _per_size_rows(
    label: str, key: str, a: Mapping[str, Any], b: Mapping[str, Any], tolerance: float
) -> list[Row]:
    """``B/A`` of an exact count per load (``points[i][key]``) at each size both counted."""
    counts_b = {p["cells"]: p[key] for p in b["points"]}
    return [
        ratio_row(f"{label} at {p['cells']} cells", p[key], counts_b[p["cells"]], tolerance)
        for p in a["points"]
        if p["cells"] in counts_b
    ]


def _instruction_rows(name: str, ia: Mapping[str, Any], ib: Mapping[str, Any]) -> list[Row]:
    if not ia.get("available") or not ib.get("available"):
        return []
    label = f"{name}: instructions"
    rows = _per_size_rows(label, "instructions", ia, ib, DEFAULT_INSTRUCTION_TOLERANCE)
    rows.append(
        exponent_row(
            f"{name}: instruction exponent",
            ia.get("exponent"),
            ib.get("exponent"),
            DEFAULT_INSTRUCTION_EXPONENT_TOLERANCE,
        )
    )
    return rows


def _call_rows(name: str, ca: Mapping[str, Any], cb: Mapping[str, Any]) -> list[Row]:
    """Core calls per load at each size both counted (+2 %), and the local exponent between
    each pair of neighbouring sizes both have (+0.05): where a growth starts."""
    if not ca.get("available") or not cb.get("available"):
        return []
    rows = _per_size_rows(f"{name}: core calls", "calls", ca, cb, DEFAULT_CALL_TOLERANCE)
    local_b = {(x["from"], x["to"]): x["exponent"] for x in cb["local"]}
    for x in ca["local"]:
        kb = local_b.get((x["from"], x["to"]))
        if kb is not None:
            label = f"{name}: call exponent {x['from']}-{x['to']} cells"
            rows.append(exponent_row(label, x["exponent"], kb, DEFAULT_CALL_EXPONENT_TOLERANCE))
    return rows


def _time_exponent_row(name: str, pa: Mapping[str, Any], pb: Mapping[str, Any]) -> Row:
    outside = pb.get("exponent_of") == "time_to_full_s"
    ka, kb, upper = pa["exponent"], pb["exponent"], pa["ci"][1]
    beyond = kb > upper + DEFAULT_EXPONENT_TOLERANCE
    of = pb.get("exponent_of", "time")
    if outside:
        verdict = "regression" if beyond else "same"
        return Row(f"{name}: exponent of {of} (decides from outside)", ka, kb, verdict, beyond)
    verdict = ("worse" if beyond else "same") + " (advisory)"
    return Row(f"{name}: exponent of {of}", ka, kb, verdict)
