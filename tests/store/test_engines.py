"""The database interface on both engines: the same migrations, inserts, conflicts,
transactions and schema-version rules on an SQLite file and on PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from tars_opt.errors import DatabaseError
from tars_opt.store import connect, describe, is_server
from tars_opt.store.migrations import MIGRATIONS, breaking
from tars_opt.store.postgres import redact, to_pyformat


def test_migrated_to_the_current_schema_and_reopening_changes_nothing(db_location) -> None:
    db = connect(db_location)
    state = db.schema()
    assert (state.version, state.known, state.pending) == (len(MIGRATIONS), len(MIGRATIONS), 0)
    assert db.migrate() == (len(MIGRATIONS), len(MIGRATIONS))
    db.close()
    again = connect(db_location)
    assert again.schema().version == len(MIGRATIONS)
    again.close()


def test_insert_ids_conflicts_and_rowcounts_behave_alike(db_location) -> None:
    db = connect(db_location)
    db.insert("settings", {"name": "a", "value": "1"})
    assert db.insert("settings", {"name": "a", "value": "2"}, on_conflict="ignore") == 0
    assert db.scalar("SELECT value FROM settings WHERE name = ?", ["a"]) == "1"
    db.insert("settings", {"name": "a", "value": "3"}, on_conflict="replace")
    assert db.scalar("SELECT value FROM settings WHERE name = ?", ["a"]) == "3"
    with pytest.raises(DatabaseError):
        db.insert("settings", {"name": "a", "value": "4"})
    # "ignore" skips a repeated key only: a row breaking NOT NULL is still an error.
    with pytest.raises(DatabaseError):
        db.insert("settings", {"name": "b", "value": None}, on_conflict="ignore")
    rows = [{"key": f"k{i}", "expires": 1.0 * i, "ttl": 300.0} for i in range(5)]
    assert db.insert_many("offline_prompt_cache", rows) == 5
    assert db.insert_many("offline_prompt_cache", rows[:3], on_conflict="ignore") == 0
    one = db.insert("reservations", {"request_id": "r1", "ts": 1.0, "model": "m", "amount": 0.5})
    two = db.insert("reservations", {"request_id": "r2", "ts": 1.0, "model": "m", "amount": 0.25})
    assert two > one > 0
    total = db.scalar("SELECT SUM(amount) FROM reservations")
    assert total == pytest.approx(0.75) and isinstance(total, float)
    assert db.scalar("SELECT COUNT(*) FROM reservations") == 2
    assert db.execute("DELETE FROM reservations WHERE amount < ?", [0.3]).rowcount == 1
    # `?` inside quotes is text, `%` is not a placeholder.
    assert db.scalar("SELECT '50% of a?' || ?", ["!"]) == "50% of a?!"
    db.close()


def test_a_failed_transaction_leaves_nothing_and_reads_inside_see_its_writes(
    db_location,
) -> None:
    db = connect(db_location)
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.insert("settings", {"name": "x", "value": "1"})
        # Statements on the database inside the transaction run in it (both engines).
        assert db.scalar("SELECT value FROM settings WHERE name = ?", ["x"]) == "1"
        raise RuntimeError("boom")
    assert db.scalar("SELECT COUNT(*) FROM settings WHERE name = ?", ["x"]) == 0
    db.close()


def _newer(extra: list, location: str) -> None:
    """Migrate `location` with this tars-opt's migrations plus `extra` (a newer release)."""
    if is_server(location):
        from tars_opt.store.postgres import open_postgres

        open_postgres(location, migrations=[*MIGRATIONS, *extra]).close()
    else:
        from tars_opt.store.sqlite import open_sqlite

        open_sqlite(location, migrations=[*MIGRATIONS, *extra]).close()


def _add_column(db) -> None:
    db.execute("ALTER TABLE calls ADD COLUMN team TEXT")


@breaking
def _drop_column(db) -> None:
    db.execute("ALTER TABLE calls DROP COLUMN prompt_sha256")


def test_a_host_one_version_behind_keeps_working_after_an_additive_migration(
    db_location,
) -> None:
    connect(db_location).close()
    _newer([_add_column], db_location)
    db = connect(db_location)  # this (older) tars-opt
    state = db.schema()
    assert state.version == len(MIGRATIONS) + 1 and state.newer and state.pending == 0
    db.insert("settings", {"name": "still", "value": "works"})
    db.close()


