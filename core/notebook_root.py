"""The notebook root: the one directory tree whose ``.ipynb`` files clients may open and save.

Any client that can connect could otherwise name any file the daemon's user can read or write
(``/etc/passwd``, ``/proc/self/environ``, as root a mode-000 file it could then save over).
:func:`resolve_root` fixes the root once, at daemon start (``DaemonConfig.notebook_root``, by
default the daemon's working directory); :func:`confine` resolves a handshake path (every
symbolic link followed, ``..`` removed) and refuses it unless the result is inside the root;
:func:`check_suffix` refuses a resolved name that does not end in ``.ipynb``. Errors are
:class:`~core.errors.NotebookLoadError` with one precise line, sent in-protocol at the handshake.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CoreError, NotebookLoadError

__all__ = ["NOTEBOOK_SUFFIX", "check_suffix", "confine", "inside", "resolve_root"]

NOTEBOOK_SUFFIX = ".ipynb"


def resolve_root(root: Path | str | None) -> Path:
    """The real path of ``root`` (None: the current working directory); it must be a directory."""
    if root is None:
        try:
            raw = os.getcwd()
        except OSError as exc:  # the working directory was removed
            raise CoreError(f"no notebook root: the working directory is gone ({exc})") from None
    else:
        raw = os.fspath(root)
    real = os.path.realpath(os.path.abspath(raw))
    if not os.path.isdir(real):
        what = "does not exist" if not os.path.lexists(real) else "is not a directory"
        raise CoreError(f"notebook root {raw} {what}")
    return Path(real)


def inside(real: str, root: Path) -> bool:
    """True iff the resolved path ``real`` is ``root`` or below it."""
    base = str(root)
    return real == base or real.startswith(base if base.endswith(os.sep) else base + os.sep)


def _resolves_to(raw: str, real: str) -> str:
    return "" if real == raw else f" (it resolves to {real})"


def confine(raw: str, root: Path) -> str:
    """The resolved form of the absolute path ``raw``; refused unless it lies inside ``root``."""
    real = os.path.realpath(raw)
    if not inside(real, root):
        raise NotebookLoadError(
            f"{raw} is outside the notebook root {root}{_resolves_to(raw, real)}"
        )
    return real


def check_suffix(raw: str, real: str) -> None:
    """Refuse a resolved path whose name does not end in ``.ipynb``."""
    if not real.endswith(NOTEBOOK_SUFFIX):
        raise NotebookLoadError(
            f"{raw} is not a {NOTEBOOK_SUFFIX} file{_resolves_to(raw, real)}; "
            f"only {NOTEBOOK_SUFFIX} files are served"
        )
