"""Bytes to hold a notebook: the Automerge document plus every blob a client downloads, vs Jupyter.

The figure of merit is ``(doc bytes + blob download bytes) / Y full-state update bytes`` for the
default 50-cell notebook: what an nbstream client must receive to show the whole notebook with
its outputs, against what a Jupyter client receives for the same notebook from
``jupyter_ydoc.YNotebook`` (``ynb.set(nb)``, then ``pycrdt`` ``Doc.get_update()``).

* *doc bytes*: ``Daemon.document_bytes()`` (the saved Automerge document, what ``get_doc_bytes``
  answers) after a full load;
* *blob bytes*: the wire bytes a client receives while ``nbstream open --export`` fetches every
  manifest and blob the cells reference (``sim.cli.open_cmd.fetch_blobs``), frame headers
  included — measured end to end on a real daemon over a socketpair.

Deterministic (same notebook, same encodings), so these are ``track_`` benchmarks.
Run directly for a one-line report: ``python -m benchmarks.bench_bytes [cells]``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from .common import DEFAULT_CELLS, SEED, check_cache, missing, notebook_bytes, require


@dataclass(frozen=True)
class HoldBytes:
    doc_bytes: int
    blob_bytes: int
    blobs: int
    y_bytes: int

    @property
    def ratio(self) -> float:
        return (self.doc_bytes + self.blob_bytes) / self.y_bytes


def y_update_bytes(data: bytes) -> int:
    """Length of the full-state Y update of the notebook in ``jupyter_ydoc``."""
    ydoc = require("jupyter_ydoc", "YNotebook")
    pycrdt = require("pycrdt", "Doc")
    doc = pycrdt.Doc()
    ynb = ydoc.YNotebook(doc)
    ynb.set(json.loads(data))
    return len(doc.get_update())


async def _download(path: str) -> tuple[int, int, int]:
    daemon_mod = require("core.daemon", "Daemon", "DaemonConfig")
    blobs_mod = require("core.blob_store", "MemoryBlobStore")
    client_mod = require("core.client", "NotebookClient")
    open_cmd = require("sim.cli.open_cmd", "fetch_blobs")
    daemon = daemon_mod.Daemon(daemon_mod.DaemonConfig(), blob_store=blobs_mod.MemoryBlobStore())
    await daemon.start()
    a, b = socket.socketpair()
    client_end = await asyncio.open_connection(sock=a)
    server_end = await asyncio.open_connection(sock=b)
    served = asyncio.create_task(daemon.handle_connection(*server_end))
    client = client_mod.NotebookClient(*client_end, name="bytes")
    try:
        await client.open(path)
        await client.wait_loaded()
        doc = daemon.document_bytes(client.info.notebook_id)
        before = client.statistics().bytes_in
        store = await open_cmd.fetch_blobs(client)
        after = client.statistics().bytes_in
        return len(doc), after - before, len(store.list())
    finally:
        await client.close()
        await daemon.stop()
        served.cancel()
        await asyncio.gather(served, return_exceptions=True)


def measure(cells: int = DEFAULT_CELLS, seed: int = SEED) -> HoldBytes:
    data = notebook_bytes(cells, seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/bench.ipynb"
        with open(path, "wb") as f:
            f.write(data)
        doc_bytes, blob_bytes, n = asyncio.run(_download(path))
    return HoldBytes(doc_bytes, blob_bytes, n, y_update_bytes(data))


class HoldNotebook:
    """Bytes a client receives to hold the default notebook, and the ratio to Jupyter's."""

    def setup_cache(self) -> dict[str, Any]:
        try:
            result = measure()
        except NotImplementedError as exc:
            return missing(exc)
        return {
            "doc": result.doc_bytes,
            "blobs": result.blob_bytes,
            "y": result.y_bytes,
            "ratio": result.ratio,
        }

    def setup(self, cache: dict[str, Any]) -> None:
        check_cache(cache)

    def track_doc_bytes(self, cache: dict[str, Any]) -> int:
        return int(cache["doc"])

    def track_blob_download_bytes(self, cache: dict[str, Any]) -> int:
        return int(cache["blobs"])

    def track_y_update_bytes(self, cache: dict[str, Any]) -> int:
        return int(cache["y"])

    def track_ratio_to_y(self, cache: dict[str, Any]) -> float:
        return float(cache["ratio"])

    track_doc_bytes.unit = "bytes"  # type: ignore[attr-defined]
    track_blob_download_bytes.unit = "bytes"  # type: ignore[attr-defined]
    track_y_update_bytes.unit = "bytes"  # type: ignore[attr-defined]
    track_ratio_to_y.unit = "ratio"  # type: ignore[attr-defined]


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CELLS
    r = measure(n)
    print(
        f"cells={n} doc={r.doc_bytes} blobs={r.blob_bytes} ({r.blobs} blobs) "
        f"total={r.doc_bytes + r.blob_bytes} y_update={r.y_bytes} ratio={r.ratio:.3f}"
    )
