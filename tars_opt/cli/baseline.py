"""`tars-opt baseline ...`: capture, list, reset and show the unoptimized baseline."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from tars_opt.app import App
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
from tars_opt.errors import InputError
from tars_opt.monitor.baseline import (
    Baseline,
    baseline_in_use,
    capture_baseline,
    captured_baselines,
    config_baseline,
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
    include_offline: OfflineOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Measure the baseline from finished days of the unoptimized system.

    The capture then applies instead of the config's figures (until `baseline reset`).
    Refuses (exit 2) a period that reaches today, has calls on fewer than
    baseline.capture.min_days days, or was already optimized (cheap-tier share, cache hits
    or deferrals over baseline.capture.*); --force captures it anyway, with a warning.
    Calls the offline backend answered are left out unless --include-offline.

    Example: [bold]tars-opt baseline capture --from 2026-02-11 --to 2026-02-13[/bold]
    """
    with friendly_errors():
        if first is None or last is None:
            raise InputError("give both --from and --to (YYYY-MM-DD, UTC, inclusive)")
        opened = open_app(config, db, verbose, include_offline=include_offline)
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
        _print_baseline(opened, captured.baseline, as_json, captured.offline_left_out)


@app.command("list")
def baseline_list(
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """List the captured baselines, newest first, and which baseline applies.

    Example: [bold]tars-opt baseline list[/bold]
    """
    with friendly_errors():
        opened = open_app(config, db, verbose)
        captured = captured_baselines(opened.db)
        in_use = baseline_in_use(opened.db, opened.config)
        if as_json:
            rows = [{**b.__dict__, "active": i == 0} for i, b in enumerate(captured)]
            echo_json({"captured": rows, "config": config_baseline(opened.config).to_dict(),
                       "in_use": in_use.to_dict(), "active": in_use.kind})  # fmt: skip
            return
        render.baseline_list(consoles.out, captured, in_use)
        print_footer(opened)


@app.command("reset")
def baseline_reset(
    baseline_id: Annotated[
        int | None, typer.Argument(help="The capture to remove (see `baseline list`).")
    ] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Remove the active captured baseline (or the one with this id).

    The next newest capture, else the config's figures, then applies.

    Example: [bold]tars-opt baseline reset[/bold]
    """
    with friendly_errors():
        opened = open_app(config, db, verbose)
        try:
            gone = remove_baseline(opened.db, baseline_id)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        now_active = baseline_in_use(opened.db, opened.config)
        if as_json:
            echo_json({"removed": gone.__dict__ if gone else None,
                       "active": now_active.to_dict()})  # fmt: skip
            return
        if gone is None:
            consoles.out.print("nothing to reset: no baseline was captured", markup=False)
        else:
            consoles.out.print(f"removed baseline #{gone.id} ({gone.source})", markup=False)
        consoles.out.print(f"now in use: {render.baseline_name(now_active)}", markup=False)
        print_footer(opened)


@app.command("show")
def baseline_show(
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Show the baseline in use, where its figures come from and why it applies.

    Example: [bold]tars-opt baseline show --json[/bold]
    """
    with friendly_errors():
        opened = open_app(config, db, verbose)
        _print_baseline(opened, baseline_in_use(opened.db, opened.config), as_json)


def _print_baseline(opened: App, base: Baseline, as_json: bool, left_out: int = 0) -> None:
    if as_json:
        echo_json(base.to_dict())
        return
    render.baseline(consoles.out, base)
    print_footer(opened, left_out=left_out)
