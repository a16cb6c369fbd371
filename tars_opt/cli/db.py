"""`tars-opt db ...`: the database (ledger, budget, cache, queue): an SQLite file or a
team's PostgreSQL server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tars_opt.cli.common import (
    ConfigOpt,
    DbOpt,
    JsonOpt,
    consoles,
    echo_json,
    friendly_errors,
    print_config_line,
)
from tars_opt.config.loader import load_config
from tars_opt.errors import InputError
from tars_opt.store import connect, describe, is_server
from tars_opt.store.admin import Copied, check, copy_database

app = typer.Typer(
    help="The database: an SQLite file, or a postgresql:// URL a team shares.",
    no_args_is_help=True,
)


def _location(config: Path | None, db: str | None) -> str | Path:
    loaded = load_config(config, overrides={"database": db})
    return loaded.config.resolved_database()


@app.command("path")
def db_path(config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Print the database path (a URL without its password).

    Example: [bold]datasette "$(tars-opt db path)"[/bold]
    """
    with friendly_errors():
        loaded = load_config(config, overrides={"database": str(db) if db else None})
        typer.echo(describe(loaded.config.resolved_database()))
        print_config_line(loaded, stderr=True)


@app.command("migrate")
def db_migrate(config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Bring the database's schema up to this tars-opt.

    Other hosts may keep running: changes within a major version are additive.

    Example: [bold]tars-opt db migrate --db postgresql://tars@db.internal/tars[/bold]
    """
    with friendly_errors():
        database = connect(_location(config, db), migrate=False)
        try:
            before, after = database.migrate()
        finally:
            database.close()
        if after > before:
            consoles.out.print(f"migrated {database.location}: schema {before} -> {after}")
        else:
            consoles.out.print(f"{database.location}: schema {before}, nothing to do")


@app.command("check")
def db_check(as_json: JsonOpt = False, config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Check the database: it answers, its schema, this host's clock against the server's.

    Exit 1 when something needs fixing.

    Example: [bold]tars-opt db check[/bold]
    """
    with friendly_errors():
        database = connect(_location(config, db), migrate=False)
        try:
            health = check(database)
        finally:
            database.close()
        problems = health.problems
        if as_json:
            echo_json(
                {"engine": health.engine, "location": health.location,
                 "schema": health.schema.version, "known": health.schema.known,
                 "compatible_from": health.schema.compatible_from,
                 "clock_skew_s": round(health.skew_s, 3),
                 "round_trip_ms": round(health.round_trip_ms, 2), "problems": problems}
            )  # fmt: skip
        else:
            state = health.schema
            newer = " (newer, compatible)" if state.newer else ""
            consoles.out.print(
                f"{health.engine} {health.location}: answers in {health.round_trip_ms:.1f} ms; "
                f"schema {state.version}{newer}, this tars-opt has {state.known}; "
                f"clock skew {health.skew_s:+.2f} s",
                markup=False,
            )
            for problem in problems:
                consoles.err.print(f"problem: {problem}", markup=False)
        if problems:
            raise typer.Exit(1)


@app.command("copy")
def db_copy(
    source: Annotated[Path, typer.Option("--from", help="The SQLite file to copy from.")],
    target: Annotated[str, typer.Option("--to", help="The postgresql:// URL to copy into.")],
) -> None:
    """Copy a single-user SQLite database into a team's PostgreSQL database.

    Rows the target has already are kept, so running it again neither loses nor doubles a
    row.

    Example: [bold]tars-opt db copy --from ~/tars-opt.db --to "$TARS_OPT_DB"[/bold]
    """
    with friendly_errors():
        if is_server(str(source)) or not source.expanduser().is_file():
            raise InputError(f"--from {source}: no such SQLite file; give the file to copy")
        if not is_server(target):
            raise InputError(
                f"--to {describe(target)}: give a postgresql:// URL (the team database)"
            )
        src = connect(source.expanduser())
        dst = connect(target)
        try:

            def show(done: Copied) -> None:
                consoles.out.print(
                    f"{done.table}: {done.source} rows, {done.written} copied, "
                    f"{done.present} already there",
                    markup=False,
                )

            report = copy_database(src, dst, on_table=show)
        finally:
            src.close()
            dst.close()
        total = sum(r.written for r in report)
        consoles.out.print(f"copied {total} rows into {dst.location}", markup=False)
