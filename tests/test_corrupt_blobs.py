"""Issue 12 item 5 through the real daemon (Unix socket, on-disk blob store): a blob whose bytes
no longer match its id is never trusted, and a save never replaces an output with a placeholder.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.blob_store import DiskBlobStore
from core.client import NotebookClient
from core.daemon import Daemon, DaemonConfig

from .conftest import write_notebook

WAIT = 30.0  # safety timeout of every condition wait
PNG = base64.b64encode(random.Random(5).randbytes(12_000)).decode()  # over the inline threshold


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    config = DaemonConfig(
        socket_path=tmp_path / "d.sock",
        blob_root=tmp_path / "blobs",
        eviction_delay=0.01,
        notebook_root=tmp_path,
    )
    async with Daemon(config) as d:
        yield d


def notebook(tmp_path: Path) -> Path:
    image = {
        "output_type": "display_data",
        "data": {"image/png": PNG, "text/plain": "<Figure>"},
        "metadata": {},
    }
    cells = [{"id": "img", "source": "plot()", "outputs": [image]}, {"id": "t", "source": "x"}]
    return write_notebook(tmp_path / "nb.ipynb", cells)


async def open_loaded(d: Daemon, nb: Path) -> NotebookClient:
    assert d.config.socket_path is not None
    client = await NotebookClient.connect(d.config.socket_path, nb)
    await asyncio.wait_for(client.wait_loaded(), WAIT)
    return client


def flip_png_blob(d: Daemon, client: NotebookClient) -> Path:
    """Flip one byte of the PNG's content blob on disk (same size) and return its path."""
    store = d.blob_store
    assert isinstance(store, DiskBlobStore)
    manifest = json.loads(store.get(client.doc.get_cells()[0].outputs[0]) or b"")
    path = Path(store.path_of(manifest["data"]["image/png"]["blob"]))
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    return path


def saved_png(nb: Path) -> str:
    output = json.loads(nb.read_text())["cells"][0]["outputs"][0]
    return "".join(output["data"]["image/png"])


async def test_a_save_with_a_corrupt_blob_is_refused_naming_the_output(
    daemon: Daemon, tmp_path: Path
) -> None:
    nb = notebook(tmp_path)
    original = nb.read_bytes()
    client = await open_loaded(daemon, nb)
    other = await open_loaded(daemon, nb)
    flip_png_blob(daemon, client)
    with pytest.raises(
        Exception,
        match=r"save refused: cells\[0\] \(id 'img'\)\.outputs\[0\] cannot be exported: "
        r"blob [0-9a-f]{64} is corrupt: content hash is [0-9a-f]{64}",
    ):
        await client.save()
    assert nb.read_bytes() == original  # the file keeps the output
    await other.ping()  # everyone else is still served
    await client.close()
    await other.close()


async def test_a_reload_repairs_a_corrupt_blob_from_the_file(
    daemon: Daemon, tmp_path: Path
) -> None:
    nb = notebook(tmp_path)
    client = await open_loaded(daemon, nb)
    flip_png_blob(daemon, client)
    await client.close()
    await asyncio.wait_for(daemon.wait_for(lambda: daemon.rooms.evicted == 1), WAIT)

    again = await open_loaded(daemon, nb)  # a fresh load puts the real bytes again
    saved = await again.save()
    assert saved.bytes_written == nb.stat().st_size
    assert saved_png(nb) == PNG  # not "[output could not be resolved]"
    blob = await again.get_blob(again.doc.get_cells()[0].outputs[0])
    assert blob.media_type == "application/x-jupyter-output+json"
    await again.close()
