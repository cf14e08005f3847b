"""Garbage collection of the blob store: delete the blobs no open room refers to.

Outputs live in the blob store and only manifest hashes enter the CRDT, so every load of a
changed notebook leaves the blobs of the outputs that changed behind (about 4 MB per reopen of
the bundled notebook) and the store only grew. Saved ``.ipynb`` files hold their outputs inline,
so they pin nothing: a room that is closed and reopened re-creates its blobs from the file.

**Mark** (:func:`mark`): every manifest hash in the outputs of every open room's document, plus
every content blob those manifests reference (``{"blob": <id>, ...}`` anywhere in the manifest).
A manifest that cannot be *read* (an I/O error) stops the collection before anything is deleted:
its content blobs are unknown. A corrupt manifest is unusable anyway (it resolves to a
placeholder), so only the manifest itself is kept.

**Sweep** (:func:`sweep`): every other blob, with its sidecar, unless a load pinned it.

**Concurrent loads** (:class:`LoadPins`). A load puts a batch's blobs, *then* inserts their
hashes into the document; a collection whose mark ran in between would not see them. Worse, a put
that finds the blob already stored (a dedup hit on an orphan of an earlier load) changes nothing
on disk, so no age or mtime rule can tell it is in use again. So every load writes through
:meth:`LoadPins.store_for_load`, which pins each id it puts, and the sweep deletes a blob only
under the pins' lock and only if no load running now, and no load that finished after this
collection began, pinned it. The put pins its id right after storing it and then checks the blob
is still there, storing it again if a sweep deleted it in that instant: either the sweep saw the
pin, or the put sees the deletion. A load that finished before the collection began has its
hashes in its document (marked) or was rolled back (garbage).

**Other processes.** The pins live in one daemon. :class:`StoreLock` keeps a shared POSIX lock on
``<root>/.gc.lock`` while a daemon uses an on-disk store; a collection converts it to an
exclusive lock without waiting and is skipped (``GcReport.skipped``) if another process holds
the store too. That is also why there is no ``nbstream gc`` command: only a daemon knows which
blobs its open rooms refer to.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from core.blob_store import BlobMeta, BlobStore, BlobStoreStatistics, DiskBlobStore, is_blob_id
from core.errors import BlobCorrupt, BlobStoreError, CoreError
from core.manifest import manifest_blob_ids
from core.notebook_doc import NotebookDoc

__all__ = [
    "LOCK_NAME",
    "BlobCollector",
    "GcReport",
    "LoadPins",
    "PinningStore",
    "StoreLock",
    "mark",
    "sweep",
]

LOCK_NAME = ".gc.lock"
"""The lock file in a disk store's root (the store's ``list`` never reports it)."""

log = logging.getLogger("nbstream.gc")


@dataclass(frozen=True, slots=True)
class GcReport:
    """What one collection did."""

    kept: int
    """Blobs left in the store (referenced, or pinned by a load)."""
    deleted: int
    """Blobs deleted (each with its sidecar)."""
    bytes_freed: int
    """Blob bytes deleted (sidecars not counted)."""
    pinned: int = 0
    """Of ``kept``: blobs no room referred to yet, kept because a load had just put them."""
    skipped: str | None = None
    """Why nothing was collected (another process uses the store); None when it ran."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kept": self.kept,
            "deleted": self.deleted,
            "bytes_freed": self.bytes_freed,
            "pinned": self.pinned,
            "skipped": self.skipped,
        }


