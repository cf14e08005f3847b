"""``nbstream profile``: where one load's time goes, phase by phase.

Runs the single-peer scenario (real on-disk blob store in a temporary directory, in-memory
streams) ``runs`` times and reports the median of each phase: read, parse, manifests/blobs,
insert, sync generation, network (write + drain), plus time to first cell and to full.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from core.blob_store import DiskBlobStore
from core.loader import InsertPath
from sim.harness.runner import SimResult, run_scenario
from sim.harness.scenarios import build_scenario

__all__ = ["PHASES", "profile_notebook"]

PHASES = ("read_s", "parse_s", "manifest_s", "insert_s", "sync_gen_s", "network_s", "total_s")


async def profile_notebook(
    notebook: Path,
    *,
    runs: int = 3,
    batch_size: int = 3,
    insert_path: InsertPath = "full",
    seed: int = 0,
) -> dict[str, Any]:
    """Profile ``runs`` loads of ``notebook``; the median run's rows plus per-phase medians."""
    results: list[SimResult] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="nbprof-") as tmp:
            scenario = build_scenario("single", seed=seed, batches=1)
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
    medians = {k: statistics.median(r.phases.get(k, 0.0) for r in results) for k in PHASES}
    middle = sorted(results, key=lambda r: r.phases.get("total_s", 0.0))[len(results) // 2]
    loader = middle.peers[0] if middle.peers else {}
    return {
        "command": "profile",
        "notebook": middle.notebook,
        "runs": runs,
        "batch_size": batch_size,
        "insert_path": insert_path,
        "phases": medians,
        "phases_per_run": [r.phases for r in results],
        "time_to_first_cell_s": loader.get("time_to_first_cell_s"),
        "time_to_full_s": loader.get("time_to_full_s"),
        "batches": middle.batches,
        "counters": middle.counters,
        "raw_automerge_s": middle.raw_automerge_s,
        "ok": all(r.ok for r in results),
        "checks": [c.to_dict() for r in results for c in r.checks if not c.ok],
    }
