"""Issue 15 item 2: the collaboration scenarios -- peers editing while the load streams, through
a failed load, through a partition, and typists -- with their two invariants: convergence and
no acknowledged edit lost (``edits_lost``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.notebook_doc import NotebookDoc
from sim.cli.main import main
from sim.harness.collab import run_collab
from sim.harness.edits import EditLog
from sim.harness.runner import run_scenario
from sim.harness.scenarios import build_scenario
from sim.harness.trace import first_difference, result_trace, trace_sha256
from sim.harness.typists import percentile, run_typists, sweep_sizes
from sim.results.sim import SimResult
from sim.workload.generator import write_notebook

WAIT = 30.0  # the safety timeout of every wait inside a run


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nb") / "gen-24.ipynb"
    write_notebook(path, cells=24, seed=3)
    return path


def _failed(result: SimResult) -> list[Any]:
    return [c for c in result.checks if not c.ok]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", ["edits", "edits-rollback", "partition"])
async def test_no_acknowledged_edit_is_lost(name: str, seed: int, notebook: Path) -> None:
    result = await run_collab(name, notebook, seed=seed, timeout=WAIT)
    assert result.ok, _failed(result)
    assert result.converged
    edits = result.edits
    assert edits is not None and edits.made > 10
    assert edits.acknowledged == edits.made and edits.unacknowledged == 0
    assert edits.lost == 0
    assert edits.survived + edits.removed_by_delete + edits.rolled_back == edits.made
    data = result.to_json()
    assert data["edits_lost"] == 0 and data["edits"]["made"] == edits.made
    assert len(data["trace_sha256"]) == 64
    assert SimResult.from_json(json.loads(json.dumps(data))) == result


async def test_the_rollback_keeps_peers_cells_and_removes_the_loads(notebook: Path) -> None:
    result = await run_collab("edits-rollback", notebook, seed=1, timeout=WAIT)
    assert result.ok, _failed(result)
    names = [c.name for c in result.checks]
    for wanted in (
        "rollback: converged",
        "rollback removed exactly the load's cells",
        "the file's cells are back, in file order",
    ):
        assert wanted in names
    rollback = next(
        c for c in result.checks if c.name == "rollback removed exactly the load's cells"
    )
    assert "[]" not in rollback.detail  # peers' cells were there to keep
    assert [load.ok for load in result.loads or ()] == [False, True]
    assert "injected at batch" in (result.loads or ())[0].error  # type: ignore[operator]


async def test_a_rollback_that_clears_every_cell_is_caught(
    notebook: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old rule (a failed load empties the notebook) loses the peers' cells: the scenario
    must say so, with edits_lost > 0."""

    delete_cells = NotebookDoc.delete_cells

    def clear_everything(self: NotebookDoc, _keys: object) -> int:
        return delete_cells(self, self.cell_keys())

    monkeypatch.setattr(NotebookDoc, "delete_cells", clear_everything)
    result = await run_collab("edits-rollback", notebook, seed=1, timeout=WAIT)
    assert not result.ok
    assert result.edits is not None and result.edits.lost > 0
    assert result.to_json()["edits_lost"] == result.edits.lost
    failed = {c.name for c in _failed(result)}
    assert {"no acknowledged edit lost", "rollback removed exactly the load's cells"} <= failed
    assert all("edit #" in d for d in result.edits.lost_detail)


async def test_the_partitioned_peer_edits_while_cut_off_and_offline(notebook: Path) -> None:
    lines: list[str] = []
    result = await run_collab("partition", notebook, seed=4, timeout=WAIT, trace_out=lines)
    assert result.ok, _failed(result)
    events = [line for line in lines if not line.startswith("frame ")]
    cut, healed = events.index("partition cut"), events.index("partition healed")
    gone, back = events.index("disconnect cut"), events.index("join cut (reconnect)")
    assert cut < healed < gone < back
    assert any(e.startswith("edit ") and " cut " in e for e in events[cut:healed])
    offline = [e for e in events[gone:back] if e.startswith("edit ") and " cut " in e]
    assert len(offline) == 3
    assert trace_sha256(lines) == result.trace_sha256


@pytest.mark.parametrize("transport", ["socketpair", "unix"])
async def test_collaboration_over_real_sockets(transport: str, notebook: Path) -> None:
    for name in ("edits", "partition"):  # no stall over a kernel socket: cut and reconnect
        result = await run_collab(name, notebook, seed=5, transport=transport, timeout=WAIT)  # type: ignore[arg-type]
        assert result.ok, (name, _failed(result))
        assert result.edits is not None and result.edits.lost == 0


