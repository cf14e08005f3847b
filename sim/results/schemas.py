"""JSON Schemas (draft 2020-12) of the result files, as ``nbstream schema KIND`` prints them.

Every result file carries ``command`` (its kind), ``schema`` (``nbstream/<kind>/<version>``),
``machine`` and ``git`` (:mod:`sim.cli.provenance`). ``sim``, ``profile``, ``scale``, ``explore``,
``gate`` (:mod:`sim.results.schemas_gate`) and ``gate-self-test``
(:mod:`sim.results.schemas_self_test`) are described to the last key. Every schema allows
keys it does not name (``additionalProperties`` is not false): a newer producer may add keys
without breaking an older reader, as the ``from_json`` readers do. ``tests/test_result_files.py``
and ``tests/test_gate.py`` validate real outputs of every kind against these.
"""

from __future__ import annotations

from sim.results.schema_parts import (
    BOOL,
    INT,
    NONNEG,
    NUM,
    PAIR,
    STR,
    Schema,
    arr,
    envelope,
    nullable,
    obj,
)
from sim.results.schemas_gate import GATE
from sim.results.schemas_self_test import SELF_TEST

__all__ = ["KINDS", "schema_for"]

NOTEBOOK = obj({"path": STR, "cells": NONNEG, "bytes": NONNEG, "sha256": STR})
PHASE_KEYS = ("read_s", "parse_s", "manifest_s", "insert_s", "sync_gen_s", "network_s", "total_s")
PHASES: Schema = {
    "description": "seconds per load phase; {} when the server reported none",
    "anyOf": [
        obj({k: NUM for k in PHASE_KEYS}),
        {"type": "object", "maxProperties": 0},
    ],
}
CHECK = obj({"name": STR, "ok": BOOL, "detail": STR})
LOAD_BATCH = obj(
    {
        "index": NONNEG,
        "cells": NONNEG,
        "outputs": NONNEG,
        "manifest_s": NUM,
        "insert_s": NUM,
        "notify_s": NUM,
        "started_at": NUM,
        "finished_at": NUM,
        "doc_cells_after": NONNEG,
    },
    optional=("doc_cells_after",),
)
BATCH_ROW: Schema = {
    "allOf": [
        LOAD_BATCH,
        obj({"latency_s": {"type": "object", "additionalProperties": nullable(NUM)}}),
    ]
}
ARRIVAL = obj({"t": NUM, "bytes": NONNEG, "cells": NONNEG, "changed": BOOL})
PEER = obj(
    {
        "name": STR,
        "behaviour": STR,
        "joined_at_batch": nullable(NONNEG),
        "time_to_first_cell_s": nullable(NUM),
        "time_to_full_s": nullable(NUM),
        "converged": BOOL,
        "frames_in": NONNEG,
        "bytes_in": NONNEG,
        "sync_frames_with_changes": NONNEG,
        "arrivals": arr(ARRIVAL),
    },
    optional=("sync_frames_with_changes", "arrivals"),
)
LOAD = obj(
    {
        "notebook_id": STR,
        "insert_path": STR,
        "batch_size": NONNEG,
        "ok": BOOL,
        "error": nullable(STR),
        "cells": NONNEG,
        "total_cells": nullable(NONNEG),
        "file_bytes": NONNEG,
        "read_s": NUM,
        "parse_s": NUM,
        "metadata_s": NUM,
        "total_s": NUM,
        "batches": arr(LOAD_BATCH),
    }
)
TARGETS = {
    "type": "object",
    "properties": {
        "ttfc_over_full": obj({"peer": STR, "value": NUM, "target": NUM, "met": BOOL}),
        "batch_latency_trend": obj(
            {"peer": STR, "relative_slope": NUM, "robust_relative_slope": NUM, "flat": BOOL}
        ),
    },
}
COUNTERS = {"type": "object", "additionalProperties": INT}


