"""The daemon-wide memory budget for bytes held on behalf of peers.

Every connection holds some bytes for its peer: the partial frame in its decoder
(:attr:`core.connection.Connection.buffered`), the responses queued for it, and what the
transport has not yet handed to the kernel because the peer does not read. Each is bounded per
frame, but not per connection nor in total: 8 peers that announced 100 MiB frames and stalled
held 546 MB, and a peer that asked for ``get_doc_bytes`` without reading grew the daemon by
100 MB. :class:`MemoryBudget` adds those figures up over every connection.

A holder reports its figure *before* it buffers more (:meth:`MemoryBudget.update` with what it
will hold), so the accounted total never exceeds the limit. When a report would push the total
over, the budget closes the holders with the **most** bytes (the reporting one counted at its new
figure; on a tie, the reporting one) until the rest fits: a peer that reads and writes normally
holds little, so it is not the one closed, while a peer that stalls or never reads is the one
whose bytes pile up. Policy only: no I/O and no asyncio here; the session does the closing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["BudgetHolder", "BudgetStatistics", "MemoryBudget"]


class BudgetHolder(Protocol):
    """Something that holds bytes for a peer and can be closed (a daemon session)."""

    @property
    def name(self) -> str: ...

    def over_budget(self, detail: str) -> None:
        """Close yourself with ``over_budget``; buffer nothing more (the bytes count as freed)."""


@dataclass(frozen=True, slots=True)
class BudgetStatistics:
    limit: int | None
    """The budget in bytes (None: unlimited, only counted)."""
    total: int
    """Bytes accounted now, over every holder."""
    peak: int
    """The largest total ever accounted (never above ``limit``)."""
    holders: int
    """Holders with a non-zero figure now."""
    closed: int
    """Holders closed because the total would have gone over the limit."""


class MemoryBudget:
    """Bytes held per holder, their total, and the closing rule of the module docstring."""

    __slots__ = ("_closed", "_held", "_limit", "_peak", "_total")

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit < 0:
            raise ValueError(f"memory budget must be >= 0 bytes, got {limit}")
        self._limit = limit
        self._held: dict[BudgetHolder, int] = {}
        self._total = 0
        self._peak = 0
        self._closed = 0

    @property
    def limit(self) -> int | None:
        return self._limit

    @property
    def total(self) -> int:
        return self._total

    def held(self, holder: BudgetHolder) -> int:
        return self._held.get(holder, 0)

    def update(self, holder: BudgetHolder, nbytes: int) -> bool:
        """``holder`` holds (or is about to hold) ``nbytes``. False: it was closed instead.

        A figure that does not grow is always accepted. One that would push the total over the
        limit closes the largest holders first (their bytes leave the total at once); if
        ``holder`` is among them it must drop what it was about to buffer.
        """
        old = self._held.get(holder, 0)
        total = self._total - old + nbytes
        limit = self._limit
        if limit is None or total <= limit or nbytes <= old:
            self._set(holder, old, nbytes)
            return True
        figures = dict(self._held)
        figures[holder] = nbytes
        victims: list[tuple[BudgetHolder, int]] = []
        while total > limit:
            # The largest holder; on a tie the reporting one (it is the one growing now).
            victim = max(figures, key=lambda h: (figures[h], h is holder))
            held = figures.pop(victim)
            total -= held
            victims.append((victim, held))
        holder_closed = any(v is holder for v, _ in victims)
        before = self._total
        for victim, _held in victims:
            if victim is not holder:
                self._total -= self._held.pop(victim, 0)
        if holder_closed:
            self._total -= self._held.pop(holder, 0)
        else:
            self._set(holder, old, nbytes)
        for victim, held in victims:
            self._closed += 1
            shown = nbytes if victim is holder else held
            victim.over_budget(
                f"over the daemon's memory budget: this connection would hold {shown} bytes "
                f"(buffered input and queued output) with {before - old + nbytes} bytes held "
                f"for all connections, over the budget of {limit} bytes"
            )
        return not holder_closed

    def release(self, holder: BudgetHolder) -> None:
        """``holder`` is gone: its bytes leave the total."""
        self._total -= self._held.pop(holder, 0)

    def _set(self, holder: BudgetHolder, old: int, nbytes: int) -> None:
        if nbytes:
            self._held[holder] = nbytes
        else:
            self._held.pop(holder, None)
        self._total += nbytes - old
        if self._total > self._peak:
            self._peak = self._total

    def statistics(self) -> BudgetStatistics:
        return BudgetStatistics(
            limit=self._limit,
            total=self._total,
            peak=self._peak,
            holders=len(self._held),
            closed=self._closed,
        )
