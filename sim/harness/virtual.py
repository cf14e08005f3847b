"""``--clock virtual``: run a scenario on an event loop with virtual time, as a function of its
seed.

Three things make a run of the bundled daemon over memory streams differ from the next one with
the same seed, and this module removes each for the duration of :func:`run`:

* **time**: the loop is `looptime <https://pypi.org/project/looptime/>`_'s (``loop.time()`` is
  virtual and jumps to the next timer when nothing is ready), so the session's
  ``REPLY_WAIT_S`` timer, every timeout and the typists' pace fire at the same point of the
  schedule every run;
* **threads**: ``asyncio.to_thread`` (the loader's file reads and blob writes, the daemon's
  saves) runs its function inline on the loop, so no worker thread's completion is delivered at a
  moment the scheduler does not control;
* **actors**: every new Automerge document gets an actor id drawn from
  ``random.Random(f"actors:{seed}")`` instead of the operating system's random bytes; the
  actor ids order the columns of every change and sync message, so they set frame sizes.

``time.perf_counter()`` is not virtual: the latencies a result reports are still wall-clock
measurements of the work done (with no waiting in them), and the trace never holds a time.
Only the ``memory`` transport can run here (kernel sockets deliver when the kernel does).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Literal, TypeVar

from automerge import core as am

__all__ = ["Clock", "deterministic", "run"]

Clock = Literal["real", "virtual"]
_T = TypeVar("_T")


async def _inline(func: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    return func(*args, **kwargs)


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seeded Automerge actor ids and inline ``asyncio.to_thread`` while the block runs."""
    rng = random.Random(f"actors:{seed}")
    original = am.Document

    class SeededDocument:
        load = staticmethod(original.load)

        def __new__(cls, actor: bytes | None = None) -> Any:
            return original(actor if actor is not None else rng.randbytes(16))

    to_thread = asyncio.to_thread
    am.Document = SeededDocument  # type: ignore[misc,assignment]
    asyncio.to_thread = _inline
    try:
        yield
    finally:
        am.Document = original  # type: ignore[misc]
        asyncio.to_thread = to_thread


def run(main: Coroutine[Any, Any, _T], *, clock: Clock = "real", seed: int = 0) -> _T:
    """``asyncio.run(main)``, or with ``clock="virtual"`` the same on a virtual-time loop with
    the seeded, thread-free environment of :func:`deterministic`."""
    if clock == "real":
        return asyncio.run(main)
    import looptime

    loop = looptime.new_event_loop()
    try:
        with deterministic(seed):
            return loop.run_until_complete(main)
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
