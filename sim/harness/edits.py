"""Edits made by simulated peers, and the invariant "no acknowledged edit is lost".

Every edit a peer makes goes through :class:`EditLog`, which applies it to the peer's local
:class:`core.notebook_doc.NotebookDoc` and records it: who, what (``add`` a cell, ``type`` text
into a cell, ``delete`` a cell), the cell, a unique token (the text typed, or the new cell's
text), and the Automerge change the edit made (the document's single head right after it).

**Acknowledged.** An edit is acknowledged when a ``get_doc_bytes`` answer from the server
(PROTOCOL.md 6.3) holds its change: the server's document contained it at that moment. The
harness asks at checkpoints (after each wave of edits and at the end); :meth:`EditLog.acknowledge`
marks every edit whose change the answer holds.

**Lost.** An acknowledged edit is lost when the final server document does not show it: an added
cell is not there or does not hold its text, typed text is not in the cell's source, a deleted
cell is back. It is *not* lost when a later edit removed it, i.e.

* its cell was deleted by a ``delete`` edit (of any peer), or
* it touched a cell the load inserted and the load then failed: PROTOCOL.md 10.3's rollback
  deletes exactly the load's cells, with whatever peers typed into them, and the retry inserts
  the file's cells afresh (a deleted file cell comes back with the retry, too).

Cells peers added, and what they typed into them, are never excused by a rollback.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from core.notebook_doc import NotebookDoc
from sim.results.collab import EditSummary

__all__ = ["Edit", "EditKind", "EditLog", "change_hashes", "new_changes"]

EditKind = Literal["add", "type", "delete"]
MAX_LOST_DETAIL = 10


def new_changes(doc: NotebookDoc, heads: Sequence[bytes]) -> list[bytes]:
    """Hashes of the changes ``doc`` holds beyond ``heads`` (heads the document knows)."""
    # NotebookDoc has no public "changes since" (its module is at the 600-line cap): read the
    # Automerge document under it, as the change hashes are exactly what acknowledgement means.
    return [bytes(c.hash) for c in doc._doc.get_changes(list(heads))]


def change_hashes(doc: NotebookDoc) -> set[bytes]:
    """Every change in ``doc``'s history."""
    return set(new_changes(doc, []))


@dataclass(slots=True)
class Edit:
    seq: int
    peer: str
    kind: EditKind
    cell_id: str
    token: str  # add: the new cell's text; type: the text appended; delete: ""
    change: bytes
    made_at: float  # time.perf_counter()
    acknowledged: bool = False

    def describe(self) -> str:
        what = f"{self.kind} {self.cell_id!r}" + (f" {self.token!r}" if self.token else "")
        return f"edit #{self.seq} by {self.peer}: {what}"

    def trace(self) -> str:
        return f"edit {self.seq} {self.peer} {self.kind} {self.cell_id} {self.token}"


class EditLog:
    """Every edit of a run, in the order made; the run's verdict on them."""

    def __init__(self) -> None:
        self.edits: list[Edit] = []
        self.by_change: dict[bytes, Edit] = {}
        self.rollback_seq: int | None = None  # edits before this one preceded a failed load

    def _record(
        self, doc: NotebookDoc, peer: str, kind: EditKind, cell_id: str, token: str
    ) -> Edit:
        heads = doc.heads()
        if len(heads) != 1:  # a local change depends on every head: it is the only one after it
            raise AssertionError(f"{peer}: {len(heads)} heads after a local edit")
        edit = Edit(len(self.edits), peer, kind, cell_id, token, heads[0], time.perf_counter())
        self.edits.append(edit)
        self.by_change[edit.change] = edit
        return edit

    def add(self, doc: NotebookDoc, peer: str, index: int, cell_id: str, text: str) -> Edit:
        doc.add_cell(index, cell_id, "markdown")
        doc.update_source(cell_id, text)
        return self._record(doc, peer, "add", cell_id, text)

    def type(self, doc: NotebookDoc, peer: str, cell_id: str, old: str, token: str) -> Edit:
        """Append ``token`` to the cell's source (whose current text is ``old``)."""
        if not doc.update_source(cell_id, old + token):
            raise AssertionError(f"{peer}: no cell {cell_id!r} to type into")
        return self._record(doc, peer, "type", cell_id, token)

    def delete(self, doc: NotebookDoc, peer: str, cell_id: str) -> Edit:
        if not doc.delete_cell(cell_id):
            raise AssertionError(f"{peer}: no cell {cell_id!r} to delete")
        return self._record(doc, peer, "delete", cell_id, "")

    def mark_rollback(self) -> None:
        """A load failed (and every peer has heard so) after the edits made so far."""
        self.rollback_seq = len(self.edits)

    def acknowledge(self, server: NotebookDoc) -> int:
        """Mark the edits whose change ``server`` (a ``get_doc_bytes`` answer) holds."""
        held = change_hashes(server)
        count = 0
        for edit in self.edits:
            if not edit.acknowledged and edit.change in held:
                edit.acknowledged = True
                count += 1
        return count

    def verdict(self, final: Mapping[str, Any], file_cells: Collection[str]) -> EditSummary:
        """Judge every edit against the final server document (materialized)."""
        sources = {c["id"]: c.get("source", "") for c in final.get("cells", [])}
        deleted = {e.cell_id for e in self.edits if e.kind == "delete"}
        survived = removed = rolled_back = lost = unacked = 0
        detail: list[str] = []
        for edit in self.edits:
            if not edit.acknowledged:
                unacked += 1
                continue
            before_rollback = self.rollback_seq is not None and edit.seq < self.rollback_seq
            in_load_cell = edit.cell_id in file_cells and before_rollback
            present = edit.cell_id in sources
            if edit.kind == "delete":
                ok = not present
            else:
                ok = present and edit.token in sources[edit.cell_id]
            if ok:
                survived += 1
            elif in_load_cell:
                rolled_back += 1
            elif edit.kind != "delete" and edit.cell_id in deleted:
                removed += 1
            else:
                lost += 1
                if len(detail) < MAX_LOST_DETAIL:
                    detail.append(edit.describe())
        return EditSummary(
            made=len(self.edits),
            acknowledged=len(self.edits) - unacked,
            survived=survived,
            removed_by_delete=removed,
            rolled_back=rolled_back,
            lost=lost,
            unacknowledged=unacked,
            lost_detail=tuple(detail),
        )
