"""Tests for core.blob_store: disk layout, idempotence, caps, id validation, atomicity, races."""

from __future__ import annotations

import builtins
import errno
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from core.blob_store import (
    MAX_BLOB_SIZE,
    BlobMeta,
    BlobStore,
    BlobStoreStatistics,
    DiskBlobStore,
    MemoryBlobStore,
    is_blob_id,
)
from core.errors import BlobStoreError, BlobTooLarge, CoreError, InvalidBlobId

StoreFactory = Callable[..., Any]

DATA = b"hello, blob store\n"
DATA_ID = hashlib.sha256(DATA).hexdigest()
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")

INVALID_IDS = [
    "",
    "../../etc/passwd",
    "../" * 21 + "a",
    "ab/" + "0" * 61,
    "0" * 63,
    "0" * 65,
    "A" * 64,
    "a" * 63 + "A",
    "g" * 64,
    "0" * 63 + "\n",
    "\n" + "0" * 63,
    " " * 64,
    "\uff10" * 64,  # FULLWIDTH DIGIT ZERO: a digit to str.isdigit and \\d, not hex
    "/" + "0" * 63,
    "0" * 62 + "\x00a",
]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def all_files(root: Path) -> list[str]:
    """Every file under root, relative, sorted (empty if root does not exist)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def temp_files(root: Path) -> list[str]:
    return [f for f in all_files(root) if ".tmp" in f]


@pytest.fixture(params=["disk", "memory"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    def factory(**kwargs: Any) -> Any:
        if request.param == "disk":
            return DiskBlobStore(tmp_path / "blobs", **kwargs)
        return MemoryBlobStore(**kwargs)

    return factory


@pytest.fixture
def store(make_store: StoreFactory) -> Any:
    return make_store()


@pytest.fixture
def disk(tmp_path: Path) -> DiskBlobStore:
    return DiskBlobStore(tmp_path / "blobs")


def corrupt(store: Any, blob_id: str, data: bytes) -> None:
    """Replace a stored blob's bytes behind the store's back."""
    if isinstance(store, DiskBlobStore):
        Path(store.path_of(blob_id)).write_bytes(data)
    else:
        _, meta = store._blobs[blob_id]
        store._blobs[blob_id] = (data, meta)


def _forbidden(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"filesystem touched with {args!r}")


@contextmanager
def forbid_filesystem(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with monkeypatch.context() as m:
        for name in (
            "open",
            "stat",
            "lstat",
            "remove",
            "unlink",
            "replace",
            "rename",
            "mkdir",
            "makedirs",
            "scandir",
            "listdir",
            "write",
            "link",
        ):
            m.setattr(os, name, _forbidden)
        for name in ("exists", "isfile", "isdir", "lexists"):
            m.setattr(os.path, name, _forbidden)
        m.setattr(builtins, "open", _forbidden)
        yield


# --------------------------------------------------------------------------- ids
def test_is_blob_id() -> None:
    assert is_blob_id(DATA_ID)
    assert is_blob_id("0" * 64)
    assert is_blob_id("0123456789abcdef" * 4)
    for bad in INVALID_IDS:
        assert not is_blob_id(bad), bad
    assert not is_blob_id(None)  # type: ignore[arg-type]
    assert not is_blob_id(b"0" * 64)  # type: ignore[arg-type]


def test_error_tree() -> None:
    assert issubclass(BlobTooLarge, BlobStoreError)
    assert issubclass(InvalidBlobId, BlobStoreError)
    assert issubclass(BlobStoreError, CoreError)


def test_both_stores_satisfy_the_protocol(tmp_path: Path) -> None:
    stores: list[BlobStore] = [DiskBlobStore(tmp_path), MemoryBlobStore()]
    assert len(stores) == 2


# --------------------------------------------------------------------------- basics
def test_put_get_round_trip(store: Any) -> None:
    blob_id = store.put(DATA, "text/plain")
    assert blob_id == DATA_ID
    assert store.get(blob_id) == DATA
    assert store.exists(blob_id)
    meta = store.get_meta(blob_id)
    assert isinstance(meta, BlobMeta)
    assert meta.media_type == "text/plain"
    assert meta.size == len(DATA)
    assert RFC3339_UTC.fullmatch(meta.created_at)
    assert store.list() == [blob_id]


def test_media_type_does_not_affect_the_id(store: Any) -> None:
    assert store.put(b"x", "a/b") == store.put(b"x", "c/d") == sha(b"x")


def test_empty_and_binary_blobs(store: Any) -> None:
    empty = store.put(b"", "application/octet-stream")
    binary = bytes(range(256)) * 4
    binary_id = store.put(binary, "application/octet-stream")
    assert store.get(empty) == b""
    assert store.get(binary_id) == binary
    assert store.list() == sorted([empty, binary_id])


def test_missing_blob(store: Any) -> None:
    assert store.get(DATA_ID) is None
    assert store.get_meta(DATA_ID) is None
    assert not store.exists(DATA_ID)
    assert not store.delete(DATA_ID)
    assert store.list() == []


def test_delete(store: Any) -> None:
    blob_id = store.put(DATA, "text/plain")
    other = store.put(b"other", "text/plain")
    assert store.delete(blob_id)
    assert not store.exists(blob_id)
    assert store.get(blob_id) is None
    assert store.get_meta(blob_id) is None
    assert not store.delete(blob_id)
    assert store.list() == [other]
    assert store.put(DATA, "text/x") == blob_id  # can be stored again
    assert store.get_meta(blob_id).media_type == "text/x"


def test_idempotent_put_first_media_type_wins(store: Any) -> None:
    first = store.put(DATA, "text/plain")
    second = store.put(DATA, "text/html")
    assert first == second
    assert store.get_meta(first).media_type == "text/plain"
    assert store.list() == [first]
    assert store.statistics() == BlobStoreStatistics(
        puts=2, dedup_hits=1, bytes_written=len(DATA), gets=0
    )


def test_statistics(store: Any) -> None:
    assert store.statistics() == BlobStoreStatistics(0, 0, 0, 0)
    a = store.put(b"aaaa", "t/a")
    store.put(b"bb", "t/b")
    store.put(b"aaaa", "t/a")
    store.get(a)
    store.get(sha(b"missing"))
    store.get_meta(a)
    store.exists(a)
    assert store.statistics() == BlobStoreStatistics(puts=3, dedup_hits=1, bytes_written=6, gets=2)


def test_size_cap(make_store: StoreFactory, tmp_path: Path) -> None:
    store = make_store(max_blob_size=16)
    assert store.put(b"x" * 16, "t/x") == sha(b"x" * 16)
    with pytest.raises(BlobTooLarge, match=r"17 bytes .* 16 bytes"):
        store.put(b"y" * 17, "t/x")
    assert store.list() == [sha(b"x" * 16)]
    assert not store.exists(sha(b"y" * 17))
    assert store.statistics().puts == 1
    if isinstance(store, DiskBlobStore):
        assert temp_files(tmp_path) == []


def test_default_cap_and_bad_cap(tmp_path: Path) -> None:
    assert MAX_BLOB_SIZE == 100 * 1024 * 1024
    assert DiskBlobStore(tmp_path).max_blob_size == MAX_BLOB_SIZE
    assert MemoryBlobStore().max_blob_size == MAX_BLOB_SIZE
    with pytest.raises(ValueError):
        DiskBlobStore(tmp_path, max_blob_size=-1)
    with pytest.raises(ValueError):
        MemoryBlobStore(max_blob_size=-1)


@pytest.mark.parametrize("bad_id", INVALID_IDS)
def test_invalid_ids_never_touch_the_filesystem(
    make_store: StoreFactory, bad_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store()
    store.put(DATA, "text/plain")
    with forbid_filesystem(monkeypatch):
        with pytest.raises(InvalidBlobId):
            store.get(bad_id)
        with pytest.raises(InvalidBlobId):
            store.get_meta(bad_id)
        with pytest.raises(InvalidBlobId):
            store.delete(bad_id)
        assert store.exists(bad_id) is False
    assert store.list() == [DATA_ID]


def test_invalid_ids_with_a_nonexistent_root(tmp_path: Path) -> None:
    store = DiskBlobStore(tmp_path / "does" / "not" / "exist")
    for bad in INVALID_IDS:
        with pytest.raises(InvalidBlobId, match="invalid blob id"):
            store.get(bad)
        assert not store.exists(bad)
    assert store.list() == []
    assert not (tmp_path / "does").exists()


def test_corruption_detected_on_read(store: Any) -> None:
    blob_id = store.put(DATA, "text/plain")
    tampered = b"HELLO, blob store\n"
    corrupt(store, blob_id, tampered)
    with pytest.raises(
        BlobStoreError, match=f"blob {blob_id} is corrupt: content hash is {sha(tampered)}"
    ):
        store.get(blob_id)


def test_concurrent_identical_puts(make_store: StoreFactory, tmp_path: Path) -> None:
    store = make_store()
    data = os.urandom(64 * 1024)
    barrier = threading.Barrier(16)

    def worker(i: int) -> str:
        barrier.wait()
        return store.put(data, f"media/{i}")

    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = list(pool.map(worker, range(16)))
    assert set(ids) == {sha(data)}
    assert store.list() == [sha(data)]
    assert store.get(sha(data)) == data
    assert store.get_meta(sha(data)).media_type.startswith("media/")
    stats = store.statistics()
    assert (stats.puts, stats.dedup_hits, stats.bytes_written) == (16, 15, len(data))
    if isinstance(store, DiskBlobStore):
        blob_id = sha(data)
        assert all_files(tmp_path) == [
            f"blobs/{blob_id[:2]}/{blob_id[2:]}",
            f"blobs/{blob_id[:2]}/{blob_id[2:]}.meta",
        ]


def test_concurrent_puts_from_separate_store_objects(tmp_path: Path) -> None:
    """No shared lock: only the temp-file + rename protocol keeps the root consistent."""
    stores = [DiskBlobStore(tmp_path) for _ in range(4)]
    payloads = [os.urandom(32 * 1024) for _ in range(3)]
    barrier = threading.Barrier(16)

    def worker(i: int) -> str:
        barrier.wait()
        return stores[i % 4].put(payloads[i % 3], f"media/{i}")

    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = list(pool.map(worker, range(16)))
    assert set(ids) == {sha(p) for p in payloads}
    assert temp_files(tmp_path) == []
    assert stores[0].list() == sorted(set(ids))
    for payload in payloads:
        assert stores[1].get(sha(payload)) == payload
        meta = stores[2].get_meta(sha(payload))
        assert meta is not None and meta.size == len(payload)


# --------------------------------------------------------------------------- disk only
def test_disk_layout_and_sidecar(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = DiskBlobStore(root)
    assert not root.exists()  # created lazily
    blob_id = store.put(DATA, "text/plain")
    blob = root / blob_id[:2] / blob_id[2:]
    assert store.path_of(blob_id) == str(blob)
    assert blob.read_bytes() == DATA
    sidecar = json.loads((root / blob_id[:2] / f"{blob_id[2:]}.meta").read_text())
    assert set(sidecar) == {"media_type", "size", "created_at"}
    assert sidecar["media_type"] == "text/plain"
    assert sidecar["size"] == len(DATA)
    assert RFC3339_UTC.fullmatch(sidecar["created_at"])
    assert all_files(root) == [f"{blob_id[:2]}/{blob_id[2:]}", f"{blob_id[:2]}/{blob_id[2:]}.meta"]
    for directory in (root, root / blob_id[:2]):
        assert directory.stat().st_mode & 0o777 == 0o700
    assert blob.stat().st_mode & 0o077 == 0


def test_disk_store_survives_reopen(tmp_path: Path) -> None:
    blob_id = DiskBlobStore(tmp_path).put(DATA, "text/plain")
    reopened = DiskBlobStore(tmp_path)
    assert reopened.get(blob_id) == DATA
    assert reopened.put(DATA, "text/other") == blob_id
    assert reopened.statistics().dedup_hits == 1
    assert reopened.get_meta(blob_id).media_type == "text/plain"


def test_list_skips_junk(disk: DiskBlobStore, tmp_path: Path) -> None:
    blob_id = disk.put(DATA, "text/plain")
    root = tmp_path / "blobs"
    shard = root / blob_id[:2]
    (shard / ".tmp.1234").write_bytes(b"partial")
    (shard / ".tmp.1234.meta").write_bytes(b"{}")
    (shard / ("0" * 62 + ".meta")).write_text("{}")  # orphan sidecar
    (shard / ("0" * 61)).write_bytes(b"short name")
    (shard / ("A" * 62)).write_bytes(b"uppercase")
    (shard / ("1" * 62)).mkdir()  # a directory with a blob-like name
    (root / "README").write_text("not a shard")
    (root / "zz").mkdir()
    (root / "zz" / ("2" * 62)).write_bytes(b"bad shard")
    (root / "AB").mkdir()
    (root / "AB" / ("3" * 62)).write_bytes(b"uppercase shard")
    (root / "abc").mkdir()
    assert disk.list() == [blob_id]


def test_list_on_missing_root(tmp_path: Path) -> None:
    assert DiskBlobStore(tmp_path / "nope").list() == []


def test_crash_between_temp_write_and_rename(
    disk: DiskBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(src: str, dst: str) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO), src)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", crash)
        with pytest.raises(BlobStoreError, match=f"blob store write failed for {DATA_ID}: "):
            disk.put(DATA, "text/plain")
    assert all_files(tmp_path) == []
    assert not disk.exists(DATA_ID)
    assert disk.list() == []
    assert disk.statistics().puts == 0
    assert disk.put(DATA, "text/plain") == DATA_ID  # works once the fault is gone
    assert disk.get(DATA_ID) == DATA


def test_sidecar_rename_failure_removes_the_new_blob(
    disk: DiskBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        if dst.endswith(".meta"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", replace)
        with pytest.raises(BlobStoreError, match=r"\[Errno 5\]"):
            disk.put(DATA, "text/plain")
    assert all_files(tmp_path) == []


def test_failed_rename_onto_existing_target_is_a_concurrent_write(
    disk: DiskBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def replace_then_fail(src: str, dst: str) -> None:
        real_replace(src, dst)  # "another writer" got there first
        raise OSError(errno.EEXIST, os.strerror(errno.EEXIST))

    with monkeypatch.context() as m:
        m.setattr(os, "replace", replace_then_fail)
        assert disk.put(DATA, "text/plain") == DATA_ID
    assert disk.get(DATA_ID) == DATA
    assert disk.get_meta(DATA_ID).media_type == "text/plain"
    assert temp_files(tmp_path) == []


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("fail_on_call", [1, 2, 3])
def test_disk_full(
    disk: DiskBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_on_call: int
) -> None:
    """ENOSPC on the 1st write (blob), 2nd (blob, after a short write) or 3rd (sidecar)."""
    real_write = os.write
    calls = 0

    def write(fd: int, data: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == fail_on_call:
            raise _enospc()
        if calls == 1 and fail_on_call > 1:
            return real_write(fd, bytes(data)[:5])  # a short write: the loop must continue
        return real_write(fd, data)

    with monkeypatch.context() as m:
        m.setattr(os, "write", write)
        with pytest.raises(BlobStoreError) as info:
            disk.put(DATA, "text/plain")
    assert str(info.value) == (
        f"blob store write failed for {DATA_ID}: [Errno 28] No space left on device"
    )
    assert isinstance(info.value.__cause__, OSError)
    assert all_files(tmp_path) == []
    assert disk.list() == []


def test_short_writes_are_completed(disk: DiskBlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def trickle(fd: int, data: Any) -> int:
        return real_write(fd, bytes(data)[:7])

    payload = os.urandom(100)
    with monkeypatch.context() as m:
        m.setattr(os, "write", trickle)
        blob_id = disk.put(payload, "application/octet-stream")
    assert disk.get(blob_id) == payload
    assert disk.get_meta(blob_id).size == 100


def test_missing_sidecar_is_repaired(disk: DiskBlobStore) -> None:
    blob_id = disk.put(DATA, "text/plain")
    os.remove(disk.path_of(blob_id) + ".meta")  # as if we crashed between the two renames
    assert disk.get_meta(blob_id) is None
    assert disk.put(DATA, "text/html") == blob_id
    assert disk.get_meta(blob_id).media_type == "text/html"
    assert disk.statistics().dedup_hits == 0


def test_truncated_blob_is_rewritten_by_put(disk: DiskBlobStore) -> None:
    blob_id = disk.put(DATA, "text/plain")
    Path(disk.path_of(blob_id)).write_bytes(DATA[:3])
    with pytest.raises(BlobStoreError, match="is corrupt"):
        disk.get(blob_id)
    assert disk.put(DATA, "text/html") == blob_id
    assert disk.get(blob_id) == DATA
    assert disk.get_meta(blob_id).media_type == "text/plain"  # sidecar kept


def test_corrupt_sidecar(disk: DiskBlobStore) -> None:
    blob_id = disk.put(DATA, "text/plain")
    meta_path = Path(disk.path_of(blob_id) + ".meta")
    for bad in (b"not json", b"[]", b'{"media_type": 1, "size": 1, "created_at": "x"}', b"{}"):
        meta_path.write_bytes(bad)
        with pytest.raises(BlobStoreError, match=f"metadata of blob {blob_id} is corrupt"):
            disk.get_meta(blob_id)


def test_read_errors_become_blob_store_errors(disk: DiskBlobStore) -> None:
    blob_id = sha(b"a directory")
    path = Path(disk.path_of(blob_id))
    path.mkdir(parents=True)
    Path(str(path) + ".meta").mkdir()
    with pytest.raises(BlobStoreError, match=f"blob store read failed for {blob_id}: "):
        disk.get(blob_id)
    with pytest.raises(BlobStoreError, match="read failed"):
        disk.get_meta(blob_id)
    assert not disk.exists(blob_id)
    with pytest.raises(BlobStoreError, match="delete failed"):
        disk.delete(blob_id)


def test_root_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "file"
    root.write_text("x")
    store = DiskBlobStore(root)
    with pytest.raises(BlobStoreError, match=f"blob store write failed for {DATA_ID}: "):
        store.put(DATA, "text/plain")
    with pytest.raises(BlobStoreError, match="list failed"):
        store.list()
    assert root.read_text() == "x"
