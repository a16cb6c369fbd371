"""`serve`: the gateway agents reach by pointing ANTHROPIC_BASE_URL at it."""

from __future__ import annotations

from typing import Annotated

import typer

from tars_opt.cli.common import ConfigOpt, DbOpt, VerboseOpt, consoles, friendly_errors, open_app


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (gateway.host; 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (gateway.port; 8788).")] = None,
    upstream: Annotated[
        str | None,
        typer.Option(help="Where requests go on (gateway.upstream; the real API)."),
    ] = None,
    shadow: Annotated[
        bool | None,
        typer.Option(
            "--shadow/--no-shadow",
            help="Forward everything unchanged; record what would have been saved.",
        ),
    ] = None,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the Messages API on HOST:PORT, optimizing each request on its way upstream.

    Point an agent at it: ANTHROPIC_BASE_URL=http://127.0.0.1:8788. Stop with Ctrl-C or
    SIGTERM: streams in flight finish and every ledger row is written first.

    Example: [bold]tars-opt serve --port 8788[/bold]
    """
    from tars_opt.gateway.server import serve as run
    from tars_opt.gateway.settings import resolve

    with friendly_errors():
        opened = open_app(config, db, verbose)
        settings = resolve(opened.config, host=host, port=port, upstream=upstream, shadow=shadow)
        mode = " (shadow: forwarding unchanged)" if settings.shadow else ""
        consoles.err.print(
            f"tars-opt gateway on http://{settings.host}:{settings.port} -> "
            f"{settings.upstream}{mode}; set ANTHROPIC_BASE_URL=http://{settings.host}:"
            f"{settings.port} in the agent; stop with Ctrl-C",
            markup=False,
        )
        run(opened, settings)
