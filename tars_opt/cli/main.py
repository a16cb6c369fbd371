"""The tars-opt command line: parse arguments, call the library, render with rich."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tars_opt.accounting.budget import BudgetExceeded
from tars_opt.accounting.ledger import Periods
from tars_opt.accounting.pricing import UnknownModelPrice
from tars_opt.app import App, open_app
from tars_opt.backends import BackendError
from tars_opt.cli.render import main as render
from tars_opt.config.schema import (
    CONFIG_FILENAME,
    EXAMPLE_CONFIG,
    ConfigError,
    flatten,
    load_config,
)
from tars_opt.defer.queue import STATES, Queue
from tars_opt.defer.taskjson import task_view
from tars_opt.defer.window import parse_duration
from tars_opt.drain.runner import Drainer
from tars_opt.monitor import metrics
from tars_opt.monitor.feedback import FeedbackError
from tars_opt.monitor.metrics import spend_summary
from tars_opt.monitor.report import ReportError
from tars_opt.store.db import DatabaseError, explain
from tars_opt.store.files import InputError, read_context, read_prompt, read_tools
from tars_opt.types import QUERY_TYPES, Request

app = typer.Typer(
    help="Cut what an agent pays for the Anthropic API without making its answers worse.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
config_app = typer.Typer(
    help="Create, show and check performance-config.yaml.", no_args_is_help=True
)
db_app = typer.Typer(help="The SQLite database (ledger, cache, queue).", no_args_is_help=True)
router_app = typer.Typer(
    help="Train the learned router and calibrate routing thresholds.", no_args_is_help=True
)
queue_app = typer.Typer(
    help="The deferred queue: list, show, cancel and retry tasks.", no_args_is_help=True
)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(router_app, name="router")
context_app = typer.Typer(
    help="See what pruning, tool selection and prompt caching do to a request.",
    no_args_is_help=True,
)
app.add_typer(queue_app, name="queue")
app.add_typer(context_app, name="context")


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


class _Consoles:
    """rich consoles made per use: under a pipe (or typer's test runner) stdout changes, and
    a pipe should get wide tables rather than rich's 80-column fallback."""

    @property
    def out(self) -> Console:
        return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)

    @property
    def err(self) -> Console:
        return Console(stderr=True, highlight=False, soft_wrap=True)


_consoles = _Consoles()

