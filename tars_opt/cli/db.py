"""`tars-opt db ...`: the SQLite database (ledger, cache, queue)."""

from __future__ import annotations

import typer

from tars_opt.cli.common import ConfigOpt, DbOpt, friendly_errors, print_config_line
from tars_opt.config.loader import load_config

app = typer.Typer(help="The SQLite database (ledger, cache, queue).", no_args_is_help=True)


@app.command("path")
def db_path(config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Print the database path, e.g. for [bold]datasette "$(tars-opt db path)"[/bold].

    Example: [bold]tars-opt db path[/bold]
    """
    with friendly_errors():
        loaded = load_config(config, overrides={"database": str(db) if db else None})
        typer.echo(str(loaded.config.resolved_database()))
        print_config_line(loaded, stderr=True)
