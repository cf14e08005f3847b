"""Targets the harness did not build: any server that speaks PROTOCOL.md on a Unix socket.

:class:`SocketTarget` drives a server that is already running (``--connect SOCKET``);
:class:`CommandTarget` starts the user's own server from a command line with ``{socket}`` in it
(``--target-cmd``), waits until it listens, and stops it afterwards. Neither reaches into the
server: peers connect as clients do, joins follow the load-status progress the server sends, and
the server's own phase figures come from the optional ``statistics`` request (PROTOCOL.md 6.7),
asked on a connection of its own once the run is measured. A server that does not implement it
closes that connection (``bad_message``): its figures are then absent, never guessed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from core import protocol as p
from core.client import NotebookClient
from core.errors import CoreError
from core.loader import LoadReport
from sim.harness.target import ServerFigures
from sim.net.connect import StreamPair, Transport
from sim.net.streams import StreamHooks

__all__ = ["CommandTarget", "SocketTarget", "TargetError", "fresh_copy"]

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
STATISTICS_TIMEOUT_S = 30.0
_POLL_S = 0.02  # how often a starting server's socket is tried


class TargetError(CoreError):
    """The server under test cannot be reached, started or stopped."""


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


class SocketTarget:
    """A server already listening on ``socket`` (``nbstream sim --connect SOCKET``)."""

    def __init__(self, socket: str | os.PathLike[str]) -> None:
        self.socket = Path(socket)

    @property
    def transport(self) -> Transport:
        return "unix"

    @property
    def description(self) -> str:
        return f"server on {self.socket}"

    async def start(self) -> None:
        """Check that the server accepts a connection (one line of error if not)."""
        try:
            _, writer = await asyncio.open_unix_connection(str(self.socket))
        except OSError as exc:
            raise TargetError(f"cannot connect to {self.socket}: {_describe(exc)}") from None
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def connect(
        self, buffer: int | None = None, *, hooks_to_client: StreamHooks | None = None
    ) -> StreamPair:
        if hooks_to_client is not None:
            raise ValueError("fault hooks need the in-memory transport of the bundled daemon")
        reader, writer = await asyncio.open_unix_connection(str(self.socket))
        return reader, writer

    def figures(self) -> ServerFigures | None:
        return None  # only what server_figures() asked for, after the run

    async def server_figures(self, notebook: Path) -> ServerFigures | None:
        """Ask the server for ``notebook``'s latest load (None: it reports no figures)."""
        try:
            client = await asyncio.wait_for(
                NotebookClient.connect(self.socket, notebook, name="statistics"),
                STATISTICS_TIMEOUT_S,
            )
        except (OSError, CoreError, asyncio.TimeoutError):
            return None
        try:
            response = await asyncio.wait_for(
                client.request(p.Statistics(client.next_id())), STATISTICS_TIMEOUT_S
            )
        except (OSError, CoreError, asyncio.TimeoutError):
            return None  # e.g. closed with bad_message: the request is optional
        finally:
            await client.close()
        if not isinstance(response, p.StatisticsResponse):
            return None
        loads = () if response.load is None else (_report(str(notebook), response.load),)
        return ServerFigures(
            load_reports=loads, sync_gen_s=response.sync_gen_s, send_s=response.send_s
        )

    async def stop(self) -> None:
        return None  # not ours to stop

    async def __aenter__(self) -> SocketTarget:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class CommandTarget(SocketTarget):
    """The user's server, started from ``command`` with ``{socket}`` replaced by a fresh path.

    ``command`` is split like a shell would (:func:`shlex.split`) and run without a shell; its
    output goes to ``server.log`` beside the socket (the last lines are quoted in errors).
    """

    def __init__(self, command: str, *, start_timeout: float = START_TIMEOUT_S) -> None:
        argv = shlex.split(command)
        if not argv or not any("{socket}" in arg for arg in argv):
            raise TargetError(f"--target-cmd must contain {{socket}}: {command!r}")
        self._tmp = tempfile.TemporaryDirectory(prefix="nbstream-target-")
        super().__init__(Path(self._tmp.name) / "server.sock")
        self.command = command
        self.argv = [arg.replace("{socket}", str(self.socket)) for arg in argv]
        self.start_timeout = start_timeout
        self.log_path = Path(self._tmp.name) / "server.log"
        self._process: asyncio.subprocess.Process | None = None

    @property
    def description(self) -> str:
        return f"server started by {self.command!r}"

    @property
    def pid(self) -> int:
        """The started process's id (its descendants are the server's too)."""
        if self._process is None:
            raise TargetError("--target-cmd is not running")
        return self._process.pid

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return f"; its output ends: {' | '.join(lines[-3:])}" if lines else ""

    async def start(self) -> None:
        with self.log_path.open("wb") as log:
            try:
                self._process = await asyncio.create_subprocess_exec(
                    *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
                )
            except OSError as exc:
                raise TargetError(
                    f"cannot run --target-cmd {self.argv[0]!r}: {_describe(exc)}"
                ) from None
        deadline = time.monotonic() + self.start_timeout
        process = self._process
        while True:
            if process.returncode is not None:
                raise TargetError(
                    f"--target-cmd exited with status {process.returncode} before listening on "
                    f"{self.socket}{self._log_tail()}"
                )
            with contextlib.suppress(TargetError):
                await SocketTarget.start(self)
                return
            if time.monotonic() > deadline:
                await self.stop()
                raise TargetError(
                    f"--target-cmd did not listen on {self.socket} within {self.start_timeout:g} s"
                    f"{self._log_tail()}"
                )
            # Polling a condition (the socket accepting), as `nbstream open` users would.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), _POLL_S)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT_S`; the temp directory goes."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        self._tmp.cleanup()


def _report(notebook_id: str, load: p.LoadFigures) -> LoadReport:
    """The ``statistics`` load as the harness's LoadReport (clock readings kept absolute)."""
    return LoadReport(
        notebook_id,
        "server",
        0,
        ok=load.ok,
        error=load.error,
        cells=load.cells,
        total_cells=load.total_cells,
        file_bytes=load.file_bytes,
        read_s=load.read_s,
        parse_s=load.parse_s,
        metadata_s=load.metadata_s,
        total_s=load.total_s,
        started_at=load.started_at,
        finished_at=load.started_at + load.total_s,
        batches=list(load.batches),
    )


@contextlib.contextmanager
def fresh_copy(notebook: Path, tag: str, into: Path | None = None) -> Iterator[Path]:
    """A copy of ``notebook`` beside it (or in the directory ``into``), removed afterwards.

    A server keeps a room open for a while after its last peer leaves (``nbstream serve``: 30 s),
    so reopening the same path measures a sync, not a load. A copy is a new room; beside the
    original, it is inside whatever notebook root the server confines clients to."""
    name = f".nbstream-{tag}-{os.getpid()}-{notebook.name}"
    copy = notebook.with_name(name) if into is None else into / name
    copy.write_bytes(notebook.read_bytes())
    try:
        yield copy.resolve()
    finally:
        with contextlib.suppress(FileNotFoundError):
            copy.unlink()
