"""Workload traces: the JSONL files `tars-opt simulate` replays and `log --export` writes.

One JSON object per line. An optional first line `{"kind": "header", ...}` describes the
trace (name, sources, licences, generator seed); it is kept, never replayed. Every other
line is one call:

  time        required  ISO-8601 UTC text ("2026-02-11T09:30:00Z") or epoch seconds
  prompt      required  the user's prompt (non-empty text)
  history     optional  the conversation before it: a list of {"role", "content"}
  system      optional  the system prompt (text)
  tools       optional  a list of tool schemas, each with a "name"
  type        optional  research|fact|code|template|other (guessed when absent)
  priority    optional  high|normal|low (default normal)
  labels      optional  {"<tier>": quality 0-1}: how good that tier's answer is (1/0 correct)
  session     optional  groups the calls of one task
  namespace   optional  keeps caches of separate agents apart (default "default")
  defer       optional  true: the caller asked for the off-peak queue
  urgent      optional  true: never deferred
  max_tokens  optional  the answer's token limit (default models.max_tokens)
  max_wait_s  optional  how long the caller can wait for a deferred answer
  meta        optional  anything (ignored by the replay; kept for the reader)

The header may hold `"defaults": {...}`: fields (not time or prompt) every call has unless
it sets its own, e.g. an agent's system prompt and tools written once. Unknown fields are
errors (a typo must not silently change a replay). Calls are replayed in time order.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tars_opt.accounting.ledger import Ledger
from tars_opt.errors import InputError, TraceError
from tars_opt.store.files import atomic_write_text, read_text_file
from tars_opt.timefmt import iso
from tars_opt.types import PRIORITIES, QUERY_TYPES

FIELDS = (
    "time", "prompt", "history", "system", "tools", "type", "priority", "labels", "session",
    "namespace", "defer", "urgent", "max_tokens", "max_wait_s", "meta",
)  # fmt: skip
BUNDLED = Path(__file__).resolve().parent.parent / "data" / "agent_day.jsonl"


@dataclass(frozen=True)
class Call:
    """One call of a workload."""

    line: int
    time: float
    prompt: str
    history: tuple[dict[str, Any], ...] = ()
    system: str | None = None
    tools: tuple[dict[str, Any], ...] = ()
    type: str | None = None
    priority: str = "normal"
    labels: dict[str, float] = field(default_factory=dict)
    session: str | None = None
    namespace: str = "default"
    defer: bool = False
    urgent: bool = False
    max_tokens: int | None = None
    max_wait_s: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Workload:
    """A header (may be empty) and the calls in time order."""

    path: str
    header: dict[str, Any]
    calls: list[Call]

    @property
    def name(self) -> str:
        return str(self.header.get("name") or Path(self.path).stem)

    @property
    def labelled(self) -> int:
        return sum(1 for c in self.calls if c.labels)


def parse_time(value: Any) -> float:
    """ISO-8601 text (naive = UTC) or epoch seconds -> epoch seconds; ValueError if neither."""
    if isinstance(value, bool):
        raise ValueError("not a time")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError("not a time")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("not a time")
    moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _fail(line: int, name: str, problem: str) -> TraceError:
    return TraceError(f"line {line}: field '{name}' {problem}")


def _str(line: int, rec: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = rec.get(name)
    if value is None:
        if required:
            raise _fail(line, name, "is missing (every call needs it)")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise _fail(line, name, "must be non-empty text")
    return value


def _bool(line: int, rec: dict[str, Any], name: str) -> bool:
    value = rec.get(name, False)
    if not isinstance(value, bool):
        raise _fail(line, name, "must be true or false")
    return value


def _history(line: int, value: Any) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(line, "history", "must be a list of {role, content} messages")
    for i, msg in enumerate(value):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            raise _fail(line, "history", f"message {i} needs role user or assistant")
        if not isinstance(msg.get("content"), str | list):
            raise _fail(line, "history", f"message {i} needs content (text or blocks)")
    return tuple(value)


def _tools(line: int, value: Any) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(t, dict) and isinstance(t.get("name"), str) for t in value
    ):
        raise _fail(line, "tools", "must be a list of tool schemas, each with a name")
    return tuple(value)


def _labels(line: int, value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not value:
        raise _fail(line, "labels", 'must map a tier to a quality 0-1, e.g. {"cheap": 0}')
    out: dict[str, float] = {}
    for tier, q in value.items():
        if isinstance(q, bool) or not isinstance(q, int | float) or not 0 <= q <= 1:
            raise _fail(line, "labels", f"value for {tier!r} must be a number from 0 to 1")
        out[str(tier)] = float(q)
    return out


def parse_call(line: int, rec: Any) -> Call:
    """Validate one trace record; TraceError names the line and the field at fault."""
    if not isinstance(rec, dict):
        raise TraceError(f"line {line}: a call must be a JSON object")
    unknown = [k for k in rec if k not in FIELDS]
    if unknown:
        raise _fail(line, unknown[0], f"is not a trace field (fields: {', '.join(FIELDS)})")
    if "time" not in rec:
        raise _fail(line, "time", "is missing (every call needs it)")
    try:
        when = parse_time(rec["time"])
    except ValueError:
        raise _fail(
            line, "time", f"{rec['time']!r} is not ISO-8601 UTC text or epoch seconds"
        ) from None
    prompt = _str(line, rec, "prompt", required=True)
    kind = _str(line, rec, "type")
    if kind is not None and kind not in QUERY_TYPES:
        raise _fail(line, "type", f"{kind!r} is not one of {', '.join(QUERY_TYPES)}")
    priority = _str(line, rec, "priority") or "normal"
    if priority not in PRIORITIES:
        raise _fail(line, "priority", f"{priority!r} is not one of {', '.join(PRIORITIES)}")
    max_tokens = rec.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise _fail(line, "max_tokens", "must be a whole number of at least 1")
    max_wait = rec.get("max_wait_s")
    if max_wait is not None and (
        isinstance(max_wait, bool) or not isinstance(max_wait, int | float) or max_wait < 0
    ):
        raise _fail(line, "max_wait_s", "must be a number of seconds (0 or more)")
    meta = rec.get("meta") or {}
    if not isinstance(meta, dict):
        raise _fail(line, "meta", "must be a JSON object")
    return Call(
        line=line,
        time=when,
        prompt=prompt or "",
        history=_history(line, rec.get("history")),
        system=_str(line, rec, "system"),
        tools=_tools(line, rec.get("tools")),
        type=kind,
        priority=priority,
        labels=_labels(line, rec.get("labels")),
        session=_str(line, rec, "session"),
        namespace=_str(line, rec, "namespace") or "default",
        defer=_bool(line, rec, "defer"),
        urgent=_bool(line, rec, "urgent"),
        max_tokens=max_tokens,
        max_wait_s=float(max_wait) if max_wait is not None else None,
        meta=meta,
    )


def load_workload(path: str | Path | None = None) -> Workload:
    """Read and validate a trace (the bundled agent day when `path` is None)."""
    src = Path(path) if path is not None else BUNDLED
    text = read_text_file(src, "workload", TraceError)
    header: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    calls: list[Call] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise TraceError(
                f"line {n}: not valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        if isinstance(rec, dict) and rec.get("kind") == "header":
            if calls or header:
                raise TraceError(f"line {n}: a header may only be the first record")
            header = rec
            defaults = _defaults(n, header.get("defaults"))
            continue
        if isinstance(rec, dict) and defaults:
            rec = {**defaults, **rec}
        calls.append(parse_call(n, rec))
    if not calls:
        raise TraceError(f"workload {src} has no calls")
    calls.sort(key=lambda c: (c.time, c.line))
    return Workload(str(src), header, calls)


def _defaults(line: int, value: Any) -> dict[str, Any]:
    """The header's `defaults`: fields every call has unless it sets its own."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TraceError(f"line {line}: header field 'defaults' must be a JSON object")
    bad = [k for k in value if k not in FIELDS or k in ("time", "prompt")]
    if bad:
        raise TraceError(f"line {line}: header field 'defaults' cannot set {bad[0]!r}")
    return value


