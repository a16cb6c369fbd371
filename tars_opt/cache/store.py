"""The `cache_entries` table: store, look up, expire, evict, list and summarise answers.

Expiry is absolute (a hit never extends it). Eviction keeps the cache within a budget of
entries and bytes, dropping expired entries first, then the lowest value: value is
(1 + hits) x tokens an answer saves, divided by (1 + age in days).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tars_opt.accounting.ledger import Ledger
from tars_opt.store.database import Database
from tars_opt.types import Usage

# Columns a listing shows (everything but the vector and the full texts).
_BRIEF = (
    "id, namespace, query_type, semantic, time_sensitive, substr(prompt, 1, 200) AS prompt, "
    "model, created, expires, hits, last_hit, saved_usd, bytes, "
    "input_tokens + cache_write_5m + cache_write_1h + cache_read AS prompt_tokens, output_tokens"
)


@dataclass(frozen=True)
class NewEntry:
    """An answer about to be stored."""

    key: str
    norm_key: str | None
    namespace: str
    fingerprint: str
    selector: str
    query_type: str
    semantic: bool
    time_sensitive: bool
    prompt: str
    embedding: bytes | None
    embed_model: str | None
    reply: str
    model: str
    stop_reason: str | None
    max_tokens: int
    usage: Usage
    removed_tokens: int
    request_id: str
    created: float
    expires: float
    # Every content block of the answer (text, thinking, server tool results ...).
    content: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Entry:
    """A stored answer, as read back."""

    id: int
    key: str
    namespace: str
    fingerprint: str
    selector: str
    query_type: str
    semantic: bool
    time_sensitive: bool
    prompt: str
    reply: str
    model: str
    stop_reason: str | None
    max_tokens: int
    usage: Usage
    removed_tokens: int
    request_id: str | None
    created: float
    expires: float
    hits: int
    last_hit: float | None
    saved_usd: float
    bytes: int
    content: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Entry:
        usage = Usage.from_row(row, estimated=bool(row["usage_estimated"]))
        return cls(
            id=row["id"],
            key=row["key"],
            namespace=row["namespace"],
            fingerprint=row["fingerprint"],
            selector=row["selector"],
            query_type=row["query_type"],
            semantic=bool(row["semantic"]),
            time_sensitive=bool(row["time_sensitive"]),
            prompt=row["prompt"],
            reply=row["reply"],
            model=row["model"],
            stop_reason=row["stop_reason"],
            max_tokens=row["max_tokens"],
            usage=usage,
            removed_tokens=row["removed_tokens"],
            request_id=row["request_id"],
            created=row["created"],
            expires=row["expires"],
            hits=row["hits"],
            last_hit=row["last_hit"],
            saved_usd=row["saved_usd"],
            bytes=row["bytes"],
            content=tuple(json.loads(row["content"])) if row.get("content") else (),
        )


class CacheStore:
    """Reads and writes `cache_entries`; every write is its own short transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _one(self, sql: str, params: list[Any]) -> Entry | None:
        rows = list(self.db.query(sql, params))
        return Entry.from_row(rows[0]) if rows else None

    def _write(self, sql: str, params: list[Any]) -> int:
        with self.db.transaction() as cur:
            cur.execute(sql, params)
            return cur.rowcount

    def by_key(self, key: str, now: float) -> Entry | None:
        """The live entry with this exact key."""
        return self._one("SELECT * FROM cache_entries WHERE key = ? AND expires > ?", [key, now])

    def by_norm_key(
        self, partition: tuple[str, str, str, str], norm: str, now: float
    ) -> Entry | None:
        """A live, semantic-eligible entry of this partition whose normalised prompt matches."""
        return self._one(
            """SELECT * FROM cache_entries WHERE namespace = ? AND fingerprint = ?
               AND selector = ? AND query_type = ? AND norm_key = ? AND semantic = 1
               AND expires > ? ORDER BY created DESC LIMIT 1""",
            [*partition, norm, now],
        )

    def get(self, entry_id: int) -> Entry | None:
        """An entry by id, expired or not."""
        return self._one("SELECT * FROM cache_entries WHERE id = ?", [entry_id])

    def live(self, entry_id: int, now: float) -> Entry | None:
        """An entry by id if it has not expired."""
        return self._one(
            "SELECT * FROM cache_entries WHERE id = ? AND expires > ?", [entry_id, now]
        )

    def put(self, e: NewEntry) -> int:
        """Store an answer (replacing any entry with the same key); return its id."""
        content = json.dumps(list(e.content), separators=(",", ":")) if e.content else None
        size = (
            len(e.prompt.encode())
            + len(e.reply.encode())
            + len(content.encode() if content else b"")
            + len(e.embedding or b"")
            + 256
        )
        u = e.usage
        row = {
            "key": e.key,
            "norm_key": e.norm_key,
            "namespace": e.namespace,
            "fingerprint": e.fingerprint,
            "selector": e.selector,
            "query_type": e.query_type,
            "semantic": int(e.semantic),
            "time_sensitive": int(e.time_sensitive),
            "prompt": e.prompt,
            "embedding": e.embedding,
            "embed_model": e.embed_model,
            "reply": e.reply,
            "content": content,
            "model": e.model,
            "stop_reason": e.stop_reason,
            "max_tokens": e.max_tokens,
            "input_tokens": u.input_tokens,
            "cache_write_5m": u.cache_write_5m,
            "cache_write_1h": u.cache_write_1h,
            "cache_read": u.cache_read,
            "output_tokens": u.output_tokens,
            "usage_estimated": int(u.estimated),
            "removed_tokens": e.removed_tokens,
            "request_id": e.request_id,
            "created": e.created,
            "expires": e.expires,
            "bytes": size,
        }
        with self.db.transaction() as cur:
            # One writer at a time: ids then commit in order, so a reader that loads
            # entries above the last id it saw misses none written on another host.
            cur.lock("cache_entries")
            # A refreshed answer replaces the old one under a new id (old hits stay audited).
            cur.execute("DELETE FROM cache_entries WHERE key = ?", [e.key])
            return cur.insert("cache_entries", row)

    def record_hit(self, entry_id: int, saved_usd: float, now: float) -> None:
        """Count a hit (expiry unchanged: it is absolute)."""
        self._write(
            "UPDATE cache_entries SET hits = hits + 1, last_hit = ?, saved_usd = saved_usd + ? "
            "WHERE id = ?",
            [now, saved_usd, entry_id],
        )

    def delete(self, entry_id: int) -> bool:
        """Forget one entry; False if there was none."""
        return self._write("DELETE FROM cache_entries WHERE id = ?", [entry_id]) > 0

    def request_id_of(self, entry_id: int) -> str | None:
        """The request whose answer entry `entry_id` holds, if known."""
        value = self.db.scalar("SELECT request_id FROM cache_entries WHERE id = ?", [entry_id])
        return str(value) if value else None

    def evict_for_call(self, call: dict[str, Any]) -> bool:
        """Drop the cached answer behind a ledger row rated bad: the entry a hit served, or
        the entry the call's own answer was stored as. True when one was removed."""
        entry_id = call.get("cache_entry_id")
        if entry_id is not None:
            return self.delete(int(entry_id))
        return (
            self._write("DELETE FROM cache_entries WHERE request_id = ?", [call["request_id"]]) > 0
        )

    def delete_matching(self, text: str) -> int:
        """Forget every entry whose prompt contains `text` (case-insensitive); the count."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return self._write(
            "DELETE FROM cache_entries WHERE LOWER(prompt) LIKE LOWER(?) ESCAPE '\\'", [pattern]
        )

    def clear(self, query_type: str | None = None) -> int:
        """Forget every entry, or every entry of one query type; the count."""
        if query_type is None:
            return self._write("DELETE FROM cache_entries", [])
        return self._write("DELETE FROM cache_entries WHERE query_type = ?", [query_type])

    def count(self, query_type: str | None = None) -> int:
        """How many entries are stored, or stored for one query type."""
        if query_type is None:
            return self.totals()[0]
        row = self.db.execute(
            "SELECT COUNT(*) FROM cache_entries WHERE query_type = ?", [query_type]
        ).fetchone()
        return int(row[0])

    def purge_expired(self, now: float) -> int:
        """Delete expired entries; the count."""
        return self._write("DELETE FROM cache_entries WHERE expires <= ?", [now])

    def totals(self) -> tuple[int, int]:
        """(entries, bytes) stored."""
        row = next(
            self.db.query("SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS b FROM cache_entries")
        )
        return int(row["n"]), int(row["b"])

    def evict(self, max_entries: int, max_bytes: int, now: float) -> int:
        """Bring the cache within its budget: expired entries first, then lowest value."""
        removed = self.purge_expired(now)
        count, size = self.totals()
        if count <= max_entries and size <= max_bytes:
            return removed
        victims: list[int] = []
        rows = self.db.query(
            """SELECT id, bytes FROM cache_entries ORDER BY
               (1.0 + hits) * (input_tokens + cache_write_5m + cache_write_1h + cache_read
                               + output_tokens + 1)
               / (1.0 + (CASE WHEN created < ? THEN ? - created ELSE 0 END) / 86400.0) ASC,
               created ASC""",
            [now, now],
        )
        for row in rows:
            if count <= max_entries and size <= max_bytes:
                break
            victims.append(row["id"])
            count -= 1
            size -= row["bytes"]
        with self.db.transaction() as cur:
            for start in range(0, len(victims), 500):
                chunk = victims[start : start + 500]
                marks = ", ".join("?" for _ in chunk)
                cur.execute(f"DELETE FROM cache_entries WHERE id IN ({marks})", chunk)
        return removed + len(victims)

    def vectors(self, after_id: int, now: float) -> Iterator[dict[str, Any]]:
        """Live semantic entries with a vector and id > `after_id`, oldest first."""
        yield from self.db.query(
            """SELECT id, namespace, fingerprint, selector, query_type, embedding
               FROM cache_entries WHERE id > ? AND semantic = 1 AND embedding IS NOT NULL
               AND expires > ? ORDER BY id""",
            [after_id, now],
        )

    def ids(self) -> set[int]:
        """Every stored entry id (to drop forgotten ones from an in-memory index)."""
        return {r["id"] for r in self.db.query("SELECT id FROM cache_entries")}

    def listing(
        self, *, limit: int = 20, query_type: str | None = None, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest entries (brief columns), optionally of one type or namespace."""
        where, params = [], []
        if query_type:
            where.append("query_type = ?")
            params.append(query_type)
        if namespace:
            where.append("namespace = ?")
            params.append(namespace)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return list(
            self.db.query(
                f"SELECT {_BRIEF} FROM cache_entries {clause} ORDER BY created DESC, id DESC "
                "LIMIT ?",
                [*params, limit],
            )
        )

    def top(self, limit: int = 5) -> list[dict[str, Any]]:
        """The entries that saved the most."""
        return list(
            self.db.query(
                f"SELECT {_BRIEF} FROM cache_entries WHERE hits > 0 "
                "ORDER BY saved_usd DESC, hits DESC LIMIT ?",
                [limit],
            )
        )

    def by_type(self, now: float) -> list[dict[str, Any]]:
        """Entries, live entries, bytes and hits per query type."""
        return list(
            self.db.query(
                """SELECT query_type, COUNT(*) AS entries,
                   SUM(CASE WHEN expires > ? THEN 1 ELSE 0 END) AS live,
                   SUM(bytes) AS bytes, SUM(hits) AS hits,
                   SUM(hits * (input_tokens + cache_write_5m + cache_write_1h + cache_read
                               + output_tokens)) AS tokens_saved
                   FROM cache_entries GROUP BY query_type ORDER BY query_type""",
                [now],
            )
        )

    def hits_of(self, entry_id: int) -> list[dict[str, Any]]:
        """Ledger rows answered from this entry (for `cache show`)."""
        return Ledger(self.db).hits_of_entry(entry_id)


