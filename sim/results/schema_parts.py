"""The building blocks of the result schemas (draft 2020-12): types, the envelope every result
file carries (``command``, ``schema``, ``machine``, ``git``), and small constructors."""

from __future__ import annotations

from typing import Any

from sim.results.base import schema_id

__all__ = ["arr", "envelope", "nullable", "obj"]

Schema = dict[str, Any]

NUM: Schema = {"type": "number"}
INT: Schema = {"type": "integer"}
NONNEG: Schema = {"type": "integer", "minimum": 0}
STR: Schema = {"type": "string"}
BOOL: Schema = {"type": "boolean"}


def nullable(s: Schema) -> Schema:
    return {"anyOf": [s, {"type": "null"}]}


def obj(props: dict[str, Schema], optional: tuple[str, ...] = ()) -> Schema:
    return {
        "type": "object",
        "properties": props,
        "required": [k for k in props if k not in optional],
    }


def arr(items: Schema) -> Schema:
    return {"type": "array", "items": items}


MACHINE = obj(
    {
        "cpu_model": STR,
        "cpu_count": {"type": "integer", "minimum": 1},
        "memory_bytes": nullable(NONNEG),
        "python": STR,
        "os": STR,
        "automerge": nullable(STR),
        "load_average": {"type": "array", "items": NUM, "minItems": 3, "maxItems": 3},
        "timestamp": {"type": "string", "format": "date-time"},
    }
)
GIT = nullable(obj({"commit": {"type": "string", "pattern": "^[0-9a-f]{40,64}$"}, "dirty": BOOL}))
PAIR: Schema = {"type": "array", "items": NUM, "minItems": 2, "maxItems": 2}


def envelope(kind: str, props: dict[str, Schema], optional: tuple[str, ...] = ()) -> Schema:
    body = obj(
        {
            "command": {"const": kind},
            "schema": {"const": schema_id(kind)},
            "machine": MACHINE,
            "git": GIT,
            **props,
        },
        optional=("machine", "git", *optional),
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://nbstream.invalid/schemas/{kind}/1",
        "title": f"nbstream {kind} result",
        **body,
    }
