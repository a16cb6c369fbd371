"""`tars-opt queue ...`: list, show, cancel and retry deferred tasks."""

from __future__ import annotations

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
from tars_opt.cli.render import queue as render
from tars_opt.defer.queue import STATES, Queue
from tars_opt.defer.taskjson import task_view
from tars_opt.errors import InputError

app = typer.Typer(
    help="The deferred queue: list, show, cancel and retry tasks.", no_args_is_help=True
)


@app.command("list")
def queue_list(
    state: Annotated[list[str] | None, typer.Option(help="Only these states (repeatable).")] = None,
    n: Annotated[int, typer.Option("-n", help="How many, newest first.", min=1)] = 50,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """List deferred tasks, newest first, with counts by state.

    Example: [bold]tars-opt queue list --state queued[/bold]
    """
    with friendly_errors():
        for s in state or []:
            if s not in STATES:
                raise InputError(f"--state {s!r} is not one of {', '.join(STATES)}")
        opened = open_app(config, db, verbose)
        q = Queue(opened.db)
        views = [task_view(t) for t in q.tasks(state, n)]
        if as_json:
            echo_json({"counts": q.counts(), "tasks": views})
            return
        render.tasks(consoles.out, views)
        counts = ", ".join(f"{k} {v}" for k, v in q.counts().items() if v)
        consoles.out.print(f"by state: {counts or 'empty'}", style="dim", markup=False)
        print_footer(opened)


@app.command("show")
def queue_show(
    ticket: Annotated[str, typer.Argument(help="Ticket (t_...) or task id.")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Show one task: state, times, attempts, batch, error.

    Example: [bold]tars-opt queue show t_3f9a1c0d2b7e4a55[/bold]
    """
    with friendly_errors():
        opened = open_app(config, db, verbose)
        view = task_view(Queue(opened.db).require(ticket))
        if as_json:
            echo_json(view)
            return
        render.task(consoles.out, view)
        print_footer(opened)


@app.command("cancel")
def queue_cancel(
    ticket: Annotated[str, typer.Argument(help="Ticket (t_...) or task id.")],
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Cancel a queued task (one already in a batch cannot be withdrawn).

    Example: [bold]tars-opt queue cancel t_3f9a1c0d2b7e4a55[/bold]
    """
    with friendly_errors():
        opened = open_app(config, db, verbose)
        task = Queue(opened.db).cancel(ticket)
        consoles.out.print(f"canceled {task['ticket']}", markup=False)
        print_footer(opened)


@app.command("retry")
def queue_retry(
    ticket: Annotated[str, typer.Argument(help="Ticket (t_...) or task id.")],
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Queue a failed, expired or canceled task again for the next drain.

    Example: [bold]tars-opt queue retry t_3f9a1c0d2b7e4a55[/bold]
    """
    with friendly_errors():
        opened = open_app(config, db, verbose)
        task = Queue(opened.db).retry(ticket)
        consoles.out.print(
            f"queued {task['ticket']} again (attempt {task['attempts']})", markup=False
        )
        print_footer(opened)
