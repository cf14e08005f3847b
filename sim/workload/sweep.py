"""A size sweep built from a user's own notebook (``nbstream scale --notebook PATH``).

The sweep notebook of ``n`` cells takes the notebook's first ``n`` cells; past its length the
cells repeat in order, each repeat with a fresh id (``<id>-r<k>`` for the k-th repeat, made
unique against every id already used), so the copies are new cells, not duplicates a reader
would repair. Cells keep their type, source, metadata, attachments and outputs; the notebook
keeps its top-level metadata. The result is nbformat 4.5 (4.x above 5 keeps its minor), which
has cell ids, whatever the input's version (nbformat 3 and ids-less 4.x are read by
:func:`core.ipynb.parse_notebook`, which settles their ids first).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from core.errors import CoreError
from core.ipynb import CellRecord, ParsedNotebook, parse_notebook

__all__ = ["NotebookSweep", "SweepError"]

MAX_ID = 64  # nbformat 4.5: ids are 1-64 characters


class SweepError(ValueError):
    """The notebook cannot seed a sweep (unreadable, invalid, or without cells)."""


class NotebookSweep:
    """Sweep notebooks of any size, built from ``path``'s cells."""

    def __init__(self, path: Path) -> None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SweepError(f"--notebook {path}: {exc.strerror or exc}") from None
        try:
            self.parsed: ParsedNotebook = parse_notebook(data)
        except CoreError as exc:
            raise SweepError(f"--notebook {path}: {exc}") from None
        if not self.parsed.cells:
            raise SweepError(f"--notebook {path}: the notebook has no cells to repeat")
        self.path = path
        self.source = {
            "path": str(path),
            "cells": len(self.parsed.cells),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    @property
    def cells(self) -> int:
        return len(self.parsed.cells)

    def notebook(self, n: int) -> dict[str, Any]:
        """The sweep notebook of ``n`` cells, as nbformat JSON (python values)."""
        records = self.parsed.cells
        taken = {r.id for r in records}
        cells = []
        for i in range(n):
            record = records[i % len(records)]
            repeat = i // len(records)
            cell_id = record.id if repeat == 0 else _fresh_id(record.id, repeat, taken)
            cells.append(_cell(record, cell_id))
        minor = self.parsed.nbformat_minor if self.parsed.nbformat == 4 else 5
        return {
            **self.parsed.extra,
            "cells": cells,
            "metadata": self.parsed.metadata,
            "nbformat": 4,
            "nbformat_minor": max(5, minor),
        }

    def notebook_bytes(self, n: int) -> bytes:
        return json.dumps(self.notebook(n), indent=1, ensure_ascii=False).encode("utf-8")


def _fresh_id(base: str, repeat: int, taken: set[str]) -> str:
    suffix = f"-r{repeat}"
    candidate = base[: MAX_ID - len(suffix)] + suffix
    k = 1
    while candidate in taken:  # an id of the notebook already ends like this: make it unique
        extra = f"-r{repeat}-{k}"
        candidate = base[: MAX_ID - len(extra)] + extra
        k += 1
    taken.add(candidate)
    return candidate


def _cell(record: CellRecord, cell_id: str) -> dict[str, Any]:
    cell: dict[str, Any] = dict(record.extra or {})
    cell.update(
        id=cell_id, cell_type=record.cell_type, metadata=record.metadata, source=record.source
    )
    if record.attachments is not None:
        cell["attachments"] = record.attachments
    if record.cell_type == "code":
        count = record.execution_count
        cell["execution_count"] = None if count == "null" else int(count)
        cell["outputs"] = list(record.outputs)
    return cell
