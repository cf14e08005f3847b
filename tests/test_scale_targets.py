"""``nbstream scale`` on a user's server (``--target-cmd``), on a user's notebook
(``--notebook``), with ``--output`` (issue 14 items 2, 3, 4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.ipynb import parse_notebook
from sim.workload.generator import write_notebook
from sim.workload.sweep import NotebookSweep

REPO = Path(__file__).resolve().parents[1]
NBSTREAM = [sys.executable, "-m", "sim.cli.main"]
TINY = ["--sizes", "6,12,24", "--repeats", "1", "--instructions-max-cells", "0"]


def nbstream(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env_path = f"{REPO}"
    return subprocess.run(
        [*NBSTREAM, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        check=False,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )


def test_scale_target_cmd_sweeps_the_users_server_from_outside(tmp_path: Path) -> None:
    cmd = f"{sys.executable} -m sim.cli.main serve --socket {{socket}} --root {tmp_path}"
    out = tmp_path / "scale.json"
    done = nbstream(tmp_path, "scale", *TINY, "--target-cmd", cmd, "--json", "--output", str(out))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    (name,) = data["paths"]
    server = data["paths"][name]
    assert name == "server" and data["server"].startswith("server started by")
    assert [p["cells"] for p in server["points"]] == [6, 12, 24]
    assert server["exponent_of"] == "time_to_full_s"
    assert server["ci"][0] <= server["exponent"] <= server["ci"][1]
    assert server["instructions"]["available"] is False
    assert server["counters"]["ops"]["verdict"] == "unavailable"
    assert server["counters"]["bytes_in"]["verdict"] in ("linear", "sublinear", "constant")
    assert [c["name"] for c in data["checks"]] == [
        "bytes to the loading peer grow at most linearly",
        "time to full is not quadratic",
    ]
    saved = json.loads(out.read_text())
    assert saved["schema"] == "nbstream/scale/1" and saved["machine"]["cpu_count"] >= 1
    assert "git" in saved
    assert not list(tmp_path.glob(".nbstream-*"))  # the sweep's notebooks are gone


def test_scale_target_cmd_that_never_listens_is_exit_2(tmp_path: Path) -> None:
    cmd = f"{sys.executable} -c 'import time; time.sleep(600)' {{socket}}"
    done = nbstream(tmp_path, "scale", *TINY, "--target-cmd", cmd, "--target-timeout", "0.5")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not listen on " in lines[0], lines


def test_scale_insert_with_a_target_is_refused(tmp_path: Path) -> None:
    done = nbstream(tmp_path, "scale", "--insert", "full", "--connect", "x.sock")
    assert done.returncode == 2 and "your server has its own" in done.stderr


def test_sweep_notebooks_repeat_the_cells_with_fresh_unique_ids(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "mine.ipynb", cells=5).path
    source = parse_notebook(nb.read_bytes()).cells
    sweep = NotebookSweep(nb)
    for n in (3, 5, 12):
        cells = parse_notebook(sweep.notebook_bytes(n)).cells
        assert len(cells) == n
        ids = [c.id for c in cells]
        assert len(set(ids)) == n
        assert ids[: min(n, 5)] == [c.id for c in source[: min(n, 5)]]
        for i, cell in enumerate(cells):
            orig = source[i % 5]
            assert (cell.cell_type, cell.source, cell.outputs) == (
                orig.cell_type,
                orig.source,
                orig.outputs,
            )


def test_scale_notebook_builds_the_sweep_from_its_cells(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "mine.ipynb", cells=4).path
    done = nbstream(tmp_path, "scale", "--insert", "full", *TINY, "--notebook", str(nb), "--json")
    assert done.returncode in (0, 1), done.stderr
    data = json.loads(done.stdout)
    assert data["notebook"]["cells"] == 4 and data["notebook"]["path"] == str(nb)
    assert [p["cells"] for p in data["paths"]["full"]["points"]] == [6, 12, 24]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file"),
        ("{", "invalid JSON"),
        ('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}', "no cells"),
    ],
)
def test_scale_bad_notebook_is_one_line_exit_2(
    tmp_path: Path, content: str | None, message: str
) -> None:
    nb = tmp_path / "bad.ipynb"
    if content is not None:
        nb.write_text(content)
    done = nbstream(tmp_path, "scale", *TINY, "--notebook", str(nb))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_scale_outputs_match_the_scale_schema(tmp_path: Path) -> None:
    from .test_result_files import validate

    cmd = f"{sys.executable} -m sim.cli.main serve --socket {{socket}} --root {tmp_path}"
    outside = nbstream(tmp_path, "scale", *TINY, "--target-cmd", cmd, "--json")
    bundled = nbstream(tmp_path, "scale", "--insert", "both", *TINY, "--json")
    assert outside.returncode == 0, outside.stderr
    assert bundled.returncode in (0, 1), bundled.stderr
    for done in (outside, bundled):
        validate("scale", json.loads(done.stdout))
    broken = json.loads(bundled.stdout)
    broken["paths"]["full"]["ci"] = [1.0]
    with pytest.raises(AssertionError, match="ci"):
        validate("scale", broken)


@pytest.mark.parametrize("scenario", ["edits", "typists"])
def test_sim_collaboration_outputs_match_the_sim_schema(tmp_path: Path, scenario: str) -> None:
    from sim.results.schemas import KINDS

    from .test_result_files import validate

    nb = write_notebook(tmp_path / "nb.ipynb", cells=12).path
    done = nbstream(tmp_path, "sim", str(nb), "--scenario", scenario, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert {"edits", "trace_sha256"} & set(data)
    validate("sim", data)
    named = set(KINDS["sim"]["properties"])
    assert set(data) <= named, set(data) - named  # every key described
