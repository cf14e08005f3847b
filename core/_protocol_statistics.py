"""The optional ``statistics`` request and its response (PROTOCOL.md 5, 6.7).

A harness driving a server it did not start asks it for its own phase figures. The server answers
with the figures of the room's latest load (``load``: null before any) and its sync counters, or,
if it does not implement the request, closes the connection with ``bad_message`` as for any
unknown action: a harness therefore asks on a connection of its own, after it has measured, and
treats a closed connection as "this server reports no figures".

Times: durations are seconds; ``started_at`` and each batch's ``started_at``/``finished_at`` are
readings of the server's *monotonic clock* (Linux ``CLOCK_MONOTONIC``, Python's
``time.perf_counter``), so a harness on the same host can place them on its own timeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core._protocol_json import _ExcType, _fail, _int, _object, _opt_int, _opt_str, _str
from core.json_values import json_type

__all__ = ["BatchFigures", "LoadFigures", "Statistics", "StatisticsResponse"]


@dataclass(frozen=True, slots=True)
class Statistics:
    """Ask for the server's own figures (``statistics`` response)."""

    id: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "action": "statistics"}


@dataclass(frozen=True, slots=True)
class BatchFigures:
    """One batch of a load: cells, outputs, phase seconds, clock readings, cells after it."""

    index: int
    cells: int
    outputs: int
    manifest_s: float
    insert_s: float
    notify_s: float
    started_at: float
    finished_at: float
    doc_cells_after: int


@dataclass(frozen=True, slots=True)
class LoadFigures:
    """The room's latest load: outcome, sizes, phase seconds and its batches."""

    ok: bool
    error: str | None
    cells: int
    total_cells: int | None
    file_bytes: int
    read_s: float
    parse_s: float
    metadata_s: float
    total_s: float
    started_at: float
    batches: tuple[BatchFigures, ...]


@dataclass(frozen=True, slots=True)
class StatisticsResponse:
    """Response to ``statistics``: ``server`` names the implementation."""

    id: int
    server: str
    load: LoadFigures | None
    sync_gen_s: float
    send_s: float

    def to_json(self) -> dict[str, Any]:
        load = None
        if self.load is not None:
            load = {k: getattr(self.load, k) for k in LoadFigures.__dataclass_fields__}
            load["batches"] = [
                {k: getattr(b, k) for k in BatchFigures.__dataclass_fields__}
                for b in self.load.batches
            ]
        return {
            "id": self.id,
            "result": "statistics",
            "server": self.server,
            "load": load,
            "sync_gen_s": self.sync_gen_s,
            "send_s": self.send_s,
        }


def _seconds(obj: Mapping[str, Any], key: str, what: str, exc: _ExcType) -> float:
    value = obj.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
        _fail(exc, f'{what} "{key}" must be a number, got {json_type(value)}')  # NaN refused
    return float(value)


def _batch(obj: Any, exc: _ExcType) -> BatchFigures:
    what = "statistics batch"
    o = _object(obj, what, exc)
    return BatchFigures(
        index=_int(o, "index", what, exc),
        cells=_int(o, "cells", what, exc),
        outputs=_int(o, "outputs", what, exc),
        manifest_s=_seconds(o, "manifest_s", what, exc),
        insert_s=_seconds(o, "insert_s", what, exc),
        notify_s=_seconds(o, "notify_s", what, exc),
        started_at=_seconds(o, "started_at", what, exc),
        finished_at=_seconds(o, "finished_at", what, exc),
        doc_cells_after=_int(o, "doc_cells_after", what, exc),
    )


def parse_statistics(obj: Mapping[str, Any], response_id: int, exc: _ExcType) -> StatisticsResponse:
    """The fields of a ``statistics`` response object (``result`` already checked)."""
    what = "statistics response"
    raw = obj.get("load")
    load: LoadFigures | None = None
    if raw is not None:
        o = _object(raw, "statistics load", exc)
        ok = o.get("ok")
        if type(ok) is not bool:
            _fail(exc, f'statistics load "ok" must be a boolean, got {json_type(ok)}')
        batches = o.get("batches")
        if not isinstance(batches, list):
            _fail(exc, f'statistics load "batches" must be an array, got {json_type(batches)}')
        load = LoadFigures(
            ok=ok,
            error=_opt_str(o, "error", "statistics load", exc),
            cells=_int(o, "cells", "statistics load", exc),
            total_cells=_opt_int(o, "total_cells", "statistics load", exc),
            file_bytes=_int(o, "file_bytes", "statistics load", exc),
            **{
                k: _seconds(o, k, "statistics load", exc)
                for k in ("read_s", "parse_s", "metadata_s", "total_s", "started_at")
            },
            batches=tuple(_batch(b, exc) for b in batches),
        )
    return StatisticsResponse(
        response_id,
        _str(obj, "server", what, exc),
        load,
        _seconds(obj, "sync_gen_s", what, exc),
        _seconds(obj, "send_s", what, exc),
    )