def call_to_record(call: Call) -> dict[str, Any]:
    """The trace record of a call (defaults left out)."""
    rec: dict[str, Any] = {"time": iso(call.time), "prompt": call.prompt}
    optional = {
        "history": list(call.history),
        "system": call.system,
        "tools": list(call.tools),
        "type": call.type,
        "priority": None if call.priority == "normal" else call.priority,
        "labels": call.labels,
        "session": call.session,
        "namespace": None if call.namespace == "default" else call.namespace,
        "defer": call.defer or None,
        "urgent": call.urgent or None,
        "max_tokens": call.max_tokens,
        "max_wait_s": call.max_wait_s,
        "meta": call.meta,
    }
    rec.update({k: v for k, v in optional.items() if v})
    return rec


def write_trace(path: str | Path, header: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Write a trace atomically (a header line, then one record per line)."""
    dest = Path(path)
    lines = [json.dumps({"kind": "header", **header}, ensure_ascii=False)]
    lines += [json.dumps(rec, ensure_ascii=False) for rec in records]
    try:
        atomic_write_text(dest, "\n".join(lines) + "\n")
    except OSError as exc:
        raise InputError(f"cannot write {dest}: {exc.strerror}") from None


@dataclass(frozen=True)
class ExportResult:
    path: Path
    written: int
    no_prompt: int


def export_ledger(
    db: Any, path: str | Path, *, start: float | None = None, end: float | None = None
) -> ExportResult:
    """Write the ledger's requests as a trace to replay under another config.

    One record per request (re-asks of an escalation, the optimizer's own summary calls and
    failed calls are left out: the replay makes its own). The ledger keeps the prompt (when
    `ledger.store_prompts` is on), its type, priority, session and namespace - not the
    history, system prompt or tools, so
    a replay's prompts are shorter than the originals. Answers that came from a batch are
    marked `defer: true`. Rows without a stored prompt cannot be replayed and are counted.
    """
    # A row without a baseline is work the unoptimized system would not have done (a
    # summary the optimizer asked for itself): the replay makes its own.
    rows = Ledger(db).rows_between(
        start if start is not None else float("-inf"),
        end if end is not None else float("inf"),
        where=" AND escalated_from IS NULL AND error IS NULL AND baseline_cost > 0",
    )
    records, no_prompt = [], 0
    for row in rows:
        if not row.get("prompt"):
            no_prompt += 1
            continue
        call = Call(
            line=0,
            time=float(row["ts"]),
            prompt=row["prompt"],
            type=row["query_type"] if row["query_type"] in QUERY_TYPES else None,
            priority=row["priority"] if row["priority"] in PRIORITIES else "normal",
            session=row["session"],
            namespace=row["namespace"] or "default",
            defer=row["source"] == "batch",
            meta={"request_id": row["request_id"], "source": row["source"]},
        )
        records.append(call_to_record(call))
    header = {
        "name": "ledger-export",
        "description": "requests from a tars-opt ledger (prompts only: no history, system "
        "prompt or tools)",
        "exported_at": iso(datetime.now(UTC).timestamp()),
        "calls": len(records),
        "without_prompt": no_prompt,
    }
    write_trace(path, header, records)
    return ExportResult(Path(path), len(records), no_prompt)
