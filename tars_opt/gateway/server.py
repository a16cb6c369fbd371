"""Running the gateway: the Optimizer for it (and a cold one while the embedding model
loads in the background), and uvicorn serving the app until SIGTERM."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from tars_opt.app import App
from tars_opt.config.schema import Config
from tars_opt.defer.facade import BatchFacade
from tars_opt.drain.daemon import start_drain
from tars_opt.errors import InputError
from tars_opt.gateway.app import Gateway, build_app
from tars_opt.gateway.batches import batch_routes
from tars_opt.gateway.settings import GatewaySettings
from tars_opt.pipeline.optimizer import Optimizer

log = logging.getLogger("tars_opt.gateway")


def uses_embeddings(config: Config) -> bool:
    """Whether any stage the config switches on needs the embedding model."""
    return (
        (config.cache.enabled and config.cache.semantic.enabled)
        or (config.prune.enabled and config.prune.semantic)
        or (config.tools.enabled and config.tools.semantic)
        or (config.routing.enabled and config.routing.router == "learned")
    )


def without_embeddings(config: Config) -> Config:
    """`config` with every part that needs the embedding model switched off."""
    cold = config.model_copy(deep=True)
    cold.cache.semantic.enabled = False
    cold.prune.semantic = False
    cold.tools.semantic = False
    if cold.routing.router == "learned":
        cold.routing.router = "heuristic"
    return cold


def warm_up_in_background(load: Callable[[], object] | None = None) -> Callable[[], bool]:
    """Load the embedding model on a thread; the returned function says whether it is
    ready (a model that cannot load leaves the stages to fall back as they do anyway)."""
    ready = threading.Event()

    def run() -> None:
        try:
            if load is not None:
                load()
            else:
                from tars_opt.embeddings.model import get_embedder

                get_embedder()
        except Exception as exc:  # the stages report an unavailable model themselves
            log.warning("embedding model did not load", extra={"error": str(exc)})
        finally:
            ready.set()

    threading.Thread(target=run, name="tars-opt-embeddings", daemon=True).start()
    return ready.is_set


def make_gateway(
    app: App, settings: GatewaySettings, *, load: Callable[[], object] | None = None
) -> Gateway:
    """The gateway over `app`'s database; requests answered before the embedding model
    is loaded use the chain without its semantic parts (their trace says so)."""
    optimizer = Optimizer(app.config, app.db)
    if not uses_embeddings(app.config):
        return Gateway(optimizer, settings)
    cold = Optimizer(without_embeddings(app.config), app.db)
    return Gateway(optimizer, settings, cold=cold, warm=warm_up_in_background(load))


def asgi_app(
    app: App, settings: GatewaySettings, *, extra_routes: Sequence[BaseRoute] = ()
) -> Starlette:
    return build_app(make_gateway(app, settings), extra_routes=extra_routes)


def require_free(host: str, port: int) -> None:
    """Refuse (one line) an address another process holds, before any thread starts:
    uvicorn itself would end with a log line and an abort."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InputError(
                f"cannot listen on {host}:{port} ({exc.strerror}): stop what holds it or "
                "pick another port with --port (gateway.port)"
            ) from None


def serve(app: App, settings: GatewaySettings, *, extra_routes: Sequence[BaseRoute] = ()) -> None:
    """Serve until SIGTERM/SIGINT: uvicorn then stops taking connections, lets in-flight
    requests and streams finish, and the app's shutdown writes every ledger row left.

    The Message Batches routes are served too, and the drain runs on its schedule in
    background threads unless `defer.serve_drains` is false (another process drains)."""
    import uvicorn

    require_free(settings.host, settings.port)
    # The drain sends its batches where the gateway sends everything else.
    drain_config = app.config.model_copy(deep=True)
    drain_config.api.base_url = settings.upstream
    drain = start_drain(drain_config, app.config.resolved_database())
    facade = BatchFacade(app.config, app.db, on_cancel=drain.wake if drain else None)
    try:
        uvicorn.run(
            asgi_app(app, settings, extra_routes=[*batch_routes(facade), *extra_routes]),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            server_header=False,
            date_header=False,
            lifespan="on",
        )
    finally:
        if drain is not None:
            drain.stop()
