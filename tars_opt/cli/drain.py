"""`drain`: send queued requests as Message Batches off-peak and collect finished ones."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from tars_opt.cli.common import (
    ConfigOpt,
    DbOpt,
    JsonOpt,
    VerboseOpt,
    consoles,
    echo_json,
    friendly_errors,
    open_app,
    print_footer,
)
from tars_opt.cli.render import drain as render
from tars_opt.drain.runner import Drainer


def drain(
    now: Annotated[bool, typer.Option(help="Submit even outside the off-peak window.")] = False,
    wait: Annotated[
        bool, typer.Option(help="Poll until every submitted batch has ended and is collected.")
    ] = False,
    daemon: Annotated[
        bool,
        typer.Option(help="Run in the foreground on a schedule (APScheduler) until SIGTERM."),
    ] = False,
    backend: Annotated[str | None, typer.Option(help="anthropic|offline.")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Send queued requests as Message Batches off-peak and collect finished ones (for cron).

    Safe to kill at any moment and run again. Outside the window it only collects.

    Example: [bold]tars-opt drain --now --wait[/bold]
    """
    with friendly_errors():
        opened = open_app(config, db, verbose, backend)
        if daemon:
            from tars_opt.drain.daemon import Daemon

            consoles.err.print(
                f"drain daemon: window {opened.config.defer.window} UTC; logs in "
                f"{opened.config.resolved_data_dir() / 'logs'}; stop with Ctrl-C or SIGTERM",
                markup=False,
            )
            Daemon(opened.config, opened.config.resolved_database()).start()
            return
        drainer = Drainer(opened.config, opened.db)
        if wait and not as_json:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            with Progress(
                TextColumn("batches"), BarColumn(), MofNCompleteColumn(), console=consoles.err
            ) as bar:
                job = bar.add_task("collect", total=None)
                report = drainer.run(
                    now=now,
                    wait=True,
                    on_progress=lambda done, total: bar.update(job, completed=done, total=total),
                )
        else:
            report = drainer.run(now=now, wait=wait)
        if as_json:
            echo_json(report.to_dict())
            return
        render.drain_report(consoles.out, report, time.time())
        print_footer(opened)
