"""performance-config.yaml as pydantic models: every key, its default and its checks.

The models are the one place a default is written; the shipped YAML documents them and a
test keeps the two equal. Loading files and layers is `tars_opt.config.loader`.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tars_opt.config.paths import default_data_dir
from tars_opt.types import QUERY_TYPES

_QUERY_TYPES: tuple[str, ...] = QUERY_TYPES


class _Strict(BaseModel):
    # Unknown keys are errors: a typo must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ApiConfig(_Strict):
    key_env: str = "ANTHROPIC_API_KEY"
    base_url: str | None = None
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)


class ModelsConfig(_Strict):
    tiers: dict[str, str] = Field(
        default_factory=lambda: {"cheap": "claude-haiku-5-5", "strong": "claude-sonnet-5-5"}
    )
    default_tier: str = "strong"
    baseline: str = "claude-sonnet-5-5"
    max_tokens: int = Field(1024, ge=1, le=128_000)

    @field_validator("tiers")
    @classmethod
    def _tiers_not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("at least one tier is needed, e.g. {strong: claude-sonnet-5-5}")
        return value

    @model_validator(mode="after")
    def _default_tier_known(self) -> ModelsConfig:
        if self.default_tier not in self.tiers:
            raise ValueError(
                f"default_tier {self.default_tier!r} is not one of the tiers {sorted(self.tiers)}"
            )
        return self


class TierPrice(_Strict):
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write_5m: float = Field(ge=0)
    cache_write_1h: float = Field(ge=0)
    cache_read: float = Field(ge=0)


class ModelPriceConfig(TierPrice):
    # Some models charge the whole request at a higher rate once the prompt passes a size.
    long_context_above: int | None = Field(None, gt=0)
    long_context: TierPrice | None = None
    source: str = ""


def _price(
    input: float,
    output: float,
    cache_write_5m: float,
    cache_write_1h: float,
    cache_read: float,
    source: str,
    long_context_above: int | None = None,
    long_context: tuple[float, float, float, float, float] | None = None,
) -> ModelPriceConfig:
    long = None
    if long_context is not None:
        fields = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
        long = TierPrice(**dict(zip(fields, long_context, strict=True)))
    return ModelPriceConfig(
        input=input,
        output=output,
        cache_write_5m=cache_write_5m,
        cache_write_1h=cache_write_1h,
        cache_read=cache_read,
        long_context_above=long_context_above,
        long_context=long,
        source=source,
    )


def _default_prices() -> dict[str, ModelPriceConfig]:
    # USD per million tokens as of PricingConfig.as_of: input, output, 5-minute and 1-hour
    # cache writes, cache reads.
    return {
        "claude-haiku-5-5": _price(
            0.10,
            0.50,
            0.125,
            0.20,
            0.01,
            "model page",
            long_context_above=100_000,
            long_context=(0.50, 2.50, 0.625, 1.00, 0.05),
        ),
        # Sonnet 5.5's cache reads: a cut to 0.10 is reported but not confirmed; the
        # confirmed 0.20 never overstates savings.
        "claude-sonnet-5-5": _price(2.0, 10.0, 2.50, 4.0, 0.20, "model page"),
        "claude-opus-5-5": _price(4.0, 20.0, 5.0, 8.0, 0.20, "model page"),
        "claude-haiku-4-5": _price(1.0, 5.0, 1.25, 2.0, 0.10, "pricing page"),
        "claude-sonnet-4-5": _price(
            3.0,
            15.0,
            3.75,
            6.0,
            0.30,
            "pricing page (end of life 2026-11-30)",
            long_context_above=200_000,
            long_context=(6.0, 22.50, 7.50, 12.0, 0.60),
        ),
        "claude-sonnet-4-6": _price(3.0, 15.0, 3.75, 6.0, 0.30, "pricing page"),
        **{
            model: _price(5.0, 25.0, 6.25, 10.0, 0.50, "pricing page")
            for model in (
                "claude-opus-4-5",
                "claude-opus-4-6",
                "claude-opus-4-7",
                "claude-opus-4-8",
                "claude-opus-5",
            )
        },
    }


class PricingConfig(_Strict):
    as_of: date = date(2026, 11, 21)
    batch_discount: float = Field(0.5, ge=0, lt=1)
    models: dict[str, ModelPriceConfig] = Field(default_factory=_default_prices)


class BudgetConfig(_Strict):
    monthly_usd: float = Field(200.0, gt=0)
    # Shares of the monthly budget that raise an alert, once each per month.
    alert_at: list[float] = Field(default_factory=lambda: [0.5, 0.8, 1.0])
    # At 100%: warn (alert, answer anyway), defer (queue deferrable work; from
    # defer.budget_threshold), block (refuse non-urgent requests, queue nothing).
    policy: Literal["warn", "defer", "block"] = "warn"
    # A reservation left by a process that died stops counting after this long.
    reservation_ttl_s: float = Field(900.0, gt=0)

    @field_validator("alert_at")
    @classmethod
    def _shares(cls, value: list[float]) -> list[float]:
        if any(not 0 < v <= 10 for v in value):
            raise ValueError("alert_at holds shares of the budget such as 0.5, 0.8, 1.0")
        return sorted(set(value))


class AlertsConfig(_Strict):
    # POST each alert as JSON ({"text": ...}, Slack-compatible) to this URL; null = off.
    webhook_url: str | None = None
    # Run this command per alert (no shell), the alert as JSON on stdin; null = off.
    command: str | None = None
    timeout_s: float = Field(5.0, gt=0, le=60)


class RegressionConfig(_Strict):
    warning: float = Field(0.10, gt=0)
    critical: float = Field(0.25, gt=0)
    # Fewer calls than this in a week: too few to call a change a regression.
    min_calls: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> RegressionConfig:
        if self.critical < self.warning:
            raise ValueError("critical must be at least warning")
        return self


class BaselineCaptureConfig(_Strict):
    # `baseline capture` refuses (unless --force) a period with calls on fewer days than this,
    min_days: int = Field(3, ge=1)
    # or one that was already optimized: more than these shares of model calls on the
    # cheapest tier, of requests answered by the response cache, or deferred.
    max_cheap_share: float = Field(0.10, ge=0, le=1)
    max_cache_hit_rate: float = Field(0.05, ge=0, le=1)
    max_deferred_share: float = Field(0.05, ge=0, le=1)


class BaselineConfig(_Strict):
    daily_cost_usd: float = Field(8.50, ge=0)
    calls_per_day: float = Field(234, ge=0)
    tokens_per_day: float = Field(850_000, ge=0)
    cheap_share: float = Field(0.0, ge=0, le=1)
    cache_hit_rate: float = Field(0.0, ge=0, le=1)
    batch_share: float = Field(0.0, ge=0, le=1)
    latency_s: float = Field(2.3, ge=0)
    error_rate: float = Field(0.02, ge=0, le=1)
    source: str = "plan: measured 2026-02-11..13 (100% Sonnet, no cache)"
    capture: BaselineCaptureConfig = Field(default_factory=BaselineCaptureConfig)


class PhaseTargets(_Strict):
    daily_cost_usd: float | None = Field(None, ge=0)
    calls_per_day: float | None = Field(None, ge=0)
    tokens_per_day: float | None = Field(None, ge=0)
    cheap_share: float | None = Field(None, ge=0, le=1)
    cache_hit_rate: float | None = Field(None, ge=0, le=1)
    batch_share: float | None = Field(None, ge=0, le=1)
    latency_s: float | None = Field(None, ge=0)
    error_rate: float | None = Field(None, ge=0, le=1)


class PhaseConfig(_Strict):
    name: str
    # How long the phase lasts; it starts the day after the phase before it ends (the first
    # one on `phases_start`).
    days: int = Field(7, ge=1)
    # Fixed dates instead (UTC, inclusive); `start` alone lasts `days`.
    start: date | None = None
    end: date | None = None
    targets: PhaseTargets = Field(default_factory=PhaseTargets)

    @model_validator(mode="after")
    def _dates(self) -> PhaseConfig:
        if self.end is not None and self.start is None:
            raise ValueError(
                f"phase {self.name!r} has an end but no start: give both, or neither to "
                "count `days` from phases_start"
            )
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(f"phase {self.name!r} ends before it starts")
        return self


def plan_phases() -> list[PhaseConfig]:
    """The plan's rollout, the default `phases:`: two weeks of quick wins and pruning, then
    two of deferral, with targets stated for the plan's own system (its `baseline:`)."""
    return [
        PhaseConfig(
            name="Quick wins: routing + caching",
            days=7,
            targets=PhaseTargets(
                daily_cost_usd=6.43,
                calls_per_day=212,
                tokens_per_day=729_000,
                cheap_share=0.45,
                cache_hit_rate=0.18,
                latency_s=2.1,
            ),
        ),
        PhaseConfig(
            name="Context: pruning + batching",
            days=7,
            targets=PhaseTargets(
                daily_cost_usd=5.73,
                calls_per_day=198,
                tokens_per_day=637_000,
                cache_hit_rate=0.20,
                batch_share=0.18,
                latency_s=1.95,
            ),
        ),
        PhaseConfig(
            name="Lazy loading + fine-tuning",
            days=14,
            targets=PhaseTargets(
                daily_cost_usd=4.97,
                calls_per_day=180,
                tokens_per_day=530_000,
                cheap_share=0.50,
                cache_hit_rate=0.25,
                batch_share=0.25,
                latency_s=1.5,
                error_rate=0.018,
            ),
        ),
    ]


