"""Figures measured from outside: a real ``nbstream serve``, clients over its socket, one run.

``python -m sim.harness.outside --json`` starts a fresh ``nbstream serve`` process (its on-disk blob
store in a temp directory, a real Unix socket) for every measurement, drives it only through the
socket, and compares it with bare Automerge doing the same work in the same run. Nothing runs
in-process with the daemon, so what it reports is what a user of ``serve`` + ``open`` sees.

Figures (each a median over ``--repeats``, sizes interleaved so drift hits every size alike):

* ``load`` — for each of ``--sizes`` cells: ``nbstream open --json`` in its own process, its time to
  first cell and to full; the server's peak RSS (``VmHWM``) minus its idle RSS, over the file size;
  and time to full over :func:`~sim.harness.metrics.raw_automerge_seconds` of the same cells (the
  anchor: build the cells 3 per transaction and sync them to a second doc, no daemon, no blobs).
  Ratios: first cell at the largest size over the smallest, and the load-time exponent
  (:func:`~sim.analysis.complexity.fit_power_law` of time to full over cells, every run a point,
  with its confidence interval).
* ``stall`` — another room's time to first cell (a 6-cell notebook) while a notebook whose first
  cell has a ``--stall-mib`` MiB source loads, over the same notebook's first cell with the server
  otherwise idle.
* ``fanout`` — the loader's time to full on an 800-cell notebook while ``--peers`` peers (another
  process) join it, over the same with ``--few-peers`` peers.
* ``bytes`` — what a client receives to hold the default notebook (document + every manifest and
  blob) over Jupyter's full-state Y update of it (``jupyter_ydoc`` + ``pycrdt``, dev extras).

Every figure records the load average before and after. Exit status 0 unless a server failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from core.client import NotebookClient
from core.ipynb import parse_notebook
from sim.analysis.complexity import fit_power_law
from sim.cli.open_cmd import fetch_blobs
from sim.harness.memory import proc_status_kib
from sim.harness.metrics import raw_automerge_seconds
from sim.workload.generator import DEFAULT_CELLS, write_notebook

__all__ = ["ServerProcess", "main", "serve"]

NBSTREAM = (sys.executable, "-m", "sim.cli.main")
START_TIMEOUT_S = 30.0
LOAD_TIMEOUT_S = 600.0
STALL_PROBES = 400  # other rooms opened, at most, while the big cell loads
STALL_PROBE_GAP_S = 0.05


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@dataclass(slots=True)
class ServerProcess:
    """A running ``nbstream serve``: its process, socket and memory readings."""

    process: asyncio.subprocess.Process
    socket: Path

    def rss_kib(self) -> int:
        return proc_status_kib(self.process.pid, "VmRSS")

    def peak_rss_kib(self) -> int:
        # The kernel updates VmHWM lazily: it can read a few KiB under the current VmRSS.
        pid = self.process.pid
        return max(proc_status_kib(pid, "VmHWM"), proc_status_kib(pid, "VmRSS"))


async def _wait_for_socket(server: ServerProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.process.returncode is not None:
            log = (server.socket.parent / "serve.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"nbstream serve exited with {server.process.returncode}: {log}")
        try:
            _, writer = await asyncio.open_unix_connection(str(server.socket))
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"nbstream serve not listening after {START_TIMEOUT_S} s"
                ) from exc
            await asyncio.sleep(0.02)  # polling a condition: the socket accepting
            continue
        writer.close()
        await writer.wait_closed()
        return


@contextlib.asynccontextmanager
async def serve(workdir: Path) -> AsyncIterator[ServerProcess]:
    """A fresh ``nbstream serve`` with its socket and disk blob store under ``workdir``."""
    root = Path(tempfile.mkdtemp(prefix="serve-", dir=workdir))
    socket = root / "daemon.sock"
    with (root / "serve.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *NBSTREAM,
            "serve",
            "--socket",
            str(socket),
            "--blob-root",
            str(root / "blobs"),
            "--root",
            str(workdir),  # the figures' notebooks are written there
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )
    server = ServerProcess(process, socket)
    try:
        await _wait_for_socket(server)
        yield server
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()


async def _open_cli(server: ServerProcess, notebook: Path) -> dict[str, Any]:
    """``nbstream open --json`` in its own process; adds ``wall_s``, spawn to exit."""
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *NBSTREAM,
        "open",
        "--json",
        "--timeout",
        str(LOAD_TIMEOUT_S),
        "--socket",
        str(server.socket),
        str(notebook),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    summary: dict[str, Any] = json.loads(out)
    summary["wall_s"] = time.perf_counter() - t0
    if summary.get("status") != "ready":
        raise RuntimeError(f"nbstream open {notebook.name}: {summary.get('reason')}")
    return summary


def _load_exponent(rows: dict[int, list[dict[str, float]]]) -> dict[str, Any] | None:
    """The power-law fit of time to full over cells, every run a point (None: < 3 points)."""
    ns = [float(n) for n, runs in rows.items() for _ in runs]
    if len(ns) < 3 or len(set(ns)) < 2:
        return None
    fit = fit_power_law(ns, [r["full_s"] for runs in rows.values() for r in runs])
    return {"exponent": fit.exponent, "ci": list(fit.ci), "r_squared": fit.r_squared}


# --------------------------------------------------------------------------- load
async def figure_load(workdir: Path, sizes: Sequence[int], repeats: int) -> dict[str, Any]:
    notebooks = {n: write_notebook(workdir / f"nb{n}.ipynb", cells=n).path for n in sizes}
    raw: dict[int, list[float]] = {n: [] for n in sizes}
    rows: dict[int, list[dict[str, float]]] = {n: [] for n in sizes}
    parsed = {n: parse_notebook(notebooks[n].read_bytes()) for n in sizes}
    raw_automerge_seconds(parsed[min(sizes)], 3)  # warm-up: the first run in a process is slower
    for _ in range(repeats):
        for n in sizes:
            raw[n].append(raw_automerge_seconds(parsed[n], 3))
            async with serve(workdir) as server:
                idle = server.rss_kib()
                summary = await _open_cli(server, notebooks[n])
                peak = server.peak_rss_kib()
            rows[n].append(
                {
                    "first_cell_s": summary["time_to_first_cell_s"],
                    "full_s": summary["time_to_full_s"],
                    "wall_s": summary["wall_s"],
                    "rss_over_file": (peak - idle) * 1024 / notebooks[n].stat().st_size,
                }
            )
    per_size: dict[str, Any] = {}
    for n in sizes:
        full = median([r["full_s"] for r in rows[n]])
        per_size[str(n)] = {
            "file_bytes": notebooks[n].stat().st_size,
            "first_cell_s": median([r["first_cell_s"] for r in rows[n]]),
            "full_s": full,
            "raw_automerge_s": median(raw[n]),
            "full_over_raw": median(
                [r["full_s"] / a for r, a in zip(rows[n], raw[n], strict=True)]
            ),
            "open_wall_s": median([r["wall_s"] for r in rows[n]]),
            "open_wall_over_raw": median(
                [r["wall_s"] / a for r, a in zip(rows[n], raw[n], strict=True)]
            ),
            "peak_rss_minus_idle_over_file": median([r["rss_over_file"] for r in rows[n]]),
        }
    small, large = str(min(sizes)), str(max(sizes))
    return {
        "sizes": per_size,
        "first_cell_ratio": per_size[large]["first_cell_s"] / per_size[small]["first_cell_s"],
        "load_exponent": _load_exponent(rows),
    }


# --------------------------------------------------------------------------- stall
def _big_cell_notebook(path: Path, mib: float) -> Path:
    line = "x = 1  # a long source line, repeated to make one very large cell\n"
    source = line * max(1, int(mib * (1 << 20)) // len(line))
    cells: list[dict[str, Any]] = [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "big",
            "metadata": {},
            "outputs": [],
            "source": source,
        },
    ]
    cells += [
        {"cell_type": "markdown", "id": f"m{i}", "metadata": {}, "source": f"# cell {i}\n"}
        for i in range(5)
    ]
    path.write_text(
        json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    )
    return path


def _small_notebook(path: Path, cells: int = 6) -> Path:
    body = [
        {"cell_type": "markdown", "id": f"s{i}", "metadata": {}, "source": f"small {i}\n"}
        for i in range(cells)
    ]
    path.write_text(json.dumps({"cells": body, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


async def _first_cell(server: ServerProcess, notebook: Path) -> float:
    client = await NotebookClient.connect(server.socket, notebook, name="other")
    try:
        await asyncio.wait_for(client.wait_for_cells(1), LOAD_TIMEOUT_S)
        first = client.statistics().time_to_first_cell_s
        assert first is not None  # wait_for_cells(1) returned
        return first
    finally:
        await client.close()


async def _loader_main(socket: str, notebook: str) -> None:
    """The big cell's loader (a separate process, so applying its sync messages cannot delay
    the measuring process): prints "open" once the server took the open, then its times."""
    client = await NotebookClient.connect(socket, notebook, name="loader")
    try:
        sys.stdout.write("open\n")
        sys.stdout.flush()
        await asyncio.wait_for(client.wait_loaded(), LOAD_TIMEOUT_S)
        stats = client.statistics()
    finally:
        await client.close()
    print(json.dumps({"first_s": stats.time_to_first_cell_s, "full_s": stats.time_to_full_s}))


async def _stall_once(
    server: ServerProcess, big: Path, smalls: Sequence[Path]
) -> tuple[list[float], float]:
    """Other rooms' first-cell times, one room after another for as long as the big cell
    loads, and the big load's full time."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sim.harness.outside",
        "_loader",
        str(server.socket),
        str(big),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    # The server has accepted the big open and begun loading it: the other rooms open now.
    line = await asyncio.wait_for(proc.stdout.readline(), LOAD_TIMEOUT_S)
    if line != b"open\n":
        raise RuntimeError(f"stall: the big cell's loader said {line!r}")
    rest = asyncio.ensure_future(proc.stdout.read())
    during: list[float] = []
    for small in smalls:
        if rest.done():
            break
        during.append(await _first_cell(server, small))
        await asyncio.sleep(STALL_PROBE_GAP_S)
    out = await rest
    await proc.wait()
    full = json.loads(out.decode().splitlines()[-1])["full_s"]
    if proc.returncode != 0 or full is None:
        raise RuntimeError(f"stall: the big cell's loader failed ({proc.returncode})")
    return during, float(full)


