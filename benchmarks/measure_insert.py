"""Insert-transaction time with the analytic op counters vs. the old read-back (one run).

Not an asv suite (no ``time_`` names): ``python -m benchmarks.measure_insert``. "before" adds
``get_last_local_change()`` after every ``add_cells_full``, which is exactly what every counted
transaction cost before the ops were counted as they are written.
"""

from __future__ import annotations

import statistics
import time


def _run(snapshots: list[object], batch: int, *, read_back: bool) -> float:
    from core.notebook_doc import NotebookDoc

    doc = NotebookDoc("bench")
    t0 = time.perf_counter()
    for start in range(0, len(snapshots), batch):
        doc.add_cells_full(start, snapshots[start : start + batch])  # type: ignore[arg-type]
        if read_back:
            doc._doc.get_last_local_change()
    return time.perf_counter() - t0


def main(cells: int = 800, repeats: int = 7) -> None:
    from benchmarks.common import cell_snapshots

    snapshots = cell_snapshots(cells)
    for batch in (3, cells):
        before: list[float] = []
        after: list[float] = []
        for _ in range(repeats):
            before.append(_run(snapshots, batch, read_back=True))
            after.append(_run(snapshots, batch, read_back=False))
        b, a = statistics.median(before), statistics.median(after)
        print(
            f"{cells} cells, batch {batch}: before {b * 1e3:.1f} ms, after {a * 1e3:.1f} ms "
            f"(median of {repeats}; {100 * (b - a) / b:.0f} % less)"
        )


if __name__ == "__main__":
    main()