class HeartbeatConfig(_Strict):
    # Queued tasks waiting longer than this are stuck.
    stuck_after_h: float = Field(24.0, gt=0)
    # More waiting tasks than this is a backlog.
    max_backlog: int = Field(500, ge=1)
    # The window the heartbeat's rates are measured over.
    window_h: float = Field(24.0, gt=0)


class ExperimentConfig(_Strict):
    # Share of eligible requests sent unoptimized (baseline model, no stages) to measure
    # the real saving; off (0) by default, as each held-out call costs the user money.
    holdout: float = Field(0.0, ge=0, le=1.0)


class ReportsConfig(_Strict):
    # Where `tars-opt report` writes (relative paths: to the current directory).
    dir: Path = Path("reports")


Level = Literal["none", "light", "medium", "aggressive"]
LEVEL_ORDER: tuple[str, ...] = ("none", "light", "medium", "aggressive")


def _levels_by_query_type() -> dict[str, Level]:
    return {"code": "light", "research": "light", "template": "aggressive"}


def _levels_by_priority() -> dict[str, Level]:
    return {"high": "light"}


class PruneLevelConfig(_Strict):
    # Messages kept verbatim at the end of the history (whole turns: a tool_use and its
    # tool_result are never split, so slightly more may be kept).
    keep_last: int = Field(ge=1)
    # Replace what is not kept by a summary made by the cheap tier (else it is dropped).
    summarize: bool


