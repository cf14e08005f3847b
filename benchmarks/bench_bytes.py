"""Bytes to hold a notebook: the Automerge document plus every blob a client downloads, vs Jupyter.

The figure of merit is ``(doc bytes + blob download bytes) / Y full-state update bytes`` for the
default 50-cell notebook: what an nbstream client must receive to show the whole notebook with
its outputs, against what a Jupyter client receives for the same notebook from
``jupyter_ydoc.YNotebook`` (``ynb.set(nb)``, then ``pycrdt`` ``Doc.get_update()``).

Measured from outside by :func:`sim.harness.outside.figure_bytes`: a real ``nbstream serve``
(disk blob store, Unix socket); *doc bytes* is the ``get_doc_bytes`` answer after a full load,
*blob bytes* the wire bytes a client receives while ``nbstream open --export`` fetches every
manifest and blob the cells reference (``sim.cli.open_cmd.fetch_blobs``), frame headers included.

Deterministic (same notebook, same encodings), so these are ``track_`` benchmarks.
Run directly for a one-line report: ``python -m benchmarks.bench_bytes [cells]``.
"""

from __future__ import annotations

import sys
from typing import Any

from .common import DEFAULT_CELLS, check_cache, missing, outside_figure


def measure(cells: int = DEFAULT_CELLS) -> dict[str, Any]:
    """``figure_bytes`` of the tree under test (keys doc_bytes, blob_bytes, blobs, ratio, …)."""
    return outside_figure("figure_bytes", cells)


class HoldNotebook:
    """Bytes a client receives to hold the default notebook, and the ratio to Jupyter's."""

    def setup_cache(self) -> dict[str, Any]:
        try:
            result = measure()
        except NotImplementedError as exc:
            return missing(exc)
        return {
            "doc": result["doc_bytes"],
            "blobs": result["blob_bytes"],
            "y": result["y_update_bytes"],
            "ratio": result["ratio"],
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
        f"cells={n} doc={r['doc_bytes']} blobs={r['blob_bytes']} ({r['blobs']} blobs) "
        f"total={r['doc_bytes'] + r['blob_bytes']} y_update={r['y_update_bytes']} "
        f"ratio={r['ratio']:.3f}"
    )
