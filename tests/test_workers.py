"""``nbstream sim --workers N`` (issue 15 item 4): peers in worker processes, one result."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sim.cli.main import main
from sim.harness.multi_runner import run_scenario_workers
from sim.harness.scenarios import build_scenario
from sim.harness.target import BundledTarget
from sim.harness.worker_pool import WorkerFailed, WorkerPool
from sim.results.schemas import KINDS
from sim.results.sim import SimResult
from sim.workload.generator import write_notebook


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nb") / "gen-15.ipynb"
    write_notebook(path, cells=15, seed=4)
    return path


def _validate(data: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(KINDS["sim"])
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(data)]
    assert not errors, errors[:5]


async def test_two_workers_times_twenty_peers_converge(notebook: Path) -> None:
    scenario = build_scenario("many-peers", seed=2, batches=5, peers=40)
    result = await run_scenario_workers(scenario, notebook, workers=2, timeout=60)
    assert result.ok, [c for c in result.checks if not c.ok]
    assert result.converged and result.cells == 15
    assert result.workers is not None
    assert [w.peers for w in result.workers] == [20, 20]
    assert all(w.peak_rss_kib > 0 for w in result.workers)
    assert len(result.peers) == 40 and all(p.converged for p in result.peers)
    assert all(p.time_to_full_s is not None and p.frames_in > 0 for p in result.peers)
    joined = {p.name: p.joined_at_batch for p in result.peers}
    assert joined == {s.name: s.join_at_batch for s in scenario.peers}
    # latency per batch: every peer in the room by then got that batch's cells
    for batch in result.batches:
        for name, latency in batch.latency_s.items():
            if joined[name] is None or joined[name] <= batch.index:
                assert latency is not None and latency >= 0, (batch.index, name)
    data = result.to_json()
    _validate(data)
    assert SimResult.from_json(data).workers == result.workers


@pytest.mark.parametrize("name", ["failure", "loader-disconnect", "slow-peers", "disconnect"])
async def test_fault_scenarios_over_workers(name: str, notebook: Path) -> None:
    scenario = build_scenario(name, seed=3, batches=5)
    result = await run_scenario_workers(scenario, notebook, workers=2, timeout=60)
    assert result.ok, [c for c in result.checks if not c.ok]
    assert result.converged
    if name in ("failure", "loader-disconnect"):
        names = [c.name for c in result.checks]
        assert "rollback: every peer settled" in names and "retry loaded" in names
        assert any(p.name == "retry" and p.converged for p in result.peers)


def test_cli_workers_json_and_text(notebook: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["sim", str(notebook), "--scenario", "join-mid-load", "--workers", "2", "--json"]) == 0
    )
    data = json.loads(capsys.readouterr().out)
    _validate(data)
    assert [w["index"] for w in data["workers"]] == [0, 1]
    assert data["transport"] == "unix" and data["converged"]
    assert main(["sim", str(notebook), "--workers", "2"]) == 0
    assert "worker 1 (" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--scenario", "edits"], "--workers runs the load scenarios"),
        (["--check-determinism"], "--workers runs the load scenarios"),
        (["--connect", "/nonexistent.sock"], "cannot connect to /nonexistent.sock"),
        (["--connect", "/nonexistent.sock", "--scenario", "failure"], "needs the bundled"),
        (["--transport", "socketpair"], "Unix socket"),
        (["--joins", "progress"], "batch hook"),
    ],
)
def test_cli_workers_bad_usage_is_one_line_exit_2(
    notebook: Path, extra: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["sim", str(notebook), "--workers", "2", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "Traceback" not in err and len(err.splitlines()) == 1, err


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Path]:
    """A real ``nbstream serve`` in its own process, serving ``tmp_path``; its socket."""
    sock = tmp_path / "s.sock"
    serve = ["serve", "--socket", str(sock), "--blob-root", str(tmp_path / "blobs")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim.cli.main", *serve, "--root", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not _listening(sock):  # the condition: the socket accepts
            assert proc.poll() is None, "nbstream serve exited"
            assert time.monotonic() < deadline, "nbstream serve never listened"
            time.sleep(0.02)
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


@pytest.mark.parametrize("name", ["many-peers", "loader-disconnect"])
def test_workers_against_a_server_of_another_process(
    name: str, served: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A server of another process cannot be paused at a batch: the loader leaves once it has
    # heard half the cells, so the notebook must be long enough that the load cannot finish
    # first (with 15 cells it sometimes did, and no retry was made).
    cells = 300 if name == "loader-disconnect" else 15
    nb = write_notebook(tmp_path / "nb.ipynb", cells=cells, seed=4).path
    args = ["sim", str(nb), "--scenario", name, "--peers", "10", "--workers", "2", "--json"]
    assert main([*args, "--connect", str(served)]) == 0
    data = json.loads(capsys.readouterr().out)
    _validate(data)
    assert data["ok"] and data["converged"] and data["cells"] == cells
    assert data["server"] == f"server on {served}, peers in 2 worker processes"
    assert "peak_rss_kib" not in data  # the server's memory is not ours
    assert sum(w["peers"] for w in data["workers"]) == len(data["peers"])
    if name == "loader-disconnect":  # the retry's load, heard by the retry peer
        assert any(c["name"] == "retry loaded" and c["ok"] for c in data["checks"])


async def test_a_worker_that_dies_is_one_clear_error_not_a_hang(notebook: Path) -> None:
    async with BundledTarget(transport="unix") as target:
        assert target.socket_path is not None
        pool = WorkerPool(2, target.socket_path, notebook, timeout=30)
        await pool.start()
        try:
            os.kill(pool.workers[1].pid, signal.SIGKILL)
            with pytest.raises(WorkerFailed, match=r"worker 1 \(pid \d+\) exited with code -9"):
                await asyncio.wait_for(pool.each([("report", {}), ("report", {})]), 30)
        finally:
            await pool.stop()


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_two_thousand_peers_over_two_workers_converge(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "gen-30.ipynb", cells=30, seed=5).path
    scenario = build_scenario("many-peers", seed=1, batches=10, peers=2000)
    result = await run_scenario_workers(scenario, nb, workers=2, timeout=600)
    assert result.ok, [c for c in result.checks if not c.ok][:3]
    assert sum(p.converged for p in result.peers) == 2000


async def test_a_worker_killed_mid_load_ends_the_run_with_one_error(notebook: Path) -> None:
    scenario = build_scenario("many-peers", seed=2, batches=5, peers=12)
    pids: list[int] = []

    def kill_at_batch_2(line: str) -> None:
        if line == "batch 2" and pids:
            os.kill(pids[1], signal.SIGKILL)

    original = WorkerPool.start

    async def start(self: WorkerPool) -> None:
        await original(self)
        pids.extend(w.pid for w in self.workers)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(WorkerPool, "start", start)
        with pytest.raises(WorkerFailed, match=r"worker 1 \(pid \d+\) exited with code -9"):
            await asyncio.wait_for(
                run_scenario_workers(
                    scenario, notebook, workers=2, timeout=30, progress=kill_at_batch_2
                ),
                60,
            )
