"""The gate's self-test (issue 13 item 6): its conditions are real edits of ``core/`` that must
still apply to today's tree, and its orchestration compares an unchanged copy with a changed
one exactly as the gate compares a base with a candidate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sim.gate.self_test import run_self_test
from sim.gate.self_test_changes import CHANGES, ChangeError, CodeChange, Edit, patched_tree
from sim.gate.settings import GateSettings

REPO = Path(__file__).resolve().parents[1]
NAMES = [c.name for c in CHANGES]


def test_the_conditions_cover_what_issue_13_asks_for() -> None:
    assert NAMES == [
        "unchanged",
        "quadratic",
        "cpu_slowdown",
        "memory_growth",
        "large_only",
        "client_side",
    ]
    assert all(c.edits for c in CHANGES[1:]) and not CHANGES[0].edits
    assert {e.path for c in CHANGES for e in c.edits} == {"core/loader.py", "core/client.py"}


@pytest.mark.parametrize("change", CHANGES, ids=NAMES)
def test_every_change_applies_once_and_the_changed_core_still_imports(
    change: CodeChange, tmp_path: Path
) -> None:
    tree = patched_tree(REPO, change, tmp_path / change.name)
    for edit in change.edits:
        text = (tree / edit.path).read_text()
        assert edit.new in text and text.count(edit.new) == 1
    env = {**os.environ, "PYTHONPATH": str(tree)}
    check = "import core.loader, core.client, core.daemon; print(core.loader.__file__)"
    proc = subprocess.run(
        [sys.executable, "-c", check], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(str(tree))  # the changed copy, not this tree


def test_a_change_whose_anchor_is_gone_fails_loudly(tmp_path: Path) -> None:
    gone = CodeChange("gone", "x", (Edit("core/loader.py", "no such line\n", "x\n"),))
    with pytest.raises(ChangeError, match=r"anchor in core/loader\.py is not found"):
        patched_tree(REPO, gone, tmp_path / "gone")
    twice = CodeChange("twice", "x", (Edit("core/loader.py", "import", "x"),))
    with pytest.raises(ChangeError, match=r"found \d+ times"):
        patched_tree(REPO, twice, tmp_path / "twice")


def test_orchestration_unchanged_passes_and_a_quadratic_scan_is_caught_by_its_calls() -> None:
    """Small and without valgrind (the default run counts instructions too): the exact call
    counts of the large load decide, whatever the machine's load."""
    settings = GateSettings(
        cells=30,
        pairs=3,
        instructions=False,
        large_cells=120,
        time_threshold=3.0,
        exponent_tolerance=2.0,
        memory_tolerance=1.0,
    )
    result = run_self_test(settings, 1, changes=(CHANGES[0], CHANGES[1]))
    by = {r.condition: r for r in result.runs}
    assert not by["unchanged"].flagged, by["unchanged"].flagged_by
    assert by["quadratic"].flagged and "calls" in by["quadratic"].flagged_by
    assert result.targets_met and result.changes is not None
    assert result.to_json()["detections"] == {"quadratic": [1, 1]}
