"""Explore throughput: ``nbstream explore`` schedules per second over 2 shard processes.

Runs ``--schedules N`` (2000) from ``--seed 1000`` as ``--shard 0/2`` and ``--shard 1/2`` side
by side (one per core), merges the two results (``nbstream merge``) and prints one line: the
schedules, the wall time of the whole (start to both shards done), the merged
``schedules_per_s``, failures, ``edits_lost`` and the load average. Issue 15's target: 2000
schedules in <= 5 minutes on 2 cores. A timing of the machine at hand: never asserted.
Run directly: ``python -m benchmarks.bench_explore [N]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHARDS = 2


def measure(schedules: int = 2000, seed: int = 1000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-explore-") as tmp:
        files = [Path(tmp) / f"shard{i}.json" for i in range(SHARDS)]
        cmd = [sys.executable, "-m", "sim.cli.main", "explore", "--schedules", str(schedules)]
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                [*cmd, "--seed", str(seed), "--shard", f"{i}/{SHARDS}", "--output", str(f)],
                stdout=subprocess.DEVNULL,
            )
            for i, f in enumerate(files)
        ]
        for p in procs:
            p.wait()
        wall = time.perf_counter() - t0
        merged = subprocess.run(
            [sys.executable, "-m", "sim.cli.main", "merge", *map(str, files), "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        data = json.loads(merged.stdout)
    return {
        "schedules": data["schedules"],
        "wall_s": wall,
        "schedules_per_s": data["schedules_per_s"],
        "failures": len(data["failures"]),
        "edits_lost": data["edits_lost"],
        "load_average": os.getloadavg(),
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    r = measure(n)
    print(
        f"explore: {r['schedules']} schedules over {SHARDS} shards in {r['wall_s']:.1f} s "
        f"({r['schedules_per_s']:.1f}/s merged), {r['failures']} failed, "
        f"edits_lost {r['edits_lost']}; load average {r['load_average']}"
    )
