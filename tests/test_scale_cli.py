"""``nbstream scale`` on the command line: bad sweeps are refused in one line, small ones run."""

from __future__ import annotations

import json

import pytest

from sim.cli.main import main


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
