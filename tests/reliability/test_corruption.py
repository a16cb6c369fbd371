"""A damaged or foreign file, a broken data dir, a full disk, an interrupt: one clear line,
a non-zero exit, and nothing already stored is damaged."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

import tars_opt.store
import tars_opt.store.sqlite
from tars_opt.backends.offline import OfflineBackend
from tars_opt.cli.main import app
from tests.stored import database_at

FILE_ONLY = pytest.mark.sqlite_only(reason="damages or restricts the SQLite file itself")


def db_file(home: Path) -> Path:
    return home / "tars-opt.db"


def seed(runner, n: int = 3) -> None:
    for i in range(n):
        result = runner.invoke(app, ["ask", "--backend", "offline", "--no-cache", f"seed {i}"])
        assert result.exit_code == 0, result.output


def rows(home: Path) -> list[tuple]:
    """The ledger's rows, on whichever engine the suite runs."""
    db = tars_opt.store.connect(database_at(home))
    try:
        return [tuple(r.values()) for r in db.query("SELECT * FROM calls ORDER BY id")]
    finally:
        db.close()


def reservations(home: Path) -> int:
    db = tars_opt.store.connect(database_at(home))
    try:
        return int(db.scalar("SELECT COUNT(*) FROM reservations"))
    finally:
        db.close()


def one_clear_line(result, *words: str) -> str:
    err = result.stderr
    assert result.exit_code not in (0, None), result.output
    assert (
        "Traceback" not in err
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    ), err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@FILE_ONLY
@pytest.mark.parametrize("command", [["costs"], ["log"], ["ask", "--backend", "offline", "hi"]])
def test_a_file_that_is_not_a_database(runner, home: Path, command: list[str]) -> None:
    home.mkdir(parents=True)
    db_file(home).write_bytes(b"this is not SQLite at all\n" * 200)
    before = digest(db_file(home))
    one_clear_line(runner.invoke(app, command), "not an SQLite database", "move it aside")
    assert digest(db_file(home)) == before


@FILE_ONLY
def test_a_foreign_sqlite_file(runner, home: Path) -> None:
    home.mkdir(parents=True)
    conn = sqlite3.connect(db_file(home))
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO photos (name) VALUES ('cat.jpg')")
    conn.commit()
    conn.close()
    before = digest(db_file(home))
    one_clear_line(runner.invoke(app, ["costs"]), "another program", "--db")
    assert digest(db_file(home)) == before


@FILE_ONLY
def test_a_page_damaged_mid_file(runner, home: Path) -> None:
    seed(runner, 40)
    path = db_file(home)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    data[page * 3 : page * 4] = b"\xff" * page  # one b-tree page gone bad
    path.write_bytes(bytes(data))
    damaged = digest(path)
    result = runner.invoke(app, ["log", "-n", "100"])
    one_clear_line(result, "damaged", "move it aside")
    assert digest(path) == damaged  # not made worse by the attempt


def test_a_data_dir_that_cannot_hold_logs(runner, home: Path) -> None:
    seed(runner, 2)
    before = rows(home)
    log_dir = home / "logs"
    for f in log_dir.iterdir():
        f.unlink()
    log_dir.rmdir()
    log_dir.write_text("a file where the logs directory should be")
    one_clear_line(runner.invoke(app, ["ask", "--backend", "offline", "hi"]), "logs")
    assert rows(home) == before


@FILE_ONLY
def test_a_read_only_database(runner, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(runner, 2)
    before = rows(home)
    real = sqlite3.connect

    def read_only(path, *args, **kwargs):  # the file as a read-only mount would give it
        return real(f"file:{path}?mode=ro", *args, uri=True, **kwargs)

    monkeypatch.setattr(tars_opt.store.sqlite.sqlite3, "connect", read_only)
    result = runner.invoke(app, ["ask", "--backend", "offline", "--no-cache", "more"])
    one_clear_line(result, "cannot write")
    monkeypatch.undo()
    assert rows(home) == before


@FILE_ONLY
def test_a_full_disk_keeps_what_is_stored(
    runner, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(runner, 5)
    before = rows(home)
    real = tars_opt.store.connect

    def full(path):  # no page may be added: SQLite answers "database or disk is full"
        db = real(path)
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")
        return db

    monkeypatch.setattr("tars_opt.app.connect", full)
    for i in range(30):  # until a write needs a new page
        result = runner.invoke(app, ["ask", "--backend", "offline", "--no-cache", f"x{i}" * 300])
        if result.exit_code != 0:
            break
    one_clear_line(result, "full")
    monkeypatch.undo()
    after = rows(home)
    assert after[: len(before)] == before
    conn = sqlite3.connect(db_file(home))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 0
    conn.close()


def test_a_full_disk_while_writing_a_report(
    runner, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(runner, 2)

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    # Files are replaced atomically: the data must reach the disk (fsync) before the swap.
    monkeypatch.setattr(os, "fsync", no_space)
    result = runner.invoke(app, ["report", "--week", "--out", str(tmp_path / "w.md")])
    one_clear_line(result, "No space left on device")
    assert not (tmp_path / "w.md").exists() and not list(tmp_path.glob(".w.md.*"))


def test_an_interrupt_mid_call(runner, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(runner, 1)
    before = rows(home)

    def interrupted(self, params):
        raise KeyboardInterrupt

    monkeypatch.setattr(OfflineBackend, "send", interrupted)
    result = runner.invoke(app, ["ask", "--backend", "offline", "--no-cache", "wait"])
    assert result.exit_code == 130
    one_clear_line(result, "interrupted")
    assert rows(home) == before
    assert reservations(home) == 0