class PromptCacheConfig(_Strict):
    """Prompt-cache breakpoints on the stable prefix (`prompt_cache` decisions)."""

    enabled: bool = True
    # auto: by when the prefix and the conversation were last sent (prompt_cache.py).
    ttl_interactive: Literal["5m", "1h", "auto"] = "auto"
    ttl_deferred: Literal["5m", "1h"] = "1h"
    # Smallest cacheable prefix per model family (first family named in the model id
    # wins); shorter prefixes are not marked, as the API would ignore them anyway.
    min_tokens: dict[str, int] = Field(
        default_factory=lambda: {
            "haiku": 4096,
            "sonnet": 1024,
            "opus": 4096,
            "default": 4096,
        }
    )

    def minimum(self, model: str) -> int:
        """The smallest cacheable prefix for `model`."""
        for family, tokens in self.min_tokens.items():
            if family != "default" and family in model:
                return tokens
        return self.min_tokens.get("default", 4096)


class ClearToolResultsConfig(_Strict):
    """Tool-result clearing for long agent loops (context/clearing.py)."""

    enabled: bool = True
    # Estimated input tokens of a request above which old tool results are cleared.
    trigger_tokens: int = Field(50_000, ge=1)
    # Old results are cleared in chunks of at least this many tokens, so the cached prefix
    # is rewritten once per chunk rather than on every call.
    clear_at_least_tokens: int = Field(10_000, ge=0)
    # The results of the last this-many tool uses are never cleared.
    keep_tool_uses: int = Field(3, ge=0)
    # Tools whose results are never cleared.
    exclude_tools: list[str] = Field(default_factory=list)
    # Also replace the inputs of the cleared tool uses by {}.
    clear_tool_inputs: bool = False
    # The placeholder lists the identifiers the result held (tokens with a digit: ids,
    # codes, flight numbers, prices), which the agent may quote later and cannot guess.
    keep_identifiers: bool = True
    # local: tars-opt rewrites the request (any model, saving attributed exactly);
    # api: the API's context editing (context_management clear_tool_uses_20250919, beta)
    # for models in api_models, local for the others.
    mode: Literal["local", "api"] = "local"
    api_models: list[str] = Field(default_factory=list)


