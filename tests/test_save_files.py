"""Saves leave nothing behind and keep the file's owner, group and mode (issue 12, item 12), and
the file survivals the issue lists: ``kill -9`` mid-save never tears the file, a full disk keeps
it intact, a symlink swapped in before a save is replaced (not followed).

The ``kill -9`` rows run a real ``nbstream serve`` in a subprocess whose save blocks at a chosen
point (half the bytes written; everything written, before the rename) and tells the test so on
stdout; the test kills it there, so the kill lands mid-save on every run, without a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import stat
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import core.atomic
from core.atomic import atomic_write, remove_stale_temps
from core.blob_store import DiskBlobStore
from core.client import NotebookClient
from core.daemon import Daemon, DaemonConfig
from core.errors import CoreError

from .conftest import REPO, HarnessFactory, simple_cells, write_notebook

WAIT = 60.0

# The child: the real daemon, with the save's temp-file write (or its rename) blocking on stdin
# (which the test never writes) after printing "BLOCKED <temp path>".
CHILD = r"""
import os, sys

point = sys.argv[1]
real_write, real_replace = os.write, os.replace
blocked = []


def ours(path):
    return ".nb.ipynb.nbstream-" in path


def block(path):
    blocked.append(path)
    print("BLOCKED", path, flush=True)
    os.read(0, 1)  # never answered: the test kills us here
    raise SystemExit("unblocked")


