"""Numbers about spend and savings for any period, read from the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tars_opt.ledger import Ledger, Periods


@dataclass(frozen=True)
class SpendSummary:
    """Spend today, this week and this month against the monthly budget."""

    periods: dict[str, dict[str, Any]]
    budget_usd: float
    month_used_share: float
    month_pace_usd: float
    by_model: list[dict[str, Any]]
    by_source: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "periods": self.periods,
            "budget_usd": self.budget_usd,
            "month_used_share": self.month_used_share,
            "month_pace_usd": self.month_pace_usd,
            "by_model": self.by_model,
            "by_source": self.by_source,
        }


def spend_summary(ledger: Ledger, now: float, budget_usd: float) -> SpendSummary:
    """Spend for today / this week / this month, the month's pace, and this month by model
    and by source."""
    p = Periods.at(now)
    periods = {
        "today": ledger.spend(p.day, now + 1),
        "week": ledger.spend(p.week, now + 1),
        "month": ledger.spend(p.month, now + 1),
    }
    month_cost = periods["month"]["cost"]
    elapsed = max(now - p.month, 3600.0)  # an hour at least: no wild pace on the 1st at 00:01
    pace = month_cost * (p.next_month - p.month) / elapsed
    return SpendSummary(
        periods=periods,
        budget_usd=budget_usd,
        month_used_share=month_cost / budget_usd,
        month_pace_usd=pace,
        by_model=ledger.breakdown("model", p.month, now + 1),
        by_source=ledger.breakdown("source", p.month, now + 1),
    )
