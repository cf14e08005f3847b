"""Parsed-JSON value helpers shared by the notebook reader, the upgrade and the protocol.

Type names for error messages, the bounded depth / infinite-float check, and the one canonical
JSON text that values take inside the document (sorted keys, no spaces, no NaN). No I/O.
"""

from __future__ import annotations

import json
from typing import Any

import jiter

__all__ = ["check_tree", "from_json_text", "inf_path", "json_text", "json_type"]


def json_type(value: Any) -> str:
    """The JSON type name of a parsed value, for error messages (a Python type name otherwise)."""
    kind = type(value)
    if kind is dict:
        return "object"
    if kind is list:
        return "array"
    if kind is str:
        return "string"
    if kind is bool:
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, str):
        return "string"
    return kind.__name__


def check_tree(root: Any, max_depth: int) -> str | None:
    """``"depth"`` if containers nest deeper than ``max_depth``, ``"inf"`` for an infinite float.

    Level by level over containers only (no recursion); ``None`` when the tree is fine.
    """
    level: list[Any] = []
    kind = type(root)
    if kind is dict or kind is list:
        level.append(root)
    elif kind is float and root - root != 0:
        return "inf"
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            return "depth"
        deeper: list[Any] = []
        for container in level:
            for value in container.values() if type(container) is dict else container:
                kind = type(value)
                if kind is dict or kind is list:
                    deeper.append(value)
                elif kind is float and value - value != 0:  # inf - inf is nan
                    return "inf"
        level = deeper
    return None


def inf_path(root: Any) -> str:
    """Where the first infinite float is (error path only)."""
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        value, path = stack.pop()
        if type(value) is dict:
            for key in reversed(list(value)):
                label = f".{key}" if key.isidentifier() else f"[{json.dumps(key)}]"
                stack.append((value[key], path + label))
        elif type(value) is list:
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(value))))
        elif type(value) is float and value - value != 0:
            return path.lstrip(".") or "the top level"
    return "the top level"


def json_text(value: Any) -> str:
    """The canonical JSON text of ``value``: sorted keys, no spaces, non-ASCII kept, no NaN."""
    return json.dumps(
        value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    )


def from_json_text(text: str) -> Any:
    """A JSON text from the document back to a value; text that is not JSON stays a string."""
    try:
        return jiter.from_json(text.encode("utf-8", "surrogatepass"), allow_inf_nan=False)
    except ValueError:
        return text
