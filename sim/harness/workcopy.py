"""A private, reproducible copy of the notebook a simulated run edits.

Peers' edits make the room dirty, and the daemon saves a dirty room when it stops (PROTOCOL.md
11.4): a run that edits must never edit the user's file. It edits a copy instead, and the copy's
*path* must be the same in every run, because the path is the notebook id, which travels in
frames whose sizes are part of the trace (:mod:`sim.harness.trace`): a random temporary
directory made every run's trace different.

The copy lives at ``$TMPDIR/nbstream-<uid>/slot<k>/<notebook name>``. Slot 0 is the usual one;
a run takes the lowest slot nobody else holds (an exclusive ``flock`` on ``slot<k>.lock``), so
concurrent runs never share a copy — and only a run that overlapped another gets a different
path (and so a different trace). The directories are private (0700) and must be owned by this
user; otherwise the copy goes to a fresh ``mkdtemp`` directory (correct, not reproducible).
"""

from __future__ import annotations

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


@contextlib.contextmanager
def _slot() -> Iterator[Path]:
    base = Path(tempfile.gettempdir()) / f"nbstream-{os.getuid()}"
    if _private_dir(base):
        for k in range(MAX_SLOTS):
            fd = os.open(base / f"slot{k}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                where = base / f"slot{k}"
                shutil.rmtree(where, ignore_errors=True)  # whatever a killed run left
                if _private_dir(where):
                    yield where
                    return
            finally:
                shutil.rmtree(base / f"slot{k}", ignore_errors=True)
                os.close(fd)  # releases the lock
            break
    with tempfile.TemporaryDirectory(prefix="nbstream-run-") as fallback:
        yield Path(fallback)


@contextlib.contextmanager
def private_copy(notebook: Path) -> Iterator[Path]:
    """A copy of ``notebook`` (same file name) at a reproducible private path, removed after,
    with whatever the daemon wrote beside it (recovery files)."""
    with _slot() as where:
        copy = Path(os.path.realpath(where)) / notebook.name
        shutil.copyfile(notebook, copy)
        yield copy
