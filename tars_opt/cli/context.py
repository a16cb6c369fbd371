"""`tars-opt context ...`: see what pruning, tool selection and prompt caching do to a
request, without calling the API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

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
from tars_opt.cli.render import context as render
from tars_opt.store.files import read_context, read_prompt, read_tools
from tars_opt.types import Request

app = typer.Typer(
    help="See what pruning, tool selection and prompt caching do to a request.",
    no_args_is_help=True,
)


@app.command("inspect")
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
    verbose: VerboseOpt = False,
) -> None:
    """Show what would be sent, without calling the API.

    Tokens before and after, what is kept, summarized and dropped, cache breakpoints, tools.

    Example: [bold]tars-opt context inspect --context chat.json --tools tools.json "and now?"[/bold]
    """

    with friendly_errors():
        check_query_type(query_type)
        check_priority(priority)
        text = read_prompt(prompt, sys.stdin)
        history = read_context(context) if context else ()
        schemas = read_tools(tools) if tools else ()
        opened = open_app(config, db, verbose)
        system_text, sections = system_prompt(system, system_file, opened.config, query_type, text)
        request = Request.from_prompt(
            text,
            messages=history,
            system=system_text,
            tools=schemas,
            query_type=query_type,
            priority=priority,
            namespace=namespace,
        )
        report = opened.optimizer().inspect(request)
        if sections is not None:
            report["system_sections"] = sections
        if as_json:
            echo_json(report)
            return
        render.context_report(consoles.out, report)
        print_footer(opened)