class PruneConfig(_Strict):
    """The prune stage: long histories cut to a level, summaries, relevant turns kept."""

    enabled: bool = True
    # History tokens (estimated) above which pruning starts; below it nothing is pruned.
    budget_tokens: int = Field(4000, ge=100)
    levels: dict[str, PruneLevelConfig] = Field(
        default_factory=lambda: {
            "light": PruneLevelConfig(keep_last=20, summarize=False),
            "medium": PruneLevelConfig(keep_last=10, summarize=True),
            "aggressive": PruneLevelConfig(keep_last=3, summarize=True),
        }
    )
    default_level: Level = "medium"
    by_query_type: dict[str, Level] = Field(default_factory=_levels_by_query_type)
    by_priority: dict[str, Level] = Field(default_factory=_levels_by_priority)
    # Budget pressure: when the pruned history is still over budget_tokens x this, go one
    # level further (light -> medium -> aggressive).
    escalate_over: float = Field(1.5, ge=1.0)
    keep_first_user: bool = True
    # Older turns most relevant to the prompt, kept verbatim: at most this many, within
    # relevant_tokens, scoring at least relevant_min_score.
    relevant_top_k: int = Field(3, ge=0)
    relevant_tokens: int = Field(2000, ge=0)
    relevant_min_score: float = Field(0.3, ge=0.0, le=1.0)
    semantic: bool = True
    # Embedding vectors kept in the database (hash and vector, never the text) so a new
    # process does not embed the history again; shared with tool selection. 0 = memory only.
    vector_cache_rows: int = Field(50_000, ge=0)
    # Turns with no stored vector yet are scored by word overlap this once and embedded
    # while the API call is in flight (false: embed them before sending; deferred work
    # always embeds first, it is not waited on).
    embed_in_background: bool = True
    # The summarized part only moves in steps of this many messages, so the summary and
    # the cached prefix stay the same for several turns.
    summary_step: int = Field(8, ge=2)
    summary_tier: str = "cheap"
    summary_max_tokens: int = Field(400, ge=50, le=4000)
    # estimate: local estimates; api: the backend's count_tokens (cached, rate-limited).
    count_tokens: Literal["estimate", "api"] = "estimate"
    count_tokens_per_minute: int = Field(50, ge=1)
    clear_tool_results: ClearToolResultsConfig = Field(default_factory=ClearToolResultsConfig)

    @field_validator("levels")
    @classmethod
    def _all_levels(cls, value: dict[str, PruneLevelConfig]) -> dict[str, PruneLevelConfig]:
        missing = {"light", "medium", "aggressive"} - set(value)
        if missing:
            raise ValueError(
                f"levels needs light, medium and aggressive; missing {sorted(missing)}"
            )
        return value


class ToolsConfig(_Strict):
    enabled: bool = True
    max_per_request: int = Field(10, ge=1)
    # select: send only the top tools; tool_search: send all, the rest with defer_loading
    # and the API's BM25 tool search tool, so the model can still find them.
    mode: Literal["select", "tool_search"] = "select"
    semantic: bool = True
    # Within a session, keep the previous selection while it still holds the tools in use
    # and the sticky_top best scored ones (a stable tool list keeps the prompt cache).
    sticky: bool = True
    sticky_top: int = Field(3, ge=1)