async def figure_stall(workdir: Path, mib: float, repeats: int) -> dict[str, Any]:
    """Another room's time to first cell while one huge cell loads, against the same alone.

    Rooms open one after another (a probe every STALL_PROBE_GAP_S) from the moment the
    server takes the big open until that load ends; ``ratio`` uses the median probe, and
    ``worst_ratio`` the slowest: a stall anywhere in the load shows there."""
    big = _big_cell_notebook(workdir / "big-cell.ipynb", mib)
    alone: list[float] = []
    medians: list[float] = []
    worst: list[float] = []
    big_load: list[float] = []
    probes = 0
    for i in range(repeats):
        small = _small_notebook(workdir / f"small-{i}.ipynb")
        async with serve(workdir) as server:
            alone.append(await _first_cell(server, small))
        smalls = [
            _small_notebook(workdir / f"small-during-{i}-{k}.ipynb") for k in range(STALL_PROBES)
        ]
        async with serve(workdir) as server:
            during, full = await _stall_once(server, big, smalls)
        if not during:
            raise RuntimeError("stall: the big load ended before any other room opened")
        probes += len(during)
        medians.append(median(during))
        worst.append(max(during))
        big_load.append(full)
    return {
        "big_cell_bytes": big.stat().st_size,
        "big_load_s": median(big_load),
        "alone_first_cell_s": median(alone),
        "during_first_cell_s": median(medians),
        "worst_first_cell_s": median(worst),
        "probes": probes,
        "ratio": median([d / a for d, a in zip(medians, alone, strict=True)]),
        "worst_ratio": median([d / a for d, a in zip(worst, alone, strict=True)]),
    }


