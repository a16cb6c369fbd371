"""`tars-opt baseline ...`: capture, list, reset and show the unoptimized baseline."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from tars_opt.cli.common import (
    ConfigOpt,
    DbOpt,
    FromOpt,
    JsonOpt,
    ToOpt,
    consoles,
    echo_json,
    friendly_errors,
    open_app,
    parse_day,
)
from tars_opt.cli.render import monitor as render
from tars_opt.errors import InputError
from tars_opt.monitor.baseline import (
    Baseline,
    capture_baseline,
    captured_baselines,
    config_baseline,
    current_baseline,
    remove_baseline,
)

app = typer.Typer(help="The unoptimized baseline savings are measured against.",
                  no_args_is_help=True)  # fmt: skip


@app.command("capture")
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
        opened = open_app(config, db)
        try:
            captured = capture_baseline(opened.db, opened.config, parse_day("--from", first),
                                        parse_day("--to", last), time.time(),
                                        force=force)  # fmt: skip
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if captured.forced:
            consoles.err.print(
                "warning: captured with --force although "
                + "; ".join(p.detail for p in captured.forced)
                + " (`tars-opt baseline reset` removes it)",
                markup=False,
            )
        _print_baseline(captured.baseline, as_json)


@app.command("list")
def baseline_list(as_json: JsonOpt = False, config: ConfigOpt = None, db: DbOpt = None) -> None:
    """List the captured baselines, newest first, and which one is active.

    Example: [bold]tars-opt baseline list[/bold]
    """
    with friendly_errors():
        opened = open_app(config, db)
        captured = captured_baselines(opened.db)
        fallback = config_baseline(opened.config)
        if as_json:
            rows = [{**b.__dict__, "active": i == 0} for i, b in enumerate(captured)]
            echo_json({"captured": rows, "config": fallback.__dict__,
                       "active": "captured" if captured else "config"})  # fmt: skip
            return
        render.baseline_list(consoles.out, captured, fallback)


@app.command("reset")
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
        opened = open_app(config, db)
        try:
            gone = remove_baseline(opened.db, baseline_id)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        now_active = current_baseline(opened.db, opened.config)
        if as_json:
            echo_json({"removed": gone.__dict__ if gone else None,
                       "active": now_active.__dict__})  # fmt: skip
            return
        if gone is None:
            consoles.out.print("nothing to reset: no baseline was captured", markup=False)
        else:
            consoles.out.print(f"removed baseline #{gone.id} ({gone.source})", markup=False)
        consoles.out.print(f"now in use: {_named(now_active)}", markup=False)


def _named(base: Baseline) -> str:
    if base.kind == "captured":
        return f"captured baseline #{base.id} ({base.source})"
    return f"the config's baseline figures ({base.source})"


@app.command("show")
def baseline_show(as_json: JsonOpt = False, config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Show the baseline in use (the newest capture, else the config's) and its source.

    Example: [bold]tars-opt baseline show --json[/bold]
    """
    with friendly_errors():
        opened = open_app(config, db)
        _print_baseline(current_baseline(opened.db, opened.config), as_json)


def _print_baseline(base: Baseline, as_json: bool) -> None:
    if as_json:
        echo_json(base.__dict__)
        return
    render.baseline(consoles.out, base)
