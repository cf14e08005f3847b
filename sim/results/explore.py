"""The result of ``nbstream explore`` and the merge of its shards (``nbstream merge``).

``schedules`` is how many schedules ran (in this shard); ``requested`` the ``--schedules`` of
the run; ``shards`` its N and ``shard_indices`` the shards this result covers (one for a shard's
own file, all of them after a merge). ``failures`` holds each failing schedule: its seed, the
checks it failed, its schedule, the shrunk schedule, the checks that one fails, and the command
that replays it. ``trace_sha256`` lists each schedule's trace hash in run order (a merged
result orders them by schedule index). :func:`merge` refuses results of different runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sim.results.base import JsonDict, Reader, SchemaError, schema_id

__all__ = ["ExploreFailure", "ExploreResult", "MergeError", "merge"]

KIND = "explore"


class MergeError(ValueError):
    """Results that cannot be merged (the message says why)."""


@dataclass(frozen=True, slots=True)
class ExploreFailure:
    seed: int
    failed: tuple[str, ...]  # "check name: detail"
    schedule: str
    shrunk_schedule: str
    shrunk_failed: tuple[str, ...]
    shrink_runs: int
    size: int
    shrunk_size: int
    replay: str  # the command that replays the shrunk schedule

    def to_json(self) -> JsonDict:
        return {
            "seed": self.seed,
            "failed": list(self.failed),
            "schedule": self.schedule,
            "shrunk_schedule": self.shrunk_schedule,
            "shrunk_failed": list(self.shrunk_failed),
            "shrink_runs": self.shrink_runs,
            "size": self.size,
            "shrunk_size": self.shrunk_size,
            "replay": self.replay,
        }

    @classmethod
    def read(cls, r: Reader) -> ExploreFailure:
        return cls(
            seed=r.integer("seed"),
            failed=r.texts("failed"),
            schedule=r.text("schedule"),
            shrunk_schedule=r.text("shrunk_schedule"),
            shrunk_failed=r.texts("shrunk_failed"),
            shrink_runs=r.integer("shrink_runs"),
            size=r.integer("size"),
            shrunk_size=r.integer("shrunk_size"),
            replay=r.text("replay"),
        )


@dataclass(frozen=True, slots=True)
class ExploreResult:
    seed: int
    schedules: int
    requested: int
    shards: int
    shard_indices: tuple[int, ...]
    failures: tuple[ExploreFailure, ...]
    simulated_s: float
    wall_s: float
    edits: int
    edits_lost: int
    trace_sha256: tuple[str, ...]
    replay: str | None = None  # the encoding of a --replay run

    @property
    def ok(self) -> bool:
        return not self.failures and self.edits_lost == 0

    @property
    def schedules_per_s(self) -> float:
        return self.schedules / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> JsonDict:
        return {
            "command": KIND,
            "schema": schema_id(KIND),
            "seed": self.seed,
            "schedules": self.schedules,
            "requested": self.requested,
            "shard": {"shards": self.shards, "indices": list(self.shard_indices)},
            "failures": [f.to_json() for f in self.failures],
            "simulated_s": self.simulated_s,
            "wall_s": self.wall_s,
            "schedules_per_s": self.schedules_per_s,
            "edits": self.edits,
            "edits_lost": self.edits_lost,
            "trace_sha256": list(self.trace_sha256),
            "replay": self.replay,
            "ok": self.ok,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExploreResult:
        r = Reader(data)
        r.envelope((KIND,), schema_id(KIND))
        shard = r.child("shard")
        return cls(
            seed=r.integer("seed"),
            schedules=r.integer("schedules"),
            requested=r.integer("requested"),
            shards=shard.integer("shards"),
            shard_indices=shard.integers("indices"),
            failures=tuple(ExploreFailure.read(f) for f in r.children("failures")),
            simulated_s=r.number("simulated_s"),
            wall_s=r.number("wall_s"),
            edits=r.integer("edits"),
            edits_lost=r.integer("edits_lost"),
            trace_sha256=r.texts("trace_sha256"),
            replay=r.opt_text("replay"),
        )


def merge(results: Sequence[ExploreResult]) -> ExploreResult:
    """One result from the shards of one run: counts summed, failures concatenated (by seed),
    ``wall_s`` the longest shard's (shards run side by side), traces by schedule index."""
    if not results:
        raise MergeError("nothing to merge")
    first = results[0]
    seen: set[int] = set()
    for r in results:
        if r.replay is not None:
            raise MergeError("a --replay result is no shard of a run")
        if (r.seed, r.requested, r.shards) != (first.seed, first.requested, first.shards):
            raise MergeError(
                f"results of different runs: seed {first.seed}, {first.requested} schedules, "
                f"{first.shards} shards vs seed {r.seed}, {r.requested} schedules, "
                f"{r.shards} shards"
            )
        twice = seen & set(r.shard_indices)
        if twice:
            raise MergeError(f"shard {min(twice)}/{r.shards} given twice")
        seen |= set(r.shard_indices)
    # schedule i ran in shard i % N, as that shard's (i // N)-th
    by_index: dict[int, str] = {}
    for r in results:
        mine = [i for i in range(first.requested) if i % r.shards in r.shard_indices]
        if len(mine) != len(r.trace_sha256):
            raise MergeError(
                f"shards {list(r.shard_indices)}: {len(r.trace_sha256)} traces for "
                f"{len(mine)} schedules"
            )
        by_index.update(zip(mine, r.trace_sha256, strict=True))
    return ExploreResult(
        seed=first.seed,
        schedules=sum(r.schedules for r in results),
        requested=first.requested,
        shards=first.shards,
        shard_indices=tuple(sorted(seen)),
        failures=tuple(sorted((f for r in results for f in r.failures), key=lambda f: f.seed)),
        simulated_s=sum(r.simulated_s for r in results),
        wall_s=max(r.wall_s for r in results),
        edits=sum(r.edits for r in results),
        edits_lost=sum(r.edits_lost for r in results),
        trace_sha256=tuple(by_index[i] for i in sorted(by_index)),
    )


def read_result(data: Any) -> ExploreResult:
    """An explore result from its JSON (SchemaError naming the bad key otherwise)."""
    if not isinstance(data, Mapping):
        raise SchemaError("$: expected an object")
    return ExploreResult.from_json(data)
