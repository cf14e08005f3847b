"""Plain values of the notebook document: cell snapshots, object keys, counters.

What :class:`~core.notebook_doc.NotebookDoc` takes and returns, kept apart from the document
itself so both stay one idea each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from automerge import core as am

__all__ = [
    "NULL_COUNT",
    "STR",
    "CellSnapshot",
    "Counters",
    "DocStatistics",
    "NewCell",
    "OpCount",
    "object_key",
    "str_value",
]

STR = am.ScalarType.Str
NULL_COUNT = "null"


class NewCell(NamedTuple):
    """A cell :meth:`NotebookDoc.add_cells_full` wrote: its :func:`object_key` and its source
    Text object."""

    key: bytes
    source: bytes


def object_key(obj: bytes) -> bytes:
    """A key for an object id that stays equal across merges.

    automerge-py's object ids are ``0x10, len, actor, actor index, counter`` (LEB128 numbers);
    the actor *index* is the actor's rank among the actors the document knows, so the same
    object's id bytes change when a peer whose actor sorts earlier is merged in (measured on
    0.2.0.dev4; an old id still *works* in every call). The key drops the index. An id of
    another shape is its own key."""
    if len(obj) < 3 or obj[0] != 0x10 or obj[1] >= 0x80:
        return obj
    end = 2 + obj[1]
    i = end
    while i < len(obj) and obj[i] & 0x80:  # skip the LEB128 actor index
        i += 1
    if i >= len(obj):
        return obj
    return obj[:end] + obj[i + 1 :]


@dataclass(frozen=True, slots=True)
class CellSnapshot:
    """A cell as plain values: what ``get_cells`` returns and ``add_cell_full`` takes."""

    id: str
    cell_type: str
    source: str = ""
    execution_count: str = NULL_COUNT
    outputs: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    attachments: Mapping[str, str] | None = None
    extra: Mapping[str, str] | None = None  # keys nbstream does not model -> JSON text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (used for materialized comparisons and diffs)."""
        out: dict[str, Any] = {
            "id": self.id,
            "cell_type": self.cell_type,
            "source": self.source,
            "execution_count": self.execution_count,
            "outputs": list(self.outputs),
            "metadata": dict(self.metadata),
        }
        if self.attachments is not None:
            out["attachments"] = dict(self.attachments)
        if self.extra is not None:
            out["extra"] = dict(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class DocStatistics:
    """Deterministic counters: the signals benchmarks and the CI gate read (times are noisy)."""

    cells_inserted: int
    ops: int
    transactions: int
    scan_steps: int
    sync_messages_generated: int
    sync_bytes_generated: int
    sync_messages_received: int
    sync_bytes_received: int


@dataclass(slots=True)
class Counters:
    cells_inserted: int = 0
    ops: int = 0
    transactions: int = 0
    scan_steps: int = 0
    sync_messages_generated: int = 0
    sync_bytes_generated: int = 0
    sync_messages_received: int = 0
    sync_bytes_received: int = 0


@dataclass(slots=True)
class OpCount:
    """The ops a :meth:`NotebookDoc._counted` transaction made so far."""

    ops: int = 0


def str_value(value: Any) -> str | None:
    """The Python str of an Automerge ``(ScalarType.Str, value)`` pair, else None."""
    if isinstance(value, tuple) and value[0] == STR and isinstance(value[1], str):
        return value[1]
    return None
