"""Atomic file replacement: the one way nbstream writes a file that a reader may open meanwhile.

The bytes go to a fresh temp file beside the target (same directory, so the rename never crosses
a filesystem), the temp file is closed (and fsynced when ``durable``), then :func:`os.replace`
swaps it in: a reader sees the old file or the new one, never a torn one. On any failure the temp
file is removed and the target is untouched. A symlink at the target is replaced, not followed; a
hard link to the old file keeps the old content (the rename gives the name a new inode).

The replacing file keeps the owner, group and permission bits of the regular file it replaces
(the owner only where the process may give files away, i.e. as root; the group where the process
belongs to it). Temp names carry ``nbstream-<pid>-<uuid hex>``, so a temp file left by a writer
that was killed (``kill -9`` mid-save) is recognisably ours and :func:`remove_stale_temps` can
remove it once its writer is gone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import uuid

__all__ = ["atomic_write", "remove_stale_temps", "temp_writer_gone"]

_CREATE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
)
_TAG = "nbstream"
_TAG_RE = re.compile(rf"{_TAG}-([0-9]{{1,10}})-[0-9a-f]{{32}}")
# Temp files this process is writing now (absolute paths): a temp named with our own pid but not
# in here is a previous process's that had the same pid (a container's daemon is often pid 1).
_IN_FLIGHT: set[str] = set()


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    durable: bool = True,
    mode: int | None = None,
    tmp_prefix: str | None = None,
    tmp_suffix: str = ".tmp",
) -> None:
    """Replace ``path`` with ``data`` atomically.

    ``durable`` fsyncs the file before the rename (a save of the user's notebook); content-
    addressed blobs skip it (they are re-derivable). ``mode`` sets the permission bits; None keeps
    those of the regular file being replaced (0600 for a new file, or one replacing a symlink).
    The temp file is named ``{tmp_prefix}nbstream-<pid>-<uuid4 hex>{tmp_suffix}`` (default prefix
    ``.{name}.``), created with ``O_EXCL | O_NOFOLLOW``; owner and mode are set on the descriptor
    (no path lookups beyond one ``lstat`` of the target).
    """
    target = os.fspath(path)
    directory, name = os.path.split(target)
    prefix = tmp_prefix if tmp_prefix is not None else f".{name}."
    tmp = os.path.join(
        directory or ".", f"{prefix}{_TAG}-{os.getpid()}-{uuid.uuid4().hex}{tmp_suffix}"
    )
    key = os.path.abspath(tmp)
    _IN_FLIGHT.add(key)
    try:
        fd = os.open(tmp, _CREATE_FLAGS, 0o600)
        try:
            try:
                _take_over_attributes(fd, target, mode)
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    if n <= 0:  # never loop forever on a device that accepts nothing
                        raise OSError(errno.EIO, "write made no progress")
                    view = view[n:]
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    finally:
        _IN_FLIGHT.discard(key)


def _take_over_attributes(fd: int, target: str, mode: int | None) -> None:
    """Give the temp file the owner, group and mode of the regular file at ``target``."""
    try:
        old: os.stat_result | None = os.lstat(target)
    except OSError:
        old = None
    if old is not None and not stat.S_ISREG(old.st_mode):
        old = None  # a symlink (or anything else) is replaced, its target's attributes not taken
    if old is not None and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
        mine = os.fstat(fd)
        if (mine.st_uid, mine.st_gid) != (old.st_uid, old.st_gid):
            try:
                os.fchown(fd, old.st_uid, old.st_gid)  # root: anyone's file keeps its owner
            except PermissionError:
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, -1, old.st_gid)  # a user may keep a group they belong to
    if mode is None and old is not None:
        mode = stat.S_IMODE(old.st_mode)
    if mode is not None:
        os.fchmod(fd, mode)  # after fchown, which may clear set-id bits


def temp_writer_gone(directory: str, name: str) -> bool | None:
    """For a file named like our temp files: True if its writer is gone, False if it may still
    be writing; None if ``name`` is not one of our temp names.

    The writer is the pid in the name: gone when no such process exists, or when it is this
    process but the file is not one of the writes in flight here (a previous process that had
    the same pid). A process we may not signal exists (``EPERM``): it may be writing.
    """
    found = _TAG_RE.search(name)
    if found is None:
        return None
    pid = int(found.group(1))
    if pid == os.getpid():
        return os.path.abspath(os.path.join(directory, name)) not in _IN_FLIGHT
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it exists, under another user
        return False
    return False


def remove_stale_temps(directory: str, prefix: str, suffixes: tuple[str, ...] = (".tmp",)) -> int:
    """Remove the temp files :func:`atomic_write` left in ``directory`` for names starting with
    ``prefix`` and ending in one of ``suffixes`` whose writer is gone; return how many.

    Only regular files named exactly ``{prefix}nbstream-<pid>-<32 hex>{suffix}`` are candidates
    (never followed through a symlink); never raises (an unreadable directory removes nothing).
    """
    pattern = re.compile(
        re.escape(prefix) + _TAG_RE.pattern + "(?:" + "|".join(re.escape(s) for s in suffixes) + ")"
    )
    removed = 0
    try:
        with os.scandir(directory) as entries:
            names = [
                e.name
                for e in entries
                if pattern.fullmatch(e.name) and e.is_file(follow_symlinks=False)
            ]
    except OSError:
        return 0
    for name in names:
        if temp_writer_gone(directory, name):
            with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove
                os.unlink(os.path.join(directory, name))
                removed += 1
    return removed
