"""`ask` (send a prompt through the optimization chain) and `result` (a deferred answer)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tars_opt.app import App
from tars_opt.cli.common import (
    ConfigOpt,
    DbOpt,
    JsonOpt,
    VerboseOpt,
    check_priority,
    check_query_type,
    consoles,
    echo_json,
    friendly_errors,
    open_app,
    print_footer,
    system_prompt,
)
from tars_opt.cli.render import ask as render
from tars_opt.cli.render.common import to_json
from tars_opt.defer.queue import TERMINAL, Queue
from tars_opt.defer.taskjson import task_view
from tars_opt.defer.window import parse_duration
from tars_opt.errors import InputError
from tars_opt.store.files import read_context, read_prompt, read_tools
from tars_opt.types import Request


def ask(
    prompt: Annotated[str | None, typer.Argument(help="The prompt, or - to read stdin.")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    system_file: Annotated[
        Path | None,
        typer.Option(help="Modular system prompt (YAML/Markdown sections with conditions)."),
    ] = None,
    context: Annotated[
        Path | None,
        typer.Option(
            help="JSON conversation so far: a list of {role, content}. Give no prompt to "
            "answer its last turn as it is (e.g. a user turn of tool results)."
        ),
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
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="JSON Lines of prompts or Messages API bodies: answer them all, one JSON "
            "line each (in the file's order).",
        ),
    ] = None,
    parallel: Annotated[
        int, typer.Option(min=1, max=64, help="With --file: how many at once.")
    ] = 4,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Send a prompt through the optimization chain and print the answer.

    Example: [bold]tars-opt ask "What is the capital of France?"[/bold]
    """
    if file is not None:
        given = {
            "a prompt": prompt is not None,
            "--system": system is not None,
            "--system-file": system_file is not None,
            "--context": context is not None,
            "--tools": tools is not None,
            "--stream": stream,
            "--wait": wait,
            "--explain": explain,
            "--model": model is not None,
            "--type": query_type is not None,
        }
        with friendly_errors():
            clash = [name for name, on in given.items() if on]
            if clash:
                raise InputError(
                    f"--file takes no {', '.join(clash)}: put it in each line "
                    "(prompt, model, system, tools; controls under tars_opt)"
                )
            _ask_file(file, parallel, backend, max_tokens, config, db, verbose)
        return
    with friendly_errors():
        known_type = check_query_type(query_type)
        known_priority = check_priority(priority)
        if max_tokens is not None and max_tokens < 1:
            raise InputError("--max-tokens must be at least 1")
        if no_cache and refresh:
            raise InputError("--no-cache and --refresh exclude each other: pick one")
        try:
            max_wait_s = parse_duration(max_wait) if max_wait is not None else None
        except ValueError as exc:
            raise InputError(f"--max-wait {exc}") from None
        history = read_context(context, open_turn=prompt is None) if context else ()
        # A conversation that ends with the user's turn (tool results) is answered as it is.
        open_turn = bool(history) and history[-1]["role"] == "user"
        text = "" if open_turn else read_prompt(prompt, sys.stdin)
        schemas = read_tools(tools) if tools else ()
        opened = open_app(config, db, verbose, backend)
        asked = text or Request(messages=history).prompt
        system, sections = system_prompt(system, system_file, opened.config, query_type, asked)
        turns = history if open_turn else (*history, {"role": "user", "content": text})
        request = Request(
            messages=turns,
            system=system,
            tools=schemas,
            query_type=known_type,
            priority=known_priority,
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
        # What the caller did not ask for but got: warnings, and a line for a decision they
        # would not guess (e.g. --defer answered now because the deadline comes first).
        for notice in dict.fromkeys(d.data["notice"] for d in reply.decisions
                                    if d.data.get("notice")):  # fmt: skip
            consoles.err.print(notice, markup=False)
        for warning in dict.fromkeys(d.data["warning"] for d in reply.decisions
                                     if d.data.get("warning")):  # fmt: skip
            consoles.err.print(f"warning: {warning}", markup=False)
        if reply.source == "queued" and reply.ticket:
            if wait:
                consoles.err.print(render.waiting_for_reply(reply), style="dim", markup=False)
                _show_result(opened, Queue(opened.db).wait(reply.ticket), as_json)
            elif as_json:
                echo_json(reply.to_dict())
            else:
                render.queued(consoles.out, reply)
                print_footer(opened)
            return
        if as_json:
            echo_json(reply.to_dict())
            return
        if stream:
            typer.echo("")
        elif reply.text:
            typer.echo(reply.text)
        if explain:
            render.decisions(consoles.out, reply.decisions)
            if sections is not None:
                consoles.out.print(f"system sections sent: {', '.join(sections) or '-'}")
        consoles.out.print(render.reply_line(reply, opened.loaded.label), style="dim", markup=False)


def _ask_file(
    path: Path,
    parallel: int,
    backend: str | None,
    max_tokens: int | None,
    config: Path | None,
    db: str | None,
    verbose: bool,
) -> None:
    """`ask --file`: every line through the chain, `parallel` at once, one JSON line per
    answer on stdout in the file's order, a progress bar on stderr; exit 1 if any failed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from tars_opt.pipeline.many import ask_many, read_requests

    opened = open_app(config, db, verbose, backend)
    requests = read_requests(path, {"max_tokens": max_tokens or opened.config.models.max_tokens})
    optimizer = opened.optimizer()
    failed = 0
    with Progress(
        TextColumn("requests"), BarColumn(), MofNCompleteColumn(), console=consoles.err
    ) as bar:
        job = bar.add_task("ask", total=len(requests))
        for outcome in ask_many(
            optimizer.ask,
            requests,
            parallel=parallel,
            on_done=lambda _: bar.advance(job),
        ):
            failed += outcome.error is not None
            typer.echo(to_json(outcome.to_dict(), indent=None))
    if failed:
        consoles.err.print(f"{failed} of {len(requests)} failed (see their error lines)")
        raise typer.Exit(1)


def _show_result(opened: App, task: dict[str, Any], as_json: bool) -> None:
    view = task_view(task)
    if as_json:
        echo_json(view)
    else:
        render.result(consoles.out, view)
        print_footer(opened)
    if view["state"] in ("failed", "expired", "canceled"):
        raise typer.Exit(1)


def result(
    ticket: Annotated[str, typer.Argument(help="The ticket `ask` printed (t_...).")],
    wait: Annotated[
        bool, typer.Option(help="Block until it is answered (or fails, expires, is canceled).")
    ] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Print a deferred request's answer when it is done, its state otherwise.

    Exit 0 when done or still on its way, 1 when it failed, expired or was canceled.
    --wait blocks until a drain has answered it.

    Example: [bold]tars-opt result t_3f9a1c0d2b7e4a55 --wait[/bold]
    """
    with friendly_errors():
        opened = open_app(config, db, verbose)
        queue = Queue(opened.db)
        task = queue.require(ticket)
        if wait and task["state"] not in TERMINAL:
            expected = task_view(task)["expected_at"]
            line = render.waiting_line(task["ticket"], expected)
            consoles.err.print(line, style="dim", markup=False)
            task = queue.wait(ticket)
        _show_result(opened, task, as_json)
