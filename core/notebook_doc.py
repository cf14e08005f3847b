"""The notebook as an Automerge document.

Schema (see DESIGN.md)::

    ROOT
    ├── notebook_id : Str
    ├── cells       : List of Map
    │   └── { id: Str, cell_type: Str, source: Text, execution_count: Str ("5" | "null"),
    │         outputs: List of Str (64-hex manifest hashes), metadata: Map (key -> JSON text),
    │         attachments?: Map (name -> JSON text; absent when the cell had none),
    │         extra?: Map (key nbstream does not model -> JSON text; absent when none) }
    ├── metadata    : Map (notebook metadata: top-level key -> JSON text)
    ├── extra?      : Map (top-level key nbstream does not model -> JSON text; absent when none)
    └── nbformat_minor? : Str (the file's minor, only when above 5)

Two insert paths exist on purpose:

* :meth:`NotebookDoc.add_cell_full` / :meth:`NotebookDoc.add_cells_full` write whole cells in one
  transaction, reusing the object ids they create: no scans. This is the streaming load's path.
* The *naive* path (:meth:`add_cell` then :meth:`update_source`, :meth:`set_outputs`,
  :meth:`set_execution_count`, :meth:`set_cell_metadata`) finds the cell by a linear
  :meth:`find_cell_index` scan for every call, as the reference did before its PR #672. Loading n
  cells that way visits O(n²) cells; :meth:`statistics` counts them in ``scan_steps`` so the
  harness can show the regression deterministically.

Automerge-py rule: always ``with doc.transaction() as tx`` (a dropped transaction crashes the
interpreter); inside a transaction read through ``tx``.

Op counting: ``statistics().ops`` is exactly ``max_op - start_op + 1`` summed over this doc's
local changes, and ``transactions`` counts the transactions that produced a change. Reading the
change back (``get_last_local_change``) re-encodes it and cost +24-28 % on every insert
transaction, so the writes count their ops as they make them (:meth:`NotebookDoc._counted`), by
these rules of automerge 0.2.0.dev4 (checked by ``tests/test_notebook_doc.py``, which replays a
seeded random sequence of every write against ``get_last_local_change``):

* ``put``/``put_object``/``insert``/``insert_object``/``delete`` of an existing key or element:
  1 op each; ``delete`` of a missing map key: 0 ops;
* ``put`` of the scalar a key already holds: 0 ops when the key has one value, 1 when it has
  conflicting values (which the API cannot see), so the writes never make such a put;
* ``splice_text`` deleting d and inserting k Unicode code points (Python ``len``): d + k ops;
* a transaction with 0 ops produces no change; one that raises is rolled back.

A new write must count its ops the same way (and extend that test); the rules above cover every
write this class makes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from automerge import core as am

from .doc_tree import read_tree
from .doc_values import NULL_COUNT as _NULL_COUNT
from .doc_values import STR as _STR
from .doc_values import CellSnapshot, DocStatistics, NewCell, object_key
from .doc_values import Counters as _Counters
from .doc_values import OpCount as _OpCount
from .doc_values import str_value as _str_value
from .errors import DocError, MessageError
from .sync_needs import strip_unknown_needs

__all__ = ["CellSnapshot", "DocStatistics", "NewCell", "NotebookDoc", "object_key"]

_ROOT_EXTRA = ("extra", "nbformat_minor")


class NotebookDoc:
    """A notebook held in an Automerge document, with counters for every write."""

    __slots__ = ("_counters", "_doc")

    def __init__(self, notebook_id: str, *, actor_id: bytes | None = None) -> None:
        self._doc = am.Document(actor_id) if actor_id is not None else am.Document()
        self._counters = _Counters()
        with self._counted() as (tx, count):
            tx.put(am.ROOT, "notebook_id", _STR, notebook_id)
            tx.put_object(am.ROOT, "cells", am.ObjType.List)
            tx.put_object(am.ROOT, "metadata", am.ObjType.Map)
            count.ops += 3

    # ------------------------------------------------------------------ construction
    @classmethod
    def empty(cls, *, actor_id: bytes | None = None) -> NotebookDoc:
        """A document with zero ops, for a peer that bootstraps entirely by sync."""
        self = cls.__new__(cls)
        self._doc = am.Document(actor_id) if actor_id is not None else am.Document()
        self._counters = _Counters()
        return self

    @classmethod
    def load(cls, data: bytes) -> NotebookDoc:
        """Load a document saved with :meth:`save`."""
        self = cls.__new__(cls)
        try:
            self._doc = am.Document.load(data)
        except Exception as exc:  # automerge raises a bare Exception
            raise DocError(f"cannot load Automerge document: {exc}") from exc
        self._counters = _Counters()
        return self

    def save(self) -> bytes:
        """The whole document in Automerge's compact binary format."""
        return bytes(self._doc.save())

    def fork(self) -> NotebookDoc:
        """An independent copy (same history, new actor)."""
        other = NotebookDoc.empty()
        other._doc = self._doc.fork()
        return other

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def _counted(self) -> Iterator[tuple[Any, _OpCount]]:
        """A transaction whose writer adds the ops it makes to ``count.ops`` (module docstring).

        Nothing is counted when the body raises: automerge-py rolls the transaction back."""
        count = _OpCount()
        with self._doc.transaction() as tx:
            yield tx, count
        if count.ops > 0:  # a transaction with ops always commits one change
            self._counters.transactions += 1
            self._counters.ops += count.ops

    def _cells_obj(self, reader: Any = None) -> bytes | None:
        got = (reader or self._doc).get(am.ROOT, "cells")
        if got is None or got[0] != am.ObjType.List:
            return None
        return bytes(got[1])

    def _require_cells(self, reader: Any = None) -> bytes:
        cells = self._cells_obj(reader)
        if cells is None:
            raise DocError("document has no 'cells' list")
        return cells

    def _metadata_obj(self, reader: Any = None) -> bytes | None:
        got = (reader or self._doc).get(am.ROOT, "metadata")
        if got is None or got[0] != am.ObjType.Map:
            return None
        return bytes(got[1])

    # ------------------------------------------------------------------ reads
    @property
    def notebook_id(self) -> str:
        got = self._doc.get(am.ROOT, "notebook_id")
        return (_str_value(got[0]) if got is not None else None) or ""

    def heads(self) -> list[bytes]:
        return [bytes(h) for h in self._doc.get_heads()]

    def cell_count(self) -> int:
        cells = self._cells_obj()
        return 0 if cells is None else self._doc.length(cells)

    def get_cells(self) -> list[CellSnapshot]:
        cells = self._cells_obj()
        if cells is None:
            return []
        return [self._read_cell(bytes(obj)) for _, obj in self._doc.values(cells)]

    def _read_str(self, obj: bytes, key: str, default: str) -> str:
        got = self._doc.get(obj, key)
        if got is None:
            return default
        value = _str_value(got[0])
        return default if value is None else value

    def _read_str_map(self, obj: bytes, key: str) -> dict[str, str] | None:
        got = self._doc.get(obj, key)
        if got is None or got[0] != am.ObjType.Map:
            return None
        map_obj = bytes(got[1])
        out: dict[str, str] = {}
        for k in self._doc.keys(map_obj):
            v = self._doc.get(map_obj, k)
            text = _str_value(v[0]) if v is not None else None
            if text is not None:
                out[k] = text
        return out

    def _read_cell(self, obj: bytes) -> CellSnapshot:
        doc = self._doc
        src = doc.get(obj, "source")
        source = doc.text(bytes(src[1])) if src is not None and src[0] == am.ObjType.Text else ""
        outs = doc.get(obj, "outputs")
        outputs: tuple[str, ...] = ()
        if outs is not None and outs[0] == am.ObjType.List:
            outputs = tuple(
                s for s in (_str_value(v) for v, _ in doc.values(bytes(outs[1]))) if s is not None
            )
        return CellSnapshot(
            id=self._read_str(obj, "id", ""),
            cell_type=self._read_str(obj, "cell_type", ""),
            source=source,
            execution_count=self._read_str(obj, "execution_count", _NULL_COUNT),
            outputs=outputs,
            metadata=self._read_str_map(obj, "metadata") or {},
            attachments=self._read_str_map(obj, "attachments"),
            extra=self._read_str_map(obj, "extra"),
        )

    def find_cell_index(self, cell_id: str) -> int | None:
        """Index of the first cell with id ``cell_id``: a linear scan (counted in scan_steps)."""
        cells = self._cells_obj()
        if cells is None:
            return None
        doc = self._doc
        for index in range(doc.length(cells)):
            self._counters.scan_steps += 1
            got = doc.get(cells, index)
            if got is None:
                continue
            if self._read_str(bytes(got[1]), "id", "") == cell_id:
                return index
        return None

    def _cell_obj(self, cell_id: str) -> bytes | None:
        index = self.find_cell_index(cell_id)
        if index is None:
            return None
        got = self._doc.get(self._require_cells(), index)
        return None if got is None else bytes(got[1])

    def get_notebook_metadata(self) -> dict[str, str]:
        """Notebook metadata: top-level key -> JSON text of its value."""
        return self._read_str_map(am.ROOT, "metadata") or {}

    def get_notebook_extra(self) -> tuple[dict[str, str], str | None]:
        """Top-level keys nbstream does not model (key -> JSON text), and ``nbformat_minor``."""
        got = self._doc.get(am.ROOT, "nbformat_minor")
        minor = _str_value(got[0]) if got is not None else None
        return self._read_str_map(am.ROOT, "extra") or {}, minor

    def read_tree(self) -> dict[str, Any]:
        """The whole document as plain values, every CRDT type kept apart (:mod:`core.doc_tree`)."""
        return read_tree(self._doc)

    def materialize(self) -> dict[str, Any]:
        """The whole notebook as plain JSON-able values (for convergence checks and diffs)."""
        out: dict[str, Any] = {
            "notebook_id": self.notebook_id,
            "cells": [c.to_dict() for c in self.get_cells()],
            "metadata": self.get_notebook_metadata(),
        }
        extra, minor = self.get_notebook_extra()
        if extra or minor is not None:
            out["extra"], out["nbformat_minor"] = extra, minor
        return out

    # ------------------------------------------------------------------ whole-cell writes
    @staticmethod
    def _write_cell(
        tx: Any, cells: bytes, index: int, cell: CellSnapshot
    ) -> tuple[int, bytes, bytes]:
        """Write ``cell`` as a new map at ``index``: the ops made (all keys are new), the map,
        its source Text."""
        obj = tx.insert_object(cells, index, am.ObjType.Map)
        tx.put(obj, "id", _STR, cell.id)
        tx.put(obj, "cell_type", _STR, cell.cell_type)
        text = tx.put_object(obj, "source", am.ObjType.Text)
        if cell.source:
            tx.splice_text(text, 0, 0, cell.source)
        tx.put(obj, "execution_count", _STR, cell.execution_count)
        outputs = tx.put_object(obj, "outputs", am.ObjType.List)
        for i, ref in enumerate(cell.outputs):
            tx.insert(outputs, i, _STR, ref)
        meta = tx.put_object(obj, "metadata", am.ObjType.Map)
        for key, value in cell.metadata.items():
            tx.put(meta, key, _STR, value)
        if cell.attachments is not None:
            att = tx.put_object(obj, "attachments", am.ObjType.Map)
            for key, value in cell.attachments.items():
                tx.put(att, key, _STR, value)
        ops = 7 + len(cell.source) + len(cell.outputs) + len(cell.metadata)
        if cell.attachments is not None:
            ops += 1 + len(cell.attachments)
        if cell.extra is not None:
            extra = tx.put_object(obj, "extra", am.ObjType.Map)
            for key, value in cell.extra.items():
                tx.put(extra, key, _STR, value)
            ops += 1 + len(cell.extra)
        return ops, bytes(obj), bytes(text)

    def add_cell_full(self, index: int, cell: CellSnapshot) -> None:
        """Insert a whole cell at ``index`` (clamped) in one transaction, without any scan."""
        self.add_cells_full(index, (cell,))

    def add_cells_full(self, index: int, cells: Sequence[CellSnapshot]) -> list[NewCell]:
        """Insert ``cells`` starting at ``index`` (clamped), all in one transaction, no scans.

        Returns each new cell's key (to find or delete exactly that cell later) and its source
        Text object (for :meth:`append_source`)."""
        if not cells:
            return []
        new: list[NewCell] = []
        try:
            with self._counted() as (tx, count):
                cells_obj = self._require_cells(tx)
                at = max(0, min(index, tx.length(cells_obj)))
                for offset, cell in enumerate(cells):
                    ops, obj, text = self._write_cell(tx, cells_obj, at + offset, cell)
                    count.ops += ops
                    new.append(NewCell(object_key(obj), text))
        except DocError:
            raise
        except Exception as exc:
            raise DocError(f"failed to add cells {cells[0].id!r}…: {exc}") from exc
        self._counters.cells_inserted += len(cells)
        return new

    def append_source(self, text: bytes, at: int, more: str) -> None:
        """Insert ``more`` at code point ``at`` of the source Text ``text``, in one transaction.

        The caller tracks ``at`` (the length it has written): asking Automerge for a Text's
        length walks all of it (32 ms at 4 MiB), which would make a chunked load quadratic."""
        if not more:
            return
        try:
            with self._counted() as (tx, count):
                tx.splice_text(text, at, 0, more)
                count.ops += len(more)
        except Exception as exc:
            raise DocError(f"failed to append to a cell's source: {exc}") from exc

    def cell_key_at(self, index: int) -> bytes | None:
        """The :func:`object_key` of the cell at ``index``, None if there is none (no scan)."""
        cells = self._cells_obj()
        if cells is None or index < 0:
            return None
        got = self._doc.get(cells, index)
        return object_key(bytes(got[1])) if got is not None else None

    def cell_keys(self) -> list[bytes]:
        """The :func:`object_key` of every entry of ``cells``, in order (one pass)."""
        cells = self._cells_obj()
        return [] if cells is None else [object_key(bytes(o)) for _, o in self._doc.values(cells)]

    def delete_cells(self, keys: Collection[bytes]) -> int:
        """Delete exactly the cells whose :func:`object_key` is in ``keys`` (those still
        present), in one transaction; every other cell stays. Returns how many were deleted."""
        wanted = set(keys)
        if not wanted:
            return 0
        indices = [i for i, key in enumerate(self.cell_keys()) if key in wanted]
        if not indices:
            return 0
        cells = self._require_cells()
        try:
            with self._counted() as (tx, ops):
                for index in reversed(indices):
                    tx.delete(cells, index)
                ops.ops += len(indices)
        except Exception as exc:
            raise DocError(f"failed to delete cells: {exc}") from exc
        return len(indices)

    def update_notebook_metadata(self, metadata: Mapping[str, str]) -> None:
        """Put every key of ``metadata`` (key -> JSON text); other keys stay. A key that already
        holds its value is left alone: the same put would make 0 ops, or 1 if the key had
        conflicting values (an op count the API cannot predict)."""
        if not metadata:
            return
        current = self.get_notebook_metadata()
        changed = {k: v for k, v in metadata.items() if current.get(k) != v}
        if not changed:
            return
        try:
            with self._counted() as (tx, count):
                meta = self._metadata_obj(tx)
                if meta is None:
                    meta = tx.put_object(am.ROOT, "metadata", am.ObjType.Map)
                    count.ops += 1
                for key, value in changed.items():
                    tx.put(meta, key, _STR, value)
                    count.ops += 1
        except Exception as exc:
            raise DocError(f"failed to update notebook metadata: {exc}") from exc

    def remove_notebook_metadata(self, written: Mapping[str, str]) -> int:
        """Delete each key of ``written`` whose value is still the one given (a key someone
        changed since stays). Returns how many were deleted."""
        current = self.get_notebook_metadata()
        doomed = [k for k, v in written.items() if current.get(k) == v]
        if not doomed:
            return 0
        try:
            with self._counted() as (tx, count):
                meta = self._metadata_obj(tx)
                assert meta is not None  # the keys were just read from it
                for key in doomed:
                    tx.delete(meta, key)
                    count.ops += 1
        except Exception as exc:
            raise DocError(f"failed to remove notebook metadata: {exc}") from exc
        return len(doomed)

    def set_notebook_extra(self, extra: Mapping[str, str], nbformat_minor: int | None) -> None:
        """Replace the top-level keys nbstream does not model and the file's ``nbformat_minor``
        (kept only above 5; None or <= 5 removes it). An empty ``extra`` removes the map."""
        minor = str(nbformat_minor) if nbformat_minor is not None and nbformat_minor > 5 else None
        old_extra, old_minor = self.get_notebook_extra()
        has_extra, has_minor = (self._doc.get(am.ROOT, k) is not None for k in _ROOT_EXTRA)
        try:
            with self._counted() as (tx, count):
                if extra != old_extra or (has_extra and not extra):
                    if extra:
                        obj = tx.put_object(am.ROOT, "extra", am.ObjType.Map)
                        for key, value in extra.items():
                            tx.put(obj, key, _STR, value)
                        count.ops += 1 + len(extra)
                    else:
                        tx.delete(am.ROOT, "extra")
                        count.ops += 1
                if minor is None and has_minor:
                    tx.delete(am.ROOT, "nbformat_minor")
                    count.ops += 1
                elif minor is not None and minor != old_minor:
                    tx.put(am.ROOT, "nbformat_minor", _STR, minor)
                    count.ops += 1
        except Exception as exc:
            raise DocError(f"failed to set the notebook's extra keys: {exc}") from exc

    # ------------------------------------------------------------------ naive (scanning) ops
    def add_cell(self, index: int, cell_id: str, cell_type: str) -> None:
        """Insert an empty cell at ``index`` (clamped); the first step of the naive path."""
        self.add_cells_full(index, (CellSnapshot(id=cell_id, cell_type=cell_type),))

    def update_source(self, cell_id: str, source: str) -> bool:
        """Replace a cell's source with a minimal prefix/suffix splice. False if not found."""
        obj = self._cell_obj(cell_id)
        if obj is None:
            return False
        got = self._doc.get(obj, "source")
        if got is None or got[0] != am.ObjType.Text:
            raise DocError(f"cell {cell_id!r} has no text source")
        text_obj = bytes(got[1])
        old = self._doc.text(text_obj)
        if old == source:
            return True
        prefix = 0
        limit = min(len(old), len(source))
        while prefix < limit and old[prefix] == source[prefix]:
            prefix += 1
        suffix = 0
        while (
            suffix < limit - prefix
            and old[len(old) - 1 - suffix] == source[len(source) - 1 - suffix]
        ):
            suffix += 1
        deleted = len(old) - prefix - suffix
        inserted = source[prefix : len(source) - suffix]
        with self._counted() as (tx, count):
            tx.splice_text(text_obj, prefix, deleted, inserted)
            count.ops += deleted + len(inserted)
        return True

    def set_outputs(self, cell_id: str, outputs: Sequence[str]) -> bool:
        """Replace a cell's outputs list. False if not found."""
        obj = self._cell_obj(cell_id)
        if obj is None:
            return False
        with self._counted() as (tx, count):
            lst = tx.put_object(obj, "outputs", am.ObjType.List)
            for i, ref in enumerate(outputs):
                tx.insert(lst, i, _STR, ref)
            count.ops += 1 + len(outputs)
        return True

    def set_execution_count(self, cell_id: str, execution_count: str) -> bool:
        """Set a cell's execution count ("5" or "null"). False if not found."""
        obj = self._cell_obj(cell_id)
        if obj is None:
            return False
        got = self._doc.get(obj, "execution_count")
        if got is not None and _str_value(got[0]) == execution_count:
            return True  # already set: the put would make 0 ops (or 1 on a conflict)
        with self._counted() as (tx, count):
            tx.put(obj, "execution_count", _STR, execution_count)
            count.ops += 1
        return True

    def set_cell_metadata(
        self,
        cell_id: str,
        metadata: Mapping[str, str],
        attachments: Mapping[str, str] | None = None,
    ) -> bool:
        """Replace a cell's metadata (and attachments, when given). False if not found."""
        obj = self._cell_obj(cell_id)
        if obj is None:
            return False
        with self._counted() as (tx, count):
            meta = tx.put_object(obj, "metadata", am.ObjType.Map)
            for key, value in metadata.items():
                tx.put(meta, key, _STR, value)
            count.ops += 1 + len(metadata)
            if attachments is not None:
                att = tx.put_object(obj, "attachments", am.ObjType.Map)
                for key, value in attachments.items():
                    tx.put(att, key, _STR, value)
                count.ops += 1 + len(attachments)
        return True

    def add_cell_naive(self, index: int, cell: CellSnapshot) -> None:
        """The pre-#672 path: add_cell then one scanning call per field. O(n) per cell."""
        self.add_cells_full(index, (CellSnapshot(cell.id, cell.cell_type, extra=cell.extra),))
        if cell.source:
            self.update_source(cell.id, cell.source)
        self.set_outputs(cell.id, cell.outputs)
        self.set_execution_count(cell.id, cell.execution_count)
        if cell.metadata or cell.attachments is not None:
            self.set_cell_metadata(cell.id, cell.metadata, cell.attachments)

    def delete_cell(self, cell_id: str) -> bool:
        """Delete the first cell whose id is ``cell_id``. False if not found."""
        index = self.find_cell_index(cell_id)
        if index is None:
            return False
        cells = self._require_cells()
        with self._counted() as (tx, count):
            tx.delete(cells, index)
            count.ops += 1
        return True

    # ------------------------------------------------------------------ sync
    def generate_sync_message(self, state: am.SyncState) -> bytes | None:
        """The next Automerge sync message for the peer whose state is ``state``, if any."""
        message = self._doc.generate_sync_message(state)
        if message is None:
            return None
        data = bytes(message.encode())
        self._counters.sync_messages_generated += 1
        self._counters.sync_bytes_generated += len(data)
        return data

    def receive_sync_message(self, state: am.SyncState, data: bytes) -> None:
        """Apply a peer's sync message. Undecodable or inapplicable → :class:`MessageError`.

        Needs for changes this document lacks are dropped first (:mod:`core.sync_needs`: a
        stall of the bundled Automerge, fixed upstream in 0.11)."""
        data = strip_unknown_needs(data, self._change_lookup())
        try:
            message = am.Message.decode(data)
        except Exception as exc:
            raise MessageError(f"undecodable Automerge sync message: {exc}") from exc
        try:
            self._doc.receive_sync_message(state, message)
        except Exception as exc:
            raise MessageError(f"Automerge sync message could not be applied: {exc}") from exc
        self._counters.sync_messages_received += 1
        self._counters.sync_bytes_received += len(data)

    def _change_lookup(self) -> Callable[[bytes], bool]:
        """Whether the document holds a change, by hash; the hashes are read on first use only
        (a message with needs, rare: after a false positive of the sync Bloom filter)."""
        held: set[bytes] | None = None

        def has(change: bytes) -> bool:
            nonlocal held
            if held is None:
                held = {bytes(c.hash) for c in self._doc.get_changes([])}
            return change in held

        return has

    # ------------------------------------------------------------------ counters
    def statistics(self) -> DocStatistics:
        c = self._counters
        return DocStatistics(**{name: getattr(c, name) for name in DocStatistics.__slots__})
