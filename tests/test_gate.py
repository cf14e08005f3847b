"""Tests of the CI gate: its statistics on synthetic samples, its CLI, and one real run end to end.

The end-to-end tests build a throwaway git repository from this tree's core/ and sim/, so the
gate really checks out a worktree, starts one measuring process per side and compares them.
They use tiny settings and never assert absolute times.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sim.analysis.stats import (
    COUNTER_NAMES,
    Comparison,
    SelfTestResult,
    SelfTestRun,
    judge_counters,
    judge_exponent,
    judge_time,
    sign_test_interval,
)
from sim.gate.command import (
    DEFAULT_CELLS,
    DEFAULT_PAIRS,
    DEFAULT_TIME_THRESHOLD,
    GateSettings,
    add_gate_arguments,
    gate_settings,
    run_gate_command,
)
from sim.results.gate import GateErrorResult, GateResult
from sim.results.schemas import schema_for
from tests.gate_run import run_gate

REPO = Path(__file__).resolve().parents[1]


def _noisy(rng: random.Random, value: float, sigma: float) -> float:
    return value * math.exp(rng.gauss(0.0, sigma))


def _pairs(seed: int, factor: float, n: int = DEFAULT_PAIRS) -> tuple[list[float], list[float]]:
    """Paired samples with a shared per-pair disturbance (load on the machine) plus own noise."""
    rng = random.Random(seed)
    base: list[float] = []
    cand: list[float] = []
    for _ in range(n):
        load = math.exp(abs(rng.gauss(0.0, 0.2)))  # machine load hits both sides of a pair
        base.append(_noisy(rng, 0.2 * load, 0.05))
        cand.append(_noisy(rng, 0.2 * factor * load, 0.05))
    return base, cand


# --------------------------------------------------------------------------- time


def test_sign_test_interval_ranks_and_exact_level() -> None:
    lo, hi, level = sign_test_interval(15)
    assert (lo, hi) == (3, 11)  # 4th and 12th order statistics
    assert level == pytest.approx(1 - 2 * 576 / 2**15)
    lo, hi, level = sign_test_interval(30)
    assert (lo, hi) == (9, 20) and level >= 0.95
    assert sign_test_interval(3) == (0, 2, 0.75)  # too few for 95 %: min..max, level says so
    with pytest.raises(ValueError):
        sign_test_interval(0)
    with pytest.raises(ValueError):
        sign_test_interval(10, 1.0)


def test_unchanged_noise_never_flagged_slowdown_always_flagged() -> None:
    for seed in range(200):
        same = judge_time(*_pairs(seed, 1.0), threshold=DEFAULT_TIME_THRESHOLD)
        assert not same.regressed, seed
        assert same.ci[0] <= same.median_ratio <= same.ci[1]
        slow = judge_time(*_pairs(seed, 1.5), threshold=DEFAULT_TIME_THRESHOLD)
        assert slow.regressed, seed
        assert slow.median_ratio == pytest.approx(1.5, rel=0.1)


def test_time_ratio_is_paired_and_inconclusive_is_not_a_regression() -> None:
    base = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    j = judge_time(base, [b * 2.0 for b in base], threshold=1.25)
    assert j.median_ratio == pytest.approx(2.0) and j.ci == pytest.approx((2.0, 2.0))
    assert j.regressed and j.ratios == pytest.approx([2.0] * 6)
    # median above the threshold but the CI reaches below it: reported, not failed
    wobbly = judge_time([1.0] * 6, [0.9, 1.0, 1.3, 1.4, 1.5, 1.6], threshold=1.25)
    assert not wobbly.regressed and wobbly.inconclusive
    d = wobbly.to_json()
    assert d["samples"]["base"] == [1.0] * 6 and len(d["ci"]) == 2
    for bad in ([], [0.0]):
        with pytest.raises(ValueError):
            judge_time(bad, bad, threshold=1.25)
    with pytest.raises(ValueError):
        judge_time([1.0], [1.0], threshold=0.9)


# --------------------------------------------------------------------------- counters

_COUNTERS = {
    "cells": 200,
    "ops": 51628,
    "transactions": 69,
    "scan_steps": 0,
    "frames": 71,
    "bytes_per_cell": 541.07,
    "doc_bytes_per_cell": 100.52,
}


def test_counters_any_increase_is_a_regression() -> None:
    same = judge_counters([_COUNTERS, _COUNTERS], [_COUNTERS, _COUNTERS])
    assert list(same) == list(COUNTER_NAMES)  # "cells" is not judged
    assert not any(c.regressed for c in same.values())
    assert all(c.deterministic for c in same.values())
    for name in COUNTER_NAMES:
        plus_one = {**_COUNTERS, name: _COUNTERS[name] + 1}
        judged = judge_counters([_COUNTERS], [plus_one])
        assert [n for n, c in judged.items() if c.regressed] == [name]
        assert judged[name].to_json()["delta"] == pytest.approx(1)
    fewer = {**_COUNTERS, "ops": 50000}
    assert not judge_counters([_COUNTERS], [fewer])["ops"].regressed  # an improvement
    # a relative tolerance, when configured
    assert not judge_counters([_COUNTERS], [{**_COUNTERS, "ops": 51629}], tolerance=0.01)[
        "ops"
    ].regressed


def test_counters_not_reproducible_within_a_side_compare_range_against_range() -> None:
    a = {**_COUNTERS, "frames": 70}
    b = {**_COUNTERS, "frames": 72}
    judged = judge_counters([a, b], [{**_COUNTERS, "frames": 72}])["frames"]
    assert not judged.deterministic and not judged.regressed
    assert judge_counters([a, b], [{**_COUNTERS, "frames": 73}])["frames"].regressed


# --------------------------------------------------------------------------- exponent

_SIZES = [25, 50, 100, 200] * 3


def _times(rng: random.Random, f: Any) -> list[float]:
    return [_noisy(rng, f(n), 0.05) for n in _SIZES]


def test_exponent_unchanged_or_constant_factor_passes() -> None:
    for seed in range(50):
        rng = random.Random(seed)
        base = _times(rng, lambda n: 1e-3 * n + 0.01)
        same = judge_exponent(_SIZES, base, _times(rng, lambda n: 1e-3 * n + 0.01))
        assert not same.regressed, seed
        slower = judge_exponent(_SIZES, base, _times(rng, lambda n: 1.5 * (1e-3 * n + 0.01)))
        assert not slower.regressed and abs(slower.delta) < 0.1, seed


def test_exponent_quadratic_candidate_regresses() -> None:
    rng = random.Random(1)
    base = _times(rng, lambda n: 1e-3 * n + 0.01)
    quad = judge_exponent(_SIZES, base, _times(rng, lambda n: 1e-3 * n + 2e-5 * n * n + 0.01))
    assert quad.regressed
    assert quad.delta > 0.3 and quad.delta_ci[0] > 0
    assert quad.base_verdict == "linear" and quad.sizes == (25, 50, 100, 200)


def test_exponent_turning_quadratic_regresses_even_within_tolerance() -> None:
    rng = random.Random(2)
    base = _times(rng, lambda n: 1e-4 * n**1.6)
    cand = _times(rng, lambda n: 1e-4 * n**1.9)
    judged = judge_exponent(_SIZES, base, cand, tolerance=1.0)
    assert judged.candidate_verdict == "quadratic" and judged.base_verdict != "quadratic"
    assert judged.regressed
    assert not judge_exponent(_SIZES, base, base, tolerance=1.0).regressed


# --------------------------------------------------------------------------- reports


def _comparison(factor: float, ops: int) -> Comparison:
    base, cand = _pairs(0, factor, 15)
    rng = random.Random(0)
    sweep = _times(rng, lambda n: 1e-3 * n)
    return Comparison(
        time=judge_time(base, cand, threshold=1.25),
        cpu_time=judge_time(base, cand, threshold=1.25),
        counters=judge_counters([_COUNTERS], [{**_COUNTERS, "ops": ops}]),
        exponent=judge_exponent(_SIZES, sweep, sweep),
    )


def test_comparison_flags_and_markdown_table() -> None:
    ok = _comparison(1.0, 51628)
    assert not ok.regressed and ok.flagged_by() == []
    bad = _comparison(1.5, 51629)
    assert bad.flagged_by() == ["time", "cpu_time", "counter:ops"]
    rows = bad.markdown_rows(15)
    assert rows[0].startswith("| metric | base | candidate | ratio / Δ | threshold | verdict |")
    assert len(rows) == 2 + 2 + len(COUNTER_NAMES) + 1
    assert all(row.count("|") == 7 for row in rows)
    assert "❌" in rows[2] and "+1 (+0.0%)" in rows[4] and "✅" in rows[-1]


def test_self_test_result_rates_and_targets() -> None:
    def run(condition: str, i: int, flagged: bool) -> SelfTestRun:
        ci = (1.4, 1.6) if flagged else (0.95, 1.05)
        ratio = 1.07 if flagged else 1.0002
        return SelfTestRun(
            condition, i, flagged, (), 1.0, ci, 1.0, ci, 0.0, (0.0, 0.0), 1.0,
            instruction_ratio=ratio,
            memory_ratios={"python_heap_peak_kib": 1.25 if flagged else 1.01},
        )  # fmt: skip

    runs = [run("unchanged", i, False) for i in range(20)]
    runs += [run("quadratic", i, True) for i in range(20)]
    runs += [run("cpu_slowdown", i, True) for i in range(20)]
    changes = {"unchanged": "none", "quadratic": "a scan", "cpu_slowdown": "more CPU"}
    result = SelfTestResult(20, {"unchanged": 10}, 100, 1.2, tuple(runs), 1.0, changes)
    d = result.to_json()
    assert d["command"] == "gate-self-test" and d["reruns"] == 20
    assert d["false_alarms"] == 0 and d["changes"] == changes
    assert d["detections"] == {"quadratic": [20, 20], "cpu_slowdown": [20, 20]}
    assert d["targets_met"] and result.targets_met
    assert d["margins"]["cpu_slowdown_min_instruction_ratio"] == pytest.approx(1.07)
    assert d["margins"]["unchanged_max_instruction_ratio"] == pytest.approx(1.0002)
    assert "20/20" in result.to_markdown()
    assert d["margins"]["unchanged_max_memory_ratio:python_heap_peak_kib"] == pytest.approx(1.01)
    assert SelfTestResult.from_json(d).changes == changes
    assert SelfTestResult.from_json(d).runs[0].memory_ratios == {"python_heap_peak_kib": 1.01}
    validator = jsonschema.Draft202012Validator(schema_for("gate-self-test"))
    validator.validate(d)
    validator.validate(GateErrorResult("gate-self-test", "no git").to_json())
    for broken in ({**d, "runs": [{**d["runs"][0], "flagged": "yes"}]}, {**d, "reruns": 0}):
        assert not validator.is_valid(broken)
    missed = SelfTestResult(20, {}, 100, 1.2, (*runs[:-1], run("cpu_slowdown", 19, False)), 1.0)
    assert missed.detections["cpu_slowdown"] == [19, 20] and not missed.targets_met
    alarm = SelfTestResult(20, {}, 100, 1.2, (run("unchanged", 0, True), *runs[1:]), 1.0)
    assert alarm.false_alarms == 1 and not alarm.targets_met


# --------------------------------------------------------------------------- CLI


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_gate_arguments(parser)
    return parser.parse_args(list(argv))


def test_arguments_and_defaults() -> None:
    args = _args()
    assert args.base is None and args.reruns == 1
    settings = gate_settings(args)
    assert settings.cells == DEFAULT_CELLS and settings.pairs == DEFAULT_PAIRS
    assert args.time_threshold == DEFAULT_TIME_THRESHOLD
    assert not args.json and not args.self_test and args.markdown is None
    assert GateSettings().sweep_sizes() == (25, 50, 100, 200)
    with pytest.raises(SystemExit):
        _args("--time-threshold", "0.5")


def test_errors_exit_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert run_gate_command(_args("--cells", "8")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--cells" in err
    monkeypatch.chdir(tmp_path)
    out_json = tmp_path / "gate.json"
    assert run_gate_command(_args("--json", "--json-out", str(out_json))) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"nbstream gate: error: not a git repository: {tmp_path}"
    assert json.loads(captured.out) == json.loads(out_json.read_text())
    assert json.loads(captured.out)["verdict"] == "error"


# --------------------------------------------------------------------------- end to end


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A git repo: HEAD~1 lacks core/daemon.py, HEAD is this tree's core/ and sim/."""
    root = tmp_path_factory.mktemp("gate-repo")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in ("core", "sim"):
        shutil.copytree(REPO / pkg, root / pkg, ignore=ignore)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "config", "user.email", "gate@example.invalid")
    _git(root, "config", "user.name", "gate test")
    _git(root, "add", "sim", "core")
    _git(root, "rm", "-q", "--cached", "core/daemon.py")
    _git(root, "commit", "-q", "-m", "no daemon yet")
    _git(root, "add", "core/daemon.py")
    _git(root, "commit", "-q", "-m", "daemon")
    yield root


