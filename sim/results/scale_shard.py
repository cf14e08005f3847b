"""One shard of ``nbstream scale --shard I/N``: the loads it measured, not yet fitted.

A sweep is a list of *units* in run order — (size, repeat) for every distinct size ascending,
then every repeat; a unit measures every insert path that has that size — and shard ``I`` of
``N`` measures the units whose index ``% N == I``. A shard's loads cannot be fitted alone (it
may hold one size), so its file (kind ``scale-shard``) keeps each load's raw figures, batch
latencies included; ``nbstream merge`` of all ``N`` shards fits them exactly as an unsharded
``nbstream scale`` fits the same loads (:mod:`sim.harness.scale_shards`). ``run`` is what makes
shards parts of one sweep (seed, repeats, batch size, sizes per path, instruction cut-off,
notebook, server): merge refuses shards whose ``run`` or ``shards`` differ. Instructions
(valgrind, exact) are counted by shard 0 only; the raw Automerge floor of a size by the shard
that measures its last repeat.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sim.results.base import JsonDict, Reader, SchemaError, schema_id
from sim.results.scale import CallFit, InstructionFit, RawPoint

__all__ = ["KIND", "ScaleShard", "ShardLoad", "read_shard"]

KIND = "scale-shard"
# The figures of one load, as sim.harness.scale.LoadMeasurement has them (minus batch_s).
LOAD_INTS = ("cells", "ops", "transactions", "scan_steps", "frames", "bytes_in")
LOAD_NUMBERS = ("total_s", "server_s")
LOAD_OPT_NUMBERS = ("time_to_first_cell_s", "time_to_full_s")


@dataclass(frozen=True, slots=True)
class ShardLoad:
    """One measured load: its unit (index in the sweep's run order), path and figures."""

    unit: int
    repeat: int
    path: str
    figures: Mapping[str, Any]  # LOAD_INTS, LOAD_NUMBERS, LOAD_OPT_NUMBERS
    batch_s: tuple[float, ...]

    def to_json(self) -> JsonDict:
        return {
            "unit": self.unit,
            "repeat": self.repeat,
            "path": self.path,
            **self.figures,
            "batch_s": list(self.batch_s),
        }

    @classmethod
    def read(cls, r: Reader) -> ShardLoad:
        figures: dict[str, Any] = {k: r.integer(k) for k in LOAD_INTS}
        figures.update({k: r.number(k) for k in LOAD_NUMBERS})
        figures.update({k: r.opt_number(k, required=True) for k in LOAD_OPT_NUMBERS})
        return cls(
            r.integer("unit"), r.integer("repeat"), r.text("path"), figures, r.numbers("batch_s")
        )


@dataclass(frozen=True, slots=True)
class ScaleShard:
    """Shard ``index`` of ``shards``: its units, loads, raw Automerge points and (shard 0 only,
    when counted) the instruction and call fits."""

    shards: int
    index: int
    run: Mapping[str, Any]  # seed, repeats, batch_size, sizes_by_path, instructions_max_cells,
    # calls_max_cells, notebook (or None), server
    units: tuple[int, ...]
    loads: tuple[ShardLoad, ...]
    raw_automerge: tuple[RawPoint, ...]
    instructions: InstructionFit | None
    elapsed_s: float
    calls: CallFit | None = None  # shard 0 only (absent in older files)

    def to_json(self) -> JsonDict:
        return {
            "command": KIND,
            "schema": schema_id(KIND),
            "shard": {"shards": self.shards, "index": self.index},
            "run": dict(self.run),
            "units": list(self.units),
            "loads": [x.to_json() for x in self.loads],
            "raw_automerge": [p.to_json() for p in self.raw_automerge],
            "instructions": None if self.instructions is None else self.instructions.to_json(),
            "elapsed_s": self.elapsed_s,
            **({} if self.calls is None else {"calls": self.calls.to_json()}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScaleShard:
        r = Reader(data)
        r.envelope((KIND,), schema_id(KIND))
        shard = r.child("shard")
        run = r.child("run")
        sizes = run.child("sizes_by_path")
        notebook = run.raw("notebook")
        if notebook is not None and not isinstance(notebook, Mapping):
            raise SchemaError(f"{run.at('notebook')}: expected an object or null")
        shards, index = shard.integer("shards"), shard.integer("index")
        if shards < 1 or not 0 <= index < shards:
            raise SchemaError(f"shard: index {index} of {shards} shards")
        return cls(
            shards=shards,
            index=index,
            run={
                "seed": run.integer("seed"),
                "repeats": run.integer("repeats"),
                "batch_size": run.integer("batch_size"),
                "sizes_by_path": {name: list(sizes.integers(name)) for name in sizes.d},
                "instructions_max_cells": run.integer("instructions_max_cells"),
                "calls_max_cells": run.opt_integer("calls_max_cells") or 0,
                "notebook": None if notebook is None else dict(notebook),
                "server": run.text("server"),
            },
            units=r.integers("units"),
            loads=tuple(ShardLoad.read(x) for x in r.children("loads")),
            raw_automerge=tuple(RawPoint.read(p) for p in r.children("raw_automerge")),
            instructions=InstructionFit.read(r.child("instructions"))
            if r.present("instructions")
            else None,
            elapsed_s=r.number("elapsed_s"),
            calls=CallFit.read(r.child("calls")) if r.present("calls") else None,
        )


def read_shard(data: Any) -> ScaleShard:
    """A scale shard from its JSON (SchemaError naming the bad key otherwise)."""
    if not isinstance(data, Mapping):
        raise SchemaError("$: expected an object")
    return ScaleShard.from_json(data)
