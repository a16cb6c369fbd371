"""The data that flows through the optimization chain."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

QueryType = Literal["research", "fact", "code", "template", "other"]
Priority = Literal["high", "normal", "low"]
Source = Literal["api", "cache", "batch", "queued"]
QUERY_TYPES: tuple[str, ...] = ("research", "fact", "code", "template", "other")
PRIORITIES: tuple[str, ...] = ("high", "normal", "low")
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

    stage: str
    action: str
    reason: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Request:
    """One prompt on its way through the chain.

    Stages return changed copies (`dataclasses.replace`). `model` and `tier` are set by
    routing (or forced by the caller); `cache_mode` is use|refresh|off (response cache);
    `removed_tokens` counts the estimated input tokens
    that pruning and tool selection took out, so the baseline can price the unpruned request.
    """

    prompt: str
    messages: tuple[dict[str, Any], ...] = ()
    system: str | tuple[dict[str, Any], ...] | None = None
    tools: tuple[dict[str, Any], ...] = ()
    query_type: str | None = None
    priority: str = "normal"
    urgent: bool = False
    model: str | None = None
    tier: str | None = None
    forced_model: bool = False
    max_tokens: int = 1024
    namespace: str = "default"
    session: str | None = None
    stream: bool = False
    request_id: str = field(default_factory=new_request_id)
    removed_tokens: int = 0
    # In the A/B holdout: sent unoptimized to measure what optimizing saves.
    holdout: bool = False
    # Response cache: "use" (look up and store), "refresh" (skip the lookup, store the
    # fresh answer), "off" (neither).
    cache_mode: str = "use"
    # Lazy loading: `defer` is the caller's word on the off-peak queue: True queue it,
    # False never queue it, None leave it to the config (low priority, budget policy).
    # `max_wait_s` is how long the caller can wait for the answer (None = the config's
    # default).
    defer: bool | None = None
    max_wait_s: float | None = None
    # A call the optimizer makes for itself (a summary): no baseline, and its whole cost
    # is charged to the strategy named here, so that strategy's saving is net of it.
    overhead_for: str | None = None
    # Text blocks sent before the prompt in the final user turn: older turns pruning keeps
    # for this prompt only. Being last, they never disturb the cached prefix.
    prompt_prefix: tuple[dict[str, Any], ...] = ()

    def api_messages(self) -> list[dict[str, Any]]:
        """The history plus the prompt as the final user turn."""
        if self.prompt_prefix:
            last: Any = [*self.prompt_prefix, {"type": "text", "text": self.prompt}]
            return [*self.messages, {"role": "user", "content": last}]
        return [*self.messages, {"role": "user", "content": self.prompt}]


@dataclass
class Prepared:
    """A request that passed every stage and is ready for the backend."""

    request: Request
    params: dict[str, Any]
    decisions: list[Decision]
    started: float  # perf_counter at the start of prepare: latency runs from here
    prepare_ms: float = 0.0


@dataclass(frozen=True)
class BackendResult:
    """What a backend returns for one message."""

    text: str
    model: str
    usage: Usage
    stop_reason: str | None
    content: tuple[dict[str, Any], ...] = ()
    api_request_id: str | None = None
    message_id: str | None = None
    # Set by backends that model time rather than spend it (offline); else measured.
    latency_ms: float | None = None


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
    source: str
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
            "usage": self.usage.to_api(),
            "usage_estimated": self.usage.estimated,
            "cost": self.cost,
            "baseline_cost": self.baseline_cost,
            "saved": self.baseline_cost - self.cost,
            "saved_by_strategy": dict(self.saved_by_strategy),
            "latency_ms": round(self.latency_ms, 1),
            "decisions": [d.to_dict() for d in self.decisions],
        }