# --------------------------------------------------------------------------- fan-out
async def _peers_main(socket: str, notebook: str, count: int) -> None:
    """The peers' side of ``fanout`` (a separate process): on "go", join and wait for full.

    Prints one JSON line: ``{"joined": n, "loaded": n, "errors": [first few messages]}``.
    """
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    joined = await asyncio.gather(
        *(NotebookClient.connect(socket, notebook, name=f"peer{i}") for i in range(count)),
        return_exceptions=True,
    )
    clients = [c for c in joined if isinstance(c, NotebookClient)]
    errors = [f"{type(e).__name__}: {e}" for e in joined if isinstance(e, BaseException)]
    loaded = await asyncio.gather(
        *(asyncio.wait_for(c.wait_loaded(), LOAD_TIMEOUT_S) for c in clients),
        return_exceptions=True,
    )
    errors += [f"{type(e).__name__}: {e}" for e in loaded if isinstance(e, BaseException)]
    await asyncio.gather(*(c.close() for c in clients))
    ok = sum(1 for x in loaded if not isinstance(x, BaseException))
    print(json.dumps({"joined": len(clients), "loaded": ok, "errors": errors[:5]}))


async def _fanout_once(workdir: Path, notebook: Path, peers: int) -> float:
    async with serve(workdir) as server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sim.harness.outside",
            "_peers",
            str(server.socket),
            str(notebook),
            str(peers),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stdout is not None
        await proc.stdout.readline()
        loader = await NotebookClient.connect(server.socket, notebook, name="loader")
        try:
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
            await asyncio.wait_for(loader.wait_loaded(), LOAD_TIMEOUT_S)
            full = loader.statistics().time_to_full_s
        finally:
            await loader.close()
        out, _ = await proc.communicate()
        peers_report = json.loads(out.decode().splitlines()[-1])
        if full is None:
            raise RuntimeError("the loader never saw the full notebook")
        if peers_report["loaded"] != peers:
            raise RuntimeError(f"fanout: of {peers} peers, {peers_report}")
        return full


