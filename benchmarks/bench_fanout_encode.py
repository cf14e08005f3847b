"""Fan-out: one sync message per peer per batch, against the batch's changes encoded once.

Issue 11's fan-out target (the loader's time to full with 200 joined peers ≤ 3x that with 10)
is missed because the daemon calls ``generate_sync_message`` once per peer per batch, and that
call costs ~104 µs per changed cell *per peer*. automerge-py 0.2.0.dev4 keeps ``SyncState``
opaque, so the message cannot be generated once and reused. What it does accept is any valid
sync message: this benchmark builds one by hand — the Automerge sync message (type ``0x42``:
heads, empty ``need``, empty ``have``, the changes from ``Document.get_changes``) — and
measures, on the server's side only, per batch of 3 cells with every peer at the previous heads:

* ``per_peer``: ``generate_sync_message`` for each peer, then the peer's reply received and
  answered (``generate_sync_message`` again, which finds nothing to send);
* ``encode_once``: ``get_changes`` since the previous heads and one encoding, then the same
  reply handling per peer.

Both end with every peer's heads equal to the server's (checked). A prefix of the changes in
causal order is itself a valid message, so the same construction also bounds one message's size
(the worst cross-room stall of issue 11). Not in the daemon yet: measured here first.

``python -m benchmarks.bench_fanout_encode [peers] [cells]`` (defaults 200, 800).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from automerge.core import ROOT, Document, Message, ObjType, ScalarType, SyncState

__all__ = ["encode_changes", "measure"]

SYNC_MESSAGE_V1 = 0x42
BATCHES = 10


def _uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def encode_changes(heads: list[bytes], changes: list[bytes]) -> bytes:
    """A sync message carrying ``changes`` (encoded changes, causal order) and ``heads``."""
    parts = [bytes([SYNC_MESSAGE_V1]), _uleb(len(heads)), *heads, _uleb(0), _uleb(0)]
    parts.append(_uleb(len(changes)))
    for change in changes:
        parts += [_uleb(len(change)), change]
    return b"".join(parts)


Peer = tuple[Document, SyncState, SyncState]  # the peer's doc, the server's state, the peer's


def _settle(server: Document, peer: Peer) -> None:
    doc, theirs, ours = peer
    for _ in range(50):
        out = server.generate_sync_message(theirs)
        if out is not None:
            doc.receive_sync_message(ours, out)
        back = doc.generate_sync_message(ours)
        if back is not None:
            server.receive_sync_message(theirs, back)
        if out is None and back is None:
            return
    raise RuntimeError("sync did not settle in 50 rounds")


def _batch(server: Document, cells: bytes, tag: str) -> None:
    with server.transaction() as tx:
        for _ in range(3):
            cell = tx.insert_object(cells, 0, ObjType.Map)
            tx.put(cell, "source", ScalarType.Str, tag * 300)


def _replies(server: Document, peers: list[Peer], replies: Sequence[bytes | None]) -> None:
    for (_, theirs, _), reply in zip(peers, replies, strict=True):
        if reply is not None:
            server.receive_sync_message(theirs, Message.decode(reply))
        server.generate_sync_message(theirs)  # nothing left to send: the cost of finding out


def measure(peers: int = 200, cells: int = 800) -> dict[str, float]:
    """Server milliseconds per 3-cell batch, each way, on a document of ``cells`` cells."""
    server = Document()
    with server.transaction() as tx:
        cell_list = tx.put_object(ROOT, "cells", ObjType.List)
    for _ in range(cells // 3):
        _batch(server, cell_list, "a")
    joined: list[Peer] = [(Document(), SyncState(), SyncState()) for _ in range(peers)]
    for peer in joined:
        _settle(server, peer)
    per_peer = encode_once = 0.0
    for _ in range(BATCHES):
        _batch(server, cell_list, "p")
        t0 = time.perf_counter()
        messages = [server.generate_sync_message(theirs) for _, theirs, _ in joined]
        per_peer += time.perf_counter() - t0
        replies = []
        for (doc, _, ours), message in zip(joined, messages, strict=True):
            assert message is not None
            doc.receive_sync_message(ours, Message.decode(message.encode()))
            reply = doc.generate_sync_message(ours)
            replies.append(None if reply is None else reply.encode())
        t0 = time.perf_counter()
        _replies(server, joined, replies)
        per_peer += time.perf_counter() - t0

        before = server.get_heads()
        _batch(server, cell_list, "e")
        t0 = time.perf_counter()
        changes = [c.bytes for c in server.get_changes(before)]
        shared = encode_changes(server.get_heads(), changes)
        encode_once += time.perf_counter() - t0
        replies = []
        for doc, _, ours in joined:
            doc.receive_sync_message(ours, Message.decode(shared))
            reply = doc.generate_sync_message(ours)
            replies.append(None if reply is None else reply.encode())
        t0 = time.perf_counter()
        _replies(server, joined, replies)
        encode_once += time.perf_counter() - t0
    heads = server.get_heads()
    if any(doc.get_heads() != heads for doc, _, _ in joined):
        raise RuntimeError("a peer did not converge")
    return {
        "per_peer_ms": per_peer / BATCHES * 1e3,
        "encode_once_ms": encode_once / BATCHES * 1e3,
        "ratio": per_peer / encode_once,
    }


def main(argv: list[str]) -> int:
    peers = int(argv[0]) if argv else 200
    cells = int(argv[1]) if len(argv) > 1 else 800
    r = measure(peers, cells)
    print(
        f"{peers} peers, {cells}-cell document, server ms per 3-cell batch: per peer "
        f"{r['per_peer_ms']:.1f}, encoded once {r['encode_once_ms']:.1f} "
        f"(x{r['ratio']:.2f}); every peer converged"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
