"""The SQLite engine: one file, opened safely, one connection per thread, migrated on open."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tars_opt.errors import DatabaseError
from tars_opt.store.database import (
    Cursor,
    Database,
    Executor,
    Params,
    SchemaState,
    Transaction,
)
from tars_opt.store.files import ensure_private_dir
from tars_opt.store.migrations import (
    COMPATIBLE_SETTING,
    MIGRATIONS,
    Migration,
    check_usable,
    compatible_from,
)

APP_ID = 0x7A125F01  # PRAGMA application_id: marks the file as ours.
BUSY_TIMEOUT_MS = 30_000
_CONFLICT = {None: "INSERT", "ignore": "INSERT", "replace": "INSERT OR REPLACE"}
# "ignore" skips only a row that repeats a unique key (as on PostgreSQL); `OR IGNORE` would
# also drop a row that breaks NOT NULL or CHECK without a word.
_SUFFIX = {None: "", "ignore": " ON CONFLICT DO NOTHING", "replace": ""}


def _insert_sql(table: str, names: Sequence[str], on_conflict: str | None) -> str:
    columns = ", ".join(f'"{c}"' for c in names)
    marks = ", ".join("?" for _ in names)
    return (
        f"{_CONFLICT[on_conflict]} INTO {table} ({columns}) VALUES ({marks}){_SUFFIX[on_conflict]}"
    )


class _Statements(Executor):
    """Statements on one sqlite3 connection; errors become DatabaseError with the fix."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        try:
            return self._conn().execute(sql, params)
        except sqlite3.Error as exc:
            raise DatabaseError(explain(exc, self.path)) from exc

    def executemany(self, sql: str, rows: Iterable[Params]) -> Cursor:
        try:
            return self._conn().executemany(sql, rows)
        except sqlite3.Error as exc:
            raise DatabaseError(explain(exc, self.path)) from exc

    def query(self, sql: str, params: Params = ()) -> Iterator[dict[str, Any]]:
        try:
            cur = self._conn().execute(sql, params)
            names = [d[0] for d in cur.description or ()]
            rows = cur.fetchall()
        except sqlite3.Error as exc:
            raise DatabaseError(explain(exc, self.path)) from exc
        return iter([dict(zip(names, row, strict=True)) for row in rows])

    def insert(self, table: str, row: dict[str, Any], *, on_conflict: str | None = None) -> int:
        try:
            cur = self._conn().execute(
                _insert_sql(table, list(row), on_conflict), list(row.values())
            )
        except sqlite3.Error as exc:
            raise DatabaseError(explain(exc, self.path)) from exc
        return int(cur.lastrowid or 0) if cur.rowcount else 0

    def insert_many(
        self, table: str, rows: Sequence[dict[str, Any]], *, on_conflict: str | None = None
    ) -> int:
        if not rows:
            return 0
        names = list(rows[0])
        sql = _insert_sql(table, names, on_conflict)
        cur = self.executemany(sql, [[row[c] for c in names] for row in rows])
        return max(cur.rowcount, 0)


class _Transaction(_Statements, Transaction):
    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        super().__init__(path)
        self._connection = conn
        self._last: Cursor | None = None

    def _conn(self) -> sqlite3.Connection:
        return self._connection

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        self._last = super().execute(sql, params)
        return self._last

    def executemany(self, sql: str, rows: Iterable[Params]) -> Cursor:
        self._last = super().executemany(sql, rows)
        return self._last

    @property
    def rowcount(self) -> int:
        return self._last.rowcount if self._last is not None else -1

    def fetchone(self) -> Any:
        return self._last.fetchone() if self._last is not None else None

    def fetchall(self) -> list[Any]:
        return self._last.fetchall() if self._last is not None else []

    def lock(self, name: str) -> None:
        """Nothing to take: BEGIN IMMEDIATE holds the database's one write lock."""

    def select_for_update(
        self, sql: str, params: Params = (), *, skip_locked: bool = False
    ) -> list[dict[str, Any]]:
        # The write lock taken at BEGIN IMMEDIATE already keeps every other writer out.
        return list(self.query(sql, params))


class SQLiteDatabase(_Statements, Database):
    """A tars-opt SQLite file (WAL, busy timeout, user-only), shared safely by threads."""

    engine = "sqlite"

    def __init__(
        self, path: Path, *, migrate: bool = True, migrations: list[Migration] | None = None
    ) -> None:
        super().__init__(path)
        self.location = str(path)
        self.migrations = MIGRATIONS if migrations is None else migrations
        self._local = threading.local()
        self._lock = threading.Lock()
        # Every open connection with the thread it belongs to: a thread that ended has its
        # connection closed when the next one opens (threads come and go in a pool, a
        # server, an agent), so connections do not pile up.
        self._all: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = []
        conn = self._conn()
        try:
            state = _schema(conn, path, len(self.migrations))
            check_usable(state.version, state.compatible_from, state.known, str(path))
            if migrate:
                self.migrate()
        except sqlite3.DatabaseError as exc:
            raise DatabaseError(explain(exc, path)) from None

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _open(self.path)
            self._local.conn = conn
            with self._lock:
                ended = [c for t, c in self._all if not _alive(t())]
                self._all = [(t, c) for t, c in self._all if _alive(t())]
                self._all.append((weakref.ref(threading.current_thread()), conn))
            for old in ended:
                old.close()
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise DatabaseError(explain(exc, self.path)) from exc
        try:
            yield _Transaction(self.path, conn)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            rollback(conn)
            raise DatabaseError(explain(exc, self.path)) from exc
        except BaseException:
            rollback(conn)
            raise

    def change_marker(self) -> object:
        # data_version moves when another connection commits; total_changes with our own.
        conn = self._conn()
        return conn.execute("PRAGMA data_version").fetchone()[0], conn.total_changes

    def close(self) -> None:
        with self._lock:
            for _, conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    def schema(self) -> SchemaState:
        return _schema(self._conn(), self.path, len(self.migrations))

    def migrate(self) -> tuple[int, int]:
        try:
            return _migrate(self._conn(), self.path, self.migrations)
        except sqlite3.DatabaseError as exc:
            raise DatabaseError(explain(exc, self.path)) from None

    def server_time(self) -> float:
        return time.time()


