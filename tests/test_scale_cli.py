"""``nbstream scale`` on the command line: bad sweeps are refused in one line, small ones run."""

from __future__ import annotations

import dataclasses
import json

import pytest

from sim.cli.main import main
from sim.gate import valgrind
from sim.harness.scale import scale_checks
from sim.results.scale import CounterFit, InstructionFit, ScalePath, ScaleResult


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--sizes", "20,40", "--repeats", "1"], "2 sizes x 1 repeat = 2 loads per path"),
        (["--sizes", "20", "--repeats", "3"], "at least two distinct sizes"),
        (["--sizes", "20,20", "--repeats", "3"], "at least two distinct sizes"),
        (["--sizes", "0,10,20"], "--sizes must be positive"),
        (["--sizes", "2,4,6", "--repeats", "1"], "at least 3 batches"),
        (["--sizes", "10,x"], "comma-separated integers"),
        (["--repeats", "0"], "--repeats: must be >= 1"),
        (["--repeats", "-3"], "--repeats: must be >= 1"),
        (["--repeats", "two"], "--repeats: not an integer"),
    ],
)
def test_bad_sweep_exits_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scale", "--insert", "full", *argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1, err
    assert message in err[0] and err[0].endswith("see --help")
    assert captured.out == ""


def test_two_size_sweep_with_two_repeats_runs(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["scale", "--insert", "full", "--sizes", "12,24", "--repeats", "2", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code in (0, 1)
    assert code == (0 if all(c["ok"] for c in data["checks"]) else 1)
    full = data["paths"]["full"]
    assert [p["cells"] for p in full["points"]] == [12, 12, 24, 24]
    assert full["ci"][0] <= full["exponent"] <= full["ci"][1]


def _path(verdict: str, exponent: float, scans: str, ops: str) -> ScalePath:
    return ScalePath(
        exponent=exponent,
        ci=(exponent - 0.1, exponent + 0.1),
        verdict=verdict,
        points=(),
        wall_exponent=exponent + 0.1,
        counters={"scan_steps": CounterFit(scans, None), "ops": CounterFit(ops, 1.0)},
    )


def test_verdict_comes_from_exact_signals_not_from_time() -> None:
    # A busy machine puts the full path's time exponent over the 1.15 line; its exact signals
    # say linear, and they decide.
    noisy = _path("superlinear", 1.26, "zero", "linear")
    (check,) = scale_checks({"full": noisy})
    assert check.ok and "advisory: time exponent 1.26 (superlinear)" in check.detail
    assert "scan steps zero, ops linear" in check.detail
    # ...and a calm time exponent does not hide a scan.
    (scanning,) = scale_checks({"full": _path("linear", 1.05, "quadratic", "linear")})
    assert not scanning.ok
    steep = InstructionFit(True, None, ((50, 1000), (100, 2600)), 1.38, "superlinear")
    (instr,) = scale_checks({"full": dataclasses.replace(noisy, instructions=steep)})
    assert not instr.ok and "instructions k 1.380 (superlinear, 50-100 cells)" in instr.detail
    (naive,) = scale_checks({"naive": _path("superlinear", 1.5, "quadratic", "linear")})
    assert naive.ok


@pytest.mark.skipif(valgrind.unavailable() is not None, reason="valgrind cannot run here")
def test_scale_counts_instructions_and_decides_on_them(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["scale", "--insert", "full", "--sizes", "12,24", "--repeats", "2"]
    code = main([*argv, "--instructions-max-cells", "24", "--json"])
    data = json.loads(capsys.readouterr().out)
    full = data["paths"]["full"]
    instr = full["instructions"]
    assert instr["available"] and [p["cells"] for p in instr["points"]] == [12, 24]
    assert instr["points"][1]["instructions"] > instr["points"][0]["instructions"] > 0
    assert 0.5 < instr["exponent"] < 1.15 and instr["verdict"] == "linear"
    assert full["deterministic_verdict"] == "linear" and code == 0
    ScaleResult.from_json(data)  # the new keys round-trip
