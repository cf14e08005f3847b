"""``nbstream open``: open a notebook through a running daemon and watch the cells arrive.

Shows a live spinner and cell count on a terminal (a bar once the total is known, then a
"fetching outputs" phase for ``--export``), then the summary on its own line; ``--json``
prints the summary as JSON (keys ``cells``, ``outputs``, ``time_to_first_cell_s``,
``time_to_full_s``, ``status``, ``reason``). ``--export`` fetches the output manifests and blobs
the cells reference (``get_blob`` requests) and writes the synced notebook as nbformat 4.5.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.blob_store import MemoryBlobStore, is_blob_id
from core.client import Arrival, LoadFailed, NotebookClient, OpenRefused
from core.daemon import default_socket_path
from core.errors import CoreError
from core.ipynb_export import export_notebook, read_previous
from core.manifest import manifest_blob_ids
from sim.cli.live import CellProgress

__all__ = ["fetch_blobs", "open_notebook"]


async def fetch_blobs(
    client: NotebookClient, on_blob: Callable[[int], None] | None = None
) -> MemoryBlobStore:
    """Copy every manifest the doc references, and every blob those manifests reference.

    ``on_blob(n)`` is called after each of them with the count fetched so far."""
    store = MemoryBlobStore()
    wanted = [ref for cell in client.doc.get_cells() for ref in cell.outputs if is_blob_id(ref)]
    seen: set[str] = set()
    while wanted:
        ref = wanted.pop()
        if ref in seen:
            continue
        seen.add(ref)
        try:
            blob = await client.get_blob(ref)
        except CoreError:
            continue  # exported as the "could not be resolved" placeholder
        store.put(blob.data, blob.media_type)
        if on_blob is not None:
            on_blob(len(seen))
        if blob.media_type == "application/x-jupyter-output+json":
            wanted.extend(manifest_blob_ids(blob.data))
    return store


async def open_notebook(args: argparse.Namespace) -> int:
    socket_path = Path(args.socket) if args.socket else default_socket_path()
    notebook = Path(args.notebook).expanduser().absolute()
    bar = CellProgress(enabled=sys.stderr.isatty() and not args.json)

    def on_frame(arrival: Arrival) -> None:
        status = client.load_status
        bar.update(arrival.cell_count, status.total_cells if status is not None else None)

    try:
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
    except OSError as exc:
        bar.close()
        print(
            f"nbstream open: cannot connect to {socket_path}: {exc.strerror or exc} "
            "(is `nbstream serve` running?)",
            file=sys.stderr,
        )
        return 2
    client = NotebookClient(reader, writer, name="open", on_frame=on_frame)
    summary: dict[str, Any] = {"notebook": str(notebook), "socket": str(socket_path)}
    try:
        try:
            await client.open(notebook)
            await asyncio.wait_for(client.wait_loaded(), args.timeout)
            summary.update(status="ready", reason=None)
        except OpenRefused as exc:
            summary.update(status="refused", reason=str(exc))
        except LoadFailed as exc:
            summary.update(status="failed", reason=str(exc))
        except asyncio.TimeoutError:
            summary.update(status="timeout", reason=f"not loaded within {args.timeout:g} s")
        stats = client.statistics()
        cells = client.doc.get_cells()
        summary.update(
            cells=len(cells),
            outputs=sum(len(c.outputs) for c in cells),
            time_to_first_cell_s=stats.time_to_first_cell_s,
            time_to_full_s=stats.time_to_full_s,
            frames=stats.frames_in,
            bytes=stats.bytes_in,
        )
        if args.export is not None and summary["status"] == "ready":
            bar.phase("fetching outputs")
            store = await fetch_blobs(client, lambda n: bar.update(n, None))
            data = export_notebook(client.doc, store, read_previous(notebook))
            args.export.write_bytes(data)
            summary["exported"] = str(args.export)
            # `bytes` and `frames` are everything received, the blob channel included: what it
            # cost to hold the notebook with its outputs (blob_* is that channel's share).
            after = client.statistics()
            summary.update(
                blobs=len(store.list()),
                blob_frames=after.frames_in - stats.frames_in,
                blob_bytes=after.bytes_in - stats.bytes_in,
                frames=after.frames_in,
                bytes=after.bytes_in,
            )
    finally:
        bar.close()
        await client.close()
    if args.json:
        json.dump(summary, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
    elif summary["status"] == "ready":
        ttfc, full = summary["time_to_first_cell_s"], summary["time_to_full_s"]
        print(
            f"{summary['cells']} cells, {summary['outputs']} outputs; first cell after "
            f"{(ttfc or 0) * 1000:.1f} ms, all after {(full or 0) * 1000:.1f} ms "
            f"({summary['frames']} frames, {summary['bytes']} bytes)"
        )
        if "exported" in summary:
            print(f"exported to {summary['exported']}")
    if summary["status"] != "ready":
        print(f"nbstream open: {summary['status']}: {summary['reason']}", file=sys.stderr)
        return 2 if summary["status"] in ("refused", "failed") else 1
    return 0
