from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import pathlib
import re
import struct
import subprocess
import sys
import zlib
from collections import Counter
from typing import Any

import nbformat
import pytest

from sim.workload import generator as notebook_gen
from sim.workload.generator import (
    DEFAULT_CELLS,
    DEFAULT_NOTEBOOK_SHA256,
    DEFAULT_SEED,
    GENERATOR_VERSION,
    GeneratedInfo,
    default_images,
    default_notebook_path,
    encode_png,
    generate_notebook,
    notebook_fingerprint,
    write_notebook,
)

# One entry per generator version. Changing the output bytes requires bumping GENERATOR_VERSION
# and adding the new hash here (old entries document what earlier versions produced).
PINNED_DEFAULT_SHA256 = {
    "1": "0d2d2ea79ab00a58f5a33ff5c358cfd34739d2915e53c3904f90f3aa25ba53dc",
}
CELL_ID = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")


@pytest.fixture(scope="module")
def default_bytes() -> bytes:
    return generate_notebook()


@pytest.fixture(scope="module")
def default_nb(default_bytes: bytes) -> dict[str, Any]:
    nb: dict[str, Any] = json.loads(default_bytes)
    return nb


def _outputs(nb: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]


def _pngs(nb: dict[str, Any]) -> list[bytes]:
    return [
        base64.b64decode(o["data"]["image/png"], validate=True)
        for o in _outputs(nb)
        if o["output_type"] == "display_data" and "image/png" in o["data"]
    ]


