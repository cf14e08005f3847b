"""``nbstream gate --notebook PATH`` (issue 14 item 3): the gate loads the user's own notebooks.

The first notebook seeds every size of the run from its own cells (the file itself is the main
load when ``--cells`` is its length); each further one is loaded as it is and its exact counters
are judged apart (``<counter>@<name>``). A notebook that cannot be read is one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jsonschema
import pytest

from core.ipynb import parse_notebook
from sim.gate.command import add_gate_arguments, gate_settings
from sim.gate.settings import DEFAULT_LARGE_CELLS, GateSettings
from sim.gate.workers import GateError
from sim.gate.workload import make_workload
from sim.results.gate import GateResult
from sim.results.schemas import schema_for
from sim.workload.generator import write_notebook
from tests.gate_run import run_gate

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "notebooks"


def _settings(*argv: str) -> GateSettings:
    parser = argparse.ArgumentParser()
    add_gate_arguments(parser)
    return gate_settings(parser.parse_args(list(argv)))


def test_the_first_notebook_seeds_every_size_and_is_itself_the_main_load(tmp_path: Path) -> None:
    first = write_notebook(tmp_path / "mine.ipynb", cells=40, seed=3).path
    second = write_notebook(tmp_path / "sub" / "mine.ipynb", cells=9, seed=4).path
    third = write_notebook(tmp_path / "other.ipynb", cells=5, seed=5).path
    settings = _settings(
        "--notebook", str(first), "--notebook", str(second), "--notebook", str(third)
    )
    assert settings.cells == 40 and settings.large_cells == DEFAULT_LARGE_CELLS
    work = tmp_path / "work"
    work.mkdir()
    workload = make_workload(work, settings)
    assert workload.main == first.resolve()  # the user's file, untouched
    assert [n for n, _ in workload.sweep] == [5, 10, 20, 40]
    source_cells = parse_notebook(first.read_bytes()).cells
    for n, path in workload.files.items():
        cells = parse_notebook(path.read_bytes()).cells
        assert len(cells) == n
        assert [c.source for c in cells[:40]] == [c.source for c in source_cells[: min(n, 40)]]
        assert len({c.id for c in cells}) == n  # repeats past the length get fresh ids
    assert [(x.label, x.cells) for x in workload.extra] == [("mine#1", 9), ("other", 5)]
    assert [s["cells"] for s in workload.sources] == [40, 9, 5]


def test_cells_and_large_defaults_follow_the_notebook(tmp_path: Path) -> None:
    small = write_notebook(tmp_path / "small.ipynb", cells=6).path
    assert _settings("--notebook", str(small)).cells == 16
    assert _settings("--notebook", str(small), "--cells", "30").cells == 30
    big = write_notebook(tmp_path / "big.ipynb", cells=DEFAULT_LARGE_CELLS, images=0).path
    assert _settings("--notebook", str(big)).large_cells == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file or directory"),
        (b"{not json", "--notebook"),
        (b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}', "no cells"),
    ],
)
def test_a_bad_notebook_is_one_line_before_anything_runs(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "bad.ipynb"
    if content is not None:
        path.write_bytes(content)
    good = write_notebook(tmp_path / "good.ipynb", cells=20).path
    for argv in (["--notebook", str(path)], ["--notebook", str(good), "--notebook", str(path)]):
        with pytest.raises(GateError, match=message) as info:
            _settings(*argv)
        assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus is not beside the project")
def test_end_to_end_on_real_notebooks_passes_and_records_them(tmp_path: Path) -> None:
    """The working tree against itself (HEAD) on two corpus notebooks: a pass whose file names
    the notebooks, judges the second one's counters apart and matches the gate schema."""
    first = CORPUS / "nbsphinx-0.9.8__doc.code-cells.ipynb"
    second = CORPUS / "nbval-0.11.0__tests.sample_notebook.ipynb"
    out = tmp_path / "gate.json"
    proc = run_gate(
        REPO,
        *("--base", "HEAD", "--notebook", str(first), "--notebook", str(second)),
        *("--pairs", "3", "--no-instructions", "--large-cells", "0"),
        *("--time-threshold", "3", "--exponent-tolerance", "2", "--memory-tolerance", "1"),
        *("--json", "--output", str(out)),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    jsonschema.Draft202012Validator(schema_for("gate")).validate(data)
    assert [n["path"] for n in data["notebooks"]] == [str(first), str(second)]
    assert data["cells"] == 79
    ops = data["counters"]["ops@nbval-0.11.0__tests.sample_notebook"]
    assert ops["base"] == ops["candidate"] > 0 and ops["deterministic"]
    again = GateResult.from_json(data)
    assert again.notebooks[1]["cells"] == 18
    assert "nbval-0.11.0__tests.sample_notebook.ipynb` (18 cells)" in again.to_markdown()
