"""How the CLI shows library results with rich. Formatting only."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from tars_opt.accounting.ledger import source_label
from tars_opt.monitor.metrics import SpendSummary
from tars_opt.types import Decision, Reply


def to_json(data: Any, *, indent: int = 2, default: Callable[[Any], Any] | None = None) -> str:
    """What `--json` prints: every float rounded to 10 significant digits or to 1e-9,
    whichever keeps more (2.2800000000000002e-05 prints as 2.28e-05, $1234.5678901234 as
    1234.567890123), so a sum of printed parts is within 1e-9 per part of the printed
    total."""
    return json.dumps(_rounded(data), indent=indent, default=default)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            return value
        significant, fixed = float(f"{value:.10g}"), round(value, 9)
        return fixed if abs(fixed - value) < abs(significant - value) else significant
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def usd(value: float) -> str:
    """Dollars with enough digits to show a single cheap call."""
    if abs(value) >= 1:
        return f"${value:,.2f}"
    return f"${value:.6f}"


def reply_line(reply: Reply, config: str | None = None) -> str:
    """The one dim line after an answer: model, tokens, money, latency, stages, and the
    config file the run read."""
    u = reply.usage
    est = " (estimated)" if u.estimated else ""
    stages = ", ".join(sorted({d.stage for d in reply.decisions})) or "none"
    read = f" | config: {config}" if config else ""
    held = "A/B holdout: sent unoptimized | " if reply.holdout else ""
    return (
        f"{held}{reply.model or '-'} via {source_label(reply.source, reply.backend)} | tokens in "
        f"{u.input_tokens} / cache write "
        f"{u.cache_write} / cache read {u.cache_read} / out {u.output_tokens}{est} | "
        f"cost {usd(reply.cost)} baseline {usd(reply.baseline_cost)} "
        f"saved {usd(reply.baseline_cost - reply.cost)} | {reply.latency_ms:.0f} ms | "
        f"stages: {stages} | {reply.request_id}{read}"
    )


def footer(config: str, offline_excluded: int = 0, what: str = "") -> str:
    """The last line of a figures command: the config file read and, when some exist, how
    many offline-backend calls the figures leave out."""
    line = f"config: {config}"
    if offline_excluded:
        line += (
            f" | not counted: {offline_excluded} offline-backend "
            f"call{'s' if offline_excluded != 1 else ''}{what} (--include-offline counts them)"
        )
    return line


def decisions(console: Console, items: list[Decision]) -> None:
    table = Table("stage", "action", "why", title="decisions")
    for d in items:
        table.add_row(d.stage, d.action, d.reason)
    console.print(table)
    for d in items:
        factors = d.data.get("factors") if d.stage == "route" else None
        if factors:
            console.print(route_factors(d.data))


def route_factors(data: dict[str, Any]) -> Table:
    """The heuristic score factor by factor (points out of each factor's weight)."""
    # When the learned router deferred to the heuristic, `score` is its percentile.
    score = data.get("heuristic_score", data.get("score"))
    table = Table("factor", "points", title=f"complexity score {score}")
    for name, points in sorted(data["factors"].items(), key=lambda kv: -kv[1]):
        table.add_row(name, f"{points:.1f}")
    return table


def spend(console: Console, s: SpendSummary) -> None:
    table = Table("period", "calls", "cost", "baseline", "saved", "errors", title="spend (UTC)")
    for name, p in s.periods.items():
        table.add_row(
            name,
            str(p["calls"]),
            usd(p["cost"]),
            usd(p["baseline_cost"]),
            usd(p["baseline_cost"] - p["cost"]),
            str(p["errors"]),
        )
    console.print(table)
    console.print(
        f"budget: {usd(s.periods['month']['cost'])} of {usd(s.budget_usd)} this month "
        f"({s.month_used_share:.1%}); at this pace {usd(s.month_pace_usd)} by month end"
    )
    month = s.periods["month"]
    if month.get("escalations"):
        console.print(
            f"escalations this month: {month['escalations']} re-asks on a stronger tier cost "
            f"{usd(month['escalation_cost'])} (counted against routing's savings)"
        )
    for title, rows in (("this month by model", s.by_model), ("this month by source", s.by_source)):
        if rows:
            console.print(_breakdown(title, rows))


def _breakdown(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table("", "calls", "prompt tokens", "output tokens", "cost", "baseline", title=title)
    for r in rows:
        table.add_row(
            str(r["key"]),
            str(r["calls"]),
            str(r["prompt_tokens"] or 0),
            str(r["output_tokens"] or 0),
            usd(r["cost"] or 0),
            usd(r["baseline_cost"] or 0),
        )
    return table


def calls(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(
        "time (UTC)",
        "source",
        "model",
        "in/out",
        "cost",
        "saved",
        "ms",
        "error",
        title="recent calls",
    )
    # The request id is what a user copies into `feedback` or a query: never cut it.
    table.add_column("request", no_wrap=True, min_width=28)
    for r in rows:
        prompt_tokens = (
            r["input_tokens"] + r["cache_write_5m"] + r["cache_write_1h"] + r["cache_read"]
        )
        table.add_row(
            r["ts_iso"][5:19].replace("T", " "),
            source_label(r["source"], r.get("backend")),
            (r["model"] or "-").removeprefix("claude-"),
            f"{prompt_tokens}/{r['output_tokens']}",
            usd(r["cost"]),
            usd(r["baseline_cost"] - r["cost"]),
            f"{r['latency_ms'] or 0:.0f}",
            (r["error"] or "")[:40],
            r["request_id"],
        )
    console.print(table)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _metric(kind: str, v: float | None) -> str:
    if v is None:
        return "-"
    if kind == "usd":
        return usd(v)
    if kind == "share":
        return pct(v)
    return f"{v:.2f} s" if kind == "seconds" else f"{v:,.0f}"


def baseline(console: Console, base: Any) -> None:
    from tars_opt.monitor.baseline import METRICS

    who = f"captured #{base.id}: " if base.kind == "captured" else "config: "
    table = Table("metric", "baseline", title=f"baseline {who}{base.source}")
    for name, info in METRICS.items():
        table.add_row(info.label, _metric(info.kind, base.metrics.get(name)))
    console.print(table)


def baseline_list(console: Console, captured: list[Any], fallback: Any) -> None:
    """Captured baselines (the first is active) and the config's figures behind them."""
    if not captured:
        console.print(f"no captured baseline: the config's figures are in use ({fallback.source})",
                      markup=False)  # fmt: skip
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
        f"session {data['session']}: {data['calls']} calls ({data['errors']} failed), "
        f"cost {usd(data['cost'])}, baseline {usd(data['baseline_cost'])}, "
        f"saved {usd(data['saved'])}; {data['first'] or '-'} .. {data['last'] or '-'}",
        markup=False,
    )


def period(console: Console, m: Any) -> None:
    from tars_opt.accounting.ledger import iso

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
        f"policy at 100%: {b.policy}" + ("; OVER BUDGET" if b.over else ""),
        markup=False,
    )


def calibration(console: Console, result: dict[str, Any]) -> None:
    """The threshold -> strong share -> quality table of a router."""
    title = f"{result['router']} router calibration ({result['source']})"
    table = Table("threshold", "strong share", "expected quality", "gap recovered", title=title)
    for row in result["table"]:
        table.add_row(
            f"{row['threshold']:.2f}",
            f"{row['strong_share']:.0%}",
            f"{row['quality']:.3f}",
            f"{row['pgr']:.0%}",
        )
    console.print(table)
    if result.get("apgr") is not None:
        console.print(
            f"APGR {result['apgr']:.3f}  CPT(50%) {result['cpt50']:.0%}  "
            f"CPT(80%) {result['cpt80']:.0%}"
            + (f"  on {result['n']} prompts" if result.get("n") else "")
        )


def queued(console: Console, reply: Reply) -> None:
    """What `ask` prints when the request went to the queue."""
    data = next((d.data for d in reply.decisions if d.action == "queued"), {})
    reason = next((d.reason for d in reply.decisions if d.action == "queued"), "")
    expected_in = f" (in {data['expected_in']})" if data.get("expected_in") else ""
    console.print(
        f"queued as {reply.ticket} ({reason}); the {data.get('window', 'off-peak')} window "
        f"opens {data.get('window_opens_at', '?')}, answer expected by "
        f"{data.get('expected_at', '?')}{expected_in}",
        markup=False,
    )
    console.print(
        f"get it with: tars-opt result {reply.ticket}   (or wait: tars-opt ask --wait ...)",
        style="dim",
        markup=False,
    )


def tasks(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(
        "ticket",
        "state",
        "priority",
        "created (UTC)",
        "expected",
        "tries",
        "batch",
        "prompt",
        title="queue",
    )
    for r in rows:
        table.add_row(
            r["ticket"],
            r["state"],
            r["priority"],
            (r["created_at"] or "")[:16].replace("T", " "),
            (r["expected_at"] or "-")[5:16].replace("T", " "),
            str(r["attempts"]),
            (r["batch_id"] or "-")[-12:],
            (r["prompt"] or "")[:40].replace("\n", " "),
        )
    console.print(table)


def task(console: Console, view: dict[str, Any]) -> None:
    """Every field of one task, then its answer if it has one."""
    table = Table("field", "value", title=f"task {view['ticket']}")
    for key, value in view.items():
        if key != "result" and value is not None:
            table.add_row(key, str(value))
    console.print(table)


def result(console: Console, view: dict[str, Any]) -> None:
    """`tars-opt result`: the answer when done, the state otherwise."""
    res = view.get("result") or {}
    if view["state"] == "done":
        console.print(res.get("answer") or "", markup=False)
        console.print(
            f"{res.get('model') or '-'} via {source_label(res.get('source'), res.get('backend'))}"
            f" | cost {usd(res.get('cost') or 0)}"
            f" baseline {usd(res.get('baseline_cost') or 0)} | {view['request_id']}",
            style="dim",
            markup=False,
        )
        return
    detail = {
        "queued": f"waiting for the off-peak drain; expected by {view.get('expected_at')}",
        "claimed": "a drain is preparing it",
        "submitted": f"in batch {view.get('batch_id')}; the next drain collects it",
    }.get(view["state"], view.get("error") or "")
    console.print(f"{view['ticket']} is {view['state']}: {detail}", markup=False)


def drain_report(console: Console, report: Any, now: float) -> None:
    """What one `drain` did, in a few lines."""
    from tars_opt.accounting.ledger import iso
    from tars_opt.defer.window import human_duration

    if report.forced and not report.in_window:
        console.print(
            f"outside the off-peak window {report.window}: submitting anyway (--now)"
            + ("" if report.claimed else "; nothing was queued"),
            markup=False,
        )
    elif not report.in_window and report.opens_at is not None and not report.submitted:
        console.print(
            f"outside the off-peak window {report.window}: it opens at "
            f"{iso(report.opens_at)[:16]}Z (in {human_duration(report.opens_at - now)}); "
            "nothing submitted (use --now to submit anyway)",
            markup=False,
        )
    rec = report.to_dict()["recovered"]
    if any(rec.values()):
        console.print(
            f"recovered: {rec['released_claims']} claims released, "
            f"{len(rec['adopted_batches'])} unrecorded batches found again, "
            f"{rec['abandoned_submissions']} lost submissions requeued, "
            f"{rec['uncertain_submissions']} still uncertain",
            markup=False,
        )
    if report.outcomes:
        parts = ", ".join(f"{n} {k}" for k, n in sorted(report.outcomes.items()))
        console.print(f"collected: {parts}", markup=False)
    if report.claimed:
        console.print(
            f"claimed {report.claimed} tasks: {report.answered_in_prepare} answered by the chain, "
            f"{sum(b['requests'] for b in report.submitted)} submitted in "
            f"{len(report.submitted)} batch(es)",
            markup=False,
        )
    for b in report.submitted:
        console.print(f"  {b['batch_id']}  {b['model']}  {b['requests']} requests", markup=False)
    for err in report.submit_errors:
        console.print(f"submit failed: {err}", style="red", markup=False)
    console.print(f"batches in flight: {report.in_flight}", style="dim", markup=False)


def _ranges(items: list[list[int]]) -> str:
    """Message ranges with adjacent ones merged: [[2, 3], [4, 5], [8, 9]] -> "2-5, 8-9"."""
    merged: list[list[int]] = []
    for a, b in items:
        if merged and merged[-1][1] + 1 == a:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in merged) or "-"


def context_report(console: Console, r: dict[str, Any]) -> None:
    """`context inspect`: tokens, the prune plan, tools and cache breakpoints."""
    share = r.get("saved_share", 0.0)
    console.print(
        f"tokens (estimated): {r['tokens_before']} -> {r['tokens_after']} "
        f"({share:.0%} fewer) | {r['messages']} messages | query type {r['query_type']} | "
        f"relevance scoring: {r.get('scoring', '-')}"
    )
    if "system_sections" in r:
        console.print(f"system sections sent: {', '.join(r['system_sections']) or '-'}")
    prune = r.get("prune")
    if prune:
        table = Table("part", "messages", title=f"pruning: {prune['level']} ({prune['reason']})")
        table.add_row("first turn (kept)", _ranges(prune["pinned"]))
        table.add_row("relevant (quoted before the prompt)", _ranges(prune["relevant"]))
        table.add_row("recent (kept)", _ranges(prune["kept"]))
        table.add_row("summarized", _ranges(prune["summarized"]))
        table.add_row("dropped", _ranges(prune["dropped"]))
        console.print(table)
        if prune.get("summary"):
            console.print(f"summary: {prune['summary']['state']}")
    route = r.get("route")
    if route:
        console.print(f"route: {route['tier']} ({route['model']})")
    tools = r.get("tools")
    if tools:
        console.print(f"tools: {tools['reason']}")
        if tools.get("selected"):
            console.print(f"  sent: {', '.join(tools['selected'])}")
        if tools.get("dropped"):
            verb = "deferred" if tools["action"] == "deferred" else "not sent"
            console.print(f"  {verb}: {len(tools['dropped'])} tools")
    cache = r["cache"]
    marks = cache["breakpoints"]
    console.print(f"cache breakpoints ({cache['model']}): {cache['reason']}")
    for m in marks:
        console.print(f"  {m['where']}: prefix ~{m['prefix_tokens']} tokens")
