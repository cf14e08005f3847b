"""The JSON Schema of ``nbstream gate`` results, to the last key (:mod:`sim.results.gate` and
:mod:`sim.results.gate_signals` write them; their ``from_json`` reads them back).

A gate file is either a comparison (``verdict`` "pass" or "regression") or an error payload
(``verdict`` "error": the gate could not run, exit status 2). Optional blocks are the ones a
gate leaves out when it did not measure them: ``instructions`` (``--no-instructions`` or no
valgrind still writes the block, ``available`` false), ``memory``, ``large`` (``--large-cells
0``) and ``target`` (only with ``--target-cmd``).
"""

from __future__ import annotations

from sim.results.schema_parts import (
    BOOL,
    NONNEG,
    NUM,
    PAIR,
    STR,
    Schema,
    arr,
    envelope,
    nullable,
    obj,
)

__all__ = ["GATE"]

SAMPLES = arr(NUM)
TIME = obj(
    {
        "median_ratio": NUM,
        "ci": PAIR,
        "ci_level": NUM,
        "threshold": NUM,
        "regressed": BOOL,
        "inconclusive": BOOL,
        "base_median_s": NUM,
        "candidate_median_s": NUM,
        "ratios": SAMPLES,
        "samples": obj({"base": SAMPLES, "candidate": SAMPLES}),
    }
)
COUNTER = obj(
    {
        "base": NUM,
        "candidate": NUM,
        "delta": NUM,
        "deterministic": BOOL,
        "tolerance": NUM,
        "regressed": BOOL,
    }
)
COUNTERS: Schema = {"type": "object", "additionalProperties": COUNTER}
EXPONENT = obj(
    {
        "base": NUM,
        "candidate": NUM,
        "delta": NUM,
        "delta_ci": PAIR,
        "base_ci": PAIR,
        "candidate_ci": PAIR,
        "base_verdict": STR,
        "candidate_verdict": STR,
        "tolerance": NUM,
        "sizes": arr(NONNEG),
        "regressed": BOOL,
    }
)
FUNCTION = obj({"name": STR, "base": NONNEG, "candidate": NONNEG})
EXPONENTS = obj(
    {"base": nullable(NUM), "candidate": nullable(NUM), "delta": nullable(NUM)},
)
INSTRUCTIONS: Schema = {
    "anyOf": [
        obj({"available": {"const": False}, "regressed": BOOL, "reason": nullable(STR)}),
        obj(
            {
                "available": {"const": True},
                "regressed": BOOL,
                "tolerance": NUM,
                "exponent_tolerance": NUM,
                "ratio": nullable(NUM),
                "spread": nullable(NUM),
                "points": arr(
                    obj(
                        {
                            "cells": NONNEG,
                            "base": arr(NONNEG),
                            "candidate": arr(NONNEG),
                            "ratio": NUM,
                        }
                    )
                ),
                "exponent": EXPONENTS,
                "phases": arr(obj({"phase": STR, "base": NONNEG, "candidate": NONNEG})),
                "functions": arr(FUNCTION),
                "elapsed_s": nullable(NUM),
            }
        ),
    ]
}
MEMORY_METRIC = obj(
    {
        "base": SAMPLES,
        "candidate": SAMPLES,
        "ratio": nullable(NUM),
        "tolerance": NUM,
        "regressed": BOOL,
    }
)
MEMORY = obj(
    {
        "available": BOOL,
        "regressed": BOOL,
        "reason": nullable(STR),
        "metrics": {"type": "object", "additionalProperties": MEMORY_METRIC},
    },
    optional=("reason",),
)
CALLS = obj(
    {
        "sizes": arr(NONNEG),
        "base": arr(NONNEG),
        "candidate": arr(NONNEG),
        "ratio": NUM,
        "tolerance": NUM,
        "exponent": obj(
            {
                "base": nullable(NUM),
                "candidate": nullable(NUM),
                "delta": nullable(NUM),
                "tolerance": NUM,
            }
        ),
        "functions": arr(FUNCTION),
        "regressed": BOOL,
    }
)
LARGE = obj({"cells": NONNEG, "counters": COUNTERS, "calls": nullable(CALLS)})
TARGET = obj(
    {
        "command": STR,
        "first_cell": nullable(TIME),
        "unavailable": {"type": "object", "additionalProperties": STR},
    }
)
THRESHOLDS = obj(
    {
        "time": NUM,
        "exponent_tolerance": NUM,
        "counter_tolerance": NUM,
        "instruction_tolerance": NUM,
        "instruction_exponent_tolerance": NUM,
        "memory_tolerance": NUM,
    },
    optional=("instruction_tolerance", "instruction_exponent_tolerance", "memory_tolerance"),
)
COMPARISON = obj(
    {
        "verdict": {"enum": ["pass", "regression"]},
        "base": obj({"ref": STR, "commit": STR}),
        "candidate": obj({"commit": nullable(STR), "dirty": BOOL}),
        "pairs": {"type": "integer", "minimum": 1},
        "cells": {"type": "integer", "minimum": 1},
        "seed": {"type": "integer"},
        "notebooks": arr(obj({"path": STR, "cells": NONNEG, "bytes": NONNEG, "sha256": STR})),
        "thresholds": THRESHOLDS,
        "time": TIME,
        "cpu_time": TIME,
        "time_verdict": {"enum": ["pass", "inconclusive", "regression"]},
        "counters": COUNTERS,
        "exponent": EXPONENT,
        "instructions": INSTRUCTIONS,
        "memory": MEMORY,
        "large": LARGE,
        "target": TARGET,
        "flagged_by": arr(STR),
        "elapsed_s": NUM,
    },
    optional=("notebooks", "instructions", "memory", "large", "target"),
)
ERROR = obj(
    {"verdict": {"const": "error"}, "error": STR, "budget_exhausted": BOOL},
    optional=("budget_exhausted",),
)
GATE: Schema = envelope("gate", {})
GATE["oneOf"] = [COMPARISON, ERROR]
