"""An Automerge document as plain Python values, each CRDT type kept apart (no I/O, no schema).

The export reads the document through this view rather than through the typed cell readers,
because a peer can write *anything* into a shared document: a scalar where the schema has a map,
a number where it has a string, a map nested a thousand levels. The view turns every value into
something the export can judge and name:

=====================  =======================================================================
Automerge              Python
=====================  =======================================================================
Map                    ``dict`` (keys in Automerge's order)
List                   ``list``
Text                   :class:`TextValue` (its content)
Str                    ``str``
Int, Uint              ``int``
F64                    ``float`` (NaN and infinities included: the export decides)
Boolean                ``bool``
Null                   ``None``
Bytes, Counter,        :class:`OtherScalar` (the type's name and the value): no JSON counterpart
Timestamp, Unknown
a container at a       :class:`OtherScalar` ``("too deep", None)``: nothing under it is read
level > ``max_depth``   (the root map is level 1, as a notebook file's top-level object is)
=====================  =======================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from automerge import core as am

__all__ = ["MAX_TREE_DEPTH", "OtherScalar", "TextValue", "read_tree"]

# Deeper than any value the notebook file may hold (the reader refuses > 64 levels): a deeper
# container is reported as too deep without being walked (so a hostile nesting costs nothing).
MAX_TREE_DEPTH = 66

# (Automerge type, the Python type of its value); ScalarType is not hashable
_JSON_SCALARS = (
    (am.ScalarType.Str, str),
    (am.ScalarType.Int, int),
    (am.ScalarType.Uint, int),
    (am.ScalarType.F64, float),
    (am.ScalarType.Boolean, bool),
)


@dataclass(frozen=True, slots=True)
class TextValue:
    """The content of an Automerge Text object."""

    text: str


@dataclass(frozen=True, slots=True)
class OtherScalar:
    """A value with no JSON counterpart: ``kind`` is the Automerge type's name (or "too deep")."""

    kind: str
    value: Any


def _scalar(value: tuple[Any, Any]) -> Any:
    kind, raw = value
    if kind == am.ScalarType.Null:
        return None
    for scalar_type, python_type in _JSON_SCALARS:
        if kind == scalar_type:
            if type(raw) is python_type:
                return raw
            break
    name = str(kind).rsplit(".", 1)[-1]
    return OtherScalar(name, raw)


def _node(doc: am.Document, value: Any, obj: bytes, depth: int, max_depth: int) -> Any:
    if isinstance(value, tuple):
        return _scalar(value)
    if depth > max_depth:
        return OtherScalar("too deep", None)
    if value == am.ObjType.Text:
        return TextValue(doc.text(obj))
    if value == am.ObjType.List:
        return [_node(doc, v, bytes(o), depth + 1, max_depth) for v, o in doc.values(obj)]
    out: dict[str, Any] = {}
    for key in doc.keys(obj):
        got = doc.get(obj, key)
        if got is not None:
            out[key] = _node(doc, got[0], bytes(got[1]), depth + 1, max_depth)
    return out


def read_tree(doc: am.Document, *, max_depth: int = MAX_TREE_DEPTH) -> dict[str, Any]:
    """The whole document from its root map, as described in the module docstring."""
    root: dict[str, Any] = {}
    for key in doc.keys(am.ROOT):
        got = doc.get(am.ROOT, key)
        if got is not None:
            root[key] = _node(doc, got[0], bytes(got[1]), 2, max_depth)
    return root
