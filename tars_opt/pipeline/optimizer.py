"""The Optimizer: runs a request through the stages, the backend and the ledger.

`prepare` runs the stages until one answers (a cache hit, a deferral) or all have acted;
`finish` prices the result and writes the ledger row. `ask` is prepare, send, finish. The
drain uses the same prepare/finish, so deferred work is optimized and accounted for alike.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from tars_opt.accounting.alerts import Alerter
from tars_opt.accounting.ledger import CallRecord, Ledger
from tars_opt.accounting.pricing import PriceBook
from tars_opt.backends import Backend
from tars_opt.config.schema import Config
from tars_opt.context.inspect import inspect_report
from tars_opt.defer.queue import queue_budget
from tars_opt.errors import BackendError, BudgetExceeded, MissingApiKey
from tars_opt.pipeline.classify import guess_query_type
from tars_opt.pipeline.conversations import Conversations
from tars_opt.pipeline.holdout import holdout_exclusion, in_holdout
from tars_opt.pipeline.keys import KeyIds
from tars_opt.store.conversation_state import ConversationState
from tars_opt.store.database import Database
from tars_opt.types import (
    STRATEGIES,
    BackendResult,
    Decision,
    Money,
    Prepared,
    Reply,
    Request,
    Source,
)

if TYPE_CHECKING:
    from tars_opt.context.tools import ToolStage
    from tars_opt.types import Source

log = logging.getLogger("tars_opt.chain")


class Stage(Protocol):
    """One optimization step: change the request (and say why) or answer it.

    A stage may also define hooks the Optimizer calls when they exist:
    `before_send(prepared)` - work that can overlap the API call (embeddings);
    `after(prepared, reply)` - see the answer (the response cache stores it);
    `retry(prepared, result)` - a request to send instead of this answer, and why
    (escalation to a stronger tier); the stages after it prepare that request anew.
    A stage with `chooses_model = True` is skipped when the caller pinned the model; one
    with `answers = True` (it answers or queues rather than changing what is sent) is
    skipped by a dry run.
    """

    name: str

    def apply(self, request: Request) -> tuple[Request, Decision | None] | Reply: ...


def missing_key_message(key_env: str) -> str:
    return (
        f"no API key: set {key_env} (export {key_env}=sk-ant-...), or run without the API "
        "using --backend offline (or `backend: offline` in performance-config.yaml)"
    )


def build_backend(
    config: Config,
    clock: Callable[[], float] = time.time,
    db: Database | None = None,
) -> Backend:
    """The backend the config names; the real one needs the API key from the environment.
    With `db` the offline backend keeps its batches and prompt-cache entries there, so
    separate processes see them as they would the API's."""
    if config.backend == "offline":
        from tars_opt.backends.offline import OfflineBackend
        from tars_opt.backends.offline_store import OfflineBatchStore, OfflinePromptCache

        key_env = config.api.key_env
        if db is None:
            return OfflineBackend(clock=clock, key_env=key_env)
        return OfflineBackend(
            clock=clock,
            store=OfflineBatchStore(db),
            prompt_cache=OfflinePromptCache(db),
            key_env=key_env,
        )
    from tars_opt.backends.anthropic import AnthropicBackend

    key = os.environ.get(config.api.key_env, "")
    if not key:
        raise MissingApiKey(missing_key_message(config.api.key_env))
    return AnthropicBackend(
        key,
        base_url=config.api.base_url,
        timeout_s=config.api.timeout_s,
        max_retries=config.api.max_retries,
    )


