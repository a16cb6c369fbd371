"""The monitoring commands of the CLI: report, baseline, heartbeat, dashboard, feedback,
metrics, budget. Argument parsing and rendering only; the logic is in the library."""

from __future__ import annotations

import contextlib
import time
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from tars_opt.accounting.alerts import Alerter
from tars_opt.accounting.budget import Budget
from tars_opt.accounting.ledger import Periods
from tars_opt.cache.store import CacheStore
from tars_opt.cli.main import (
    ConfigOpt,
    DbOpt,
    JsonOpt,
    OfflineOpt,
    VerboseOpt,
    _consoles,
    _open,
    app,
    friendly_errors,
    offline_left_out,
)
from tars_opt.cli.render import main as render
from tars_opt.monitor.baseline import (
    Baseline,
    capture_baseline,
    captured_baselines,
    config_baseline,
    current_baseline,
    remove_baseline,
)
from tars_opt.monitor.dashboard import Frame, KeyReader, read_frame, run_live
from tars_opt.monitor.dashboard import render as render_frame
from tars_opt.monitor.feedback import VERDICTS, record_feedback
from tars_opt.monitor.heartbeat import drain_hook, run_heartbeat
from tars_opt.monitor.metrics import days_period, measure, session_metrics
from tars_opt.monitor.report import final_spec, phase_spec, range_spec, week_spec, write_report
from tars_opt.store.files import InputError

baseline_app = typer.Typer(help="The unoptimized baseline savings are measured against.",
                           no_args_is_help=True)  # fmt: skip
app.add_typer(baseline_app, name="baseline")

FromOpt = Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD (UTC).")]
ToOpt = Annotated[str | None, typer.Option("--to", help="Last day, inclusive, YYYY-MM-DD.")]


