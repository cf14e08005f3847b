"""The gate's side of its measuring processes: start one per tree, speak JSON lines, stop it.

:mod:`sim.gate.worker` is the process (run as a script against each tree's ``core``); this module
is the parent that drives it, under the gate's ``--budget`` deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from sim.gate import outside as _outside
from sim.gate import worker as _script
from sim.gate.worker import READY_TIMEOUT_S, REPLY_TIMEOUT_S

__all__ = ["BudgetExhausted", "GateError", "Worker", "budget", "workers"]


class GateError(Exception):
    """The gate could not run (exit status 2)."""


class BudgetExhausted(GateError):
    """The gate's ``--budget`` ran out while waiting for a measuring process (exit status 2)."""


# The whole gate's deadline (time.monotonic()), or None: every wait for a worker ends by it.
_deadline: list[float | None] = [None]


@contextlib.contextmanager
def budget(deadline: float | None) -> Iterator[None]:
    """Within this block no wait for a worker lasts past ``deadline`` (``time.monotonic()``):
    the worker is killed and :class:`BudgetExhausted` raised instead."""
    previous = _deadline[0]
    _deadline[0] = deadline
    try:
        yield
    finally:
        _deadline[0] = previous


class Worker:
    """One side's measuring subprocess (this file run as a script), spoken to in JSON lines."""

    def __init__(
        self,
        label: str,
        root: Path,
        *,
        wrapper: Sequence[str] = (),
        target: tuple[str, float] | None = None,
    ) -> None:
        """``wrapper`` is an argv prefix the process runs under (e.g. valgrind's); ``target``
        (``--target-cmd``, ``--target-timeout``) measures the server that command starts in
        ``root`` from outside (:mod:`sim.gate.outside`, on the gate's own tree) instead."""
        self.label = label
        self.root = root
        env = dict(os.environ)
        env["PYTHONPATH"] = str(root)
        script = [os.path.realpath(_script.__file__), "--root", str(root)]
        self.ready_timeout = READY_TIMEOUT_S
        self.outside = target is not None
        if target is not None:
            env["PYTHONPATH"] = str(Path(os.path.realpath(_outside.__file__)).parents[2])
            script = [os.path.realpath(_outside.__file__), "--target-cmd", target[0]]
            script += ["--target-timeout", str(target[1])]
            self.ready_timeout = READY_TIMEOUT_S + target[1]
        env["PYTHONHASHSEED"] = "0"  # same dict/set layout on both sides
        if target is None:
            # One malloc arena: how many arenas a load's threads touch depends on timing, and
            # moved the first load's RSS growth by up to 4.8-6.5 % between two unchanged
            # workers at load 4.7 (3.0-3.6 % with one arena; 16 pairs each, 2026-12-08). The
            # user's server (--target-cmd) keeps its own allocator settings.
            env["MALLOC_ARENA_MAX"] = "1"
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self._buf = b""
        try:
            self.proc = subprocess.Popen(
                [*wrapper, sys.executable, *script],
                cwd=root,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
            )
        except OSError as exc:
            self._stderr.close()
            raise GateError(f"{label}: cannot start the measuring process: {exc}") from exc

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def _fail(self, what: str) -> GateError:
        tail = self._stderr_tail()
        return GateError(f"{self.label}: {what}" + (f" ({tail})" if tail else ""))

    def _crashed(self) -> GateError:
        """The process is gone: killed because the budget ran out (by this or another wait),
        or crashed."""
        code = self.proc.wait()
        gate_deadline = _deadline[0]
        if gate_deadline is not None and time.monotonic() >= gate_deadline:
            return BudgetExhausted(f"{self.label}: the budget ran out")
        return self._fail(f"measuring process crashed (exit status {code})")

    def receive(self, timeout: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        gate_deadline = _deadline[0]
        while b"\n" not in self._buf:
            now = time.monotonic()
            if gate_deadline is not None and now >= gate_deadline:
                self.proc.kill()  # mid-load: it would not read "quit"
                raise BudgetExhausted(f"{self.label}: the budget ran out")
            remaining = deadline - now
            if remaining <= 0:
                raise self._fail(f"no reply from the measuring process within {timeout:.0f} s")
            if gate_deadline is not None:
                remaining = min(remaining, max(gate_deadline - now, 0.0))
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise self._crashed()
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            reply: dict[str, Any] = json.loads(line)
        except ValueError:
            raise self._fail(f"garbled reply from the measuring process: {line[:80]!r}") from None
        return reply

    def wait_ready(self, timeout: float | None = None) -> None:
        reply = self.receive(timeout=self.ready_timeout if timeout is None else timeout)
        if not reply.get("ready"):
            raise GateError(f"{self.label}: cannot be measured: {reply.get('error')}")

    def send(self, message: Mapping[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            raise self._crashed() from None

    def call(self, message: Mapping[str, Any]) -> dict[str, Any]:
        self.send(message)
        return self.check(self.receive())

    def check(self, reply: dict[str, Any]) -> dict[str, Any]:
        if not reply.get("ok"):
            raise GateError(f"{self.label}: load failed: {reply.get('error')}")
        return reply

    def close(self) -> None:
        gate_deadline = _deadline[0]
        if gate_deadline is not None and time.monotonic() >= gate_deadline:
            self.proc.kill()  # the budget ran out: it may be mid-load, not reading "quit"
        with contextlib.suppress(OSError, ValueError, GateError):  # gone already: fine
            self.send({"cmd": "quit"})
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()


@contextlib.contextmanager
def workers(
    *specs: tuple[str, Path],
    wrapper: Sequence[str] = (),
    target: tuple[str, float] | None = None,
) -> Iterator[list[Worker]]:
    """Start one worker per ``(label, root)`` concurrently; always stopped afterwards."""
    started: list[Worker] = []
    try:
        for label, root in specs:
            started.append(Worker(label, root, wrapper=wrapper, target=target))
        for w in started:
            w.wait_ready()
        yield started
    finally:
        for w in started:
            w.close()
