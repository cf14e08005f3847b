"""A simulated peer that edits: :class:`Editor`.

Its client tells it, frame by frame, which Automerge changes reached it and when, so the
collaboration scenarios (:mod:`sim.harness.collab`) can wait until every peer holds every edit
and the typists (:mod:`sim.harness.typists`) can time each edit's arrival at every other peer.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from core.client import Arrival, NotebookClient
from core.notebook_doc import NotebookDoc
from sim.harness.edits import new_changes
from sim.harness.peers import Behaviour, PeerSpec, VirtualPeer
from sim.harness.target import BundledTarget
from sim.harness.trace import Trace
from sim.net.streams import StreamHooks

__all__ = ["Editor"]


class Editor(VirtualPeer):
    """A peer that edits. Its client tells it, frame by frame, which changes reached it and
    when (``seen_at``: ``time.perf_counter()`` of the frame that brought each change)."""

    def __init__(self, name: str, trace: Trace, *, read_delay: float = 0.0) -> None:
        behaviour: Behaviour = "slow" if read_delay else "normal"
        super().__init__(PeerSpec(name, behaviour, read_delay_s=read_delay))
        self.trace = trace
        self.heads: list[bytes] = []
        self.seen: set[bytes] = set()
        self.seen_at: dict[bytes, float] = {}
        self.added = 0
        self.typed = 0
        self.hooks: tuple[StreamHooks, StreamHooks] | None = None  # (to server, to client)
        self.ready = False  # connected, and the document's structure has arrived

    @property
    def doc(self) -> NotebookDoc:
        assert self.client is not None
        return self.client.doc

    def _on_frame(self, arrival: Arrival) -> None:
        self.trace.frame(self.name, arrival.frame_type, arrival.nbytes)
        doc = self.doc
        heads = doc.heads()
        if heads != self.heads:
            for change in new_changes(doc, self.heads):
                if change not in self.seen:
                    self.seen.add(change)
                    self.seen_at[change] = time.perf_counter()
            self.heads = heads

    def made(self, change: bytes) -> None:
        """A local edit: its change is seen here at once."""
        self.seen.add(change)
        self.heads = self.doc.heads()

    async def connect(
        self,
        target: BundledTarget,
        notebook: Path,
        timeout: float,
        *,
        doc: NotebookDoc | None = None,
        partitionable: bool = False,
    ) -> None:
        """Open the notebook; return once the document's structure has arrived (or, with
        ``doc``, reconnect carrying that document and everything edited in it meanwhile)."""
        if partitionable and target.transport == "memory":
            self.hooks = (StreamHooks(), StreamHooks())
        to_server, to_client = self.hooks or (None, None)
        reader, writer = await target.connect(
            None, hooks_to_client=to_client, hooks_to_server=to_server
        )
        client = NotebookClient(
            reader,
            writer,
            name=self.name,
            on_frame=self._on_frame,
            read_delay=self.spec.read_delay_s,
        )
        if doc is not None:
            client.doc = doc
        self.client = client
        self.disconnected = False
        self.ready = False
        self.trace.event(f"join {self.name}" + (" (reconnect)" if doc is not None else ""))
        await asyncio.wait_for(client.open(notebook), timeout)
        await asyncio.wait_for(client.wait_for(lambda: bool(client.doc.heads())), timeout)
        self.ready = True

    def set_partitioned(self, cut: bool) -> None:
        assert self.hooks is not None
        for hooks in self.hooks:
            hooks.set_stalled(cut)
