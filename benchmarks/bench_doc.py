"""``NotebookDoc`` without sockets: inserting cells (whole-cell vs naive path) and syncing a doc."""

from __future__ import annotations

from typing import Any

from .common import (
    DOC_CELLS,
    INSERT_PATHS,
    LOAD_CELLS,
    cell_snapshots,
    check_cache,
    insert_cells,
    missing,
    new_doc,
    require,
)


class AddCells:
    """Insert a whole notebook into an empty doc, in batches of 3 like the loader.

    ``full``: ``add_cells_full`` (one transaction per batch, no scans). ``naive``: the scanning
    ``add_cell`` + ``update_source`` + ``set_outputs`` + ... sequence, O(n) per cell. Every timed
    call gets a fresh document (``number = 1``: asv re-runs ``setup`` before each sample).
    """

    params = (list(DOC_CELLS), list(INSERT_PATHS))
    param_names = ("cells", "insert_path")
    number = 1
    repeat = (3, 20, 10.0)
    timeout = 300.0

    def setup_cache(self) -> dict[str, Any]:
        try:
            return {"snapshots": {cells: cell_snapshots(cells) for cells in DOC_CELLS}}
        except NotImplementedError as exc:
            return missing(exc)

    def setup(self, cache: dict[str, Any], cells: int, insert_path: str) -> None:
        self.snapshots = check_cache(cache)["snapshots"][cells]
        require("core.notebook_doc", "NotebookDoc")
        self.doc = new_doc()

    def _insert(self, insert_path: str) -> Any:
        insert_cells(self.doc, self.snapshots, insert_path)
        return self.doc.statistics()

    def time_insert(self, cache: dict[str, Any], cells: int, insert_path: str) -> None:
        insert_cells(self.doc, self.snapshots, insert_path)

    def peakmem_insert(self, cache: dict[str, Any], cells: int, insert_path: str) -> None:
        insert_cells(self.doc, self.snapshots, insert_path)

    def track_ops(self, cache: dict[str, Any], cells: int, insert_path: str) -> int:
        ops: int = self._insert(insert_path).ops
        return ops

    track_ops.unit = "automerge ops"  # type: ignore[attr-defined]

    def track_transactions(self, cache: dict[str, Any], cells: int, insert_path: str) -> int:
        transactions: int = self._insert(insert_path).transactions
        return transactions

    track_transactions.unit = "transactions"  # type: ignore[attr-defined]

    def track_scan_steps(self, cache: dict[str, Any], cells: int, insert_path: str) -> int:
        steps: int = self._insert(insert_path).scan_steps
        return steps

    track_scan_steps.unit = "cells visited"  # type: ignore[attr-defined]


class SyncToNewPeer:
    """A loaded doc syncs to an empty peer (a late joiner), plus save/load of the whole doc."""

    params = (list(LOAD_CELLS),)
    param_names = ("cells",)
    timeout = 300.0

    def setup_cache(self) -> dict[str, Any]:
        try:
            saved: dict[int, bytes] = {}
            for cells in LOAD_CELLS:
                doc = new_doc()
                insert_cells(doc, cell_snapshots(cells), "full")
                saved[cells] = doc.save()
            return {"saved": saved}
        except NotImplementedError as exc:
            return missing(exc)

    def setup(self, cache: dict[str, Any], cells: int) -> None:
        self.saved = check_cache(cache)["saved"][cells]
        self.doc_cls = require("core.notebook_doc", "NotebookDoc").NotebookDoc
        self.sync_state = require("automerge.core", "SyncState").SyncState
        self.doc = self.doc_cls.load(self.saved)

    def _sync(self) -> tuple[int, int]:
        """Sync ``self.doc`` to a fresh empty peer; (messages, bytes) both ways."""
        peer = self.doc_cls.empty()
        ours, theirs = self.sync_state(), self.sync_state()
        messages = nbytes = 0
        while True:
            sent = False
            for src, dst, state_src, state_dst in (
                (self.doc, peer, ours, theirs),
                (peer, self.doc, theirs, ours),
            ):
                message = src.generate_sync_message(state_src)
                if message is not None:
                    dst.receive_sync_message(state_dst, message)
                    messages += 1
                    nbytes += len(message)
                    sent = True
            if not sent:
                break
        if peer.cell_count() != self.doc.cell_count():
            raise AssertionError("sync did not converge")
        return messages, nbytes

    def time_sync(self, cache: dict[str, Any], cells: int) -> None:
        self._sync()

    def peakmem_sync(self, cache: dict[str, Any], cells: int) -> None:
        self._sync()

    def track_sync_messages(self, cache: dict[str, Any], cells: int) -> int:
        return self._sync()[0]

    track_sync_messages.unit = "messages"  # type: ignore[attr-defined]

    def track_sync_bytes(self, cache: dict[str, Any], cells: int) -> int:
        return self._sync()[1]

    track_sync_bytes.unit = "bytes"  # type: ignore[attr-defined]

    def time_save(self, cache: dict[str, Any], cells: int) -> None:
        self.doc.save()

    def time_load_saved(self, cache: dict[str, Any], cells: int) -> None:
        self.doc_cls.load(self.saved)

    def track_saved_bytes_per_cell(self, cache: dict[str, Any], cells: int) -> float:
        return len(self.saved) / cells

    track_saved_bytes_per_cell.unit = "bytes/cell"  # type: ignore[attr-defined]