async def test_typists_measure_every_edit_at_every_other_peer(notebook: Path) -> None:
    result = await run_typists(
        notebook, seed=0, peers=2, rate_hz=10, duration_s=0.3, typists_max=2, timeout=WAIT
    )
    assert result.ok, _failed(result)
    typists = result.typists
    assert typists is not None
    # 2 typists x 3 edits, each seen by the other typist and the loader
    assert typists.run.k == 2 and typists.run.samples == 2 * 3 * 2
    assert [p.k for p in typists.sweep] == [1, 2]
    assert typists.sweep[0].samples == 3  # one typist: the loader sees its 3 edits
    assert all(p.converged and p.edits_lost == 0 for p in typists.sweep)
    assert typists.run.p50_s <= typists.run.p99_s <= typists.run.max_s
    data = result.to_json()
    assert data["typists"]["sweep"][1]["k"] == 2 and "max_k_under_limit" in data["typists"]
    assert data["edits_lost"] == 0
    assert SimResult.from_json(json.loads(json.dumps(data))) == result


def test_percentiles_and_sweep_sizes() -> None:
    assert percentile([], 99) == 0.0
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0
    assert percentile([3.0, 1.0, 2.0], 100) == 3.0
    assert (
        sweep_sizes(1) == [1] and sweep_sizes(8) == [1, 2, 4, 8] and sweep_sizes(6) == [1, 2, 4, 6]
    )


def test_the_edit_verdict() -> None:
    """Acknowledged edits judged against a final document: kept, removed by a delete, rolled
    back with the load's cells, or lost."""
    peer = NotebookDoc("nb")
    log = EditLog()
    log.add(peer, "p", 0, "own", "[own]")
    log.type(peer, "p", "own", "[own]", " word")
    log.add(peer, "p", 1, "gone", "[gone]")
    log.type(peer, "p", "gone", "[gone]", " x")
    log.delete(peer, "p", "gone")
    peer.add_cell(2, "file1", "code")  # as if the load had inserted it
    log.type(peer, "p", "file1", "", " in a load cell")
    log.mark_rollback()
    log.type(peer, "p", "own", "[own] word", " later")
    unacked = log.type(peer, "p", "own", "[own] word later", " never sent")
    assert log.acknowledge(NotebookDoc("other")) == 0
    assert log.acknowledge(peer) == len(log.edits)
    unacked.acknowledged = False

    def final(source: str) -> dict[str, Any]:
        return {"cells": [{"id": "own", "source": source}, {"id": "file1", "source": ""}]}

    ok = log.verdict(final("[own] word later never sent"), {"file1"})
    assert (ok.survived, ok.removed_by_delete, ok.rolled_back, ok.lost) == (4, 2, 1, 0)
    assert ok.unacknowledged == 1 and ok.made == 8
    bad = log.verdict(final("[own] word"), {"file1"})
    assert bad.lost == 1 and bad.lost_detail == ("edit #6 by p: type 'own' ' later'",)
    # only a cell the load inserted is excused by the rollback
    assert log.verdict(final("[own] word later"), set()).lost == 1


def test_trace_helpers() -> None:
    assert first_difference(["a", "b"], ["a", "b"]) is None
    assert first_difference(["a", "b"], ["a", "c"]) == (1, "b", "c")
    assert first_difference(["a"], ["a", "c"]) == (1, "<end>", "c")
    assert trace_sha256(["x"]) != trace_sha256(["x", ""])


def test_cli_runs_a_collaboration_scenario(
    notebook: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["sim", str(notebook), "--scenario", "edits", "--seed", "2", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0, data["checks"]
    assert data["scenario"] == "edits" and data["edits_lost"] == 0 and data["ok"]
    assert main(["sim", str(notebook), "--scenario", "typists", "--typists-max", "0"]) == 2
    assert "--typists-max must be >= 1" in capsys.readouterr().err


async def test_every_result_has_a_trace(notebook: Path) -> None:
    result = await run_scenario(build_scenario("single", seed=0, batches=8), notebook)
    lines = result_trace(result)
    assert result.trace_sha256 == trace_sha256(lines)
    assert lines[0] == "load ok=True cells=24 error=None"
    assert sum(1 for line in lines if line.startswith("batch ")) == 8
    loader = result.peers[0]
    assert sum(1 for line in lines if line.startswith("frame loader ")) == len(loader.arrivals)
