"""The collaboration parts of a ``nbstream sim`` result: what became of the peers' edits
(:class:`EditSummary`, the ``edits`` key) and the typists' latency (:class:`TypistsResult`, the
``typists`` key). Both are absent from the results of scenarios in which nobody edits.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.results.base import JsonDict, Reader

__all__ = ["EditSummary", "TypistPoint", "TypistsResult"]


@dataclass(frozen=True, slots=True)
class EditSummary:
    """Every edit the peers made, judged against the final server document (README, "The
    invariants"): ``lost`` must be 0."""

    made: int
    acknowledged: int  # a get_doc_bytes answer held its change
    survived: int  # acknowledged, and the final document shows it
    removed_by_delete: int  # acknowledged; its cell was deleted by a later edit
    rolled_back: int  # acknowledged; it touched a cell of a load that failed (PROTOCOL.md 10.3)
    lost: int  # acknowledged, not in the final document, and nothing removed it
    unacknowledged: int  # the server never held it (its peer never reached the server)
    lost_detail: tuple[str, ...] = ()  # the first lost edits, described

    def to_json(self) -> JsonDict:
        return {
            "made": self.made,
            "acknowledged": self.acknowledged,
            "survived": self.survived,
            "removed_by_delete": self.removed_by_delete,
            "rolled_back": self.rolled_back,
            "lost": self.lost,
            "unacknowledged": self.unacknowledged,
            "lost_detail": list(self.lost_detail),
        }

    @classmethod
    def read(cls, r: Reader) -> EditSummary:
        return cls(
            made=r.integer("made"),
            acknowledged=r.integer("acknowledged"),
            survived=r.integer("survived"),
            removed_by_delete=r.integer("removed_by_delete"),
            rolled_back=r.integer("rolled_back"),
            lost=r.integer("lost"),
            unacknowledged=r.integer("unacknowledged"),
            lost_detail=r.texts("lost_detail"),
        )


@dataclass(frozen=True, slots=True)
class TypistPoint:
    """K typists: edit-to-visible latency over every (edit, other peer) pair."""

    k: int
    samples: int
    p50_s: float
    p99_s: float
    max_s: float
    edits_lost: int
    converged: bool

    def to_json(self) -> JsonDict:
        return {
            "k": self.k,
            "samples": self.samples,
            "p50_s": self.p50_s,
            "p99_s": self.p99_s,
            "max_s": self.max_s,
            "edits_lost": self.edits_lost,
            "converged": self.converged,
        }

    @classmethod
    def read(cls, r: Reader) -> TypistPoint:
        return cls(
            k=r.integer("k"),
            samples=r.integer("samples"),
            p50_s=r.number("p50_s"),
            p99_s=r.number("p99_s"),
            max_s=r.number("max_s"),
            edits_lost=r.integer("edits_lost"),
            converged=r.flag("converged"),
        )


@dataclass(frozen=True, slots=True)
class TypistsResult:
    """The ``typists`` scenario: the run's own K, and the sweep when one was asked for.

    ``max_k_under_s``: the largest K of the sweep whose p99, and every smaller K's, stayed under
    ``p99_limit_s`` (None: no sweep, or even K=1 did not). Measured, never asserted."""

    rate_hz: float
    duration_s: float
    run: TypistPoint
    sweep: tuple[TypistPoint, ...] = ()
    p99_limit_s: float = 0.1
    max_k_under_limit: int | None = None

    def to_json(self) -> JsonDict:
        return {
            "rate_hz": self.rate_hz,
            "duration_s": self.duration_s,
            **self.run.to_json(),
            "sweep": [p.to_json() for p in self.sweep],
            "p99_limit_s": self.p99_limit_s,
            "max_k_under_limit": self.max_k_under_limit,
        }

    @classmethod
    def read(cls, r: Reader) -> TypistsResult:
        return cls(
            rate_hz=r.number("rate_hz"),
            duration_s=r.number("duration_s"),
            run=TypistPoint.read(r),
            sweep=tuple(TypistPoint.read(p) for p in r.children("sweep")),
            p99_limit_s=r.number("p99_limit_s"),
            max_k_under_limit=r.opt_integer("max_k_under_limit", required=True),
        )