async def figure_fanout(workdir: Path, few: int, many: int, repeats: int) -> dict[str, Any]:
    notebook = write_notebook(workdir / "fanout.ipynb", cells=800).path
    low: list[float] = []
    high: list[float] = []
    for _ in range(repeats):
        low.append(await _fanout_once(workdir, notebook, few))
        high.append(await _fanout_once(workdir, notebook, many))
    return {
        "cells": 800,
        "few_peers": few,
        "many_peers": many,
        "few_full_s": median(low),
        "many_full_s": median(high),
        "ratio": median([h / lo for h, lo in zip(high, low, strict=True)]),
    }


# --------------------------------------------------------------------------- bytes
def y_update_bytes(notebook: Path) -> int:
    """Length of the full-state Y update of ``notebook`` (jupyter_ydoc YNotebook, pycrdt)."""
    import pycrdt  # dev dependencies: imported only for this figure
    from jupyter_ydoc import YNotebook

    doc: Any = pycrdt.Doc()
    YNotebook(doc).set(json.loads(notebook.read_bytes()))
    return len(doc.get_update())


async def figure_bytes(workdir: Path, cells: int = DEFAULT_CELLS) -> dict[str, Any]:
    """What a client receives from ``serve`` to hold the notebook: the document (``get_doc_bytes``)
    and every manifest and blob (``nbstream open --export``'s fetch, frame headers included),
    over Jupyter's Y update of the same notebook. Deterministic: one run."""
    notebook = write_notebook(workdir / f"bytes{cells}.ipynb", cells=cells).path
    async with serve(workdir) as server:
        client = await NotebookClient.connect(server.socket, notebook, name="bytes")
        try:
            await asyncio.wait_for(client.wait_loaded(), LOAD_TIMEOUT_S)
            doc = len(await client.get_doc_bytes())
            before = client.statistics().bytes_in
            store = await fetch_blobs(client)
            blob_bytes = client.statistics().bytes_in - before
        finally:
            await client.close()
    y_bytes = y_update_bytes(notebook)
    return {
        "cells": cells,
        "doc_bytes": doc,
        "blob_bytes": blob_bytes,
        "blobs": len(store.list()),
        "y_update_bytes": y_bytes,
        "ratio": (doc + blob_bytes) / y_bytes,
    }


