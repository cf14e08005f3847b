"""The result model: every result kind defined once, as typed frozen dataclasses.

One module per kind -- :mod:`~sim.results.sim`, :mod:`~sim.results.profile`,
:mod:`~sim.results.scale`, :mod:`~sim.results.gate` and :mod:`~sim.results.self_test` -- each
with ``to_json()`` (what ``nbstream <cmd> --json`` prints, plus a versioned ``"schema"`` id) and
``from_json()`` (validation with errors naming the key; files without ``"schema"``, written
before it existed, are accepted). Producers (``sim.harness``, ``sim.gate``) import this package;
it imports none of them. :func:`read_result` dispatches on ``"command"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sim.results.base import Check, SchemaError, schema_id
from sim.results.gate import GATE_SCHEMA, GateErrorResult, GateResult, is_error
from sim.results.profile import PROFILE_SCHEMA, ProfileResult
from sim.results.scale import SCALE_SCHEMA, ScaleResult
from sim.results.self_test import SELF_TEST_SCHEMA, SelfTestResult
from sim.results.sim import SIM_SCHEMA, SimResult

__all__ = [
    "COMMANDS",
    "GATE_SCHEMA",
    "PROFILE_SCHEMA",
    "SCALE_SCHEMA",
    "SELF_TEST_SCHEMA",
    "SIM_SCHEMA",
    "AnyResult",
    "Check",
    "GateErrorResult",
    "GateResult",
    "ProfileResult",
    "ScaleResult",
    "SchemaError",
    "SelfTestResult",
    "SimResult",
    "read_result",
    "schema_id",
]

AnyResult = SimResult | ProfileResult | ScaleResult | GateResult | SelfTestResult | GateErrorResult
COMMANDS = ("sim", "profile", "scale", "gate", "gate-self-test")


def read_result(data: Mapping[str, Any]) -> AnyResult:
    """The result in *data*, by its ``"command"``; :class:`SchemaError` (a ``ValueError``) when
    the command is unknown or the shape does not match."""
    if not isinstance(data, Mapping):
        raise SchemaError("$: expected an object")
    command = data.get("command")
    if command == "sim":
        return SimResult.from_json(data)
    if command == "profile":
        return ProfileResult.from_json(data)
    if command == "scale":
        return ScaleResult.from_json(data)
    if command in ("gate", "gate-self-test") and is_error(data):
        return GateErrorResult.from_json(data)
    if command == "gate":
        return GateResult.from_json(data)
    if command == "gate-self-test":
        return SelfTestResult.from_json(data)
    raise SchemaError(f"command: unknown command {command!r}")
