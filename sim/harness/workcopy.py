"""A private, reproducible copy of the notebook a simulated run edits.

Peers' edits make the room dirty, and the daemon saves a dirty room when it stops (PROTOCOL.md
11.4): a run that edits must never edit the user's file. It edits a copy instead, and the copy's
*path* must be the same in every run, because the path is the notebook id, which travels in
frames whose sizes are part of the trace (:mod:`sim.harness.trace`): a random temporary
directory made every run's trace different.

The copy lives at ``$TMPDIR/nbstream-<uid>/slot<k>/<notebook name>``. A process takes the
lowest slot no other process holds (an exclusive ``flock`` on ``slot<k>.lock``) at its first
run and **keeps it until it exits**, so every run of one process — both runs of
``--check-determinism``, every schedule of ``explore`` — has the same path even while other
processes come and go; a process that started while another held slot 0 gets slot 1 (and so
traces that differ from slot 0's). Runs overlapping inside one process take further slots. The
directories are private (0700) and must be owned by this user; otherwise the copy goes to a
fresh ``mkdtemp`` directory (correct, not reproducible).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["private_copy"]

MAX_SLOTS = 64


def _private_dir(path: Path) -> bool:
    """Make ``path`` a directory only this user can use; False if it is not ours."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and stat.S_IMODE(info.st_mode) & 0o077 == 0
    )


# slot directory -> whether a run of this process is using it now; the locks stay held
_held: dict[Path, bool] = {}


def _release_all() -> None:
    for where in _held:
        shutil.rmtree(where, ignore_errors=True)


def _acquire() -> Path | None:
    """A slot no other process holds, locked for this process's lifetime; None if none."""
    base = Path(tempfile.gettempdir()) / f"nbstream-{os.getuid()}"
    if not _private_dir(base):
        return None
    for k in range(MAX_SLOTS):
        where = base / f"slot{k}"
        if where in _held:
            continue
        fd = os.open(base / f"slot{k}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        shutil.rmtree(where, ignore_errors=True)  # whatever a killed process left
        if not _private_dir(where):
            os.close(fd)
            return None
        if not _held:
            atexit.register(_release_all)
        _held[where] = False  # fd stays open: the lock is released when the process exits
        return where
    return None


@contextlib.contextmanager
def _slot() -> Iterator[Path]:
    where = next((w for w, busy in _held.items() if not busy), None) or _acquire()
    if where is None:
        with tempfile.TemporaryDirectory(prefix="nbstream-run-") as fallback:
            yield Path(fallback)
        return
    _held[where] = True
    try:
        yield where
    finally:
        _held[where] = False
        for entry in where.iterdir():  # the copy and whatever the daemon wrote beside it
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


@contextlib.contextmanager
def private_copy(notebook: Path) -> Iterator[Path]:
    """A copy of ``notebook`` (same file name) at a reproducible private path, removed after,
    with whatever the daemon wrote beside it (recovery files)."""
    with _slot() as where:
        copy = Path(os.path.realpath(where)) / notebook.name
        shutil.copyfile(notebook, copy)
        yield copy
