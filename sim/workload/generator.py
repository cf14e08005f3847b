"""Deterministic, seeded, versioned generator of reference-shaped notebooks.

The default notebook (50 cells, seed 0) mirrors the reference workload of the streaming-load
benchmark (the "gelmanschools" notebook: 50 cells, ~1.4 MB, 11 image outputs). ``cells=N`` scales
it for complexity sweeps with roughly constant bytes per cell.

Determinism across machines: randomness comes only from ``random.Random`` seeded with strings
(SHA-512 based, stable across platforms and Python versions); drawing uses only IEEE basic
arithmetic (no libm transcendental functions); PNGs are hand-encoded with STORED deflate blocks,
so no zlib build can change the bytes. Bump ``GENERATOR_VERSION`` whenever the output bytes change.

This module lays out the notebook and serializes it; the PNG encoder, the plot drawing and
``GENERATOR_VERSION`` live in :mod:`sim.workload.png`, the text templates in
:mod:`sim.workload.text` (the public names of the former are re-exported here).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import random
import re
from dataclasses import dataclass
from typing import Any

from core.atomic import atomic_write
from sim.workload.png import GENERATOR_VERSION as GENERATOR_VERSION
from sim.workload.png import IMAGE_HEIGHT as IMAGE_HEIGHT
from sim.workload.png import IMAGE_POOL_SIZE as IMAGE_POOL_SIZE
from sim.workload.png import IMAGE_WIDTH as IMAGE_WIDTH
from sim.workload.png import PNG_SIGNATURE as PNG_SIGNATURE
from sim.workload.png import _image
from sim.workload.png import encode_png as encode_png
from sim.workload.text import (
    _error_cell,
    _imports_source,
    _markdown,
    _plot_source,
    _result_cell,
    _silent_source,
    _stream_cell,
    _table_cell,
    _warning_text,
)

DEFAULT_CELLS = 50
DEFAULT_SEED = 0
DEFAULT_IMAGES = 11
DEFAULT_NOTEBOOK_SHA256 = "0d2d2ea79ab00a58f5a33ff5c358cfd34739d2915e53c3904f90f3aa25ba53dc"

FIGURE_TEXT = "<Figure size 640x480 with 1 Axes>"


@dataclass(frozen=True, slots=True)
class GeneratedInfo:
    """What ``write_notebook`` produced."""

    path: pathlib.Path
    cells: int
    images: int
    bytes: int
    sha256: str
    generator_version: str


# Images are serialized as placeholders and spliced into the encoded bytes afterwards: the JSON
# encoder then never copies megabytes of base64 around (nor widens them to UCS-4 when the
# notebook text contains non-BMP characters), which keeps 3200-cell notebooks fast.
_PLACEHOLDER = re.compile(rb"<nbstream-png:(\d+)>")


# --------------------------------------------------------------------------- notebook layout
def default_images(cells: int) -> int:
    """Image outputs for ``cells`` cells: round(11 * cells / 50), at least 1 from 5 cells on."""
    count = round(DEFAULT_IMAGES * cells / DEFAULT_CELLS)
    return max(1, count) if cells >= 5 else count


def _layout(cells: int, images: int) -> list[tuple[str, list[int]]]:
    """Per cell: (role, image indices). About 1/3 markdown; images evenly spread over code cells."""
    kinds = ["markdown" if i % 3 == 0 else "code" for i in range(cells)]
    code = [i for i, kind in enumerate(kinds) if kind == "code"]
    if images and not code:
        raise ValueError(f"a {cells}-cell notebook has no code cell to hold {images} images")
    eligible = code[1:] if len(code) - 1 >= images else code
    image_at: dict[int, list[int]] = {}
    for k in range(images):
        image_at.setdefault(eligible[(2 * k + 1) * len(eligible) // (2 * images)], []).append(k)
    cycle = ("stream", "table", "silent", "result")
    layout: list[tuple[str, list[int]]] = []
    j = 0
    for i, kind in enumerate(kinds):
        if kind == "markdown":
            layout.append(("markdown", []))
        elif i in image_at:
            layout.append(("image", image_at[i]))
        elif i == code[0]:
            layout.append(("imports", []))
        else:
            role = "error" if j % 20 == 13 else cycle[j % 4]
            layout.append(("unexecuted" if role == "silent" and j % 8 == 6 else role, []))
            j += 1
    return layout


def _lines(value: str) -> list[str]:
    return value.splitlines(True)


def _stream(name: str, body: str) -> dict[str, Any]:
    return {"name": name, "output_type": "stream", "text": _lines(body)}


def _result(count: int, data: dict[str, Any]) -> dict[str, Any]:
    return {"data": data, "execution_count": count, "metadata": {}, "output_type": "execute_result"}


def _code_cell(
    rng: random.Random, role: str, image_ids: list[int], count: int, seed: int
) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """(source, outputs, metadata) of one code cell."""
    outputs: list[dict[str, Any]] = []
    metadata: dict[str, Any] = {}
    if role == "imports":
        return _imports_source(rng), outputs, metadata
    if role == "image":
        kinds = [_image(seed, k % IMAGE_POOL_SIZE)[0] for k in image_ids]
        source = _plot_source(rng, kinds)
        if image_ids[0] % 4 == 3:
            outputs.append(_stream("stderr", _warning_text(rng)))
        if kinds[-1] == "line" and image_ids[0] % 2 == 1:
            plain = f"[<matplotlib.lines.Line2D at 0x7f{rng.getrandbits(40):010x}>]"
            outputs.append(_result(count, {"text/plain": [plain]}))
        for k in image_ids:
            data = {
                "image/png": f"<nbstream-png:{k % IMAGE_POOL_SIZE}>",
                "text/plain": [FIGURE_TEXT],
            }
            outputs.append({"data": data, "metadata": {}, "output_type": "display_data"})
        return source, outputs, metadata
    if role == "stream":
        source, name, body = _stream_cell(rng)
        outputs.append(_stream(name, body))
        if len(body) > 400:
            metadata["scrolled"] = True
    elif role == "table":
        source, plain, html = _table_cell(rng)
        outputs.append(_result(count, {"text/html": _lines(html), "text/plain": _lines(plain)}))
    elif role == "result":
        source, plain = _result_cell(rng)
        outputs.append(_result(count, {"text/plain": _lines(plain)}))
    elif role == "error":
        source, ename, evalue, tb = _error_cell(rng, count)
        outputs.append({"ename": ename, "evalue": evalue, "output_type": "error", "traceback": tb})
    else:  # silent / unexecuted
        source = _silent_source(rng)
        if rng.random() < 0.25:
            metadata["tags"] = ["hide-input"]
    return source, outputs, metadata


def _build_cells(cells: int, seed: int, images: int) -> list[dict[str, Any]]:
    rng = random.Random(f"nbstream/v{GENERATOR_VERSION}/notebook/{seed}")
    id_rng = random.Random(f"nbstream/v{GENERATOR_VERSION}/ids/{seed}")
    used: set[str] = set()
    out: list[dict[str, Any]] = []
    count = section = 0
    for role, image_ids in _layout(cells, images):
        cid = f"{id_rng.getrandbits(32):08x}"  # like nbformat's uuid4().hex[:8]
        while cid in used:
            cid = f"{id_rng.getrandbits(32):08x}"
        used.add(cid)
        if role == "markdown":
            source = _markdown(rng, section)
            metadata = {"tags": ["intro"]} if section == 0 else {}
            cell: dict[str, Any] = {"cell_type": "markdown", "id": cid, "metadata": metadata}
            out.append(cell | {"source": _lines(source)})
            section += 1
            continue
        execution_count: int | None = None
        if role != "unexecuted":
            count += 2 if rng.random() < 0.2 else 1
            execution_count = count
        source, outputs, metadata = _code_cell(rng, role, image_ids, count, seed)
        cell = {"cell_type": "code", "execution_count": execution_count, "id": cid}
        out.append(cell | {"metadata": metadata, "outputs": outputs, "source": _lines(source)})
    return out


# --------------------------------------------------------------------------- public API
def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return value


def _resolve_images(cells: int, images: int | None) -> int:
    if _check_int("cells", cells) < 0:
        raise ValueError(f"cells must be >= 0, got {cells}")
    n_images = default_images(cells) if images is None else _check_int("images", images)
    if n_images < 0:
        raise ValueError(f"images must be >= 0, got {n_images}")
    return n_images


def generate_notebook(
    cells: int = DEFAULT_CELLS, seed: int = DEFAULT_SEED, *, images: int | None = None
) -> bytes:
    """nbformat 4.5 JSON bytes, serialized the way Jupyter writes them (indent 1, sorted keys)."""
    n_images = _resolve_images(cells, images)
    _check_int("seed", seed)
    language_info = {
        "codemirror_mode": {"name": "ipython", "version": 3},
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "name": "python",
        "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3",
        "version": "3.11.7",
    }
    metadata = {
        "kernelspec": {
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "name": "python3",
        },
        "language_info": language_info,
        "nbstream_generator": {"version": GENERATOR_VERSION, "seed": seed, "cells": cells},
    }
    notebook = {
        "cells": _build_cells(cells, seed, n_images),
        "metadata": metadata,
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    text = json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False)
    encoded = (text + "\n").encode("utf-8")
    return _PLACEHOLDER.sub(lambda m: _image(seed, int(m[1]))[1], encoded)


def notebook_fingerprint(data: bytes) -> str:
    """SHA-256 hex digest of notebook bytes."""
    return hashlib.sha256(data).hexdigest()


def write_notebook(
    path: str | os.PathLike[str],
    cells: int = DEFAULT_CELLS,
    seed: int = DEFAULT_SEED,
    *,
    images: int | None = None,
    mode: int | None = None,
) -> GeneratedInfo:
    """Generate a notebook and write it atomically to ``path`` (for ``nbstream generate``).

    ``mode``: the new file's permission bits (None: 0600, or those of the file replaced)."""
    n_images = _resolve_images(cells, images)
    data = generate_notebook(cells, seed, images=n_images)
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, data, mode=mode)
    digest = notebook_fingerprint(data)
    return GeneratedInfo(target, cells, n_images, len(data), digest, GENERATOR_VERSION)


def _cache_root() -> pathlib.Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return pathlib.Path(xdg) / "nbstream"
    return pathlib.Path.home() / ".cache" / "nbstream"


def default_notebook_path(cache_dir: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Path of the cached default notebook, (re)written atomically if missing or corrupted."""
    root = pathlib.Path(cache_dir) if cache_dir is not None else _cache_root()
    path = root / f"reference-{DEFAULT_CELLS}-seed{DEFAULT_SEED}-v{GENERATOR_VERSION}.ipynb"
    if path.is_file() and notebook_fingerprint(path.read_bytes()) == DEFAULT_NOTEBOOK_SHA256:
        return path
    data = generate_notebook()
    digest = notebook_fingerprint(data)
    if digest != DEFAULT_NOTEBOOK_SHA256:
        raise RuntimeError(
            f"generated default notebook hashes to {digest}, not the pinned "
            f"{DEFAULT_NOTEBOOK_SHA256}: nondeterminism, or output changed without a version bump"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)
    return path