def summary(
    store: CacheStore, now: float, since: float, *, include_offline: bool = True
) -> dict[str, Any]:
    """What `cache stats` shows: size, entries by type, the ledger's hit rate by type since
    `since`, tokens and dollars saved, and the entries that saved most. The ledger's figures
    leave the offline backend's calls out unless `include_offline`; `offline_left_out`
    says how many."""
    entries, size = store.totals()
    calls = Ledger(store.db)
    ledger = calls.cache_hits_by_type(since, include_offline=include_offline)
    for row in ledger:
        row["hit_rate"] = (row["hits"] or 0) / row["answered"] if row["answered"] else 0.0
    answered = sum(r["answered"] for r in ledger)
    hits = sum(r["hits"] or 0 for r in ledger)
    by_type = store.by_type(now)
    return {
        "entries": entries,
        "bytes": size,
        "live": sum(r["live"] or 0 for r in by_type),
        "by_type": by_type,
        "since": since,
        "answered": answered,
        "hits": hits,
        "hit_rate": hits / answered if answered else 0.0,
        "saved_usd": sum(r["saved_usd"] for r in ledger),
        "tokens_saved": sum(r["tokens_saved"] or 0 for r in by_type),
        "ledger_by_type": ledger,
        "top": store.top(5),
        "offline_left_out": 0 if include_offline else calls.offline_calls(since, now + 1),
    }
