"""The streaming load, end to end: file -> daemon -> framed sync messages -> peers.

Each timed call is one whole load on a fresh ``Daemon`` (``MemoryBlobStore``) and a fresh event
loop, the peers connected over a stream pair; it returns when every peer has every cell.
"""

from __future__ import annotations

from typing import Any

from .common import (
    BATCH_SIZES,
    INSERT_PATHS,
    LOAD_CELLS,
    NAIVE_MAX_CELLS,
    PEERS,
    TRANSPORTS,
    LoadResult,
    NotebookFiles,
    check_cache,
    missing,
    notebook_bytes,
    require_load_api,
    run_load,
)


def _skip_slow_naive(cells: int, insert_path: str) -> None:
    if insert_path == "naive" and cells > NAIVE_MAX_CELLS:
        raise NotImplementedError(
            f"naive path above {NAIVE_MAX_CELLS} cells is too slow to repeat "
            "(O(n^2); see bench_complexity for its exponent)"
        )


def _cleanup(bench: Any) -> None:
    # asv runs teardown even when setup raised NotImplementedError (a skip) before the files.
    files = getattr(bench, "files", None)
    if files is not None:
        files.cleanup()


class StreamingLoad:
    """One peer loads a notebook: cells x batch size x insert path.

    ``time_load`` / ``peakmem_load`` measure; the ``track_*`` counters come from one load per
    parameter combination done once in ``setup_cache`` (they are deterministic, so one is enough).
    """

    params = (list(LOAD_CELLS), list(BATCH_SIZES), list(INSERT_PATHS))
    param_names = ("cells", "batch_size", "insert_path")
    rounds = 2
    repeat = (2, 10, 10.0)  # (min, max, seconds) samples per round
    timeout = 300.0

    def setup_cache(self) -> dict[str, Any]:
        try:
            require_load_api()
        except NotImplementedError as exc:
            return missing(exc)
        files = NotebookFiles()
        counters: dict[tuple[int, int, str], LoadResult] = {}
        try:
            for cells in LOAD_CELLS:
                for batch_size in BATCH_SIZES:
                    for insert_path in INSERT_PATHS:
                        if insert_path == "naive" and cells > NAIVE_MAX_CELLS:
                            continue
                        counters[cells, batch_size, insert_path] = run_load(
                            files.path(cells), batch_size=batch_size, insert_path=insert_path
                        )
        finally:
            files.cleanup()
        return {"counters": counters}

    setup_cache.timeout = 600.0  # type: ignore[attr-defined]

    def setup(self, cache: dict[str, Any], cells: int, batch_size: int, insert_path: str) -> None:
        check_cache(cache)
        _skip_slow_naive(cells, insert_path)
        self.result: LoadResult = cache["counters"][cells, batch_size, insert_path]
        self.files = NotebookFiles()
        self.path = self.files.path(cells)

    def teardown(
        self, cache: dict[str, Any], cells: int, batch_size: int, insert_path: str
    ) -> None:
        _cleanup(self)

    def time_load(
        self, cache: dict[str, Any], cells: int, batch_size: int, insert_path: str
    ) -> None:
        run_load(self.path, batch_size=batch_size, insert_path=insert_path)

    def peakmem_load(
        self, cache: dict[str, Any], cells: int, batch_size: int, insert_path: str
    ) -> None:
        run_load(self.path, batch_size=batch_size, insert_path=insert_path)

    def track_ops(
        self, cache: dict[str, Any], cells: int, batch_size: int, insert_path: str
    ) -> int:
        return self.result.ops

    track_ops.unit = "automerge ops"  # type: ignore[attr-defined]

    def track_transactions(
        self, cache: dict[str, Any], cells: int, batch_size: int, insert_path: str
    ) -> int:
        return self.result.transactions

    track_transactions.unit = "transactions"  # type: ignore[attr-defined]

    def track_scan_steps(
        self, cache: dict[str, Any], cells: int, batch_size: int, insert_path: str
    ) -> int:
        return self.result.scan_steps

    track_scan_steps.unit = "cells visited"  # type: ignore[attr-defined]

    def track_change_frames(
        self, cache: dict[str, Any], cells: int, batch_size: int, insert_path: str
    ) -> int:
        return self.result.change_frames

    track_change_frames.unit = "frames with changes"  # type: ignore[attr-defined]

    def track_wire_bytes_per_cell(
        self, cache: dict[str, Any], cells: int, batch_size: int, insert_path: str
    ) -> float:
        return self.result.change_bytes / self.result.cells

    track_wire_bytes_per_cell.unit = "bytes/cell"  # type: ignore[attr-defined]


class MultiPeerLoad:
    """Several peers open the same notebook at once; one loads it, the rest join the room.

    Full insert path, batch size 3 (the daemon's default). The ``memory`` transport is the
    simulator's in-memory duplex (``sim.net.streams``); ``socketpair`` is a kernel AF_UNIX pair.
    """

    params = ([50, 200], list(PEERS), list(TRANSPORTS))
    param_names = ("cells", "peers", "transport")
    rounds = 2
    repeat = (2, 10, 10.0)
    timeout = 300.0

    def setup(self, cells: int, peers: int, transport: str) -> None:
        require_load_api(transport)
        notebook_bytes(cells)  # generate outside the timed call
        self.files = NotebookFiles()
        self.path = self.files.path(cells)

    def teardown(self, cells: int, peers: int, transport: str) -> None:
        _cleanup(self)

    def time_load(self, cells: int, peers: int, transport: str) -> None:
        run_load(self.path, peers=peers, transport=transport)

    def peakmem_load(self, cells: int, peers: int, transport: str) -> None:
        run_load(self.path, peers=peers, transport=transport)
