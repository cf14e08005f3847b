"""A streaming ``.ipynb`` reader: bytes in, cell records out, no I/O (h11's shape).

:class:`NotebookScanner` is fed the file in chunks of any size and hands out each cell as soon as
the bytes of that cell are in, so a load can insert cell 0 after reading only what it needs. It
scans the top-level object and the ``cells`` array itself (whitespace, ``,``, ``:``, keys) and
gives every value to jiter, with the options and checks of :func:`core.ipynb.parse_notebook`, so a
value means exactly what it means there. Keys may come in any order.

**Where a value ends.** nbformat writes ``indent=1`` JSON: a cell opened on a line indented by
``"  "`` closes at the first ``"\\n  }"`` (JSON strings never hold a raw newline, and deeper
brackets are indented further). That position is only a guess — jiter parses the slice, and a
complete JSON value is never a proper prefix of another, so a slice that parses is exactly the
value. When the guess is absent or wrong (minified or hand-written JSON), jiter parses a window
that starts at the value: "trailing characters at line L column C" gives the end (columns count
bytes), "EOF while parsing" means the window was too short, and it doubles.

**Exactness.** The scanner never reports an error of its own. Anything it cannot stream *exactly
as the whole-file parse would read it* — invalid JSON, a cell or header field that does not
check, nbformat 3, a second ``cells`` key (the last one wins), ``cells`` that is not an array, a
generated id that a later cell claims explicitly — ends the stream with :class:`Unstreamable`.
The caller then parses the whole file with :func:`~core.ipynb.parse_notebook`, which raises the
precise error, or returns the answer the stream could not give in order. The stream is an
optimisation of the whole-file parse, never a second definition of a notebook.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import jiter

from core.errors import NotebookLoadError
from core.ipynb import (
    MAX_NESTING_DEPTH,
    CellRecord,
    IdAssigner,
    ParsedNotebook,
    cell_fields,
    check_header,
    parse_notebook,
)
from core.json_values import check_tree

__all__ = [
    "NEED_DATA",
    "Cell",
    "Finished",
    "NotebookScanner",
    "Unstreamable",
    "parse_notebook_chunks",
]


@dataclass(frozen=True, slots=True)
class Cell:
    """The next cell, in file order, its id settled."""

    record: CellRecord


@dataclass(frozen=True, slots=True)
class Finished:
    """The notebook is complete: its header (``cells`` empty) and how many cells were sent."""

    notebook: ParsedNotebook
    cells: int


@dataclass(frozen=True, slots=True)
class Unstreamable:
    """The stream stops here: parse the whole file instead (``reason`` is for logs, not users)."""

    reason: str


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()
Event = Cell | Finished | Unstreamable | _NeedData

_BOM = b"\xef\xbb\xbf"
_NOT_WS = re.compile(rb"[^ \t\n\r]")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_TRAILING = re.compile(r"^trailing characters at line (\d+) column (\d+)$")
_MAX_KEY_BYTES = 1 << 20
_FIRST_WINDOW = 64 * 1024
_FAST_PATH_ONLY = 1 << 20
_UNSET: Final = object()  # with an indentation guess pending, no window parse below this size

# States of the top-level scan.
_START, _OPEN, _KEY, _KEY_OR_CLOSE, _COLON, _VALUE, _AFTER_VALUE = range(7)
_CELL_OR_CLOSE, _CELL, _AFTER_CELL, _TRAILER, _DONE = range(7, 12)


class _Stop(Exception):
    """Internal: the stream cannot go on exactly (becomes :class:`Unstreamable`)."""


class _More(Exception):
    """Internal: the current token or value needs more bytes."""


class NotebookScanner:
    """Feed bytes with :meth:`feed` (then :meth:`end`); read events with :meth:`next_event`."""

    def __init__(self, *, max_depth: int = MAX_NESTING_DEPTH) -> None:
        self._max_depth = max_depth
        self._buf = bytearray()
        self._pos = 0  # next unread byte of _buf (bytes before it are dropped between values)
        self._eof = False
        self._state = _START
        self._final: Event | None = None  # Finished or Unstreamable, once reached
        self._indent: bytes | None = None  # leading whitespace of the current line, if known
        self._in_space = False  # the last _peek stopped inside whitespace at the buffer's end
        self._key = ""
        self._top: dict[str, Any] = {}
        self._cells_seen = False
        self._count = 0
        self._ids = IdAssigner()
        # The value being extracted (reset by _consume).
        self._search_from = 0
        self._fast = True
        self._window = _FIRST_WINDOW
        self._last_size = 0

    # ------------------------------------------------------------------ input
    def feed(self, data: bytes) -> None:
        """The next bytes of the file."""
        if self._eof:
            raise RuntimeError("feed() after end()")
        self._buf += data

    def end(self) -> None:
        """The file has no more bytes."""
        self._eof = True

    @property
    def buffered(self) -> int:
        """Bytes held, not yet handed out as values (the read-ahead)."""
        return len(self._buf) - self._pos

    # ------------------------------------------------------------------ output
    def next_event(self) -> Event:
        """The next :class:`Cell`, :data:`NEED_DATA`, or the final event (repeated once reached)."""
        if self._final is not None:
            return self._final
        try:
            while True:
                event = self._step()
                if event is not None:
                    if isinstance(event, Finished):
                        self._final = event
                    return event
        except _More:
            if self._eof:
                return self._stop("the file ends inside the notebook")
            return NEED_DATA
        except _Stop as stop:
            return self._stop(str(stop))

    def _stop(self, reason: str) -> Unstreamable:
        final = Unstreamable(reason)
        self._final = final
        self._buf = bytearray()
        return final

    # ------------------------------------------------------------------ the scan
    def _step(self) -> Event | None:
        state = self._state
        if state == _START:
            if len(self._buf) < len(_BOM) and not self._eof:
                raise _More
            if self._buf.startswith(_BOM):
                self._pos = len(_BOM)
            self._expect(b"{")
            self._state = _KEY_OR_CLOSE
        elif state in (_KEY_OR_CLOSE, _KEY):
            char = self._peek()
            if char == b"}" and state == _KEY_OR_CLOSE:
                self._advance(1)
                self._state = _TRAILER
            else:
                self._key = self._read_key()
                self._state = _COLON
        elif state == _COLON:
            self._expect(b":", keep_indent=True)
            self._state = _VALUE
        elif state == _VALUE:
            if self._key == "cells" and self._cells_seen:
                raise _Stop("a second 'cells' key")
            if self._key == "cells" and self._peek() == b"[":
                self._advance(1)
                self._cells_seen = True
                self._state = _CELL_OR_CLOSE
            else:
                self._top[self._key] = self._value(self._max_depth - 1)
                self._state = _AFTER_VALUE
        elif state in (_AFTER_VALUE, _AFTER_CELL):
            char = self._peek()
            closer = b"}" if state == _AFTER_VALUE else b"]"
            if char == b",":
                self._advance(1)
                self._state = _KEY if state == _AFTER_VALUE else _CELL
            elif char == closer:
                self._advance(1)
                self._state = _TRAILER if state == _AFTER_VALUE else _AFTER_VALUE
            else:
                raise _Stop(f"expected ',' or {closer.decode()}")
        elif state == _CELL_OR_CLOSE and self._peek() == b"]":
            self._advance(1)
            self._state = _AFTER_VALUE
        elif state in (_CELL_OR_CLOSE, _CELL):
            cell = self._value(self._max_depth - 2)
            self._state = _AFTER_CELL
            return Cell(self._record(cell))
        elif state == _TRAILER:
            match = _NOT_WS.search(self._buf, self._pos)
            if match is not None:
                raise _Stop("bytes after the top-level object")
            self._pos = len(self._buf)
            if not self._eof:
                raise _More
            self._state = _DONE
            return self._finished()
        else:  # pragma: no cover - _DONE is final
            raise AssertionError(state)
        return None

    def _peek(self) -> bytes:
        """The next non-whitespace byte, not consumed; the whitespace before it is.

        The whitespace tells the indentation of the line the next token starts (``_indent``):
        a run with a newline sets it, tokens other than a key and its colon clear it.
        """
        buf, pos = self._buf, self._pos
        match = _NOT_WS.search(buf, pos)
        end = len(buf) if match is None else match.start()
        if end > pos:
            newline = buf.rfind(b"\n", pos, end)
            if newline >= 0:
                self._indent = bytes(buf[newline + 1 : end])
            elif self._in_space and self._indent is not None:
                self._indent += bytes(buf[pos:end])
            else:
                self._indent = None if self._state != _VALUE else self._indent
            if end > _FIRST_WINDOW:  # a long run of whitespace is not kept
                del buf[:end]
                end = 0
        self._pos = end
        self._in_space = match is None
        if match is None:
            raise _More
        return bytes(buf[end : end + 1])

    def _advance(self, n: int, *, keep_indent: bool = False) -> None:
        self._pos += n
        if not keep_indent:
            self._indent = None

    def _expect(self, token: bytes, *, keep_indent: bool = False) -> None:
        if self._peek() != token:
            raise _Stop(f"expected {token.decode()}")
        self._advance(1, keep_indent=keep_indent)

    def _read_key(self) -> str:
        if self._peek() != b'"':
            raise _Stop("expected a key")
        match = _STRING.match(self._buf, self._pos)
        if match is None:
            if len(self._buf) - self._pos > _MAX_KEY_BYTES:
                raise _Stop("a key over 1 MiB")
            raise _More
        key = self._parse(self._pos, match.end())
        if type(key) is not str:  # pragma: no cover - a JSON string parses to str
            raise _Stop("a key that is not a string")
        self._consume(match.end(), keep_indent=True)
        return key

    # ------------------------------------------------------------------ values
    def _value(self, depth_budget: int) -> Any:
        """The JSON value starting at the next byte (``depth_budget`` levels allowed in it)."""
        self._peek()
        start = self._pos
        end, value = self._value_end(start)
        if value is _UNSET:
            value = self._parse(start, end)
        if check_tree(value, depth_budget) is not None:
            raise _Stop("too deep, or a number that overflows")
        self._last_size = end - start
        self._consume(end)
        return value

    def _value_end(self, start: int) -> tuple[int, Any]:
        """Where the value at ``start`` ends, and the value if finding the end parsed it."""
        buf = self._buf
        opener = buf[start]
        if self._fast and self._indent is not None and opener in b"{[":
            pattern = b"\n" + self._indent + (b"}" if opener == 0x7B else b"]")
            at = buf.find(pattern, max(self._search_from, start))
            if at >= 0:
                end = at + len(pattern)
                try:
                    return end, self._jiter(start, end)
                except ValueError:
                    self._fast = False  # odd formatting: the window parse decides
            else:
                self._search_from = max(len(buf) - len(pattern) + 1, start)
                if not self._eof and len(buf) - start < _FAST_PATH_ONLY:
                    raise _More
        return self._window_end(start)

    def _window_end(self, start: int) -> tuple[int, Any]:
        available = len(self._buf) - start
        while True:
            window = max(self._window, 2 * self._last_size)
            if window >= available:
                if not self._eof:
                    raise _More
                window = available
            try:
                value = self._jiter(start, start + window)
            except ValueError as error:
                text = str(error)
                match = _TRAILING.match(text)
                if match is not None:
                    line, column = int(match.group(1)), int(match.group(2))
                    return _line_start(self._buf, start, line) + column - 1, _UNSET
                if window == available or not text.startswith("EOF while parsing"):
                    raise _Stop(f"invalid JSON: {text}") from None
            else:
                if window == available:  # at the end of the file: the value is all of it
                    return start + window, value
            self._window = 2 * window  # too short (a number may go on): double and retry

    def _jiter(self, start: int, end: int) -> Any:
        return jiter.from_json(bytes(self._buf[start:end]), allow_inf_nan=False, cache_mode="keys")

    def _parse(self, start: int, end: int) -> Any:
        try:
            return self._jiter(start, end)
        except ValueError as error:
            raise _Stop(f"invalid JSON: {error}") from None

    def _consume(self, end: int, *, keep_indent: bool = False) -> None:
        """Drop everything before ``end`` (the token just read) and reset the value search."""
        del self._buf[:end]  # O(1) amortised from the front of a bytearray
        self._pos = 0
        self._search_from = 0
        self._fast = True
        self._window = _FIRST_WINDOW
        if not keep_indent:
            self._indent = None

    # ------------------------------------------------------------------ meaning
    def _record(self, cell: Any) -> CellRecord:
        index = self._count
        try:
            fields = cell_fields(f"cells[{index}]", cell)
        except NotebookLoadError as error:
            raise _Stop(str(error)) from None
        if fields.id is not None and self._ids.clashes(fields.id):
            raise _Stop(f"cells[{index}] claims an id generated for an earlier cell")
        self._count += 1
        return self._ids.record(index, fields)

    def _finished(self) -> Finished:
        if "cells" in self._top:
            raise _Stop("'cells' is not an array")
        try:
            header = check_header(self._top)
        except NotebookLoadError as error:
            raise _Stop(str(error)) from None
        if header.nbformat != 4:
            raise _Stop(f"nbformat {header.nbformat}: read whole and upgraded")
        notebook = ParsedNotebook(
            cells=(),
            metadata=header.metadata,
            nbformat=header.nbformat,
            nbformat_minor=header.nbformat_minor,
            generated_ids=self._ids.generated,
            repaired_ids=self._ids.repaired,
            notes=header.notes,
            extra=header.extra,
        )
        return Finished(notebook, self._count)


def _line_start(buf: bytearray, start: int, line: int) -> int:
    """Offset in ``buf`` of line ``line`` (1-based) counted from ``start``."""
    pos = start
    for _ in range(line - 1):
        pos = buf.index(b"\n", pos) + 1
    return pos


def parse_notebook_chunks(
    chunks: Iterable[bytes], *, max_depth: int = MAX_NESTING_DEPTH
) -> ParsedNotebook:
    """:func:`~core.ipynb.parse_notebook` through the scanner (the reference for its tests).

    Equal to ``parse_notebook(b"".join(chunks))`` — same cells, same error — whatever the chunking.
    """
    scanner = NotebookScanner(max_depth=max_depth)
    kept: list[bytes] = []
    cells: list[CellRecord] = []
    source = iter(chunks)
    while True:
        event = scanner.next_event()
        if isinstance(event, Cell):
            cells.append(event.record)
        elif isinstance(event, _NeedData):
            chunk = next(source, None)
            if chunk is None:
                scanner.end()
            else:
                kept.append(chunk)
                scanner.feed(chunk)
        elif isinstance(event, Finished):
            header = event.notebook
            return ParsedNotebook(
                tuple(cells),
                header.metadata,
                header.nbformat,
                header.nbformat_minor,
                header.generated_ids,
                header.repaired_ids,
                header.notes,
                header.extra,
            )
        else:
            kept.extend(source)
            return parse_notebook(b"".join(kept), max_depth=max_depth)
