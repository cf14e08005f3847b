"""`asv check` in the default test run: the asv suite must stay importable and well-formed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_asv_check_finds_no_problems(tmp_path: Path) -> None:
    asv = shutil.which("asv", path=str(Path(sys.executable).parent)) or shutil.which("asv")
    assert asv is not None, "asv is a dev dependency: install with pip install -e '.[dev]'"
    # --python=same checks against this interpreter: no environment is built, nothing downloaded.
    env = {**os.environ, "HOME": str(tmp_path)}  # asv never touches the user's machine file
    proc = subprocess.run(
        [asv, "check", "--python=same"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No problems found" in proc.stdout
