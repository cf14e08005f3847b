"""Binding the daemon's Unix socket without touching what is not ours.

:func:`bind_unix` creates (mode 0700) only the directories of the socket path that do not exist
yet, and never changes the mode of one that does (``--socket /tmp/x.sock`` once made ``/tmp``
0700 and dropped its sticky bit). It refuses, with a :class:`~core.errors.CoreError` saying why,
to bind in a directory that other users can write (group- or world-writable, or owned by another
user than us and root) unless the directory is sticky — then another user can neither remove nor
rename our socket — and the socket path is new there: a stale socket in a shared directory may be
someone else's, so it is never replaced. In a private directory a dead daemon's stale socket is
replaced; a live one, or anything that is not a socket, never is. The socket is 0600.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

from .errors import CoreError

__all__ = ["LISTEN_BACKLOG", "bind_unix"]

# Connections the kernel queues before ``accept``: asyncio's default of 100 resets the 101st of
# a burst of simultaneous connects (200 peers joining at once lost 52).
LISTEN_BACKLOG = socket.SOMAXCONN

Callback = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _make_directories(directory: Path) -> None:
    """Create the missing directories of ``directory``, each exactly 0700; leave the rest alone."""
    missing: list[Path] = []
    here = directory
    while not os.path.lexists(here):
        missing.append(here)
        if here.parent == here:
            break
        here = here.parent
    for new in reversed(missing):
        try:
            os.mkdir(new, 0o700)
        except FileExistsError:
            continue  # someone else made it meanwhile: not ours, its mode is not ours to set
        os.chmod(new, 0o700)  # exactly 0700 whatever the umask (it can only have removed bits)


def _shared_by(info: os.stat_result) -> str | None:
    """Why other users can write a directory with this ``stat``, or None if they cannot."""
    mode = info.st_mode
    if mode & stat.S_IWOTH:
        return "world-writable"
    if mode & stat.S_IWGRP:
        return "group-writable"
    if info.st_uid not in (os.geteuid(), 0):
        return f"owned by another user (uid {info.st_uid})"
    return None


async def bind_unix(path: Path, callback: Callback) -> asyncio.AbstractServer:
    """Bind and listen on ``path`` (see the module docstring for what is created and refused)."""
    directory = path.parent
    _make_directories(directory)
    try:
        info = os.stat(directory)
    except OSError as exc:
        raise CoreError(f"cannot use {directory} for the socket: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise CoreError(f"cannot bind {path}: {directory} is not a directory")
    shared = _shared_by(info)
    sticky = bool(info.st_mode & stat.S_ISVTX)
    if shared is not None and not sticky:
        raise CoreError(
            f"refusing to bind {path}: its directory {directory} is {shared} "
            f"(mode {stat.S_IMODE(info.st_mode):04o}) and not sticky, so another user could "
            "replace the socket; use a private directory"
        )
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise CoreError(f"{path} exists and is not a socket; refusing to replace it")
        try:
            _r, w = await asyncio.open_unix_connection(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            if shared is not None:
                raise CoreError(
                    f"refusing to replace the stale socket {path}: its directory {directory} is "
                    f"{shared}, so the socket may be another user's; remove it or use a new path"
                ) from None
            path.unlink()  # stale socket of a dead daemon
        else:
            w.close()
            raise CoreError(f"a daemon is already listening on {path}")
    old_umask = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(callback, path=str(path), backlog=LISTEN_BACKLOG)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    return server
