"""The data that flows through the optimization chain."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

QueryType = Literal["research", "fact", "code", "template", "other"]
Priority = Literal["high", "normal", "low"]
# Where an answer came from: sent now, the response cache, a Message Batch, or not yet
# (queued for the off-peak drain).
Source = Literal["api", "cache", "batch", "queued", "shadow"]
# The step of the chain a Decision records; the ledger's trace is read by these names.
StageName = Literal[
    "classify",
    "experiment",
    "cache",
    "defer",
    "prune",
    "route",
    "tools",
    "prompt_cache",
    "pricing",
    "budget",
    "escalate",
    "batch",
    "gateway",
    "shadow",
]
QUERY_TYPES: tuple[QueryType, ...] = get_args(QueryType)
PRIORITIES: tuple[Priority, ...] = get_args(Priority)
STRATEGIES: tuple[str, ...] = ("pruning", "routing", "prompt_caching", "batching", "response_cache")


def new_request_id() -> str:
    """A fresh request id: sortable enough to read, unique enough to key the ledger."""
    return "req_" + uuid.uuid4().hex[:20]


@dataclass(frozen=True)
class Usage:
    """Token counts of one call, in the API's buckets.

    `input_tokens` EXCLUDES cache reads and writes, as the API reports it; `prompt_tokens`
    is the whole prompt. `estimated` marks counts that did not come from the API.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    service_tier: str = "standard"
    estimated: bool = False

    @property
    def cache_write(self) -> int:
        return self.cache_write_5m + self.cache_write_1h

    @property
    def prompt_tokens(self) -> int:
        """Every input token of the request, cached or not."""
        return self.input_tokens + self.cache_write + self.cache_read

    def to_api(self) -> dict[str, Any]:
        """The usage object as the API names its fields."""
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_write_5m,
                "ephemeral_1h_input_tokens": self.cache_write_1h,
            },
            "output_tokens": self.output_tokens,
            "service_tier": self.service_tier,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any], *, estimated: bool = False) -> Usage:
        """The usage kept in a stored row (the ledger's and the response cache's columns)."""
        return cls(
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            cache_write_5m=row["cache_write_5m"],
            cache_write_1h=row["cache_write_1h"],
            cache_read=row["cache_read"],
            estimated=estimated,
        )

    @classmethod
    def from_api(cls, raw: Any, *, estimated: bool = False) -> Usage:
        """Read a usage object (SDK model or dict) with missing fields treated as 0.

        Without a TTL breakdown, cache writes count as 5-minute writes (the API's default).
        """
        data = raw.model_dump() if hasattr(raw, "model_dump") else raw or {}
        if not isinstance(data, dict):
            raise ValueError(f"usage is {type(data).__name__}, not an object")
        written = _count(data, "cache_creation_input_tokens")
        split = data.get("cache_creation") or {}
        if not isinstance(split, dict):
            raise ValueError(f"usage.cache_creation is {type(split).__name__}, not an object")
        w1h = _count(split, "ephemeral_1h_input_tokens")
        w5m = _count(split, "ephemeral_5m_input_tokens")
        if w1h + w5m != written:
            # Breakdown absent or inconsistent: trust the total, keep any 1h share reported.
            w1h = min(w1h, written)
            w5m = written - w1h
        return cls(
            input_tokens=_count(data, "input_tokens"),
            output_tokens=_count(data, "output_tokens"),
            cache_write_5m=w5m,
            cache_write_1h=w1h,
            cache_read=_count(data, "cache_read_input_tokens"),
            service_tier=str(data.get("service_tier") or "standard"),
            estimated=estimated,
        )


def _count(data: dict[str, Any], name: str) -> int:
    """A token count from the API's usage: missing/null is 0; anything but a whole number
    >= 0 raises ValueError naming the field (money is computed from it)."""
    value = data.get(name)
    if value is None:
        return 0
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < 0:
        raise ValueError(f"usage.{name} is {value!r}, not a token count")
    return int(value)


@dataclass(frozen=True)
class Decision:
    """What one stage did to a request, and why."""

    stage: StageName
    action: str
    reason: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Body fields a Request holds in fields of its own; every other field of a Messages API
# body travels in `extra`, unchanged. `stream` is how the backend sends, not content.
_OWN_FIELDS = ("model", "max_tokens", "messages", "system", "tools", "stream")
DEFAULT_MAX_TOKENS = 1024


