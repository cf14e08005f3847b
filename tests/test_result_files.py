"""Results as files (issue 14 items 4, 5): ``--output``, the ``machine``/``git`` blocks, ``nbstream
schema KIND`` (validated with jsonschema against real outputs) and ``nbstream compare``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sim.cli.main import main
from sim.results.schemas import KINDS
from sim.workload.generator import write_notebook


def validate(kind: str, data: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(
        KINDS[kind], format_checker=jsonschema.FormatChecker()
    )
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(data)]
    assert not errors, errors[:5]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("results")
    nb = write_notebook(tmp / "nb.ipynb", cells=12).path
    other = write_notebook(tmp / "other.ipynb", cells=9).path
    out = {
        "sim": tmp / "sim.json",
        "sim2": tmp / "sim2.json",
        "profile": tmp / "profile.json",
        "other": tmp / "other.json",
    }
    assert main(["sim", str(nb), "--output", str(out["sim"])]) == 0
    assert main(["sim", str(nb), "--output", str(out["sim2"])]) == 0
    assert main(["sim", str(other), "--output", str(out["other"])]) == 0
    assert main(["profile", str(nb), "--runs", "2", "--output", str(out["profile"])]) == 0
    return out


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize("kind", ["sim", "profile"])
def test_output_files_carry_machine_and_git_and_match_their_schema(
    results: dict[str, Path], kind: str
) -> None:
    data = load(results[kind])
    assert data["command"] == kind and data["schema"] == f"nbstream/{kind}/1"
    machine = data["machine"]
    assert machine["cpu_count"] >= 1 and machine["automerge"] == "0.2.0.dev4"
    assert len(machine["load_average"]) == 3 and machine["timestamp"].endswith("Z")
    assert data["git"] is None or len(data["git"]["commit"]) == 40
    validate(kind, data)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_schema_command_prints_a_valid_2020_12_schema(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema", kind]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["command"] == {"const": kind}


def test_a_schema_rejects_a_result_of_the_wrong_shape(results: dict[str, Path]) -> None:
    data = load(results["sim"])
    data["peers"][0]["converged"] = "yes"
    with pytest.raises(AssertionError, match="converged"):
        validate("sim", data)


def run_compare(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["compare", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_compare_same_workload_passes_and_writes_markdown(
    results: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    md = tmp_path / "cmp.md"
    code, out, _ = run_compare(
        capsys, str(results["sim"]), str(results["sim2"]), "--markdown", str(md)
    )
    assert code == 0 and "nbstream compare (sim): ok" in out
    assert "| ops | " in out and md.read_text() == out


def edited(src: Path, tmp: Path, change: Any) -> Path:
    data = load(src)
    change(data)
    path = tmp / f"edited-{src.name}"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("name", "change", "row"),
    [
        ("ops", lambda d: d["counters"].__setitem__("ops", d["counters"]["ops"] + 1), "| ops |"),
        (
            "scan",
            lambda d: d["counters"].__setitem__("scan_steps", 5),
            "| scan_steps |",
        ),
        (
            "memory",
            lambda d: d.__setitem__("peak_rss_kib", int(d["peak_rss_kib"] * 1.5)),
            "| peak_rss_kib |",
        ),
    ],
)
def test_compare_flags_a_regression_with_exit_1(
    results: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    change: Any,
    row: str,
) -> None:
    worse = edited(results["sim"], tmp_path, change)
    code, out, _ = run_compare(capsys, str(results["sim"]), str(worse))
    assert code == 1 and "REGRESSION" in out
    line = next(line for line in out.splitlines() if line.startswith(row))
    assert line.endswith("| regression |")


def test_compare_times_of_one_sim_run_never_fail(
    results: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def slower(d: dict[str, Any]) -> None:
        for peer in d["peers"]:
            peer["time_to_full_s"] = (peer["time_to_full_s"] or 0.1) * 3

    code, out, _ = run_compare(
        capsys, str(results["sim"]), str(edited(results["sim"], tmp_path, slower))
    )
    assert code == 0 and "| slower |" in out


def test_compare_profile_fails_only_when_every_run_is_slower(
    results: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def scale(factor: float) -> Any:
        def change(d: dict[str, Any]) -> None:
            for run in d["phases_per_run"]:
                run["total_s"] *= factor

        return change

    a = str(results["profile"])
    code, out, _ = run_compare(capsys, a, str(edited(results["profile"], tmp_path, scale(3.0))))
    assert code == 1 and "load total_s (median of runs)" in out
    code, _, _ = run_compare(capsys, a, str(edited(results["profile"], tmp_path, scale(1.05))))
    assert code == 0


@pytest.mark.parametrize(
    ("b_key", "message"),
    [
        ("profile", "different kinds: "),
        ("other", "the results measure different notebooks"),
        ("missing", "cannot read "),
        ("corrupt", "is not a JSON result file"),
        ("invalid", "is not a valid sim result"),
        ("foreign", "cannot compare results of kind 'asv'"),
    ],
)
def test_compare_bad_input_is_one_line_and_exit_2(
    results: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    b_key: str,
    message: str,
) -> None:
    paths = dict(results)
    paths["missing"] = tmp_path / "nope.json"
    paths["corrupt"] = tmp_path / "corrupt.json"
    paths["corrupt"].write_text('{"command": "sim", ')
    bad = copy.deepcopy(load(results["sim"]))
    del bad["peers"]
    paths["invalid"] = tmp_path / "invalid.json"
    paths["invalid"].write_text(json.dumps(bad))
    paths["foreign"] = tmp_path / "foreign.json"
    paths["foreign"].write_text(json.dumps({"command": "asv"}))
    code, out, err = run_compare(capsys, str(results["sim"]), str(paths[b_key]))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
