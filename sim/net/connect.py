"""Connect one client to a server over a chosen transport: the one place that builds the pair.

``memory`` is :func:`sim.net.streams.memory_stream_pair` (bounded, with optional fault hooks),
``socketpair`` a kernel AF_UNIX pair (optionally with small SO_SNDBUF/SO_RCVBUF), ``unix`` a
connection to a listening socket path. For the first two the server end is handed to ``serve``
(e.g. :meth:`core.daemon.Daemon.handle_connection`), run as a task kept in ``tasks``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

from sim.net.streams import DEFAULT_CAPACITY, StreamHooks, memory_stream_pair

__all__ = ["Serve", "StreamPair", "Transport", "connect_transport"]

Transport = Literal["memory", "socketpair", "unix"]
StreamPair = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _small_buffers(sock: socket.socket, buffer: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)


async def connect_transport(
    transport: Transport,
    *,
    serve: Serve | None = None,
    socket_path: Path | None = None,
    buffer: int | None = None,
    hooks_to_client: StreamHooks | None = None,
    hooks_to_server: StreamHooks | None = None,
    tasks: set[asyncio.Task[None]] | None = None,
) -> StreamPair:
    """The client end of a new connection; the server end is served by ``serve``.

    ``hooks_to_client`` / ``hooks_to_server`` (memory only) inject faults on the server-to-client
    / client-to-server direction (both stalled: a network partition).
    """
    if transport == "unix":
        if socket_path is None:
            raise ValueError("the unix transport needs a socket path")
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        if buffer is not None:
            _small_buffers(writer.get_extra_info("socket"), buffer)
        return reader, writer
    if serve is None:
        raise ValueError(f"the {transport} transport needs a serve callback")
    if transport == "socketpair":
        a, b = socket.socketpair()
        if buffer is not None:
            for s in (a, b):
                _small_buffers(s, buffer)
        limit = max(buffer or 0, 2**16)
        sr, sw = await asyncio.open_connection(sock=a, limit=limit)
        cr, cw = await asyncio.open_connection(sock=b, limit=limit)
    elif transport == "memory":
        (cr, cw), (sr, sw) = await memory_stream_pair(
            capacity=buffer or DEFAULT_CAPACITY,
            hooks_a_to_b=hooks_to_server,
            hooks_b_to_a=hooks_to_client,
        )
    else:
        raise ValueError(f"unknown transport {transport!r}")
    task = asyncio.ensure_future(serve(sr, sw))
    if tasks is not None:
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    return cr, cw
