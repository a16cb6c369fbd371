"""The health and figures commands: heartbeat, dashboard, feedback, metrics, budget."""

from __future__ import annotations

import contextlib
import time
from typing import Annotated

import typer

from tars_opt.accounting.alerts import Alerter
from tars_opt.accounting.ledger import Periods
from tars_opt.cache.store import CacheStore
from tars_opt.cli.common import (
    ConfigOpt,
    DbOpt,
    FromOpt,
    JsonOpt,
    OfflineOpt,
    ToOpt,
    VerboseOpt,
    consoles,
    echo_json,
    friendly_errors,
    open_app,
    parse_day,
    print_footer,
)
from tars_opt.cli.render import monitor as render
from tars_opt.defer.queue import queue_budget
from tars_opt.errors import InputError
from tars_opt.monitor.dashboard import Frame, KeyReader, read_frame, run_live
from tars_opt.monitor.dashboard import render as render_frame
from tars_opt.monitor.feedback import VERDICTS, record_feedback
from tars_opt.monitor.heartbeat import drain_hook, run_heartbeat
from tars_opt.monitor.metrics import days_period, measure, session_metrics


def heartbeat(
    include_offline: OfflineOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run the HEARTBEAT checks, store a snapshot; exit 0 ok, 1 warning, 2 critical.

    Calls the offline backend answered are left out unless --include-offline.

    Example: [bold]tars-opt heartbeat || echo "needs attention"[/bold]
    """
    with friendly_errors():
        opened = open_app(config, db, verbose, include_offline=include_offline)
        cfg = opened.config
        result = run_heartbeat(
            opened.db,
            cfg,
            now=time.time(),
            alerter=Alerter(cfg.alerts, opened.db),
            drain_if_off_peak=drain_hook(cfg, opened.db),
        )
        if as_json:
            echo_json(result.to_dict(), default=str)
        else:
            consoles.out.print(result.summary_line(), markup=False)
            render.checks(consoles.out, result.checks)
            window = f" in the last {cfg.heartbeat.window_h:g} h"
            print_footer(opened, what=window, left_out=result.metrics["offline_left_out"])
    raise typer.Exit(result.exit_code)


def dashboard(
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=1)] = 5.0,
    include_offline: OfflineOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """A live screen of spend, savings, model mix, hit rates, queue, calls and alerts.

    Calls the offline backend answered are left out of the figures unless
    --include-offline (the recent calls show them, marked offline).

    Example: [bold]tars-opt dashboard[/bold]  (q or Ctrl-C to leave; --once for one frame)
    """
    with friendly_errors():
        opened = open_app(config, db, verbose, include_offline=include_offline)

        def read() -> Frame:
            return read_frame(opened.db, opened.config, time.time())

        if once:
            consoles.out.print(render_frame(read(), hint=f"config: {opened.loaded.label}"))
            return
        with contextlib.suppress(KeyboardInterrupt), KeyReader() as reader:
            keys = reader.wait if reader.active else None
            run_live(read, consoles.out, interval_s=interval, keys=keys,
                     note=f"config: {opened.loaded.label}")  # fmt: skip


def feedback(
    request_id: Annotated[str, typer.Argument(help="The request id (see `tars-opt log`).")],
    verdict: Annotated[str, typer.Argument(help="good or bad.")],
    note: Annotated[str | None, typer.Option(help="Why, in a few words.")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Rate an answer good or bad; counts show in metrics and reports.

    Example: [bold]tars-opt feedback req_0123456789abcdef0123 bad --note "stale"[/bold]
    """
    with friendly_errors():
        if verdict not in VERDICTS:
            raise InputError(f"verdict {verdict!r} is not good or bad")
        opened = open_app(config, db, verbose)
        # A bad answer leaves the response cache at once.
        result = record_feedback(opened.db, request_id, verdict, note, now=time.time(),
                                 evictor=CacheStore(opened.db))  # fmt: skip
        if as_json:
            echo_json(result.to_dict())
            return
        evicted = {True: "; its cached answer was removed", False: "; nothing cached to remove",
                   None: ""}[result.evicted]  # fmt: skip
        consoles.out.print(f"recorded {verdict} for {request_id} ({result.source}, tier "
                           f"{result.tier or '-'}){evicted}", markup=False)  # fmt: skip
        print_footer(opened)


def metrics(
    first: FromOpt = None,
    last: ToOpt = None,
    days: Annotated[int, typer.Option(help="The last N days (UTC, today included).", min=1)] = 7,
    session: Annotated[str | None, typer.Option(help="One `ask --session` id.")] = None,
    include_offline: OfflineOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Calls, tokens, cost vs baseline, savings by strategy, rates and latency for a period.

    Calls the offline backend answered are left out unless --include-offline.

    Example: [bold]tars-opt metrics --from 2026-02-17 --to 2026-02-23 --json[/bold]
    """
    with friendly_errors():
        opened = open_app(config, db, verbose, include_offline=include_offline)
        if session is not None:
            data = session_metrics(
                opened.db, session, include_offline=opened.config.counts_offline()
            )
            if as_json:
                echo_json(data)
            else:
                render.session(consoles.out, data)
                print_footer(opened, what=" of this session", left_out=data["offline_left_out"])
            return
        lo = hi = None
        if first is not None or last is not None:
            if first is None or last is None:
                raise InputError("--from and --to go together: give both days")
            lo, hi = parse_day("--from", first), parse_day("--to", last)
            if hi < lo:
                raise InputError(f"--to {hi} is before --from {lo}")
        start, end = days_period(time.time(), days, lo, hi)
        m = measure(opened.db, opened.config, start, end)
        if as_json:
            echo_json(m.to_dict(), default=str)
            return
        render.period(consoles.out, m)
        print_footer(opened, (m.start, m.end))


def budget(
    include_offline: OfflineOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """The month's spend, in-flight reservations and pace against the budget and policy.

    Calls the offline backend answered are left out unless --include-offline.

    Example: [bold]tars-opt budget --json[/bold]
    """
    with friendly_errors():
        opened = open_app(config, db, verbose, include_offline=include_offline)
        now = time.time()
        state = queue_budget(opened.config, opened.db, clock=lambda: now).state()
        if as_json:
            echo_json(state.to_dict())
            return
        render.budget(consoles.out, state)
        print_footer(opened, (Periods.at(now).month, now + 1), " this month")
