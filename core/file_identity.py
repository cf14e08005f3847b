"""What a room loaded from, or last wrote to, its notebook file; and whether the file changed since.

A :class:`FileIdentity` is the file's ``(st_dev, st_ino)``, size and ``st_mtime_ns`` at that moment
plus the SHA-256 of the exact bytes read or written. :func:`file_change` compares the file on disk
with one: a ``stat`` first, and the content hash only when the ``stat`` differs or cannot be
trusted. The hash decides: a file that was touched, or replaced by an equal copy, has not changed;
one of another size has, without reading it.

The ``stat`` cannot be trusted when the file was modified shortly before it was recorded (git's
"racily clean" entries): a second write within the same timestamp tick (1-10 ms on Linux, 2 s on
FAT) keeps the size and the mtime. Such an identity is checked by hash until a check finds it
equal after the window has passed; the check then returns a fresh identity that is trusted.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass

__all__ = ["RACY_WINDOW_NS", "FileChange", "FileIdentity", "FileKey", "file_change", "file_key"]

FileKey = tuple[int, int]
"""``(st_dev, st_ino)``: one file, whatever name (hard link, symlink) it is reached by."""

RACY_WINDOW_NS = 2_000_000_000
"""An mtime this close to the moment it was recorded is not trusted (the coarsest tick, FAT's)."""

_READ_CHUNK = 1 << 20


def file_key(st: os.stat_result) -> FileKey:
    return (st.st_dev, st.st_ino)


@dataclass(frozen=True, slots=True)
class FileIdentity:
    dev: int
    ino: int
    size: int
    mtime_ns: int
    sha256: str  # of the bytes read (a load) or written (a save), lowercase hex
    seen_ns: int  # time.time_ns() when this was recorded

    @classmethod
    def of(cls, st: os.stat_result, sha256: str, *, seen_ns: int | None = None) -> FileIdentity:
        return cls(
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
            sha256,
            time.time_ns() if seen_ns is None else seen_ns,
        )

    @property
    def key(self) -> FileKey:
        return (self.dev, self.ino)

    @property
    def racy(self) -> bool:
        """True when the ``stat`` alone cannot tell a later write of the same size."""
        return self.seen_ns - self.mtime_ns < RACY_WINDOW_NS

    def same_stat(self, st: os.stat_result) -> bool:
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == (
            self.dev,
            self.ino,
            self.size,
            self.mtime_ns,
        )


@dataclass(frozen=True, slots=True)
class FileChange:
    """The outcome of :func:`file_change`: ``detail`` is None when the file is unchanged."""

    detail: str | None
    current: FileIdentity | None  # the file as found, when it was read (else None)


def _sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_change(path: str | os.PathLike[str], recorded: FileIdentity) -> FileChange:
    """Is the file at ``path`` (a resolved path) still the one ``recorded`` describes? Never
    raises for the file.

    ``detail`` says what changed, e.g. ``"was modified on disk (size 1200 -> 1350 bytes)"``; it
    is meant to follow the file's name in a message. Blocking (it may hash the file)."""
    name = os.fspath(path)
    try:
        st = os.lstat(name)  # the name itself: a symlink put there is a change, never followed
    except FileNotFoundError:
        return FileChange("was deleted or renamed on disk", None)
    except OSError as exc:
        return FileChange(f"can no longer be checked ({exc.strerror or exc})", None)
    if stat.S_ISLNK(st.st_mode):
        return FileChange("was replaced on disk by a symbolic link", None)
    if not stat.S_ISREG(st.st_mode):
        return FileChange("was replaced on disk by something that is not a regular file", None)
    if recorded.same_stat(st) and not recorded.racy:
        return FileChange(None, recorded)
    replaced = file_key(st) != recorded.key
    what = "was replaced on disk by another file" if replaced else "was modified on disk"
    if st.st_size != recorded.size:
        return FileChange(f"{what} (size {recorded.size} -> {st.st_size} bytes)", None)
    seen = time.time_ns()
    try:
        digest = _sha256_of(name)
    except OSError as exc:
        return FileChange(f"{what} and can no longer be read ({exc.strerror or exc})", None)
    current = FileIdentity.of(st, digest, seen_ns=seen)
    if digest == recorded.sha256:
        return FileChange(None, current)
    return FileChange(f"{what} (same size, {st.st_size} bytes, different content)", current)
