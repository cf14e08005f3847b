"""Atomic file replacement: the one way nbstream writes a file that a reader may open meanwhile.

The bytes go to a fresh temp file beside the target (same directory, so the rename never crosses
a filesystem), the temp file is closed (and fsynced when ``durable``), then :func:`os.replace`
swaps it in: a reader sees the old file or the new one, never a torn one. On any failure the temp
file is removed and the target is untouched. A symlink at the target is replaced, not followed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid

__all__ = ["atomic_write"]

_CREATE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
)


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
    those of the file being replaced (0600 for a new file). The temp file is named
    ``{tmp_prefix}<uuid4 hex>{tmp_suffix}`` (default prefix ``.{name}.``), created with
    ``O_EXCL | O_NOFOLLOW``; its mode is set on the descriptor (no path lookups: a blob put is
    a few syscalls, cheaper than :func:`tempfile.mkstemp` plus a ``chmod`` by path).
    """
    target = os.fspath(path)
    directory, name = os.path.split(target)
    prefix = tmp_prefix if tmp_prefix is not None else f".{name}."
    tmp = os.path.join(directory or ".", f"{prefix}{uuid.uuid4().hex}{tmp_suffix}")
    fd = os.open(tmp, _CREATE_FLAGS, 0o600)
    try:
        try:
            if mode is None:
                with contextlib.suppress(OSError):
                    mode = stat.S_IMODE(os.stat(target).st_mode)
            if mode is not None:
                os.fchmod(fd, mode)
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
