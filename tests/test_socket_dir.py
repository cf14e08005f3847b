"""Binding the socket never changes a directory the daemon did not create (issue 12, item 10).

``nbstream serve --socket /tmp/x.sock`` as root once set ``/tmp`` to 0700 and dropped its sticky
bit. Now: only directories the daemon creates are made (exactly 0700); an existing one keeps its
mode; a directory other users can write is refused unless it is sticky and the socket is new.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import sys
from pathlib import Path

import pytest

from core.client import NotebookClient
from core.daemon import Daemon, DaemonConfig
from core.errors import CoreError

from .conftest import REPO, simple_cells, write_notebook

WAIT = 60.0


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _shared(tmp: Path, mode: int) -> Path:
    directory = tmp / "shared"
    directory.mkdir()
    directory.chmod(mode)
    assert _mode(directory) == mode
    return directory


def _config(tmp: Path, sock: Path) -> DaemonConfig:
    return DaemonConfig(socket_path=sock, blob_root=tmp / "blobs", notebook_root=tmp)


@pytest.mark.parametrize(
    ("mode", "why"),
    [(0o777, "world-writable"), (0o770, "group-writable"), (0o733, "world-writable")],
)
async def test_a_directory_others_can_write_without_the_sticky_bit_is_refused(
    tmp_path: Path, mode: int, why: str
) -> None:
    shared = _shared(tmp_path, mode)
    sock = shared / "d.sock"
    with pytest.raises(CoreError) as info:
        async with Daemon(_config(tmp_path, sock)):
            pass
    assert str(info.value) == (
        f"refusing to bind {sock}: its directory {shared} is {why} (mode {mode:04o}) and not "
        "sticky, so another user could replace the socket; use a private directory"
    )
    assert _mode(shared) == mode  # untouched
    assert not os.path.lexists(sock)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
async def test_a_directory_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    other = _shared(tmp_path, 0o755)
    os.chown(other, 65534, 65534)
    with pytest.raises(CoreError, match=r"is owned by another user \(uid 65534\) \(mode 0755\)"):
        async with Daemon(_config(tmp_path, other / "d.sock")):
            pass
    assert _mode(other) == 0o755 and other.stat().st_uid == 65534


async def test_a_sticky_shared_directory_keeps_its_mode_and_serves(tmp_path: Path) -> None:
    """The /tmp case: 01777 is allowed for a new socket path, and stays 01777."""
    shared = _shared(tmp_path, 0o1777)
    sock = shared / "x.sock"
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(2))
    async with Daemon(_config(tmp_path, sock)):
        assert _mode(shared) == 0o1777
        assert stat.S_ISSOCK(sock.lstat().st_mode) and _mode(sock) == 0o600
        client = await NotebookClient.connect(sock, nb)
        await asyncio.wait_for(client.wait_loaded(), WAIT)
        assert client.doc.cell_count() == 2
        await client.close()
    assert _mode(shared) == 0o1777
    assert not os.path.lexists(sock)


async def test_a_stale_socket_in_a_shared_directory_is_never_replaced(tmp_path: Path) -> None:
    shared = _shared(tmp_path, 0o1777)
    sock = shared / "x.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))  # bound, never listening: maybe another user's
    inode = sock.lstat().st_ino
    with pytest.raises(CoreError) as info:
        async with Daemon(_config(tmp_path, sock)):
            pass
    assert str(info.value) == (
        f"refusing to replace the stale socket {sock}: its directory {shared} is world-writable, "
        "so the socket may be another user's; remove it or use a new path"
    )
    assert sock.lstat().st_ino == inode and _mode(shared) == 0o1777


async def test_an_existing_private_directory_keeps_its_mode(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o711)
    async with Daemon(_config(tmp_path, run / "d.sock")):
        assert _mode(run) == 0o711 and _mode(run / "d.sock") == 0o600
    assert _mode(run) == 0o711


async def test_every_directory_the_daemon_creates_is_0700(tmp_path: Path) -> None:
    sock = tmp_path / "a" / "b" / "c" / "d.sock"
    old = os.umask(0o022)
    try:
        async with Daemon(_config(tmp_path, sock)):
            made = [tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"]
            assert [_mode(d) for d in made] == [0o700] * 3
            assert _mode(tmp_path) == 0o700  # pytest's own, not ours: unchanged
    finally:
        os.umask(old)


async def test_serve_refuses_a_shared_directory_with_one_line(tmp_path: Path) -> None:
    """Through the CLI, as the issue reproduced it: exit 2, one stderr line, the mode kept."""
    shared = _shared(tmp_path, 0o777)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sim.cli.main",
        "serve",
        "--socket",
        str(shared / "x.sock"),
        "--blob-root",
        str(tmp_path / "blobs"),
        "--root",
        str(tmp_path),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
    assert proc.returncode == 2
    assert err.decode().splitlines() == [
        f"nbstream serve: refusing to bind {shared / 'x.sock'}: its directory {shared} is "
        "world-writable (mode 0777) and not sticky, so another user could replace the socket; "
        "use a private directory"
    ]
    assert _mode(shared) == 0o777
