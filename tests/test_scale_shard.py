"""``nbstream scale --shard I/N`` and ``nbstream merge`` of its shards (issue 15, item 4): the
shards partition the sweep, the merge fits them as an unsharded run fits the same loads, and bad
merges (kinds mixed, runs mixed, a shard twice or missing, a broken file) are one line, exit 2."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sim.cli.main import main
from sim.harness.scale import (
    BUNDLED_SERVER,
    assemble_scale,
    measure_units,
    sweep_builder,
    sweep_units,
)
from sim.harness.scale_shards import merge_shards, shard_result, shard_units
from sim.results.scale import ScaleResult
from sim.results.scale_shard import ScaleShard
from sim.results.schemas import KINDS

SWEEP = ["--insert", "both", "--sizes", "12,24,36", "--repeats", "2"]
SWEEP += ["--instructions-max-cells", "0"]


def _validate(kind: str, data: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(KINDS[kind])
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(data)]
    assert not errors, errors[:5]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main([*argv, "--json"])
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return code, out


@pytest.fixture(scope="module")
def shard_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("scale-shards")
    files = []
    for i in range(3):
        out = tmp / f"shard{i}.json"
        assert main(["scale", *SWEEP, "--shard", f"{i}/3", "--output", str(out)]) == 0
        files.append(out)
    return files


def test_shards_partition_the_sweep_and_match_their_schema(shard_files: list[Path]) -> None:
    units = sweep_units({"full": [12, 24, 36], "naive": [12, 24, 36]}, 2)
    assert units == [(12, 0), (12, 1), (24, 0), (24, 1), (36, 0), (36, 1)]
    seen: list[int] = []
    for i, path in enumerate(shard_files):
        data = json.loads(path.read_text())
        _validate("scale-shard", data)
        assert data["command"] == "scale-shard" and data["shard"] == {"shards": 3, "index": i}
        assert data["units"] == list(shard_units(6, i, 3)) == [i, i + 3]
        # every unit loads both paths, each load the unit's size
        assert sorted((x["unit"], x["path"]) for x in data["loads"]) == sorted(
            (u, p) for u in data["units"] for p in ("full", "naive")
        )
        assert all(x["cells"] == units[x["unit"]][0] for x in data["loads"])
        assert all(len(x["batch_s"]) == x["cells"] // 3 for x in data["loads"])
        seen += data["units"]
        assert ScaleShard.from_json(data).to_json() == {
            k: v for k, v in data.items() if k not in ("machine", "git")
        }
    assert sorted(seen) == list(range(6))


def test_merged_shards_give_the_unsharded_verdicts(
    shard_files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, whole = _run(["scale", *SWEEP], capsys)
    out = tmp_path / "merged.json"
    merged_code, merged = _run(
        ["merge", *map(str, reversed(shard_files)), "--output", str(out)], capsys
    )
    _validate("scale", merged)
    assert json.loads(out.read_text())["shards"] == 3 and "shards" not in whole
    assert ScaleResult.from_json(merged).shards == 3
    assert (code, merged_code) == (0, 0)
    for key in ("sizes", "sizes_by_path", "repeats", "seed", "batch_size", "server"):
        assert merged[key] == whole[key], key
    assert [c["name"] for c in merged["checks"]] == [c["name"] for c in whole["checks"]]
    assert [c["ok"] for c in merged["checks"]] == [c["ok"] for c in whole["checks"]]
    # the exact signals are the same load by load, in run order, and so are their fits (bytes
    # and frames to the peer vary a little with timing: not compared)
    exact = ("cells", "ops", "scan_steps", "transactions")
    for name in ("full", "naive"):
        a, b = whole["paths"][name], merged["paths"][name]
        assert [[p[k] for k in exact] for p in a["points"]] == [
            [p[k] for k in exact] for p in b["points"]
        ]
        assert a["counters"] == b["counters"]
        assert a["deterministic_verdict"] == b["deterministic_verdict"]
    assert [p["cells"] for p in merged["raw_automerge"]["points"]] == [12, 24, 36]


def test_the_merge_fits_exactly_as_the_unsharded_run_over_the_same_loads() -> None:
    """One real sweep, split into shards after the fact: the merge of the shards (through their
    JSON) is the unsharded result to the last float, whatever order they come in."""
    chosen = {"full": [12, 24, 36], "naive": [12, 36]}
    build = sweep_builder(7, None)
    swept = asyncio.run(measure_units(["full", "naive"], chosen, 2, batch_size=3, build=build))
    whole = assemble_scale(
        chosen,
        {name: [m for _, m in loads] for name, loads in swept.loads.items()},
        swept.raw_points,
        None,
        repeats=2,
        seed=7,
        batch_size=3,
        elapsed_s=1.0,
        notebook=None,
    )
    run = {
        "seed": 7,
        "repeats": 2,
        "batch_size": 3,
        "sizes_by_path": chosen,
        "instructions_max_cells": 0,
        "notebook": None,
        "server": BUNDLED_SERVER,
    }
    shards = [
        ScaleShard.from_json(
            json.loads(json.dumps(shard_result(swept, i, 4, run, None, 1.0).to_json()))
        )
        for i in (2, 0, 3, 1)
    ]
    merged = merge_shards(shards)
    expected = whole.to_json()
    expected["shards"] = 4
    assert merged.to_json() == expected


def _explore_shard(tmp_path: Path) -> str:
    out = tmp_path / "explore.json"
    assert main(["explore", "--schedules", "1", "--shard", "0/1", "--output", str(out)]) == 0
    return str(out)


def test_bad_merges_are_one_line_and_exit_2(
    shard_files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, c = map(str, shard_files)
    other_run = tmp_path / "other-run.json"
    data = json.loads(shard_files[1].read_text())
    data["run"]["seed"] += 1
    other_run.write_text(json.dumps(data))
    other_count = tmp_path / "other-count.json"
    data = json.loads(shard_files[1].read_text())
    data["shard"]["shards"] = 4
    other_count.write_text(json.dumps(data))
    broken = tmp_path / "broken.json"
    data = json.loads(shard_files[2].read_text())
    del data["loads"]
    broken.write_text(json.dumps(data))
    wrong_units = tmp_path / "wrong-units.json"
    data = json.loads(shard_files[2].read_text())
    data["units"] = [0, 3]
    wrong_units.write_text(json.dumps(data))
    unfittable = []
    for i, path in enumerate(shard_files):
        data = json.loads(path.read_text())
        data["run"]["sizes_by_path"] = {"full": [12]}
        unfittable.append(tmp_path / f"unfittable{i}.json")
        unfittable[-1].write_text(json.dumps(data))
    unsharded = tmp_path / "unsharded.json"
    assert main(["scale", *SWEEP, "--output", str(unsharded)]) in (0, 1)
    explore = _explore_shard(tmp_path)
    capsys.readouterr()
    cases = {
        (a, b, explore): "cannot merge results of different kinds",
        (a, str(other_run), c): "scale shards of different runs",
        (a, str(other_count), c): "scale shards of different runs",
        (a, a, b, c): "shard 0/3 given twice",
        (a, c): "scale shards 1/3 missing (given 0/3, 2/3)",
        (a, b, str(broken)): "missing 'loads'",
        (a, b, str(wrong_units)): "shard 2/3: units [0, 3], expected [2, 5]",
        (a, b, str(unsharded)): "this is 'scale' (an unsharded or merged scale result)",
        tuple(map(str, unfittable)): "cannot be fitted: --sizes needs at least two distinct",
    }
    for files, message in cases.items():
        assert main(["merge", *files]) == 2
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert err.startswith("nbstream merge: ") and message in err, err
        assert "\n" not in err and captured.out == ""


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--shard", "3/3"], "--shard must be I/N with 0 <= I < N, got '3/3'"),
        (["--shard", "x"], "--shard must be I/N with 0 <= I < N, got 'x'"),
        (["--shard", "0/7"], "the sweep has 6 loads per path (sizes x repeats), so at most 6"),
        (
            ["--shard", "0/2", "--connect", "/nonexistent.sock"],
            "--shard splits the bundled daemon's sweep",
        ),
    ],
)
def test_a_bad_shard_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = [x for x in SWEEP if x not in ("--insert", "both")] if "--connect" in argv else SWEEP
    assert main(["scale", *sweep, *argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("nbstream scale: ") and message in err, err
    assert "\n" not in err and captured.out == ""
