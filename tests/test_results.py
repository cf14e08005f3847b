"""The result model (sim.results): exact round trips, precise rejections, the CLI's JSON."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from core.loader import BatchTiming, LoadReport
from sim.analysis.stats import judge_counters, judge_exponent, judge_time
from sim.cli.main import main
from sim.harness.metrics import load_summary
from sim.harness.profile import profile_notebook
from sim.harness.runner import run_scenario
from sim.harness.scale import run_scale
from sim.harness.scenarios import build_scenario
from sim.results import (
    GATE_SCHEMA,
    SIM_SCHEMA,
    GateErrorResult,
    GateResult,
    ProfileResult,
    ScaleResult,
    SchemaError,
    SelfTestResult,
    SimResult,
    read_result,
)
from sim.results.gate import Comparison, GateThresholds
from sim.results.self_test import SelfTestRun
from sim.workload.generator import write_notebook


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nb") / "gen-9.ipynb"
    write_notebook(path, cells=9, seed=5)
    return path


@pytest.fixture(scope="module")
def sim_json(notebook: Path) -> dict[str, Any]:
    """``nbstream sim --peers 2 --json`` output, as a user's script would read it."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["sim", str(notebook), "--peers", "2", "--json"])
    assert code == 0
    data: dict[str, Any] = json.loads(out.getvalue())
    return data


def _json_trip(data: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(data))
    return loaded


# --------------------------------------------------------------------------- round trips


async def test_sim_round_trips_from_a_real_run(notebook: Path) -> None:
    for name in ("default", "failure"):
        result = await run_scenario(build_scenario(name, seed=1, batches=3), notebook, timeout=60)
        assert result.ok
        assert SimResult.from_json(result.to_json()) == result
        assert SimResult.from_json(_json_trip(result.to_json())) == result
        assert result.to_json()["schema"] == SIM_SCHEMA
        assert result.phases is not None and result.loads
        # The run's own peak (reset at its start): at least what the process holds now less
        # what the run let go, and never the whole machine's.
        assert result.peak_rss_kib is not None and 10_000 < result.peak_rss_kib < 4_000_000


async def test_profile_round_trips_from_a_real_run(notebook: Path) -> None:
    result = await profile_notebook(notebook, runs=1)
    assert result.ok and result.runs == 1
    assert ProfileResult.from_json(_json_trip(result.to_json())) == result


async def test_scale_round_trips_from_a_real_sweep() -> None:
    result = await run_scale(["full"], sizes={"full": [4, 8, 12]}, repeats=1)
    assert result.checks is not None and len(result.checks) == 1
    data = _json_trip(result.to_json())
    assert {"elapsed_s", "checks", "default_sizes", "sizes_by_path"} <= set(data)
    assert ScaleResult.from_json(data) == result
    full = data["paths"]["full"]  # the first cell's own fit, beside the load's
    assert {"first_cell_exponent", "first_cell_ci"} <= set(full)
    lo, hi = full["first_cell_ci"]
    assert lo <= full["first_cell_exponent"] <= hi


def _comparison(factor: float) -> Comparison:
    rng = random.Random(3)
    base = [0.1 * (1 + rng.random() / 20) for _ in range(9)]
    cand = [b * factor for b in base]
    sizes = [25, 50, 100, 200] * 2
    sweep = [1e-3 * n * (1 + rng.random() / 50) for n in sizes]
    counters = {"ops": 100.0, "scan_steps": 0.0}
    return Comparison(
        time=judge_time(base, cand, threshold=1.2),
        cpu_time=judge_time(base, cand, threshold=1.2),
        counters=judge_counters([counters], [counters]),
        exponent=judge_exponent(sizes, sweep, sweep),
    )


def _gate(factor: float) -> GateResult:
    return GateResult(
        base_ref="main",
        base_commit="a" * 40,
        candidate_commit=None,
        dirty=True,
        pairs=9,
        cells=200,
        seed=0,
        thresholds=GateThresholds(1.2, 0.15, 0.0),
        comparison=_comparison(factor),
        elapsed_s=3.5,
    )


def _self_test() -> SelfTestResult:
    def run(condition: str, i: int, flagged: bool) -> SelfTestRun:
        ci = (1.4, 1.6) if flagged else (0.95, 1.05)
        return SelfTestRun(
            condition, i, flagged, ("time",) if flagged else (), 1.0, ci, 1.0, ci, 0.0,
            (-0.1, 0.1), 1.0, (1.0, 1.1), (0.9, 1.0),
        )  # fmt: skip

    runs = [run("unchanged", i, False) for i in range(1, 3)]
    runs += [run("quadratic", i, True) for i in range(1, 3)]
    return SelfTestResult(2, {"unchanged": 9, "quadratic": 5}, 200, 1.2, tuple(runs), 7.0)