def _gate(repo: Path, *argv: str, summary: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_gate(repo, *argv, summary=summary, timeout=120)


# Instructions are counted by tests/test_gate_signals.py (valgrind takes a minute to start).
SMALL = ("--cells", "30", "--pairs", "3", "--no-instructions", "--large-cells", "120")


def test_end_to_end_unchanged_passes(repo: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    md = tmp_path / "gate.md"
    # Loose time/exponent limits: 3 pairs on a busy machine prove the plumbing, not the rates
    # (the self-test measures those); the counters are still compared exactly.
    loose = ("--time-threshold", "3", "--exponent-tolerance", "2")
    proc = _gate(
        repo, "--base", "HEAD", *SMALL, *loose, "--json", "--markdown", str(md), summary=summary
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for key in ("command", "verdict", "base", "candidate", "pairs", "time", "counters"):
        assert key in result
    assert result["command"] == "gate" and result["verdict"] == "pass"
    assert result["base"] == {"ref": "HEAD", "commit": _git(repo, "rev-parse", "HEAD")}
    assert result["candidate"]["dirty"] is False and result["pairs"] == 3
    t = result["time"]
    assert {"median_ratio", "ci", "threshold", "regressed", "samples"} <= set(t)
    assert len(t["samples"]["base"]) == len(t["samples"]["candidate"]) == 3
    assert {"base", "candidate", "regressed"} <= set(result["exponent"])
    assert set(result["counters"]) == set(COUNTER_NAMES)
    for name, c in result["counters"].items():  # same code: identical, reproducible counters
        assert c["base"] == c["candidate"] and c["deterministic"], name
    assert result["elapsed_s"] > 0
    text = md.read_text()
    assert text.startswith("### ✅") and "| metric |" in text
    assert summary.read_text() == "earlier step\n" + text + "\n"
    assert _git(repo, "worktree", "list").count("\n") == 0  # the base worktree is gone


def test_end_to_end_quadratic_candidate_is_a_regression(repo: Path) -> None:
    daemon = repo / "core" / "daemon.py"
    original = daemon.read_text()
    patched = original.replace(
        'insert_path: InsertPath = "full"', 'insert_path: InsertPath = "naive"'
    )
    assert patched != original
    daemon.write_text(patched)  # an uncommitted change: the working tree is the candidate
    try:
        proc = _gate(repo, "--base", "HEAD", *SMALL, "--json")
    finally:
        daemon.write_text(original)
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["verdict"] == "regression" and result["candidate"]["dirty"] is True
    assert result["counters"]["scan_steps"]["base"] == 0
    assert result["counters"]["scan_steps"]["regressed"]
    assert "counter:scan_steps" in result["flagged_by"]
    assert proc.stdout.count("\n") > 1
    progress = proc.stderr.splitlines()  # progress lines only, no error
    assert progress and all(line.startswith("nbstream gate: ") for line in progress)
    assert not any("error" in line for line in progress)


def test_end_to_end_errors(repo: Path) -> None:
    no_daemon = _gate(repo, "--base", "HEAD~1", *SMALL)
    assert no_daemon.returncode == 2
    assert no_daemon.stderr.count("\n") == 1 and "core.daemon" in no_daemon.stderr
    unknown = _gate(repo, "--base", "no-such-ref", *SMALL)
    assert unknown.returncode == 2
    assert unknown.stderr == "nbstream gate: error: unknown git ref: 'no-such-ref'\n"
    assert _git(repo, "worktree", "list").count("\n") == 0


def test_end_to_end_budget_stops_cleanly_with_exit_2(repo: Path) -> None:
    proc = _gate(repo, "--base", "HEAD", "--cells", "30", "--no-instructions", "--budget", "0.5")
    assert proc.returncode == 2
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("nbstream gate: error: budget of 0.5 s exhausted after ")
    assert "while measuring counters, memory and time (--budget)" in last
    assert not any("Traceback" in line for line in proc.stderr.splitlines())
    data = json.loads(
        _gate(
            repo,
            "--base",
            "HEAD",
            "--cells",
            "30",
            "--no-instructions",
            "--budget",
            "0.5",
            "--json",
        ).stdout
    )
    assert data["verdict"] == "error" and data["budget_exhausted"] is True
    assert _git(repo, "worktree", "list").count("\n") == 0  # the base worktree is gone


def test_end_to_end_scan_seen_only_at_the_large_size_is_a_regression(repo: Path) -> None:
    """A hidden O(n) scan per batch (no Automerge op, no find_cell_index) costs < 1 % at the
    gate's instruction sizes; the core call counts of the large lock-step load catch it."""
    loader = repo / "core" / "loader.py"
    original = loader.read_text()
    anchor = "        room.load_next_index = at + len(snapshots)\n"
    assert anchor in original
    scan = "        _seen = sum(1 for _key in doc.cell_keys())  # a hidden O(n) scan\n"
    loader.write_text(original.replace(anchor, anchor + scan))
    loose = ("--time-threshold", "3", "--exponent-tolerance", "2")
    try:
        proc = _gate(repo, "--base", "HEAD", *SMALL, *loose, "--large-cells", "240", "--json")
    finally:
        loader.write_text(original)
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert "calls" in result["flagged_by"] and "calls:exponent" in result["flagged_by"]
    calls = result["large"]["calls"]
    assert calls["sizes"] == [30, 240] and calls["candidate"][1] > calls["base"][1]
    names = [f["name"] for f in calls["functions"]]  # where: the scan and what it calls
    assert "core/loader.py:<genexpr>" in names and "core/doc_values.py:object_key" in names
    assert not any(f.startswith("counter:") for f in result["flagged_by"])  # counters blind


# --------------------------------------------------------------------------- --target-cmd

# Exactly the README's "server": nbstream serve on the socket it is given, serving (its default
# root) the notebooks under its working directory, the tree under test.
SERVER_SH = '#!/bin/sh\nexec "{python}" -m sim.cli.main serve --socket "$1" {extra}\n'


def _served_repo(root: Path, extra: str = "") -> None:
    """A repository with no nbstream code at all: its "server" is a script starting
    ``nbstream serve`` of this tree (the gate must not import anything from it)."""
    script = root / "server.sh"
    script.write_text(SERVER_SH.format(python=sys.executable, extra=extra))
    script.chmod(0o755)


@pytest.fixture
def server_repo(tmp_path: Path) -> Path:
    root = tmp_path / "theirs"
    root.mkdir()
    _served_repo(root)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "config", "user.email", "gate@example.invalid")
    _git(root, "config", "user.name", "gate test")
    _git(root, "add", "server.sh")
    _git(root, "commit", "-q", "-m", "server")
    return root


def _outside_gate(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    # the gate's own tree on the path: the repository under test has no Python code
    return run_gate(root, "--base", "HEAD", *argv, pythonpath=REPO)


OUTSIDE = ("--cells", "30", "--pairs", "6", "--no-instructions", "--large-cells", "0")
# Loose time, exponent and memory limits (one RSS sample per side, on a machine busy with the
# rest of the suite): the plumbing and the exact counter are what this proves.
LOOSE = ("--time-threshold", "3", "--exponent-tolerance", "2", "--memory-tolerance", "1")


def test_every_gate_option_has_help_with_its_default() -> None:
    parser = argparse.ArgumentParser()
    add_gate_arguments(parser)
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help and "default" in action.help, action.option_strings


def test_target_cmd_gates_any_repository(server_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "gate.json"
    cmd = ("--target-cmd", "./server.sh {socket}")
    same = _outside_gate(server_repo, *cmd, *OUTSIDE, *LOOSE, "--json", "--output", str(out))
    assert same.returncode == 0, same.stderr + same.stdout[-3000:]
    result = json.loads(same.stdout)
    assert result["verdict"] == "pass" and result["target"]["command"] == "./server.sh {socket}"
    assert set(result["counters"]) == {"frames", "changed_frames", "bytes_per_cell"}
    assert result["counters"]["changed_frames"]["deterministic"]
    assert set(result["target"]["unavailable"]) >= {"instructions", "calls"}
    assert result["instructions"]["available"] is False  # unavailable, not failed
    assert result["target"]["first_cell"]["samples"]["base"]
    assert list(result["memory"]["metrics"]) == ["rss_peak_kib"]
    assert result["time"]["samples"]["base"] and result["cpu_time"]["base_median_s"] > 0
    saved = json.loads(out.read_text())
    assert saved["schema"] == result["schema"] and {"machine", "git"} <= set(saved)
    assert saved["git"]["commit"] == _git(server_repo, "rev-parse", "HEAD")
    jsonschema.Draft202012Validator(schema_for("gate")).validate(saved)
    again = GateResult.from_json(saved)  # the file reads back, target and first cell included
    assert again.target == "./server.sh {socket}" and again.comparison.first_cell is not None
    # The working tree's server now sends one cell per batch: flagged by the frame counters.
    _served_repo(server_repo, "--batch-size 1")
    changed = _outside_gate(server_repo, *cmd, *OUTSIDE, *LOOSE, "--json")
    assert changed.returncode == 1, changed.stderr
    assert "counter:changed_frames" in json.loads(changed.stdout)["flagged_by"]
    assert not list(server_repo.glob(".nbstream-gate-*"))  # the loads' copies are gone


def test_target_cmd_that_never_listens_exits_2_with_one_line(server_repo: Path) -> None:
    never = ("--target-cmd", "sh -c 'sleep 60' {socket}", "--target-timeout", "1")
    proc = _outside_gate(server_repo, *never, *OUTSIDE)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "did not listen on" in proc.stderr, proc.stderr
    missing = _outside_gate(server_repo, "--target-cmd", "./server.sh", *OUTSIDE)
    assert missing.returncode == 2 and "must contain {socket}" in missing.stderr
