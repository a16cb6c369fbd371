"""atomic_write_*: a file is replaced in one step, with the mode asked for, and a failure
leaves the old content and no temporary file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tars_opt.store import files
from tars_opt.store.files import atomic_write_bytes, atomic_write_text


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_and_replaces_leaving_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "table.json"
    assert atomic_write_text(target, "first ✓\n") == target
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.json"]


def test_private_files_are_the_users_only_and_others_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "config.yaml", "x", private=True)
        atomic_write_text(tmp_path / "report.md", "x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "config.yaml") == 0o600
    assert _mode(tmp_path / "report.md") == 0o644


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.md"
    target.write_text("old")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_a_missing_folder_is_an_os_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write_text(tmp_path / "nowhere" / "x.md", "x")
