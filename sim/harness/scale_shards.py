"""``nbstream scale --shard I/N`` and the merge of its shards (``nbstream merge``).

Shard ``I`` measures the sweep's units (:func:`sim.harness.scale.sweep_units`: (size, repeat)
in run order) whose index ``% N == I`` on the bundled daemon, after a warm-up load of its own,
and writes them unfitted (:class:`~sim.results.scale_shard.ScaleShard`). :func:`merge_shards`
takes all ``N`` shards of one run, puts their loads back in run order and fits them with
:func:`sim.harness.scale.assemble_scale` — the function an unsharded run ends with — so the
merged verdicts and fits are those of an unsharded run over the same loads. Instructions
(valgrind: exact) are counted by shard 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from core.loader import InsertPath
from sim.harness.scale import (
    BUNDLED_SERVER,
    LoadMeasurement,
    SweepMeasurements,
    assemble_scale,
    check_sweep,
    count_exact,
    measure_units,
    plan_sweep,
    sweep_units,
)
from sim.results.scale import CallFit, InstructionFit, RawPoint, ScaleResult
from sim.results.scale_shard import ScaleShard, ShardLoad
from sim.workload.sweep import NotebookSweep

__all__ = ["ShardMergeError", "merge_shards", "run_scale_shard", "shard_result", "shard_units"]

Progress = Callable[[str], None]


class ShardMergeError(ValueError):
    """Shards that cannot be merged (the message says why, in one line)."""


def shard_units(unit_count: int, index: int, shards: int) -> tuple[int, ...]:
    """The units shard ``index`` of ``shards`` measures: those whose index % shards == index."""
    return tuple(u for u in range(unit_count) if u % shards == index)


async def run_scale_shard(
    paths: Sequence[InsertPath],
    *,
    index: int,
    shards: int,
    sizes: dict[str, Sequence[int]] | None = None,
    repeats: int = 2,
    seed: int = 0,
    batch_size: int = 3,
    progress: Progress | None = None,
    instructions_max_cells: int = 0,
    notebook: NotebookSweep | None = None,
    calls_max_cells: int = 0,
) -> ScaleShard:
    """Measure shard ``index`` of ``shards`` of the sweep :func:`run_scale` would run."""
    build, chosen = plan_sweep(paths, sizes, repeats, batch_size, seed, notebook)
    units = sweep_units(chosen, repeats)
    mine = shard_units(len(units), index, shards)
    t0 = time.monotonic()
    swept = await measure_units(
        paths,
        chosen,
        repeats,
        batch_size=batch_size,
        build=build,
        only=set(mine).__contains__,
        progress=progress,
    )
    fit, calls = (
        count_exact(
            chosen,
            seed=seed,
            batch_size=batch_size,
            instructions_max_cells=instructions_max_cells,
            calls_max_cells=calls_max_cells,
            progress=progress,
            build=build,
        )
        if index == 0
        else (None, None)
    )
    run = {
        "seed": seed,
        "repeats": repeats,
        "batch_size": batch_size,
        "sizes_by_path": {name: list(s) for name, s in chosen.items()},
        "instructions_max_cells": instructions_max_cells,
        "calls_max_cells": calls_max_cells,
        "notebook": None if notebook is None else dict(notebook.source),
        "server": BUNDLED_SERVER,
    }
    return shard_result(swept, index, shards, run, fit, time.monotonic() - t0, calls=calls)


def shard_result(
    swept: SweepMeasurements,
    index: int,
    shards: int,
    run: Mapping[str, Any],
    instructions: InstructionFit | None,
    elapsed_s: float,
    *,
    calls: CallFit | None = None,
) -> ScaleShard:
    """Shard ``index`` of ``shards`` of ``run`` from what it measured (``swept``: its units'
    loads; loads of other units are left out)."""
    units = sweep_units(run["sizes_by_path"], run["repeats"])
    mine = shard_units(len(units), index, shards)
    keep = set(mine)
    loads = [
        ShardLoad(u, units[u][1], name, _figures(m), m.batch_s)
        for name, measured in swept.loads.items()
        for u, m in measured
        if u in keep
    ]
    raw = [RawPoint(n, t) for n, t in swept.raw_points if _last_unit(units, n) in keep]
    return ScaleShard(
        shards=shards,
        index=index,
        run=dict(run),
        units=mine,
        loads=tuple(loads),
        raw_automerge=tuple(raw),
        instructions=instructions if index == 0 else None,
        elapsed_s=elapsed_s,
        calls=calls if index == 0 else None,
    )


def _last_unit(units: Sequence[tuple[int, int]], size: int) -> int:
    """The unit after which a size's raw Automerge floor is measured (its last repeat)."""
    return max(u for u, (n, _) in enumerate(units) if n == size)


