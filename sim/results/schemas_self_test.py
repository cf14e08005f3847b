"""The JSON Schema of ``nbstream gate --self-test --json`` (``gate-self-test``), to the last key.

One file holds either the self-test's result (:class:`sim.results.self_test.SelfTestResult`:
the rates and targets derived from every comparison it ran) or, when it could not run (no git,
a change whose anchor moved, the budget), the gate's error payload — ``oneOf`` the two, as for
``gate``.
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
from sim.results.schemas_gate import ERROR

__all__ = ["SELF_TEST"]

RATE = nullable({"type": "number", "minimum": 0, "maximum": 1})
RUN = obj(
    {
        "condition": STR,
        "rerun": NONNEG,
        "flagged": BOOL,
        "flagged_by": arr(STR),
        "median_ratio": NUM,
        "ci": PAIR,
        "cpu_ratio": NUM,
        "cpu_ci": PAIR,
        "exponent_delta": NUM,
        "exponent_ci": PAIR,
        "elapsed_s": NUM,
        "ratios": obj({"wall": arr(NUM), "cpu": arr(NUM)}),
        "instruction_ratio": nullable(NUM),
        "memory_ratios": nullable({"type": "object", "additionalProperties": NUM}),
    },
    optional=("ratios", "instruction_ratio", "memory_ratios"),
)
RESULT = obj(
    {
        "reruns": {"type": "integer", "minimum": 1},
        "false_alarms": NONNEG,
        "false_alarm_rate": RATE,
        "detections": {
            "description": "condition -> [flagged, runs]",
            "type": "object",
            "additionalProperties": {
                "type": "array",
                "items": NONNEG,
                "minItems": 2,
                "maxItems": 2,
            },
        },
        "detection_rates": {"type": "object", "additionalProperties": RATE},
        "targets_met": BOOL,
        "pairs": {"type": "object", "additionalProperties": NONNEG},
        "cells": {"type": "integer", "minimum": 1},
        "time_threshold": NUM,
        "margins": {"type": "object", "additionalProperties": nullable(NUM)},
        "runs": arr(RUN),
        "elapsed_s": NUM,
        "changes": {"type": "object", "additionalProperties": STR},
    },
    optional=("changes",),
)
SELF_TEST: Schema = envelope("gate-self-test", {})
SELF_TEST["oneOf"] = [RESULT, ERROR]
