"""Peers beyond one process: ``nbstream sim --workers N`` with many peers, timed.

Runs ``nbstream sim --scenario many-peers --peers P --workers W --json`` (default 2000 peers over
2 workers, the bundled reference notebook) and prints one line: peers converged, wall time, the
load's own time, the daemon's and each worker's peak RSS, and the load average before and after.
Issue 15's target: 2000 peers over 2 worker processes, all converged. A timing of the machine at
hand: never asserted. Run directly: ``python -m benchmarks.bench_workers [PEERS [WORKERS]]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any


def measure(peers: int = 2000, workers: int = 2) -> dict[str, Any]:
    before = os.getloadavg()
    cmd = [sys.executable, "-m", "sim.cli.main", "sim", "--scenario", "many-peers"]
    cmd += ["--peers", str(peers), "--workers", str(workers), "--timeout", "600", "--json"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if not done.stdout:
        raise SystemExit(f"bench_workers: {done.stderr.strip() or 'no output'}")
    data = json.loads(done.stdout)
    return {
        "peers": len(data["peers"]),
        "converged": sum(p["converged"] for p in data["peers"]),
        "ok": data["ok"],
        "wall_s": wall,
        "load_s": data["phases"].get("total_s"),
        "daemon_peak_rss_kib": data["peak_rss_kib"],
        "worker_peak_rss_kib": [w["peak_rss_kib"] for w in data["workers"]],
        "load_average": (round(before[0], 2), round(os.getloadavg()[0], 2)),
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    r = measure(*args)
    print(
        f"sim --workers: {r['converged']}/{r['peers']} peers converged (ok {r['ok']}) in "
        f"{r['wall_s']:.1f} s wall, load {r['load_s']:.1f} s; peak RSS daemon "
        f"{r['daemon_peak_rss_kib']} KiB, workers {r['worker_peak_rss_kib']} KiB; "
        f"load average {r['load_average'][0]} -> {r['load_average'][1]}"
    )
