"""Virtual peers: how each simulated client behaves.

A peer is a :class:`core.client.NotebookClient` (or, for ``never_reads``, a bare connection that
sends its handshake and its first sync message, reads the handshake reply, and then never reads
again). It connects through whatever ``connect`` callable the run gives it (a target's
:meth:`~sim.harness.target.Target.connect`; the transports are in :mod:`sim.net.connect`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from automerge import core as am

from core.client import NotebookClient, OpenRefused
from core.connection import Connection, Handshake, Hello, Role, SyncData
from core.errors import TransportClosed
from core.notebook_doc import NotebookDoc
from core.protocol import OpenNotebook
from sim.net.connect import StreamPair

__all__ = ["Behaviour", "PeerSpec", "VirtualPeer", "open_silently"]

Behaviour = Literal["normal", "slow", "never_reads", "never_replies", "disconnects"]


@dataclass(frozen=True, slots=True)
class PeerSpec:
    """One simulated client. ``join_at_batch=None`` opens before the load (the first such peer
    is the loader); an int opens just before that batch is inserted."""

    name: str
    behaviour: Behaviour = "normal"
    join_at_batch: int | None = None
    disconnect_at_batch: int | None = None
    read_delay_s: float = 0.0  # "slow": pause before every read
    buffer: int | None = None  # transport buffer per direction (bytes); None = default

    @property
    def expects_convergence(self) -> bool:
        """Peers that stay and read must end up equal to the server."""
        return self.behaviour not in ("never_reads", "disconnects")


def open_silently(writer: asyncio.StreamWriter, notebook: Path) -> Connection:
    """Write a handshake and a first sync message, as a client that will never read does."""
    conn = Connection(Role.CLIENT)
    data = conn.send(Handshake(OpenNotebook(str(notebook))))
    hello = NotebookDoc.empty().generate_sync_message(am.SyncState())
    if hello:
        data += conn.send(SyncData(hello))
    writer.write(data)
    return conn


class VirtualPeer:
    """A running simulated peer."""

    def __init__(self, spec: PeerSpec) -> None:
        self.spec = spec
        self.client: NotebookClient | None = None
        self._raw_writer: asyncio.StreamWriter | None = None
        self.error: str | None = None
        self.disconnected = False

    @property
    def name(self) -> str:
        return self.spec.name

    async def open(
        self,
        notebook: Path,
        connect: Callable[[int | None], Awaitable[StreamPair]],
    ) -> None:
        spec = self.spec
        reader, writer = await connect(spec.buffer)
        if spec.behaviour == "never_reads":
            # Handshake plus a first sync message, then silence: never reads another byte
            # after the handshake reply.
            conn = open_silently(writer, notebook)
            self._raw_writer = writer
            # Wait for the reply (whole frames only): once it is here, the daemon has decided
            # whether this open joins the running load or starts one. Returning earlier let a
            # peer scheduled to "join at batch k" have its handshake processed *after* a fault
            # at batch k had rolled the load back, so it silently started a second load.
            # Found by tests/test_faults.py's random schedules.
            while True:
                chunk = await reader.read(64 * 1024)
                events = conn.receive_data(chunk)
                if not chunk:
                    raise TransportClosed("daemon closed the connection during the handshake")
                if events:
                    first = events[0]
                    assert isinstance(first, Hello)
                    if first.message.error is not None:
                        raise OpenRefused(first.message.error)
                    return
        client = NotebookClient(
            reader,
            writer,
            name=spec.name,
            auto_reply=spec.behaviour != "never_replies",
            read_delay=spec.read_delay_s,
        )
        self.client = client
        await client.open(notebook)

    async def disconnect(self) -> None:
        """Vanish abruptly (no goodbye)."""
        self.disconnected = True
        if self.client is not None:
            await self.client.close()
        if self._raw_writer is not None:
            self._raw_writer.close()

    async def wait_settled(self, predicate: Callable[[NotebookClient], bool]) -> None:
        if self.client is None or self.disconnected or not self.spec.expects_convergence:
            return
        client = self.client
        await client.wait_for(lambda: predicate(client))

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        if self._raw_writer is not None:
            self._raw_writer.close()
            with contextlib.suppress(Exception):
                await self._raw_writer.wait_closed()