def test_gate_and_self_test_round_trip() -> None:
    for gate in (_gate(1.0), _gate(2.0)):
        assert GateResult.from_json(_json_trip(gate.to_json())) == gate
    assert _gate(1.0).verdict == "pass" and _gate(2.0).regressed
    st = _self_test()
    assert st.targets_met
    assert SelfTestResult.from_json(_json_trip(st.to_json())) == st
    err = GateErrorResult("gate-self-test", "git failed")
    assert GateErrorResult.from_json(_json_trip(err.to_json())) == err
    assert read_result(err.to_json()) == err


def test_read_result_dispatches_on_the_command(sim_json: dict[str, Any]) -> None:
    assert isinstance(read_result(sim_json), SimResult)
    assert isinstance(read_result(_gate(1.0).to_json()), GateResult)
    assert isinstance(read_result(_self_test().to_json()), SelfTestResult)
    with pytest.raises(SchemaError, match="unknown command 'nope'"):
        read_result({"command": "nope"})


def test_load_summary_keeps_the_core_json() -> None:
    report = LoadReport("nb", "full", 3, ok=True, cells=3, total_cells=3, started_at=10.0)
    report.batches.append(BatchTiming(0, 3, 1, 0.1, 0.2, 0.01, 10.5, 10.9, 3))
    assert load_summary(report).to_json() == report.to_dict()


# --------------------------------------------------------------------------- the CLI's JSON


def test_cli_sim_json_is_the_model(sim_json: dict[str, Any]) -> None:
    """Everything but the provenance blocks the CLI stamps on every result (machine, git)."""
    assert {"machine", "git"} <= set(sim_json)
    model = {k: v for k, v in sim_json.items() if k not in ("machine", "git")}
    assert SimResult.from_json(sim_json).to_json() == model
    assert sim_json["schema"] == SIM_SCHEMA and sim_json["ok"] is True
    assert len(sim_json["peers"]) >= 2


def test_files_without_a_schema_key_are_read(sim_json: dict[str, Any]) -> None:
    old = {k: v for k, v in sim_json.items() if k != "schema"}
    assert SimResult.from_json(old) == SimResult.from_json(sim_json)
    gate = {k: v for k, v in _gate(1.0).to_json().items() if k != "schema"}
    assert GateResult.from_json(gate) == _gate(1.0)


# --------------------------------------------------------------------------- rejections


def _broken(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    bad = copy.deepcopy(data)
    target = bad
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return bad


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("converged",), KeyError, "$: missing 'converged'"),
        (("peers", 0, "converged"), "yes", "peers[0].converged: expected true/false"),
        (("batches", 1, "latency_s", "loader"), "1", "batches[1].latency_s.loader: expected a num"),
        (("notebook", "cells"), 9.5, "notebook.cells: expected an integer"),
        (("phases",), {"read_s": 0.1}, "phases: missing 'parse_s'"),
        (("checks",), {}, "checks: expected a list"),
        (("ok",), False, "ok: false contradicts the checks"),
        (("schema",), "nbstream/sim/99", "schema: expected 'nbstream/sim/1'"),
        (("command",), "scale", "command: expected 'sim', got 'scale'"),
        (("loads", 0, "batches"), None, "loads[0].batches: expected a list"),
    ],
)
def test_malformed_sim_json_is_rejected_naming_the_key(
    sim_json: dict[str, Any], path: tuple[Any, ...], value: Any, message: str
) -> None:
    with pytest.raises(ValueError) as info:
        SimResult.from_json(_broken(sim_json, path, value))
    assert isinstance(info.value, SchemaError)
    assert message in str(info.value)


def test_malformed_gate_scale_profile_json_is_rejected() -> None:
    gate = _gate(1.0).to_json()
    with pytest.raises(SchemaError, match="verdict: 'regression' contradicts the judgements"):
        GateResult.from_json({**gate, "verdict": "regression"})
    with pytest.raises(SchemaError, match=r"time.ci: expected \[lo, hi\]"):
        GateResult.from_json(_broken(gate, ("time", "ci"), [1.0]))
    with pytest.raises(SchemaError, match=r"counters\.ops: missing 'regressed'"):
        GateResult.from_json(_broken(gate, ("counters", "ops", "regressed"), KeyError))
    with pytest.raises(SchemaError, match=re.escape(f"schema: expected {GATE_SCHEMA!r}")):
        GateResult.from_json({**gate, "schema": "nbstream/sim/1"})
    st = _self_test().to_json()
    with pytest.raises(SchemaError, match="targets_met: contradicts the runs"):
        SelfTestResult.from_json({**st, "targets_met": False})
    with pytest.raises(SchemaError, match=r"runs\[0\].flagged_by\[0\]: expected a string"):
        SelfTestResult.from_json(_broken(st, ("runs", 0, "flagged_by"), [1]))
    scale = {"command": "scale", "sizes": [1], "repeats": 1, "seed": 0, "paths": {}}
    with pytest.raises(SchemaError, match="paths: empty"):
        ScaleResult.from_json({**scale, "raw_automerge": None})
    with pytest.raises(SchemaError, match=r"paths\.full: missing 'exponent'"):
        ScaleResult.from_json({**scale, "paths": {"full": {}}})
    with pytest.raises(SchemaError, match="notebook: expected an object"):
        ProfileResult.from_json({"command": "profile", "notebook": []})
