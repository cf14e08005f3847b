"""Content-addressed blob store (reference §3.1).

A blob's id is the SHA-256 of its raw bytes as 64 lowercase hex characters; the media type does
not affect the id. :class:`DiskBlobStore` lays blobs out as ``<root>/<id[0:2]>/<id[2:]>`` with a
JSON sidecar ``<...>.meta`` = ``{"media_type":…,"size":N,"created_at":"…Z"}``.
:class:`MemoryBlobStore` has the same semantics, caps and errors in a dict (simulator, benchmarks).

Decisions shared by both stores:

* ``put`` rejects blobs above ``max_blob_size`` with :class:`BlobTooLarge`; it is idempotent and
  the **first media type wins** (a later put of the same bytes is a dedup hit that changes nothing).
* ``get`` / ``get_meta`` / ``delete`` raise :class:`InvalidBlobId` for anything that is not exactly
  64 lowercase hex characters, *before* building a path: an invalid id never touches the
  filesystem (so path traversal is impossible). Raising rather than answering ``None`` keeps "this
  blob is absent" distinct from "the caller passed garbage". ``exists`` is a predicate and answers
  ``False`` for invalid ids.
* Every ``get`` re-hashes the bytes it read; a mismatch raises :class:`BlobStoreError`
  ``"blob <id> is corrupt: content hash is <other>"``; ``put`` compares a stored blob's bytes
  with the ones given, so a damaged blob is rewritten (repaired) instead of trusted.
* Every ``OSError`` becomes :class:`BlobStoreError` with a precise message, e.g.
  ``"blob store write failed for <id>: [Errno 28] No space left on device"``.

Disk writes go to ``.tmp.nbstream-<pid>-<uuid>`` (blob) and ``.tmp.nbstream-<pid>-<uuid>.meta``
(sidecar) in the shard directory (the reference's ``.tmp.<uuid>``, plus the writer's pid so that
:func:`remove_stale_temp_files` can tell a killed writer's leftovers at start),
are closed, then renamed over the target with :func:`os.replace` (atomic; no fsync). A failed rename
whose target now exists is a concurrent identical write and counts as success. If the sidecar
cannot be written and this call created the blob, the blob is removed again. Temp files never
survive a failed call. Directories are created with mode ``0o700``. Puts may run on worker threads:
puts of the same id are serialised per shard inside one store object, and the rename protocol keeps
several store objects (or processes) sharing a root consistent.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from core.atomic import atomic_write, temp_writer_gone
from core.errors import BlobCorrupt, BlobStoreError, BlobTooLarge, InvalidBlobId

__all__ = [
    "MAX_BLOB_SIZE",
    "BlobMeta",
    "BlobStore",
    "BlobStoreStatistics",
    "DiskBlobStore",
    "MemoryBlobStore",
    "is_blob_id",
    "remove_stale_temp_files",
]

MAX_BLOB_SIZE = 100 * 1024 * 1024

_BLOB_ID_RE = re.compile(r"[0-9a-f]{64}")
_SHARD_RE = re.compile(r"[0-9a-f]{2}")
_REST_RE = re.compile(r"[0-9a-f]{62}")
_DIR_MODE = 0o700
_FILE_MODE = 0o600
_META_SUFFIX = ".meta"
_TMP_PREFIX = ".tmp"


def is_blob_id(value: str) -> bool:
    """True iff ``value`` is exactly 64 lowercase hex characters (a SHA-256 hex digest)."""
    return isinstance(value, str) and _BLOB_ID_RE.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class BlobMeta:
    """The sidecar of a blob: media type given at first put, byte size, creation time."""

    media_type: str
    size: int
    created_at: str  # RFC 3339 UTC, e.g. "2025-11-25T08:13:00.123Z"


@dataclass(frozen=True, slots=True)
class BlobStoreStatistics:
    """Counters since the store object was created.

    ``puts``: successful ``put`` calls (dedup hits included); ``dedup_hits``: puts that found the
    blob already stored; ``bytes_written``: blob bytes newly stored (sidecars excluded);
    ``gets``: ``get`` calls with a valid id (hits and misses).
    """

    puts: int
    dedup_hits: int
    bytes_written: int
    gets: int


class BlobStore(Protocol):
    """What the core needs from a blob store (satisfied by both stores in this module)."""

    def put(self, data: bytes, media_type: str) -> str: ...
    def get(self, blob_id: str) -> bytes | None: ...
    def get_meta(self, blob_id: str) -> BlobMeta | None: ...
    def exists(self, blob_id: str) -> bool: ...
    def delete(self, blob_id: str) -> bool: ...
    def list(self) -> builtins.list[str]: ...
    def statistics(self) -> BlobStoreStatistics: ...


# --------------------------------------------------------------------------- helpers
def _now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _too_large(size: int, limit: int) -> BlobTooLarge:
    return BlobTooLarge(f"blob of {size} bytes exceeds the maximum blob size of {limit} bytes")


def _require_id(blob_id: str) -> None:
    if not is_blob_id(blob_id):
        raise InvalidBlobId(f"invalid blob id {blob_id!r}: expected 64 lowercase hex characters")


def _check_hash(blob_id: str, data: bytes) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != blob_id:
        raise BlobCorrupt(f"blob {blob_id} is corrupt: content hash is {actual}")


def _describe(exc: OSError) -> str:
    """``[Errno N] message`` without the (temp) file name; ``str(exc)`` if there is no errno."""
    if exc.errno is not None and exc.strerror:
        return f"[Errno {exc.errno}] {exc.strerror}"
    return str(exc)


def _meta_bytes(media_type: str, size: int) -> bytes:
    meta = {"media_type": media_type, "size": size, "created_at": _now_rfc3339()}
    return json.dumps(meta, separators=(",", ":")).encode()


def _parse_meta(blob_id: str, raw: bytes) -> BlobMeta:
    try:
        obj = json.loads(raw)
        media_type, size, created_at = obj["media_type"], obj["size"], obj["created_at"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BlobCorrupt(f"metadata of blob {blob_id} is corrupt: {exc}") from exc
    if not (
        isinstance(media_type, str)
        and type(size) is int
        and size >= 0
        and isinstance(created_at, str)
    ):
        raise BlobCorrupt(f"metadata of blob {blob_id} is corrupt: wrong field types")
    return BlobMeta(media_type=media_type, size=size, created_at=created_at)


class _Counters:
    """Thread-safe statistics counters."""

    __slots__ = ("_bytes_written", "_dedup_hits", "_gets", "_lock", "_puts")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._puts = 0
        self._dedup_hits = 0
        self._bytes_written = 0
        self._gets = 0

    def put(self, *, dedup: bool, written: int) -> None:
        with self._lock:
            self._puts += 1
            self._dedup_hits += dedup
            self._bytes_written += written

    def get(self) -> None:
        with self._lock:
            self._gets += 1

    def snapshot(self) -> BlobStoreStatistics:
        with self._lock:
            return BlobStoreStatistics(
                puts=self._puts,
                dedup_hits=self._dedup_hits,
                bytes_written=self._bytes_written,
                gets=self._gets,
            )


# --------------------------------------------------------------------------- disk
class DiskBlobStore:
    """The on-disk store (see the module docstring for layout and guarantees).

    The root directory is created lazily by the first ``put``; reading from a store whose root does
    not exist yet finds nothing.
    """

    __slots__ = ("_counters", "_locks", "_max_blob_size", "_root")

    def __init__(self, root: str | os.PathLike[str], *, max_blob_size: int = MAX_BLOB_SIZE) -> None:
        if max_blob_size < 0:
            raise ValueError(f"max_blob_size must be >= 0, got {max_blob_size}")
        self._root = os.path.abspath(os.fspath(root))
        self._max_blob_size = max_blob_size
        self._locks = tuple(threading.Lock() for _ in range(256))  # one per shard
        self._counters = _Counters()

    def __repr__(self) -> str:
        return f"DiskBlobStore({self._root!r}, max_blob_size={self._max_blob_size})"

    @property
    def root(self) -> str:
        return self._root

    @property
    def max_blob_size(self) -> int:
        return self._max_blob_size

    def path_of(self, blob_id: str) -> str:
        """The file holding ``blob_id`` (which need not exist). Raises InvalidBlobId."""
        _require_id(blob_id)
        return os.path.join(self._root, blob_id[:2], blob_id[2:])

    # ---------------------------------------------------------------- write
    def put(self, data: bytes, media_type: str) -> str:
        size = len(data)
        if size > self._max_blob_size:
            raise _too_large(size, self._max_blob_size)
        blob_id = hashlib.sha256(data).hexdigest()
        shard = os.path.join(self._root, blob_id[:2])
        path = os.path.join(shard, blob_id[2:])
        meta_path = path + _META_SUFFIX
        with self._locks[int(blob_id[:2], 16)]:
            try:
                written = self._put_locked(data, media_type, shard, path, meta_path)
            except OSError as exc:
                raise BlobStoreError(
                    f"blob store write failed for {blob_id}: {_describe(exc)}"
                ) from exc
        self._counters.put(dedup=written is None, written=written or 0)
        return blob_id

    def _put_locked(
        self, data: bytes, media_type: str, shard: str, path: str, meta_path: str
    ) -> int | None:
        """Store ``data``; None for a dedup hit, else the number of blob bytes written.

        A stored blob counts only if its bytes are ``data`` (compared, not just its size): a
        bit flipped on disk is repaired by the next put of the real bytes, e.g. a reload."""
        try:
            blob_ok = _holds(path, data)
            blob_existed = True
        except FileNotFoundError:
            blob_ok = blob_existed = False
        if blob_ok and os.path.exists(meta_path):
            return None
        written = 0
        created = False
        if not blob_ok:  # absent, or present with the wrong size (damaged): (re)write it
            created = self._atomic_write(shard, path, data) and not blob_existed
            written = len(data)
        if not os.path.exists(meta_path):
            try:
                meta_bytes = _meta_bytes(media_type, len(data))
                self._atomic_write(shard, meta_path, meta_bytes, meta=True)
            except OSError:
                if created:
                    with suppress(OSError):
                        os.remove(path)
                raise
        return written

    def _ensure_dir(self, shard: str) -> None:
        try:
            os.mkdir(shard, _DIR_MODE)
        except FileExistsError:
            return
        except FileNotFoundError:
            os.makedirs(self._root, _DIR_MODE, exist_ok=True)
            with suppress(FileExistsError):
                os.mkdir(shard, _DIR_MODE)

    def _atomic_write(self, shard: str, target: str, payload: bytes, *, meta: bool = False) -> bool:
        """Put ``payload`` at ``target`` through a ``.tmp.*`` file in ``shard``.

        Returns True if our rename put the file in place, False if the rename failed but the
        target now exists (a concurrent identical write won). Never leaves the temp file behind.
        The shard directory is created only when the temp file cannot be (no ``mkdir`` per put).
        """
        try:
            try:
                self._write_via_temp(target, payload, meta)
            except FileNotFoundError:
                self._ensure_dir(shard)
                self._write_via_temp(target, payload, meta)
        except OSError:
            if not os.path.exists(target):
                raise
            return False
        return True

    @staticmethod
    def _write_via_temp(target: str, payload: bytes, meta: bool) -> None:
        atomic_write(
            target,
            payload,
            durable=False,
            mode=_FILE_MODE,
            tmp_prefix=f"{_TMP_PREFIX}.",
            tmp_suffix=_META_SUFFIX if meta else "",
        )

    # ---------------------------------------------------------------- read
    def get(self, blob_id: str) -> bytes | None:
        """The blob's bytes, or None if absent. Raises InvalidBlobId / BlobStoreError (corrupt)."""
        _require_id(blob_id)
        self._counters.get()
        path = os.path.join(self._root, blob_id[:2], blob_id[2:])
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BlobStoreError(f"blob store read failed for {blob_id}: {_describe(exc)}") from exc
        _check_hash(blob_id, data)
        return data

    def get_meta(self, blob_id: str) -> BlobMeta | None:
        """The blob's sidecar, or None if absent. Raises InvalidBlobId / BlobStoreError."""
        _require_id(blob_id)
        meta_path = os.path.join(self._root, blob_id[:2], blob_id[2:] + _META_SUFFIX)
        try:
            with open(meta_path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BlobStoreError(
                f"blob store read failed for {blob_id} metadata: {_describe(exc)}"
            ) from exc
        return _parse_meta(blob_id, raw)

    def exists(self, blob_id: str) -> bool:
        """True iff the blob file exists; False for invalid ids (never touches the filesystem)."""
        if not is_blob_id(blob_id):
            return False
        return os.path.isfile(os.path.join(self._root, blob_id[:2], blob_id[2:]))

    def delete(self, blob_id: str) -> bool:
        """Remove blob and sidecar; True if the blob existed. Raises InvalidBlobId."""
        _require_id(blob_id)
        path = os.path.join(self._root, blob_id[:2], blob_id[2:])
        with self._locks[int(blob_id[:2], 16)]:
            try:
                existed = _remove_if_present(path)
                _remove_if_present(path + _META_SUFFIX)
            except OSError as exc:
                raise BlobStoreError(
                    f"blob store delete failed for {blob_id}: {_describe(exc)}"
                ) from exc
        return existed

    def list(self) -> builtins.list[str]:
        """Sorted ids of the stored blobs; skips sidecars, temp files and any other junk."""
        ids: builtins.list[str] = []
        try:
            shards = _scan(
                self._root,
                lambda e: bool(_SHARD_RE.fullmatch(e.name)) and e.is_dir(follow_symlinks=False),
            )
            for shard in shards:
                names = _scan(
                    shard.path,
                    lambda e: bool(_REST_RE.fullmatch(e.name)) and e.is_file(follow_symlinks=False),
                )
                ids.extend(shard.name + e.name for e in names)
        except OSError as exc:
            raise BlobStoreError(f"blob store list failed: {_describe(exc)}") from exc
        ids.sort()
        return ids

    def statistics(self) -> BlobStoreStatistics:
        return self._counters.snapshot()


def _holds(path: str, data: bytes) -> bool:
    """True iff the file at ``path`` holds exactly ``data`` (size first, then the bytes)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size != len(data):
            return False
        return f.read() == data


def _remove_if_present(path: str) -> bool:
    try:
        os.remove(path)
    except FileNotFoundError:
        return False
    return True


def _scan(
    directory: str, keep: Callable[[os.DirEntry[str]], bool]
) -> builtins.list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return [e for e in it if keep(e)]
    except FileNotFoundError:
        return []


# --------------------------------------------------------------------------- memory
class MemoryBlobStore:
    """In-memory store with the disk store's semantics, caps and errors (thread-safe)."""

    __slots__ = ("_blobs", "_counters", "_lock", "_max_blob_size")

    def __init__(self, *, max_blob_size: int = MAX_BLOB_SIZE) -> None:
        if max_blob_size < 0:
            raise ValueError(f"max_blob_size must be >= 0, got {max_blob_size}")
        self._max_blob_size = max_blob_size
        self._blobs: dict[str, tuple[bytes, BlobMeta]] = {}
        self._lock = threading.Lock()
        self._counters = _Counters()

    def __repr__(self) -> str:
        return f"MemoryBlobStore(blobs={len(self._blobs)}, max_blob_size={self._max_blob_size})"

    @property
    def max_blob_size(self) -> int:
        return self._max_blob_size

    def put(self, data: bytes, media_type: str) -> str:
        size = len(data)
        if size > self._max_blob_size:
            raise _too_large(size, self._max_blob_size)
        blob = data if type(data) is bytes else bytes(data)
        blob_id = hashlib.sha256(blob).hexdigest()
        with self._lock:
            dedup = blob_id in self._blobs
            if not dedup:
                meta = BlobMeta(media_type=media_type, size=size, created_at=_now_rfc3339())
                self._blobs[blob_id] = (blob, meta)
        self._counters.put(dedup=dedup, written=0 if dedup else size)
        return blob_id

    def get(self, blob_id: str) -> bytes | None:
        _require_id(blob_id)
        self._counters.get()
        with self._lock:
            entry = self._blobs.get(blob_id)
        if entry is None:
            return None
        _check_hash(blob_id, entry[0])
        return entry[0]

    def get_meta(self, blob_id: str) -> BlobMeta | None:
        _require_id(blob_id)
        with self._lock:
            entry = self._blobs.get(blob_id)
        return None if entry is None else entry[1]

    def exists(self, blob_id: str) -> bool:
        if not is_blob_id(blob_id):
            return False
        with self._lock:
            return blob_id in self._blobs

    def delete(self, blob_id: str) -> bool:
        _require_id(blob_id)
        with self._lock:
            return self._blobs.pop(blob_id, None) is not None

    def list(self) -> builtins.list[str]:
        with self._lock:
            return sorted(self._blobs)

    def statistics(self) -> BlobStoreStatistics:
        return self._counters.snapshot()


def remove_stale_temp_files(root: str | os.PathLike[str], *, max_age: float = 60.0) -> int:
    """Remove the ``.tmp.*`` files a killed writer left in the shard directories of a disk store
    at ``root``; return how many. Run at daemon start.

    A temp file named by :func:`~core.atomic.atomic_write` (``.tmp.nbstream-<pid>-<hex>``) goes
    when its writer is gone; any other ``.tmp.*`` (e.g. the reference layout's ``.tmp.<uuid>``)
    when it was last modified more than ``max_age`` seconds ago. Never raises: a store it cannot
    read is left as it is (the puts that follow report the real problem).
    """
    now = time.time()
    removed = 0
    try:
        shards = _scan(
            os.fspath(root),
            lambda e: bool(_SHARD_RE.fullmatch(e.name)) and e.is_dir(follow_symlinks=False),
        )
    except OSError:
        return 0
    for shard in shards:
        try:
            temps = _scan(
                shard.path,
                lambda e: e.name.startswith(f"{_TMP_PREFIX}.") and e.is_file(follow_symlinks=False),
            )
        except OSError:
            continue
        for entry in temps:
            gone = temp_writer_gone(shard.path, entry.name)
            with suppress(OSError):
                if gone or (gone is None and now - entry.stat().st_mtime > max_age):
                    os.remove(entry.path)
                    removed += 1
    return removed