def write(fd, data):
    if point == "mid-write" and not blocked:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if ours(path):
            real_write(fd, bytes(data[: len(data) // 2]))
            block(path)
    return real_write(fd, data)


def replace(src, dst, **kw):
    if point == "before-rename" and ours(os.fspath(src)) and not blocked:
        block(os.fspath(src))
    return real_replace(src, dst, **kw)


os.write, os.replace = write, replace
from sim.cli.main import main

sys.exit(main(sys.argv[2:]))
"""


def _temps(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if ".nbstream-" in n)


async def _readline(stream: asyncio.StreamReader | None) -> str:
    assert stream is not None
    return (await asyncio.wait_for(stream.readline(), WAIT)).decode()


@pytest.mark.parametrize("point", ["mid-write", "before-rename"])
async def test_kill_9_mid_save_never_tears_the_file_and_the_temp_goes_at_reopen(
    tmp_path: Path, point: str, make_harness: HarnessFactory
) -> None:
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(30))
    original = nb.read_bytes()
    sock = tmp_path / "run" / "d.sock"
    args = ["serve", "--socket", str(sock), "--blob-root", str(tmp_path / "blobs")]
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        point,
        *args,
        "--root",
        str(tmp_path),
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert "serving on" in await _readline(child.stdout)
        client = await NotebookClient.connect(sock, nb)
        await asyncio.wait_for(client.wait_loaded(), WAIT)
        client.doc.update_source("c1", "edited = True\n" * 1000)
        client.sync_now()
        save = asyncio.create_task(client.save())
        line = await _readline(child.stdout)
        assert line.startswith("BLOCKED "), line
        temp = Path(line.split(" ", 1)[1].strip())
        assert temp.parent == tmp_path and temp.exists()  # the kill lands mid-save
        child.kill()  # SIGKILL
        await asyncio.wait_for(child.wait(), WAIT)
        with contextlib.suppress(CoreError, ConnectionError, asyncio.IncompleteReadError):
            await asyncio.wait_for(save, WAIT)
        await client.close()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert child.returncode == -9
    assert nb.read_bytes() == original  # never torn
    assert _temps(tmp_path) == [temp.name]  # the killed writer's leftover, named as ours
    assert f"nbstream-{child.pid}-" in temp.name

    # Reopening the notebook (its room opens) removes it; the next save works and leaves nothing.
    h = await make_harness("memory")
    client = await h.connect(nb)
    await asyncio.wait_for(client.wait_loaded(), WAIT)
    assert client.doc.cell_count() == 30
    assert _temps(tmp_path) == []
    saved = await asyncio.wait_for(client.save(), WAIT)
    assert Path(saved.path) == nb and len(json.loads(nb.read_bytes())["cells"]) == 30
    assert _temps(tmp_path) == []


async def test_a_blob_temp_left_by_kill_9_is_removed_at_daemon_start(tmp_path: Path) -> None:
    """A blob writer killed mid-put leaves ``.tmp.nbstream-<pid>-<hex>`` in its shard; the next
    daemon's start removes it, and a reference-style ``.tmp.<hex>`` older than a minute, but keeps
    a fresh one and the temp of a writer that is still alive."""
    root = tmp_path / "blobs"
    script = (
        "import os, sys\n"
        "from core.blob_store import DiskBlobStore\n"
        "real = os.write\n"
        "def write(fd, data):\n"
        "    real(fd, bytes(data[:10]))\n"
        "    print('BLOCKED', os.readlink(f'/proc/self/fd/{fd}'), flush=True)\n"
        "    os.read(0, 1)\n"
        "os.write = write\n"
        "DiskBlobStore(sys.argv[1]).put(b'x' * 100000, 'text/plain')\n"
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        str(root),
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        line = await _readline(child.stdout)
        assert line.startswith("BLOCKED "), line
        killed = Path(line.split(" ", 1)[1].strip())
        child.kill()
        await asyncio.wait_for(child.wait(), WAIT)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert killed.exists() and killed.parent.parent == root
    shard = killed.parent
    old_legacy = shard / f".tmp.{uuid.uuid4().hex}"
    old_legacy.write_bytes(b"old")
    os.utime(old_legacy, (0, 1_000_000_000))  # 2001: long past the minute
    fresh_legacy = shard / f".tmp.{uuid.uuid4().hex}.meta"
    fresh_legacy.write_bytes(b"{}")
    alive = shard / f".tmp.nbstream-{os.getppid()}-{uuid.uuid4().hex}"  # a live process's
    alive.write_bytes(b"busy")
    blob = shard / ("0" * 62)  # not a temp: never touched
    blob.write_bytes(b"not a temp")
    store = DiskBlobStore(root)
    async with Daemon(DaemonConfig(notebook_root=tmp_path), blob_store=store):
        left = sorted(p.name for p in shard.iterdir())
    assert left == sorted([fresh_legacy.name, alive.name, blob.name])


def test_a_temp_with_our_pid_but_not_in_flight_is_stale(tmp_path: Path) -> None:
    """A container's daemon is often pid 1 every time: a temp with our own pid that this process
    is not writing is a previous incarnation's."""
    mine = tmp_path / f".nb.ipynb.nbstream-{os.getpid()}-{uuid.uuid4().hex}.tmp"
    mine.write_bytes(b"old")
    other = tmp_path / f".other.ipynb.nbstream-{os.getpid()}-{uuid.uuid4().hex}.tmp"
    other.write_bytes(b"another notebook's")
    symlink = tmp_path / f".nb.ipynb.nbstream-999999999-{uuid.uuid4().hex}.tmp"
    symlink.symlink_to(tmp_path / "victim")
    assert remove_stale_temps(str(tmp_path), ".nb.ipynb.") == 1
    assert sorted(os.listdir(tmp_path)) == sorted([other.name, symlink.name])


def test_a_temp_being_written_by_this_process_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real = os.fsync

    def sweep_meanwhile(fd: int) -> None:
        seen.append(remove_stale_temps(str(tmp_path), ".nb.ipynb."))
        real(fd)

    monkeypatch.setattr(core.atomic.os, "fsync", sweep_meanwhile)
    atomic_write(tmp_path / "nb.ipynb", b"data")
    assert seen == [0] and (tmp_path / "nb.ipynb").read_bytes() == b"data"


# --------------------------------------------------------------------------- owner, group, mode
@pytest.mark.skipif(os.geteuid() != 0, reason="a file owned by another user needs root")
async def test_a_save_as_root_keeps_owner_group_and_mode(
    tmp_path: Path, make_harness: HarnessFactory
) -> None:
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(3))
    os.chown(nb, 65534, 65533)
    nb.chmod(0o640)
    h = await make_harness("memory")
    client = await h.connect(nb)
    await asyncio.wait_for(client.wait_loaded(), WAIT)
    client.doc.update_source("c1", "edited = True")
    client.sync_now()
    room = h.daemon.rooms.rooms()[0]
    await asyncio.wait_for(client.wait_for(lambda: room.doc.heads() == client.doc.heads()), WAIT)
    await asyncio.wait_for(client.save(), WAIT)
    info = nb.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (65534, 65533, 0o640)
    assert "edited = True" in nb.read_text()
    assert _temps(tmp_path) == []


def test_atomic_write_keeps_the_group_a_user_may_keep(tmp_path: Path) -> None:
    """A non-root writer cannot give a file away; it keeps the group where it may, and the mode.
    Run as root, this checks that owner and group are both taken over, set-id bits included."""
    target = tmp_path / "f"
    target.write_bytes(b"old")
    gid = os.getegid() if os.geteuid() != 0 else 65533
    uid = os.geteuid() if os.geteuid() != 0 else 65534
    os.chown(target, uid, gid)
    target.chmod(0o2640)
    atomic_write(target, b"new")
    info = target.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (uid, gid, 0o2640)


async def test_a_hard_link_keeps_the_old_content(
    tmp_path: Path, make_harness: HarnessFactory
) -> None:
    """What the README says: the rename gives the saved name a new file; another hard link to the
    old one keeps the old content."""
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(3))
    other = tmp_path / "other-name.ipynb"
    os.link(nb, other)
    before = other.read_bytes()
    h = await make_harness("memory")
    client = await h.connect(nb)
    await asyncio.wait_for(client.wait_loaded(), WAIT)
    client.doc.update_source("c1", "edited = True")
    client.sync_now()
    room = h.daemon.rooms.rooms()[0]
    await asyncio.wait_for(client.wait_for(lambda: room.doc.heads() == client.doc.heads()), WAIT)
    await asyncio.wait_for(client.save(), WAIT)
    assert "edited = True" in nb.read_text()
    assert other.read_bytes() == before and nb.stat().st_nlink == 1


# --------------------------------------------------------------------------- survivals
async def test_a_symlink_swapped_in_before_a_save_is_refused_not_followed(
    tmp_path: Path, make_harness: HarnessFactory
) -> None:
    """A symlink at the notebook's path since the load is a change on disk (PROTOCOL.md 11.2,
    11.4): the save is refused, the link and its target outside the root are left as they are."""
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(3))
    victim = tmp_path.parent / f"{tmp_path.name}-victim"  # outside the root
    victim.write_bytes(b"precious")
    victim.chmod(0o644)
    h = await make_harness("memory")
    client = await h.connect(nb)
    await asyncio.wait_for(client.wait_loaded(), WAIT)
    nb.unlink()
    nb.symlink_to(victim)
    with pytest.raises(CoreError, match=r"save refused: .* by a symbolic link"):
        await asyncio.wait_for(client.save(), WAIT)
    assert nb.is_symlink() and victim.read_bytes() == b"precious"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert _temps(tmp_path) == []
    await client.ping()  # the session is still served


