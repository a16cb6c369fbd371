"""How `ask` and `result` show an answer, its decisions, or where a queued request is."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tars_opt.accounting.ledger import source_label
from tars_opt.accounting.money import usd
from tars_opt.types import Decision, Reply


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


def _queued_data(reply: Reply) -> dict[str, Any]:
    return next((d.data for d in reply.decisions if d.action == "queued"), {})


def queued(console: Console, reply: Reply) -> None:
    """What `ask` prints when the request went to the queue."""
    data = _queued_data(reply)
    reason = next((d.reason for d in reply.decisions if d.action == "queued"), "")
    expected_in = f" (in {data['expected_in']})" if data.get("expected_in") else ""
    console.print(
        f"queued as {reply.ticket} ({reason}); the {data.get('window', 'off-peak')} window "
        f"opens {data.get('window_opens_at', '?')}, answer expected by "
        f"{data.get('expected_at', '?')}{expected_in}",
        markup=False,
    )
    console.print(
        f"get it with: tars-opt result {reply.ticket}   (or block until it is answered: "
        f"tars-opt result {reply.ticket} --wait)",
        style="dim",
        markup=False,
    )


def waiting_line(ticket: str, expected_at: str | None, expected_in: str | None = None) -> str:
    """What `ask --wait` and `result --wait` say while they block on a queued request."""
    when = f"; answer expected by {expected_at or '?'}"
    if expected_in:
        when += f" (in {expected_in})"
    return (
        f"queued as {ticket}{when}; waiting for it (a drain must run: cron, "
        "`tars-opt drain --daemon` or `tars-opt drain --now`)"
    )


def waiting_for_reply(reply: Reply) -> str:
    """waiting_line for a request `ask` just queued."""
    data = _queued_data(reply)
    return waiting_line(reply.ticket or "?", data.get("expected_at"), data.get("expected_in"))


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
