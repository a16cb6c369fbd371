"""The tars-opt command line: the root app, with every command and command group added
in the order `tars-opt --help` lists them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from tars_opt.cli import (
    ask,
    baseline,
    cache,
    config,
    context,
    db,
    drain,
    ledger,
    monitor,
    queue,
    report,
    router,
    serve,
    simulate,
)

app = typer.Typer(
    help="Cut what an agent pays for the Anthropic API without making its answers worse.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)


def _show_version(value: bool) -> None:
    if value:
        from tars_opt import __version__

        typer.echo(f"tars-opt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_show_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Cut what an agent pays for the Anthropic API without making its answers worse."""


# `--help` lists the commands in this order, then the groups in theirs.
COMMANDS: dict[str, Callable[..., Any]] = {
    "ask": ask.ask,
    "result": ask.result,
    "drain": drain.drain,
    "costs": ledger.costs,
    "log": ledger.log,
    "report": report.report,
    "heartbeat": monitor.heartbeat,
    "dashboard": monitor.dashboard,
    "feedback": monitor.feedback,
    "metrics": monitor.metrics,
    "budget": monitor.budget,
    "simulate": simulate.simulate_cmd,
    "serve": serve.serve,
}
GROUPS = {
    "config": config.app,
    "db": db.app,
    "router": router.app,
    "queue": queue.app,
    "context": context.app,
    "baseline": baseline.app,
    "cache": cache.app,
}


def _add_all(root: typer.Typer) -> None:
    for name, command in COMMANDS.items():
        root.command(name)(command)
    for name, group in GROUPS.items():
        root.add_typer(group, name=name)


_add_all(app)
