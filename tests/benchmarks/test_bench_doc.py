"""Whole-cell inserts (``add_cells_full``, batches of 3) vs the naive scanning path.

One group per notebook size, so ``full`` and ``naive`` sit side by side in the table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from benchmarks.common import insert_cells
from core.notebook_doc import NotebookDoc

ROUNDS = {"full": 15, "naive": 9}  # naive at 200 cells is ~0.9 s a round


@pytest.mark.parametrize("insert_path", ["full", "naive"])
@pytest.mark.parametrize("cells", [50, 200])
def test_insert(
    benchmark: Any, snapshots: Callable[[int], list[Any]], cells: int, insert_path: str
) -> None:
    benchmark.group = f"doc-insert-{cells}-cells"
    cell_list = snapshots(cells)
    docs: list[NotebookDoc] = []

    def fresh_doc() -> tuple[tuple[Any, ...], dict[str, Any]]:
        docs.append(NotebookDoc("bench"))  # a fresh document per round, built outside timing
        return (docs[-1], cell_list, insert_path), {}

    benchmark.pedantic(
        insert_cells, setup=fresh_doc, rounds=ROUNDS[insert_path], iterations=1, warmup_rounds=1
    )
    stats = docs[-1].statistics()
    assert docs[-1].cell_count() == cells
    assert (stats.scan_steps == 0) is (insert_path == "full")
    benchmark.extra_info.update(
        ops=stats.ops, transactions=stats.transactions, scan_steps=stats.scan_steps
    )
