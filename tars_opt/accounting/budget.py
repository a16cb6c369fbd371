"""The monthly budget: pacing, threshold alerts, and a policy at 100% (warn | defer | block).

`warn` alerts and answers; `block` refuses non-urgent requests once the budget is spent
(nothing sent, nothing queued); `defer` has the defer stage queue deferrable work from
`defer.budget_threshold` of the budget on. Only `defer` ever queues because of the budget.

Concurrent callers cannot overshoot a blocking budget: before a call is sent its estimated
cost is reserved in the `reservations` table inside one short transaction holding the
budget lock that also reads the month's spend and the open reservations, so two processes
(on any host sharing the database) never both see room that only one of them has. No
transaction stays open while the call is in flight. After the call the ledger row holds
the actual cost and the reservation is removed (settle). Between the two the cost counts
twice: briefly conservative, never short.

The estimate is the chosen model's price for the locally estimated prompt at the highest
of its input and cache-write rates, plus `max_tokens` of output, without the batch
discount: an upper bound as good as the local token estimate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from tars_opt.accounting.alerts import Alert, Alerter, month_period
from tars_opt.accounting.ledger import Ledger, Periods
from tars_opt.accounting.money import usd
from tars_opt.accounting.periods import month_pace
from tars_opt.accounting.pricing import PriceBook
from tars_opt.config.schema import BudgetConfig, Config
from tars_opt.errors import BudgetExceeded
from tars_opt.store.database import Database
from tars_opt.tokens import estimate_params
from tars_opt.types import Prepared


@dataclass(frozen=True)
class BudgetState:
    """Where the month stands against the budget (`budget` and `budget --json` show it)."""

    month: str
    budget_usd: float
    spent_usd: float
    reserved_usd: float
    pace_usd: float
    policy: str
    # With policy defer: the share of the budget from which deferrable work is queued.
    defer_threshold: float = 1.0

    @property
    def used_share(self) -> float:
        """Spent plus reserved, as a share of the budget."""
        return (self.spent_usd + self.reserved_usd) / self.budget_usd

    @property
    def over(self) -> bool:
        return self.used_share >= 1.0

    @property
    def pace_share(self) -> float:
        """The month-end projection at the pace so far, as a share of the budget."""
        return self.pace_usd / self.budget_usd

    @property
    def defer_all(self) -> bool:
        """True when a `defer` budget has reached `defer.budget_threshold` (100% unless set
        lower): the defer stage then queues everything deferrable. The one rule for it."""
        return self.policy == "defer" and self.used_share >= self.defer_threshold

    def policy_text(self) -> str:
        """The policy and where it acts: `warn at 100%`, `block at 100%`, `defer from 80%`
        (`defer.budget_threshold`), with `: deferring now` while defer_all."""
        if self.policy != "defer":
            return f"{self.policy} at 100%"
        return f"defer from {self.defer_threshold:.0%}" + (": deferring now" if self.defer_all
                                                           else "")  # fmt: skip

    def over_warning(self, sent_because: str) -> str:
        """The line an answered call past 100% prints (every time, not once a month like
        the alerts): how much is used, the policy, and why this call was sent anyway."""
        return (
            f"tars-opt monthly budget spent: {self.used_share:.0%} of "
            f"{usd(self.budget_usd)} used this month; budget.policy is {self.policy}, "
            f"{sent_because} (raise budget.monthly_usd"
            + (", or set budget.policy to defer or block)" if self.policy == "warn" else ")")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "used_share": self.used_share,
            "over": self.over,
            "pace_share": self.pace_share,
            "defer_all": self.defer_all,
        }


@dataclass(frozen=True)
class Reservation:
    id: int
    amount: float


class Budget:
    """Reserve-before, settle-after accounting of the monthly budget."""

    def __init__(
        self,
        config: Config,
        db: Database,
        *,
        prices: PriceBook | None = None,
        clock: Callable[[], float] = time.time,
        in_flight: Callable[[], Iterable[Prepared]] | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.prices = prices or PriceBook(config.pricing)
        self.clock = clock
        # Deferred work sent in batches but not collected (the queue supplies it): its cost
        # reaches the ledger only when the batch ends.
        self.in_flight = in_flight
        self.ledger = Ledger(db)

    @property
    def _cfg(self) -> BudgetConfig:
        return self.config.budget

    @property
    def policy(self) -> str:
        """What happens at 100%: warn | defer | block."""
        return self._cfg.policy

    def refusal(self, state: BudgetState, *, amount: float | None = None,
                queued: bool = False) -> str:  # fmt: skip
        """The one line a `block` refusal prints: whose budget, the cause, the fix."""
        this = f" + ~{usd(amount)} for this call" if amount is not None else ""
        what = "not queued either (no drain submits while it is spent)" if queued else (
            "nothing sent")  # fmt: skip
        return (
            f"tars-opt monthly budget reached: {usd(state.spent_usd)} spent + "
            f"{usd(state.reserved_usd)} in flight{this}, budget.monthly_usd is "
            f"{usd(state.budget_usd)} (budget.policy block); {what}. Fix: retry with "
            "--urgent, raise budget.monthly_usd, or set budget.policy to warn or defer"
        )

    def estimate(self, prepared: Prepared) -> float:
        """An upper bound of what sending `prepared` can cost, in USD (0 for a model with
        no price: its cost is recorded as unknown)."""
        if prepared.cost_unknown:
            return 0.0
        prompt = estimate_params(prepared.params)
        model = prepared.request.model or str(prepared.params.get("model"))
        r = self.prices.rates(model, prompt)
        per_input = max(r.input, r.cache_write_5m, r.cache_write_1h)
        return (prompt * per_input + prepared.request.max_tokens * r.output) / 1e6

    def _sums(self, now: float) -> tuple[float, float]:
        month = Periods.at(now).month
        spent = self.ledger.cost_since(month, include_offline=self.config.counts_offline())
        reserved = self.db.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM reservations WHERE ts >= ?",
            [now - self._cfg.reservation_ttl_s],
        ).fetchone()[0]
        return float(spent), float(reserved) + self._batches_in_flight()

    def _batches_in_flight(self) -> float:
        """Under a blocking budget, the estimated (batch-priced) cost of deferred tasks that
        are prepared or submitted but not collected: their cost lands in the ledger only
        when the batch ends, and the budget must hold until then."""
        if self._cfg.policy != "block" or self.in_flight is None:
            return 0.0
        factor = 1.0 - self.config.pricing.batch_discount
        return sum(self.estimate(prepared) * factor for prepared in self.in_flight())

    def state(self) -> BudgetState:
        """The month's spend, open reservations and pace against the budget."""
        now = self.clock()
        spent, reserved = self._sums(now)
        return BudgetState(
            month=month_period(now),
            budget_usd=self._cfg.monthly_usd,
            spent_usd=spent,
            reserved_usd=reserved,
            pace_usd=month_pace(spent, now),
            policy=self._cfg.policy,
            defer_threshold=self.config.defer.budget_threshold,
        )

    def reserve(self, prepared: Prepared) -> Reservation:
        """Reserve the estimated cost of `prepared`, atomically with the budget check.

        Raises BudgetExceeded when the policy is `block`, the request is not urgent and the
        month's spend plus open reservations plus this estimate would pass the budget.
        """
        amount = self.estimate(prepared)
        now = self.clock()
        with self.db.transaction() as cur:
            # Reservers on every host queue here; the call itself is sent after commit.
            cur.lock("budget")
            cur.execute(
                "DELETE FROM reservations WHERE ts < ?", [now - self._cfg.reservation_ttl_s]
            )
            spent, reserved = self._sums(now)
            limit = self._cfg.monthly_usd
            if (
                self._cfg.policy == "block"
                and not prepared.request.urgent
                and spent + reserved + amount > limit
            ):
                state = BudgetState(month_period(now), limit, spent, reserved, 0.0, "block")
                raise BudgetExceeded(self.refusal(state, amount=amount))
            row = {
                "request_id": prepared.request.request_id,
                "ts": now,
                "model": prepared.request.model,
                "amount": amount,
            }
            return Reservation(cur.insert("reservations", row), amount)

    def settle(self, reservation: Reservation) -> None:
        """Drop a reservation once its call's actual cost is in the ledger (or it failed)."""
        self.db.execute("DELETE FROM reservations WHERE id = ?", [reservation.id])

    def check_alerts(self, alerter: Alerter, state: BudgetState | None = None) -> list[Alert]:
        """Raise each crossed threshold (and a pace warning) once per month; return those sent."""
        state = state or self.state()
        spent_share = state.spent_usd / state.budget_usd
        sent = []
        for share in self._cfg.alert_at:
            if spent_share < share:
                continue
            level = "critical" if share >= 1.0 else ("warning" if share >= 0.8 else "info")
            tail = ""
            if state.policy == "warn" and share >= 1.0:
                tail = "; budget.policy is warn: requests are still answered"
            elif state.policy == "block" and share >= 1.0:
                tail = "; non-urgent requests are now refused"
            elif state.policy == "defer" and share >= state.defer_threshold:
                tail = "; deferrable work is now queued for the off-peak drain"
            alert = Alert(
                key=f"budget:{round(share * 100)}",
                level=level,
                message=(
                    f"{spent_share:.0%} of the {usd(state.budget_usd)} monthly budget "
                    f"spent ({usd(state.spent_usd)}); month-end pace "
                    f"{usd(state.pace_usd)}{tail}"
                ),
                period=state.month,
                data=state.to_dict(),
            )
            if alerter.raise_once(alert):
                sent.append(alert)
        return sent
