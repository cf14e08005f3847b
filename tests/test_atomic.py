"""core.atomic.atomic_write: all or nothing, mode kept, symlinks replaced, no temp left behind."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

import core.atomic
from core.atomic import atomic_write


def test_new_file_is_private_and_complete(tmp_path: Path) -> None:
    target = tmp_path / "a.ipynb"
    atomic_write(target, b"x" * 100_000)
    assert target.read_bytes() == b"x" * 100_000
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["a.ipynb"]


def test_replacing_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "a.ipynb"
    target.write_bytes(b"old")
    target.chmod(0o640)
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_explicit_mode_and_temp_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = os.replace

    def spy(src: str, dst: str) -> None:
        seen.append(os.path.basename(src))
        real(src, dst)

    monkeypatch.setattr(core.atomic.os, "replace", spy)
    atomic_write(tmp_path / "b", b"1", mode=0o644, tmp_prefix=".tmp.", tmp_suffix=".meta")
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o644
    assert len(seen) == 1 and seen[0].startswith(".tmp.") and seen[0].endswith(".meta")


def test_a_symlink_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    link = tmp_path / "nb.ipynb"
    link.symlink_to(victim)
    atomic_write(link, b"saved")
    assert not link.is_symlink()
    assert link.read_bytes() == b"saved"
    assert victim.read_bytes() == b"keep me"


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_a_failure_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    target = tmp_path / "a.ipynb"
    target.write_bytes(b"old")

    def boom(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(core.atomic.os, failing, boom)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, b"new contents")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["a.ipynb"]


def test_a_write_that_makes_no_progress_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core.atomic.os, "write", lambda _fd, _data: 0)
    with pytest.raises(OSError, match="no progress"):
        atomic_write(tmp_path / "a", b"data")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_fsync_only_when_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(core.atomic.os, "fsync", lambda fd: calls.append(fd) or real(fd))
    atomic_write(tmp_path / "a", b"1", durable=False)
    assert calls == []
    atomic_write(tmp_path / "b", b"1")
    assert len(calls) == 1
