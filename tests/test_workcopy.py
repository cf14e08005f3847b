"""sim.harness.workcopy: the private copy a collaboration run edits, at a reproducible path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sim.harness.workcopy import private_copy

HOLD = """
import fcntl, os, sys
from pathlib import Path
lock = Path(sys.argv[1])
fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def _nb(tmp_path: Path) -> Path:
    nb = tmp_path / "mine.ipynb"
    nb.write_bytes(b'{"cells": []}')
    return nb


def test_runs_of_one_process_share_a_path_and_never_touch_the_original(tmp_path: Path) -> None:
    nb = _nb(tmp_path)
    with private_copy(nb) as first:
        assert first.name == "mine.ipynb" and first != nb
        first.write_bytes(b"edited")
        (first.parent / "mine.nbstream-recovered-x.ipynb").write_bytes(b"r")
        with private_copy(nb) as overlapping:  # a run overlapping inside this process
            assert overlapping.parent != first.parent
    assert not first.exists() and list(first.parent.iterdir()) == []  # removed after the run
    with private_copy(nb) as again:
        assert again == first and again.read_bytes() == b'{"cells": []}'
    assert nb.read_bytes() == b'{"cells": []}'


def test_a_slot_held_by_another_process_is_skipped(tmp_path: Path) -> None:
    nb = _nb(tmp_path)
    with private_copy(nb) as mine:
        pass
    # another process holds the lock of the next free slot: this process's slot is unchanged
    # and a fresh process would skip the held one
    lock = mine.parent.parent / "slot63.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from sim.harness.workcopy import "
                "private_copy\nwith private_copy(Path(sys.argv[1])) as p: print(p.parent.name)",
                str(nb),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.strip() not in ("slot63", mine.parent.name)  # both are taken
        with private_copy(nb) as still:
            assert still == mine
    finally:
        holder.communicate("")
