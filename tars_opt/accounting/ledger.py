"""The cost ledger: one row per answered (or failed) request, and summaries of it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tars_opt.hashing import sha256_text
from tars_opt.store.database import Database
from tars_opt.timefmt import iso
from tars_opt.types import STRATEGIES, Reply, Request

OFFLINE = "offline"  # the placeholder backend: its rows are not real money


def source_label(source: str | None, backend: str | None) -> str:
    """Where an answer came from, marked when the offline backend made it (not real money):
    api -> offline, cache -> cache (offline)."""
    if backend != OFFLINE:
        return source or "-"
    return OFFLINE if source == "api" else f"{source} (offline)"


def real_only(include_offline: bool) -> str:
    """The SQL condition (after a WHERE) that leaves out the offline backend's rows, or
    nothing when they count."""
    return "" if include_offline else f" AND (backend IS NULL OR backend != '{OFFLINE}')"


@dataclass(frozen=True)
class CallRecord:
    """Everything the ledger keeps of one request besides the reply itself."""

    request: Request
    reply: Reply
    ts: float
    backend: str | None = None
    baseline_model: str | None = None
    error: str | None = None
    api_request_id: str | None = None
    escalated_from: str | None = None


class Ledger:
    """Writes and reads the `calls` table."""

    def __init__(self, db: Database, *, store_prompts: bool = True) -> None:
        self.db = db
        self.store_prompts = store_prompts

    def record(self, rec: CallRecord) -> int:
        """Insert one row (one statement: its own transaction); return its id. Committed
        on return.

        Keyed by request id: recording a request a second time (a retried write, a replayed
        spool, two drains collecting the same result) keeps the first row and returns its id.
        """
        return self.write_row(self.row(rec))

    def write_row(self, row: dict[str, Any]) -> int:
        """Insert a row made by `row` (kept aside, e.g. in a journal, before it is written);
        the same keying by request id as `record`."""
        new = self.db.insert("calls", row, on_conflict="ignore")
        if new:
            return new
        return int(self.db.scalar("SELECT id FROM calls WHERE request_id = ?", [row["request_id"]]))

    def row(self, rec: CallRecord) -> dict[str, Any]:
        """The `calls` row of `rec`: plain JSON values, written later by `write_row`."""
        req, rep, usage = rec.request, rec.reply, rec.reply.usage
        row: dict[str, Any] = {
            "request_id": rep.request_id,
            "ts": rec.ts,
            "ts_iso": iso(rec.ts),
            "namespace": req.namespace,
            "session": req.session,
            "query_type": req.query_type,
            "priority": req.priority,
            "source": rep.source,
            "backend": rec.backend,
            "model": rep.model,
            "tier": req.tier,
            "stop_reason": rep.stop_reason,
            "input_tokens": usage.input_tokens,
            "cache_write_5m": usage.cache_write_5m,
            "cache_write_1h": usage.cache_write_1h,
            "cache_read": usage.cache_read,
            "output_tokens": usage.output_tokens,
            "service_tier": usage.service_tier,
            "tokens_estimated": int(usage.estimated or req.removed_tokens > 0),
            "removed_tokens": req.removed_tokens,
            "cost": rep.cost,
            "baseline_cost": rep.baseline_cost,
            "baseline_model": rec.baseline_model,
            "latency_ms": rep.latency_ms,
            "error": rec.error,
            "api_request_id": rec.api_request_id,
            "prompt": req.prompt if self.store_prompts else None,
            "prompt_sha256": sha256_text(req.prompt),
            "answer": rep.text if self.store_prompts else None,
            "decisions": json.dumps([d.to_dict() for d in rep.decisions]),
            "holdout": int(req.holdout),
            "escalated_from": rec.escalated_from,
            "conversation": req.conversation,
            "cost_unknown": int(rep.cost_unknown),
        }
        route = next((d for d in rep.decisions if d.stage == "route" and "score" in d.data), None)
        row["route_score"] = route.data["score"] if route else None
        row["router"] = route.data.get("router") if route else None
        for name in STRATEGIES:
            row[f"saved_{name}"] = rep.saved_by_strategy.get(name, 0.0)
        # A request of a client's Message Batch names the batch and its custom_id.
        queued = next(
            (d for d in rep.decisions if d.stage == "defer" and "client_batch_id" in d.data), None
        )
        if queued is not None:
            row["client_batch_id"] = queued.data["client_batch_id"]
            row["client_custom_id"] = queued.data.get("client_custom_id")
        # A response-cache hit names its entry and similarity, so a bad hit can be audited.
        hit = next((d for d in rep.decisions if d.stage == "cache" and d.action == "hit"), None)
        if hit is not None:
            row["cache_entry_id"] = hit.data.get("entry_id")
            row["cache_similarity"] = hit.data.get("similarity")
            row["cache_match"] = hit.data.get("match")
        return row

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        """The last `limit` rows, newest first."""
        rows = self.db.query("SELECT * FROM calls ORDER BY ts DESC, id DESC LIMIT ?", [limit])
        return [_decode(r) for r in rows]

    def get(self, request_id: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM calls WHERE request_id = ?", [request_id]))
        return _decode(rows[0]) if rows else None

    def rows_between(
        self,
        start: float,
        end: float,
        *,
        include_offline: bool = True,
        where: str = "",
        params: Sequence[Any] = (),
        columns: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Rows with start <= ts < end, oldest first, as stored (decisions as JSON text):
        every column, or just `columns` (a month of prompts is a lot to read for a sum).
        `where` adds conditions on the ledger's own columns (`AND ...`)."""
        picked = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        return list(
            self.db.query(
                f"SELECT {picked} FROM calls WHERE ts >= ? AND ts < ?"
                f"{real_only(include_offline)}{where} ORDER BY ts, id",
                [start, end, *params],
            )
        )

    def last_id(self) -> int:
        """The id of the newest row (0 for an empty ledger): later rows have larger ids."""
        return int(self.db.scalar("SELECT COALESCE(MAX(id), 0) FROM calls"))

    def rows_after(self, row_id: int) -> list[dict[str, Any]]:
        """Rows written after the row `row_id`, in the order they were written, decoded."""
        return [
            _decode(r)
            for r in self.db.query("SELECT * FROM calls WHERE id > ? ORDER BY id", [row_id])
        ]

    def recorded(self, request_ids: Sequence[str]) -> set[str]:
        """Which of `request_ids` have a row."""
        found: set[str] = set()
        for start in range(0, len(request_ids), 500):
            chunk = list(request_ids[start : start + 500])
            marks = ", ".join("?" for _ in chunk)
            rows = self.db.execute(
                f"SELECT request_id FROM calls WHERE request_id IN ({marks})", chunk
            ).fetchall()
            found.update(r[0] for r in rows)
        return found

    def session_totals(self, session: str, *, include_offline: bool = True) -> dict[str, Any]:
        """Calls, cost, baseline, first and last time and errors of one session id."""
        row = self.db.execute(
            f"""SELECT COUNT(*), COALESCE(SUM(cost), 0), COALESCE(SUM(baseline_cost), 0),
               MIN(ts_iso), MAX(ts_iso), SUM(CASE WHEN error IS NOT NULL THEN 1 ELSE 0 END)
               FROM calls WHERE session = ?
               {real_only(include_offline)}""",
            [session],
        ).fetchone()
        return {
            "session": session, "calls": row[0], "cost": row[1], "baseline_cost": row[2],
            "saved": row[2] - row[1], "first": row[3], "last": row[4], "errors": row[5] or 0,
        }  # fmt: skip

    def hits_of_entry(self, entry_id: int) -> list[dict[str, Any]]:
        """The calls a response-cache entry answered, oldest first."""
        return list(
            self.db.query(
                """SELECT request_id, ts_iso, cache_match, cache_similarity,
                   baseline_cost, substr(prompt, 1, 200) AS prompt
                   FROM calls WHERE cache_entry_id = ? ORDER BY ts""",
                [entry_id],
            )
        )

    def cache_hits_by_type(
        self, since: float, *, include_offline: bool = True
    ) -> list[dict[str, Any]]:
        """Per query type since `since`: answered calls, response-cache hits by match kind
        and what the hits saved."""
        return list(
            self.db.query(
                f"""SELECT COALESCE(query_type, 'other') AS query_type, COUNT(*) AS answered,
                   SUM(CASE WHEN source = 'cache' THEN 1 ELSE 0 END) AS hits,
                   SUM(CASE WHEN cache_match = 'exact' THEN 1 ELSE 0 END) AS exact,
                   SUM(CASE WHEN cache_match = 'normalized' THEN 1 ELSE 0 END) AS normalized,
                   SUM(CASE WHEN cache_match = 'semantic' THEN 1 ELSE 0 END) AS semantic,
                   COALESCE(SUM(saved_response_cache), 0) AS saved_usd
                   FROM calls WHERE ts >= ? AND error IS NULL AND source != 'queued'
                   {real_only(include_offline)}
                   GROUP BY 1 ORDER BY 1""",
                [since],
            )
        )

    def cost_since(self, start: float, *, include_offline: bool = True) -> float:
        """What the calls since `start` cost."""
        total = self.db.scalar(
            f"SELECT COALESCE(SUM(cost), 0) FROM calls WHERE ts >= ?{real_only(include_offline)}",
            [start],
        )
        return float(total)

    def first_ts(self, *, include_offline: bool = True) -> float | None:
        """When the first call was recorded (epoch seconds), None for an empty ledger;
        without the offline backend's rows unless `include_offline`."""
        row = self.db.execute(
            f"SELECT MIN(ts) FROM calls WHERE 1 = 1{real_only(include_offline)}"
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def offline_calls(
        self, start: float = 0.0, end: float = float("inf"), *, session: str | None = None
    ) -> int:
        """How many rows between two epoch times (of one session id, if given) the offline
        backend answered."""
        where, params = "", [start, end, OFFLINE]
        if session is not None:
            where, params = " AND session = ?", [*params, session]
        row = self.db.execute(
            f"SELECT COUNT(*) FROM calls WHERE ts >= ? AND ts < ? AND backend = ?{where}",
            params,
        ).fetchone()
        return int(row[0])

    def spend(self, start: float, end: float, *, include_offline: bool = True) -> dict[str, Any]:
        """Totals between two epoch times: calls, cost, baseline, saved by strategy, errors,
        escalations (re-asks on a stronger tier) and what they cost, and calls whose cost is
        unknown (a model with no price). Without `include_offline` the offline backend's
        rows are left out."""
        saved = ", ".join(f"SUM(saved_{s}) AS saved_{s}" for s in STRATEGIES)
        row = next(
            self.db.query(
                f"""SELECT COUNT(*) AS calls, COALESCE(SUM(cost), 0) AS cost,
                    COALESCE(SUM(baseline_cost), 0) AS baseline_cost,
                    SUM(CASE WHEN error IS NOT NULL THEN 1 ELSE 0 END) AS errors, {saved},
                    SUM(CASE WHEN escalated_from IS NOT NULL THEN 1 ELSE 0 END) AS escalations,
                    SUM(CASE WHEN escalated_from IS NOT NULL THEN cost ELSE 0 END)
                        AS escalation_cost,
                    SUM(cost_unknown) AS cost_unknown
                    FROM calls WHERE ts >= ? AND ts < ?{real_only(include_offline)}""",
                [start, end],
            )
        )
        return {k: (v or 0) for k, v in row.items()}

    def would_have_saved(
        self, start: float, end: float, *, include_offline: bool = True
    ) -> dict[str, Any]:
        """Shadow mode (`serve --shadow`): how many calls were forwarded unchanged between
        two epoch times and the estimated total their stages would have saved."""
        rows = self.db.query(
            f"""SELECT decisions FROM calls WHERE source = 'shadow' AND ts >= ? AND ts < ?
                {real_only(include_offline)}""",
            [start, end],
        )
        calls, total = 0, 0.0
        for row in rows:
            calls += 1
            for d in json.loads(row["decisions"] or "[]"):
                if d.get("stage") == "shadow":
                    total += float((d.get("data") or {}).get("would_save") or 0.0)
        return {"calls": calls, "would_save": total}

    def breakdown(
        self, column: str, start: float, end: float, *, include_offline: bool = True
    ) -> list[dict[str, Any]]:
        """Calls, tokens and cost grouped by `model` or `source` between two epoch times."""
        if column not in {"model", "source", "query_type", "tier", "namespace"}:
            raise ValueError(f"cannot group the ledger by {column!r}")
        return list(
            self.db.query(
                f"""SELECT COALESCE({column}, '-') AS key, COUNT(*) AS calls,
                    SUM(input_tokens + cache_write_5m + cache_write_1h + cache_read)
                        AS prompt_tokens,
                    SUM(output_tokens) AS output_tokens,
                    SUM(cost) AS cost, SUM(baseline_cost) AS baseline_cost
                    FROM calls WHERE ts >= ? AND ts < ?{real_only(include_offline)}
                    GROUP BY 1 ORDER BY cost DESC""",
                [start, end],
            )
        )


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["decisions"] = json.loads(out.get("decisions") or "[]")
    out["tokens_estimated"] = bool(out.get("tokens_estimated"))
    return out


@dataclass(frozen=True)
class Periods:
    """The start of today, this ISO week and this month (UTC) for a moment."""

    day: float
    week: float
    month: float
    next_month: float

    @classmethod
    def at(cls, now: float) -> Periods:
        moment = datetime.fromtimestamp(now, UTC)
        day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        week = day - timedelta(days=day.weekday())
        month = day.replace(day=1)
        following = (month + timedelta(days=32)).replace(day=1)
        return cls(day.timestamp(), week.timestamp(), month.timestamp(), following.timestamp())
