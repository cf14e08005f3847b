"""Issue 12 items 1 and 4: outside edits are never overwritten unseen, unsaved edits never vanish.

Everything goes through the real daemon on a Unix socket with NotebookClient peers. Waits are on
conditions (the daemon's wait_for, a client's frames), never on a sleep; a short eviction delay
comes from DaemonConfig.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import core.daemon
from core import room_file
from core.client import NotebookClient
from core.errors import CoreError
from core.notebook_doc import NotebookDoc
from core.room import NotebookRoom
from core.room_file import RECOVERY_INFIX

from .conftest import Harness, HarnessFactory, simple_cells, write_notebook

WAIT = 30.0
LONG = 600.0  # an eviction delay no test reaches: the room waits for eviction all along


def _sources(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"]]


async def _edit(client: NotebookClient, room: NotebookRoom, index: int, source: str) -> None:
    """Change cell ``index``'s source at ``client`` and wait until the daemon holds it."""
    cell_id = client.doc.get_cells()[index].id
    assert client.doc.update_source(cell_id, source)
    client.sync_now()

    async def applied() -> None:  # a round trip per check: the daemon reads frames in order
        while room.doc.heads() != client.doc.heads():
            await client.ping()

    await asyncio.wait_for(applied(), WAIT)


async def _open(h: Harness, nb: Path, name: str) -> NotebookClient:
    client = await h.connect(nb, name=name)
    await asyncio.wait_for(client.wait_loaded(), WAIT)
    return client


def _only_room(h: Harness) -> NotebookRoom:
    (room,) = h.daemon.rooms.rooms()
    return room


def _conflicts(client: NotebookClient) -> list[dict[str, Any]]:
    return [b for b in client.broadcasts if b.get("event") == "file_conflict"]


def _recovered(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if RECOVERY_INFIX in p.name)


# =========================================================================== item 1: conflicts
def _in_place_other_size(nb: Path) -> None:
    write_notebook(nb, simple_cells(4, prefix="outside"))


def _in_place_same_size_same_mtime(nb: Path) -> None:
    """The hardest: same inode, same size, mtime put back. Only the content hash can tell."""
    st = os.stat(nb)
    data = nb.read_bytes()
    changed = data.replace(b"x = 0", b"x = 9", 1)
    assert changed != data and len(changed) == len(data)
    with open(nb, "r+b") as f:
        f.write(changed)
    os.utime(nb, ns=(st.st_atime_ns, st.st_mtime_ns))


def _replaced_by_rename(nb: Path) -> None:
    """What editors and ``git checkout`` do: a new file renamed over the name (a new inode)."""
    other = nb.with_name("incoming.ipynb")
    write_notebook(other, simple_cells(3, prefix="git"))
    os.replace(other, nb)


def _replaced_by_a_symlink(nb: Path) -> None:
    """Refused, not followed: the link's target must not be written through it."""
    target = nb.with_name("elsewhere.ipynb")
    write_notebook(target, simple_cells(2, prefix="elsewhere"))
    nb.unlink()
    nb.symlink_to(target)


OUTSIDE = {
    "in-place-other-size": (_in_place_other_size, "was modified on disk (size "),
    "in-place-same-size-same-mtime": (
        _in_place_same_size_same_mtime,
        "was modified on disk (same size",
    ),
    "replaced-by-rename": (_replaced_by_rename, "was replaced on disk by another file"),
    "replaced-by-a-symlink": (_replaced_by_a_symlink, "was replaced on disk by a symbolic link"),
}


@pytest.mark.parametrize("kind", sorted(OUTSIDE))
async def test_an_outside_edit_makes_the_save_a_conflict_and_every_peer_is_told(
    make_harness: HarnessFactory, tmp_path: Path, kind: str
) -> None:
    change, expected = OUTSIDE[kind]
    h = await make_harness("unix", eviction_delay=LONG)
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(3))
    a = await _open(h, nb, "a")
    b = await _open(h, nb, "b")
    room = _only_room(h)
    await _edit(a, room, 0, "edited by a")
    change(nb)
    outside = nb.read_bytes()
    with pytest.raises(CoreError) as refused:
        await asyncio.wait_for(a.save(), WAIT)
    message = str(refused.value)
    assert message.startswith(f"save refused: {nb} {expected}")
    assert message.endswith(
        "since it was loaded or last saved; the file on disk was not overwritten"
    )
    assert nb.read_bytes() == outside  # the outside edit survives
    for peer in (a, b):  # both peers get the broadcast, the saver too
        await asyncio.wait_for(peer.wait_for(lambda p=peer: bool(_conflicts(p))), WAIT)
        (event,) = _conflicts(peer)
        assert event == {"event": "file_conflict", "path": str(nb), "detail": message}
    # the room keeps serving: still loaded, the edit still there, a second save still refused
    assert room.doc.get_cells()[0].source == "edited by a"
    with pytest.raises(CoreError, match="save refused"):
        await asyncio.wait_for(b.save(), WAIT)
    assert nb.read_bytes() == outside