def _figures(m: LoadMeasurement) -> dict[str, Any]:
    return {
        "cells": m.cells,
        "total_s": m.total_s,
        "server_s": m.server_s,
        "time_to_first_cell_s": m.time_to_first_cell_s,
        "time_to_full_s": m.time_to_full_s,
        "ops": m.ops,
        "transactions": m.transactions,
        "scan_steps": m.scan_steps,
        "frames": m.frames,
        "bytes_in": m.bytes_in,
    }


def _measurement(load: ShardLoad) -> LoadMeasurement:
    f = load.figures
    return LoadMeasurement(
        cells=f["cells"],
        total_s=f["total_s"],
        server_s=f["server_s"],
        time_to_first_cell_s=f["time_to_first_cell_s"],
        time_to_full_s=f["time_to_full_s"],
        batch_s=load.batch_s,
        ops=f["ops"],
        transactions=f["transactions"],
        scan_steps=f["scan_steps"],
        frames=f["frames"],
        bytes_in=f["bytes_in"],
    )


def merge_shards(shards: Sequence[ScaleShard]) -> ScaleResult:
    """The scale result of all ``N`` shards of one run (:class:`ShardMergeError` otherwise):
    the loads in run order, fitted as an unsharded run fits them; ``elapsed_s`` the longest
    shard's (shards run side by side)."""
    if not shards:
        raise ShardMergeError("nothing to merge")
    first = shards[0]
    by_index: dict[int, ScaleShard] = {}
    for s in shards:
        if s.shards != first.shards or s.run != first.run:
            raise ShardMergeError(
                f"scale shards of different runs: shard {first.index}/{first.shards} "
                f"({_describe(first.run)}) vs shard {s.index}/{s.shards} ({_describe(s.run)})"
            )
        if s.index in by_index:
            raise ShardMergeError(f"shard {s.index}/{s.shards} given twice")
        by_index[s.index] = s
    missing = [i for i in range(first.shards) if i not in by_index]
    if missing:
        given = ", ".join(f"{i}/{first.shards}" for i in sorted(by_index))
        raise ShardMergeError(
            f"scale shards {', '.join(f'{i}/{first.shards}' for i in missing)} missing "
            f"(given {given}); a sweep's fit needs every shard"
        )
    run = first.run
    chosen: dict[str, list[int]] = {k: list(v) for k, v in run["sizes_by_path"].items()}
    try:
        if not chosen:
            raise ValueError("no insert path in run.sizes_by_path")
        for sizes in chosen.values():
            check_sweep(sizes, run["repeats"], run["batch_size"])
    except ValueError as exc:
        raise ShardMergeError(f"scale shards of a sweep that cannot be fitted: {exc}") from None
    units = sweep_units(chosen, run["repeats"])
    measured: dict[str, list[tuple[int, LoadMeasurement]]] = {name: [] for name in chosen}
    for s in shards:
        expected = shard_units(len(units), s.index, s.shards)
        got = {x.unit for x in s.loads}
        if s.units != expected or not got <= set(expected):
            raise ShardMergeError(
                f"shard {s.index}/{s.shards}: units {list(s.units)}, expected {list(expected)}"
            )
        for x in s.loads:
            if x.path not in measured or x.figures["cells"] != units[x.unit][0]:
                raise ShardMergeError(
                    f"shard {s.index}/{s.shards}: a {x.figures['cells']}-cell {x.path!r} load "
                    f"as unit {x.unit} ({units[x.unit][0]} cells)"
                )
            measured[x.path].append((x.unit, _measurement(x)))
    for name, loads in measured.items():
        want = sum(1 for n, _ in units if n in chosen[name])
        if len(loads) != want or len({u for u, _ in loads}) != want:
            raise ShardMergeError(f"{name} path: {len(loads)} loads in the shards for {want}")
        loads.sort(key=lambda x: x[0])
    raw = sorted(
        ((p.cells, p.total_s) for s in shards for p in s.raw_automerge), key=lambda x: x[0]
    )
    return assemble_scale(
        chosen,
        {name: [m for _, m in loads] for name, loads in measured.items()},
        raw,
        by_index[0].instructions,
        calls=by_index[0].calls,
        repeats=run["repeats"],
        seed=run["seed"],
        batch_size=run["batch_size"],
        elapsed_s=max(s.elapsed_s for s in shards),
        notebook=run["notebook"],
        shards=first.shards,
    )


def _describe(run: Any) -> str:
    sizes = "; ".join(f"{k}: {','.join(map(str, v))}" for k, v in run["sizes_by_path"].items())
    nb = run["notebook"]
    source = "generated" if nb is None else f"notebook {nb.get('path')}"
    return (
        f"seed {run['seed']}, sizes {sizes}, {run['repeats']} repeats, batch size "
        f"{run['batch_size']}, instructions up to {run['instructions_max_cells']} cells, "
        f"calls up to {run.get('calls_max_cells', 0)} cells, {source}"
    )
