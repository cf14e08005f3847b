"""``nbstream profile``: where one load's time goes, phase by phase.

Runs the single-peer scenario (real on-disk blob store in a temporary directory, in-memory
streams) ``runs`` times and reports the median of each phase: read, parse, manifests/blobs,
insert, sync generation, network (write + drain), plus time to first cell and to full.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from core.blob_store import DiskBlobStore
from core.loader import InsertPath
from sim.harness.external import fresh_copy
from sim.harness.runner import run_scenario
from sim.harness.scenarios import build_scenario
from sim.harness.target import Target
from sim.results.profile import ProfileResult
from sim.results.sim import PHASE_NAMES, Phases, SimResult

__all__ = ["PHASES", "profile_notebook"]

PHASES = PHASE_NAMES


async def profile_notebook(
    notebook: Path,
    *,
    runs: int = 3,
    batch_size: int = 3,
    insert_path: InsertPath = "full",
    seed: int = 0,
    target: Target | None = None,
) -> ProfileResult:
    """Profile ``runs`` loads of ``notebook``; the median run's rows plus per-phase medians.

    ``target`` (started by the caller): another server; each run loads a fresh copy of the
    notebook beside it (a new room, so every run is a load), and its phases are the server's
    answer to ``statistics``, or absent."""
    results: list[SimResult] = []
    scenario = build_scenario("single", seed=seed, batches=1)
    for i in range(runs):
        if target is not None:
            with fresh_copy(notebook, f"profile{i}") as copy:
                results.append(
                    await run_scenario(
                        scenario,
                        copy,
                        batch_size=batch_size,
                        seed=seed,
                        target=target,
                        shown_as=notebook,
                    )
                )
            continue
        with tempfile.TemporaryDirectory(prefix="nbprof-") as tmp:
            results.append(
                await run_scenario(
                    scenario,
                    notebook,
                    batch_size=batch_size,
                    insert_path=insert_path,
                    seed=seed,
                    blob_store=DiskBlobStore(Path(tmp) / "blobs"),
                )
            )

    def phase(r: SimResult, name: str) -> float:
        return 0.0 if r.phases is None else r.phases.get(name)

    medians = (
        Phases(*(statistics.median(phase(r, k) for r in results) for k in PHASES))
        if all(r.phases is not None for r in results)
        else None  # a server that does not answer `statistics`: absent, not zeros
    )
    middle = sorted(results, key=lambda r: phase(r, "total_s"))[len(results) // 2]
    loader = middle.peers[0] if middle.peers else None
    return ProfileResult(
        notebook=middle.notebook,
        runs=runs,
        batch_size=batch_size,
        insert_path=insert_path,
        phases=medians,
        phases_per_run=tuple(r.phases for r in results),
        time_to_first_cell_s=None if loader is None else loader.time_to_first_cell_s,
        time_to_full_s=None if loader is None else loader.time_to_full_s,
        batches=middle.batches,
        counters=middle.counters,
        raw_automerge_s=middle.raw_automerge_s,
        checks=tuple(c for r in results for c in r.checks if not c.ok),
        server=middle.server,
    )
