"""Issue 15 item 3: ``nbstream explore`` (random schedules on the virtual clock, failures shrunk
and replayable), ``--shard i/N`` and ``nbstream merge``."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from core.notebook_doc import NotebookDoc
from sim.cli.main import main
from sim.harness.explore import explore
from sim.harness.schedule import decode, draw_schedule, encode
from sim.results.schemas import KINDS

SEED = 100


def _valid(data: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(
        KINDS["explore"], format_checker=jsonschema.FormatChecker()
    ).validate(data)


def _json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main([*argv, "--json"])
    data = json.loads(capsys.readouterr().out)
    _valid(data)
    return code, data


def test_twenty_schedules_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = _json(["explore", "--schedules", "20", "--seed", str(SEED)], capsys)
    assert code == 0, data["failures"]
    assert data["schedules"] == 20 and data["failures"] == [] and data["edits_lost"] == 0
    assert data["edits"] > 0 and len(data["trace_sha256"]) == 20
    assert data["schedules_per_s"] > 0 and data["wall_s"] > 0
    assert data["shard"] == {"shards": 1, "indices": [0]}


def test_a_seed_gives_the_same_traces_twice() -> None:
    first = explore(8, SEED)
    second = explore(8, SEED)
    assert first.trace_sha256 == second.trace_sha256
    assert len(set(first.trace_sha256)) == 8  # distinct schedules, distinct traces
    assert explore(8, SEED + 1).trace_sha256 != first.trace_sha256


def test_schedules_encode_and_decode() -> None:
    for seed in range(30):
        s = draw_schedule(seed)
        assert decode(encode(s)) == s
        assert draw_schedule(seed) == s


def test_an_injected_bug_is_found_shrunk_and_replayed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old rollback rule (a failed load empties the notebook) loses peers' cells: explore
    finds it, shrinks the schedule, and the printed command replays a failure."""
    delete_cells = NotebookDoc.delete_cells

    def clear_everything(self: NotebookDoc, _keys: object) -> int:
        return delete_cells(self, self.cell_keys())

    monkeypatch.setattr(NotebookDoc, "delete_cells", clear_everything)
    seed = next(
        s
        for s in range(SEED, SEED + 200)
        if draw_schedule(s).fault == "fail" and draw_schedule(s).fault_at >= 1
    )
    code, data = _json(["explore", "--schedules", "1", "--seed", str(seed)], capsys)
    assert code == 1 and len(data["failures"]) == 1
    failure = data["failures"][0]
    assert failure["seed"] == seed
    assert any(f.startswith("rollback removed exactly") for f in failure["failed"])
    assert failure["shrunk_size"] <= failure["size"]
    argv = shlex.split(failure["replay"])
    assert argv[:2] == ["nbstream", "explore"]
    shrunk = decode(argv[argv.index("--replay") + 1])
    assert shrunk.size() == failure["shrunk_size"]
    code, replayed = _json(argv[1:], capsys)
    assert code == 1 and replayed["schedules"] == 1
    assert replayed["failures"][0]["failed"] == failure["shrunk_failed"]
    monkeypatch.undo()  # the fix in place: the shrunk schedule passes
    code, fixed = _json(argv[1:], capsys)
    assert code == 0 and fixed["failures"] == []


def test_shards_merged_equal_the_whole_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["explore", "--schedules", "7", "--seed", str(SEED)]
    _, whole = _json(base, capsys)
    files = []
    for i in range(3):
        out = tmp_path / f"shard{i}.json"
        code, part = _json([*base, "--shard", f"{i}/3", "--output", str(out)], capsys)
        assert code == 0 and part["shard"] == {"shards": 3, "indices": [i]}
        assert part["schedules"] == len(range(i, 7, 3))
        files.append(str(out))
    merged_file = tmp_path / "merged.json"
    code, merged = _json(["merge", *reversed(files), "--output", str(merged_file)], capsys)
    assert code == 0
    for key in ("schedules", "edits", "edits_lost", "failures", "trace_sha256", "seed"):
        assert merged[key] == whole[key], key
    assert merged["shard"] == {"shards": 3, "indices": [0, 1, 2]}
    assert json.loads(merged_file.read_text())["schedules"] == 7


def _run_shard(tmp_path: Path, name: str, seed: int, shard: str) -> str:
    out = tmp_path / name
    argv = ["explore", "--schedules", "2", "--seed", str(seed), "--shard", shard]
    assert main([*argv, "--output", str(out)]) == 0
    return str(out)


def test_merge_refuses_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _run_shard(tmp_path, "a.json", SEED, "0/2")
    b = _run_shard(tmp_path, "b.json", SEED + 1, "1/2")
    capsys.readouterr()
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"command": "explore", "sched')
    other = tmp_path / "sim.json"
    other.write_text(json.dumps({"command": "sim", "schema": "nbstream/sim/1"}))
    broken = tmp_path / "broken.json"
    data = json.loads(Path(a).read_text())
    del data["failures"]
    broken.write_text(json.dumps(data))
    cases = {
        (a, a): "shard 0/2 given twice",
        (a, b): "results of different runs",
        (a, str(corrupt)): "not JSON",
        (a, str(other)): "merge takes explore or scale --shard results, this is 'sim'",
        (a, str(tmp_path / "missing.json")): "No such file",
        (a, str(broken)): "missing 'failures'",
    }
    for files, message in cases.items():
        assert main(["merge", *files]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("nbstream merge: ") and message in err, err
        assert "\n" not in err


@pytest.mark.parametrize("shard", ["2/2", "-1/2", "1", "a/b", "0/0"])
def test_a_bad_shard_is_one_line_and_exit_2(shard: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "--schedules", "2", f"--shard={shard}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"nbstream explore: --shard must be I/N with 0 <= I < N, got {shard!r} "
        "(see nbstream explore --help)"
    )


def test_a_bad_replay_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "--replay", "not-a-schedule"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nbstream explore: --replay: not a schedule encoding") and "\n" not in err
