"""Blobs end to end (protocol version 4): BLOB frames carry raw bytes, binary media are stored
decoded, exports stay byte-exact, and old or hostile peers get one precise answer."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from core.blob_store import MemoryBlobStore
from core.daemon import MAX_SYNC_MESSAGE
from core.framing import FrameType, encode_frame, encode_untyped
from core.ipynb_export import export_notebook
from core.protocol import PROTOCOL_VERSION, parse_connection_info
from sim.cli.open_cmd import fetch_blobs
from sim.workload.generator import generate_notebook

from .conftest import HarnessFactory, write_notebook
from .test_roundtrip import NOTEBOOKS, needs_corpus, roundtrip

PNG = base64.b64encode(bytes(range(256)) * 64).decode()  # canonical, ~22 KB of text


def _image_cells() -> list[dict[str, object]]:
    return [
        {
            "id": "img",
            "source": "plot()",
            "outputs": [
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {"image/png": PNG, "text/plain": "<Figure>"},
                },
                {  # not canonical (trailing newline): stays text, comes back identical
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {"image/png": PNG + "\n"},
                },
            ],
        }
    ]


async def test_blob_bytes_are_raw_and_export_is_byte_exact(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness("socketpair")
    nb = write_notebook(tmp_path / "img.ipynb", _image_cells())
    client = await h.connect(nb)
    await asyncio.wait_for(client.wait_loaded(), 30)
    before = client.statistics().bytes_in
    store = await fetch_blobs(client)
    downloaded = client.statistics().bytes_in - before
    decoded = base64.b64decode(PNG)
    assert store.get(store.put(decoded, "image/png")) == decoded  # the decoded PNG was fetched
    # raw bytes on the wire: well under the base64 text of the two images, let alone base64 of it
    assert downloaded < len(decoded) + len(PNG) + 4096
    exported = json.loads(export_notebook(client.doc, store))
    data = [o["data"]["image/png"] for o in exported["cells"][0]["outputs"]]
    assert data == [PNG, PNG + "\n"]


async def test_old_client_is_refused_in_protocol(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness("socketpair")
    nb = write_notebook(tmp_path / "old.ipynb", _image_cells())
    reader, writer = await h.streams()
    hello = json.dumps({"channel": "open_notebook", "path": str(nb)}).encode()  # a v3 handshake
    writer.write(encode_untyped(hello))
    await writer.drain()
    head = await asyncio.wait_for(reader.readexactly(4), 30)
    info = parse_connection_info(await reader.readexactly(int.from_bytes(head, "big")))
    assert info.error is not None
    assert "protocol_version 3 or older" in info.error
    assert f"this daemon speaks {PROTOCOL_VERSION}" in info.error
    assert info.protocol_version == PROTOCOL_VERSION  # an old client sees "speaks 4" too
    assert await asyncio.wait_for(reader.read(), 30) == b""  # closed after the refusal
    writer.close()


@pytest.mark.parametrize(
    "body",
    [b"", b"\x00\x00", b"\xff\xff\xff\xff{}", b"\x00\x00\x00\x02{x"],
    ids=["empty", "truncated-length", "header-over-cap", "bad-json"],
)
async def test_hostile_blob_frames_from_a_client_do_not_stop_the_daemon(
    body: bytes, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """BLOB frames go daemon → client only: the daemon ignores one from a client and serves on."""
    h = await make_harness("socketpair")
    nb = write_notebook(tmp_path / "h.ipynb", _image_cells())
    client = await h.connect(nb)
    await asyncio.wait_for(client.wait_loaded(), 30)
    client.send_raw(encode_frame(FrameType.BLOB, body))
    await client.ping()
    other = await h.connect(nb, name="other")
    await asyncio.wait_for(other.wait_loaded(), 30)
    assert other.doc.cell_count() == 1


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"\x7f\xff\xff\xff\x08", "frame_too_large"),  # a BLOB frame announcing 2 GiB
        # A 10 MiB paste would be one message: refused from its header, before its body is read.
        ((MAX_SYNC_MESSAGE + 2).to_bytes(4, "big") + bytes([FrameType.SYNC]), "sync_too_large"),
    ],
    ids=["blob-over-the-frame-cap", "sync-over-the-sync-cap"],
)
async def test_a_frame_over_its_cap_closes_only_that_peer_in_protocol(
    header: bytes, reason: str, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness("socketpair")
    nb = write_notebook(tmp_path / "cap.ipynb", _image_cells())
    good = await h.connect(nb, name="good")
    await asyncio.wait_for(good.wait_loaded(), 30)
    bad = await h.connect(nb, name="bad")
    bad.send_raw(header)
    await asyncio.wait_for(bad.closed.wait(), 30)
    assert bad.closing is not None and bad.closing.reason == reason
    await good.ping()
    other = await h.connect(nb, name="other")
    await asyncio.wait_for(other.wait_loaded(), 30)
    assert other.doc.cell_count() == 1


# --------------------------------------------------------------------------- byte-exact round trips
@needs_corpus
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_corpus_binary_values_are_byte_exact(path: Path) -> None:
    """Every string MIME value comes back as the identical text, decoded in the store or not."""
    data = path.read_bytes()
    store = MemoryBlobStore()
    parsed, exported = roundtrip(data, store, via_save=True)
    before = [o for r in parsed.cells for o in r.outputs]
    after = [o for c in json.loads(exported)["cells"] for o in c.get("outputs", [])]
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        for mime, value in (old.get("data") or {}).items() if isinstance(old, dict) else ():
            got = new["data"][mime]
            joined = "".join(value) if isinstance(value, list) else value
            if isinstance(joined, str):
                assert ("".join(got) if isinstance(got, list) else got) == joined, mime


@pytest.mark.parametrize("cells", [50, 200])
def test_generated_notebooks_round_trip_byte_exact(cells: int) -> None:
    data = generate_notebook(cells)
    store = MemoryBlobStore()
    assert roundtrip(data, store, via_save=True)[1] == data
    stored = sum(len(store.get(b) or b"") for b in store.list())
    assert stored < len(data)  # the images are held decoded (3/4 of their base64 text)