def _alive(thread: threading.Thread | None) -> bool:
    return thread is not None and thread.is_alive()


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already done so itself: after a
    full disk or an I/O error it may have, and a second ROLLBACK would raise over the
    error that says what went wrong."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def require_folder(path: str | Path, named: str) -> None:
    """Refuse a database path whose folder is missing: a mistyped path must not quietly
    become a new, empty ledger. `named` says where the path came from (a flag, a variable)."""
    folder = Path(path).expanduser().parent
    if not folder.is_dir():
        raise DatabaseError(
            f"{named}: folder {folder} does not exist; create it or pick another path"
        )


def open_sqlite(
    path: str | Path, *, migrate: bool = True, migrations: list[Migration] | None = None
) -> SQLiteDatabase:
    """Open (creating if needed) the database file at `path`, migrated to the current
    schema unless `migrate` is False."""
    path = Path(path).expanduser()
    try:
        ensure_private_dir(path.parent)
    except OSError as exc:
        raise DatabaseError(
            f"cannot create the data directory {path.parent}: {exc.strerror}; "
            "choose another with --db or TARS_OPT_HOME"
        ) from None
    if not path.exists():
        try:
            # Created user-only before SQLite writes anything: it holds prompts and answers.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise DatabaseError(
                f"cannot create the database {path}: {exc.strerror}; choose another with --db"
            ) from None
    return SQLiteDatabase(path, migrate=migrate, migrations=migrations)


def _open(path: Path) -> sqlite3.Connection:
    """One connection, configured; refuses a file that is not ours before writing to it."""
    try:
        # check_same_thread off: each connection is used by one thread only (thread-local),
        # but close() may run on another.
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        # Before anything writes (WAL mode rewrites the header): another program's file
        # must stay exactly as it was.
        _check_ours(conn, path)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal" and os.access(path, os.W_OK):
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(explain(exc, path)) from None
    return conn


def _check_ours(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse an SQLite file of another program (tables, but not our application_id)."""
    if conn.execute("PRAGMA application_id").fetchone()[0] == APP_ID:
        return
    if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise DatabaseError(
            f"{path} is an SQLite file of another program, not a tars-opt database: "
            "point --db at another file"
        )


def _schema(conn: sqlite3.Connection, path: Path, known: int) -> SchemaState:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    compatible = 0
    if version > known:
        row = conn.execute(
            "SELECT value FROM settings WHERE name = ?", [COMPATIBLE_SETTING]
        ).fetchone()
        compatible = int(row[0]) if row else 0
    return SchemaState(version, compatible, known)


def _migrate(conn: sqlite3.Connection, path: Path, migrations: list[Migration]) -> tuple[int, int]:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version >= len(migrations):
        return version, version
    # BEGIN IMMEDIATE: two processes opening a new file must not both migrate it.
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tx = _Transaction(path, conn)
        for number in range(version, len(migrations)):
            migrations[number](tx)
        compatible = compatible_from(migrations, len(migrations))
        if compatible:
            tx.insert("settings", {"name": COMPATIBLE_SETTING, "value": str(compatible)},
                      on_conflict="replace")  # fmt: skip
        conn.execute(f"PRAGMA application_id = {APP_ID}")
        conn.execute(f"PRAGMA user_version = {len(migrations)}")
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return version, len(migrations)


def explain(exc: sqlite3.Error, path: Path | str = "the database") -> str:
    """A one-line reason and fix for an SQLite failure (mid-command ones too)."""
    if isinstance(exc, sqlite3.DatabaseError):
        return _explain(exc, path)
    return f"{path}: {exc}"


def _explain(exc: sqlite3.DatabaseError, path: Path | str) -> str:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return (
            f"{path} stayed locked by another tars-opt process for "
            f"{BUSY_TIMEOUT_MS // 1000} s ({text}): run again when it is done"
        )
    if "not a database" in text or "malformed" in text:
        return (
            f"{path} is damaged or not an SQLite database ({text}): "
            "move it aside and run again to start a new one"
        )
    if "readonly" in text or "unable to open" in text:
        return f"cannot write the database {path} ({text}): check its permissions or use --db"
    if "disk is full" in text or "disk I/O" in text:
        return f"cannot write the database {path} ({text}): free disk space and run again"
    return f"{path}: {text}"
