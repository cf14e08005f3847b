"""nbformat 4.5's JSON schema, element by element, with the error naming the element.

The schema is nbformat's own ``nbformat.v4.5.schema.json`` (copied verbatim from nbformat 5.x,
BSD-3-Clause, Jupyter Development Team; ``tests/test_export_validity.py`` checks it still equals
the installed nbformat's). It is compiled with ``fastjsonschema`` — the validator nbformat itself
uses by default: 0.1 s for the 3200-cell, 90 MB generated notebook, where ``jsonschema`` takes
3.1 s — one definition at a time, so that an error says which cell or output is wrong and what
is wrong with it (a whole-notebook ``oneOf`` only says "valid by no definition").

A notebook whose ``nbformat_minor`` is above 5 comes from a newer minor revision. nbformat then
relaxes the schema (``nbformat.validator.get_validator``): every ``additionalProperties`` is
allowed, and cells and outputs of unknown types are valid as ``unrecognized_cell`` /
``unrecognized_output``. ``relaxed=True`` applies exactly that.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema

__all__ = [
    "CELL_TYPES",
    "OUTPUT_TYPES",
    "cell_error",
    "notebook_error",
    "output_error",
    "output_properties",
    "schema",
]

SCHEMA_PATH = Path(__file__).with_name("nbformat.v4.5.schema.json")
CELL_TYPES = ("code", "markdown", "raw")
OUTPUT_TYPES = ("execute_result", "display_data", "stream", "error")

Validator = Callable[[Any], Any]


@functools.cache
def schema(*, relaxed: bool = False) -> dict[str, Any]:
    """The schema (a fresh copy per mode), relaxed the way nbformat relaxes it for newer minors."""
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    if relaxed:
        loaded = _relax_additional_properties(loaded)
        definitions = loaded["definitions"]
        definitions["cell"]["oneOf"].append({"$ref": "#/definitions/unrecognized_cell"})
        definitions["output"]["oneOf"].append({"$ref": "#/definitions/unrecognized_output"})
    return loaded


def _relax_additional_properties(value: Any) -> Any:
    """nbformat.validator._relax_additional_properties."""
    if isinstance(value, dict):
        return {
            k: True if k == "additionalProperties" else _relax_additional_properties(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_relax_additional_properties(v) for v in value]
    return value


@functools.cache
def _validator(definition: str | None, relaxed: bool) -> Validator:
    """A compiled validator for one definition (``None``: the whole notebook)."""
    full = schema(relaxed=relaxed)
    if definition is None:
        target = copy.deepcopy(full)
    else:
        target = {"definitions": full["definitions"], "$ref": f"#/definitions/{definition}"}
    validate: Validator = fastjsonschema.compile(target)
    return validate


def _error(definition: str | None, value: Any, relaxed: bool, where: str) -> str | None:
    try:
        _validator(definition, relaxed)(value)
    except fastjsonschema.JsonSchemaValueException as exc:
        message = str(exc.message)
        if message.startswith("data"):
            message = where + message[len("data") :]
        return message
    return None


def _cell_definition(cell_type: Any, relaxed: bool) -> str | None:
    if cell_type in CELL_TYPES:
        return f"{cell_type}_cell"
    return "unrecognized_cell" if relaxed else None


def cell_error(cell: dict[str, Any], where: str, *, relaxed: bool = False) -> str | None:
    """Why ``cell`` (its outputs already checked: pass it with ``outputs`` empty) is invalid."""
    definition = _cell_definition(cell.get("cell_type"), relaxed)
    if definition is None:
        known = ", ".join(repr(t) for t in CELL_TYPES)
        return f"{where}.cell_type {cell.get('cell_type')!r} is not one of {known} (nbformat 4.5)"
    return _error(definition, cell, relaxed, where)


def output_error(output: Any, where: str, *, relaxed: bool = False) -> str | None:
    """Why ``output`` is not a valid nbformat output, or None."""
    if not isinstance(output, dict):
        return f"{where} is not an object"
    output_type = output.get("output_type")
    if output_type in OUTPUT_TYPES:
        return _error(output_type, output, relaxed, where)
    if relaxed:
        return _error("unrecognized_output", output, relaxed, where)
    known = ", ".join(repr(t) for t in OUTPUT_TYPES)
    return f"{where}.output_type {output_type!r} is not one of {known} (nbformat 4.5)"


def notebook_error(notebook: dict[str, Any], *, relaxed: bool = False) -> str | None:
    """Why the notebook's top level is invalid (pass it with ``cells`` empty), or None."""
    return _error(None, notebook, relaxed, "the notebook")


@functools.cache
def output_properties(output_type: str) -> frozenset[str]:
    """The keys nbformat 4.5 allows on an output of a known type."""
    return frozenset(schema()["definitions"][output_type]["properties"])
