"""Clients can open and save only ``.ipynb`` files under the notebook root (issue 12, item 11).

A client once opened ``/etc/passwd`` and ``/proc/self/environ``, and as root a mode-000 file it
could then save over. The per-path refusals (outside the root, ``..``, symlinks out, other
suffixes) are rows of ``test_hostile_inputs.py``; here: the default root, ``--root``, a bad root,
a root reached through a symlink, and a save after a directory was swapped for a symlink.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from core.client import NotebookClient, OpenRefused
from core.daemon import Daemon, DaemonConfig
from core.errors import CoreError

from .conftest import REPO, HarnessFactory, simple_cells, write_notebook

WAIT = 60.0


async def test_the_default_root_is_the_working_directory_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    daemon = Daemon(DaemonConfig())
    monkeypatch.chdir(tmp_path)  # a later chdir does not move the root
    assert daemon.notebook_root == here


async def test_a_daemon_without_a_root_refuses_a_notebook_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the issue reproduced, through the socket: a path the daemon's user can read but that
    is not under the root is refused in-protocol; one under it loads."""
    served = tmp_path / "served"
    served.mkdir()
    monkeypatch.chdir(served)
    sock = tmp_path / "run" / "d.sock"
    elsewhere = write_notebook(tmp_path / "elsewhere.ipynb", simple_cells(1))
    inside = write_notebook(served / "nb.ipynb", simple_cells(2))
    async with Daemon(DaemonConfig(socket_path=sock, blob_root=tmp_path / "blobs")) as daemon:
        with pytest.raises(OpenRefused) as info:
            await NotebookClient.connect(sock, elsewhere)
        assert str(info.value) == f"{elsewhere} is outside the notebook root {served}"
        client = await NotebookClient.connect(sock, inside)
        await asyncio.wait_for(client.wait_loaded(), WAIT)
        assert client.doc.cell_count() == 2
        await client.close()
        assert daemon.statistics().handshake_failures == 1


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_root_that_is_not_a_directory_is_refused(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "root"
    if kind == "file":
        root.write_text("x")
    with pytest.raises(CoreError) as info:
        Daemon(DaemonConfig(notebook_root=root))
    what = "does not exist" if kind == "missing" else "is not a directory"
    assert str(info.value) == f"notebook root {root} {what}"


def test_a_removed_working_directory_is_refused_as_the_default_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(CoreError, match=r"^no notebook root: the working directory is gone "):
        Daemon(DaemonConfig())


async def test_a_root_given_through_a_symlink_is_resolved(
    tmp_path: Path, make_harness: HarnessFactory
) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)
    nb = write_notebook(real / "nb.ipynb", simple_cells(2))
    h = await make_harness("memory", notebook_root=tmp_path / "alias")
    assert h.daemon.notebook_root == real
    for path in (nb, tmp_path / "alias" / "nb.ipynb"):  # both name a file under the root
        client = await h.connect(path)
        await asyncio.wait_for(client.wait_loaded(), WAIT)
        assert client.doc.notebook_id == str(nb)
    assert len(h.daemon.rooms) == 1


async def test_a_save_after_the_directory_was_swapped_for_a_symlink_is_refused(
    tmp_path: Path, make_harness: HarnessFactory
) -> None:
    """Resolved at the handshake, checked again at the save: a directory component replaced by
    a symlink out of the root since then refuses the save; nothing is written outside."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "nb.ipynb").write_bytes(b"outside, keep me")
    nb = write_notebook(root / "sub" / "nb.ipynb", simple_cells(2))
    h = await make_harness("memory", notebook_root=root)
    client = await h.connect(nb)
    await asyncio.wait_for(client.wait_loaded(), WAIT)
    (root / "sub").rename(root / "moved")
    (root / "sub").symlink_to(outside, target_is_directory=True)
    # The file identity check sees the notebook's path name another file (PROTOCOL.md 11.4);
    # the root check behind it (11.1) would refuse the write as well.
    with pytest.raises(CoreError, match=r"^save refused: .*nb\.ipynb was replaced on disk"):
        await asyncio.wait_for(client.save(), WAIT)
    assert (outside / "nb.ipynb").read_bytes() == b"outside, keep me"
    assert sorted(os.listdir(outside)) == ["nb.ipynb"]
    await client.ping()  # the session is still served


async def test_serve_root_option(tmp_path: Path) -> None:
    """``nbstream serve --root DIR`` serves DIR; a missing root exits 2 with one line."""
    missing = tmp_path / "missing"
    bad = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sim.cli.main",
        "serve",
        "--socket",
        str(tmp_path / "run" / "bad.sock"),
        "--root",
        str(missing),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(bad.communicate(), WAIT)
    assert bad.returncode == 2
    assert err.decode().splitlines() == [f"nbstream serve: notebook root {missing} does not exist"]

    root = tmp_path / "notebooks"
    root.mkdir()
    nb = write_notebook(root / "nb.ipynb", simple_cells(3))
    sock = tmp_path / "run" / "d.sock"
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sim.cli.main",
        "serve",
        "--socket",
        str(sock),
        "--blob-root",
        str(tmp_path / "blobs"),
        "--root",
        str(root),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert server.stdout is not None
    try:
        line = await asyncio.wait_for(server.stdout.readline(), WAIT)
        assert line.decode().endswith(f"serving on {sock} (notebooks under {root})\n"), line
        client = await NotebookClient.connect(sock, nb)
        await asyncio.wait_for(client.wait_loaded(), WAIT)
        assert client.doc.cell_count() == 3
        await client.close()
        with pytest.raises(OpenRefused, match=f"^{tmp_path / 'x.ipynb'} is outside the notebook"):
            await NotebookClient.connect(sock, tmp_path / "x.ipynb")
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGTERM)
        await asyncio.wait_for(server.communicate(), WAIT)
    assert server.returncode == 0
