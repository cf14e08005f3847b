"""Issue 13 item 8: the detectors' wrong-verdict rates over seeded synthetic cost curves."""

from __future__ import annotations

import json

import pytest

from sim.analysis.error_rates import CURVES, draw_curve, error_rates, is_wrong, main


@pytest.mark.parametrize("seed", range(20))
def test_curves_have_the_shape_they_claim(seed: int) -> None:
    lin, nlogn = draw_curve("linear", seed), draw_curve("nlogn", seed)
    assert lin.cost(3200) / lin.cost(1600) == pytest.approx(2.0, rel=0.02)
    assert nlogn.cost(3200) / nlogn.cost(1600) > lin.cost(3200) / lin.cost(1600)
    quad = draw_curve("quadratic", seed)
    assert quad.cost(3200) / quad.cost(1600) > 2.4  # the n² term shows at the large end
    above = draw_curve("quadratic_above", seed)
    assert above.cost(above.start) == pytest.approx(above.fixed + above.start)  # linear below s
    linear_at_1600 = above.fixed + 1600
    assert 2.0 <= above.cost(1600) / linear_at_1600 <= 8.0 + 1e-9


def test_unknown_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown curve shape 'cubic'"):
        draw_curve("cubic", 0)


def test_what_counts_as_wrong() -> None:
    assert is_wrong("linear", "superlinear") and not is_wrong("linear", "sublinear")
    assert is_wrong("nlogn", "quadratic") and not is_wrong("nlogn", "superlinear")
    for shape in ("quadratic", "quadratic_above"):
        assert is_wrong(shape, "linear") and not is_wrong(shape, "superlinear")


def test_rates_are_a_function_of_the_seed_and_count_every_curve() -> None:
    a, b = error_rates(curves=15, seed=3), error_rates(curves=15, seed=3)
    assert a == b
    for per in a.values():
        for shape in CURVES:
            row = per[shape]
            assert sum(row["verdicts"].values()) == 15  # type: ignore[attr-defined]
            assert row["wrong_rate"] == row["wrong"] / 15  # type: ignore[operator]
    assert error_rates(curves=15, seed=4) != a


def test_exact_counts_at_large_sizes_never_miss_a_quadratic() -> None:
    rates = error_rates(curves=50, seed=0)
    assert rates["counts 200-1600"]["quadratic"]["wrong"] == 0
    assert rates["counts 200-1600"]["quadratic_above"]["wrong"] == 0
    # scale's calls over its sweep, judged by the steepest local exponent: no miss, no alarm
    assert all(rates["scale calls 50-1600"][s]["wrong"] == 0 for s in CURVES)
    # counted only at 50-100 cells, a quadratic that starts at 200-800 cells is invisible
    assert rates["instructions 50-100"]["quadratic_above"]["wrong"] == 50


def test_command_prints_a_table_or_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--curves", "5"]) == 0
    out = capsys.readouterr().out
    assert "| detector | linear | nlogn | quadratic | quadratic_above |" in out
    assert main(["--curves", "5", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {
        "time (calm)",
        "time (busy)",
        "instructions 50-100",
        "counts 200-1600",
        "scale calls 50-1600",
    }
    with pytest.raises(SystemExit) as exc:
        main(["--curves", "0"])
    assert exc.value.code == 2
