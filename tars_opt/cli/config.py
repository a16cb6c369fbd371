"""`tars-opt config ...`: create, show and check performance-config.yaml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tars_opt.cli.common import ConfigOpt, DbOpt, JsonOpt, consoles, echo_json, friendly_errors
from tars_opt.config.loader import CONFIG_FILENAME, EXAMPLE_CONFIG, flatten, load_config
from tars_opt.errors import InputError
from tars_opt.store import describe

app = typer.Typer(help="Create, show and check performance-config.yaml.", no_args_is_help=True)


@app.command("init")
def config_init(
    path: Annotated[Path, typer.Argument(help="Where to write it.")] = Path(CONFIG_FILENAME),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented performance-config.yaml with every key and its default.

    Example: [bold]tars-opt config init[/bold]
    """
    with friendly_errors():
        if path.exists() and not force:
            raise InputError(f"{path} already exists: use --force to overwrite it")
        try:
            path.write_text(EXAMPLE_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror}") from None
        consoles.out.print(f"wrote {path}")


@app.command("show")
def config_show(
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Print the effective config and where each value came from (default, file, env, flag).

    Example: [bold]tars-opt config show[/bold]
    """
    with friendly_errors():
        loaded = load_config(config, overrides={"database": str(db) if db else None})
        values = flatten(loaded.config.model_dump(mode="json"))
        if values.get("database"):
            values["database"] = describe(values["database"])  # never the password
        rows = [{"key": k, "value": v, "source": loaded.source_of(k)} for k, v in values.items()]
        if as_json:
            echo_json({"file": str(loaded.path) if loaded.path else None, "values": rows})
            return
        table = Table("key", "value", "source", title=f"config file: {loaded.path or '(none)'}")
        for row in rows:
            table.add_row(row["key"], json.dumps(row["value"]), row["source"])
        consoles.out.print(table)


@app.command("check")
def config_check(config: ConfigOpt = None) -> None:
    """Validate the config; exit 2 with the key at fault if it is wrong.

    Example: [bold]tars-opt config check -c performance-config.yaml[/bold]
    """
    with friendly_errors():
        loaded = load_config(config)
        consoles.out.print(f"ok: {loaded.path or 'shipped defaults'}")
