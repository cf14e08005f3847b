"""One full streaming load of the default 50-cell reference notebook to one peer.

Each round runs ``asyncio.run`` on a fresh coroutine (a coroutine cannot be reused) with a fresh
``Daemon`` (``MemoryBlobStore``) and a client over a ``socket.socketpair()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.common import LoadResult, run_load


@pytest.mark.benchmark(group="load")
def test_streaming_load_reference(benchmark: Any, reference_notebook: Path) -> None:
    result: LoadResult = benchmark.pedantic(
        run_load, args=(reference_notebook,), rounds=15, iterations=1, warmup_rounds=1
    )
    assert result.cells == 50
    assert result.scan_steps == 0
    assert result.change_frames >= 17  # one per batch of 3 (progressive delivery), + metadata
    benchmark.extra_info.update(
        ops=result.ops,
        transactions=result.transactions,
        change_frames=result.change_frames,
        time_to_first_cell_s=result.time_to_first_cell_s,
    )
