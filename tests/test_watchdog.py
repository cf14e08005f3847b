"""sim.harness.watchdog: a harness step that hangs fails with what was pending, never hangs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sim.harness.collab import run_collab
from sim.harness.target import BundledTarget
from sim.harness.virtual import run
from sim.harness.watchdog import HarnessStuck, bounded
from sim.workload.generator import write_notebook


async def _waits_forever(event: asyncio.Event) -> None:
    await event.wait()


async def _ignores_cancellation() -> None:
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue


def test_a_stuck_step_names_where_it_waits() -> None:
    async def main() -> None:
        with pytest.raises(HarnessStuck) as exc:
            await bounded(_waits_forever(asyncio.Event()), 5, "the step")
        message = str(exc.value)
        assert message.startswith("the step did not finish within 5 s; pending tasks:")
        assert "_waits_forever" in message and "test_watchdog.py" in message
        assert await bounded(asyncio.sleep(0, result=7), 5, "quick") == 7

    run(main(), clock="virtual")


def test_a_step_that_ignores_cancellation_does_not_hang_the_bound() -> None:
    async def main() -> None:
        with pytest.raises(HarnessStuck, match="_ignores_cancellation"):
            await bounded(_ignores_cancellation(), 5, "stubborn")

    run(main(), clock="virtual")


def test_a_run_whose_daemon_never_stops_fails_instead_of_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = tmp_path / "nb.ipynb"
    write_notebook(notebook, cells=6, seed=1)

    stop = BundledTarget.stop

    async def never(self: BundledTarget) -> None:
        await stop(self)  # its resources go, but it never returns
        await asyncio.Event().wait()

    monkeypatch.setattr(BundledTarget, "stop", never)
    with pytest.raises(HarnessStuck, match=r"edits: closing the run did not finish within 5 s"):
        run(run_collab("edits", notebook, seed=1, timeout=5), clock="virtual", seed=1)