# ------------------------------------------------------------------------------------ pins
class LoadPins:
    """The ids each running load has put, and those of loads that ended during a collection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # puts run on worker threads
        self._running: dict[int, set[str]] = {}
        self._ended: set[str] = set()
        self._next = 0

    def store_for_load(self, store: BlobStore) -> tuple[int, PinningStore]:
        """A store for one load (the token to pass to :meth:`load_ended`)."""
        with self._lock:
            token = self._next
            self._next += 1
            self._running[token] = set()
        return token, PinningStore(store, self, token)

    def load_ended(self, token: int) -> None:
        """The load's hashes are in its document now (or it was rolled back)."""
        with self._lock:
            self._ended |= self._running.pop(token, set())

    def begin_collection(self) -> None:
        """A collection marks now: loads that ended before it need no pins any more."""
        with self._lock:
            self._ended = set()

    def pin(self, token: int, blob_id: str) -> None:
        with self._lock:
            pinned = self._running.get(token)
            if pinned is not None:
                pinned.add(blob_id)
            else:  # the load has ended (a put after its end, e.g. from a leftover thread)
                self._ended.add(blob_id)

    def delete_unless_pinned(self, store: BlobStore, blob_id: str) -> bool:
        """Delete ``blob_id`` unless a load pinned it; True if it was deleted."""
        with self._lock:
            if blob_id in self._ended or any(blob_id in ids for ids in self._running.values()):
                return False
            store.delete(blob_id)
            return True

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._running)


class PinningStore:
    """A load's view of the daemon's store: every ``put`` pins its id (see the module docstring)."""

    __slots__ = ("_pins", "_store", "_token")

    def __init__(self, store: BlobStore, pins: LoadPins, token: int) -> None:
        self._store = store
        self._pins = pins
        self._token = token

    def put(self, data: bytes, media_type: str) -> str:
        blob_id = self._store.put(data, media_type)
        self._pins.pin(self._token, blob_id)
        if not self._store.exists(blob_id):  # a sweep deleted it between the put and the pin
            self._store.put(data, media_type)
        return blob_id

    def get(self, blob_id: str) -> bytes | None:
        return self._store.get(blob_id)

    def get_meta(self, blob_id: str) -> BlobMeta | None:
        return self._store.get_meta(blob_id)

    def exists(self, blob_id: str) -> bool:
        return self._store.exists(blob_id)

    def delete(self, blob_id: str) -> bool:
        return self._store.delete(blob_id)

    def list(self) -> builtins.list[str]:
        return self._store.list()

    def statistics(self) -> BlobStoreStatistics:
        return self._store.statistics()


# ------------------------------------------------------------------------------ mark, sweep
def mark(output_refs: Iterable[str], store: BlobStore) -> set[str]:
    """Every blob reachable from the documents' output entries (manifest ids and raw JSON).

    Raises:
        BlobStoreError: a manifest could not be read (I/O): nothing may be swept then.
    """
    marked: set[str] = set()
    for ref in output_refs:
        if not is_blob_id(ref) or ref in marked:
            continue  # raw-JSON outputs live in the document itself
        marked.add(ref)
        try:
            raw = store.get(ref)
        except BlobCorrupt:
            continue  # unusable: resolves to a placeholder; its content refs are unknown
        if raw is not None:
            marked |= manifest_blob_ids(raw)
    return marked


def sweep(store: BlobStore, marked: set[str], pins: LoadPins) -> GcReport:
    """Delete every blob of ``store`` not in ``marked`` and not pinned by a load."""
    kept = deleted = freed = pinned = 0
    for blob_id in store.list():
        if blob_id in marked:
            kept += 1
            continue
        try:
            meta = store.get_meta(blob_id)
        except BlobCorrupt:
            meta = None
        size = meta.size if meta is not None else _file_size(store, blob_id)
        if pins.delete_unless_pinned(store, blob_id):
            deleted += 1
            freed += size
        else:
            kept += 1
            pinned += 1
    return GcReport(kept=kept, deleted=deleted, bytes_freed=freed, pinned=pinned)


def _file_size(store: BlobStore, blob_id: str) -> int:
    """The size of a blob without a readable sidecar."""
    if isinstance(store, DiskBlobStore):
        try:
            return os.stat(store.path_of(blob_id)).st_size
        except OSError:
            return 0
    try:
        data = store.get(blob_id)
    except BlobStoreError:
        return 0
    return 0 if data is None else len(data)