class Optimizer:
    """The optimization chain, built from a config.

    `backend` is made on first use unless given, so requests answered by a stage (cache
    hits, deferrals) need neither a key nor the SDK import.
    """

    def __init__(
        self,
        config: Config,
        db: Database,
        *,
        backend: Backend | None = None,
        stages: list[Stage] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.prices = PriceBook(config.pricing)
        self.ledger = Ledger(db, store_prompts=config.ledger.store_prompts)
        self.conversations = Conversations(db, clock)
        self.stages: list[Stage] = (
            stages
            if stages is not None
            else default_stages(
                config,
                db,
                side_ask=self.side_ask,
                backend=lambda: self.backend,
                clock=clock,
                state=self.conversations.state,
            )
        )
        self._backend = backend
        self.budget = queue_budget(config, db, prices=self.prices, clock=clock)
        self.key_ids = KeyIds(db)
        self.alerter = Alerter(config.alerts, db, clock=clock)

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = build_backend(self.config, self.clock, self.db)
        return self._backend

    @property
    def backend_name(self) -> str:
        """The backend that answers (or would): marks ledger rows, offline ones included,
        without building the backend for a cache hit."""
        return getattr(self._backend, "name", None) or self.config.backend

    def prepare(
        self,
        request: Request,
        *,
        earlier: Sequence[Decision] = (),
        on_answer: Callable[[Request, Reply], None] | None = None,
    ) -> Prepared | Reply:
        """Run the stages; return the request ready to send, or a Reply a stage gave.

        `earlier` are decisions made for this request before this run (the defer stage's
        when a drain prepares queued work): they open its trace and its ledger row.
        A stage's answer (a cache hit) gets its ledger row now, or goes to `on_answer`
        (a front door that answers first and records off the request path).
        """
        started = time.perf_counter()
        decisions: list[Decision] = list(earlier)
        dry = request.dry_run
        if request.key_id is None and self.config.backend == "anthropic" and not dry:
            request = replace(
                request, key_id=self.key_ids.of(os.environ.get(self.config.api.key_env))
            )
        if request.conversation is None and request.overhead_for is None and not dry:
            request = replace(request, conversation=self.conversations.recognise(request))
        if request.carries_marks:
            request = replace(request, client_caching=True)
        if request.query_type is None:
            guessed = guess_query_type(request.prompt)
            request = replace(request, query_type=guessed)
            decisions.append(Decision("classify", "guessed", f"query type {guessed}"))
        if request.model is not None:
            request = replace(request, forced_model=True)
            decisions.append(Decision("route", "forced", f"--model {request.model}"))
        elif not request.route and request.client_model:
            request = replace(request, model=request.client_model, forced_model=True)
            decisions.append(Decision("route", "forced", "routing off for this request"))
        named = request.model or request.client_model
        if named and not self.prices.known(named):
            return self._unpriced(request, named, decisions, started)
        share = self.config.experiment.holdout
        # Whole conversations are held out: a held-out call inside a loop would rewrite
        # the cached prefix for every call after it.
        if in_holdout(request.conversation or request.request_id, share):
            kept = holdout_exclusion(request) or self._queued_by_defer(request)
            if kept is None:
                # The A/B holdout: the baseline system, no stage at all, to measure the saving.
                base = request.client_model or self.config.models.baseline
                request = replace(request, holdout=True, model=base, tier=self._tier_of(base))
                why = f"A/B holdout: sent unoptimized on {base} (experiment.holdout {share:.0%})"
                decisions.append(Decision("experiment", "holdout", why))
            else:
                decisions.append(
                    Decision("experiment", "excluded", f"drawn for the A/B holdout, but {kept}")
                )
        reply_or_request = self._run_stages(request, decisions, self.stages, on_answer)
        if isinstance(reply_or_request, Reply):
            return reply_or_request
        request = self._with_model(reply_or_request)
        # Unknown prices fail here, before any money is spent.
        self.prices.rates(request.model or "")
        prepare_ms = (time.perf_counter() - started) * 1000.0
        return Prepared(request, request.to_body(), decisions, started, prepare_ms)

    def inspect(self, request: Request) -> dict[str, Any]:
        """What the chain would send for `request` - kept, summarized, dropped, routed,
        tools, cache breakpoints - from a dry run of `prepare`: no API call, nothing
        answered, queued or recorded."""
        prepared = self.prepare(replace(request, dry_run=True))
        assert isinstance(prepared, Prepared)  # no stage that answers runs dry
        return inspect_report(self.config, request, prepared)

    def _run_stages(
        self,
        request: Request,
        decisions: list[Decision],
        stages: Sequence[Stage],
        on_answer: Callable[[Request, Reply], None] | None = None,
    ) -> Request | Reply:
        """Each stage in turn (none for the holdout); a Reply from one ends the run."""
        for stage in stages if not request.holdout else ():
            if request.forced_model and getattr(stage, "chooses_model", False):
                continue  # the caller pinned the model
            if request.dry_run and getattr(stage, "answers", False):
                continue  # a dry run shows what would be sent, not an answer
            outcome = stage.apply(request)
            if isinstance(outcome, Reply):
                outcome.decisions = decisions + outcome.decisions
                outcome.backend = self.backend_name
                if outcome.source != "queued":
                    # A stage answered (a cache hit): that is an answered request, so it
                    # gets its ledger row like any other. Queued work is recorded when done.
                    (on_answer or self._record)(request, outcome)
                return outcome
            request, decision = outcome
            if decision is not None:
                decisions.append(decision)
        return request

    def _with_model(self, request: Request) -> Request:
        """A model for a request no stage chose one for: the client's, else the default
        tier's; and the tier its model belongs to, for the ledger."""
        if request.model is None:
            if request.client_model:
                request = replace(request, model=request.client_model)
            else:
                tier = request.tier or self.config.models.default_tier
                request = replace(request, tier=tier, model=self.config.tier_model(tier))
        if request.tier is None:
            request = replace(request, tier=self._tier_of(request.model or ""))
        return request

    def _tier_of(self, model: str) -> str | None:
        return next((t for t, m in self.config.models.tiers.items() if m == model), None)

    def _unpriced(
        self, request: Request, model: str, decisions: list[Decision], started: float
    ) -> Prepared:
        """A model with no price goes through unoptimized, its cost recorded as unknown, with
        a loud warning: a new model id must never break an agent."""
        warning = (
            f"no price for model {model!r}: sent unoptimized and its cost recorded as unknown; "
            "add it under pricing.models in performance-config.yaml"
        )
        log.warning("unpriced model", extra={"model": model, "request_id": request.request_id})
        request = replace(request, model=model, forced_model=True, tier=self._tier_of(model))
        decisions.append(Decision("pricing", "unknown", warning, {"warning": warning}))
        prepare_ms = (time.perf_counter() - started) * 1000.0
        return Prepared(
            request, request.to_body(), decisions, started, prepare_ms, cost_unknown=True
        )

    def _queued_by_defer(self, request: Request) -> str | None:
        """Why the defer stage would queue `request` (the holdout must not send it now)."""
        stage = next((s for s in self.stages if s.name == "defer"), None)
        queue_reason = getattr(stage, "queue_reason", None)
        reason = queue_reason(request) if queue_reason is not None else None
        return f"the defer stage queues it ({reason})" if reason else None

    def side_ask(self, request: Request) -> Reply:
        """A call the optimizer makes for itself (a summary): on the summary tier, through
        no stages, answered by the same backend and written to the ledger as its own row."""
        tier = self.config.prune.summary_tier
        helper = Optimizer(self.config, self.db, backend=self.backend, stages=[], clock=self.clock)
        return helper.ask(replace(request, tier=tier, model=self.config.tier_model(tier)))

    def finish(
        self,
        prepared: Prepared,
        result: BackendResult,
        *,
        source: Source = "api",
        escalated_from: str | None = None,
        notify: bool = True,
    ) -> Reply:
        """Price the result, write its ledger row (committed on return) and return the Reply.

        `escalated_from` marks a re-ask of another request on a stronger tier: the baseline
        already counted that request once, so this row's baseline is 0 and routing's saving
        absorbs the difference (an escalation shows as negative routing savings).
        `notify=False` skips the stages' `after` hooks (for an answer about to be escalated).
        A front door that answers before it records (the gateway) calls the three steps
        itself: `price`, then `record` and `notify` off the request path.
        """
        reply = self.price(prepared, result, source=source, escalated_from=escalated_from)
        self.record(
            prepared, reply, api_request_id=result.api_request_id, escalated_from=escalated_from
        )
        if notify:
            self.notify(prepared, reply)
        return reply

    def price(
        self,
        prepared: Prepared,
        result: BackendResult,
        *,
        source: Source = "api",
        escalated_from: str | None = None,
    ) -> Reply:
        """The Reply for `result` with its cost, baseline and savings; reads and writes no
        database, so a front door can answer with the cost before the row is written."""
        req = prepared.request
        model = req.model or result.model
        if prepared.cost_unknown:
            money = Money(actual=0.0, baseline=0.0, saved=dict.fromkeys(STRATEGIES, 0.0))
        elif req.overhead_for:
            # Work the unoptimized system would not have done: no baseline, all cost
            # charged against the strategy that needed it.
            actual = self.prices.cost(result.usage, model)
            saved = dict.fromkeys(STRATEGIES, 0.0)
            saved[req.overhead_for] = -actual
            money = Money(actual=actual, baseline=0.0, saved=saved)
        else:
            money = self.prices.attribute(
                result.usage,
                model,
                req.client_model or self.config.models.baseline,
                req.removed_tokens,
                client_caching=req.client_caching,
            )
        if escalated_from is not None:
            saved = dict(money.saved)
            saved["routing"] -= money.baseline
            money = Money(actual=money.actual, baseline=0.0, saved=saved)
        latency = result.latency_ms
        if latency is None:
            latency = (time.perf_counter() - prepared.started) * 1000.0
        return Reply(
            text=result.text,
            model=model,
            source=source,
            request_id=req.request_id,
            usage=result.usage,
            cost=money.actual,
            baseline_cost=money.baseline,
            saved_by_strategy=money.saved,
            latency_ms=latency,
            decisions=list(prepared.decisions),
            stop_reason=result.stop_reason,
            backend=self.backend_name,
            content=result.content,
            message_id=result.message_id,
            stop_sequence=result.stop_sequence,
            message_extra=dict(result.message_extra),
            cost_unknown=prepared.cost_unknown,
        )

    def record(
        self,
        prepared: Prepared,
        reply: Reply,
        *,
        api_request_id: str | None = None,
        escalated_from: str | None = None,
    ) -> None:
        """Write the ledger row of an answered request (committed on return)."""
        req = prepared.request
        self._record(req, reply, api_request_id=api_request_id, escalated_from=escalated_from)
        log.info(
            "answered",
            extra={
                "request_id": req.request_id,
                "model": reply.model,
                "source": reply.source,
                "cost": reply.cost,
                "baseline_cost": reply.baseline_cost,
                "latency_ms": round(reply.latency_ms, 1),
            },
        )

    def record_answer(self, request: Request, reply: Reply) -> None:
        """Write the ledger row of a request a stage answered (a cache hit), for a
        `prepare` given `on_answer`."""
        self._record(request, reply)

    def notify(self, prepared: Prepared, reply: Reply) -> None:
        """Hand the answer to the stages' `after` hooks (the response cache stores it);
        none for the A/B holdout."""
        for stage in self.stages if not prepared.request.holdout else ():
            after = getattr(stage, "after", None)
            if after is not None:
                after(prepared, reply)

    def _record(self, request: Request, reply: Reply, **extra: Any) -> None:
        self.ledger.record(self.call_record(request, reply, **extra))

    def call_record(self, request: Request, reply: Reply, **extra: Any) -> CallRecord:
        """What the ledger keeps of `reply` to `request`, stamped now; `extra` fills the
        other CallRecord fields (error, api_request_id, escalated_from)."""
        return CallRecord(
            request=request,
            reply=reply,
            ts=self.clock(),
            backend=reply.backend or self.backend_name,
            baseline_model=self.config.models.baseline,
            **extra,
        )

    def failure_record(
        self, prepared: Prepared, error: BackendError, *, source: Source = "api"
    ) -> CallRecord:
        """What the ledger keeps of a request that failed: its error, no cost."""
        req = prepared.request
        reply = Reply(
            text="",
            model=req.model,
            source=source,
            request_id=req.request_id,
            latency_ms=(time.perf_counter() - prepared.started) * 1000.0,
            decisions=list(prepared.decisions),
        )
        return self.call_record(req, reply, error=f"{error.kind}: {error}")

    def fail(self, prepared: Prepared, error: BackendError, *, source: Source = "api") -> None:
        """Record a request that failed after retries: a ledger row with its error, no cost."""
        self.ledger.record(self.failure_record(prepared, error, source=source))
        rid = prepared.request.request_id
        log.warning("failed", extra={"request_id": rid, "error": str(error)})

    def ask(self, request: Request, on_text: Callable[[str], None] | None = None) -> Reply:
        """Prepare, send and finish one request, escalating once if routing says so.

        Raises BackendError (after recording it) when the first call fails, and
        BudgetExceeded (nothing sent, nothing recorded) under a blocking budget.
        """
        prepared = self.prepare(request)
        if isinstance(prepared, Reply):
            return prepared
        reply, retry = self._call(prepared, on_text)
        if retry is not None:
            # If the re-ask fails (it is in the ledger) or the budget refuses it, the first
            # answer is still an answer.
            with contextlib.suppress(BackendError, BudgetExceeded):
                reply, _ = self._call(retry, None, escalated_from=prepared.request.request_id)
        warning = self.check_budget(prepared)
        if warning is not None:
            reply.decisions.append(warning)
        return reply

    def check_budget(self, prepared: Prepared) -> Decision | None:
        """After an answered call: raise the budget's threshold alerts (once a month each)
        and return the warning a call sent past a spent budget carries, if any."""
        state = self.budget.state()
        self.budget.check_alerts(self.alerter, state)
        if not state.over:
            return None
        # Alerts go out once a month; a call sent past the budget says so each time,
        # whichever policy let it through.
        warning = state.over_warning(_why_sent(state.policy, prepared))
        return Decision("budget", "over", warning, {"warning": warning})

    def _call(
        self,
        prepared: Prepared,
        on_text: Callable[[str], None] | None,
        *,
        escalated_from: str | None = None,
    ) -> tuple[Reply, Prepared | None]:
        """One backend call under a budget reservation; returns the reply and, when routing
        wants a stronger tier, the re-ask to send."""
        backend = self.backend
        # Latency is what the request itself took: its preparation plus this call, not the
        # one-time construction of the backend (the SDK import costs ~1.7 s per process).
        prepared.started = time.perf_counter() - prepared.prepare_ms / 1000.0
        reservation = self.budget.reserve(prepared)
        try:
            self.before_send(prepared)
            try:
                if on_text is not None:
                    result = backend.stream(prepared.params, on_text)
                else:
                    result = backend.send(prepared.params)
            except BackendError as exc:
                self.fail(prepared, exc)
                raise
            retry = None
            if escalated_from is None and not prepared.request.stream and on_text is None:
                retry = self.escalation(prepared, result)
            # An answer being escalated is not handed to the stages (the cache must not keep it).
            reply = self.finish(
                prepared, result, notify=retry is None, escalated_from=escalated_from
            )
        finally:
            # Settled after the ledger row is written: the cost always counts somewhere.
            self.budget.settle(reservation)
        return reply, retry

    def escalation(self, prepared: Prepared, result: BackendResult) -> Prepared | None:
        """The request a stage wants sent instead of this answer (escalation), prepared by
        the stages after the one that asked; None when no stage asks."""
        if prepared.request.holdout or prepared.cost_unknown:
            return None
        for index, stage in enumerate(self.stages):
            retry = getattr(stage, "retry", None)
            outcome = retry(prepared, result) if retry is not None else None
            if outcome is None:
                continue
            request, decision = outcome
            later = self.stages[index + 1 :]
            names = {s.name for s in later}
            decisions = [d for d in prepared.decisions if d.stage not in names]
            again = self._run_stages(request, decisions, later)
            if isinstance(again, Reply):  # a later stage cannot answer a re-ask
                return None
            decisions.append(decision)
            again = self._with_model(again)
            return Prepared(again, again.to_body(), decisions, time.perf_counter())
        return None

    def before_send(self, prepared: Prepared) -> None:
        """Let stages start work that overlaps the API call (the pruner's embeddings); a
        failure there costs only that work, never the request."""
        for stage in self.stages if not prepared.request.holdout else ():
            before_send = getattr(stage, "before_send", None)
            if before_send is None:
                continue
            try:
                before_send(prepared)
            except Exception as exc:
                log.warning(
                    "stage work before sending failed",
                    extra={"stage": getattr(stage, "name", "?"), "error": str(exc)},
                )


def _why_sent(policy: str, prepared: Prepared) -> str:
    """Why a call went out although the budget is spent, for BudgetState.over_warning."""
    if policy == "warn":
        return "so this was answered anyway"
    if policy == "block":
        if prepared.request.urgent:
            return "but --urgent sends a call anyway"
        return "and this call still fitted in what was left"
    decision = next((d for d in prepared.decisions if d.stage == "defer"), None)
    if decision is None:
        return "but this call was answered now"
    under = decision.data.get("budget_under")
    if under is not None:
        # Sent while under the threshold: it is this call that took the budget over.
        return f"and this call, sent while under {under:.0%}, took it over"
    return f"but this call was answered now ({decision.reason})"


def default_stages(
    config: Config,
    db: Database,
    side_ask: Callable[[Request], Reply] | None = None,
    backend: Callable[[], Backend] | None = None,
    clock: Callable[[], float] = time.time,
    state: ConversationState | None = None,
) -> list[Stage]:
    """The stages the config switches on, in chain order: cache, defer, prune, route,
    tools, prompt_cache.

    Tools come after route: whether the tool list should stay whole for the prompt cache
    depends on the model that will answer (its minimum cacheable prefix and prices). The
    prompt-cache marks come last, on the request as it will be sent.

    `side_ask` lets a stage make its own calls (summaries) through the optimizer;
    `backend` gives the (lazily built) backend for count_tokens; `state` keeps what route
    and tools decide per conversation (one owner for both; made on `db` when not given).
    """
    stages: list[Stage] = []
    state = state if state is not None else ConversationState(db, clock)
    if config.cache.enabled:
        from tars_opt.cache.stage import CacheStage

        stages.append(CacheStage(config, db, clock=clock))
    if config.defer.enabled:
        from tars_opt.defer.stage import DeferStage

        stages.append(DeferStage(config, db, clock))
    if config.prune.enabled:
        from tars_opt.context.prune import PruneStage
        from tars_opt.context.token_counts import TokenCounter

        counter = None
        if config.prune.count_tokens == "api" and backend is not None:
            counter = TokenCounter(
                backend, db=db, per_minute=config.prune.count_tokens_per_minute, clock=clock
            )
        stages.append(
            PruneStage(
                config.prune,
                db,
                side_ask=side_ask,
                counter=counter,
                count_model=config.models.baseline,
                clock=clock,
            )
        )
    if config.routing.enabled:
        from tars_opt.routing.stage import RouteStage

        stages.append(RouteStage(config, state=state))
    if config.tools.enabled:
        stages.append(tool_stage(config, db, state=state))
    if config.prompt_cache.enabled:
        from tars_opt.context.prompt_cache import PromptCacheStage

        stages.append(
            PromptCacheStage(
                config.prompt_cache, db, model_of=lambda r: chosen_model(config, r), clock=clock
            )
        )
    return stages


def chosen_model(config: Config, request: Request) -> str:
    """The model that will answer `request` as things stand: the one a stage (or the
    caller) chose, else the client's, else the default tier's."""
    return (
        request.model
        or request.client_model
        or config.tier_model(request.tier or config.models.default_tier)
    )


def tool_stage(config: Config, db: Database | None, **kwargs: Any) -> ToolStage:
    """The tools stage as the chain runs it: sharing the vector table, cache-aware."""
    from tars_opt.context.tools import ToolStage
    from tars_opt.embeddings.store import open_vector_cache

    kwargs.setdefault("vectors", open_vector_cache(db, config.prune.vector_cache_rows))
    return ToolStage(
        config.tools,
        caching=config.prompt_cache,
        prices=PriceBook(config.pricing),
        model_of=lambda r: chosen_model(config, r),
        **kwargs,
    )
