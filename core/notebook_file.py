"""Reading a notebook file safely: absolute path, regular file only, size capped, never blocking.

:func:`open_notebook_file` checks the file once (``fstat`` on the open descriptor, so a swapped
path cannot slip past), and :class:`NotebookFile` reads it in chunks to EOF, never past the cap
(the file may grow after ``fstat``). :func:`read_notebook_file` is the whole-file form. Every
failure is a :class:`~core.errors.NotebookLoadError` naming the path and the reason.

The bytes are hashed (SHA-256) as they are read, so once the file has been read to its end,
:meth:`NotebookFile.identity` says exactly what was loaded without reading the file again. The
hashing runs on one shared worker thread (``hashlib`` releases the GIL on large updates, about
0.6 ms per 256 KiB chunk here), in read order, so it costs the reading thread nothing.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

from core.errors import NotebookLoadError
from core.file_identity import FileIdentity
from core.ipynb import MAX_NOTEBOOK_BYTES

__all__ = ["NotebookFile", "open_notebook_file", "read_notebook_file"]

_FILE_KINDS = (
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)
_WHOLE_CHUNK = 1 << 24
_HASHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbstream-hash")
"""One thread for every file's hash: tasks run in submission order, so each file's chunks do."""


class _Sha256:
    """SHA-256 of the chunks given to :meth:`update`, computed on :data:`_HASHER`."""

    __slots__ = ("_last", "_sha")

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._last: Future[None] | None = None

    def update(self, chunk: bytes) -> None:
        if chunk:
            self._last = _HASHER.submit(self._sha.update, chunk)

    def hexdigest(self) -> str:
        if self._last is not None:
            self._last.result()  # every earlier chunk was hashed before it
        return self._sha.hexdigest()


def _os_reason(error: OSError, path: str) -> str:
    code = error.errno
    if code == errno.ENOENT:
        if os.path.lexists(path):
            return "no such file (dangling symbolic link)"
        return "no such file"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if code == errno.EISDIR:
        return "is a directory"
    if code == errno.ENOTDIR:
        return "a component of the path is not a directory"
    if code == errno.ELOOP:
        return "too many levels of symbolic links"
    if code == errno.ENXIO:
        return "not a regular file (socket or device without a reader)"
    name = errno.errorcode.get(code or 0, "unknown error")
    return f"{error.strerror or 'OS error'} ({name})"


class NotebookFile:
    """An open, checked notebook file, read front to back. Close it (or use ``with``)."""

    def __init__(
        self, name: str, fd: int, size: int, max_bytes: int, opened: os.stat_result | None = None
    ) -> None:
        self.name = name
        self.size = size  # at open (fstat); the file may still grow or shrink
        self.bytes_read = 0
        self.opened = opened if opened is not None else os.fstat(fd)  # fstat at open
        self._fd: int | None = fd
        self._max_bytes = max_bytes
        self._sha256 = _Sha256()  # of the bytes read since the first byte

    def read(self, size: int) -> bytes:
        """Up to ``size`` more bytes; ``b""`` at EOF. Raises if the file grows past the cap."""
        if self._fd is None:
            raise ValueError("read from a closed NotebookFile")
        want = max(min(size, self._max_bytes + 1 - self.bytes_read), 1)
        try:
            chunk = os.read(self._fd, want)
        except OSError as e:
            raise NotebookLoadError(f"{self.name}: {_os_reason(e, self.name)}") from None
        self.bytes_read += len(chunk)
        self._sha256.update(chunk)
        if self.bytes_read > self._max_bytes:
            raise NotebookLoadError(
                f"{self.name}: file grew past the limit of {self._max_bytes} bytes"
            )
        return chunk

    def read_all(self) -> bytes:
        """The rest of the file."""
        chunks: list[bytes] = []
        while chunk := self.read(_WHOLE_CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)

    def reread(self) -> bytes:
        """The whole file again, from its first byte (same open file, so the same inode)."""
        if self._fd is None:
            raise ValueError("read from a closed NotebookFile")
        try:
            os.lseek(self._fd, 0, os.SEEK_SET)
        except OSError as e:
            raise NotebookLoadError(f"{self.name}: {_os_reason(e, self.name)}") from None
        self.bytes_read = 0
        self._sha256 = _Sha256()
        return self.read_all()

    def identity(self) -> FileIdentity:
        """The file as opened (``fstat``) and the SHA-256 of the bytes read; once at EOF, what was
        loaded. A file changed in place while it was read has a newer mtime than the one kept
        here, so a later check hashes it and tells the difference."""
        return FileIdentity.of(self.opened, self._sha256.hexdigest())

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> NotebookFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_notebook_file(
    path: str | os.PathLike[str], *, max_bytes: int = MAX_NOTEBOOK_BYTES
) -> NotebookFile:
    """Open a notebook file for reading, checked before any byte is read.

    Symbolic links to regular files are followed. The file is opened non-blocking so a FIFO cannot
    hang the caller; it is rejected after ``fstat`` like every other non-regular file.
    """
    name = os.fspath(path)
    if not os.path.isabs(name):
        raise NotebookLoadError(f"{name!r}: the notebook path must be absolute")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise NotebookLoadError(f"{name}: {_os_reason(e, name)}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise NotebookLoadError(f"{name}: is a directory")
        if not stat.S_ISREG(info.st_mode):
            kind = next((label for test, label in _FILE_KINDS if test(info.st_mode)), "special")
            raise NotebookLoadError(f"{name}: not a regular file ({kind})")
        if info.st_size > max_bytes:
            raise NotebookLoadError(
                f"{name}: file is {info.st_size} bytes, over the limit of {max_bytes}"
            )
    except OSError as e:
        os.close(fd)
        raise NotebookLoadError(f"{name}: {_os_reason(e, name)}") from None
    except BaseException:
        os.close(fd)
        raise
    return NotebookFile(name, fd, info.st_size, max_bytes, info)


def read_notebook_file(
    path: str | os.PathLike[str], *, max_bytes: int = MAX_NOTEBOOK_BYTES
) -> bytes:
    """The bytes of a notebook file (see :func:`open_notebook_file`), read to EOF."""
    with open_notebook_file(path, max_bytes=max_bytes) as file:
        return file.read_all()
