"""The result of ``nbstream profile``: one notebook's load, phase by phase (:class:`ProfileResult`).

Built by :func:`sim.harness.profile.profile_notebook` from ``runs`` single-peer sim runs. Keys
marked "absent in older files" may be missing; they are then ``None`` and left out by ``to_json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from sim.results.base import Check, JsonDict, Reader, all_ok, schema_id
from sim.results.sim import BatchRow, NotebookInfo, Phases

__all__ = ["PROFILE_SCHEMA", "ProfileResult"]

PROFILE_SCHEMA = schema_id("profile")


@dataclass(frozen=True, slots=True)
class ProfileResult:
    """Per-phase medians over the runs, the median run's batches and counters, and the checks
    that failed in any run (``ok``: none did; it decides the exit status)."""

    notebook: NotebookInfo
    phases: Phases | None  # the median of each phase over the runs; None: the server gave none
    batches: tuple[BatchRow, ...]
    counters: Mapping[str, int]
    runs: int | None = None  # absent in older files (so are the fields below)
    batch_size: int | None = None
    insert_path: str | None = None
    phases_per_run: tuple[Phases | None, ...] | None = None
    server: str | None = None  # what was measured (absent in older files)
    time_to_first_cell_s: float | None = None
    time_to_full_s: float | None = None
    raw_automerge_s: float | None = None
    checks: tuple[Check, ...] | None = None
    command: ClassVar[str] = "profile"

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks or ())

    def to_json(self) -> JsonDict:
        out: JsonDict = {"command": self.command, "schema": PROFILE_SCHEMA}
        out["notebook"] = self.notebook.to_json()
        for key, value in (
            ("runs", self.runs),
            ("batch_size", self.batch_size),
            ("insert_path", self.insert_path),
        ):
            if value is not None:
                out[key] = value
        out["phases"] = Phases.write_optional(self.phases)
        if self.phases_per_run is not None:
            out["phases_per_run"] = [Phases.write_optional(p) for p in self.phases_per_run]
        if self.runs is not None:  # a complete file (written by the current code)
            out["time_to_first_cell_s"] = self.time_to_first_cell_s
            out["time_to_full_s"] = self.time_to_full_s
        out["batches"] = [b.to_json() for b in self.batches]
        out["counters"] = dict(self.counters)
        if self.raw_automerge_s is not None:
            out["raw_automerge_s"] = self.raw_automerge_s
        if self.server is not None:
            out["server"] = self.server
        if self.checks is not None:
            out["ok"] = self.ok
            out["checks"] = [c.to_json() for c in self.checks]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProfileResult:
        """Validate ``nbstream profile --json`` output; :class:`SchemaError` names the bad key."""
        r = Reader(data)
        r.envelope(("profile",), PROFILE_SCHEMA)
        checks = tuple(Check.read(c) for c in r.children("checks")) if r.has("checks") else None
        all_ok(checks or (), r)
        per_run = None
        if r.has("phases_per_run"):
            per_run = tuple(Phases.read_optional(p) for p in r.children("phases_per_run"))
        return cls(
            notebook=NotebookInfo.read(r.child("notebook")),
            phases=Phases.read_optional(r.child("phases")),
            batches=tuple(BatchRow.read(b) for b in r.children("batches")),
            counters=r.int_map("counters"),
            runs=r.opt_integer("runs"),
            batch_size=r.opt_integer("batch_size"),
            insert_path=r.opt_text("insert_path"),
            phases_per_run=per_run,
            time_to_first_cell_s=r.opt_number("time_to_first_cell_s"),
            time_to_full_s=r.opt_number("time_to_full_s"),
            raw_automerge_s=r.opt_number("raw_automerge_s"),
            checks=checks,
            server=r.opt_text("server"),
        )