class GatewayConfig(_Strict):
    """`tars-opt serve`: the HTTP front door that speaks the Messages API."""

    host: str = "127.0.0.1"
    port: int = Field(8788, ge=0, le=65535)
    # Where requests go on; null = the real API (https://api.anthropic.com).
    upstream: str | None = None
    # Forward every request unchanged and record what the stages would have saved.
    shadow: bool = False
    # Send the gateway's own key (api.key_env) for clients that send none. Off: such a
    # request goes upstream without a key and gets the API's 401.
    use_own_key: bool = False
    # The token clients present as their API key (required to bind beyond loopback):
    # read from this environment variable, or from token_file; never a command-line flag.
    token_env: str = "TARS_OPT_GATEWAY_TOKEN"
    token_file: Path | None = None
    # Host names clients may use besides the bound one and loopback (DNS rebinding guard).
    allowed_hosts: list[str] = Field(default_factory=list)
    # Browser origins allowed to call (a request with any other Origin header is refused).
    allowed_origins: list[str] = Field(default_factory=list)
    # A stage or the store failing (or busier than optimizer_timeout_s): true sends the
    # request upstream unoptimized and records it when the store is back; false refuses.
    fail_open: bool = True
    optimizer_timeout_s: float = Field(2.0, gt=0)
    # Upstream timeouts: connecting, and waiting for the next bytes of an answer.
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(600.0, gt=0)
    # Append each /v1/messages request (body, time, controls, answer; never a key or auth
    # header) to <data_dir>/capture/<UTC date>.jsonl, replayable by `simulate --workload`.
    capture: bool = False


class LedgerConfig(_Strict):
    store_prompts: bool = True
    # Whether the offline backend's rows count in spend, budget and savings figures.
    include_offline: bool | Literal["auto"] = "auto"


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


class DeferConfig(_Strict):
    """Lazy loading: the defer stage, the off-peak window and the drain of the queue."""

    enabled: bool = True
    window: str = "00:00-06:00"
    min_wait_minutes: float = Field(5.0, ge=0)
    default_max_wait_hours: float = Field(24.0, gt=0)
    defer_low_priority: bool = False
    # With budget.policy defer: the share of budget.monthly_usd from which deferrable work
    # is queued. Under warn and block the budget never queues anything.
    budget_threshold: float = Field(1.0, ge=0)
    deadline_fallback: Literal["sync", "queue"] = "sync"
    expected_turnaround_minutes: float = Field(60.0, ge=0)
    max_retries: int = Field(2, ge=0, le=20)
    max_batch_requests: int = Field(100_000, ge=1, le=100_000)
    max_batch_bytes: int = Field(256_000_000, ge=1_000, le=256_000_000)
    claim_limit: int = Field(100_000, ge=1)
    wave_size: int = Field(2_000, ge=1)
    cache_shared_prefix: bool = True
    shared_prefix_min_tokens: int = Field(1024, ge=0)
    claim_lease_minutes: float = Field(30.0, gt=0)
    poll_seconds: float = Field(30.0, gt=0)
    recover_list_limit: int = Field(1000, ge=1)
    drain_every_minutes: int = Field(15, ge=1, le=59)
    collect_every_minutes: int = Field(10, ge=1)
    # `serve` runs the drain's jobs itself; false when another process drains.
    serve_drains: bool = True

    @field_validator("window")
    @classmethod
    def _window_format(cls, value: str) -> str:
        m = _HHMM.match(value.strip())
        if not m:
            raise ValueError(
                f"window {value!r} must look like HH:MM-HH:MM in UTC, e.g. 00:00-06:00"
            )
        if m.group(1, 2) == m.group(3, 4):
            raise ValueError(f"window {value!r} is empty: start and end must differ")
        return value.strip()


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


# Prompts whose answer depends on when they are asked (case-insensitive regexes).
DEFAULT_TIME_SENSITIVE: tuple[str, ...] = (
    r"\b(today|tonight|tomorrow|yesterday|now|nowadays|currently|current|latest|newest|recent|"
    r"recently|upcoming|breaking|real[- ]time|so far|as of|this (morning|afternoon|evening|"
    r"week|weekend|month|quarter|year|season)|(next|last) (night|week|month|quarter|year))\b",
    r"\b(price|prices|cost of|stock|stocks|share price|exchange rate|weather|forecast|news|"
    r"headlines|score|scores|standings|trending|election results?|poll|polls)\b",
    r"\bwhat (time|day|date) is it\b",
    r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}(/\d{2,4})?\b",
    r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.? \d{1,2}(st|nd|rd|th)?\b",
)


def _semantic_thresholds() -> dict[str, float | None]:
    return dict.fromkeys(_QUERY_TYPES, 0.9936)


