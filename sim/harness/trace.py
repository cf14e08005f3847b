"""A run's trace: its ordered events, their sha256, and the first place two traces differ.

A trace is a list of text lines in a canonical order: first the run's own events in the order
the harness saw them (batches, joins, faults, edits, partitions, checkpoints), then, peer by peer
in name order, every frame that peer received (its kind and wire size) in arrival order. The
frames of different peers are kept apart because their interleaving is the event loop's, not the
scenario's. ``trace_sha256`` is the sha256 of the lines joined by newlines (UTF-8).

:func:`result_trace` builds the trace of any ``sim`` result from what the result itself holds
(the scenarios without a harness trace of their own); :class:`Trace` is filled by the
collaboration scenarios as they run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from sim.results.sim import SimResult

__all__ = ["Trace", "first_difference", "result_trace", "trace_sha256"]


@dataclass(slots=True)
class Trace:
    events: list[str] = field(default_factory=list)
    frames: dict[str, list[str]] = field(default_factory=dict)

    def event(self, line: str) -> None:
        self.events.append(line)

    def frame(self, peer: str, kind: str, nbytes: int) -> None:
        self.frames.setdefault(peer, []).append(f"{kind} {nbytes}")

    def lines(self) -> list[str]:
        out = list(self.events)
        for peer in sorted(self.frames):
            out.extend(f"frame {peer} {f}" for f in self.frames[peer])
        return out


def trace_sha256(lines: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def result_trace(result: SimResult) -> list[str]:
    """The trace of a result: loads and their batches, peers and every frame's size and effect."""
    out: list[str] = []
    for load in result.loads or ():
        out.append(f"load ok={load.ok} cells={load.cells} error={load.error}")
        out.extend(f"batch {b.index} cells={b.cells} outputs={b.outputs}" for b in load.batches)
    for peer in sorted(result.peers, key=lambda p: p.name):
        out.append(f"peer {peer.name} {peer.behaviour} joined={peer.joined_at_batch}")
        out.extend(
            f"frame {peer.name} {a.bytes} cells={a.cells} changed={a.changed}"
            for a in peer.arrivals
        )
    out.extend(f"check {c.name} {c.ok}" for c in result.checks)
    return out


def first_difference(a: Sequence[str], b: Sequence[str]) -> tuple[int, str, str] | None:
    """(index, a's event, b's event) of the first difference; ``<end>`` past a trace's end."""
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else "<end>"
        y = b[i] if i < len(b) else "<end>"
        if x != y:
            return i, x, y
    return None
