"""Built-in scenarios. Each is a seeded recipe: peers, when they join or leave, injected faults.

Join and disconnect points are batch indices, drawn from ``random.Random(seed)``, so a scenario
with the same seed, notebook and batch size is the same run every time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from core.errors import BlobStoreError
from sim.harness.peers import PeerSpec

__all__ = [
    "ALL_SCENARIOS",
    "COLLAB_SCENARIOS",
    "SCENARIOS",
    "Scenario",
    "build_scenario",
    "disk_full",
]

SLOW_BUFFER = 4096  # bytes per direction for slow / stalled peers (reference §4.7: 8 KiB on macOS)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    peers: tuple[PeerSpec, ...]
    fail_at_batch: int | None = None  # inject a blob-store failure at this batch (first load only)

    @property
    def loader(self) -> PeerSpec:
        return self.peers[0]


SCENARIOS: dict[str, str] = {
    "default": "a loader, a peer joining a third of the way in, a slow reader on a 4 KiB buffer",
    "single": "one peer loads the notebook alone",
    "join-mid-load": "peers joining at random batches while the load streams",
    "many-peers": "100 peers (or --peers) joining at random batches",
    "failure": "blob store fails at a batch mid-load: rollback, every peer converges to empty, "
    "then a retry loads fully",
    "slow-peers": "slow, never-reading and never-replying peers on 4 KiB buffers: nobody deadlocks",
    "disconnect": "a joined peer vanishes mid-load; the load and the others carry on",
    "loader-disconnect": "the loading peer vanishes mid-load: rollback, then a retry",
}


# Scenarios in which peers edit (sim.harness.collab, sim.harness.typists): the bundled daemon
# only; each checks convergence and that no acknowledged edit was lost.
COLLAB_SCENARIOS: dict[str, str] = {
    "edits": "peers type into cells, add and delete cells while the load streams and after it",
    "edits-rollback": "the load fails (blob store full) while peers edit: the rollback removes "
    "only the load's cells, peers' cells and text survive; a retry loads the file again",
    "partition": "a peer is cut off (its stream stalled both ways), keeps editing, resumes; "
    "then its connection drops, it edits offline and reconnects",
    "typists": "K peers (--peers, default 4) type at a fixed rate after the load: "
    "edit-to-visible latency at every other peer (p50/p99); --typists-max K sweeps K",
}

ALL_SCENARIOS: dict[str, str] = {**SCENARIOS, **COLLAB_SCENARIOS}


def _joins(rng: random.Random, count: int, batches: int, *, prefix: str) -> list[PeerSpec]:
    hi = max(0, batches - 1)
    return [PeerSpec(f"{prefix}{i + 1}", join_at_batch=rng.randint(0, hi)) for i in range(count)]


def build_scenario(
    name: str,
    *,
    seed: int,
    batches: int,
    peers: int | None = None,
    fail_at_batch: int | None = None,
) -> Scenario:
    """The scenario ``name`` for a load of ``batches`` batches. Raises KeyError if unknown."""
    if name not in SCENARIOS:
        raise KeyError(name)
    rng = random.Random(f"{name}:{seed}")
    desc = SCENARIOS[name]
    last = max(0, batches - 1)
    mid = batches // 2
    loader = PeerSpec("loader")
    if name == "single":
        return Scenario(name, desc, (loader,))
    if name == "default":
        extra = _joins(rng, max(0, (peers or 3) - 3), batches, prefix="peer")
        specs = (
            loader,
            PeerSpec("joiner", join_at_batch=batches // 3),
            PeerSpec("slow", behaviour="slow", read_delay_s=0.001, buffer=SLOW_BUFFER),
            *extra,
        )
        return Scenario(name, desc, specs)
    if name in ("join-mid-load", "many-peers"):
        count = (peers or (100 if name == "many-peers" else 5)) - 1
        return Scenario(name, desc, (loader, *_joins(rng, max(0, count), batches, prefix="peer")))
    if name == "failure":
        k = fail_at_batch if fail_at_batch is not None else rng.randint(1, max(1, last))
        k = min(k, last)
        joiners = _joins(rng, max(0, (peers or 3) - 1), max(1, k), prefix="peer")
        return Scenario(name, desc, (loader, *joiners), fail_at_batch=k)
    if name == "slow-peers":
        return Scenario(
            name,
            desc,
            (
                loader,
                PeerSpec("slow", behaviour="slow", read_delay_s=0.002, buffer=SLOW_BUFFER),
                PeerSpec("mute", behaviour="never_reads", buffer=SLOW_BUFFER),
                PeerSpec("no-reply", behaviour="never_replies", buffer=SLOW_BUFFER),
                PeerSpec("late", join_at_batch=mid, buffer=SLOW_BUFFER),
            ),
        )
    if name == "disconnect":
        return Scenario(
            name,
            desc,
            (
                loader,
                PeerSpec(
                    "leaver", behaviour="disconnects", join_at_batch=0, disconnect_at_batch=mid
                ),
                PeerSpec("stayer", join_at_batch=min(1, last)),
            ),
        )
    # loader-disconnect
    return Scenario(
        name,
        desc,
        (
            PeerSpec("loader", behaviour="disconnects", disconnect_at_batch=max(1, mid)),
            PeerSpec("watcher", join_at_batch=0),
        ),
    )


def disk_full(index: int) -> BlobStoreError:
    """The fault a scenario injects at batch ``index``: the blob store's disk is full."""
    return BlobStoreError(
        f"blob store write failed: [Errno 28] No space left on device (injected at batch {index})"
    )
