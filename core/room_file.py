"""A room's notebook file: conflict-checked saves, the file's other names, and recovery files.

Nothing a room holds is lost and nothing on disk is overwritten unseen:

* **Checked saves.** :meth:`RoomFiles.write` replaces the file only if it is still what the room
  loaded or last saved (:func:`~core.file_identity.file_change`, checked right before the
  rename). Otherwise the save fails with :class:`~core.errors.SaveConflict` and every peer of the
  room is sent a ``file_conflict`` broadcast (PROTOCOL.md 7.1). nbstream does not merge.
* **Links.** An atomic save gives the saved name a new inode. Every other name the room was
  opened by that still named the old inode is re-linked to the new one (a temporary hard link
  renamed over it), so the names stay one file; a name that now names another file is dropped.
* **Reopening.** :meth:`RoomFiles.open_room` finds the room by ``(st_dev, st_ino)`` or by name.
  A loaded room without peers whose file changed on disk is dropped when it holds nothing
  unsaved (the opener loads the new file); when it does hold unsaved edits it is kept, its work
  is written to a recovery file, and every peer that joins is sent the ``file_conflict``.
* **Eviction and stop.** :meth:`RoomFiles.settle` saves a dirty loaded room (same check); when
  that save is refused or fails, it writes the work to a recovery file beside the notebook
  (``<name>.nbstream-recovered-<UTC time>.ipynb``; under the daemon's recovery directory when
  the notebook's directory cannot take it) and logs one line saying where.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import stat
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import atomic_write
from .blob_store import BlobStore
from .errors import CoreError, NotebookLoadError, RecoveryFailed, SaveConflict, SaveFailed
from .file_identity import FileIdentity, FileKey, file_change, file_key
from .ipynb_export import export_notebook
from .notebook_doc import NotebookDoc
from .room import NotebookRoom, RoomPhase, RoomRegistry

__all__ = ["RECOVERY_INFIX", "RoomFiles", "conflict_event", "recovery_name", "write_recovery"]

RECOVERY_INFIX = ".nbstream-recovered-"

log = logging.getLogger("nbstream.daemon")

SaveRoom = Callable[[NotebookRoom], Awaitable[tuple[Path, int, tuple[str, ...]]]]
WriteFile = Callable[[Path, bytes], None]
"""Replaces a notebook file with new bytes, all or nothing; raises a CoreError (SaveFailed)."""


def conflict_event(path: Path, detail: str, recovery: Path | None = None) -> dict[str, Any]:
    """The ``file_conflict`` broadcast body (PROTOCOL.md 7.1)."""
    event: dict[str, Any] = {"event": "file_conflict", "path": str(path), "detail": detail}
    if recovery is not None:
        event["recovery_path"] = str(recovery)
    return event


# --------------------------------------------------------------------------- blocking helpers
@dataclass(frozen=True, slots=True)
class Written:
    identity: FileIdentity  # the file as written
    gone: tuple[Path, ...]  # other names that no longer name the room's file


def _relink(target: Path, name: Path) -> None:
    """Make ``name`` another hard link of ``target``, atomically (temp link, then rename)."""
    tmp = name.parent / f".{name.name}.{uuid.uuid4().hex}.tmp"
    os.link(target, tmp)
    try:
        os.replace(tmp, name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_notebook_file(path: Path, data: bytes) -> None:
    """The default :data:`WriteFile`: :func:`~core.atomic.atomic_write`, OSError as SaveFailed."""
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise SaveFailed(
            f"save of {path} failed, the file is unchanged: {exc.strerror or exc}"
        ) from None


def replace_checked(
    path: Path,
    expected: FileIdentity | None,
    data: bytes,
    names: Sequence[Path],
    write: WriteFile = write_notebook_file,
) -> Written:
    """Replace ``path`` with ``data`` (by ``write``) if it is still ``expected``; re-link the
    other ``names``.

    Raises SaveConflict (the file changed) or what ``write`` raises (SaveFailed: the file is
    untouched). Blocking."""
    if expected is not None:
        change = file_change(path, expected)
        if change.detail is not None:
            raise SaveConflict(
                f"save refused: {path} {change.detail} since it was loaded or last saved;"
                " the file on disk was not overwritten"
            )
    write(path, data)
    try:
        st = os.stat(path)
    except OSError as exc:
        why = exc.strerror or exc
        raise SaveFailed(f"save of {path} written, then unreadable: {why}") from None
    identity = FileIdentity.of(st, hashlib.sha256(data).hexdigest())
    gone: list[Path] = []
    for name in names:
        if name == path:
            continue
        try:
            other = os.lstat(name)
        except OSError:
            gone.append(name)
            continue
        stale = expected is not None and file_key(other) == expected.key
        if stale and stat.S_ISREG(other.st_mode):  # still the old inode: follow the save
            try:
                _relink(path, name)
            except OSError as exc:
                log.warning("%s: not re-linked to %s after the save: %s", name, path, exc)
                gone.append(name)
        elif file_key(other) != identity.key:  # another file now: no longer a name of ours
            gone.append(name)
    return Written(identity, tuple(gone))


def recovery_name(path: Path, suffix: str, when: float | None = None) -> str:
    """``analysis.ipynb`` -> ``analysis.nbstream-recovered-20261207T123045Z.ipynb``."""
    stem = path.name[: -len(".ipynb")] if path.name.endswith(".ipynb") else path.name
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    return f"{stem}{RECOVERY_INFIX}{stamp}{suffix}"


def _fresh(directory: Path, name: str) -> Path:
    candidate = directory / name
    stem, dot, ext = name.rpartition(".")
    n = 1
    while os.path.lexists(candidate):
        n += 1
        candidate = directory / f"{stem}-{n}{dot}{ext}"
    return candidate


def write_recovery(path: Path, data: bytes, suffix: str, fallback_dir: Path) -> Path:
    """Write ``data`` to a new recovery file beside ``path``, else in ``fallback_dir``.

    Returns where it went; raises RecoveryFailed naming both failures. Blocking."""
    name = recovery_name(path, suffix)
    try:
        target = _fresh(path.parent, name)
        atomic_write(target, data)
        return target
    except OSError as beside:
        try:
            fallback_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            target = _fresh(fallback_dir, name)
            atomic_write(target, data)
            return target
        except OSError as there:
            raise RecoveryFailed(
                f"cannot write a recovery file beside {path} ({beside.strerror or beside})"
                f" nor in {fallback_dir} ({there.strerror or there})"
            ) from None


def recovery_payload(doc: NotebookDoc, store: BlobStore) -> tuple[bytes, str]:
    """The work to recover: the notebook as .ipynb, or the Automerge document when the
    notebook cannot be exported (the document always can be saved: nothing is lost)."""
    try:
        return export_notebook(doc, store), ".ipynb"
    except Exception as exc:  # an unexportable document still holds the user's work
        log.warning("recovery as .ipynb failed (%s: %s); saving the document", type(exc), exc)
        return doc.save(), ".automerge"


# --------------------------------------------------------------------------- the async side
class RoomFiles:
    """The daemon's rooms and their files: open by identity, checked writes, settle, recover."""

    def __init__(
        self,
        rooms: RoomRegistry,
        store: BlobStore,
        recovery_dir: Path,
        save: SaveRoom,
        write_file: WriteFile = write_notebook_file,
    ) -> None:
        self.rooms = rooms
        self.store = store
        self.recovery_dir = recovery_dir
        self._save = save
        self.write_file = write_file  # how a checked save replaces the file
        self.recoveries: list[Path] = []  # every recovery file written, in order

    # ------------------------------------------------------------------ opening
    async def open_room(self, path: Path, notebook_id: str) -> NotebookRoom:
        """The room a handshake for ``path`` joins: by file identity, else by name.

        A loaded room without peers is checked against the file first (see the module doc)."""
        try:
            st = os.stat(path)
        except OSError as exc:
            raise NotebookLoadError(f"cannot open {path}: {exc.strerror or exc}") from None
        key = file_key(st)
        while True:
            room = self._find(key, path)
            if room is None or not self._idle_and_loaded(room):
                break
            room.opening += 1
            try:
                async with room.save_lock:
                    current = room in self.rooms
                    keep = current and await self._still_current(room, path)
                    if current and not keep:
                        self.rooms.drop(room)
            except BaseException:
                room.opening -= 1
                self.rooms.release(room)  # its eviction was stopped; nobody joins it now
                raise
            room.opening -= 1
            if keep:
                break
        if room is None:
            return self.rooms.create(notebook_id, path, key)
        self.rooms.add_name(room, path)
        return room

    def _find(self, key: FileKey, path: Path) -> NotebookRoom | None:
        """The room of the file ``key`` names, else of the name ``path``; its eviction held.

        Inode numbers are reused once a file is deleted, so a room found by key only is
        taken when ``path`` is one of its names or its own path still names that inode."""
        room = self.rooms.by_key(key)
        if room is not None and path not in self.rooms.names(room):
            try:
                theirs = file_key(os.stat(room.path))
            except OSError:
                theirs = None
            if theirs != key:
                room = None
        if room is None:
            room = self.rooms.by_name(path)
        if room is not None:
            self.rooms.hold(room)
        return room

    @staticmethod
    def _idle_and_loaded(room: NotebookRoom) -> bool:
        return room.peer_count == 0 and room.state.phase is RoomPhase.READY

    async def _still_current(self, room: NotebookRoom, path: Path) -> bool:
        """False when ``room`` should give way to a fresh load of the changed file."""
        if room.file is None:
            return True
        change = await asyncio.to_thread(file_change, path, room.file)
        if change.detail is None:
            if change.current is not None and change.current != room.file:
                room.file = change.current  # touched, or an equal copy: trust the new stat
                self.rooms.rekey(room, change.current.key)
            room.conflict = None
            return True
        if not room.is_dirty():
            log.info("%s %s: loading it again", path, change.detail)
            return False
        detail = f"{change.detail} while the room held unsaved edits; saving it is refused"
        try:
            where: Path | None = await self.recover(room)
        except RecoveryFailed as exc:
            log.error("%s: %s, and %s; the edits stay in memory", path, detail, exc)
            where = None
        else:
            log.warning("%s: %s; the unsaved edits were written to %s", path, detail, where)
        room.conflict = conflict_event(path, f"{path} {detail}", where)
        return True

    # ------------------------------------------------------------------ saving
    async def write(self, room: NotebookRoom, data: bytes, heads: list[bytes]) -> int:
        """Replace the room's file with ``data`` (the doc at ``heads``) if it is unchanged.

        Call with ``room.save_lock`` held. Returns the bytes written."""
        names = self.rooms.names(room)
        try:
            written = await asyncio.to_thread(
                replace_checked, room.path, room.file, data, names, self.write_file
            )
        except SaveConflict as exc:
            room.conflict = conflict_event(room.path, str(exc))
            room.broadcast(room.conflict)
            raise
        room.record_save(written.identity, heads)
        self.rooms.rekey(room, written.identity.key)
        for name in written.gone:
            self.rooms.forget_name(room, name)
        return len(data)

    # ------------------------------------------------------------------ before a room goes
    async def settle(self, room: NotebookRoom, *, stopping: bool = False) -> bool:
        """Make sure ``room`` holds nothing unsaved before it is dropped: save it if it is
        loaded and dirty, else (or if the save fails) write a recovery file. False only when
        the work could be written nowhere (the room should then be kept)."""
        state = room.state
        if state.phase is RoomPhase.READY and room.is_dirty():
            try:
                await self._save(room)
            except CoreError as exc:
                why = str(exc)
            except Exception as exc:  # an export bug must not cost the work: recover it
                why = f"internal error: {type(exc).__name__}: {exc}"
            else:
                log.info("%s: unsaved edits saved before the room was closed", room.path)
                return True
        elif state.phase is RoomPhase.FAILED and room.doc.cell_count() > 0:
            why = f"its load failed ({state.reason}), so it cannot be saved"
        else:
            return True
        try:
            where = await self.recover(room)
        except RecoveryFailed as exc:
            fate = "they are lost (the daemon is stopping)" if stopping else "kept in memory"
            log.error("%s: unsaved edits not saved (%s) and %s; %s", room.path, why, exc, fate)
            return False
        log.warning("%s: unsaved edits not saved (%s); written to %s", room.path, why, where)
        return True

    async def recover(self, room: NotebookRoom) -> Path:
        """Write the room's document to a recovery file (once per state of the document)."""
        snapshot = room.doc.fork()
        heads = snapshot.heads()
        if room.recovered_heads == heads and room.recovered_path is not None:
            return room.recovered_path
        data, suffix = await asyncio.to_thread(recovery_payload, snapshot, self.store)
        where = await asyncio.to_thread(write_recovery, room.path, data, suffix, self.recovery_dir)
        room.recovered_heads, room.recovered_path = heads, where
        self.recoveries.append(where)
        return where