def test_a_breaking_schema_is_refused_naming_both_versions(db_location) -> None:
    connect(db_location).close()
    _newer([_add_column, _drop_column], db_location)
    with pytest.raises(DatabaseError) as caught:
        connect(db_location)
    message = str(caught.value)
    new, known = len(MIGRATIONS) + 2, len(MIGRATIONS)
    assert f"schema version {new}" in message and f"this tars-opt has schema {known}" in message
    assert "upgrade tars-opt" in message


def test_two_hosts_migrating_a_new_database_at_once_both_succeed(postgres) -> None:
    url = postgres.empty()
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def host() -> None:
        start.wait()
        try:
            connect(url).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=host) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db = connect(url)
    assert db.schema().version == len(MIGRATIONS)
    # Each migration ran once: a second run of the first one would have failed.
    assert db.scalar("SELECT COUNT(*) FROM tars_opt_schema") == 1
    db.close()


def test_a_database_with_someone_elses_calls_table_is_refused(postgres) -> None:
    import psycopg

    url = postgres.empty()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE calls (phone TEXT)")
    with pytest.raises(DatabaseError, match="not tars-opt's"):
        connect(url)


def test_urls_are_shown_without_their_password() -> None:
    url = "postgresql://tars:s3cret%21@db.internal:5432/tars?sslmode=require&password=other"
    shown = redact(url)
    assert "s3cret" not in shown and "other" not in shown
    assert shown.startswith("postgresql://tars:***@db.internal:5432/tars")
    assert describe(url) == shown
    assert describe("/tmp/x.db") == "/tmp/x.db"
    assert is_server("postgres://h/db") and not is_server("/tmp/postgresql.db")


def test_placeholders_are_translated_outside_quotes_only() -> None:
    assert to_pyformat("SELECT ? , '?', \"a?\" -- ?\n, ?") == "SELECT %s , '?', \"a?\" -- ?\n, %s"
    assert to_pyformat("SELECT 'a%' LIKE ?") == "SELECT 'a%%' LIKE %s"


def test_an_unreachable_server_is_one_line_naming_the_fix(tmp_path) -> None:
    from tars_opt.errors import DatabaseUnreachable

    pytest.importorskip("psycopg")
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    url = "postgresql://tars:hunter2@127.0.0.1:9/tars?connect_timeout=2"
    with pytest.raises(DatabaseUnreachable) as caught:
        connect(url)
    message = str(caught.value)
    assert "\n" not in message and "hunter2" not in message
    assert message.startswith("cannot reach the PostgreSQL database postgresql://tars:***@")
    assert "tars-opt db check" in message


def test_a_write_waiting_for_a_lock_gives_up_after_the_timeout_on_both_engines(
    db_location, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A locked database is an error to retry (the gateway's recorder does), never a wait
    without end: PostgreSQL has no lock timeout unless the engine sets one."""
    import time

    from tars_opt.store import postgres, sqlite
    from tests.stored import writes_held

    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_MS", 300)
    monkeypatch.setattr(postgres, "LOCK_TIMEOUT_MS", 300)
    db = connect(db_location)
    db.insert("settings", {"name": "before", "value": "1"})
    with writes_held(db_location):
        started = time.monotonic()
        with pytest.raises(DatabaseError) as caught:
            db.insert("settings", {"name": "during", "value": "2"})
        assert time.monotonic() - started < 5
    assert "Traceback" not in str(caught.value)
    assert type(caught.value) is DatabaseError  # busy, not "cannot reach the server"
    db.insert("settings", {"name": "after", "value": "3"})  # the lock gone, writes go on
    names = {r["name"] for r in db.query("SELECT name FROM settings")}
    assert {"before", "after"} <= names and "during" not in names
    db.close()


def test_opening_a_database_starts_no_thread(db_location) -> None:
    """`serve` on a port in use opens the database, then refuses: nothing may be left
    running (PostgreSQL's connection pool starts on the first statement)."""
    before = set(threading.enumerate())
    db = connect(db_location)
    assert set(threading.enumerate()) <= before  # earlier tests' threads may end
    assert db.scalar("SELECT 1") == 1
    db.close()
