"""What every command shares: option types, consoles, exit codes, turning known failures
into one line, opening the app, and the checks and output helpers several commands use."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tars_opt.app import App, require_named_folders
from tars_opt.app import open_app as open_library_app
from tars_opt.cli.render import common as render
from tars_opt.config.loader import LoadedConfig, load_config
from tars_opt.config.schema import Config
from tars_opt.errors import (
    BackendError,
    BudgetExceeded,
    DatabaseUnreachable,
    InputError,
    TarsOptError,
)
from tars_opt.monitor.metrics import offline_left_out
from tars_opt.types import PRIORITIES, QUERY_TYPES, Priority, QueryType

# `ask` refused by a blocking budget: distinct from bad input (2) and API failure (1).
BUDGET_EXIT = 3
BAD_INPUT_EXIT = 2
FAILURE_EXIT = 1
INTERRUPTED_EXIT = 130


class Consoles:
    """rich consoles made per use: under a pipe (or typer's test runner) stdout changes, and
    a pipe should get wide tables rather than rich's 80-column fallback."""

    @property
    def out(self) -> Console:
        return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)

    @property
    def err(self) -> Console:
        return Console(stderr=True, highlight=False, soft_wrap=True)


consoles = Consoles()

DbOpt = Annotated[
    str | None,
    # TARS_OPT_DB is read by the config loader, which can then name it in errors.
    typer.Option(
        "--db",
        help="SQLite file or postgresql:// URL (default: a file in the data dir; TARS_OPT_DB).",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", envvar="TARS_OPT_CONFIG", help="performance-config.yaml to read."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show logs (and the config file read) on stderr.")
]
OfflineOpt = Annotated[
    bool,
    typer.Option(
        "--include-offline",
        help="Count the offline backend's placeholder calls too (ledger.include_offline).",
    ),
]
FromOpt = Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD (UTC).")]
ToOpt = Annotated[str | None, typer.Option("--to", help="Last day, inclusive, YYYY-MM-DD.")]


# Exit code and line prefix by kind of known failure; any other TarsOptError is bad input (2).
# The API failing is not the user's fault (1); a budget refusal is a policy answer (3).
_EXITS: dict[type[TarsOptError], tuple[int, str]] = {
    BackendError: (FAILURE_EXIT, "error"),
    BudgetExceeded: (BUDGET_EXIT, "refused"),
    DatabaseUnreachable: (FAILURE_EXIT, "error"),
}


def _exit_for(exc: TarsOptError) -> tuple[int, str]:
    for kind in type(exc).__mro__:
        if kind in _EXITS:
            return _EXITS[kind]
    return BAD_INPUT_EXIT, "error"


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Known failures become one line on stderr and an exit code, never a traceback."""
    try:
        yield
    except TarsOptError as exc:
        code, prefix = _exit_for(exc)
        consoles.err.print(f"{prefix}: {exc}", markup=False)
        raise typer.Exit(code) from None
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        consoles.err.print(
            f"error: cannot use{where}: {exc.strerror or exc}; "
            "check free disk space and permissions of the data dir (TARS_OPT_HOME)",
            markup=False,
        )
        raise typer.Exit(BAD_INPUT_EXIT) from None
    except KeyboardInterrupt:
        consoles.err.print(
            "interrupted: what was recorded before stays; an unanswered call left no row",
            markup=False,
        )
        raise typer.Exit(INTERRUPTED_EXIT) from None


def open_app(
    config: Path | None,
    db: str | None,
    verbose: bool = False,
    backend: str | None = None,
    *,
    include_offline: bool = False,
) -> App:
    """The library's app for a command's --config, --db, --verbose, --backend and
    --include-offline flags."""
    overrides = {"ledger.include_offline": True} if include_offline else None
    return open_library_app(config, db=db, backend=backend, verbose=verbose, overrides=overrides)


def echo_json(data: Any, default: Callable[[Any], Any] | None = None) -> None:
    """Print what --json prints."""
    typer.echo(render.to_json(data, indent=2, default=default))


def print_footer(
    opened: App,
    period: tuple[float, float] | None = None,
    what: str = "",
    *,
    left_out: int | None = None,
) -> None:
    """The dim last line of a command's human output: the config read and how many
    offline-backend calls the figures leave out (`left_out`, or counted over `period`)."""
    if left_out is None:
        left_out = offline_left_out(opened.ledger, opened.config, *period) if period else 0
    consoles.out.print(
        render.footer(opened.loaded.label, left_out, what), style="dim", markup=False
    )


def load_checked(config: Path | None, **overrides: Any) -> LoadedConfig:
    """The config, for a command that opens no database, with the folders the user named
    (TARS_OPT_HOME, --db) checked as open_app checks them."""
    loaded = load_config(config, overrides=overrides or None)
    require_named_folders(loaded)
    return loaded


def print_config_line(loaded: LoadedConfig, *, stderr: bool = False) -> None:
    """print_footer for a command that opens no database: the config it read. `stderr` for
    a command whose stdout is for scripts (`db path`)."""
    console = consoles.err if stderr else consoles.out
    console.print(render.footer(loaded.label), style="dim", markup=False)


def check_query_type(query_type: str | None, flag: str = "--type") -> QueryType | None:
    """The option's query type, or InputError naming the known ones."""
    if query_type is None:
        return None
    for known in QUERY_TYPES:
        if query_type == known:
            return known
    raise InputError(f"{flag} {query_type!r} is not one of {', '.join(QUERY_TYPES)}")


def check_priority(priority: str) -> Priority:
    """The option's priority, or InputError naming the known ones."""
    for known in PRIORITIES:
        if priority == known:
            return known
    raise InputError(f"--priority {priority!r} is not one of {', '.join(PRIORITIES)}")


def parse_day(flag: str, value: str) -> date:
    """A --from/--to day; bad input names the flag."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{flag} {value!r} is not a date: use YYYY-MM-DD") from None


def system_prompt(
    system: str | None,
    system_file: Path | None,
    config: Config,
    query_type: str | None,
    prompt: str,
) -> tuple[str | None, list[str] | None]:
    """--system, else the matching sections of --system-file or system_file in the config, and
    the names of the sections sent (None without a file)."""
    from tars_opt.pipeline.system import system_prompt as choose

    if system is not None and system_file is not None:
        raise InputError("give either --system or --system-file, not both")
    chosen = choose(config, prompt, query_type, system=system, system_file=system_file)
    return chosen.text, chosen.sections
