"""What a newcomer reads (issue 14 item 9): sizes in KB under a MB, plurals, no target judged on a
load of a few batches, no ratio over a raw time under a millisecond, `generate --out` that
neither invents directories nor writes a private file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sim.cli.main import main
from sim.cli.text import count as _count
from sim.cli.text import size as _size


def test_sizes_and_counts_read_naturally() -> None:
    assert [_size(n) for n in (531, 125_227, 999_999, 1_398_457)] == [
        "531 B",
        "125.2 KB",
        "1000.0 KB",
        "1.40 MB",
    ]
    assert [_count(1, "peer"), _count(3, "peer"), _count(0, "image")] == [
        "1 peer",
        "3 peers",
        "0 images",
    ]
    assert _count(2, "batch", "batches") == "2 batches"


def test_generate_refuses_a_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nope" / "nb.ipynb"
    assert main(["generate", "--cells", "3", "--out", str(out)]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert not out.parent.exists()


def test_generate_writes_a_file_readable_as_the_umask_allows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = os.umask(0o022)
    try:
        assert main(["generate", "--cells", "3", "--out", str(tmp_path / "nb.ipynb")]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "nb.ipynb").stat().st_mode) == 0o644
    line = capsys.readouterr().out
    assert "3 cells, 1 image, " in line and " KB, sha256 " in line


def test_a_tiny_notebook_gets_no_verdicts_it_cannot_support(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for cells, expected in (
        (3, "targets: not judged (1 batch; below 5"),
        (0, "n/a (raw Automerge"),
    ):
        nb = tmp_path / f"nb{cells}.ipynb"
        assert main(["generate", "--cells", str(cells), "--out", str(nb)]) == 0
        capsys.readouterr()
        assert main(["sim", str(nb)]) == 0
        out = capsys.readouterr().out
        assert expected in out
        assert "MISSED" not in out and "NOT flat" not in out and "1 peers" not in out


@pytest.mark.parametrize(
    "argv",
    [["sim", "--bogus"], ["sim", "--seed", "x"], ["profile", "--runs", "0"], ["nope"], []],
)
def test_usage_errors_are_one_line_pointing_at_help(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("--help)"), err


OWN_COMMANDS = ["sim", "profile", "generate", "serve", "open", "compare", "schema", "report"]


@pytest.mark.parametrize("command", OWN_COMMANDS)
def test_every_option_has_help_and_the_help_fits_100_columns(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sim.cli.main import _SUBPARSERS, build_parser

    monkeypatch.setenv("COLUMNS", "200")  # the help wraps at 100 even on a wide terminal
    build_parser()
    parser = _SUBPARSERS[command]
    for action in parser._actions:
        assert action.help, f"{command} {action.option_strings or action.dest}: no help"
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
