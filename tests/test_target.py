"""The seam to the system under test: BundledTarget over every transport, through its public API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from core.blob_store import DiskBlobStore, MemoryBlobStore
from core.client import NotebookClient
from core.daemon import DaemonConfig
from core.notebook_doc import NotebookDoc
from core.room import NotebookRoom
from sim.harness.runner import run_scenario
from sim.harness.scenarios import build_scenario
from sim.harness.target import BundledTarget, Target
from sim.workload.generator import write_notebook

TRANSPORTS = ["memory", "socketpair", "unix"]


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    return Path(write_notebook(tmp_path / "nb.ipynb", cells=10, seed=3).path).resolve()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_peer_loads_through_the_target(transport: str, notebook: Path) -> None:
    config = DaemonConfig(batch_size=3, notebook_root=notebook.parent)
    target = BundledTarget(config, transport=transport)  # type: ignore[arg-type]
    assert isinstance(target, Target)
    assert isinstance(target.daemon.blob_store, DiskBlobStore)  # the store users run
    async with target:
        client = NotebookClient(*await target.connect(), name="p")
        await client.open(notebook)
        await asyncio.wait_for(client.wait_loaded(), 60)
        assert await asyncio.wait_for(target.wait_load_finished(str(notebook)), 60) == (
            "ready",
            None,
        )
        figures = target.figures()
        (report,) = figures.load_reports
        assert report.ok and report.cells == 10
        room = figures.rooms[str(notebook)]
        assert (room.phase, room.peers, room.cells, room.loads_started) == ("ready", 1, 10, 1)
        assert room.doc.cells_inserted == 10
        served = target.document_bytes(str(notebook))
        assert served is not None
        asked = await client.get_doc_bytes()
        assert NotebookDoc.load(served).heads() == NotebookDoc.load(asked).heads()
        assert target.document_bytes("/no/such.ipynb") is None
        await client.close()
        await asyncio.wait_for(target.wait_peers_below(str(notebook), 1), 60)
    if transport == "unix":
        assert target.socket_path is not None and not target.socket_path.exists()


async def test_a_failed_load_is_reported_with_its_reason(notebook: Path) -> None:
    async def fail(_room: NotebookRoom, index: int) -> None:
        if index == 1:
            raise RuntimeError("boom")

    config = DaemonConfig(notebook_root=notebook.parent)
    async with BundledTarget(config, blob_store=MemoryBlobStore(), before_batch=fail) as target:
        client = NotebookClient(*await target.connect(), name="p")
        await client.open(notebook)
        phase, reason = await asyncio.wait_for(target.wait_load_finished(str(notebook)), 60)
        assert phase == "failed" and reason is not None and "boom" in reason
        assert target.figures().rooms[str(notebook)].phase == "failed"
        await client.close()


@pytest.mark.parametrize("name", ["default", "disconnect", "loader-disconnect"])
async def test_progress_driven_joins_converge(name: str, notebook: Path) -> None:
    """Without the in-process hook, joins and leaves follow the load-status a peer receives."""
    scenario = build_scenario(name, seed=2, batches=4)
    result = await run_scenario(scenario, notebook, joins="progress", timeout=60)
    assert result.ok, [c for c in result.checks if not c.ok]
    assert {p.name for p in result.peers} >= {s.name for s in scenario.peers}


async def test_progress_joins_refuse_an_injected_fault(notebook: Path) -> None:
    scenario = build_scenario("failure", seed=0, batches=4)
    with pytest.raises(ValueError, match="needs joins='hook'"):
        await run_scenario(scenario, notebook, joins="progress")


async def test_the_server_announces_every_batch_in_a_status(notebook: Path) -> None:
    """Each batch's cells are announced by a load-status frame, after the cells themselves."""
    clients: list[NotebookClient] = []
    seen: list[tuple[int, int]] = []  # (cells announced, cells held) at each status

    async def paced(_room: NotebookRoom, index: int) -> None:
        if index:  # batch k starts only once the peer heard that batch k-1 is in
            client = clients[0]

            def announced() -> bool:
                s = client.load_status
                return s is not None and s.cells_loaded >= index * 3

            await asyncio.wait_for(client.wait_for(announced), 60)

    config = DaemonConfig(batch_size=3, notebook_root=notebook.parent)
    async with BundledTarget(config, before_batch=paced) as target:

        def on_frame(arrival: Any) -> None:
            status = clients[0].load_status
            if arrival.frame_type == "session_control" and status is not None:
                seen.append((status.cells_loaded, clients[0].doc.cell_count()))

        client = NotebookClient(*await target.connect(), name="p", on_frame=on_frame)
        clients.append(client)
        await client.open(notebook)
        await asyncio.wait_for(client.wait_loaded(), 60)
        await client.close()
    announced = [n for n, _ in seen]
    assert announced[-1] == 10
    assert {3, 6, 9} <= set(announced)  # one status per batch, none skipped
    assert all(held >= n for n, held in seen)  # never announced before the cells arrived
