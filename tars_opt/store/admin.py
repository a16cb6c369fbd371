"""Looking after a database: its health (`db check`) and moving a single-user SQLite file
into a team's PostgreSQL database (`db copy`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tars_opt.errors import DatabaseError
from tars_opt.store.database import Database, SchemaState

# Clock skew between a host and the database server past which `db check` warns: budgets,
# leases and off-peak windows compare times written by different hosts.
SKEW_WARN_S = 2.0


@dataclass(frozen=True)
class Health:
    """What `db check` found."""

    engine: str
    location: str
    schema: SchemaState
    skew_s: float  # server clock minus this host's clock
    round_trip_ms: float

    @property
    def problems(self) -> list[str]:
        out = []
        if self.schema.pending:
            out.append(
                f"schema {self.schema.version} is behind this tars-opt ({self.schema.known}): "
                "run `tars-opt db migrate`"
            )
        if abs(self.skew_s) > SKEW_WARN_S:
            out.append(
                f"this host's clock is {-self.skew_s:+.1f} s off the database server's: "
                "run NTP (chrony, systemd-timesyncd) on every host"
            )
        return out


def check(db: Database, clock: Callable[[], float] = time.time) -> Health:
    """Connectivity (a round trip), the schema version, and clock skew host vs server."""
    start = time.perf_counter()
    before = clock()
    server = db.server_time()
    after = clock()
    round_trip = (time.perf_counter() - start) * 1000
    skew = server - (before + after) / 2
    return Health(db.engine, db.location, db.schema(), skew, round_trip)


@dataclass(frozen=True)
class _Table:
    name: str
    key: tuple[str, ...] | None  # the natural key; None: the whole row is its key
    has_id: bool = False  # an integer id the destination assigns anew
    refs: dict[str, str] = field(default_factory=dict)  # column -> table whose id it holds


# Every table of the schema, parents before the tables that point at their ids. A new
# table gets a line here (a test checks that none is missing).
TABLES: tuple[_Table, ...] = (
    _Table("settings", ("name",)),
    _Table("cache_entries", ("key",), has_id=True),
    _Table("batches", ("batch_id",), has_id=True),
    _Table("client_batches", ("id",)),
    _Table("calls", ("request_id",), has_id=True, refs={"cache_entry_id": "cache_entries"}),
    _Table("tasks", ("ticket",), has_id=True, refs={"batch_row": "batches"}),
    _Table("alerts", ("key", "period"), has_id=True),
    _Table("feedback", ("request_id",), has_id=True),
    _Table("reservations", None, has_id=True),
    _Table("baselines", None, has_id=True),
    _Table("metric_snapshots", None, has_id=True),
    _Table("offline_batches", ("id",)),
    _Table("summaries", ("key",)),
    _Table("token_counts", ("key",)),
    _Table("text_vectors", ("model", "sha256")),
    _Table("prefix_sends", ("key",)),
    _Table("offline_prompt_cache", ("key",)),
    _Table("conversations", ("id",)),
    _Table("conversation_prefixes", ("hash",)),
)
_CHUNK = 500


@dataclass
class Copied:
    """Rows per table: in the source, written now, and already in the destination."""

    table: str
    source: int = 0
    written: int = 0
    present: int = 0


def copy_database(
    source: Database, target: Database, on_table: Callable[[Copied], None] | None = None
) -> list[Copied]:
    """Copy every row of `source` into `target`, each table in one transaction.

    Rows are matched by their natural key (a call's request id, a cache entry's key, a
    task's ticket, ...), never by their integer id: the target assigns its own ids (it may
    hold other hosts' rows) and references between tables are rewritten to them. A row the
    target already has is left as it is, so running the copy again - after an
    interruption, or to pick up rows written since - neither loses nor doubles a row.
    """
    unfinished = source.scalar("SELECT COUNT(*) FROM batches WHERE batch_id IS NULL")
    if unfinished:
        raise DatabaseError(
            f"{source.location} has {unfinished} batch(es) being submitted right now: stop "
            "the drain using it, run `tars-opt drain` once to settle them, then copy again"
        )
    # table -> source id -> target id, for the tables other tables point at
    ids: dict[str, dict[int, int]] = {t: {} for table in TABLES for t in table.refs.values()}
    report = []
    for table in TABLES:
        done = _copy_table(source, target, table, ids)
        report.append(done)
        if on_table is not None:
            on_table(done)
    return report


def _copy_table(
    source: Database, target: Database, table: _Table, ids: dict[str, dict[int, int]]
) -> Copied:
    rows = list(source.query(f"SELECT * FROM {table.name}"))
    done = Copied(table.name, source=len(rows))
    mapping = ids.get(table.name)
    with target.transaction() as tx:
        existing: set[tuple[Any, ...]] = set()
        if table.key is None:
            # No natural key: a row already there is one with every column equal.
            existing = {_whole(r) for r in tx.query(f"SELECT * FROM {table.name}")}
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            fresh = []
            for row in chunk:
                out = dict(row)
                if table.has_id:
                    out.pop("id")
                for column, parent in table.refs.items():
                    if out.get(column) is not None:
                        # An id whose row the source no longer has points at nothing.
                        out[column] = ids.get(parent, {}).get(int(out[column]))
                if table.key is None:
                    whole = _whole(out)
                    if whole in existing:
                        continue
                    existing.add(whole)
                fresh.append(out)
            written = tx.insert_many(table.name, fresh, on_conflict="ignore") if fresh else 0
            done.written += written
            done.present += len(chunk) - written
            if mapping is not None and table.key is not None:
                _map_ids(tx, table, chunk, mapping)
    return done


def _whole(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted((k, v) for k, v in row.items() if k != "id"))


def _map_ids(tx: Any, table: _Table, chunk: list[dict[str, Any]], mapping: dict) -> None:
    """Remember which target id each source row of `chunk` has now."""
    assert table.key is not None
    key = table.key
    by_key = {tuple(r[c] for c in key): int(r["id"]) for r in chunk}
    if len(key) == 1:
        wanted = [k[0] for k in by_key]
        marks = ", ".join("?" for _ in wanted)
        found = tx.query(
            f"SELECT id, {key[0]} FROM {table.name} WHERE {key[0]} IN ({marks})", wanted
        )
        for r in found:
            source_id = by_key.get((r[key[0]],))
            if source_id is not None:
                mapping[source_id] = int(r["id"])
        return
    for natural, source_id in by_key.items():
        where = " AND ".join(f"{c} = ?" for c in key)
        target_id = tx.scalar(f"SELECT id FROM {table.name} WHERE {where}", list(natural))
        if target_id is not None:
            mapping[source_id] = int(target_id)
