"""The schema: ordered migrations, each run once in a transaction when a database opens.

Append only: a released migration never changes, a new one goes at the end. The schema
version is the number of migrations applied. One definition serves both engines: the DDL
is written with SQLite's types (INTEGER, REAL, TEXT, BLOB, INTEGER PRIMARY KEY) and the
PostgreSQL engine maps them (store/postgres.py).

Migrations are additive (new tables, new nullable or defaulted columns, new indexes), so a
host one version behind keeps working against a newer schema: a team upgrades its hosts
one at a time. A migration that old code cannot live with (a dropped or renamed column, a
changed meaning) is marked `breaking`: code that does not know it refuses the database,
naming both versions.
"""

from __future__ import annotations

from collections.abc import Callable

from tars_opt.errors import DatabaseError
from tars_opt.store.database import Executor

Migration = Callable[[Executor], None]


def _v1(db: Executor) -> None:
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


def _monitor(db: Executor) -> None:
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


def _v2_routing(db: Executor) -> None:
    # Routing: the router's score and name per call, and the link from an escalated
    # re-ask to the request whose answer failed.
    db.execute("ALTER TABLE calls ADD COLUMN route_score REAL")
    db.execute("ALTER TABLE calls ADD COLUMN router TEXT")
    db.execute("ALTER TABLE calls ADD COLUMN escalated_from TEXT")
    db.execute("CREATE INDEX calls_escalated_from ON calls(escalated_from)")


def _v_queue(db: Executor) -> None:
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


def _v3_context(db: Executor) -> None:
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


def _cache(db: Executor) -> None:
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


def _text_vectors(db: Executor) -> None:
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


def _prefix_sends(db: Executor) -> None:
    """When each stable prompt prefix (model, system, tools) was last sent, by its SHA-256
    (tars_opt/prompt_cache.py: `ttl_interactive: auto` marks a prefix sent recently)."""
    db.execute(
        "CREATE TABLE prefix_sends (key TEXT PRIMARY KEY, model TEXT NOT NULL, "
        "last_sent REAL NOT NULL)"
    )
    db.execute("CREATE INDEX prefix_sends_last ON prefix_sends(last_sent)")


def _offline_prompt_cache(db: Executor) -> None:
    """The offline backend's prompt-cache entries (prefix hashes only), so separate
    `tars-opt ask --backend offline` processes share them as API calls share the API's."""
    db.execute(
        "CREATE TABLE offline_prompt_cache (key TEXT PRIMARY KEY, expires REAL NOT NULL, "
        "ttl REAL NOT NULL)"
    )
    db.execute("CREATE INDEX offline_prompt_cache_expires ON offline_prompt_cache(expires)")


def _agent_core(db: Executor) -> None:
    """Requests are Messages API bodies: cached answers keep every content block and are
    keyed per API key (entries from before cannot say which key paid for them, so they are
    removed, never served across keys); ledger rows name their conversation and whether the
    model's price was unknown; conversations are recognised across calls."""
    db.execute("DELETE FROM cache_entries")
    db.execute("ALTER TABLE cache_entries ADD COLUMN content TEXT")
    db.execute("ALTER TABLE calls ADD COLUMN conversation TEXT")
    db.execute("ALTER TABLE calls ADD COLUMN cost_unknown INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX calls_conversation ON calls(conversation)")
    # Settings of this database (e.g. the secret the API-key hash is keyed with).
    db.execute("CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    # A conversation's state, decided once and kept (model chosen, tool list, marks).
    db.execute(
        """CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            namespace TEXT NOT NULL DEFAULT 'default',
            started REAL NOT NULL,
            updated REAL NOT NULL,
            calls INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT '{}'
        )"""
    )
    db.execute("CREATE INDEX conversations_updated ON conversations(updated)")
    # The hash of each call's messages, naming its conversation: a later call whose
    # messages extend these belongs to the same one (hashes only, never text).
    db.execute(
        """CREATE TABLE conversation_prefixes (
            hash TEXT PRIMARY KEY,
            conversation TEXT NOT NULL,
            ts REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX conversation_prefixes_ts ON conversation_prefixes(ts)")


def _client_batches(db: Executor) -> None:
    """Message Batches clients create through tars-opt (`/v1/messages/batches`): each of
    their requests is a task of the deferred queue, linked to its batch and custom_id, and
    so is the ledger row of its answer."""
    db.execute(
        """CREATE TABLE client_batches (
            id TEXT PRIMARY KEY,
            key_id TEXT,
            namespace TEXT NOT NULL DEFAULT 'default',
            requests INTEGER NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            cancel_initiated_at REAL,
            deleted_at REAL
        )"""
    )
    db.execute("CREATE INDEX client_batches_created ON client_batches(created_at)")
    db.execute("ALTER TABLE tasks ADD COLUMN client_batch TEXT REFERENCES client_batches(id)")
    db.execute("ALTER TABLE tasks ADD COLUMN client_custom_id TEXT")
    db.execute("CREATE UNIQUE INDEX tasks_client ON tasks(client_batch, client_custom_id)")
    db.execute("ALTER TABLE calls ADD COLUMN client_batch_id TEXT")
    db.execute("ALTER TABLE calls ADD COLUMN client_custom_id TEXT")
    db.execute("CREATE INDEX calls_client_batch ON calls(client_batch_id)")


def breaking(migration: Migration) -> Migration:
    """Mark a migration that code written before it cannot work with."""
    migration.breaking = True  # type: ignore[attr-defined]
    return migration


def compatible_from(migrations: list[Migration], version: int) -> int:
    """The oldest schema version whose code may use a database at `version`: the number
    of the last breaking migration up to it (0 when none)."""
    marked = [n for n, m in enumerate(migrations[:version], 1) if getattr(m, "breaking", False)]
    return max(marked, default=0)


def check_usable(version: int, compatible: int, known: int, where: str) -> None:
    """Refuse a database whose schema this code (which knows `known` migrations) cannot
    use: written by a newer tars-opt with a breaking change this one does not know."""
    if version > known and compatible > known:
        raise DatabaseError(
            f"{where} has schema version {version}, which needs tars-opt with schema "
            f"{compatible} or later; this tars-opt has schema {known}: upgrade tars-opt on "
            "this host"
        )


# The settings row where a database records `compatible_from` once it is above 0.
COMPATIBLE_SETTING = "schema.compatible_from"

# Append only: a released migration never changes, a new one goes at the end.
MIGRATIONS: list[Migration] = [
    _v1,
    _monitor,
    _v2_routing,
    _v_queue,
    _v3_context,
    _cache,
    _text_vectors,
    _prefix_sends,
    _offline_prompt_cache,
    _agent_core,
    _client_batches,
]
