"""Blob garbage collection (issue 12 item 9) through the real daemon on a real Unix socket with
the on-disk store: reopening a changed notebook no longer grows the store without bound, and a
collection that runs while a load is putting blobs never deletes one the load needs."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

from core import protocol as p
from core.blob_gc import LOCK_NAME, GcReport, LoadPins
from core.blob_store import BlobStore, DiskBlobStore, MemoryBlobStore, is_blob_id
from core.client import NotebookClient
from core.manifest import manifest_blob_ids
from core.room import NotebookRoom

from .conftest import Harness, HarnessFactory, write_notebook

WAIT = 30.0
CELLS = 12  # 4 batches of 3; every cell has one output: a manifest blob and a PNG blob
PNG_BYTES = 12_000  # base64 of it is over the 8 KiB inline threshold: a content blob


def png_output(seed: int) -> dict[str, Any]:
    data = random.Random(seed).randbytes(PNG_BYTES)
    return {
        "output_type": "display_data",
        "data": {"image/png": base64.b64encode(data).decode(), "text/plain": f"<png {seed}>"},
        "metadata": {},
    }


def versioned_notebook(path: Path, seeds: list[int]) -> list[dict[str, Any]]:
    """One cell per seed, its output a PNG drawn from the seed; returns the outputs."""
    outputs = [png_output(seed) for seed in seeds]
    write_notebook(
        path,
        [
            {"id": f"c{i}", "source": f"plot({seed})", "outputs": [out]}
            for i, (seed, out) in enumerate(zip(seeds, outputs, strict=True))
        ],
    )
    return outputs


def joined(output: dict[str, Any]) -> dict[str, Any]:
    """``output`` with its MIME values as single strings (nbformat writes text as a list)."""
    if "data" not in output:  # e.g. the "[output could not be resolved]" placeholder
        return output
    data = {k: "".join(v) if isinstance(v, list) else v for k, v in output["data"].items()}
    return {**output, "data": data}


def disk_store(h: Harness, tmp: Path) -> DiskBlobStore:
    store = DiskBlobStore(tmp / "blobs")
    h.daemon.blob_store = store  # before any connection
    return store


def stored_bytes(store: DiskBlobStore) -> int:
    return sum(Path(store.path_of(blob_id)).stat().st_size for blob_id in store.list())


async def check_outputs(client: NotebookClient, nb: Path, expected: list[dict[str, Any]]) -> None:
    """The save writes every output back exactly, and every blob the document names is served."""
    saved = await asyncio.wait_for(client.save(), WAIT)
    cells = json.loads(Path(saved.path).read_text())["cells"]
    assert [[joined(o) for o in c["outputs"]] for c in cells] == [[out] for out in expected]
    manifests, contents = 0, 0
    for cell in client.doc.get_cells():
        for ref in cell.outputs:
            assert is_blob_id(ref)
            manifest = await asyncio.wait_for(
                client.request(p.GetBlob(client.next_id(), ref)), WAIT
            )
            assert isinstance(manifest, p.Blob), manifest
            manifests += 1
            for blob_id in manifest_blob_ids(manifest.data):
                blob = await asyncio.wait_for(
                    client.request(p.GetBlob(client.next_id(), blob_id)), WAIT
                )
                assert isinstance(blob, p.Blob), blob
                contents += 1
    assert manifests == contents == len(expected)


async def leave(h: Harness, client: NotebookClient) -> None:
    """Close the client and wait until its room is evicted (its blobs are garbage then)."""
    await client.close()
    daemon = h.daemon
    await asyncio.wait_for(daemon.wait_for(lambda: len(daemon.rooms) == 0), WAIT)


async def test_reopening_a_changed_notebook_keeps_the_store_bounded(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """Every reopen of a changed notebook used to leave its old outputs' blobs behind forever."""
    h = await make_harness("unix", gc_interval=None)
    store = disk_store(h, tmp_path)
    nb = tmp_path / "nb.ipynb"
    one_version = 0
    for version in range(5):
        expected = versioned_notebook(nb, [100 * version + i for i in range(CELLS)])
        client = await h.connect(nb)
        await asyncio.wait_for(client.wait_loaded(), WAIT)
        before = stored_bytes(store)
        report = await h.daemon.collect_garbage()
        assert report.kept == 2 * CELLS and report.skipped is None
        assert report.deleted == (0 if version == 0 else 2 * CELLS)
        assert report.bytes_freed == before - stored_bytes(store)
        assert len(store.list()) == 2 * CELLS  # without the collection: 2 * CELLS * (version + 1)
        one_version = one_version or stored_bytes(store)
        assert stored_bytes(store) <= one_version * 1.01
        await check_outputs(client, nb, expected)
        await leave(h, client)
    report = await h.daemon.collect_garbage()  # no room open: nothing is referenced
    assert (report.kept, report.deleted, store.list()) == (0, 2 * CELLS, [])
    client = await h.connect(nb)  # the blobs come back from the file
    await asyncio.wait_for(client.wait_loaded(), WAIT)
    await check_outputs(client, nb, expected)