def block_text(content: Any) -> str:
    """The readable text of a message's content: its text blocks joined, else the text of
    the tool results it carries (a turn that only answers tool calls)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list | tuple):
        return ""
    texts = [
        str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"
    ]
    if texts:
        return "\n".join(texts)
    results = []
    for b in content:
        if isinstance(b, dict) and b.get("type") == "tool_result":
            results.append(block_text(b.get("content", "")))
    return "\n".join(r for r in results if r)


@dataclass(frozen=True)
class Request:
    """A Messages API request on its way through the chain, plus tars-opt's controls.

    The body is held as the API names it: `messages` (the whole conversation, ending with
    the turn being answered), `system`, `tools`, `max_tokens`, and `extra` - every other
    field the caller sent (tool_choice, thinking, metadata, output_config, fields this
    version does not know ...), passed on unchanged. `client_model` is the body's model:
    the baseline savings are measured against and the ceiling routing stays under.

    Stages return changed copies (`dataclasses.replace`) and change only what they own:
    `model`/`tier` (routing), cache_control marks (prompt caching), the messages they prune,
    the tools they select. `removed_tokens` counts the estimated input tokens pruning and
    tool selection took out, so the baseline can price the request as sent.
    """

    messages: tuple[dict[str, Any], ...]
    system: str | tuple[dict[str, Any], ...] | None = None
    tools: tuple[dict[str, Any], ...] = ()
    max_tokens: int = DEFAULT_MAX_TOKENS
    extra: dict[str, Any] = field(default_factory=dict)
    client_model: str | None = None
    # The body's field names in the order the caller sent them, so a body goes out as it
    # came in (apart from what a stage changed).
    order: tuple[str, ...] = ()
    # ---- controls -------------------------------------------------------------------
    query_type: QueryType | None = None
    priority: Priority = "normal"
    urgent: bool = False
    namespace: str = "default"
    session: str | None = None
    stream: bool = False
    # Response cache: "use" (look up and store), "refresh" (skip the lookup, store the
    # fresh answer), "off" (neither).
    cache_mode: str = "use"
    # Lazy loading: `defer` is the caller's word on the off-peak queue: True queue it,
    # False never queue it, None leave it to the config (low priority, budget policy).
    # `max_wait_s` is how long the caller can wait for the answer (None = the config's
    # default).
    defer: bool | None = None
    max_wait_s: float | None = None
    # Routing off (a control): the model is the body's (or the default), not the router's.
    route: bool = True
    # A keyed hash of the API key that pays (never the key): response-cache answers are
    # kept apart per key. None: no key (the offline backend).
    key_id: str | None = None
    # The caller marked its own prefix for prompt caching: that caching is in the baseline.
    client_caching: bool = False
    # Prepare only, to show what would be sent (`context inspect`): nothing is answered,
    # queued, summarized by the API or recorded.
    dry_run: bool = False
    # ---- what the chain decided -------------------------------------------------------
    model: str | None = None
    tier: str | None = None
    forced_model: bool = False
    request_id: str = field(default_factory=new_request_id)
    removed_tokens: int = 0
    # In the A/B holdout: sent unoptimized to measure what optimizing saves.
    holdout: bool = False
    # A call the optimizer makes for itself (a summary): no baseline, and its whole cost
    # is charged to the strategy named here, so that strategy's saving is net of it.
    overhead_for: str | None = None
    # The conversation this call belongs to (see pipeline/conversations.py).
    conversation: str | None = None

    @classmethod
    def from_prompt(
        cls,
        prompt: str,
        *,
        messages: tuple[dict[str, Any], ...] | list[dict[str, Any]] = (),
        model: str | None = None,
        **fields: Any,
    ) -> Request:
        """A request for one prompt: `messages` (the history so far, if any) and the prompt
        as the final user turn. `model` forces a model (as `ask --model` does)."""
        turns = (*messages, {"role": "user", "content": prompt})
        return cls(messages=turns, model=model, **fields)

    @classmethod
    def from_body(cls, body: dict[str, Any], **controls: Any) -> Request:
        """A request for a Messages API body as a client sent it; `controls` are
        tars-opt's own (namespace, session, priority, cache_mode, ...)."""
        system = body.get("system")
        return cls(
            messages=tuple(body.get("messages") or ()),
            system=tuple(system) if isinstance(system, list) else system,
            tools=tuple(body.get("tools") or ()),
            max_tokens=int(body.get("max_tokens", DEFAULT_MAX_TOKENS)),
            extra={k: v for k, v in body.items() if k not in _OWN_FIELDS},
            client_model=body.get("model"),
            order=tuple(body),
            stream=bool(body.get("stream", False)),
            **controls,
        )

    @property
    def prompt(self) -> str:
        """The text of the turn being answered (for classifying, routing, the ledger)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return block_text(message.get("content"))
        return ""

    @property
    def history(self) -> tuple[dict[str, Any], ...]:
        """The messages before the turn being answered."""
        return self.messages[:-1]

    @property
    def ends_with_tool_result(self) -> bool:
        """True when the turn being answered hands tool results back (an agent loop)."""
        last = self.messages[-1] if self.messages else {}
        content = last.get("content")
        return isinstance(content, list | tuple) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in content
        )

    @property
    def carries_marks(self) -> bool:
        """Whether the request carries cache_control marks (the caller's own, before the
        chain runs; `client_caching` keeps that answer)."""
        return "cache_control" in self.extra or _has_marks(
            [self.tools, self.system if isinstance(self.system, tuple) else (), self.messages]
        )

    def api_messages(self) -> list[dict[str, Any]]:
        """The messages as sent."""
        return list(self.messages)

    def to_body(self) -> dict[str, Any]:
        """The Messages API body to send: the caller's fields in the caller's order, with
        what the stages changed (model, messages, system, tools) in place."""
        own: dict[str, Any] = {
            "model": self.model or self.client_model,
            "max_tokens": self.max_tokens,
            "messages": list(self.messages),
        }
        if self.system:
            own["system"] = self.system if isinstance(self.system, str) else list(self.system)
        if self.tools:
            own["tools"] = list(self.tools)
        body: dict[str, Any] = {}
        for key in self.order:
            if key in own:
                body[key] = own.pop(key)
            elif key in self.extra:
                body[key] = self.extra[key]
        body.update(own)
        for key, value in self.extra.items():
            body.setdefault(key, value)
        return body


def _has_marks(groups: list[Any]) -> bool:
    def marked(items: Any) -> bool:
        for item in items or ():
            if isinstance(item, dict):
                if "cache_control" in item:
                    return True
                content = item.get("content")
                if isinstance(content, list | tuple) and marked(content):
                    return True
        return False

    return any(marked(g) for g in groups)


@dataclass
class Prepared:
    """A request that passed every stage and is ready for the backend."""

    request: Request
    params: dict[str, Any]
    decisions: list[Decision]
    started: float  # perf_counter at the start of prepare: latency runs from here
    prepare_ms: float = 0.0
    # The model has no price: sent unoptimized, recorded with its cost unknown.
    cost_unknown: bool = False


@dataclass(frozen=True)
class BackendResult:
    """What a backend returns for one message: the API's Message, read."""

    text: str
    model: str
    usage: Usage
    stop_reason: str | None
    content: tuple[dict[str, Any], ...] = ()
    api_request_id: str | None = None
    message_id: str | None = None
    # Set by backends that model time rather than spend it (offline); else measured.
    latency_ms: float | None = None
    stop_sequence: str | None = None
    # Fields of the API's Message besides the usual ones (container, context_management,
    # ...): handed back to the caller unchanged.
    message_extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Money:
    """Actual and baseline cost of one answered request and the gap split by strategy."""

    actual: float
    baseline: float
    saved: dict[str, float]


