"""``nbstream compare`` of two gate results and of two scale results (issue 14 item 5): real
outputs of each command, compared unchanged (exit 0), with one exact signal made worse (exit 1,
the row says which), and as bad input (exit 2, one line)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sim.cli.main import main
from tests.gate_run import run_gate

REPO = Path(__file__).resolve().parents[1]
Change = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("compare")
    out = {"scale": tmp / "scale.json", "gate": tmp / "gate.json"}
    sweep = ("--sizes", "12,24,48", "--repeats", "1", "--instructions-max-cells", "24")
    assert main(["scale", "--insert", "full", *sweep, "--output", str(out["scale"])]) == 0
    gate = run_gate(
        REPO,
        *("--base", "HEAD", "--cells", "30", "--pairs", "3", "--no-instructions"),
        *("--large-cells", "60", "--time-threshold", "3", "--exponent-tolerance", "2"),
        *("--memory-tolerance", "1", "--output", str(out["gate"])),
        timeout=300,
    )
    assert gate.returncode == 0, gate.stderr[-2000:]
    return out


def edited(src: Path, tmp: Path, change: Change) -> Path:
    data = json.loads(src.read_text())
    change(data)
    path = tmp / f"edited-{src.name}"
    path.write_text(json.dumps(data))
    return path


def run(capsys: pytest.CaptureFixture[str], a: Path, b: Path) -> tuple[int, str, str]:
    code = main(["compare", str(a), str(b)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def row(out: str, start: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(start))


@pytest.mark.parametrize("kind", ["scale", "gate"])
def test_a_result_against_itself_passes(
    saved: dict[str, Path], capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    code, out, _ = run(capsys, saved[kind], saved[kind])
    assert code == 0 and f"nbstream compare ({kind}): ok" in out, out


def _scale_ops(d: dict[str, Any]) -> None:
    d["paths"]["full"]["points"][1]["ops"] += 1


def _scale_turned(d: dict[str, Any]) -> None:
    d["paths"]["full"]["deterministic_verdict"] = "not linear"


def _scale_instructions(d: dict[str, Any]) -> None:
    point = d["paths"]["full"]["instructions"]["points"][0]
    point["instructions"] = int(point["instructions"] * 1.05)


def _scale_counter_fit(d: dict[str, Any]) -> None:
    d["paths"]["full"]["counters"]["ops"] = {"verdict": "quadratic", "exponent": 2.0}


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (_scale_ops, "| full: ops at 24 cells |"),
        (_scale_turned, "| full: verdict |"),
        (_scale_instructions, "| full: instructions at 12 cells |"),
        (_scale_counter_fit, "| full: ops exponent |"),
    ],
)
def test_scale_regressions_are_exact_signals(
    saved: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: Change,
    line: str,
) -> None:
    code, out, _ = run(capsys, saved["scale"], edited(saved["scale"], tmp_path, change))
    assert code == 1 and "REGRESSION" in out
    assert "| True |" not in out
    assert "regression" in row(out, line) or "not linear" in row(out, line), row(out, line)


def test_scale_time_exponent_is_advisory_for_the_bundled_daemon(
    saved: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def steeper(d: dict[str, Any]) -> None:
        path = d["paths"]["full"]
        path["exponent"] = path["ci"][1] + 0.5  # beyond A's interval by more than 0.15

    code, out, _ = run(capsys, saved["scale"], edited(saved["scale"], tmp_path, steeper))
    assert code == 0 and "worse (advisory)" in row(out, "| full: exponent of server_s |")

    def outside(d: dict[str, Any]) -> None:
        d["server"] = "theirs"
        d["paths"]["full"]["exponent_of"] = "time_to_full_s"

    (tmp_path / "a").mkdir()
    a = edited(saved["scale"], tmp_path / "a", outside)
    b = edited(a, tmp_path, steeper)
    code, out, _ = run(capsys, a, b)
    assert code == 1 and "regression" in row(out, "| full: exponent of time_to_full_s")


def _gate_ops(d: dict[str, Any]) -> None:
    d["counters"]["ops"]["candidate"] += 1


def _gate_large(d: dict[str, Any]) -> None:
    d["large"]["counters"]["scan_steps"]["candidate"] = 100


def _gate_calls(d: dict[str, Any]) -> None:
    calls = d["large"]["calls"]  # both sides of B's own run (B still passes against its base)
    for side in ("base", "candidate"):
        calls[side][-1] = int(calls[side][-1] * 1.1)


def _gate_memory(d: dict[str, Any]) -> None:
    heap = d["memory"]["metrics"]["python_heap_peak_kib"]
    heap["candidate"] = [v * 1.5 for v in heap["candidate"]]


def _gate_time(d: dict[str, Any]) -> None:
    d["cpu_time"]["samples"]["candidate"] = [v * 10 for v in d["cpu_time"]["samples"]["candidate"]]


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (_gate_ops, "| ops |"),
        (_gate_large, "| scan_steps at 60 cells |"),
        (_gate_calls, "| core calls at 60 cells |"),
        (_gate_memory, "| python_heap_peak_kib |"),
        (_gate_time, "| load CPU time"),
    ],
)
def test_gate_regressions_compare_the_candidates(
    saved: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: Change,
    line: str,
) -> None:
    code, out, _ = run(capsys, saved["gate"], edited(saved["gate"], tmp_path, change))
    assert code == 1 and "REGRESSION" in out
    assert row(out, line).endswith("| regression |"), row(out, line)


@pytest.mark.parametrize(
    ("kind", "change", "message"),
    [
        ("gate", lambda d: d.__setitem__("cells", 31), "different cell counts"),
        ("gate", lambda d: d.__setitem__("verdict", "maybe"), "is not a valid gate result"),
        ("gate", lambda d: d.update(verdict="error", error="x"), "is not a valid gate result"),
        ("scale", lambda d: d.__setitem__("seed", 7), "different seeds"),
        ("scale", lambda d: d.__setitem__("server", "theirs"), "different servers"),
        ("scale", lambda d: d.__setitem__("paths", {}), "is not a valid scale result"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    saved: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    change: Change,
    message: str,
) -> None:
    code, out, err = run(capsys, saved[kind], edited(saved[kind], tmp_path, change))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_a_gate_result_against_a_scale_result_is_exit_2(
    saved: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, saved["gate"], saved["scale"])
    assert code == 2 and "different kinds" in err and err.count("\n") == 1
