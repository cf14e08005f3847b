"""sim.harness.hardening: many peers in one room, many rooms at once, a stalled peer.

The workloads live in :mod:`sim.harness.hardening` (``python -m sim.harness.hardening --json``
prints the figures); these tests run them and check what they report. Every wait inside is a
condition with a safety timeout (a timeout is a failed check, never a hang); no test sleeps.

Default run: 50 rooms loading at once, a stalled loader with 20 joiners, 100 peers in one room.
``-m slow``: the full 500 peers in one room, and the whole script end to end in subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from sim.harness.hardening import many_peers, many_rooms, stalled_peer
from sim.harness.scenarios import SLOW_BUFFER

from .conftest import REPO
from .test_hostile_inputs import only_with_m_slow

TIMEOUT = 120.0
# A peer costs its own Automerge replica (the peers run in this process) plus its session; a
# daemon that queued a message per batch per peer instead of coalescing would cost the whole
# notebook per batch per peer (tens of MB each). The bound is 10x what we measure.
MAX_RSS_GROWTH_PER_PEER_KIB = 2048


async def test_50_rooms_load_at_once() -> None:
    figures = await many_rooms(50, cells=12, timeout=TIMEOUT)
    assert figures["checks_failed"] == []
    assert figures["max_concurrent_loads"] == 50  # every load was past parsing at once
    assert figures["loads_ok"] == figures["rooms_converged"] == 50
    assert figures["stalled_peer_held"]  # the stalled peer stayed connected throughout
    assert figures["ok"]


async def test_stalled_loader_blocks_nobody() -> None:
    figures = await stalled_peer(20, timeout=TIMEOUT)
    assert figures["checks_failed"] == []
    assert figures["peers"] == 20 and figures["converged"]
    assert figures["stalled_peer_still_connected"]
    assert figures["stalled_bytes_delivered"] == 0  # its pipe never delivered a byte
    # Bytes queued for it: its 4 KiB buffer plus at most one (coalesced) sync message.
    assert figures["stalled_bytes_queued"] <= SLOW_BUFFER + figures["full_sync_bytes"] + 1024
    assert figures["ok"]


async def test_100_peers_in_one_room() -> None:
    figures = await many_peers(100, timeout=TIMEOUT)
    assert figures["checks_failed"] == []
    assert figures["peers"] == figures["converged_peers"] == 100
    assert figures["joined_mid_load"] == 99
    assert figures["cells"] == 50
    assert figures["rss_growth_per_peer_kib"] < MAX_RSS_GROWTH_PER_PEER_KIB
    assert figures["ok"]


@pytest.mark.slow
@only_with_m_slow
@pytest.mark.timeout(1800)
async def test_500_peers_in_one_room() -> None:
    figures = await many_peers(500, timeout=600.0)
    print(f"\n500 peers: {json.dumps(figures, sort_keys=True)}")
    assert figures["checks_failed"] == []
    assert figures["peers"] == figures["converged_peers"] == 500
    assert figures["joined_mid_load"] == 499
    # (ru_maxrss is a process-wide peak: after other tests in this process it says little;
    # the script test below measures each workload in a fresh process)
    assert figures["rss_growth_per_peer_kib"] < MAX_RSS_GROWTH_PER_PEER_KIB
    assert figures["ok"]


@pytest.mark.slow
@only_with_m_slow
@pytest.mark.timeout(1800)
async def test_hardening_script_reproduces_the_figures() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sim.harness.hardening",
        "--json",
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 1500)
    assert proc.returncode == 0, err.decode()[-2000:]
    data = json.loads(out)
    assert data["command"] == "hardening" and data["ok"]
    workloads = data["workloads"]
    assert set(workloads) == {"many-peers", "many-rooms", "stalled-peer"}
    assert workloads["many-peers"]["peers"] == 500
    assert workloads["many-rooms"]["rooms"] == 50
    for figures in workloads.values():
        assert figures["peak_rss_kib"] > 0 and figures["wall_s"] > 0
    # each workload ran in its own process, so these are its own memory figures
    assert workloads["many-peers"]["rss_growth_per_peer_kib"] < MAX_RSS_GROWTH_PER_PEER_KIB
    assert workloads["stalled-peer"]["stalled_queue_bounded"]
    print(f"\nhardening figures: {json.dumps(data, sort_keys=True)}")
