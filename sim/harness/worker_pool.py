"""The parent's side of ``nbstream sim --workers N``: worker processes and their pipes.

Each worker is ``python -m sim.harness.worker_proc`` (:mod:`sim.harness.worker_proc` has the
JSON-lines protocol). Every request is bounded: a worker that exits, or does not answer in
``timeout`` seconds, raises :class:`WorkerFailed` naming the worker, its exit code and the last
lines it wrote on stderr, never a hang.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["WorkerFailed", "WorkerHandle", "WorkerPool"]

STDERR_LINES = 5
PIPE_LIMIT = 1 << 26  # replies carry every peer's row: a few MiB for 1000 peers


class WorkerFailed(RuntimeError):
    """A worker process died, answered with an error, or did not answer in time."""


class WorkerHandle:
    """One worker process: send it a request, await its reply."""

    def __init__(self, index: int, process: asyncio.subprocess.Process, timeout: float) -> None:
        self.index = index
        self.process = process
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._drain = asyncio.ensure_future(self._read_stderr())

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _read_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        while line := await stream.readline():
            self._stderr.append(line.decode(errors="replace").rstrip())

    def _failure(self, what: str) -> WorkerFailed:
        tail = " | ".join(x for x in self._stderr if x)
        return WorkerFailed(
            f"worker {self.index} (pid {self.pid}) {what}" + (f": {tail}" if tail else "")
        )

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send ``op`` and return the reply's fields; :class:`WorkerFailed` on any failure."""
        async with self._lock:
            stdin, stdout = self.process.stdin, self.process.stdout
            assert stdin is not None and stdout is not None
            rid = next(self._ids)
            try:
                stdin.write(json.dumps({"id": rid, "op": op, **fields}).encode() + b"\n")
                await asyncio.wait_for(stdin.drain(), self.timeout)
                line = await asyncio.wait_for(stdout.readline(), self.timeout)
            except asyncio.TimeoutError:
                raise self._failure(f"did not answer {op!r} in {self.timeout:g} s") from None
            except (BrokenPipeError, ConnectionResetError):
                line = b""
            if not line:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.process.wait(), 5.0)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._drain), 1.0)
                raise self._failure(f"exited with code {self.process.returncode} during {op!r}")
            reply: dict[str, Any] = json.loads(line)
            if reply.get("id") != rid:
                raise self._failure(f"answered request {reply.get('id')} to {rid}")
            if not reply.get("ok"):
                raise self._failure(f"failed {op!r}: {reply.get('error')}")
            return reply

    async def stop(self) -> None:
        """Ask the worker to exit; kill it if it does not within a few seconds."""
        if self.process.returncode is None:
            with contextlib.suppress(WorkerFailed):
                await asyncio.wait_for(self.request("exit"), 10.0)
            try:
                await asyncio.wait_for(self.process.wait(), 5.0)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._drain.cancel()
        await asyncio.gather(self._drain, return_exceptions=True)


class WorkerPool:
    """``count`` worker processes whose peers connect to ``socket`` and open ``notebook``."""

    def __init__(self, count: int, socket: Path, notebook: Path, timeout: float) -> None:
        self.count = count
        self.socket = socket
        self.notebook = notebook
        self.timeout = timeout
        self.workers: list[WorkerHandle] = []

    async def start(self) -> None:
        for index in range(self.count):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sim.harness.worker_proc",
                str(self.socket),
                str(self.notebook),
                repr(self.timeout),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=PIPE_LIMIT,
            )
            self.workers.append(WorkerHandle(index, process, self.timeout))

    async def each(
        self, requests: Sequence[tuple[str, dict[str, Any]] | None]
    ) -> list[dict[str, Any]]:
        """Send ``requests[i]`` to worker ``i`` (None: nothing) at once; their replies."""
        sent = [(w, r) for w, r in zip(self.workers, requests, strict=True) if r is not None]
        results = await asyncio.gather(
            *(w.request(op, **fields) for w, (op, fields) in sent), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [r for r in results if not isinstance(r, BaseException)]

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