async def test_a_save_on_a_full_disk_keeps_the_file_and_says_so(
    tmp_path: Path, make_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The save's write gets half its bytes down, then ENOSPC: the client gets one precise error,
    the file is byte-for-byte what it was, no temp is left, and a later save succeeds."""
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(6))
    original = nb.read_bytes()
    h = await make_harness("memory")
    client = await h.connect(nb)
    await asyncio.wait_for(client.wait_loaded(), WAIT)
    client.doc.update_source("c1", "edited = True\n" * 500)
    client.sync_now()
    room = h.daemon.rooms.rooms()[0]
    await asyncio.wait_for(client.wait_for(lambda: room.doc.heads() == client.doc.heads()), WAIT)
    real = os.write
    failed: list[str] = []

    def full_disk(fd: int, data: Any) -> int:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if ".nb.ipynb.nbstream-" in path:
            if not failed:
                failed.append(path)
                return real(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(core.atomic.os, "write", full_disk)
    with pytest.raises(CoreError) as info:
        await asyncio.wait_for(client.save(), WAIT)
    assert str(info.value) == (
        f"save of {nb} failed, the file is unchanged: No space left on device"
    )
    assert failed and nb.read_bytes() == original and _temps(tmp_path) == []
    monkeypatch.undo()
    await asyncio.wait_for(client.save(), WAIT)
    assert "edited = True" in nb.read_text() and _temps(tmp_path) == []
