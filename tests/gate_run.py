"""``nbstream gate`` in a subprocess, as CI runs it: one helper for the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_gate(
    cwd: Path,
    *argv: str,
    pythonpath: Path | None = None,
    summary: Path | None = None,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    """``python -m sim.gate.command ARGV`` in ``cwd`` (the tree under test), never writing the
    job summary of the CI running these tests; ``pythonpath``: where the gate's own code is
    when ``cwd`` has none; ``summary``: a file to use as ``$GITHUB_STEP_SUMMARY``."""
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_STEP_SUMMARY", "PYTHONPATH")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    if summary is not None:
        env["GITHUB_STEP_SUMMARY"] = str(summary)
    return subprocess.run(
        [sys.executable, "-m", "sim.gate.command", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