DbOpt = Annotated[
    Path | None,
    # TARS_OPT_DB is read by the config loader, which can then name it in errors.
    typer.Option("--db", help="SQLite file (default: in the data dir; TARS_OPT_DB)."),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", envvar="TARS_OPT_CONFIG", help="performance-config.yaml to read."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
# `ask` refused by a blocking budget: distinct from bad input (2) and API failure (1).
BUDGET_EXIT = 3
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


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Known failures become one line on stderr and an exit code, never a traceback."""
    try:
        yield
    except (
        ConfigError,
        InputError,
        DatabaseError,
        UnknownModelPrice,
        ReportError,
        FeedbackError,
    ) as exc:
        _consoles.err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    except BackendError as exc:
        _consoles.err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    except BudgetExceeded as exc:
        _consoles.err.print(f"refused: {exc}", markup=False)
        raise typer.Exit(BUDGET_EXIT) from None
    except sqlite3.Error as exc:
        # Mid-command failures of the file (disk full, damaged page, read-only, locked too
        # long): every record is its own transaction, so nothing half-written remains.
        _consoles.err.print(f"error: {explain(exc)}", markup=False)
        raise typer.Exit(2) from None
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        _consoles.err.print(
            f"error: cannot use{where}: {exc.strerror or exc}; "
            "check free disk space and permissions of the data dir (TARS_OPT_HOME)",
            markup=False,
        )
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        _consoles.err.print(
            "interrupted: what was recorded before stays; an unanswered call left no row",
            markup=False,
        )
        raise typer.Exit(130) from None
    except Exception as exc:
        if type(exc).__name__ == "MissingApiKey":
            _consoles.err.print(f"error: {exc}", markup=False)
            raise typer.Exit(2) from None
        raise


def _open(
    config: Path | None,
    db: Path | None,
    verbose: bool = False,
    backend: str | None = None,
    *,
    include_offline: bool = False,
) -> App:
    overrides = {"ledger.include_offline": True} if include_offline else None
    return open_app(config, db=db, backend=backend, verbose=verbose, overrides=overrides)


def offline_left_out(opened: App, start: float, end: float) -> int:
    """How many offline-backend calls between two times the figures leave out (0 when
    they count)."""
    return metrics.offline_left_out(opened.ledger, opened.config, start, end)


@app.command()
def ask(
    prompt: Annotated[str | None, typer.Argument(help="The prompt, or - to read stdin.")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    system_file: Annotated[
        Path | None,
        typer.Option(help="Modular system prompt (YAML/Markdown sections with conditions)."),
    ] = None,
    context: Annotated[
        Path | None, typer.Option(help="JSON conversation so far: a list of {role, content}.")
    ] = None,
    tools: Annotated[Path | None, typer.Option(help="JSON list of tool schemas.")] = None,
    query_type: Annotated[
        str | None,
        typer.Option("--type", help="research|fact|code|template|other (guessed when omitted)."),
    ] = None,
    priority: Annotated[str, typer.Option(help="high|normal|low.")] = "normal",
    urgent: Annotated[bool, typer.Option(help="Answer now: never defer.")] = False,
    model: Annotated[str | None, typer.Option(help="Force a model, bypassing routing.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Most output tokens.")] = None,
    namespace: Annotated[str, typer.Option(help="Keeps caches of separate agents apart.")] = (
        "default"
    ),
    session: Annotated[str | None, typer.Option(help="Group calls of one task.")] = None,
    stream: Annotated[bool, typer.Option(help="Print the answer as it arrives.")] = False,
    defer: Annotated[
        bool | None,
        typer.Option(
            "--defer/--no-defer",
            help="--defer: queue it for the off-peak batch drain (half price). --no-defer: "
            "answer now, whatever the config or the budget would do. Neither: the config "
            "decides (low priority, budget.policy defer).",
        ),
    ] = None,
    max_wait: Annotated[
        str | None, typer.Option(help="Longest you can wait for the answer, e.g. 30m, 6h, 2d.")
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="If it is queued, block until its answer exists.")
    ] = False,
    explain: Annotated[bool, typer.Option(help="Print each stage's decision and why.")] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither answer from nor store in the cache.")
    ] = False,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Skip the cached answer; store the fresh one.")
    ] = False,
    backend: Annotated[str | None, typer.Option(help="anthropic|offline.")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Send a prompt through the optimization chain and print the answer.

    Example: [bold]tars-opt ask "What is the capital of France?"[/bold]
    """
    with friendly_errors():
        if query_type is not None and query_type not in QUERY_TYPES:
            raise InputError(f"--type {query_type!r} is not one of {', '.join(QUERY_TYPES)}")
        if priority not in ("high", "normal", "low"):
            raise InputError(f"--priority {priority!r} is not one of high, normal, low")
        if max_tokens is not None and max_tokens < 1:
            raise InputError("--max-tokens must be at least 1")
        if no_cache and refresh:
            raise InputError("--no-cache and --refresh exclude each other: pick one")
        try:
            max_wait_s = parse_duration(max_wait) if max_wait is not None else None
        except ValueError as exc:
            raise InputError(f"--max-wait {exc}") from None
        text = read_prompt(prompt, sys.stdin)
        history = read_context(context) if context else ()
        schemas = read_tools(tools) if tools else ()
        opened = _open(config, db, verbose, backend)
        system, sections = _system_prompt(system, system_file, opened.config, query_type, text)
        request = Request(
            prompt=text,
            messages=history,
            system=system,
            tools=schemas,
            query_type=query_type,
            priority=priority,
            urgent=urgent,
            model=model,
            max_tokens=max_tokens or opened.config.models.max_tokens,
            namespace=namespace,
            session=session,
            stream=stream,
            cache_mode="off" if no_cache else "refresh" if refresh else "use",
            defer=defer,
            max_wait_s=max_wait_s,
        )
        on_text = None
        if stream and not as_json:

            def on_text(chunk: str) -> None:
                sys.stdout.write(chunk)
                sys.stdout.flush()

        reply = opened.optimizer().ask(request, on_text=on_text)
        for warning in {d.data["warning"] for d in reply.decisions if d.data.get("warning")}:
            _consoles.err.print(f"warning: {warning}", markup=False)
        if reply.source == "queued" and reply.ticket:
            if wait:
                _wait_and_show(opened, reply.ticket, as_json)
            elif as_json:
                typer.echo(render.to_json(reply.to_dict(), indent=2))
            else:
                render.queued(_consoles.out, reply)
            return
        if as_json:
            typer.echo(render.to_json(reply.to_dict(), indent=2))
            return
        if stream:
            typer.echo("")
        elif reply.text:
            typer.echo(reply.text)
        if explain:
            render.decisions(_consoles.out, reply.decisions)
            if sections is not None:
                _consoles.out.print(f"system sections sent: {', '.join(sections) or '-'}")
        _consoles.out.print(
            render.reply_line(reply, opened.loaded.label), style="dim", markup=False
        )


def _system_prompt(
    system: str | None,
    system_file: Path | None,
    config: Any,
    query_type: str | None,
    prompt: str,
) -> tuple[str | None, list[str] | None]:
    """--system, else the matching sections of --system-file or context.system_file."""
    from tars_opt.pipeline.system import system_prompt

    if system is not None and system_file is not None:
        raise InputError("give either --system or --system-file, not both")
    chosen = system_prompt(config, prompt, query_type, system=system, system_file=system_file)
    return chosen.text, chosen.sections


@context_app.command("inspect")
def context_inspect(
    prompt: Annotated[str | None, typer.Argument(help="The prompt, or - to read stdin.")] = None,
    context: Annotated[
        Path | None, typer.Option(help="JSON conversation so far: a list of {role, content}.")
    ] = None,
    tools: Annotated[Path | None, typer.Option(help="JSON list of tool schemas.")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    system_file: Annotated[
        Path | None, typer.Option(help="Modular system prompt (YAML/Markdown sections).")
    ] = None,
    query_type: Annotated[
        str | None,
        typer.Option("--type", help="research|fact|code|template|other (guessed when omitted)."),
    ] = None,
    priority: Annotated[str, typer.Option(help="high|normal|low.")] = "normal",
    namespace: Annotated[str, typer.Option(help="Namespace of stored summaries.")] = "default",
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Show what would be sent - tokens before/after, kept, summarized, dropped, cache
    breakpoints, tools - without calling the API.

    Example: [bold]tars-opt context inspect --context chat.json --tools tools.json "and now?"[/bold]
    """
    from tars_opt.context.inspect import inspect

    with friendly_errors():
        if query_type is not None and query_type not in QUERY_TYPES:
            raise InputError(f"--type {query_type!r} is not one of {', '.join(QUERY_TYPES)}")
        if priority not in ("high", "normal", "low"):
            raise InputError(f"--priority {priority!r} is not one of high, normal, low")
        text = read_prompt(prompt, sys.stdin)
        history = read_context(context) if context else ()
        schemas = read_tools(tools) if tools else ()
        opened = _open(config, db)
        system_text, sections = _system_prompt(system, system_file, opened.config, query_type, text)
        request = Request(
            prompt=text,
            messages=history,
            system=system_text,
            tools=schemas,
            query_type=query_type,
            priority=priority,
            namespace=namespace,
        )
        report = inspect(opened.config, opened.db, request)
        if sections is not None:
            report["system_sections"] = sections
        if as_json:
            typer.echo(render.to_json(report, indent=2))
            return
        render.context_report(_consoles.out, report)


def _wait_and_show(opened: App, ticket: str, as_json: bool) -> None:
    _consoles.err.print(
        f"queued as {ticket}; waiting for its answer (a drain must run: cron, "
        "`tars-opt drain --daemon` or `tars-opt drain --now`)",
        style="dim",
        markup=False,
    )
    task = Queue(opened.db).wait(ticket)
    _show_result(task, as_json)


def _show_result(task: dict[str, Any], as_json: bool) -> None:
    view = task_view(task)
    if as_json:
        typer.echo(render.to_json(view, indent=2))
    else:
        render.result(_consoles.out, view)
    if view["state"] in ("failed", "expired", "canceled"):
        raise typer.Exit(1)


@app.command()
def result(
    ticket: Annotated[str, typer.Argument(help="The ticket `ask` printed (t_...).")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Print a deferred request's answer when it is done, its state otherwise.

    Exit 0 when done or still on its way, 1 when it failed, expired or was canceled.

    Example: [bold]tars-opt result t_3f9a1c0d2b7e4a55 --json[/bold]
    """
    with friendly_errors():
        _show_result(Queue(_open(config, db).db).require(ticket), as_json)


@app.command()
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
        opened = _open(config, db, verbose, backend)
        if daemon:
            from tars_opt.drain.daemon import Daemon

            _consoles.err.print(
                f"drain daemon: window {opened.config.lazy.window} UTC; logs in "
                f"{opened.config.resolved_data_dir() / 'logs'}; stop with Ctrl-C or SIGTERM",
                markup=False,
            )
            Daemon(opened.config, opened.config.resolved_database()).start()
            return
        drainer = Drainer(opened.config, opened.db)
        if wait and not as_json:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            with Progress(
                TextColumn("batches"), BarColumn(), MofNCompleteColumn(), console=_consoles.err
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
            typer.echo(render.to_json(report.to_dict(), indent=2))
            return
        render.drain_report(_consoles.out, report, time.time())


@queue_app.command("list")
def queue_list(
    state: Annotated[list[str] | None, typer.Option(help="Only these states (repeatable).")] = None,
    n: Annotated[int, typer.Option("-n", help="How many, newest first.", min=1)] = 50,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """List deferred tasks, newest first, with counts by state.

    Example: [bold]tars-opt queue list --state queued[/bold]
    """
    with friendly_errors():
        for s in state or []:
            if s not in STATES:
                raise InputError(f"--state {s!r} is not one of {', '.join(STATES)}")
        q = Queue(_open(config, db).db)
        views = [task_view(t) for t in q.list(state, n)]
        if as_json:
            typer.echo(render.to_json({"counts": q.counts(), "tasks": views}, indent=2))
            return
        render.tasks(_consoles.out, views)
        counts = ", ".join(f"{k} {v}" for k, v in q.counts().items() if v)
        _consoles.out.print(f"by state: {counts or 'empty'}", style="dim", markup=False)


@queue_app.command("show")
def queue_show(
    ticket: Annotated[str, typer.Argument(help="Ticket (t_...) or task id.")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Show one task: state, times, attempts, batch, error.

    Example: [bold]tars-opt queue show t_3f9a1c0d2b7e4a55[/bold]
    """
    with friendly_errors():
        view = task_view(Queue(_open(config, db).db).require(ticket))
        if as_json:
            typer.echo(render.to_json(view, indent=2))
            return
        render.task(_consoles.out, view)


@queue_app.command("cancel")
def queue_cancel(
    ticket: Annotated[str, typer.Argument(help="Ticket (t_...) or task id.")],
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Cancel a queued task (one already in a batch cannot be withdrawn).

    Example: [bold]tars-opt queue cancel t_3f9a1c0d2b7e4a55[/bold]
    """
    with friendly_errors():
        task = Queue(_open(config, db).db).cancel(ticket)
        _consoles.out.print(f"canceled {task['ticket']}", markup=False)


@queue_app.command("retry")
def queue_retry(
    ticket: Annotated[str, typer.Argument(help="Ticket (t_...) or task id.")],
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Queue a failed, expired or canceled task again for the next drain.

    Example: [bold]tars-opt queue retry t_3f9a1c0d2b7e4a55[/bold]
    """
    with friendly_errors():
        task = Queue(_open(config, db).db).retry(ticket)
        _consoles.out.print(
            f"queued {task['ticket']} again (attempt {task['attempts']})", markup=False
        )


@app.command()
def costs(
    include_offline: OfflineOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Spend today, this week and this month against the budget, by model and by source.

    Calls the offline backend answered are left out unless --include-offline.

    Example: [bold]tars-opt costs[/bold]
    """
    with friendly_errors():
        opened = _open(config, db, verbose, include_offline=include_offline)
        now = time.time()
        summary = spend_summary(
            opened.ledger,
            now,
            opened.config.budget.monthly_usd,
            include_offline=opened.config.counts_offline(),
        )
        if as_json:
            typer.echo(render.to_json(summary.to_dict(), indent=2))
            return
        render.spend(_consoles.out, summary)
        left_out = offline_left_out(opened, Periods.at(now).month, now + 1)
        _consoles.out.print(
            render.footer(opened.loaded.label, left_out, " this month"), style="dim", markup=False
        )


@app.command("log")
def log_cmd(
    n: Annotated[int, typer.Option("-n", help="How many recent calls.", min=1)] = 20,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            help="Write the whole ledger as a JSONL trace for "
            "`tars-opt simulate --workload` (prompts only if stored).",
        ),
    ] = None,  # fmt: skip
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """List recent calls from the ledger, newest first; or export it as a replayable trace.

    Example: [bold]tars-opt log -n 5 --json[/bold]; [bold]tars-opt log --export mine.jsonl[/bold]
    """
    with friendly_errors():
        if export is not None:
            from tars_opt.sim.workload import export_ledger

            done = export_ledger(_open(config, db).db, export)
            data = {"path": str(done.path), "calls": done.written,
                    "without_prompt": done.no_prompt}  # fmt: skip
            if as_json:
                typer.echo(render.to_json(data, indent=2))
                return
            skipped = (f"; {done.no_prompt} without a stored prompt left out "
                       "(ledger.store_prompts)") if done.no_prompt else ""  # fmt: skip
            _consoles.out.print(
                f"wrote {done.written} calls to {done.path}{skipped}\n"
                f"replay them: tars-opt simulate --workload {done.path} --config candidate.yaml",
                markup=False,
            )
            return
        rows = _open(config, db).ledger.recent(n)
        if as_json:
            typer.echo(render.to_json(rows, indent=2))
            return
        render.calls(_consoles.out, rows)


@db_app.command("path")
def db_path(config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Print the database path, e.g. for [bold]datasette "$(tars-opt db path)"[/bold].

    Example: [bold]tars-opt db path[/bold]
    """
    with friendly_errors():
        loaded = load_config(config, overrides={"database": str(db) if db else None})
        typer.echo(str(loaded.config.resolved_database()))


@config_app.command("init")
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
        _consoles.out.print(f"wrote {path}")


@config_app.command("show")
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
        rows = [{"key": k, "value": v, "source": loaded.source_of(k)} for k, v in values.items()]
        if as_json:
            typer.echo(
                render.to_json(
                    {"file": str(loaded.path) if loaded.path else None, "values": rows}, indent=2
                )
            )
            return
        table = Table("key", "value", "source", title=f"config file: {loaded.path or '(none)'}")
        for row in rows:
            table.add_row(row["key"], json.dumps(row["value"]), row["source"])
        _consoles.out.print(table)


@config_app.command("check")
def config_check(config: ConfigOpt = None) -> None:
    """Validate the config; exit 2 with the key at fault if it is wrong.

    Example: [bold]tars-opt config check -c performance-config.yaml[/bold]
    """
    with friendly_errors():
        loaded = load_config(config)
        _consoles.out.print(f"ok: {loaded.path or 'shipped defaults'}")


RouterOpt = Annotated[
    str | None, typer.Option("--router", help="heuristic|learned (default: routing.router).")
]


@router_app.command("train")
def router_train(
    data: Annotated[Path, typer.Option("--data", help="Labelled prompts (JSONL).")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Router file (default: in the data dir).")
    ] = None,
    layer: Annotated[
        int | None,
        typer.Option(
            "--layer",
            min=0,
            max=6,
            help="MiniLM layer whose hidden state it reads: 2 (default) as fast as the "
            "shipped router, 6 the sentence embedding (3x slower).",
        ),
    ] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Train the learned router on labelled prompts (JSONL: prompt plus label, correct or
    quality per tier) and write it with its calibration table.

    Example: [bold]tars-opt router train --data labelled.jsonl[/bold]
    """
    from tars_opt.routing.training import train_file

    with friendly_errors():
        cfg = load_config(config).config
        model, path = train_file(cfg, data, out, layer=layer)
        cal = model.note["calibration"]
        if as_json:
            typer.echo(render.to_json({"path": str(path), **model.note}, indent=2))
            return
        _consoles.out.print(
            f"trained on {model.note['n_fit']} prompts, calibrated on {model.note['n_holdout']}"
            f" held out: APGR {cal['apgr']:.3f}, CPT(50%) {cal['cpt50']:.0%}, "
            f"CPT(80%) {cal['cpt80']:.0%}\nwrote {path} (and its .json note)\n"
            f"use it: routing.router: learned, routing.learned.path: {path}",
            markup=False,
        )


@router_app.command("calibrate")
def router_calibrate(
    data: Annotated[
        Path | None, typer.Option("--data", help="Labelled prompts (JSONL) to measure on.")
    ] = None,
    router: RouterOpt = None,
    save: Annotated[
        bool, typer.Option("--save", help="Use this table for routing.strong_share.")
    ] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Print the table threshold -> strong share -> expected quality of a router, measured on
    --data or the table in use now; routing.strong_share picks its threshold from it.

    Example: [bold]tars-opt router calibrate --data labelled.jsonl --save[/bold]
    """
    from tars_opt.routing import training as ops

    with friendly_errors():
        cfg = load_config(config).config
        name = router or cfg.routing.router
        if name not in ("heuristic", "learned"):
            raise InputError(f"--router {name!r} is not one of heuristic, learned")
        if save and data is None:
            raise InputError("--save needs --data: the table to keep is measured on it")
        result = ops.calibrate(cfg, name, data)
        saved = ops.save(cfg, result) if save else None
        if as_json:
            typer.echo(render.to_json({**result, "saved": str(saved) if saved else None}, indent=2))
            return
        render.calibration(_consoles.out, result)
        if saved:
            _consoles.out.print(f"saved as the {name} calibration: {saved}", markup=False)


# The monitoring commands (report, baseline, heartbeat, dashboard, feedback, metrics, budget)
# live in their own module, which adds them to `app` when imported; so does `simulate`.
from tars_opt.cli import monitor as monitor_cli  # noqa: E402, F401
from tars_opt.cli import simulate as simulate_cli  # noqa: E402, F401

# Registered last: the cache commands reuse the helpers above.
from tars_opt.cli.cache import cache_app  # noqa: E402

app.add_typer(cache_app, name="cache")


def main() -> Any:  # pragma: no cover - console entry for `python -m tars_opt`
    return app()
