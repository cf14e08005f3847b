from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from core.blob_store import MemoryBlobStore
from core.client import NotebookClient
from core.daemon import Daemon, DaemonConfig
from sim.net.connect import Transport, connect_transport

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "notebooks"

TRANSPORTS = ["unix", "socketpair", "memory"]


def write_notebook(path: Path, cells: list[dict[str, Any]], **metadata: Any) -> Path:
    """Write an nbformat 4.5 notebook the way the reference's integration helper did."""
    nb_cells = []
    for pos, cell in enumerate(cells):
        c: dict[str, Any] = {
            "id": cell["id"],
            "cell_type": cell.get("cell_type", "code"),
            "metadata": {},
            "source": cell.get("source", ""),
        }
        if c["cell_type"] == "code":
            c["execution_count"] = cell.get("execution_count", pos + 1)
            c["outputs"] = cell.get("outputs", [])
        nb_cells.append(c)
    nb = {
        "cells": nb_cells,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            **metadata,
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb, indent=1))
    return path


def simple_cells(n: int, prefix: str = "c") -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = []
    for i in range(n):
        cell: dict[str, Any] = {"id": f"{prefix}{i + 1}", "source": f"x = {i}\nprint(x)"}
        if i % 3 == 1:
            cell["cell_type"] = "markdown"
            cell["source"] = f"# Heading {i}"
        if i % 4 == 0:
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": [f"{i}\n"]}]
        cells.append(cell)
    return cells


class Harness:
    """A daemon plus a way to connect clients to it over one transport."""

    def __init__(self, transport: str, daemon: Daemon, tmp: Path) -> None:
        self.transport = transport
        self.daemon = daemon
        self.tmp = tmp
        self.clients: list[NotebookClient] = []
        self._server_tasks: set[asyncio.Task[None]] = set()

    async def streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A raw client-side stream pair connected to the daemon."""
        return await connect_transport(
            cast(Transport, self.transport),
            serve=self.daemon.handle_connection,
            socket_path=self.daemon.config.socket_path,
            tasks=self._server_tasks,
        )

    async def connect(self, notebook: Path, **kwargs: Any) -> NotebookClient:
        reader, writer = await self.streams()
        client = NotebookClient(reader, writer, **kwargs)
        self.clients.append(client)
        await client.open(notebook)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        await self.daemon.stop()
        for task in self._server_tasks:
            task.cancel()
        await asyncio.gather(*self._server_tasks, return_exceptions=True)


HarnessFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_harness(tmp_path: Path) -> AsyncIterator[HarnessFactory]:
    harnesses: list[Harness] = []
    with tempfile.TemporaryDirectory(prefix="nbs-") as tmpdir:
        # Short path: AF_UNIX socket paths are limited to ~108 bytes.
        tmp = Path(tmpdir)

        async def factory(transport: str = "unix", **config: Any) -> Harness:
            config.setdefault("eviction_delay", 0.05)
            config.setdefault("notebook_root", tmp_path)  # where the tests write notebooks
            hooks = config.pop("before_batch", None)
            cfg = DaemonConfig(
                socket_path=tmp / f"s{len(harnesses)}" / "d.sock" if transport == "unix" else None,
                **config,
            )
            daemon = Daemon(cfg, blob_store=MemoryBlobStore(), before_batch=hooks)
            await daemon.start()
            h = Harness(transport, daemon, tmp)
            harnesses.append(h)
            return h

        yield factory
        for h in harnesses:
            await h.close()
