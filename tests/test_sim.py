"""The simulator: scenarios, transports, seeds, convergence, and the nbstream CLI."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import pytest

from core.daemon import Daemon, DaemonConfig
from sim.cli.main import main
from sim.cli.open_cmd import open_notebook
from sim.harness.convergence import check_convergence, diff_docs
from sim.harness.runner import run_scenario
from sim.harness.scale import run_scale
from sim.harness.scenarios import SCENARIOS, build_scenario
from sim.workload.generator import write_notebook


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nb") / "gen-24.ipynb"
    write_notebook(path, cells=24, seed=3)
    return path


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_every_scenario_converges_over_memory(name: str, notebook: Path) -> None:
    scenario = build_scenario(name, seed=1, batches=8, peers=12 if name == "many-peers" else None)
    result = await run_scenario(scenario, notebook, transport="memory", timeout=60)
    assert result.ok, [c for c in result.checks if not c.ok]
    assert result.converged
    data = result.to_json()
    assert data["cells"] == 24
    for peer in data["peers"]:
        spec = next((s for s in scenario.peers if s.name == peer["name"]), None)
        if spec is None or spec.expects_convergence:
            assert peer["converged"], peer["name"]
    assert len(data["batches"]) == 8


@pytest.mark.parametrize("transport", ["socketpair", "unix"])
@pytest.mark.parametrize("name", ["default", "failure", "slow-peers"])
async def test_scenarios_over_real_sockets(transport: str, name: str, notebook: Path) -> None:
    scenario = build_scenario(name, seed=2, batches=8)
    result = await run_scenario(scenario, notebook, transport=transport, timeout=60)  # type: ignore[arg-type]
    assert result.ok, [c for c in result.checks if not c.ok]


async def test_failure_then_retry_is_reported(notebook: Path) -> None:
    scenario = build_scenario("failure", seed=0, batches=8, fail_at_batch=5)
    result = await run_scenario(scenario, notebook, timeout=60)
    names = [c.name for c in result.checks]
    assert names[:3] == [
        "failure was expected",
        "rollback: every peer settled",
        "rollback: converged",
    ]
    assert "injected at batch 5" in result.checks[0].detail
    assert [r.ok for r in result.loads or ()] == [False, True]


def test_scenarios_are_reproducible_from_the_seed() -> None:
    a = build_scenario("many-peers", seed=7, batches=20, peers=30)
    b = build_scenario("many-peers", seed=7, batches=20, peers=30)
    c = build_scenario("many-peers", seed=8, batches=20, peers=30)
    assert a == b
    assert [p.join_at_batch for p in a.peers] != [p.join_at_batch for p in c.peers]
    assert all(0 <= (p.join_at_batch or 0) < 20 for p in a.peers)
    with pytest.raises(KeyError):
        build_scenario("nope", seed=0, batches=3)


async def test_loader_gets_cells_before_the_load_ends(notebook: Path) -> None:
    result = await run_scenario(build_scenario("single", seed=0, batches=8), notebook)
    data = result.to_json()
    loader = data["peers"][0]
    # batch by batch: the loader's cell count rose in steps of at most one batch
    counts = [a["cells"] for a in loader["arrivals"] if a["changed"]]
    assert counts[-1] == 24
    assert all(b - a <= 3 for a, b in zip([0, *counts], counts, strict=False))
    # and each batch's latency was measured for it
    assert all(b["latency_s"]["loader"] is not None for b in data["batches"])


def test_convergence_diff_is_readable() -> None:
    server = {"notebook_id": "x", "cells": [{"id": "a", "source": "1"}], "metadata": {}}
    peer = {"notebook_id": "x", "cells": [{"id": "a", "source": "2"}], "metadata": {}}
    report = check_convergence(server, {"p1": peer, "p2": server})
    assert not report.ok and list(report.diffs) == ["p1"]
    text = report.describe()
    lines = text.splitlines()
    assert lines[0] == "DIVERGED: p1" and "--- server" in lines and "+++ p1" in lines
    assert any(ln.startswith("-") and '"source": "1"' in ln for ln in lines)
    assert any(ln.startswith("+") and '"source": "2"' in ln for ln in lines)
    assert diff_docs(server, server, label="same") == []


def _naive_scans(cells: int) -> int:
    """Exactly what add_cell_naive must scan: cell i is found by i+1 steps per scanning call."""
    from core.ipynb import parse_notebook
    from sim.workload.generator import generate_notebook

    total = 0
    for i, rec in enumerate(parse_notebook(generate_notebook(cells=cells, seed=0)).cells):
        calls = 2 + bool(rec.source) + bool(rec.metadata or rec.attachments is not None)
        total += calls * (i + 1)
    return total


async def test_scale_counters_flag_naive_and_not_full() -> None:
    result = await run_scale(
        ["full", "naive"], sizes={"full": [10, 20, 40], "naive": [10, 20, 40]}, repeats=1
    )
    data = result.to_json()
    full, naive = data["paths"]["full"], data["paths"]["naive"]
    assert set(full) >= {"exponent", "ci", "verdict", "points", "counters", "batch_trend"}
    assert full["counters"]["scan_steps"]["verdict"] == "zero"
    assert naive["counters"]["scan_steps"]["verdict"] == "quadratic"
    assert [p["scan_steps"] for p in naive["points"]] == [_naive_scans(n) for n in (10, 20, 40)]
    assert full["counters"]["ops"]["verdict"] == "linear"
    assert len(full["ci"]) == 2 and full["ci"][0] <= full["exponent"] <= full["ci"][1]


# ------------------------------------------------------------------ CLI
def test_cli_sim_json_keys(notebook: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", str(notebook), "--json", "--seed", "4"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"converged", "cells", "peers", "batches"} <= set(data)
    for peer in data["peers"]:
        assert {"name", "time_to_first_cell_s", "time_to_full_s", "converged"} <= set(peer)
    assert data["converged"] is True and data["cells"] == 24


def test_cli_sim_table(notebook: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", str(notebook), "--transport", "socketpair"]) == 0
    out = capsys.readouterr().out
    assert "per-batch latency" in out and "converged: yes" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sim", "/no/such.ipynb"], "no such notebook"),
        (["profile", "/no/such.ipynb"], "no such notebook"),
        (["scale", "--sizes", "5,x"], "comma-separated integers"),
        (["generate", "--cells", "-1", "--out", "/tmp/x.ipynb"], "--cells must be >= 0"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_cli_invalid_notebook_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.ipynb"
    bad.write_text("[1, 2]")
    assert main(["sim", str(bad)]) == 2
    assert "top level" in capsys.readouterr().err


def test_cli_usage_error_exits_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sim", "--transport", "carrier-pigeon"])
    assert exc.value.code == 2


def test_cli_generate_and_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "g.ipynb"
    assert main(["generate", "--cells", "12", "--seed", "5", "--out", str(out)]) == 0
    assert "12 cells" in capsys.readouterr().out and out.exists()
    assert main(["profile", str(out), "--runs", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["command"] == "profile"
    assert set(data["phases"]) == {
        "read_s",
        "parse_s",
        "manifest_s",
        "insert_s",
        "sync_gen_s",
        "network_s",
        "total_s",
    }


# ------------------------------------------------------------------ nbstream open against serve
async def test_open_command_against_a_real_daemon(
    notebook: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = Path(os.environ.get("TMPDIR", "/tmp")) / f"nbs-open-{os.getpid()}" / "d.sock"
    config = DaemonConfig(
        socket_path=sock, blob_root=tmp_path / "blobs", notebook_root=notebook.parent
    )
    async with Daemon(config):
        args = argparse.Namespace(
            socket=str(sock),
            notebook=str(notebook),
            json=True,
            export=tmp_path / "out.ipynb",
            timeout=30.0,
        )
        assert await open_notebook(args) == 0
        summary: dict[str, Any] = json.loads(capsys.readouterr().out)
        assert summary["status"] == "ready" and summary["cells"] == 24
        assert {"cells", "time_to_first_cell_s", "time_to_full_s", "status"} <= set(summary)
        exported = json.loads((tmp_path / "out.ipynb").read_text())
        original = json.loads(notebook.read_text())
        assert exported == original  # the generator writes exactly what nbformat would
        bad = argparse.Namespace(
            socket=str(sock),
            notebook=str(notebook.parent / "missing.ipynb"),
            json=True,
            export=None,
            timeout=30.0,
        )
        assert await open_notebook(bad) == 2
        assert json.loads(capsys.readouterr().out)["status"] == "refused"


async def test_open_command_without_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(
        socket=str(tmp_path / "none.sock"), notebook="x.ipynb", json=True, export=None, timeout=1.0
    )
    assert await open_notebook(args) == 2
    assert "is `nbstream serve` running?" in capsys.readouterr().err