def _day(flag: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{flag} {value!r} is not a date: use YYYY-MM-DD") from None


@app.command()
def report(
    phase: Annotated[int | None, typer.Option(help="Phase number from the config.")] = None,
    week: Annotated[bool, typer.Option("--week", help="The last full ISO week.")] = False,
    final: Annotated[bool, typer.Option("--final", help="First phase start to last end.")] = (
        False
    ),
    first: FromOpt = None,
    last: ToOpt = None,
    out: Annotated[Path | None, typer.Option(help="Markdown file to write.")] = None,
    include_offline: OfflineOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Write a Markdown benchmark report with PNG charts beside it (offline-backend calls
    left out unless --include-offline).

    Example: [bold]tars-opt report --phase 2[/bold]  (writes reports/PHASE_2_BENCHMARK.md)
    """
    with friendly_errors():
        chosen = sum([phase is not None, week, final, first is not None or last is not None])
        if chosen != 1:
            raise InputError("choose one of --phase N, --week, --final, or --from/--to")
        opened = _open(config, db, include_offline=include_offline)
        now = time.time()
        if phase is not None:
            spec = phase_spec(opened.db, opened.config, phase)
        elif week:
            spec = week_spec(now)
        elif final:
            spec = final_spec(opened.db, opened.config)
        else:
            if first is None or last is None:
                raise InputError("--from and --to go together: give both days")
            spec = range_spec(_day("--from", first), _day("--to", last))
        result = write_report(opened.db, opened.config, spec, now=now, out=out)
        data = {
            "report": str(result.path),
            "charts": [str(c) for c in result.charts],
            "period": {"first": str(spec.first), "last": str(spec.last), "why": spec.why},
            "baseline": result.baseline.describe() if result.baseline else None,
            "targets_met": result.passed,
            "targets_judged": result.judged,
            "targets_without_data": result.no_data,
        }
        if as_json:
            typer.echo(render.to_json(data, indent=2))
            return
        met = ""
        if result.targets:
            unjudged = f", {result.no_data} without data" if result.no_data else ""
            met = f" (targets met: {result.passed} of {result.targets}{unjudged})"
        _consoles.out.print(
            f"wrote {result.path}{met}; charts: " + ", ".join(c.name for c in result.charts),
            markup=False,
        )


@baseline_app.command("capture")
def baseline_capture(
    first: FromOpt = None,
    last: ToOpt = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Capture a period that is not over or already optimized."),
    ] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Measure the baseline from finished days of the unoptimized system; it then replaces
    the config's (until `baseline reset`).

    Refuses (exit 2) a period that reaches today, has calls on fewer than
    baseline.capture.min_days days, or was already optimized (cheap-tier share, cache hits
    or deferrals over baseline.capture.*); --force captures it anyway, with a warning.

    Example: [bold]tars-opt baseline capture --from 2026-02-11 --to 2026-02-13[/bold]
    """
    with friendly_errors():
        if first is None or last is None:
            raise InputError("give both --from and --to (YYYY-MM-DD, UTC, inclusive)")
        opened = _open(config, db)
        try:
            captured = capture_baseline(opened.db, opened.config, _day("--from", first),
                                        _day("--to", last), time.time(), force=force)  # fmt: skip
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if captured.forced:
            _consoles.err.print(
                "warning: captured with --force although "
                + "; ".join(p.detail for p in captured.forced)
                + " (`tars-opt baseline reset` removes it)",
                markup=False,
            )
        _print_baseline(captured.baseline, as_json)


@baseline_app.command("list")
def baseline_list(as_json: JsonOpt = False, config: ConfigOpt = None, db: DbOpt = None) -> None:
    """List the captured baselines, newest first, and which one is active.

    Example: [bold]tars-opt baseline list[/bold]
    """
    with friendly_errors():
        opened = _open(config, db)
        captured = captured_baselines(opened.db)
        fallback = config_baseline(opened.config)
        if as_json:
            rows = [{**b.__dict__, "active": i == 0} for i, b in enumerate(captured)]
            typer.echo(render.to_json({"captured": rows, "config": fallback.__dict__,
                                   "active": "captured" if captured else "config"},
                                  indent=2))  # fmt: skip
            return
        render.baseline_list(_consoles.out, captured, fallback)


@baseline_app.command("reset")
def baseline_reset(
    baseline_id: Annotated[
        int | None, typer.Argument(help="The capture to remove (see `baseline list`).")
    ] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Remove the active captured baseline (or the one with this id); the next newest
    capture, else the config's figures, applies again.

    Example: [bold]tars-opt baseline reset[/bold]
    """
    with friendly_errors():
        opened = _open(config, db)
        try:
            gone = remove_baseline(opened.db, baseline_id)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        now_active = current_baseline(opened.db, opened.config)
        if as_json:
            typer.echo(render.to_json({"removed": gone.__dict__ if gone else None,
                                   "active": now_active.__dict__}, indent=2))  # fmt: skip
            return
        if gone is None:
            _consoles.out.print("nothing to reset: no baseline was captured", markup=False)
        else:
            _consoles.out.print(f"removed baseline #{gone.id} ({gone.source})", markup=False)
        _consoles.out.print(f"now in use: {_named(now_active)}", markup=False)


def _named(base: Baseline) -> str:
    if base.kind == "captured":
        return f"captured baseline #{base.id} ({base.source})"
    return f"the config's baseline figures ({base.source})"


@baseline_app.command("show")
def baseline_show(as_json: JsonOpt = False, config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Show the baseline in use (the newest capture, else the config's) and its source.

    Example: [bold]tars-opt baseline show --json[/bold]
    """
    with friendly_errors():
        opened = _open(config, db)
        _print_baseline(current_baseline(opened.db, opened.config), as_json)


def _print_baseline(base: Baseline, as_json: bool) -> None:
    if as_json:
        typer.echo(render.to_json(base.__dict__, indent=2))
        return
    render.baseline(_consoles.out, base)


@app.command()
def heartbeat(as_json: JsonOpt = False, config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Run the HEARTBEAT checks, store a snapshot; exit 0 ok, 1 warning, 2 critical.

    Example: [bold]tars-opt heartbeat || echo "needs attention"[/bold]
    """
    with friendly_errors():
        opened = _open(config, db)
        cfg = opened.config
        result = run_heartbeat(
            opened.db,
            cfg,
            now=time.time(),
            alerter=Alerter(cfg.alerts, opened.db),
            drain_if_off_peak=drain_hook(cfg, opened.db),
        )
        if as_json:
            typer.echo(render.to_json(result.to_dict(), indent=2, default=str))
        else:
            _consoles.out.print(result.summary_line(), markup=False)
            render.checks(_consoles.out, result.checks)
    raise typer.Exit(result.exit_code)


@app.command()
def dashboard(
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=1)] = 5.0,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """A live screen of spend, savings, model mix, hit rates, queue, calls and alerts.

    Example: [bold]tars-opt dashboard[/bold]  (q or Ctrl-C to leave; --once for one frame)
    """
    with friendly_errors():
        opened = _open(config, db)

        def read() -> Frame:
            return read_frame(opened.db, opened.config, time.time())

        if once:
            _consoles.out.print(render_frame(read(), hint=f"config: {opened.loaded.label}"))
            return
        with contextlib.suppress(KeyboardInterrupt), KeyReader() as reader:
            keys = reader.wait if reader.active else None
            run_live(read, _consoles.out, interval_s=interval, keys=keys,
                     note=f"config: {opened.loaded.label}")  # fmt: skip


@app.command()
def feedback(
    request_id: Annotated[str, typer.Argument(help="The request id (see `tars-opt log`).")],
    verdict: Annotated[str, typer.Argument(help="good or bad.")],
    note: Annotated[str | None, typer.Option(help="Why, in a few words.")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Rate an answer good or bad; counts show in metrics and reports.

    Example: [bold]tars-opt feedback req_0123456789abcdef0123 bad --note "stale"[/bold]
    """
    with friendly_errors():
        if verdict not in VERDICTS:
            raise InputError(f"verdict {verdict!r} is not good or bad")
        opened = _open(config, db)
        # A bad answer leaves the response cache at once.
        result = record_feedback(opened.db, request_id, verdict, note, now=time.time(),
                                 evictor=CacheStore(opened.db))  # fmt: skip
        if as_json:
            typer.echo(render.to_json(result.to_dict(), indent=2))
            return
        evicted = {True: "; its cached answer was removed", False: "; nothing cached to remove",
                   None: ""}[result.evicted]  # fmt: skip
        _consoles.out.print(f"recorded {verdict} for {request_id} ({result.source}, tier "
                            f"{result.tier or '-'}){evicted}", markup=False)  # fmt: skip


@app.command()
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
        opened = _open(config, db, verbose, include_offline=include_offline)
        if session is not None:
            data = session_metrics(
                opened.db, session, include_offline=opened.config.counts_offline()
            )
            if as_json:
                typer.echo(render.to_json(data, indent=2))
            else:
                render.session(_consoles.out, data)
                _consoles.out.print(render.footer(opened.loaded.label), style="dim",
                                    markup=False)  # fmt: skip
            return
        lo = hi = None
        if first is not None or last is not None:
            if first is None or last is None:
                raise InputError("--from and --to go together: give both days")
            lo, hi = _day("--from", first), _day("--to", last)
            if hi < lo:
                raise InputError(f"--to {hi} is before --from {lo}")
        start, end = days_period(time.time(), days, lo, hi)
        m = measure(opened.db, opened.config, start, end)
        if as_json:
            typer.echo(render.to_json(m.to_dict(), indent=2, default=str))
            return
        render.period(_consoles.out, m)
        left_out = offline_left_out(opened, m.start, m.end)
        _consoles.out.print(render.footer(opened.loaded.label, left_out), style="dim",
                            markup=False)  # fmt: skip


@app.command()
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
        opened = _open(config, db, verbose, include_offline=include_offline)
        now = time.time()
        state = Budget(opened.config, opened.db, clock=lambda: now).state()
        if as_json:
            typer.echo(render.to_json(state.to_dict(), indent=2))
            return
        render.budget(_consoles.out, state)
        left_out = offline_left_out(opened, Periods.at(now).month, now + 1)
        _consoles.out.print(render.footer(opened.loaded.label, left_out, " this month"),
                            style="dim", markup=False)  # fmt: skip