async def test_a_collection_run_inside_a_load_keeps_what_the_load_holds(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """The collection runs from the loader's before_batch hook, with half the cells loaded."""
    reports: list[GcReport] = []
    daemon_box: list[Any] = []

    async def hook(room: NotebookRoom, index: int) -> None:
        if index == 2 and armed:
            reports.append(await daemon_box[0].collect_garbage())

    armed = False
    h = await make_harness("unix", gc_interval=None, before_batch=hook)
    daemon_box.append(h.daemon)
    disk_store(h, tmp_path)
    nb = tmp_path / "nb.ipynb"
    versioned_notebook(nb, list(range(CELLS)))  # version A
    client = await h.connect(nb)
    await asyncio.wait_for(client.wait_loaded(), WAIT)
    await leave(h, client)
    # Version B: the first 6 cells changed, the last 6 as in A (their blobs are A's orphans).
    expected = versioned_notebook(nb, [1000 + i for i in range(6)] + list(range(6, CELLS)))
    armed = True
    client = await h.connect(nb)
    status = await asyncio.wait_for(client.wait_loaded(), WAIT)
    assert status.phase == "ready" and status.cells_loaded == CELLS
    (report,) = reports
    # Marked: B's first two batches (in the loading room). Deleted: all of A's blobs, the six
    # cells B shares with A included: the load had not put those yet, and puts them again.
    assert (report.kept, report.deleted, report.pinned) == (12, 24, 0)
    await check_outputs(client, nb, expected)
    again = await h.daemon.collect_garbage()
    assert (again.kept, again.deleted) == (2 * CELLS, 0)


async def test_a_sweep_between_a_loads_put_and_its_insert_never_deletes_the_blob(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """The race a collection can lose: it marks, the load puts blobs it already had (a dedup hit
    on an orphan: nothing changes on disk) and inserts their hashes, then the sweep runs. The
    hook makes that order exact: mark before batch 2, sweep once batch 2 is in the document."""
    reports: list[GcReport] = []
    collections: list[asyncio.Task[GcReport]] = []
    daemon_box: list[Any] = []
    armed = False

    async def hook(room: NotebookRoom, index: int) -> None:
        if not armed:
            return
        if index == 2:
            marked = asyncio.Event()

            async def before_sweep() -> None:
                marked.set()
                key, sub = room.subscribe("gc-probe")
                try:
                    while room.doc.cell_count() < 9:  # batch 2 inserted
                        await sub.wait()
                finally:
                    room.unsubscribe(key)

            collect = daemon_box[0].collect_garbage(before_sweep=before_sweep)
            collections.append(asyncio.create_task(collect))
            await marked.wait()
        if index == 3:  # batch 3 waits for the sweep: the counts below are exact
            reports.append(await collections[0])

    h = await make_harness("unix", gc_interval=None, before_batch=hook)
    daemon_box.append(h.daemon)
    disk_store(h, tmp_path)
    nb = tmp_path / "nb.ipynb"
    versioned_notebook(nb, list(range(CELLS)))  # version A
    client = await h.connect(nb)
    await asyncio.wait_for(client.wait_loaded(), WAIT)
    await leave(h, client)
    expected = versioned_notebook(nb, [1000 + i for i in range(6)] + list(range(6, CELLS)))
    armed = True
    client = await h.connect(nb)
    status = await asyncio.wait_for(client.wait_loaded(), WAIT)
    assert status.phase == "ready" and status.cells_loaded == CELLS
    await check_outputs(client, nb, expected)  # nothing the load needed was lost
    (report,) = reports
    # Kept: B's first 6 cells (marked) and batch 2's 3 cells, pinned by the load (not marked:
    # they were inserted after the mark). Deleted: A's first 6 cells and A's batch 3 (which
    # the load puts again after the sweep).
    assert (report.kept, report.pinned, report.deleted) == (18, 6, 18)


async def test_no_collection_while_another_process_holds_the_store(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness("unix", gc_interval=None)
    store = disk_store(h, tmp_path)
    orphan = store.put(b"an orphan", "text/plain")
    lock = Path(store.root) / LOCK_NAME
    holder = subprocess.Popen(  # noqa: ASYNC220 (a helper process that holds a lock)
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
            "fcntl.lockf(fd, fcntl.LOCK_SH)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.to_thread(holder.stdout.readline) == "locked\n"
        report = await h.daemon.collect_garbage()
        assert report == GcReport(
            0, 0, 0, skipped=f"another process uses the blob store at {store.root}"
        )
        assert store.list() == [orphan]
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.wait(timeout=WAIT)
        holder.stdout.close()
    report = await h.daemon.collect_garbage()
    assert (report.deleted, report.skipped, store.list()) == (1, None, [])


async def test_the_daemon_collects_periodically(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness("unix", gc_interval=0.05)
    store = disk_store(h, tmp_path)
    store.put(b"an orphan", "text/plain")
    daemon = h.daemon
    await asyncio.wait_for(
        daemon.wait_for(lambda: daemon.gc.last is not None and daemon.gc.last.deleted == 1), WAIT
    )
    assert store.list() == []


def test_a_put_that_loses_the_race_to_a_sweep_stores_its_blob_again() -> None:
    """The one instant the pin cannot cover: a sweep deletes the blob right after the put
    stored it (a dedup hit) and before the pin. The put sees it gone and stores it again."""
    store = MemoryBlobStore()
    pins = LoadPins()
    blob_id = store.put(b"an orphan's bytes", "text/plain")

    class SweptAfterPut:
        swept = False

        def put(self, data: bytes, media_type: str) -> str:
            got = store.put(data, media_type)
            if not self.swept:  # not pinned yet: the sweep deletes it
                self.swept = pins.delete_unless_pinned(store, got)
                assert self.swept
            return got

        def exists(self, blob_id: str) -> bool:
            return store.exists(blob_id)

    token, pinning = pins.store_for_load(cast(BlobStore, SweptAfterPut()))
    assert pinning.put(b"an orphan's bytes", "text/plain") == blob_id
    assert store.get(blob_id) == b"an orphan's bytes"
    assert not pins.delete_unless_pinned(store, blob_id)  # pinned while the load runs
    pins.load_ended(token)
    assert not pins.delete_unless_pinned(store, blob_id)  # ... and until the next collection
    pins.begin_collection()
    assert pins.delete_unless_pinned(store, blob_id)
