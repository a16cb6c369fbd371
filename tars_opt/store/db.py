"""The one SQLite file: open it safely, create and migrate its tables."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from tars_opt.config.paths import ensure_private_dir

APP_ID = 0x7A125F01  # PRAGMA application_id: marks the file as ours.
BUSY_TIMEOUT_MS = 30_000


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite3.Cursor]:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error): takes the write lock first, so
    concurrent writers queue on the busy timeout and reads inside are current."""
    cur = db.conn.cursor()
    cur.execute("BEGIN IMMEDIATE")
    try:
        yield cur
        cur.execute("COMMIT")
    except BaseException:
        rollback(db.conn)
        raise


class DatabaseError(Exception):
    """The database cannot be used; the message says why and what to do."""


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already done so itself: after a
    full disk or an I/O error it may have, and a second ROLLBACK would raise over the
    error that says what went wrong."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _v1(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE calls (
            id INTEGER PRIMARY KEY,
            request_id TEXT NOT NULL UNIQUE,
            ts REAL NOT NULL,
            ts_iso TEXT NOT NULL,
            namespace TEXT NOT NULL DEFAULT 'default',
            session TEXT,
            query_type TEXT,
            priority TEXT,
            source TEXT NOT NULL,
            backend TEXT,
            model TEXT,
            tier TEXT,
            stop_reason TEXT,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_5m INTEGER NOT NULL DEFAULT 0,
            cache_write_1h INTEGER NOT NULL DEFAULT 0,
            cache_read INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            service_tier TEXT,
            tokens_estimated INTEGER NOT NULL DEFAULT 0,
            removed_tokens INTEGER NOT NULL DEFAULT 0,
            cost REAL NOT NULL DEFAULT 0,
            baseline_cost REAL NOT NULL DEFAULT 0,
            baseline_model TEXT,
            saved_pruning REAL NOT NULL DEFAULT 0,
            saved_routing REAL NOT NULL DEFAULT 0,
            saved_prompt_caching REAL NOT NULL DEFAULT 0,
            saved_batching REAL NOT NULL DEFAULT 0,
            saved_response_cache REAL NOT NULL DEFAULT 0,
            latency_ms REAL,
            error TEXT,
            api_request_id TEXT,
            prompt TEXT,
            prompt_sha256 TEXT,
            answer TEXT,
            decisions TEXT NOT NULL DEFAULT '[]'
        )
        """
    )
    db.execute("CREATE INDEX calls_ts ON calls(ts)")
    db.execute("CREATE INDEX calls_source_ts ON calls(source, ts)")


def _monitor(db: sqlite_utils.Database) -> None:
    """Budget reservations, alerts, baselines, metric snapshots, feedback, the A/B holdout."""
    db.execute(
        """CREATE TABLE reservations (
            id INTEGER PRIMARY KEY,
            request_id TEXT NOT NULL,
            ts REAL NOT NULL,
            model TEXT,
            amount REAL NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            period TEXT NOT NULL,
            ts REAL NOT NULL,
            ts_iso TEXT NOT NULL,
            level TEXT NOT NULL,
            message TEXT NOT NULL,
            data TEXT NOT NULL DEFAULT '{}',
            delivery TEXT NOT NULL DEFAULT '{}',
            UNIQUE (key, period)
        )"""
    )
    db.execute("CREATE INDEX alerts_ts ON alerts(ts)")
    db.execute(
        """CREATE TABLE baselines (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            start TEXT NOT NULL,
            "end" TEXT NOT NULL,
            source TEXT NOT NULL,
            metrics TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE metric_snapshots (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            ts_iso TEXT NOT NULL,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            metrics TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE feedback (
            id INTEGER PRIMARY KEY,
            request_id TEXT NOT NULL UNIQUE,
            ts REAL NOT NULL,
            verdict TEXT NOT NULL CHECK (verdict IN ('good', 'bad')),
            note TEXT
        )"""
    )
    db.execute("ALTER TABLE calls ADD COLUMN holdout INTEGER NOT NULL DEFAULT 0")


def _v2_routing(db: sqlite_utils.Database) -> None:
    # Routing: the router's score and name per call, and the link from an escalated
    # re-ask to the request whose answer failed.
    db.execute("ALTER TABLE calls ADD COLUMN route_score REAL")
    db.execute("ALTER TABLE calls ADD COLUMN router TEXT")
    db.execute("ALTER TABLE calls ADD COLUMN escalated_from TEXT")
    db.execute("CREATE INDEX calls_escalated_from ON calls(escalated_from)")


def _v_queue(db: sqlite_utils.Database) -> None:
    """The deferred queue (`tasks`), the Message Batches it went out in (`batches`), and the
    offline backend's batches (`offline_batches`), kept so `drain` works across processes."""
    db.execute(
        """
        CREATE TABLE batches (
            id INTEGER PRIMARY KEY,
            batch_id TEXT UNIQUE,
            state TEXT NOT NULL CHECK (state IN
                ('submitting', 'in_progress', 'canceling', 'ended', 'collected', 'foreign',
                 'abandoned')),
            backend TEXT,
            model TEXT,
            requests INTEGER NOT NULL DEFAULT 0,
            bytes INTEGER NOT NULL DEFAULT 0,
            counts TEXT NOT NULL DEFAULT '{}',
            discovered INTEGER NOT NULL DEFAULT 0,
            owner TEXT,
            lease_until REAL,
            note TEXT,
            created_at REAL NOT NULL,
            submitted_at REAL,
            ended_at REAL,
            collected_at REAL,
            updated_at REAL NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX batches_state ON batches(state)")
    db.execute(
        """
        CREATE TABLE tasks (
            id INTEGER PRIMARY KEY,
            ticket TEXT NOT NULL UNIQUE,
            request_id TEXT NOT NULL,
            request TEXT NOT NULL,
            namespace TEXT NOT NULL DEFAULT 'default',
            priority INTEGER NOT NULL,
            reason TEXT,
            state TEXT NOT NULL CHECK (state IN
                ('queued', 'claimed', 'submitted', 'done', 'failed', 'expired', 'canceled')),
            max_wait_s REAL,
            deadline REAL,
            expected_at REAL,
            attempts INTEGER NOT NULL DEFAULT 1,
            custom_id TEXT NOT NULL UNIQUE,
            batch_row INTEGER REFERENCES batches(id),
            batch_id TEXT,
            prepared TEXT,
            owner TEXT,
            lease_until REAL,
            result TEXT,
            error TEXT,
            created_at REAL NOT NULL,
            claimed_at REAL,
            submitted_at REAL,
            finished_at REAL,
            updated_at REAL NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX tasks_state_priority ON tasks(state, priority, created_at, id)")
    db.execute("CREATE INDEX tasks_batch_row ON tasks(batch_row)")
    db.execute(
        """
        CREATE TABLE offline_batches (
            id TEXT PRIMARY KEY,
            created_at REAL NOT NULL,
            info TEXT NOT NULL,
            items TEXT NOT NULL
        )
        """
    )


def _v3_context(db: sqlite_utils.Database) -> None:
    # Summaries of old history, reused while the summarized messages stay the same.
    db.execute(
        """
        CREATE TABLE summaries (
            key TEXT PRIMARY KEY,
            namespace TEXT NOT NULL DEFAULT 'default',
            text TEXT NOT NULL,
            tokens INTEGER NOT NULL,
            source_tokens INTEGER NOT NULL,
            messages INTEGER NOT NULL,
            model TEXT,
            request_id TEXT,
            created REAL NOT NULL,
            used REAL NOT NULL,
            uses INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    # Exact token counts from the API's count_tokens, by content hash.
    db.execute(
        """
        CREATE TABLE token_counts (
            key TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            tokens INTEGER NOT NULL,
            created REAL NOT NULL
        )
        """
    )


def _cache(db: sqlite_utils.Database) -> None:
    """The response cache: one row per stored answer, and the ledger's link to a hit."""
    db.execute(
        """
        CREATE TABLE cache_entries (
            -- AUTOINCREMENT: ids are never reused, so a ledger row's entry id stays true.
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL UNIQUE,
            norm_key TEXT,
            namespace TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            selector TEXT NOT NULL,
            query_type TEXT NOT NULL,
            semantic INTEGER NOT NULL DEFAULT 0,
            time_sensitive INTEGER NOT NULL DEFAULT 0,
            prompt TEXT NOT NULL,
            embedding BLOB,
            embed_model TEXT,
            reply TEXT NOT NULL,
            model TEXT NOT NULL,
            stop_reason TEXT,
            max_tokens INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_5m INTEGER NOT NULL DEFAULT 0,
            cache_write_1h INTEGER NOT NULL DEFAULT 0,
            cache_read INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            usage_estimated INTEGER NOT NULL DEFAULT 0,
            removed_tokens INTEGER NOT NULL DEFAULT 0,
            request_id TEXT,
            created REAL NOT NULL,
            expires REAL NOT NULL,
            hits INTEGER NOT NULL DEFAULT 0,
            last_hit REAL,
            saved_usd REAL NOT NULL DEFAULT 0,
            bytes INTEGER NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX cache_entries_expires ON cache_entries(expires)")
    db.execute(
        "CREATE INDEX cache_entries_norm ON cache_entries"
        "(namespace, fingerprint, selector, query_type, norm_key)"
    )
    db.execute("ALTER TABLE calls ADD COLUMN cache_entry_id INTEGER")
    db.execute("ALTER TABLE calls ADD COLUMN cache_similarity REAL")
    db.execute("ALTER TABLE calls ADD COLUMN cache_match TEXT")
    db.execute("CREATE INDEX calls_cache_entry ON calls(cache_entry_id)")


def _text_vectors(db: sqlite_utils.Database) -> None:
    """Embedding vectors shared across processes (tars_opt/vector_cache.py): only the
    SHA-256 of the embedded text and its vector, never the text itself."""
    db.execute(
        """
        CREATE TABLE text_vectors (
            model TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,
            used REAL NOT NULL,
            PRIMARY KEY (model, sha256)
        )
        """
    )
    db.execute("CREATE INDEX text_vectors_used ON text_vectors(used)")


def _prefix_sends(db: sqlite_utils.Database) -> None:
    """When each stable prompt prefix (model, system, tools) was last sent, by its SHA-256
    (tars_opt/prompt_cache.py: `ttl_interactive: auto` marks a prefix sent recently)."""
    db.execute(
        "CREATE TABLE prefix_sends (key TEXT PRIMARY KEY, model TEXT NOT NULL, "
        "last_sent REAL NOT NULL)"
    )
    db.execute("CREATE INDEX prefix_sends_last ON prefix_sends(last_sent)")


def _offline_prompt_cache(db: sqlite_utils.Database) -> None:
    """The offline backend's prompt-cache entries (prefix hashes only), so separate
    `tars-opt ask --backend offline` processes share them as API calls share the API's."""
    db.execute(
        "CREATE TABLE offline_prompt_cache (key TEXT PRIMARY KEY, expires REAL NOT NULL, "
        "ttl REAL NOT NULL)"
    )
    db.execute("CREATE INDEX offline_prompt_cache_expires ON offline_prompt_cache(expires)")


# Append only: a released migration never changes, a new one goes at the end.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _v1,
    _monitor,
    _v2_routing,
    _v_queue,
    _v3_context,
    _cache,
    _text_vectors,
    _prefix_sends,
    _offline_prompt_cache,
]


def require_folder(path: str | Path, named: str) -> None:
    """Refuse a database path whose folder is missing: a mistyped path must not quietly
    become a new, empty ledger. `named` says where the path came from (a flag, a variable)."""
    folder = Path(path).expanduser().parent
    if not folder.is_dir():
        raise DatabaseError(
            f"{named}: folder {folder} does not exist; create it or pick another path"
        )


def connect(path: str | Path) -> sqlite_utils.Database:
    """Open (creating if needed) the database at `path`, migrated to the current schema."""
    path = Path(path).expanduser()
    try:
        ensure_private_dir(path.parent)
    except OSError as exc:
        raise DatabaseError(
            f"cannot create the data directory {path.parent}: {exc.strerror}; "
            "choose another with --db or TARS_OPT_HOME"
        ) from None
    created = not path.exists()
    if created:
        try:
            # Created user-only before SQLite writes anything: it holds prompts and answers.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise DatabaseError(
                f"cannot create the database {path}: {exc.strerror}; choose another with --db"
            ) from None
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        # Before anything writes (WAL mode rewrites the header): another program's file
        # must stay exactly as it was.
        _check_ours(conn, path)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal" and os.access(path, os.W_OK):
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        db = sqlite_utils.Database(conn)
        _migrate(db, path)
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(_explain(exc, path)) from None
    return db


def _check_ours(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse an SQLite file of another program (tables, but not our application_id)."""
    if conn.execute("PRAGMA application_id").fetchone()[0] == APP_ID:
        return
    if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise DatabaseError(
            f"{path} is an SQLite file of another program, not a tars-opt database: "
            "point --db at another file"
        )


def _migrate(db: sqlite_utils.Database, path: Path) -> None:
    conn = db.conn
    _check_ours(conn, path)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise DatabaseError(
            f"{path} was written by a newer tars-opt (schema {version}): upgrade tars-opt"
        )
    if version == len(MIGRATIONS):
        return
    # BEGIN IMMEDIATE: two processes opening a new file must not both migrate it.
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number in range(version, len(MIGRATIONS)):
            MIGRATIONS[number](db)
        conn.execute(f"PRAGMA application_id = {APP_ID}")
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


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
