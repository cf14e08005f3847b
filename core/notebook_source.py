"""The cells of one notebook file, batch by batch, read and parsed only as far as each batch needs.

:class:`NotebookSource` joins :class:`~core.notebook_file.NotebookFile` (the bytes) and
:class:`~core.ipynb_stream.NotebookScanner` (the cells). Read-ahead is bounded: one ``chunk_size``
read at a time, and only when the scanner has no complete cell buffered, so the first batch goes
out after reading the bytes of its cells (plus at most one chunk), whatever the file's size.

When the scanner cannot stream a file exactly (see :mod:`core.ipynb_stream`), the source reads the
same open file again from its start and parses it whole with :func:`~core.ipynb.parse_notebook`:
an invalid notebook raises that function's precise :class:`~core.errors.NotebookLoadError`; a
valid one is served from its first cell with ``restart=True`` on the batch, telling the loader to
drop the cells it inserted from the stream. That path holds the whole file in memory, as every
load did before; the corpus meets it only for nbformat 3 notebooks.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from core.file_identity import FileIdentity
from core.ipynb import (
    MAX_NESTING_DEPTH,
    MAX_NOTEBOOK_BYTES,
    CellRecord,
    ParsedNotebook,
    parse_notebook,
)
from core.ipynb_stream import NEED_DATA, Cell, Finished, NotebookScanner
from core.notebook_file import NotebookFile, open_notebook_file

__all__ = ["CHUNK_SIZE", "NotebookSource", "SourceBatch"]

CHUNK_SIZE = 256 * 1024
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class SourceBatch:
    """Up to the requested number of cells; ``restart``: discard every cell served before."""

    records: tuple[CellRecord, ...]
    restart: bool = False


class NotebookSource:
    """:meth:`open` it (blocking), :meth:`take` until :attr:`finished`, then :meth:`close` it."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = MAX_NOTEBOOK_BYTES,
        max_depth: int = MAX_NESTING_DEPTH,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self._path = path
        self._max_bytes = max_bytes
        self._max_depth = max_depth
        self._chunk_size = chunk_size
        self._file: NotebookFile | None = None
        self._scanner = NotebookScanner(max_depth=max_depth)
        self._whole: tuple[CellRecord, ...] | None = None  # the fallback's cells
        self._served = 0  # cells handed out since the last restart
        self._restart = False  # the next batch starts over (the fallback replaced the stream)
        self._guard = threading.Lock()  # open/take may run in a worker thread while close() runs
        self._busy = False
        self._closed = False
        self.header: ParsedNotebook | None = None  # once finished (cells empty unless whole)
        self.total_cells: int | None = None  # once known
        self.finished = False
        self.streamed = True  # False once the whole-file fallback ran
        self.read_s = 0.0
        self.parse_s = 0.0

    @property
    def file_bytes(self) -> int:
        return 0 if self._file is None else self._file.bytes_read

    def identity(self) -> FileIdentity | None:
        """What was loaded (the file as opened, the hash of every byte read), once finished."""
        if not self.finished or self._file is None:
            return None
        return self._file.identity()

    @property
    def buffered(self) -> int:
        """Bytes read but not yet turned into cells (the read-ahead)."""
        return self._scanner.buffered

    def open(self) -> None:
        """Check and open the file (blocking; raises NotebookLoadError)."""

        def opening() -> None:
            t0 = time.perf_counter()
            self._file = open_notebook_file(self._path, max_bytes=self._max_bytes)
            self.read_s += time.perf_counter() - t0

        self._exclusive(opening)

    def close(self) -> None:
        """Close the file now, or as soon as a call running in a worker thread returns."""
        with self._guard:
            self._closed = True
            if not self._busy and self._file is not None:
                self._file.close()

    def _exclusive(self, work: Callable[[], _T]) -> _T:
        with self._guard:
            if self._closed:
                raise RuntimeError("NotebookSource used after close()")
            self._busy = True
        try:
            return work()
        finally:
            with self._guard:
                self._busy = False
                if self._closed and self._file is not None:
                    self._file.close()

    def take(self, n: int, *, may_reparse: bool = True) -> SourceBatch | None:
        """The next up-to-``n`` cells (fewer only at the end), reading as far as they need.

        With ``may_reparse=False`` it returns ``None`` instead of reading and parsing the whole
        file (call again with it true, off the event loop; the cells parsed meanwhile are not
        lost: the whole file serves them again). Raises NotebookLoadError for an unreadable or
        invalid notebook.
        """
        return self._exclusive(lambda: self._take(n, may_reparse))

    def _take(self, n: int, may_reparse: bool) -> SourceBatch | None:
        if self._whole is not None:
            return self._from_whole(n)
        t0 = time.perf_counter()
        read_s = 0.0
        records: list[CellRecord] = []
        try:
            while len(records) < n and not self.finished:
                event = self._scanner.next_event()
                if isinstance(event, Cell):
                    records.append(event.record)
                elif event is NEED_DATA:
                    t1 = time.perf_counter()
                    chunk = self._opened().read(self._chunk_size)
                    read_s += time.perf_counter() - t1
                    if chunk:
                        self._scanner.feed(chunk)
                    else:
                        self._scanner.end()
                elif isinstance(event, Finished):
                    self.header, self.total_cells = event.notebook, event.cells
                    self.finished = True
                elif not may_reparse:  # Unstreamable: the caller moves to a thread first
                    return None
                else:  # Unstreamable
                    read_s += self._read_whole()
                    return self._from_whole(n)
        finally:
            self.read_s += read_s
            self.parse_s += time.perf_counter() - t0 - read_s
        self._served += len(records)
        return SourceBatch(tuple(records))

    def _opened(self) -> NotebookFile:
        if self._file is None:
            raise RuntimeError("NotebookSource.take() before open()")
        return self._file

    def _read_whole(self) -> float:
        """Parse the whole file instead of the stream; the seconds spent reading it."""
        t0 = time.perf_counter()
        data = self._opened().reread()
        read_s = time.perf_counter() - t0
        self._scanner = NotebookScanner(max_depth=self._max_depth)  # drops its buffer
        parsed = parse_notebook(data, max_bytes=self._max_bytes, max_depth=self._max_depth)
        del data
        self._whole = parsed.cells
        self.header, self.total_cells = parsed, len(parsed.cells)
        self.streamed = False
        self._restart = self._served > 0
        self._served = 0
        return read_s

    def _from_whole(self, n: int) -> SourceBatch:
        assert self._whole is not None
        records = self._whole[self._served : self._served + n]
        self._served += len(records)
        self.finished = self._served >= len(self._whole)
        restart, self._restart = self._restart, False
        return SourceBatch(records, restart)
