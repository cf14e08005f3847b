"""A bounded wait that, when it runs out, says what every pending task was waiting on.

Every wait of a simulated run is bounded, so a run that hangs is a harness bug; when one
happened (twice in CI: the event loop idle in ``select`` until pytest-timeout killed the test),
nothing showed *which* await it was. :func:`bounded` runs a coroutine for at most ``seconds``;
past that it cancels it without waiting for the cancellation (a task that ignores it must not
hang us as well) and raises :class:`HarnessStuck`, whose message lists the stack of every
other pending task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["HarnessStuck", "bounded", "pending_stacks"]

_T = TypeVar("_T")
FRAMES_PER_TASK = 6


class HarnessStuck(RuntimeError):
    """A harness step outlived its bound; the message names what was still pending."""


def pending_stacks(exclude: asyncio.Task[Any] | None = None) -> str:
    """One line per pending task: its name and innermost frames (file:line function)."""
    lines = []
    for task in asyncio.all_tasks():
        if task is exclude or task is asyncio.current_task() or task.done():
            continue
        frames = task.get_stack(limit=FRAMES_PER_TASK)
        where = " < ".join(
            f"{f.f_code.co_filename.rsplit('/', 1)[-1]}:{f.f_lineno} {f.f_code.co_name}"
            for f in reversed(frames)
        )
        lines.append(f"{task.get_name()}: {where or task.get_coro()!r}")
    return "\n".join(sorted(lines))


async def bounded(coro: Coroutine[Any, Any, _T], seconds: float, what: str) -> _T:
    """``await coro``, for at most ``seconds``; else :class:`HarnessStuck` naming ``what``."""
    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if task in done:
        return task.result()
    stacks = pending_stacks()  # before the cancel: where the stuck task itself waits
    task.cancel()
    raise HarnessStuck(f"{what} did not finish within {seconds:g} s; pending tasks:\n{stacks}")
