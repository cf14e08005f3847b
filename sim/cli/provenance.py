"""Where and on what a result was measured: the ``machine`` and ``git`` blocks of every result
file, and writing a result to ``--output FILE``.

``machine``: ``cpu_model``, ``cpu_count``, ``memory_bytes``, ``python``, ``os``, ``automerge``
(the installed automerge-py version), ``load_average`` (1, 5, 15 min, when the run ended) and
``timestamp`` (UTC, RFC 3339). ``git``: ``commit`` and ``dirty`` of the repository the command
ran in (its working directory), or null outside one. Two results are comparable
(``nbstream compare``) only with these in view: a figure without its machine is not a result.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from core.atomic import atomic_write

__all__ = ["git_info", "machine_info", "stamp", "write_result"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _automerge_version() -> str | None:
    try:
        return metadata.version("automerge")
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count() or 1,
        "memory_bytes": _memory_bytes(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "automerge": _automerge_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "timestamp": datetime.now(timezone.utc)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z"),
    }


def _git(*args: str, cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_info(cwd: Path | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the repository at ``cwd`` (default: the working directory)."""
    where = cwd or Path.cwd()
    commit = _git("rev-parse", "HEAD", cwd=where)
    if commit is None:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=where)
    return {"commit": commit.strip(), "dirty": bool(status and status.strip())}


def stamp(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``machine`` and ``git`` added (kept if the producer set them already)."""
    data.setdefault("machine", machine_info())
    data.setdefault("git", git_info())
    return data


def write_result(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as the result file ``path`` (atomically: a reader never sees half)."""
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    atomic_write(path, text.encode(), durable=False, mode=0o644)
