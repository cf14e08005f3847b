"""Resident memory of a process, from ``/proc``: now, and its peak since a reset.

``VmHWM`` (the high-water mark of the resident set) can be reset for the calling process by
writing ``5`` to ``/proc/self/clear_refs`` (Linux 4.0+), so one run's peak can be told from the
imports and earlier runs before it. Where ``/proc`` is missing the peak falls back to
``ru_maxrss`` (since process start, never reset) and :func:`reset_peak_rss` says False.
"""

from __future__ import annotations

import os
import resource

__all__ = ["peak_rss_kib", "proc_status_kib", "reset_peak_rss"]


def proc_status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``, ...)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def reset_peak_rss() -> bool:
    """Start a new peak for this process; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


def peak_rss_kib() -> int:
    """This process's peak resident set (KiB) since :func:`reset_peak_rss`, or since start."""
    try:  # the kernel updates VmHWM lazily: it can read a few KiB under the current VmRSS
        pid = os.getpid()
        return max(proc_status_kib(pid, "VmHWM"), proc_status_kib(pid, "VmRSS"))
    except (OSError, RuntimeError):
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