def check_png(png: bytes) -> tuple[int, int]:
    """Structurally validate an 8-bit RGB PNG; returns (width, height)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        tag, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(tag + data) & 0xFFFFFFFF, tag
        chunks.append((tag, data))
        pos += 12 + length
    assert pos == len(png)
    tags = [t for t, _ in chunks]
    assert tags[0] == b"IHDR" and tags[-1] == b"IEND" and b"IDAT" in tags
    width, height, depth, color, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, color, comp, filt, interlace) == (8, 2, 0, 0, 0)
    idat = b"".join(d for t, d in chunks if t == b"IDAT")
    raw = zlib.decompress(idat)
    stride = 1 + 3 * width
    assert len(raw) == height * stride
    assert all(raw[y * stride] == 0 for y in range(height))  # filter type None on every row
    return width, height


# --------------------------------------------------------------------------- pinning, determinism
def test_default_hash_is_pinned(default_bytes: bytes) -> None:
    assert GENERATOR_VERSION in PINNED_DEFAULT_SHA256, "new version: pin its default hash here"
    assert PINNED_DEFAULT_SHA256[GENERATOR_VERSION] == DEFAULT_NOTEBOOK_SHA256
    assert notebook_fingerprint(default_bytes) == DEFAULT_NOTEBOOK_SHA256
    assert notebook_fingerprint(default_bytes) == hashlib.sha256(default_bytes).hexdigest()
    assert generate_notebook(DEFAULT_CELLS, DEFAULT_SEED) == default_bytes


def test_same_seed_same_bytes_even_with_a_cold_image_cache(default_bytes: bytes) -> None:
    notebook_gen._image.cache_clear()
    assert generate_notebook() == default_bytes
    assert generate_notebook(200, 7) == generate_notebook(200, 7)


def test_different_seed_different_bytes_and_images(default_nb: dict[str, Any]) -> None:
    other = json.loads(generate_notebook(seed=1))
    assert json.dumps(other) != json.dumps(default_nb)
    assert not set(_pngs(other)) & set(_pngs(default_nb))
    assert generate_notebook(seed=-1) != generate_notebook(seed=1)
    assert other["metadata"]["nbstream_generator"]["seed"] == 1


def test_independent_of_hash_randomization() -> None:
    code = "from sim.workload.generator import *; print(notebook_fingerprint(generate_notebook()))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == DEFAULT_NOTEBOOK_SHA256


# --------------------------------------------------------------------------- shape of the default
def test_default_serialization_is_what_jupyter_writes(default_bytes: bytes) -> None:
    text = default_bytes.decode("utf-8")
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert nbformat.writes(nbformat.reads(text, as_version=4)) + "\n" == text
    assert json.dumps(json.loads(text), indent=1, sort_keys=True, ensure_ascii=False) + "\n" == text
    assert any(ord(ch) > 0xFFFF for ch in text)  # non-BMP unicode survives unescaped


def test_default_shape(default_bytes: bytes, default_nb: dict[str, Any]) -> None:
    nb = default_nb
    assert 1_260_000 <= len(default_bytes) <= 1_540_000
    assert (nb["nbformat"], nb["nbformat_minor"]) == (4, 5)
    meta = nb["metadata"]
    assert meta["kernelspec"]["name"] == "python3"
    assert meta["language_info"]["name"] == "python"
    assert meta["nbstream_generator"] == {"version": GENERATOR_VERSION, "seed": 0, "cells": 50}
    cells = nb["cells"]
    assert len(cells) == DEFAULT_CELLS
    types = Counter(c["cell_type"] for c in cells)
    assert types["markdown"] == 17 and types["code"] == 33
    ids = [c["id"] for c in cells]
    assert len(set(ids)) == len(ids) and all(CELL_ID.match(i) for i in ids)
    code = [c for c in cells if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in code if c["execution_count"] is not None]
    assert len(counts) >= 30 and counts == sorted(set(counts))
    assert all(not c["outputs"] for c in code if c["execution_count"] is None)
    for c in code:
        for o in c["outputs"]:
            if o["output_type"] == "execute_result":
                assert o["execution_count"] == c["execution_count"]
    assert all(isinstance(c["source"], list) for c in cells)
    assert sum(len(c["source"]) > 3 for c in code) >= 10  # multi-line sources
    assert any(any(ord(ch) > 127 for ch in "".join(c["source"])) for c in cells)
    assert any(line.startswith("#") for c in cells for line in c["source"][:1])


def test_default_outputs(default_nb: dict[str, Any]) -> None:
    outputs = _outputs(default_nb)
    kinds = Counter(o["output_type"] for o in outputs)
    assert kinds["display_data"] == 11
    assert kinds["stream"] >= 3 and kinds["execute_result"] >= 3 and kinds["error"] == 1
    assert {o["name"] for o in outputs if o["output_type"] == "stream"} == {"stdout", "stderr"}
    assert all(isinstance(o["text"], list) for o in outputs if o["output_type"] == "stream")
    results = [o for o in outputs if o["output_type"] == "execute_result"]
    assert any(
        "text/html" in o["data"] and "<table" in "".join(o["data"]["text/html"]) for o in results
    )
    assert all(isinstance(o["execution_count"], int) for o in results)
    for o in outputs:
        if o["output_type"] == "display_data":
            assert o["data"]["text/plain"] == ["<Figure size 640x480 with 1 Axes>"]
            assert isinstance(o["data"]["image/png"], str)


def test_default_images_are_distinct_valid_pngs(default_nb: dict[str, Any]) -> None:
    pngs = _pngs(default_nb)
    assert len(pngs) == 11 and len(set(pngs)) == 11
    for png in pngs:
        assert check_png(png) == (notebook_gen.IMAGE_WIDTH, notebook_gen.IMAGE_HEIGHT)
    image_bytes = sum(
        len(o["data"]["image/png"])
        for o in _outputs(default_nb)
        if "data" in o and "image/png" in o["data"]
    )
    assert image_bytes > 0.85 * len(generate_notebook())  # images make up most of the file


def test_images_decode_with_pillow(default_nb: dict[str, Any]) -> None:
    image_mod = pytest.importorskip("PIL.Image")
    import io

    for png in _pngs(default_nb)[:3]:
        with image_mod.open(io.BytesIO(png)) as img:
            img.load()
            assert img.mode == "RGB"
            assert img.size == (notebook_gen.IMAGE_WIDTH, notebook_gen.IMAGE_HEIGHT)
            pixels = img.tobytes()
            distinct = {pixels[i : i + 3] for i in range(0, len(pixels), 3)}
            assert len(distinct) > 20  # a picture, not a flat fill


# --------------------------------------------------------------------------- validation, scaling
@pytest.mark.parametrize("cells", [0, 1, 2, 3, 5, 50, 200])
def test_nbformat_validates(cells: int) -> None:
    text = generate_notebook(cells).decode("utf-8")
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    assert len(nb.cells) == cells


def test_default_images_rule() -> None:
    table = {0: 0, 1: 0, 2: 0, 4: 1, 5: 1, 50: 11, 100: 22, 200: 44, 400: 88, 3200: 704}
    assert {n: default_images(n) for n in table} == table
    for n in (5, 6, 7, 10, 23):
        assert default_images(n) >= 1


def test_bytes_scale_linearly_with_cells() -> None:
    small, big = generate_notebook(200), generate_notebook(400)
    assert 1.7 <= len(big) / len(small) <= 2.3
    assert len(_pngs(json.loads(small))) == 44 and len(_pngs(json.loads(big))) == 88


def test_large_notebooks_cycle_a_pool_of_distinct_images() -> None:
    nb = json.loads(generate_notebook(400))
    pngs = _pngs(nb)
    assert len(pngs) == 88 and len(set(pngs)) == notebook_gen.IMAGE_POOL_SIZE
    assert len({c["id"] for c in nb["cells"]}) == 400


def test_images_override() -> None:
    assert not _pngs(json.loads(generate_notebook(images=0)))
    assert len(_pngs(json.loads(generate_notebook(images=3)))) == 3
    crowded = generate_notebook(6, images=10)  # more images than code cells: several per cell
    nbformat.validate(nbformat.reads(crowded.decode(), as_version=4))
    assert len(_pngs(json.loads(crowded))) == 10


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"cells": -1}, ValueError),
        ({"cells": 50, "images": -1}, ValueError),
        ({"cells": 1, "images": 1}, ValueError),  # no code cell to hold the image
        ({"cells": 5.0}, TypeError),
        ({"cells": True}, TypeError),
        ({"cells": 5, "seed": "0"}, TypeError),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        generate_notebook(**kwargs)


def test_encode_png() -> None:
    raw = bytes([0, 255, 0, 0, 0, 0, 255]) * 2  # 2x2: red, blue on each row
    assert check_png(encode_png(2, 2, raw)) == (2, 2)
    big = bytes(200 * (1 + 3 * 300))  # > 65535 bytes: several stored blocks
    assert check_png(encode_png(300, 200, big)) == (300, 200)
    with pytest.raises(ValueError):
        encode_png(2, 2, raw[:-1])


# --------------------------------------------------------------------------- files
def test_write_notebook(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "sub" / "nb.ipynb"
    info = write_notebook(target, cells=20, seed=3)
    data = target.read_bytes()
    assert data == generate_notebook(20, 3)
    assert info == GeneratedInfo(
        target, 20, default_images(20), len(data), notebook_fingerprint(data), GENERATOR_VERSION
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.cells = 1  # type: ignore[misc]
    assert write_notebook(target, 5, images=2).images == 2
    assert sorted(p.name for p in target.parent.iterdir()) == ["nb.ipynb"]  # no temp leftovers


def test_default_notebook_path_writes_once_and_reuses(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = default_notebook_path(tmp_path)
    assert path == tmp_path / f"reference-50-seed0-v{GENERATOR_VERSION}.ipynb"
    assert notebook_fingerprint(path.read_bytes()) == DEFAULT_NOTEBOOK_SHA256
    before = path.stat()

    def boom(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("must not regenerate a valid cached notebook")

    monkeypatch.setattr(notebook_gen, "generate_notebook", boom)
    assert default_notebook_path(str(tmp_path)) == path
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_default_notebook_path_rewrites_a_corrupted_file(tmp_path: pathlib.Path) -> None:
    path = default_notebook_path(tmp_path)
    path.write_bytes(b'{"cells": []}\n')
    assert default_notebook_path(tmp_path) == path
    assert notebook_fingerprint(path.read_bytes()) == DEFAULT_NOTEBOOK_SHA256
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_default_notebook_path_cache_locations(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_notebook_path().parent == tmp_path / "xdg" / "nbstream"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_notebook_path().parent == tmp_path / "home" / ".cache" / "nbstream"


@pytest.mark.slow
def test_3200_cells() -> None:
    data = generate_notebook(3200)
    nb = json.loads(data)
    assert len(nb["cells"]) == 3200
    assert len(_pngs(nb)) == 704
