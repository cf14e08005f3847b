"""``sim`` and ``profile`` against servers the harness did not build (issue 14 items 1, 2):
``--connect SOCKET`` to a running ``nbstream serve``, ``--target-cmd`` starting a user's server,
the optional ``statistics`` request, and bad input (one line on stderr, exit 2)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.workload.generator import write_notebook

from .test_result_files import validate

REPO = Path(__file__).resolve().parents[1]
NBSTREAM = [sys.executable, "-m", "sim.cli.main"]
NO_STATISTICS = f"{sys.executable} {REPO / 'tests' / 'servers' / 'no_statistics.py'} {{socket}}"


def no_statistics(root: Path) -> str:
    return f"{NO_STATISTICS} {root}"


WAIT = 60.0


def nbstream(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NBSTREAM, *args], capture_output=True, text=True, timeout=300, cwd=REPO, check=False
    )


def listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Path]:
    """A real ``nbstream serve`` in its own process; its socket path."""
    sock = tmp_path / "s.sock"
    proc = subprocess.Popen(
        [
            *NBSTREAM,
            "serve",
            "--socket",
            str(sock),
            "--blob-root",
            str(tmp_path / "blobs"),
            "--root",
            str(tmp_path),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + WAIT
        while not listening(sock):  # the condition: the socket accepts
            assert proc.poll() is None, "nbstream serve exited"
            assert time.monotonic() < deadline, "nbstream serve never listened"
            time.sleep(0.02)
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    return write_notebook(tmp_path / "nb.ipynb", cells=12).path


def test_sim_connect_drives_a_running_server(served: Path, notebook: Path) -> None:
    done = nbstream("sim", str(notebook), "--connect", str(served), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["server"] == f"server on {served}" and data["transport"] == "unix"
    assert data["converged"] and data["cells"] == 12 and data["ok"]
    assert data["notebook"]["path"] == str(notebook)  # not the fresh copy it loaded
    assert data["phases"]["total_s"] > 0  # the server answered `statistics`
    assert len(data["batches"]) == 4  # 12 cells, 3 per batch, placed by the server's clock
    assert "peak_rss_kib" not in data  # another process's memory is not ours to report
    assert not list(notebook.parent.glob(".nbstream-*"))  # the copy is gone
    validate("sim", data)


def test_sim_target_cmd_without_statistics_marks_phases_absent(notebook: Path) -> None:
    done = nbstream("sim", str(notebook), "--target-cmd", no_statistics(notebook.parent), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["server"].startswith("server started by") and data["converged"]
    assert data["phases"] == {} and data["batches"] == [] and data["cells"] == 12
    validate("sim", data)
    text = nbstream("sim", str(notebook), "--target-cmd", no_statistics(notebook.parent))
    assert text.returncode == 0 and "phases: absent" in text.stdout


def test_profile_target_cmd_runs_the_users_server(notebook: Path) -> None:
    cmd = f"{sys.executable} -m sim.cli.main serve --socket {{socket}} --root {notebook.parent}"
    done = nbstream("profile", str(notebook), "--target-cmd", cmd, "--runs", "2", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["runs"] == 2 and data["phases"]["total_s"] > 0
    assert len([p for p in data["phases_per_run"] if p]) == 2  # two loads, not one and a sync
    validate("profile", data)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--connect", "/nonexistent/s.sock"], "cannot connect to /nonexistent/s.sock: "),
        (["--target-cmd", "sleep 600 {socket}", "--target-timeout", "0.5"], "exited with status"),
        (
            [
                "--target-cmd",
                f"{sys.executable} -c 'import time; time.sleep(600)' {{socket}}",
                "--target-timeout",
                "0.5",
            ],
            "did not listen on ",
        ),
        (["--target-cmd", "true"], "--target-cmd must contain {socket}"),
        (["--target-cmd", "no-such-binary-here {socket}"], "cannot run --target-cmd"),
        (["--connect", "x.sock", "--target-cmd", "y {socket}"], "not allowed with argument"),
        (["--connect", "x.sock", "--scenario", "failure"], "needs the bundled daemon"),
    ],
)
def test_bad_targets_get_one_line_and_exit_2(notebook: Path, args: list[str], message: str) -> None:
    for command in ("sim", "profile") if "--scenario" not in args else ("sim",):
        done = nbstream(command, str(notebook), *args)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert message in lines[-1], lines
        assert "Traceback" not in done.stderr


def test_open_json_counts_the_blob_traffic_of_export(served: Path, notebook: Path) -> None:
    plain = nbstream("open", "--json", "--socket", str(served), str(notebook))
    assert plain.returncode == 0, plain.stderr
    synced = json.loads(plain.stdout)
    assert "blob_bytes" not in synced
    out = notebook.parent / "exported.ipynb"
    done = nbstream("open", "--json", "--socket", str(served), "--export", str(out), str(notebook))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["blobs"] > 0 and data["blob_frames"] > 0 and data["blob_bytes"] > 0
    assert data["bytes"] >= data["blob_bytes"] + 1 and data["frames"] > data["blob_frames"]
