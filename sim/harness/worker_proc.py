"""One worker process of ``nbstream sim --workers N``: virtual peers on a loop of its own.

Started by :mod:`sim.harness.worker_pool` as ``python -m sim.harness.worker_proc SOCKET NOTEBOOK
TIMEOUT``. It reads one JSON request per line on stdin and writes one JSON reply per line on
stdout (``{"id": n, "ok": true, ...}``, or ``"ok": false`` with ``"error"``); stderr is for
tracebacks only. Every peer connects to the daemon's Unix socket ``SOCKET``. Requests:

- ``open`` ``specs``: open these peers (:class:`~sim.harness.peers.PeerSpec` fields),
  concurrently; ``joined_at`` is the batch they join at (recorded for their rows);
- ``disconnect`` ``names``: these peers vanish abruptly;
- ``settle`` ``phase`` ``heads``: wait until every peer that reads holds the load phase and the
  server's heads (hex); replies the ones that did not in ``timeout`` as ``late``;
- ``progress`` ``name`` ``cells``: wait until that peer heard ``cells`` cells announced by the
  load-status progress, or the load left streaming (the joins' clock against a server without
  the bundled daemon's hook);
- ``outcome`` ``names``: the load's end (phase, reason) as the first of these connected peers
  (all: ``null``) hears it; phase ``null`` when none is connected here;
- ``server_doc``: the server's document, base64, from ``get_doc_bytes`` on a connected peer;
- ``report`` ``origin``: every peer's row (:class:`~sim.results.sim.PeerRow` JSON, times
  relative to ``origin``, the load's ``perf_counter`` start), the sha256 of each converging
  peer's materialized document (``hashes``) and the process's peak RSS;
- ``exit``: close every peer and end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import resource
import sys
from pathlib import Path
from typing import Any

from core.client import NotebookClient
from core.errors import CoreError, TransportClosed
from sim.harness.memory import peak_rss_kib, reset_peak_rss
from sim.harness.metrics import peer_row_at
from sim.harness.peers import PeerSpec, VirtualPeer
from sim.net.connect import StreamPair, connect_transport

__all__ = ["doc_sha256", "main", "raise_fd_limit"]


def raise_fd_limit() -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to its hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def doc_sha256(doc: dict[str, Any]) -> str:
    """The hash convergence is judged by: sha256 of the materialized document as sorted JSON."""
    text = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class _Worker:
    def __init__(self, socket: Path, notebook: Path, timeout: float) -> None:
        self.socket = socket
        self.notebook = notebook
        self.timeout = timeout
        self.peers: dict[str, VirtualPeer] = {}
        self.joined: dict[str, int | None] = {}

    async def connect(self, buffer: int | None) -> StreamPair:
        return await connect_transport("unix", socket_path=self.socket, buffer=buffer)

    async def open(self, specs: list[dict[str, Any]], joined_at: int | None) -> dict[str, Any]:
        async def one(spec: PeerSpec) -> None:
            peer = VirtualPeer(spec)
            self.peers[spec.name] = peer
            self.joined[spec.name] = joined_at
            await asyncio.wait_for(peer.open(self.notebook, self.connect), self.timeout)

        await asyncio.gather(*(one(PeerSpec(**s)) for s in specs))
        return {"opened": len(specs)}

    async def disconnect(self, names: list[str]) -> dict[str, Any]:
        for name in names:
            await self.peers[name].disconnect()
        return {"disconnected": len(names)}

    async def settle(self, phase: str, heads: list[str]) -> dict[str, Any]:
        target = [bytes.fromhex(h) for h in heads]

        def done(c: NotebookClient) -> bool:
            s = c.load_status
            return s is not None and s.phase == phase and c.doc.heads() == target

        async def one(peer: VirtualPeer) -> str | None:
            try:
                await asyncio.wait_for(peer.wait_settled(done), self.timeout)
            except Exception as exc:  # a timeout or a closed transport: reported, not raised
                return f"{peer.name} ({type(exc).__name__}: {exc})"
            return None

        late = await asyncio.gather(*(one(p) for p in self.peers.values()))
        return {"late": [x for x in late if x is not None]}

    def _readers(self, names: list[str] | None) -> list[NotebookClient]:
        return [
            p.client
            for n, p in self.peers.items()
            if p.client is not None
            and not p.disconnected
            and p.spec.expects_convergence
            and (names is None or n in names)
        ]

    async def progress(self, name: str, cells: int) -> dict[str, Any]:
        """Wait until ``name`` has heard ``cells`` cells announced, or the load left streaming
        (at once when the peer is gone: what is scheduled next happens anyway)."""
        peer = self.peers.get(name)
        client = peer.client if peer is not None and not peer.disconnected else None
        if client is not None:

            def reached(c: NotebookClient = client) -> bool:
                s = c.load_status
                return s is not None and (s.phase != "streaming" or s.cells_loaded >= cells)

            with contextlib.suppress(TransportClosed, asyncio.TimeoutError):
                await asyncio.wait_for(client.wait_for(reached), self.timeout)
        return {}

    async def outcome(self, names: list[str] | None) -> dict[str, Any]:
        """The load's end as the first of these reading peers hears it: phase and reason
        (phase None: no such peer is connected here)."""
        clients = self._readers(names)
        if not clients:
            return {"phase": None, "reason": None}

        async def final(c: NotebookClient) -> tuple[str, str | None]:
            def ended() -> bool:
                s = c.load_status
                return s is not None and s.phase in ("ready", "failed")

            await c.wait_for(ended)
            assert c.load_status is not None
            return c.load_status.phase, c.load_status.reason

        tasks = [asyncio.ensure_future(final(c)) for c in clients]
        try:
            done, _ = await asyncio.wait(
                tasks, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if not task.exception():
                    phase, reason = task.result()
                    return {"phase": phase, "reason": reason}
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        raise TimeoutError(f"no peer here heard the load end in {self.timeout:g} s")

    async def server_doc(self) -> dict[str, Any]:
        """The server's document (base64), asked with ``get_doc_bytes`` by a connected peer."""
        for client in self._readers(None):
            with contextlib.suppress(CoreError, asyncio.TimeoutError):
                data = await asyncio.wait_for(client.get_doc_bytes(), self.timeout)
                return {"doc": base64.b64encode(data).decode()}
        return {"doc": None}

    def report(self, origin: float | None) -> dict[str, Any]:
        rows = []
        hashes: dict[str, str] = {}
        for name, peer in self.peers.items():
            rows.append(peer_row_at(peer, self.joined[name], origin, converged=False).to_json())
            client = peer.client
            if client is not None and not peer.disconnected and peer.spec.expects_convergence:
                hashes[name] = doc_sha256(client.doc.materialize())
        return {"peers": rows, "hashes": hashes, "peak_rss_kib": peak_rss_kib()}

    async def close(self) -> None:
        for peer in self.peers.values():
            with contextlib.suppress(Exception):
                await peer.close()

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "open":
            return await self.open(request["specs"], request.get("joined_at"))
        if op == "disconnect":
            return await self.disconnect(request["names"])
        if op == "settle":
            return await self.settle(request["phase"], request["heads"])
        if op == "progress":
            return await self.progress(request["name"], request["cells"])
        if op == "outcome":
            return await self.outcome(request.get("names"))
        if op == "server_doc":
            return await self.server_doc()
        if op == "report":
            return self.report(request.get("origin"))
        if op == "exit":
            await self.close()
            return {}
        raise ValueError(f"unknown request {op!r}")


async def _serve(worker: _Worker) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout
    while True:
        line = await reader.readline()
        if not line:  # the parent went away: nothing left to do
            await worker.close()
            return
        request = json.loads(line)
        try:
            reply = {"id": request["id"], "ok": True, **await worker.handle(request)}
        except Exception as exc:
            reply = {"id": request["id"], "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
        if request["op"] == "exit":
            return


def main(argv: list[str]) -> int:
    socket, notebook, timeout = Path(argv[0]), Path(argv[1]), float(argv[2])
    raise_fd_limit()
    reset_peak_rss()  # the peers' peak, not the imports'
    asyncio.run(_serve(_Worker(socket, notebook, timeout)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
