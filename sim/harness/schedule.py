"""The schedules ``nbstream explore`` runs: what they hold, how one is drawn from a seed, how it
is written as one replayable string, and the smaller schedules a failing one shrinks to.

A :class:`Schedule` is data only: a generated notebook's size (``cells``), the daemon's batch
size, the peers besides the loader (:class:`PeerPlan`: joins before the load or at a batch,
leaves at a batch, edits or not, a slow reader, a stalled reader from batch a until batch b or
the load's end), whether the loader edits, at most one fault at batch ``fault_at`` (the blob
store fails, or the loader disconnects) and at most one partitioned peer (both directions
stalled from a batch until the load has ended). ``seed`` seeds the run's own choices (which
edit, which cell) in :mod:`sim.harness.explore`. :func:`draw_schedule` is a pure function of
its seed; :func:`encode` / :func:`decode` carry any schedule (a shrunk one is generally no
seed's) through ``nbstream explore --replay``; :func:`smaller` lists the one-step reductions
the shrinker tries, in a fixed order.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "Fault",
    "PeerPlan",
    "Schedule",
    "ScheduleError",
    "decode",
    "draw_schedule",
    "encode",
    "smaller",
]

Fault = Literal["none", "fail", "loader-leaves"]
FAULTS: tuple[Fault, ...] = ("none", "fail", "loader-leaves")
SLOW_READ_S = 0.002
ENCODING_VERSION = 1


class ScheduleError(ValueError):
    """A replay string that is not a schedule (the message says why)."""


@dataclass(frozen=True, slots=True)
class PeerPlan:
    name: str
    join_at: int | None = None  # None: before the load
    leave_at: int | None = None
    edits: bool = True
    slow: bool = False  # reads with a SLOW_READ_S pause before every read
    stall_at: int | None = None  # stops reading from this batch ...
    stall_until: int | None = None  # ... until this batch (None: until the load has ended)

    @property
    def hooked(self) -> bool:
        """Its streams can be stalled (it must be in the room before the load)."""
        return self.stall_at is not None


@dataclass(frozen=True, slots=True)
class Schedule:
    seed: int
    cells: int
    batch_size: int
    peers: tuple[PeerPlan, ...]
    loader_edits: bool = True
    fault: Fault = "none"
    fault_at: int = 0
    partitioned: str | None = None
    partition_at: int = 0

    @property
    def batches(self) -> int:
        return -(-self.cells // self.batch_size)

    def size(self) -> int:
        """How much happens: the shrinker keeps only schedules of a smaller or equal size."""
        n = self.cells + self.batches + 4 * len(self.peers) + int(self.loader_edits)
        n += 3 * (self.fault != "none") + 3 * (self.partitioned is not None)
        for p in self.peers:
            n += int(p.edits) + int(p.slow) + 2 * (p.stall_at is not None)
            n += int(p.join_at is not None) + int(p.leave_at is not None)
        return n

    def describe(self) -> str:
        peers = ", ".join(_describe_peer(p) for p in self.peers) or "no other peer"
        fault = "no fault" if self.fault == "none" else f"{self.fault} at batch {self.fault_at}"
        cut = (
            f"; {self.partitioned} partitioned at batch {self.partition_at}"
            if self.partitioned is not None
            else ""
        )
        return (
            f"seed {self.seed}: {self.cells} cells in batches of {self.batch_size}; loader"
            f"{' edits' if self.loader_edits else ''}; {peers}; {fault}{cut}"
        )


def _describe_peer(p: PeerPlan) -> str:
    parts = [f"join {'-' if p.join_at is None else p.join_at}"]
    if p.leave_at is not None:
        parts.append(f"leave {p.leave_at}")
    if p.edits:
        parts.append("edits")
    if p.slow:
        parts.append("slow")
    if p.stall_at is not None:
        parts.append(f"stalled {p.stall_at}-{'end' if p.stall_until is None else p.stall_until}")
    return f"{p.name}({', '.join(parts)})"


def draw_schedule(seed: int) -> Schedule:
    """Schedule number ``seed``: every choice from ``random.Random(f"explore:{seed}")``."""
    rng = random.Random(f"explore:{seed}")
    cells = rng.randint(4, 18)
    batch_size = rng.randint(1, 4)
    last = -(-cells // batch_size) - 1
    slow = rng.randrange(6)  # index of the slow reader; >= the peer count: none
    peers: list[PeerPlan] = []
    for i in range(rng.randint(1, 4)):
        join = None if i == 0 or rng.random() < 0.4 else rng.randint(0, last)
        leave = None
        if i > 0 and rng.random() < 0.3:
            leave = rng.randint(join or 0, last)
        stall_at = stall_until = None
        if join is None and leave is None and rng.random() < 0.2:
            stall_at = rng.randint(0, last)
            stall_until = rng.choice([None, rng.randint(stall_at, last)])
        edits = rng.random() < 0.7
        peers.append(PeerPlan(f"peer{i + 1}", join, leave, edits, i == slow, stall_at, stall_until))
    fault = rng.choice(FAULTS)
    fault_at = rng.randint(0, last)
    partitioned, partition_at = None, 0
    candidates = [p.name for p in peers if p.join_at is None and p.leave_at is None]
    if candidates and rng.random() < 0.25:
        partitioned = rng.choice(candidates)
        partition_at = rng.randint(0, last)
    return Schedule(
        seed,
        cells,
        batch_size,
        tuple(peers),
        rng.random() < 0.8,
        fault,
        fault_at,
        partitioned,
        partition_at,
    )


# ---------------------------------------------------------------------------- replay strings
def encode(schedule: Schedule) -> str:
    """The schedule as one shell-safe string (base64url of zlib'd JSON)."""
    data = {"v": ENCODING_VERSION, **dataclasses.asdict(schedule)}
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode().rstrip("=")


def decode(text: str) -> Schedule:
    """The schedule :func:`encode` wrote; :class:`ScheduleError` for anything else."""
    try:
        raw = zlib.decompress(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        data = json.loads(raw)
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise ScheduleError(f"not a schedule encoding ({exc})") from None
    if not isinstance(data, dict) or data.get("v") != ENCODING_VERSION:
        raise ScheduleError(f"not a version-{ENCODING_VERSION} schedule encoding")
    try:
        peers = tuple(PeerPlan(**p) for p in data["peers"])
        fields = {k: v for k, v in data.items() if k not in ("v", "peers")}
        schedule = Schedule(peers=peers, **fields)
    except (TypeError, KeyError) as exc:
        raise ScheduleError(f"schedule encoding: {exc}") from None
    _validate(schedule)
    return schedule


def _validate(s: Schedule) -> None:
    def integer(value: Any, what: str, low: int, high: int | None = None) -> None:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
        if not ok or (high is not None and value > high):
            raise ScheduleError(f"schedule encoding: bad {what}: {value!r}")

    integer(s.seed, "seed", -(2**63))
    integer(s.cells, "cells", 1, 10_000)
    integer(s.batch_size, "batch_size", 1, 10_000)
    last = s.batches - 1
    if s.fault not in FAULTS:
        raise ScheduleError(f"schedule encoding: bad fault: {s.fault!r}")
    integer(s.fault_at, "fault_at", 0, last)
    integer(s.partition_at, "partition_at", 0, last)
    names = [p.name for p in s.peers]
    if len(set(names)) != len(names) or not all(
        isinstance(n, str) and n.startswith("peer") for n in names
    ):
        raise ScheduleError(f"schedule encoding: bad peer names: {names!r}")
    for p in s.peers:
        for what in ("join_at", "leave_at", "stall_at", "stall_until"):
            value = getattr(p, what)
            if value is not None:
                integer(value, f"{p.name}.{what}", 0, last)
    if s.partitioned is not None and s.partitioned not in names:
        raise ScheduleError(f"schedule encoding: no peer {s.partitioned!r} to partition")


# ---------------------------------------------------------------------------- shrinking
def _clamp(s: Schedule) -> Schedule:
    """Batch indices brought inside the (possibly fewer) batches of ``s``."""
    last = s.batches - 1

    def c(v: int | None) -> int | None:
        return None if v is None else min(v, last)

    peers = tuple(
        dataclasses.replace(
            p,
            join_at=c(p.join_at),
            leave_at=c(p.leave_at),
            stall_at=c(p.stall_at),
            stall_until=c(p.stall_until),
        )
        for p in s.peers
    )
    return dataclasses.replace(
        s, peers=peers, fault_at=min(s.fault_at, last), partition_at=min(s.partition_at, last)
    )


def smaller(s: Schedule) -> Iterator[Schedule]:
    """One-step reductions of ``s``, biggest first: drop a peer, the fault, the partition, a
    stall; stop a peer's edits, its slowness, its leave, its late join; fewer cells; fewer
    batches. Deterministic order; every one has ``size()`` below ``s.size()``."""
    for i, p in enumerate(s.peers):
        rest = s.peers[:i] + s.peers[i + 1 :]
        cut = None if s.partitioned == p.name else s.partitioned
        yield dataclasses.replace(s, peers=rest, partitioned=cut)
    if s.fault != "none":
        yield dataclasses.replace(s, fault="none", fault_at=0)
    if s.partitioned is not None:
        yield dataclasses.replace(s, partitioned=None, partition_at=0)
    for i, p in enumerate(s.peers):
        variants = []
        if p.stall_at is not None:
            variants.append(dataclasses.replace(p, stall_at=None, stall_until=None))
        if p.edits:
            variants.append(dataclasses.replace(p, edits=False))
        if p.slow:
            variants.append(dataclasses.replace(p, slow=False))
        if p.leave_at is not None:
            variants.append(dataclasses.replace(p, leave_at=None))
        if p.join_at is not None and not p.hooked and s.partitioned != p.name:
            variants.append(dataclasses.replace(p, join_at=None))
        for v in variants:
            yield dataclasses.replace(s, peers=(*s.peers[:i], v, *s.peers[i + 1 :]))
    if s.loader_edits:
        yield dataclasses.replace(s, loader_edits=False)
    for cells in sorted({max(1, s.cells // 2), s.cells - 1}):
        if cells < s.cells:
            yield _clamp(dataclasses.replace(s, cells=cells))
    if s.batches > 1:
        wider = s.batch_size + 1
        while -(-s.cells // wider) == s.batches:
            wider += 1
        yield _clamp(dataclasses.replace(s, batch_size=wider))