class CacheSemanticConfig(_Strict):
    enabled: bool = True
    # Types that may be answered by a similar (not identical) earlier prompt.
    types: list[str] = Field(default_factory=lambda: ["research", "fact", "template", "other"])
    # Lowest cosine similarity for a semantic hit, per type; null = no semantic hits.
    thresholds: dict[str, float | None] = Field(default_factory=_semantic_thresholds)
    # The false-hit rate `cache calibrate` keeps each threshold within.
    target_false_hit_rate: dict[str, float] = Field(
        default_factory=lambda: dict.fromkeys(_QUERY_TYPES, 0.01)
    )
    guards: bool = True
    candidates: int = Field(5, ge=1, le=50)
    # History is fixed context (few-shot examples): same-history prompts may match.
    fixed_history: bool = False

    @field_validator("types")
    @classmethod
    def _types_known(cls, value: list[str]) -> list[str]:
        bad = [t for t in value if t not in _QUERY_TYPES]
        if bad:
            raise ValueError(f"unknown query type {bad[0]!r}: use {', '.join(_QUERY_TYPES)}")
        return value

    @field_validator("thresholds")
    @classmethod
    def _thresholds_valid(cls, value: dict[str, float | None]) -> dict[str, float | None]:
        for kind, threshold in value.items():
            if kind not in _QUERY_TYPES:
                raise ValueError(f"unknown query type {kind!r}: use {', '.join(_QUERY_TYPES)}")
            if threshold is not None and not 0.0 < threshold <= 1.0:
                raise ValueError(f"threshold for {kind} must be in (0, 1] or null, not {threshold}")
        return value

    @field_validator("target_false_hit_rate")
    @classmethod
    def _rates_valid(cls, value: dict[str, float]) -> dict[str, float]:
        for kind, rate in value.items():
            if kind not in _QUERY_TYPES:
                raise ValueError(f"unknown query type {kind!r}: use {', '.join(_QUERY_TYPES)}")
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"target false-hit rate for {kind} must be in [0, 1), not {rate}")
        return value


class CacheConfig(_Strict):
    enabled: bool = True
    ttl_s: dict[str, int] = Field(
        default_factory=lambda: {
            "research": 3600,
            "fact": 7200,
            "code": 86400,
            "template": 86400,
            "other": 3600,
        }
    )
    time_sensitive_ttl_s: int = Field(300, ge=0)
    time_sensitive_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_TIME_SENSITIVE))
    max_entries: int = Field(50_000, ge=1)
    max_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    semantic: CacheSemanticConfig = Field(default_factory=CacheSemanticConfig)

    @field_validator("ttl_s")
    @classmethod
    def _ttl_valid(cls, value: dict[str, int]) -> dict[str, int]:
        for kind, ttl in value.items():
            if kind not in _QUERY_TYPES:
                raise ValueError(f"unknown query type {kind!r}: use {', '.join(_QUERY_TYPES)}")
            if ttl < 0:
                raise ValueError(f"ttl for {kind} must be 0 or more seconds, not {ttl}")
        return value

    @field_validator("time_sensitive_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a valid regex: {exc}") from None
        return value

    def ttl_for(self, query_type: str | None) -> int:
        """Seconds an answer of this type stays fresh (unlisted types use `other`)."""
        return self.ttl_s.get(query_type or "other", self.ttl_s.get("other", 3600))


# --- routing ---------------------------------------------------------------------------

Trigger = Literal["max_tokens", "empty", "refusal", "check"]
ESCALATION_TRIGGERS: tuple[Trigger, ...] = ("max_tokens", "empty", "refusal", "check")


