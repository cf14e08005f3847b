"""``nbstream merge``: shard results of one run into one result, of either kind it knows.

``explore --shard I/N`` results merge into an explore result (:func:`sim.results.explore.merge`;
any subset of the shards), ``scale --shard I/N`` results (kind ``scale-shard``) into a scale
result fitted as an unsharded run (:func:`sim.harness.scale_shards.merge_shards`; every shard).
The kind is read from each file's ``command``; files of different kinds, of different runs, a
shard given twice or (for scale) a shard missing are refused in one line with exit 2.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sim.cli.output import UsageError, emit_json, finish

__all__ = ["MERGEABLE", "run_merge"]

MERGEABLE = ("explore", "scale-shard")
_T = TypeVar("_T")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not JSON ({exc})") from None
    kind = data.get("command") if isinstance(data, dict) else None
    if kind not in MERGEABLE:
        hint = " (an unsharded or merged scale result)" if kind == "scale" else ""
        raise UsageError(
            f"{path}: merge takes explore or scale --shard results, this is {kind!r}{hint}"
        )
    return data  # type: ignore[no-any-return]  # checked: a dict


def run_merge(args: argparse.Namespace, report_explore: Any) -> int:
    """Merge ``args.results``; ``report_explore(data, args, ok)`` prints an explore result."""
    from sim.results.base import SchemaError

    files = [(path, _read(path)) for path in args.results]
    kinds = {data["command"] for _, data in files}
    if len(kinds) > 1:
        first_path, first = files[0]
        other_path, other = next((p, d) for p, d in files if d["command"] != first["command"])
        raise UsageError(
            f"cannot merge results of different kinds: {first_path} is {first['command']!r}, "
            f"{other_path} is {other['command']!r}"
        )
    try:
        if kinds == {"explore"}:
            return _merge_explore(files, args, report_explore)
        return _merge_scale(files, args)
    except SchemaError as exc:  # raised with the file's name by the readers below
        raise UsageError(str(exc)) from None


def _read_each(files: list[tuple[Path, dict[str, Any]]], reader: Callable[[Any], _T]) -> list[_T]:
    """Each file's result read by ``reader``; a bad one is refused naming its file."""
    from sim.results.base import SchemaError

    out = []
    for path, data in files:
        try:
            out.append(reader(data))
        except SchemaError as exc:
            raise UsageError(f"{path}: {exc}") from None
    return out


def _merge_explore(
    files: list[tuple[Path, dict[str, Any]]], args: argparse.Namespace, report: Any
) -> int:
    from sim.results.explore import MergeError, merge, read_result

    results = _read_each(files, read_result)
    try:
        merged = merge(results)
    except MergeError as exc:
        raise UsageError(str(exc)) from None
    ok: bool = merged.ok
    code: int = report(finish(merged.to_json(), args), args, ok)
    return code


def _merge_scale(files: list[tuple[Path, dict[str, Any]]], args: argparse.Namespace) -> int:
    from sim.cli.scale_cmd import print_scale
    from sim.harness.scale_shards import ShardMergeError, merge_shards
    from sim.results.scale_shard import read_shard

    shards = _read_each(files, read_shard)
    try:
        merged = merge_shards(shards)
    except (ShardMergeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    data = finish(merged.to_json(), args)
    if args.json:
        emit_json(data)
    else:
        print_scale(data, merged)
    return 0 if merged.ok else 1
