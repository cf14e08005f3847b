"""The composite GitHub Action (``action.yml``) and its gate step (``.ci/action-gate``).

The step is run here for real, with a stand-in ``nbstream`` on ``PATH`` that records the argv it
gets: inputs must arrive as single arguments, never spliced into shell code."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ACTION = ROOT / "action.yml"
STEP = ROOT / ".ci" / "action-gate"

STUB = """#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "w") as f:
    json.dump(args, f)
md = args[args.index("--markdown") + 1]
if os.environ.get("STUB_WRITES", "1") == "1":
    with open(md, "w") as f:
        f.write("### stub summary\\n")
sys.exit(int(os.environ.get("STUB_EXIT", "0")))
"""


@pytest.fixture()
def stub(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "nbstream"
    exe.write_text(STUB)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def _step(tmp_path: Path, stub: Path, **env: str) -> tuple[list[str], dict[str, str], str]:
    output = tmp_path / "github_output"
    output.write_text("")
    full = {
        "PATH": f"{stub}{os.pathsep}{os.environ['PATH']}",
        "STUB_LOG": str(tmp_path / "argv.json"),
        "GITHUB_OUTPUT": str(output),
        "NBSTREAM_OUT_DIR": str(tmp_path / "out"),
        **env,
    }
    proc = subprocess.run([str(STEP)], env=full, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr  # the action's last step fails the job, not this
    argv = (
        json.loads((tmp_path / "argv.json").read_text())
        if (tmp_path / "argv.json").exists()
        else []
    )
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return argv, outputs, proc.stdout + proc.stderr


def test_action_is_a_composite_whose_expressions_name_declared_inputs() -> None:
    action = yaml.safe_load(ACTION.read_text())
    assert action["runs"]["using"] == "composite"
    declared = set(action["inputs"])
    used = set(re.findall(r"inputs\.([a-z-]+)", ACTION.read_text()))
    assert used and used <= declared, used - declared
    step_ids = {s.get("id") for s in action["runs"]["steps"]}
    for out in action["outputs"].values():
        ref = re.fullmatch(r"\$\{\{ steps\.(\w+)\.outputs\.[\w-]+ \}\}", out["value"])
        assert ref and ref.group(1) in step_ids
    for s in action["runs"]["steps"]:
        assert "uses" in s or s.get("shell") == "bash"  # composite run steps need a shell
        assert "${{ inputs." not in s.get("run", "")  # inputs reach scripts via env only
    assert os.access(STEP, os.X_OK)
    assert "<!-- nbstream-perf-gate -->" in ACTION.read_text()  # one comment, found again


def test_inputs_arrive_as_single_arguments(tmp_path: Path, stub: Path) -> None:
    target = "./serve.sh --socket {socket} --name 'a b' $HOME; rm -rf /"
    argv, outputs, _ = _step(
        tmp_path,
        stub,
        NBSTREAM_BASE="origin/dev",
        NBSTREAM_TARGET_CMD=target,
        NBSTREAM_NOTEBOOKS="nb/one.ipynb\n\nnb/two words.ipynb\n",
        NBSTREAM_BUDGET="300",
        NBSTREAM_ARGS="--pairs 20 --time-threshold '1.3'",
    )
    out = tmp_path / "out"
    assert argv == [
        "gate",
        "--base",
        "origin/dev",
        "--markdown",
        f"{out}/perf-gate.md",
        "--json-out",
        f"{out}/perf-gate.json",
        "--target-cmd",
        target,
        "--notebook",
        "nb/one.ipynb",
        "--notebook",
        "nb/two words.ipynb",
        "--budget",
        "300",
        "--pairs",
        "20",
        "--time-threshold",
        "1.3",
    ]
    assert outputs == {
        "verdict": "pass",
        "exit-code": "0",
        "markdown": f"{out}/perf-gate.md",
        "json": f"{out}/perf-gate.json",
    }


def test_defaults_and_the_base_branch_of_the_pull_request(tmp_path: Path, stub: Path) -> None:
    argv, _, _ = _step(tmp_path, stub, GITHUB_BASE_REF="release-2")
    assert argv[:3] == ["gate", "--base", "origin/release-2"]
    assert "--target-cmd" not in argv and "--notebook" not in argv and "--budget" not in argv


@pytest.mark.parametrize(("code", "verdict"), [("1", "regression"), ("2", "error")])
def test_a_failed_gate_is_reported_with_a_summary_even_without_one(
    tmp_path: Path, stub: Path, code: str, verdict: str
) -> None:
    _, outputs, text = _step(tmp_path, stub, STUB_EXIT=code, STUB_WRITES="0")
    assert outputs["verdict"] == verdict and outputs["exit-code"] == code
    summary = Path(outputs["markdown"]).read_text()
    assert f"error (exit status {code})" in summary  # the comment still says something
    assert f"verdict {verdict}" in text


def test_unbalanced_args_are_an_error_without_running_the_gate(tmp_path: Path, stub: Path) -> None:
    argv, outputs, text = _step(tmp_path, stub, NBSTREAM_ARGS="--pairs '20")
    assert argv == []  # never ran
    assert outputs["exit-code"] == "2" and outputs["verdict"] == "error"
    assert "not a valid shell-like line" in text