async def test_a_directory_swapped_for_a_symlink_is_a_conflict(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness("unix", eviction_delay=LONG)
    (tmp_path / "sub").mkdir()
    nb = write_notebook(tmp_path / "sub" / "nb.ipynb", simple_cells(3))
    a = await _open(h, nb, "a")
    await _edit(a, _only_room(h), 0, "mine")
    (tmp_path / "sub").rename(tmp_path / "moved")
    (tmp_path / "outside").mkdir()
    write_notebook(tmp_path / "outside" / "nb.ipynb", simple_cells(1))
    theirs = (tmp_path / "outside" / "nb.ipynb").read_bytes()
    (tmp_path / "sub").symlink_to(tmp_path / "outside")
    with pytest.raises(CoreError) as refused:
        await asyncio.wait_for(a.save(), WAIT)
    assert str(refused.value).startswith(f"save refused: {nb} was replaced on disk by another file")
    assert (tmp_path / "outside" / "nb.ipynb").read_bytes() == theirs
    assert _sources(tmp_path / "moved" / "nb.ipynb")[0] == "x = 0\nprint(x)"


async def test_a_touched_file_or_an_equal_copy_is_not_a_conflict(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness("unix", eviction_delay=LONG)
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(3))
    a = await _open(h, nb, "a")
    room = _only_room(h)
    os.utime(nb, ns=(1, 10**18))  # touched: another mtime, the same bytes
    await _edit(a, room, 0, "first")
    await asyncio.wait_for(a.save(), WAIT)
    copy = nb.with_name("copy.ipynb")
    shutil.copyfile(nb, copy)
    os.replace(copy, nb)  # replaced by an equal copy: another inode, the same bytes
    await _edit(a, room, 0, "second")
    await asyncio.wait_for(a.save(), WAIT)
    assert _sources(nb)[0] == "second" and _conflicts(a) == []


async def test_saves_follow_the_file_through_their_own_renames(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """Each atomic save gives the file a new inode; the next save must still recognise it."""
    h = await make_harness("unix", eviction_delay=LONG)
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(3))
    a = await _open(h, nb, "a")
    room = _only_room(h)
    for n in range(3):
        before = os.stat(nb).st_ino
        await _edit(a, room, 1, f"save {n}")
        await asyncio.wait_for(a.save(), WAIT)
        st = os.stat(nb)
        assert st.st_ino != before and room.key == (st.st_dev, st.st_ino)
    assert _sources(nb)[1] == "save 2" and _conflicts(a) == []
    _in_place_other_size(nb)  # ... and still sees an outside edit after them
    with pytest.raises(CoreError, match="was modified on disk"):
        await asyncio.wait_for(a.save(), WAIT)


async def test_a_reopen_after_an_outside_edit_loads_the_new_file(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness("unix", eviction_delay=LONG)
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(3))
    a = await _open(h, nb, "a")
    old_room = _only_room(h)
    await a.close()
    await asyncio.wait_for(h.daemon.wait_for(lambda: old_room.peer_count == 0), WAIT)
    assert h.daemon.rooms.evicted == 0  # still waiting for its eviction
    _replaced_by_rename(nb)
    b = await _open(h, nb, "b")
    assert [c.id for c in b.doc.get_cells()] == ["git1", "git2", "git3"]
    assert _only_room(h) is not old_room and len(h.daemon.load_reports) == 2
    # unchanged file: the reopen joins the loaded room, no second load
    await b.close()
    await asyncio.wait_for(h.daemon.wait_for(lambda: _only_room(h).peer_count == 0), WAIT)
    c = await _open(h, nb, "c")
    assert len(h.daemon.load_reports) == 2 and c.doc.get_cells()[0].id == "git1"


async def test_a_reopen_of_a_dirty_room_after_an_outside_edit_loses_neither(
    make_harness: HarnessFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The rule: the room is kept (with its edits), its work goes to a recovery file, the
    joining peer is told, and saving over the outside version is refused."""
    h = await make_harness("unix", eviction_delay=LONG)
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(3))
    a = await _open(h, nb, "a")
    room = _only_room(h)
    await _edit(a, room, 2, "unsaved work")
    await a.close()
    await asyncio.wait_for(h.daemon.wait_for(lambda: room.peer_count == 0), WAIT)
    _in_place_other_size(nb)
    outside = nb.read_bytes()
    with caplog.at_level(logging.WARNING, logger="nbstream.daemon"):
        b = await _open(h, nb, "b")
        await asyncio.wait_for(b.wait_for(lambda: bool(_conflicts(b))), WAIT)
    assert _only_room(h) is room and b.doc.get_cells()[2].source == "unsaved work"
    (recovery,) = _recovered(tmp_path)
    assert recovery.name.startswith("nb" + RECOVERY_INFIX) and recovery.suffix == ".ipynb"
    assert _sources(recovery)[2] == "unsaved work"
    (event,) = _conflicts(b)
    assert event["recovery_path"] == str(recovery) and event["path"] == str(nb)
    assert event["detail"].startswith(f"{nb} was modified on disk (size ")
    assert [r.getMessage() for r in caplog.records if str(recovery) in r.getMessage()]
    with pytest.raises(CoreError, match="save refused"):
        await asyncio.wait_for(b.save(), WAIT)
    assert nb.read_bytes() == outside


# =========================================================================== item 1: hard links
async def test_two_hard_links_are_one_room_and_a_save_keeps_them_one_file(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness("unix", eviction_delay=LONG)
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(3))
    link = tmp_path / "link.ipynb"
    os.link(nb, link)
    a = await _open(h, nb, "a")
    b = await _open(h, link, "b")
    room = _only_room(h)
    assert room.peer_count == 2 and len(h.daemon.load_reports) == 1
    assert a.info is not None and b.info is not None
    assert b.info.notebook_id == a.info.notebook_id == str(nb)  # the room's id
    await _edit(b, room, 0, "through the link")
    saved = await asyncio.wait_for(b.save(), WAIT)
    assert saved.path == str(nb)  # the room's file, under the name it was opened by first
    st_nb, st_link = os.stat(nb), os.stat(link)
    assert st_nb.st_ino == st_link.st_ino and st_nb.st_nlink == 2  # re-linked after the rename
    assert _sources(link)[0] == "through the link"
    await _edit(a, room, 1, "and again")  # the room followed the new inode: no conflict
    await asyncio.wait_for(a.save(), WAIT)
    assert _sources(link)[1] == "and again" and os.stat(link).st_ino == os.stat(nb).st_ino


# =========================================================================== item 4: dirty rooms
async def test_a_dirty_room_is_saved_when_it_is_evicted(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness("unix")  # eviction_delay 0.05 s
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(3))
    a = await _open(h, nb, "a")
    await _edit(a, _only_room(h), 1, "never saved by a client")
    await a.close()
    await asyncio.wait_for(h.daemon.wait_for(lambda: h.daemon.rooms.evicted == 1), WAIT)
    assert _sources(nb)[1] == "never saved by a client" and _recovered(tmp_path) == []


async def test_a_clean_room_is_evicted_without_writing(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness("unix")
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(3))
    before = os.stat(nb)
    a = await _open(h, nb, "a")
    await a.close()
    await asyncio.wait_for(h.daemon.wait_for(lambda: h.daemon.rooms.evicted == 1), WAIT)
    after = os.stat(nb)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


async def test_a_dirty_room_with_a_conflicting_outside_edit_goes_to_a_recovery_file(
    make_harness: HarnessFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = await make_harness("unix")
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(3))
    a = await _open(h, nb, "a")
    await _edit(a, _only_room(h), 0, "mine")
    _replaced_by_rename(nb)
    outside = nb.read_bytes()
    with caplog.at_level(logging.WARNING, logger="nbstream.daemon"):
        await a.close()
        await asyncio.wait_for(h.daemon.wait_for(lambda: h.daemon.rooms.evicted == 1), WAIT)
    assert nb.read_bytes() == outside  # theirs
    (recovery,) = _recovered(tmp_path)
    assert _sources(recovery)[0] == "mine"  # mine
    (line,) = [r.getMessage() for r in caplog.records if "written to" in r.getMessage()]
    assert line.startswith(
        f"{nb}: unsaved edits not saved (save refused: {nb} was replaced on disk by another file"
    )
    assert line.endswith(f"the file on disk was not overwritten); written to {recovery}")


async def test_recovery_goes_to_the_state_directory_when_the_notebooks_is_gone(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    state = tmp_path / "state" / "recovered"
    h = await make_harness("unix", recovery_dir=state)
    folder = tmp_path / "project"
    folder.mkdir()
    nb = write_notebook(folder / "nb.ipynb", simple_cells(3))
    a = await _open(h, nb, "a")
    await _edit(a, _only_room(h), 0, "saved nowhere else")
    shutil.rmtree(folder)  # the folder went away (and with it any place beside the notebook)
    await a.close()
    await asyncio.wait_for(h.daemon.wait_for(lambda: h.daemon.rooms.evicted == 1), WAIT)
    (recovery,) = _recovered(state)
    assert _sources(recovery)[0] == "saved nowhere else"
    assert h.daemon.files.recoveries == [recovery]


async def test_a_disk_error_on_the_eviction_save_goes_to_a_recovery_file(
    make_harness: HarnessFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await make_harness("unix")
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(3))
    original = nb.read_bytes()
    a = await _open(h, nb, "a")
    await _edit(a, _only_room(h), 0, "the disk is full")
    real_replace = os.replace

    def full_for_the_notebook(src: Any, dst: Any, **kw: Any) -> None:
        if Path(dst) == nb:  # the notebook's save fails at its last step; nothing else does
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst, **kw)

    monkeypatch.setattr(os, "replace", full_for_the_notebook)
    await a.close()
    await asyncio.wait_for(h.daemon.wait_for(lambda: h.daemon.rooms.evicted == 1), WAIT)
    assert nb.read_bytes() == original
    (recovery,) = _recovered(tmp_path)
    assert _sources(recovery)[0] == "the disk is full"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["nb.ipynb", recovery.name])  # no temp file left behind


async def test_an_unexportable_room_is_recovered_as_its_automerge_document(
    make_harness: HarnessFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await make_harness("unix")
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(3))
    a = await _open(h, nb, "a")
    await _edit(a, _only_room(h), 0, "kept as a document")

    def broken(*_args: Any, **_kw: Any) -> bytes:
        raise ValueError("cannot export this")

    for name in ("export_notebook", "export_for_save"):  # the save's export, whichever it is
        monkeypatch.setattr(core.daemon, name, broken, raising=False)
    monkeypatch.setattr(room_file, "export_notebook", broken)  # the recovery's first try
    await a.close()
    await asyncio.wait_for(h.daemon.wait_for(lambda: h.daemon.rooms.evicted == 1), WAIT)
    (recovery,) = _recovered(tmp_path)
    assert recovery.suffix == ".automerge"
    assert NotebookDoc.load(recovery.read_bytes()).get_cells()[0].source == "kept as a document"


async def test_stop_saves_dirty_rooms(make_harness: HarnessFactory, tmp_path: Path) -> None:
    h = await make_harness("unix", eviction_delay=LONG)
    one = write_notebook(tmp_path / "one.ipynb", simple_cells(3))
    two = write_notebook(tmp_path / "two.ipynb", simple_cells(3))
    a = await _open(h, one, "a")
    b = await _open(h, two, "b")
    rooms = {r.path: r for r in h.daemon.rooms.rooms()}
    await _edit(a, rooms[one], 0, "saved at stop, peer gone")
    await _edit(b, rooms[two], 0, "saved at stop, peer still there")
    await a.close()
    await asyncio.wait_for(h.daemon.wait_for(lambda: rooms[one].peer_count == 0), WAIT)
    await h.daemon.stop()
    assert _sources(one)[0] == "saved at stop, peer gone"
    assert _sources(two)[0] == "saved at stop, peer still there"
    assert _recovered(tmp_path) == []


async def test_a_failed_room_holding_peer_cells_is_recovered_on_eviction(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """A failed load cannot be saved over its file; cells a peer added are not dropped."""
    h = await make_harness("unix")
    nb = tmp_path / "bad.ipynb"
    nb.write_text('{"cells": [}')
    a = await h.connect(nb, name="a")
    await asyncio.wait_for(
        a.wait_for(lambda: a.load_status is not None and a.load_status.phase == "failed"), WAIT
    )
    room = _only_room(h)
    a.doc.add_cell(0, "peer-cell", "code")
    a.sync_now()
    await asyncio.wait_for(a.wait_for(lambda: room.doc.cell_count() == 1), WAIT)
    await a.close()
    await asyncio.wait_for(h.daemon.wait_for(lambda: h.daemon.rooms.evicted == 1), WAIT)
    assert nb.read_text() == '{"cells": [}'
    (recovery,) = _recovered(tmp_path)
    assert [c["id"] for c in json.loads(recovery.read_text())["cells"]] == ["peer-cell"]


async def test_an_edit_made_during_the_load_makes_the_room_dirty(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """The heads at the end of the load include a peer's edit made during it: not clean."""
    at_batch, go = asyncio.Event(), asyncio.Event()

    async def hold_at_batch_2(_room: NotebookRoom, index: int) -> None:
        if index == 2:
            at_batch.set()
            await go.wait()

    h = await make_harness("unix", before_batch=hold_at_batch_2)
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(12))
    a = await h.connect(nb, name="a")
    await asyncio.wait_for(at_batch.wait(), WAIT)
    b = await h.connect(nb, name="b")
    await asyncio.wait_for(b.wait_for_cells(6), WAIT)
    await _edit(b, _only_room(h), 0, "edited while loading")
    go.set()
    await asyncio.wait_for(asyncio.gather(a.wait_loaded(), b.wait_loaded()), WAIT)
    await a.close()
    await b.close()
    await asyncio.wait_for(h.daemon.wait_for(lambda: h.daemon.rooms.evicted == 1), WAIT)
    assert _sources(nb)[0] == "edited while loading"
    assert len(_sources(nb)) == 12


async def test_a_reused_inode_number_does_not_join_a_room_of_a_deleted_file(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """File systems hand a deleted file's inode number to the next new file: a room keyed by
    it must not take an unrelated notebook's opener. (Which number the kernel reuses cannot be
    forced, so the room is keyed by the new file's number directly.)"""
    h = await make_harness("unix")
    gone = tmp_path / "deleted.ipynb"
    new = write_notebook(tmp_path / "new.ipynb", simple_cells(2))
    st = os.stat(new)
    stale = h.daemon.rooms.create(str(gone), gone, (st.st_dev, st.st_ino))
    a = await _open(h, new, "a")
    assert len(h.daemon.rooms) == 2 and stale.peer_count == 0
    assert a.info is not None and a.info.notebook_id == str(new)
    assert h.daemon.rooms.by_key((st.st_dev, st.st_ino)) is not stale


V3 = {
    "nbformat": 3,
    "nbformat_minor": 0,
    "metadata": {"name": "old"},
    "worksheets": [
        {"cells": [{"cell_type": "code", "input": "1 + 1", "language": "python", "outputs": []}]}
    ],
}


@pytest.mark.parametrize("kind", ["streamed", "read-whole-nbformat-3"])
async def test_the_load_records_exactly_the_bytes_it_read(
    make_harness: HarnessFactory, tmp_path: Path, kind: str
) -> None:
    h = await make_harness("unix", eviction_delay=LONG)
    nb = tmp_path / "nb.ipynb"
    if kind == "streamed":
        write_notebook(nb, simple_cells(40))
    else:  # the scanner cannot stream it: the source reads the same open file again, whole
        nb.write_text(json.dumps(V3))
    a = await _open(h, nb, "a")
    assert a.doc.cell_count() == (40 if kind == "streamed" else 1)
    identity = _only_room(h).file
    st = os.stat(nb)
    assert identity is not None
    assert (identity.dev, identity.ino, identity.size, identity.mtime_ns) == (
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
    )
    assert identity.sha256 == hashlib.sha256(nb.read_bytes()).hexdigest()
