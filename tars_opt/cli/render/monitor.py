"""How the monitoring commands show baselines, checks, period metrics and the budget."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tars_opt.accounting.money import usd
from tars_opt.cli.render.common import pct
from tars_opt.plural import counted
from tars_opt.timefmt import iso


def _metric(kind: str, v: float | None) -> str:
    if v is None:
        return "-"
    if kind == "usd":
        return usd(v)
    if kind == "share":
        return pct(v)
    return f"{v:.2f} s" if kind == "seconds" else f"{v:,.0f}"


def baseline_name(base: Any) -> str:
    """A baseline in a few words: which one and whose figures."""
    if base.kind == "captured":
        return f"captured baseline #{base.id} ({base.source})"
    if base.kind == "config":
        return f"the config's own baseline figures ({base.source})"
    return f"the plan's example figures ({base.source}): someone else's system, not judged against"


def baseline(console: Console, base: Any) -> None:
    from tars_opt.monitor.baseline import METRICS

    title = f"baseline in use: {baseline_name(base)}"
    table = Table("metric", "baseline", title=title)
    for name, info in METRICS.items():
        table.add_row(info.label, _metric(info.kind, base.metrics.get(name)))
    console.print(table)
    if not base.judged:
        console.print(
            "Reports measure cost against the ledger's own baseline column (what the same "
            "calls would have cost as sent) and judge no target or regression against these "
            "figures: capture your own with `tars-opt baseline capture --from DAY --to DAY`.",
            markup=False,
        )


def baseline_list(console: Console, captured: list[Any], in_use: Any) -> None:
    """Captured baselines (the first is active), or which baseline applies without one."""
    if not captured:
        console.print(f"no captured baseline: in use: {baseline_name(in_use)}", markup=False)
        return
    table = Table("", "id", "captured (UTC)", "period", "daily cost", "cheap", "cache hit",
                  "source", title="captured baselines")  # fmt: skip
    for i, b in enumerate(captured):
        m = b.metrics
        table.add_row(
            "active" if i == 0 else "",
            f"#{b.id}",
            (b.captured_at or "")[:16].replace("T", " "),
            f"{b.start}..{b.end}",
            _metric("usd", m.get("daily_cost_usd")),
            pct(m.get("cheap_share")),
            pct(m.get("cache_hit_rate")),
            b.source,
        )
    console.print(table)
    then = f"#{captured[1].id} applies" if len(captured) > 1 else "the config's figures apply"
    console.print(
        f"`tars-opt baseline reset` removes #{captured[0].id}; then {then}.",
        markup=False,
    )


def checks(console: Console, items: list[Any]) -> None:
    colors = {"ok": "green", "skipped": "dim", "warning": "yellow", "critical": "red"}
    for c in items:
        console.print(
            f"  [{colors[c.status]}]{c.status.upper():8}[/] {c.name}: {c.value} - {c.detail}",
            highlight=False,
        )


def session(console: Console, data: dict[str, Any]) -> None:
    console.print(
        f"session {data['session']}: {counted(data['calls'], 'call')} ({data['errors']} failed), "
        f"cost {usd(data['cost'])}, baseline {usd(data['baseline_cost'])}, "
        f"saved {usd(data['saved'])}; {data['first'] or '-'} .. {data['last'] or '-'}",
        markup=False,
    )


def period(console: Console, m: Any) -> None:
    console.print(f"{iso(m.start)[:16]} .. {iso(m.end)[:16]} UTC ({m.days:.1f} days, "
                  f"{m.data_days:g} with calls)", markup=False)  # fmt: skip
    head = Table("calls", "answered", "errors", "cost", "baseline", "saved", "cache hit",
                 "cheap", "batch", "deferred", "escalated")  # fmt: skip
    head.add_row(str(m.calls), str(m.answered), f"{m.errors} ({pct(m.error_rate)})",
                 usd(m.cost), usd(m.baseline_cost), f"{usd(m.saved)} ({pct(m.saved_share)})",
                 f"{pct(m.cache_hit_rate)} ({m.exact_hits}e/{m.semantic_hits}s)",
                 pct(m.cheap_share), pct(m.batch_share), f"{pct(m.deferred_share)} ({m.deferred})",
                 pct(m.escalation_rate))  # fmt: skip
    console.print(head)
    sav = Table("strategy", "saved", title="saved by strategy")
    for k, v in m.saved_by_strategy.items():
        sav.add_row(k.replace("_", " "), usd(v))
    console.print(sav)
    tok = Table(*m.tokens, title="tokens by bucket")
    tok.add_row(*(f"{v:,}" for v in m.tokens.values()))
    console.print(tok)
    if m.latency_ms:
        lat = Table("source", "n", "p50 ms", "p95 ms", title="latency")
        for k, v in m.latency_ms.items():
            lat.add_row(k, str(v["n"]), f"{v['p50']:.0f}", f"{v['p95']:.0f}")
        console.print(lat)
    if m.model_mix:
        mix = Table("model", "calls", "share", "cost", title="model mix")
        for x in m.model_mix:
            mix.add_row(x["model"], str(x["calls"]), pct(x["share"]), usd(x["cost"]))
        console.print(mix)
    if m.per_session:
        ses = Table("session", "calls", "cost", "baseline", title="top sessions by cost")
        for x in m.per_session:
            ses.add_row(x["session"], str(x["calls"]), usd(x["cost"]), usd(x["baseline_cost"]))
        console.print(ses)


def budget(console: Console, b: Any) -> None:
    console.print(
        f"{b.month}: spent {usd(b.spent_usd)} + in flight {usd(b.reserved_usd)} of "
        f"{usd(b.budget_usd)} ({b.used_share:.1%}); month-end pace {usd(b.pace_usd)}; "
        f"policy: {b.policy_text()}" + ("; OVER BUDGET" if b.over else ""),
        markup=False,
    )