# --------------------------------------------------------------------------- command
FIGURES = ("load", "stall", "fanout", "bytes")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sim.harness.outside", description=__doc__)
    parser.add_argument(
        "--figures",
        default=",".join(FIGURES),
        help="comma-separated subset of: " + ", ".join(FIGURES),
    )
    parser.add_argument("--sizes", default="50,800,3200", help="cells for the load figure")
    parser.add_argument("--repeats", type=int, default=5, help="runs per point (median)")
    parser.add_argument("--stall-mib", type=float, default=4.0, help="the big cell's source")
    parser.add_argument("--peers", type=int, default=200, help="peers joining (fanout)")
    parser.add_argument("--few-peers", type=int, default=10, help="the anchor's peers (fanout)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


async def run(args: argparse.Namespace) -> dict[str, Any]:
    figures = [f.strip() for f in args.figures.split(",") if f.strip()]
    unknown = sorted(set(figures) - set(FIGURES))
    if unknown:
        raise SystemExit(f"unknown figure(s): {', '.join(unknown)}; see --help")
    result: dict[str, Any] = {"command": "outside", "figures": {}}
    with tempfile.TemporaryDirectory(prefix="nbstream-outside-") as tmp:
        workdir = Path(tmp)
        for name in figures:
            before = _load_average()
            if name == "load":
                sizes = sorted(int(s) for s in args.sizes.split(","))
                data = await figure_load(workdir, sizes, args.repeats)
            elif name == "stall":
                data = await figure_stall(workdir, args.stall_mib, args.repeats)
            elif name == "bytes":
                data = await figure_bytes(workdir)
            else:
                data = await figure_fanout(workdir, args.few_peers, args.peers, args.repeats)
            data["load_average"] = {"before": before, "after": _load_average()}
            result["figures"][name] = data
    return result


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_peers"]:
        asyncio.run(_peers_main(argv[1], argv[2], int(argv[3])))
        return 0
    if argv[:1] == ["_loader"]:
        asyncio.run(_loader_main(argv[1], argv[2]))
        return 0
    args = build_parser().parse_args(argv)
    result = asyncio.run(run(args))
    if args.json:
        json.dump(result, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
    else:
        _print_summary(result["figures"])
    return 0


def _print_summary(figures: dict[str, Any]) -> None:
    load = figures.get("load")
    if load is not None:
        for n, row in sorted(load["sizes"].items(), key=lambda item: int(item[0])):
            print(
                f"load {n:>6} cells: first cell {row['first_cell_s'] * 1e3:8.1f} ms, full "
                f"{row['full_s']:7.3f} s = {row['full_over_raw']:.2f}x raw Automerge "
                f"(open's wall {row['open_wall_over_raw']:.2f}x), peak RSS - idle = "
                f"{row['peak_rss_minus_idle_over_file']:.2f}x the file"
            )
        fit = load["load_exponent"]
        exponent = None if fit is None else fit["exponent"]
        print(
            f"first cell, largest / smallest: {load['first_cell_ratio']:.1f}x; load-time "
            f"exponent {'n/a' if exponent is None else f'{exponent:.3f}'}"
        )
    stall = figures.get("stall")
    if stall is not None:
        print(
            f"another room's first cell while a {stall['big_cell_bytes'] / 2**20:.1f} MiB cell "
            f"loads: median {stall['during_first_cell_s'] * 1e3:.1f} ms = {stall['ratio']:.1f}x "
            f"alone, worst {stall['worst_first_cell_s'] * 1e3:.1f} ms = "
            f"{stall['worst_ratio']:.1f}x ({stall['probes']} rooms; the big load: "
            f"{stall['big_load_s']:.2f} s)"
        )
    fanout = figures.get("fanout")
    if fanout is not None:
        print(
            f"loader's time to full with {fanout['many_peers']} peers joining / with "
            f"{fanout['few_peers']}: {fanout['ratio']:.2f}x"
        )
    held = figures.get("bytes")
    if held is not None:
        print(
            f"bytes to hold the {held['cells']}-cell notebook: doc {held['doc_bytes']:,} + blobs "
            f"{held['blob_bytes']:,} = {held['ratio']:.3f}x Jupyter's Y update "
            f"({held['y_update_bytes']:,})"
        )
    for name, data in figures.items():
        print(
            f"{name}: load average {data['load_average']['before']} -> "
            f"{data['load_average']['after']}"
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
