"""The loader's time to full with many joined peers, vs. with few (one run, one process).

Not an asv suite: ``python -m benchmarks.measure_fanout [--peers 10,200] [--repeats 3]
[--profile]``. A :class:`core.daemon.Daemon` runs in-process with a disk blob store; every peer is
a :class:`core.client.NotebookClient` over the simulator's in-memory streams. The loader opens
the notebook; before batch 0 the other peers join and the hook waits until the room holds them
all; the figure is the loader's time from then until it is fully loaded (``ready`` and every
cell). Printed: the median per peer count and the ratio of each to the first.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import tempfile
import time
from pathlib import Path


async def _one(notebook: Path, peers: int, blob_root: Path) -> float:
    from core.blob_store import DiskBlobStore
    from core.client import NotebookClient
    from core.daemon import Daemon, DaemonConfig
    from core.room import NotebookRoom
    from sim.net.streams import memory_stream_pair

    clients: list[NotebookClient] = []
    served: list[asyncio.Task[None]] = []
    marks: dict[str, float] = {}

    async def connect(name: str) -> NotebookClient:
        client_end, server_end = await memory_stream_pair()
        served.append(asyncio.create_task(daemon.handle_connection(*server_end)))
        client = NotebookClient(*client_end, name=name)
        clients.append(client)
        await client.open(notebook)
        return client

    async def before_batch(room: NotebookRoom, index: int) -> None:
        if index == 0:
            await asyncio.gather(*(connect(f"peer-{i}") for i in range(peers)))
            await daemon.wait_for(lambda: room.peer_count >= peers + 1)
            marks["start"] = time.perf_counter()

    config = DaemonConfig(batch_size=3)
    daemon = Daemon(config, blob_store=DiskBlobStore(blob_root), before_batch=before_batch)
    await daemon.start()
    try:
        loader = await connect("loader")
        await loader.wait_loaded()
        elapsed = time.perf_counter() - marks["start"]
        await asyncio.gather(*(c.wait_loaded() for c in clients))
    finally:
        for client in clients:
            await client.close()
        await daemon.stop()
        await asyncio.gather(*served, return_exceptions=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peers", default="10,200")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cells", type=int, default=50)
    parser.add_argument("--profile", action="store_true", help="cProfile the last peer count")
    args = parser.parse_args()
    from sim.workload.generator import generate_notebook

    counts = [int(x) for x in args.peers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        notebook = Path(tmp) / "nb.ipynb"
        notebook.write_bytes(generate_notebook(args.cells))
        medians: list[float] = []
        for peers in counts:
            times = []
            for r in range(args.repeats):
                root = Path(tmp) / f"blobs-{peers}-{r}"
                times.append(asyncio.run(_one(notebook, peers, root)))
            medians.append(statistics.median(times))
            print(
                f"{peers:4d} joined peers: loader {medians[-1] * 1e3:8.1f} ms (median of "
                f"{args.repeats}: {', '.join(f'{t * 1e3:.0f}' for t in times)}) "
                f"ratio {medians[-1] / medians[0]:.2f}"
            )
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            asyncio.run(_one(notebook, counts[-1], Path(tmp) / "blobs-prof"))
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
