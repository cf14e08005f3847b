"""Progress on stderr: rich on a terminal, a plain heartbeat (never an escape code) elsewhere."""

from __future__ import annotations

import io

import pytest

import sim.cli.live as live
from sim.cli.live import CellProgress, Progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_off_a_terminal_a_heartbeat_every_few_seconds_and_no_escape_codes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr(live.time, "monotonic", clock)
    out = io.StringIO()
    progress = Progress(out, label="nbstream scale", heartbeat=True)
    for step in range(30):
        clock.now += 1.0
        progress(f"size {step}")
    progress.done()
    lines = out.getvalue().splitlines()
    assert lines == [
        "nbstream scale: size 9 (10 s)",
        "nbstream scale: size 19 (20 s)",
        "nbstream scale: size 29 (30 s)",
    ]
    assert "\x1b" not in out.getvalue()


def test_off_a_terminal_without_heartbeat_nothing_is_written() -> None:
    out = io.StringIO()
    progress = Progress(out)
    progress("batch 3/17")
    progress.done()
    assert out.getvalue() == ""


def test_on_a_terminal_the_spinner_shows_the_message() -> None:
    out = io.StringIO()
    progress = Progress(out, force_terminal=True)
    progress("batch 3/17")
    progress.done()
    assert "batch 3/17" in out.getvalue()


def test_open_shows_cells_then_a_bar_once_the_total_is_known() -> None:
    out = io.StringIO()
    bar = CellProgress(out, enabled=True)
    bar.update(3, None)
    bar.update(50, 50)
    bar.phase("fetching outputs")
    bar.update(4, None)
    bar.close()
    assert "cells" in out.getvalue()
    quiet = io.StringIO()
    off = CellProgress(quiet, enabled=False)
    off.update(3, 10)
    off.close()
    assert quiet.getvalue() == ""