EDITS = obj(
    {
        "made": NONNEG,
        "acknowledged": NONNEG,
        "unacknowledged": NONNEG,
        "survived": NONNEG,
        "removed_by_delete": NONNEG,
        "rolled_back": NONNEG,
        "lost": NONNEG,
        "lost_detail": arr(STR),
    }
)
TYPIST_POINT: dict[str, Schema] = {
    "k": NONNEG,
    "samples": NONNEG,
    "p50_s": NUM,
    "p99_s": NUM,
    "max_s": NUM,
    "edits_lost": NONNEG,
    "converged": BOOL,
}
TYPISTS = obj(
    {
        "rate_hz": NUM,
        "duration_s": NUM,
        **TYPIST_POINT,
        "sweep": arr(obj(TYPIST_POINT)),
        "p99_limit_s": NUM,
        "max_k_under_limit": nullable(NONNEG),
    }
)
WORKER = obj({"index": NONNEG, "peers": NONNEG, "peak_rss_kib": NONNEG})
WORKERS: Schema = {
    "description": "--workers N: the worker processes the peers ran in (peak_rss_kib at the "
    "top is then the daemon's process alone)",
    **arr(WORKER),
}
SIM = envelope(
    "sim",
    {
        "version": STR,
        "seed": INT,
        "scenario": STR,
        "transport": STR,
        "insert_path": STR,
        "batch_size": {"type": "integer", "minimum": 1},
        "notebook": NOTEBOOK,
        "converged": BOOL,
        "cells": NONNEG,
        "ok": BOOL,
        "peers": arr(PEER),
        "batches": arr(BATCH_ROW),
        "phases": PHASES,
        "counters": COUNTERS,
        "raw_automerge_s": NUM,
        "daemon_overhead_ratio": NUM,
        "loads": arr(LOAD),
        "targets": TARGETS,
        "peak_rss_kib": NONNEG,
        "server": STR,
        "checks": arr(CHECK),
        "edits": EDITS,
        "edits_lost": NONNEG,
        "typists": TYPISTS,
        "trace_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "workers": WORKERS,
    },
    optional=(
        "loads",
        "targets",
        "peak_rss_kib",
        "server",
        "edits",
        "edits_lost",
        "typists",
        "trace_sha256",
        "workers",
    ),
)
PROFILE = envelope(
    "profile",
    {
        "notebook": NOTEBOOK,
        "runs": {"type": "integer", "minimum": 1},
        "batch_size": {"type": "integer", "minimum": 1},
        "insert_path": STR,
        "phases": PHASES,
        "phases_per_run": arr(PHASES),
        "time_to_first_cell_s": nullable(NUM),
        "time_to_full_s": nullable(NUM),
        "batches": arr(BATCH_ROW),
        "counters": COUNTERS,
        "raw_automerge_s": NUM,
        "server": STR,
        "ok": BOOL,
        "checks": arr(CHECK),
    },
    optional=(
        "runs",
        "batch_size",
        "insert_path",
        "phases_per_run",
        "time_to_first_cell_s",
        "time_to_full_s",
        "raw_automerge_s",
        "server",
        "ok",
        "checks",
    ),
)
SCALE_POINT = obj(
    {
        "cells": NONNEG,
        "total_s": NUM,
        "server_s": nullable(NUM),
        "time_to_first_cell_s": nullable(NUM),
        "time_to_full_s": nullable(NUM),
        "ops": NONNEG,
        "scan_steps": NONNEG,
        "transactions": NONNEG,
        "frames": NONNEG,
        "bytes_in": NONNEG,
    },
    optional=(
        "server_s",
        "time_to_first_cell_s",
        "time_to_full_s",
        "ops",
        "scan_steps",
        "transactions",
        "frames",
        "bytes_in",
    ),
)
COUNTER_FIT = obj({"verdict": STR, "exponent": nullable(NUM)})
INSTRUCTIONS: Schema = {
    "anyOf": [
        obj({"available": {"const": False}, "reason": nullable(STR)}),
        obj(
            {
                "available": {"const": True},
                "points": arr(obj({"cells": NONNEG, "instructions": NONNEG})),
                "exponent": nullable(NUM),
                "verdict": nullable(STR),
            }
        ),
    ]
}
CALLS: Schema = {
    "anyOf": [
        obj({"available": {"const": False}, "reason": nullable(STR)}),
        obj(
            {
                "available": {"const": True},
                "points": arr(obj({"cells": NONNEG, "calls": NONNEG})),
                "exponent": nullable(NUM),
                "verdict": nullable(STR),
                "local": arr(obj({"from": NONNEG, "to": NONNEG, "exponent": NUM})),
                "growing": arr(
                    obj({"name": STR, "calls_before": NONNEG, "calls": NONNEG, "exponent": NUM})
                ),
                "per_batch": obj(
                    {
                        "cells": NONNEG,
                        "calls": arr(NONNEG),
                        "robust_relative_slope": NUM,
                        "tolerance": NUM,
                        "flat": BOOL,
                    }
                ),
            },
            optional=("per_batch",),
        ),
    ]
}
BATCH_TREND = obj(
    {
        "cells": NONNEG,
        "relative_slope": NUM,
        "robust_relative_slope": NUM,
        "flat": BOOL,
        "latencies_s": arr(NUM),
    },
    optional=("latencies_s",),
)
SCALE_PATH = obj(
    {
        "exponent": NUM,
        "ci": PAIR,
        "verdict": STR,
        "exponent_of": {"enum": ["server_s", "time_to_full_s"]},
        "r_squared": NUM,
        "wall_exponent": NUM,
        "wall_ci": PAIR,
        "points": arr(SCALE_POINT),
        "counters": {"type": "object", "additionalProperties": COUNTER_FIT},
        "batch_trend": BATCH_TREND,
        "first_cell_exponent": NUM,
        "first_cell_ci": PAIR,
        "instructions": INSTRUCTIONS,
        "calls": CALLS,
        "deterministic_verdict": STR,
    },
    optional=(
        "exponent_of",
        "r_squared",
        "wall_exponent",
        "wall_ci",
        "counters",
        "batch_trend",
        "first_cell_exponent",
        "first_cell_ci",
        "instructions",
        "calls",
        "deterministic_verdict",
    ),
)
SIZE_LISTS: Schema = {"type": "object", "additionalProperties": arr(NONNEG)}
SCALE = envelope(
    "scale",
    {
        "sizes": arr(NONNEG),
        "sizes_by_path": SIZE_LISTS,
        "repeats": {"type": "integer", "minimum": 1},
        "seed": INT,
        "batch_size": {"type": "integer", "minimum": 1},
        "paths": {"type": "object", "minProperties": 1, "additionalProperties": SCALE_PATH},
        "raw_automerge": nullable(
            obj(
                {"points": arr(obj({"cells": NONNEG, "total_s": NUM})), "exponent": NUM},
                optional=("exponent",),
            )
        ),
        "elapsed_s": NUM,
        "checks": arr(CHECK),
        "default_sizes": SIZE_LISTS,
        "server": STR,
        "notebook": NOTEBOOK,
        "shards": {
            "description": "nbstream merge of scale --shard I/N results: N (elapsed_s is then "
            "the longest shard's)",
            "type": "integer",
            "minimum": 1,
        },
    },
    optional=(
        "sizes_by_path",
        "batch_size",
        "elapsed_s",
        "checks",
        "default_sizes",
        "server",
        "notebook",
        "shards",
    ),
)
SCALE_SHARD = envelope(
    "scale-shard",
    {
        "shard": obj({"shards": {"type": "integer", "minimum": 1}, "index": NONNEG}),
        "run": obj(
            {
                "seed": INT,
                "repeats": {"type": "integer", "minimum": 1},
                "batch_size": {"type": "integer", "minimum": 1},
                "sizes_by_path": SIZE_LISTS,
                "instructions_max_cells": NONNEG,
                "calls_max_cells": NONNEG,
                "notebook": nullable(NOTEBOOK),
                "server": STR,
            },
            optional=("calls_max_cells",),
        ),
        "units": arr(NONNEG),
        "loads": arr(
            obj(
                {
                    "unit": NONNEG,
                    "repeat": NONNEG,
                    "path": STR,
                    "cells": NONNEG,
                    "total_s": NUM,
                    "server_s": NUM,
                    "time_to_first_cell_s": nullable(NUM),
                    "time_to_full_s": nullable(NUM),
                    "ops": NONNEG,
                    "transactions": NONNEG,
                    "scan_steps": NONNEG,
                    "frames": NONNEG,
                    "bytes_in": NONNEG,
                    "batch_s": arr(NUM),
                }
            )
        ),
        "raw_automerge": arr(obj({"cells": NONNEG, "total_s": NUM})),
        "instructions": nullable(INSTRUCTIONS),
        "calls": CALLS,
        "elapsed_s": NUM,
    },
    optional=("calls",),
)
EXPLORE_FAILURE = obj(
    {
        "seed": INT,
        "failed": arr(STR),
        "schedule": STR,
        "shrunk_schedule": STR,
        "shrunk_failed": arr(STR),
        "shrink_runs": NONNEG,
        "size": NONNEG,
        "shrunk_size": NONNEG,
        "replay": STR,
    }
)
EXPLORE = envelope(
    "explore",
    {
        "seed": INT,
        "schedules": NONNEG,
        "requested": NONNEG,
        "shard": obj({"shards": {"type": "integer", "minimum": 1}, "indices": arr(NONNEG)}),
        "failures": arr(EXPLORE_FAILURE),
        "simulated_s": NUM,
        "wall_s": NUM,
        "schedules_per_s": NUM,
        "edits": NONNEG,
        "edits_lost": NONNEG,
        "trace_sha256": arr({"type": "string", "pattern": "^[0-9a-f]{64}$"}),
        "replay": nullable(STR),
        "ok": BOOL,
    },
)

KINDS: dict[str, Schema] = {
    "sim": SIM,
    "profile": PROFILE,
    "scale": SCALE,
    "scale-shard": SCALE_SHARD,
    "gate": GATE,
    "gate-self-test": SELF_TEST,
    "explore": EXPLORE,
}


def schema_for(kind: str) -> Schema:
    """The JSON Schema of result files of ``kind`` (KeyError for an unknown kind)."""
    return KINDS[kind]
