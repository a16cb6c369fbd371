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

Two more record kinds, in the Messages API's own shape, mix freely with call records
(each line's kind is read from its keys):

* A conversation record (has `messages`; the tau-bench shape): `system`, `tools`,
  `messages`, optional `id`, `time` (its first call), `model`, `max_tokens`, `controls`.
  Every assistant message is one call: its request is system + tools + the messages
  before it, its answer is that assistant message (the offline backend answers with it,
  so output is paid at its real length). Other keys (tau-bench's split, task_id, reward
  ...) are ignored; a call-record or request-record field is an error. The header's
  `defaults` may give it `system` and `tools`. Repeated tool_use ids are made unique.
  Without `time`, the calls' times come from the seeded gap model (tars_opt/sim/gaps.py,
  seed = simulate's --seed) on the header's `day` (YYYY-MM-DD), else the day of the
  file's first timed record, else 2026-12-02.
* A request record (has `request`; what `tars-opt serve` captures with gateway.capture):
  `{"time": ..., "request": {the body as the client sent it}, "controls": {...},
  "answer": [content blocks]}` with `controls` (namespace, session, priority,
  cache_mode, route, urgent, defer, max_wait_s) and `answer` optional, plus `meta`.
Both are answered at once, as the gateway answers them, unless `controls.defer` is true.
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
from tars_opt.sim.conversations import (
    REQUEST_FIELDS,
    Conversation,
    fail,
    parse_conversation,
    parse_request,
)
from tars_opt.sim.gaps import DAY, GapModel
from tars_opt.store.files import atomic_write_text, read_text_file
from tars_opt.timefmt import iso
from tars_opt.types import PRIORITIES, QUERY_TYPES, block_text

FIELDS = (
    "time", "prompt", "history", "system", "tools", "type", "priority", "labels", "session",
    "namespace", "defer", "urgent", "max_tokens", "max_wait_s", "meta",
)  # fmt: skip
DATA = Path(__file__).resolve().parent.parent / "data"
BUNDLED = DATA / "agent_day.jsonl"
# Real tool loops (a tau-bench slice, MIT: tau_airline.LICENSE) merged into the bundled day.
BUNDLED_LOOPS = DATA / "tau_airline.jsonl"


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
    # Conversation and request records: the Messages API body replayed as sent (the fields
    # above are then unused; `prompt` is the answered turn's text, for reading only), its
    # controls and the recorded answer, if any.
    body: dict[str, Any] | None = None
    controls: dict[str, Any] = field(default_factory=dict)
    answer: tuple[dict[str, Any], ...] | None = None
    conversation: str | None = None  # a conversation record's id: an agent-loop call


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

    @property
    def conversations(self) -> int:
        """How many recorded conversations (agent loops) the calls come from."""
        return len({c.conversation for c in self.calls if c.conversation is not None})


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


def _str(line: int, rec: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = rec.get(name)
    if value is None:
        if required:
            raise fail(line, name, "is missing (every call needs it)")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise fail(line, name, "must be non-empty text")
    return value


def _bool(line: int, rec: dict[str, Any], name: str) -> bool:
    value = rec.get(name, False)
    if not isinstance(value, bool):
        raise fail(line, name, "must be true or false")
    return value


def _history(line: int, value: Any) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise fail(line, "history", "must be a list of {role, content} messages")
    for i, msg in enumerate(value):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            raise fail(line, "history", f"message {i} needs role user or assistant")
        if not isinstance(msg.get("content"), str | list):
            raise fail(line, "history", f"message {i} needs content (text or blocks)")
    return tuple(value)


def _tools(line: int, value: Any) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(t, dict) and isinstance(t.get("name"), str) for t in value
    ):
        raise fail(line, "tools", "must be a list of tool schemas, each with a name")
    return tuple(value)


def _labels(line: int, value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not value:
        raise fail(line, "labels", 'must map a tier to a quality 0-1, e.g. {"cheap": 0}')
    out: dict[str, float] = {}
    for tier, q in value.items():
        if isinstance(q, bool) or not isinstance(q, int | float) or not 0 <= q <= 1:
            raise fail(line, "labels", f"value for {tier!r} must be a number from 0 to 1")
        out[str(tier)] = float(q)
    return out


def parse_call(line: int, rec: Any) -> Call:
    """Validate one trace record; TraceError names the line and the field at fault."""
    if not isinstance(rec, dict):
        raise TraceError(f"line {line}: a call must be a JSON object")
    unknown = [k for k in rec if k not in FIELDS]
    if unknown:
        raise fail(line, unknown[0], f"is not a trace field (fields: {', '.join(FIELDS)})")
    if "time" not in rec:
        raise fail(line, "time", "is missing (every call needs it)")
    when = _time(line, rec)
    prompt = _str(line, rec, "prompt", required=True)
    kind = _str(line, rec, "type")
    if kind is not None and kind not in QUERY_TYPES:
        raise fail(line, "type", f"{kind!r} is not one of {', '.join(QUERY_TYPES)}")
    priority = _str(line, rec, "priority") or "normal"
    if priority not in PRIORITIES:
        raise fail(line, "priority", f"{priority!r} is not one of {', '.join(PRIORITIES)}")
    max_tokens = rec.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise fail(line, "max_tokens", "must be a whole number of at least 1")
    max_wait = rec.get("max_wait_s")
    if max_wait is not None and (
        isinstance(max_wait, bool) or not isinstance(max_wait, int | float) or max_wait < 0
    ):
        raise fail(line, "max_wait_s", "must be a number of seconds (0 or more)")
    meta = rec.get("meta") or {}
    if not isinstance(meta, dict):
        raise fail(line, "meta", "must be a JSON object")
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


def load_workload(path: str | Path | None = None, *, seed: int = 0) -> Workload:
    """Read and validate a trace (the bundled agent day when `path` is None: the call
    records of agent_day.jsonl with the tool loops of tau_airline.jsonl).

    `seed` draws the times of conversations recorded without them (tars_opt/sim/gaps.py).
    """
    sources = [Path(path)] if path is not None else [BUNDLED, BUNDLED_LOOPS]
    header: dict[str, Any] = {}
    calls: list[Call] = []
    conversations: list[Conversation] = []
    for i, src in enumerate(sources):
        head, found, convs = _read(src)
        header = head if i == 0 else header
        calls += found
        conversations += convs
    if not calls and not conversations:
        raise TraceError(f"workload {sources[0]} has no calls")
    gaps = GapModel(seed, _gap_day(header, calls, conversations))
    for conv in conversations:
        times = gaps.call_times(conv.messages, conv.start)
        for when, (body, answer) in zip(times, conv.calls(), strict=True):
            calls.append(Call(line=conv.line, time=when, prompt=_turn(body), body=body,
                              answer=answer, controls=conv.controls,
                              conversation=conv.id))  # fmt: skip
    calls.sort(key=lambda c: (c.time, c.line))
    return Workload(str(sources[0]), header, calls)


def _gap_day(header: dict[str, Any], calls: list[Call], convs: list[Conversation]) -> float:
    """Midnight UTC of the day untimed conversations happen on (see the module docstring)."""
    day = header.get("day")
    if isinstance(day, str):
        try:
            return parse_time(day[:10] + "T00:00:00Z")
        except ValueError:
            raise TraceError(f"line 1: header field 'day' {day!r} is not YYYY-MM-DD") from None
    timed = [c.time for c in calls] + [c.start for c in convs if c.start is not None]
    return min(timed) // 86400 * 86400 if timed else DAY


def _read(src: Path) -> tuple[dict[str, Any], list[Call], list[Conversation]]:
    """One file's header, call and request records, and conversation records."""
    text = read_text_file(src, "workload", TraceError)
    header: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    calls: list[Call] = []
    conversations: list[Conversation] = []
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
            if calls or conversations or header:
                raise TraceError(f"line {n}: a header may only be the first record")
            header = rec
            defaults = _defaults(n, header.get("defaults"))
            continue
        if isinstance(rec, dict) and "request" in rec:
            calls.append(_request_call(n, rec))
        elif isinstance(rec, dict) and "messages" in rec:
            start = _time(n, rec) if "time" in rec else None
            conversations.append(
                parse_conversation(n, rec, start, defaults, refused=(*FIELDS, *REQUEST_FIELDS))
            )
        else:
            if isinstance(rec, dict) and defaults:
                rec = {**defaults, **rec}
            calls.append(parse_call(n, rec))
    return header, calls, conversations


def _time(line: int, rec: dict[str, Any]) -> float:
    try:
        return parse_time(rec["time"])
    except ValueError:
        raise fail(
            line, "time", f"{rec['time']!r} is not ISO-8601 UTC text or epoch seconds"
        ) from None


def _request_call(line: int, rec: dict[str, Any]) -> Call:
    if "time" not in rec:
        raise fail(line, "time", "is missing (every request record needs it)")
    when = _time(line, rec)
    body, controls, answer = parse_request(line, rec)
    return Call(line=line, time=when, prompt=_turn(body), body=body, controls=controls,
                answer=answer, meta=rec.get("meta") or {})  # fmt: skip


def _turn(body: dict[str, Any]) -> str:
    """The text of the turn a body asks to answer (what a prompt is to a call record)."""
    return block_text(body["messages"][-1]["content"])


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