# ------------------------------------------------------------------------------ other processes
class StoreLock:
    """A shared lock on ``<root>/.gc.lock`` for as long as this process uses the store.

    POSIX record locks belong to the process: every daemon in one process shares them (the pins
    of one daemon do not protect another daemon's loads in the same process; run one per store).
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire_shared(self) -> None:
        """Take the shared lock (waits while another process collects). Idempotent."""
        if self._fd is not None:
            return
        os.makedirs(self.root, 0o700, exist_ok=True)
        fd = os.open(
            os.path.join(self.root, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def try_exclusive(self) -> bool:
        """Convert to an exclusive lock if no other process holds the store; never waits."""
        self.acquire_shared()
        assert self._fd is not None
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a failed F_SETLK leaves our shared lock as it was
        return True

    def back_to_shared(self) -> None:
        if self._fd is not None:
            fcntl.lockf(self._fd, fcntl.LOCK_SH)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# ------------------------------------------------------------------------------ the daemon's
class BlobCollector:
    """One daemon's collections: its load pins, its store locks, one collection at a time."""

    def __init__(self) -> None:
        self.pins = LoadPins()
        self.last: GcReport | None = None
        self._lock = asyncio.Lock()
        self._store_locks: dict[str, StoreLock] = {}

    def _store_lock(self, store: BlobStore) -> StoreLock | None:
        if not isinstance(store, DiskBlobStore):
            return None
        lock = self._store_locks.get(store.root)
        if lock is None:
            lock = self._store_locks[store.root] = StoreLock(store.root)
        return lock

    @contextlib.asynccontextmanager
    async def load_store(self, store: BlobStore) -> AsyncIterator[PinningStore]:
        """The store one load writes through: its puts stay pinned until the load ends."""
        token, pinning = self.pins.store_for_load(store)
        try:
            lock = self._store_lock(store)
            if lock is not None:
                with contextlib.suppress(OSError):  # an unusable root: the load's put reports it
                    await asyncio.to_thread(lock.acquire_shared)
            yield pinning
        finally:
            self.pins.load_ended(token)

    async def collect(
        self,
        store: BlobStore,
        snapshots: Callable[[], list[NotebookDoc]],
        *,
        before_sweep: Callable[[], Awaitable[None]] | None = None,
    ) -> GcReport:
        """Mark from ``snapshots()`` (forks of every open room's document), then sweep."""
        async with self._lock:
            lock = self._store_lock(store)
            if lock is not None:
                try:
                    alone = await asyncio.to_thread(lock.try_exclusive)
                except OSError as exc:
                    return GcReport(0, 0, 0, skipped=f"cannot lock {lock.root}: {exc}")
                if not alone:
                    return GcReport(
                        0, 0, 0, skipped=f"another process uses the blob store at {lock.root}"
                    )
            try:
                self.pins.begin_collection()  # then the snapshots, with no await between
                docs = snapshots()
                marked = await asyncio.to_thread(_mark_docs, docs, store)
                if before_sweep is not None:
                    await before_sweep()
                report = await asyncio.to_thread(sweep, store, marked, self.pins)
            finally:
                if lock is not None:
                    await asyncio.to_thread(lock.back_to_shared)
            self.last = report
            log.info("blob gc: %s", report)
            return report

    async def collect_every(
        self, interval: float, collect: Callable[[], Awaitable[GcReport]]
    ) -> None:
        """Run ``collect`` every ``interval`` seconds; a failure is logged, never fatal."""
        while True:
            await asyncio.sleep(interval)
            try:
                await collect()
            except CoreError as exc:
                log.warning("blob gc failed, nothing deleted: %s", exc)
            except Exception:  # keep collecting at the next interval
                log.exception("blob gc failed")

    def close(self) -> None:
        for lock in self._store_locks.values():
            lock.close()
        self._store_locks.clear()


def _mark_docs(docs: list[NotebookDoc], store: BlobStore) -> set[str]:
    return mark((ref for doc in docs for cell in doc.get_cells() for ref in cell.outputs), store)
