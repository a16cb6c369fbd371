"""The defer stage: queue a deferrable request for the off-peak drain instead of sending it.

Deferrable: not --no-defer, not --urgent, not --priority high, not streamed, and a max
wait of at least `defer.min_wait_minutes`. A deferrable request is queued only when the
caller marked it (--defer, or --priority low with `defer.defer_low_priority`) or when
`budget.policy` is `defer` and this month's spend is at `defer.budget_threshold` of
`budget.monthly_usd` or more. Under `warn` the budget never queues anything; under
`block` a spent budget refuses caller-marked work (BudgetExceeded) rather than queue it
where no drain may submit it this month. A request whose max wait would pass before its
batch is expected (window opening + turnaround) is sent now instead, unless
`defer.deadline_fallback` is `queue`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tars_opt.accounting.money import usd
from tars_opt.config.schema import Config
from tars_opt.defer.queue import Queue, queue_budget
from tars_opt.defer.window import Window, human_duration
from tars_opt.errors import BudgetExceeded
from tars_opt.store.database import Database
from tars_opt.timefmt import iso_minute
from tars_opt.types import Decision, Reply, Request

log = logging.getLogger("tars_opt.defer")


class DeferStage:
    """Queues deferrable requests; everything else passes through with its reason."""

    name = "defer"
    answers = True

    def __init__(
        self, config: Config, db: Database, clock: Callable[[], float] = time.time
    ) -> None:
        self.defer = config.defer
        self.budget = queue_budget(config, db, clock=clock)
        self.window = Window.parse(config.defer.window)
        self.queue = Queue(db, clock)
        self.clock = clock

    def max_wait(self, request: Request) -> float:
        """The request's max wait in seconds (the config's default when it gives none)."""
        if request.max_wait_s is not None:
            return request.max_wait_s
        return self.defer.default_max_wait_hours * 3600.0

    def not_deferrable(self, request: Request) -> str | None:
        """Why this request must be sent now, or None if it may wait."""
        if request.defer is False:
            return "--no-defer: never deferred"
        if request.urgent:
            return "urgent: never deferred"
        if request.priority == "high":
            return "high priority: never deferred"
        if request.stream:
            return "streamed: the caller is waiting for the text"
        wait = self.max_wait(request)
        if wait < self.defer.min_wait_minutes * 60:
            return (
                f"max wait {human_duration(wait)} is under the "
                f"{self.defer.min_wait_minutes:g}-minute minimum for deferral"
            )
        return None

    def reason(self, request: Request) -> str | None:
        """Why to defer this (deferrable) request, or None to send it now."""
        if request.defer:
            return "asked to defer (--defer)"
        if request.priority == "low" and self.defer.defer_low_priority:
            return "low priority (defer.defer_low_priority)"
        if self.budget.policy == "defer":
            # Spent plus what concurrent callers have reserved: the same view the budget has.
            state = self.budget.state()
            if state.defer_all:
                return (
                    f"budget: {state.used_share:.0%} of {usd(state.budget_usd)} used this month "
                    "and budget.policy is defer"
                )
        return None

    def queue_reason(self, request: Request) -> str | None:
        """Why this stage would queue `request` (ignoring the deadline rule), or None."""
        if not self.defer.enabled or self.not_deferrable(request) is not None:
            return None
        return self.reason(request)

    def _refuse_if_blocked(self) -> None:
        """Under a spent `block` budget, refuse rather than queue: the drain submits
        nothing while the budget is spent, so the answer would not come this month."""
        if self.budget.policy != "block":
            return
        state = self.budget.state()
        if state.over:
            raise BudgetExceeded(self.budget.refusal(state, queued=True))

    def expected_at(self, now: float) -> float:
        """When a request queued now should have its answer."""
        return self.window.next_open(now) + self.defer.expected_turnaround_minutes * 60

    def apply(self, request: Request) -> tuple[Request, Decision] | Reply:
        if not self.defer.enabled:
            return request, Decision("defer", "send", "lazy loading is switched off")
        why_not = self.not_deferrable(request)
        if why_not is not None:
            return request, Decision("defer", "send", why_not)
        now = self.clock()
        reason = self.reason(request)
        if reason is None:
            why = "not asked to defer"
            data: dict[str, float] = {}
            if self.budget.policy == "defer":
                why += f"; budget under {self.defer.budget_threshold:.0%} (policy defer)"
                data = {"budget_under": self.defer.budget_threshold}
            return request, Decision("defer", "send", why, data)
        self._refuse_if_blocked()
        wait = self.max_wait(request)
        deadline = now + wait
        expected = self.expected_at(now)
        late = deadline < expected
        if late and self.defer.deadline_fallback == "sync":
            # Answered now at the full price instead of queued: the caller is told in one
            # line (`notice`: the CLI prints it on stderr) and the log says it too.
            notice = (
                f"not deferred: the max wait {human_duration(wait)} ends before the batch "
                f"would be back (~{iso_minute(expected)}); answered now at the full price "
                "(defer.deadline_fallback: sync)"
            )
            log.info(notice, extra={"request_id": request.request_id})
            return request, Decision(
                "defer",
                "send",
                f"{reason}, but its max wait {human_duration(wait)} ends before a batch "
                f"would be back (~{iso_minute(expected)}, window {self.window}): sent now",
                {"deadline": deadline, "expected_at": expected, "notice": notice},
            )
        task = self.queue.enqueue(
            request, reason=reason, max_wait_s=wait, deadline=deadline, expected_at=expected
        )
        past: dict[str, str] = {}
        if late:
            past["notice"] = (
                f"queued past its max wait: the answer is expected ~{iso_minute(expected)}, "
                f"after the {human_duration(wait)} asked for (defer.deadline_fallback: queue)"
            )
            log.info(past["notice"], extra={"request_id": request.request_id})
        return Reply(
            text="",
            model=None,
            source="queued",
            request_id=request.request_id,
            ticket=task["ticket"],
            decisions=[
                Decision(
                    "defer",
                    "queued",
                    reason,
                    {
                        "ticket": task["ticket"],
                        "window": str(self.window),
                        "window_opens_at": iso_minute(self.window.next_open(now)),
                        "expected_at": iso_minute(expected),
                        "expected_in": human_duration(max(expected - now, 0.0)),
                        "deadline": iso_minute(deadline),
                        **past,
                    },
                )
            ],
        )