class HeuristicWeights(_Strict):
    """Points each factor adds at its full value; they sum to the score's 100."""

    words: float = Field(15, ge=0)
    questions: float = Field(10, ge=0)
    technical: float = Field(25, ge=0)
    reasoning: float = Field(30, ge=0)
    context: float = Field(10, ge=0)
    output: float = Field(10, ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> HeuristicWeights:
        if sum(self.model_dump().values()) <= 0:
            raise ValueError("at least one weight must be above 0")
        return self


class HeuristicRouterConfig(_Strict):
    weights: HeuristicWeights = Field(default_factory=HeuristicWeights)
    # Score bands named in --explain: simple < 25 <= straightforward < 50 <= complex < 75.
    levels: list[float] = Field(default_factory=lambda: [25.0, 50.0, 75.0])
    thresholds: dict[str, float] = Field(default_factory=lambda: {"strong": 50.0})

    @field_validator("levels")
    @classmethod
    def _levels_sorted(cls, value: list[float]) -> list[float]:
        if len(value) != 3 or sorted(value) != value or not all(0 <= v <= 100 for v in value):
            raise ValueError("levels must be three ascending scores in 0-100, e.g. [25, 50, 75]")
        return value


class LearnedRouterConfig(_Strict):
    # null = the router that ships with tars-opt; else a file made by `tars-opt router train`.
    path: Path | None = None
    thresholds: dict[str, float] = Field(default_factory=lambda: {"strong": 50.0})


class EscalationConfig(_Strict):
    enabled: bool = True
    triggers: list[Trigger] = Field(default_factory=lambda: list(ESCALATION_TRIGGERS))
    # An answer whose start matches one of these (case-insensitive regex) is a refusal: the
    # response cache never stores it, and a routed cheap answer is re-asked (see refused).
    refusal_patterns: list[str] = Field(
        default_factory=lambda: [
            r"^\s*(i'?m sorry|i am sorry|i apologi[sz]e|sorry)\b[^.\n]{0,80}"
            r"\b(can'?t|cannot|can not|unable|won'?t|not able)\b",
            r"^\s*i('m| am) (unable|not able) to (help|assist|provide|do|comply|answer)",
            r"^\s*i (can'?t|cannot|can not|won'?t) (help|assist|provide|do|comply|answer)",
            r"^\s*as an ai\b",
        ]
    )
    # The `check` trigger: a regex every cheap answer must match (null = no check).
    require_pattern: str | None = None

    def refused(self, text: str) -> bool:
        """Whether an answer opens as a refusal (one of refusal_patterns in its first 300
        characters): the one detector the response cache and escalation share."""
        head = text.strip()[:300]
        return any(re.search(p, head, re.IGNORECASE) for p in self.refusal_patterns)

    @field_validator("refusal_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            _compile(pattern)
        return value

    @field_validator("require_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            _compile(value)
        return value


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"{pattern!r} is not a valid regular expression ({exc})") from None


class RoutingConfig(_Strict):
    enabled: bool = True
    router: Literal["heuristic", "learned"] = "learned"
    # The one knob: share of calls to send above the cheapest tier. Calibration on labelled
    # data turns it into the router's threshold; null = use the thresholds below.
    strong_share: float | None = Field(0.6, ge=0, le=1)
    # Or: the share of the strong tier's quality gain to keep (0-1); the cheapest threshold
    # that reaches it on the calibration data. Only one of the two may be set.
    quality_target: float | None = Field(None, ge=0, le=1)
    heuristic: HeuristicRouterConfig = Field(default_factory=HeuristicRouterConfig)
    learned: LearnedRouterConfig = Field(default_factory=LearnedRouterConfig)
    # Query types and keywords (case-insensitive substrings) always sent to a tier.
    pinned_types: dict[str, str] = Field(default_factory=dict)
    pinned_keywords: dict[str, str] = Field(default_factory=dict)
    # Requests that carry tools go at least to this tier (null = no minimum).
    tools_min_tier: str | None = None
    # Route tool-using conversations (agent loops) too. Off: they go to the client's model
    # (or the default tier): no labelled data says a cheaper model does agent work as well.
    tool_conversations: bool = False
    # The model a request names is the ceiling: routing picks no dearer one unless true.
    above_client_model: bool = False
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)

    @model_validator(mode="before")
    @classmethod
    def _target_replaces_default_share(cls, data: Any) -> Any:
        # quality_target given without strong_share replaces the default share instead of
        # clashing with it; giving both stays an error.
        given = isinstance(data, dict) and data.get("quality_target") is not None
        if given and "strong_share" not in data:
            return {**data, "strong_share": None}
        return data

    @model_validator(mode="after")
    def _one_knob(self) -> RoutingConfig:
        if self.strong_share is not None and self.quality_target is not None:
            raise ValueError("set strong_share or quality_target, not both")
        return self

    def tier_names(self) -> dict[str, str]:
        """Every tier name this section refers to, by the key that names it."""
        named = {f"routing.heuristic.thresholds.{t}": t for t in self.heuristic.thresholds}
        named.update({f"routing.learned.thresholds.{t}": t for t in self.learned.thresholds})
        named.update({f"routing.pinned_types.{k}": t for k, t in self.pinned_types.items()})
        named.update({f"routing.pinned_keywords.{k}": t for k, t in self.pinned_keywords.items()})
        if self.tools_min_tier is not None:
            named["routing.tools_min_tier"] = self.tools_min_tier
        return named


class Config(_Strict):
    """The whole of performance-config.yaml."""

    version: Literal[1] = 1
    data_dir: Path | None = None
    # An SQLite file, or a `postgresql://` URL for a database a team shares.
    database: str | None = None
    # When a database server cannot be reached: fail (one line, exit 1), or spool (answer
    # from a local file in the data dir, copied into the server once it is back).
    database_unreachable: Literal["fail", "spool"] = "fail"
    backend: Literal["anthropic", "offline"] = "anthropic"
    # A modular system prompt for `ask` (sections with conditions); --system-file overrides.
    system_file: Path | None = None
    api: ApiConfig = Field(default_factory=ApiConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    pricing: PricingConfig = Field(default_factory=PricingConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    prune: PruneConfig = Field(default_factory=PruneConfig)
    prompt_cache: PromptCacheConfig = Field(default_factory=PromptCacheConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    regression: RegressionConfig = Field(default_factory=RegressionConfig)
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    phases: list[PhaseConfig] = Field(default_factory=plan_phases)
    # The day phase 1 starts. auto: the day after the captured baseline in use, else the
    # day of the first call in the ledger (when tracking started).
    phases_start: date | Literal["auto"] = "auto"
    heartbeat: HeartbeatConfig = Field(default_factory=HeartbeatConfig)
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    reports: ReportsConfig = Field(default_factory=ReportsConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    defer: DeferConfig = Field(default_factory=DeferConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)

    @field_validator("database", mode="before")
    @classmethod
    def _database_text(cls, value: Any) -> Any:
        # A path given as a Path (the library's callers) is the same file as its text.
        return str(value) if isinstance(value, Path) else value

    @model_validator(mode="after")
    def _models_priced(self) -> Config:
        # A model without a price would be costed at $0: refuse the config instead.
        priced = set(self.pricing.models)
        wanted = {f"models.tiers.{t}": m for t, m in self.models.tiers.items()}
        wanted["models.baseline"] = self.models.baseline
        if self.prune.summary_tier not in self.models.tiers:
            raise ValueError(
                f"prune.summary_tier {self.prune.summary_tier!r} is not one of the tiers "
                f"{sorted(self.models.tiers)}"
            )
        for key, model in wanted.items():
            if model not in priced and re.sub(r"-\d{8}$", "", model) not in priced:
                raise ValueError(
                    f"{key} is {model!r}, which has no price: add it under pricing.models"
                )
        return self

    @model_validator(mode="after")
    def _routing_tiers_known(self) -> Config:
        tiers = list(self.models.tiers)
        for key, tier in self.routing.tier_names().items():
            if tier not in tiers:
                raise ValueError(f"{key} names tier {tier!r}, which is not one of {tiers}")
        for name in ("heuristic", "learned"):
            if tiers[0] in getattr(self.routing, name).thresholds:
                raise ValueError(
                    f"routing.{name}.thresholds.{tiers[0]}: the cheapest tier needs no "
                    "threshold (it takes every score below the others): remove it"
                )
        for qtype in self.routing.pinned_types:
            if qtype not in QUERY_TYPES:
                raise ValueError(
                    f"routing.pinned_types.{qtype}: not a query type, use one of {QUERY_TYPES}"
                )
        return self

    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir).expanduser() if self.data_dir else default_data_dir()

    def resolved_database(self) -> Path | str:
        """The SQLite file to use, or the server URL as given."""
        if self.database:
            if self.database.startswith(("postgresql://", "postgres://")):
                return self.database
            return Path(self.database).expanduser()
        return self.resolved_data_dir() / "tars-opt.db"

    def counts_offline(self) -> bool:
        """Whether figures count the offline backend's ledger rows: as ledger.include_offline
        says; `auto` counts them only when this run's backend is offline itself (a trial
        or `simulate`), so placeholder calls never inflate the real budget or savings."""
        wanted = self.ledger.include_offline
        return self.backend == "offline" if wanted == "auto" else wanted

    def tier_model(self, tier: str) -> str:
        return self.models.tiers[tier]
