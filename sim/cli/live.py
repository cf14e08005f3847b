"""Live progress on stderr, drawn with ``rich`` on a terminal and plain (or silent) elsewhere.

* On a terminal: a spinner with the latest message (:class:`Progress`), or, for ``open``, a
  spinner and cell count that becomes a bar once the server says how many cells are coming
  (:class:`CellProgress`), then a phase line (``fetching outputs…``). Both vanish when done, so
  the summary starts on its own line.
* Elsewhere (a CI log, a pipe): never an escape code. Long commands (``scale``, ``gate``) print a
  heartbeat line every :data:`HEARTBEAT_S` seconds, ``nbstream scale: <message> (42 s)``; the
  others print nothing.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as RichProgress
from rich.status import Status

__all__ = ["HEARTBEAT_S", "CellProgress", "Progress"]

HEARTBEAT_S = 10.0


class Progress:
    """``progress(message)`` as a run goes; ``done()`` at the end.

    ``heartbeat``: off a terminal, print ``<label>: <message> (<elapsed> s)`` every
    :data:`HEARTBEAT_S` seconds (for commands that run for minutes)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        label: str = "nbstream",
        heartbeat: bool = False,
        force_terminal: bool | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        tty = self.stream.isatty() if force_terminal is None else force_terminal
        self.label = label
        self.heartbeat = heartbeat and not tty
        self._t0 = time.monotonic()
        self._next_beat = self._t0 + HEARTBEAT_S
        self._status: Status | None = None
        if tty:
            console = Console(file=self.stream, force_terminal=True, stderr=True)
            self._status = console.status("", spinner="dots")
            self._status.start()

    def __call__(self, message: str) -> None:
        if self._status is not None:
            self._status.update(message)
            return
        now = time.monotonic()
        if self.heartbeat and now >= self._next_beat:
            self._next_beat = now + HEARTBEAT_S
            self.stream.write(f"{self.label}: {message} ({now - self._t0:.0f} s)\n")
            self.stream.flush()

    def done(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


class CellProgress:
    """``open``'s display: cells received, against the total once the server has sent it."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        out = stream if stream is not None else sys.stderr
        self.enabled = out.isatty() if enabled is None else enabled
        self._bar: RichProgress | None = None
        if self.enabled:
            self._bar = RichProgress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(file=out, force_terminal=True, stderr=True),
                transient=True,
            )
            self._task = self._bar.add_task("cells", total=None)
            self._bar.start()

    def update(self, cells: int, total: int | None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=cells, total=total)

    def phase(self, description: str, total: int | None = None) -> None:
        """A new phase (``fetching outputs``): the line restarts with its own count."""
        if self._bar is not None:
            self._bar.update(self._task, description=description, completed=0, total=total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