@dataclass
class Reply:
    """The answer to a request, wherever it came from."""

    text: str
    model: str | None
    source: Source
    request_id: str
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    baseline_cost: float = 0.0
    saved_by_strategy: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0
    decisions: list[Decision] = field(default_factory=list)
    stop_reason: str | None = None
    ticket: str | None = None
    # Who answered: "anthropic", or "offline" for the placeholder backend (not real money).
    backend: str | None = None
    # The API's Message as it came: every content block (text, tool_use, thinking, server
    # tool blocks ...), its id and stop sequence, and any fields this version does not know.
    content: tuple[dict[str, Any], ...] = ()
    message_id: str | None = None
    stop_sequence: str | None = None
    message_extra: dict[str, Any] = field(default_factory=dict)
    # The model's price is unknown: the call went through unoptimized and `cost` is 0.
    cost_unknown: bool = False

    @property
    def blocks(self) -> tuple[dict[str, Any], ...]:
        """The content blocks; a reply known only by its text is one text block."""
        if self.content:
            return self.content
        return ({"type": "text", "text": self.text},) if self.text else ()

    def to_message(self) -> dict[str, Any]:
        """The answer as the API's Message object (what an SDK client reads)."""
        message: dict[str, Any] = {
            "id": self.message_id or "msg_" + self.request_id.removeprefix("req_"),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [dict(b) for b in self.blocks],
            "stop_reason": self.stop_reason,
            "stop_sequence": self.stop_sequence,
            "usage": self.usage.to_api(),
        }
        more_usage = self.message_extra.get("usage")
        if isinstance(more_usage, dict):  # usage fields the API sent beyond the buckets
            message["usage"] = {**more_usage, **message["usage"]}
        for key, value in self.message_extra.items():
            message.setdefault(key, value)
        return message

    @property
    def holdout(self) -> bool:
        """Sent unoptimized as part of the A/B holdout."""
        return any(d.stage == "experiment" and d.action == "holdout" for d in self.decisions)

    def to_dict(self) -> dict[str, Any]:
        """The shape `ask --json` prints."""
        return {
            "answer": self.text,
            "model": self.model,
            "source": self.source,
            "backend": self.backend,
            "request_id": self.request_id,
            "ticket": self.ticket,
            "holdout": self.holdout,
            "stop_reason": self.stop_reason,
            "content": [dict(b) for b in self.blocks],
            "usage": self.usage.to_api(),
            "usage_estimated": self.usage.estimated,
            "cost": self.cost,
            "cost_unknown": self.cost_unknown,
            "baseline_cost": self.baseline_cost,
            "saved": self.baseline_cost - self.cost,
            "saved_by_strategy": dict(self.saved_by_strategy),
            "latency_ms": round(self.latency_ms, 1),
            "decisions": [d.to_dict() for d in self.decisions],
        }
