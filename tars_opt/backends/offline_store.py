"""The offline backend's state kept in the SQLite file, so it works across processes like
the real API does: Message Batches (cron: one `drain` submits, a later one collects) and
prompt-cache entries (one `tars-opt ask` reads what an earlier one wrote)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from tars_opt.backends import BatchInfo, BatchItem
from tars_opt.store.database import Database
from tars_opt.types import BackendResult, Usage


class OfflineBatchStore:
    """The `offline_batches` table: one row per batch, its info and its result items."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def save(self, info: BatchInfo, items: list[BatchItem], created_at: float) -> None:
        """Store a whole batch in one transaction (the offline 'API accepted it')."""
        with self.db.transaction() as cur:
            cur.execute(
                "INSERT INTO offline_batches (id, created_at, info, items) VALUES (?, ?, ?, ?)",
                [info.id, created_at, json.dumps(asdict(info)), _dump_items(items)],
            )

    def info(self, batch_id: str) -> BatchInfo | None:
        rows = list(self.db.query("SELECT info FROM offline_batches WHERE id = ?", [batch_id]))
        return BatchInfo(**json.loads(rows[0]["info"])) if rows else None

    def items(self, batch_id: str) -> list[BatchItem] | None:
        rows = list(self.db.query("SELECT items FROM offline_batches WHERE id = ?", [batch_id]))
        return _load_items(rows[0]["items"]) if rows else None

    def recent(self, limit: int) -> list[BatchInfo]:
        rows = self.db.query(
            "SELECT info FROM offline_batches ORDER BY created_at DESC, id DESC LIMIT ?",
            [limit],
        )
        return [BatchInfo(**json.loads(r["info"])) for r in rows]


class OfflinePromptCache:
    """The `offline_prompt_cache` table: prefix hash -> (expiry, lifetime in s), read and
    written like the in-memory dict the backend uses without a database. Hashes only."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: str) -> tuple[float, float] | None:
        row = self.db.execute(
            "SELECT expires, ttl FROM offline_prompt_cache WHERE key = ?", [key]
        ).fetchone()
        return (float(row[0]), float(row[1])) if row else None

    def __getitem__(self, key: str) -> tuple[float, float]:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __setitem__(self, key: str, value: tuple[float, float]) -> None:
        expires, ttl = value
        with self.db.transaction() as cur:
            row = {"key": key, "expires": expires, "ttl": ttl}
            cur.insert("offline_prompt_cache", row, on_conflict="replace")
            # Entries long gone (a day past the newest write's clock) are dropped.
            cur.execute("DELETE FROM offline_prompt_cache WHERE expires < ?", [expires - 86_400])


def _dump_items(items: list[BatchItem]) -> str:
    out: list[dict[str, Any]] = []
    for item in items:
        data: dict[str, Any] = {"custom_id": item.custom_id, "outcome": item.outcome}
        if item.error is not None:
            data["error"] = item.error
        if item.result is not None:
            res = asdict(item.result)
            res["usage"] = asdict(item.result.usage)
            data["result"] = res
        out.append(data)
    return json.dumps(out, separators=(",", ":"))


def _load_items(text: str) -> list[BatchItem]:
    items = []
    for data in json.loads(text):
        result = None
        if data.get("result") is not None:
            res = dict(data["result"])
            res["usage"] = Usage(**res["usage"])
            res["content"] = tuple(res.get("content") or ())
            result = BackendResult(**res)
        items.append(BatchItem(data["custom_id"], data["outcome"], result, data.get("error")))
    return items
