"""The gateway served by uvicorn on a thread at a free port, over a test's database."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import uvicorn

from tars_opt import open_app
from tars_opt.app import App
from tars_opt.gateway.app import Gateway, build_app
from tars_opt.gateway.server import make_gateway
from tars_opt.gateway.settings import GatewaySettings
from tars_opt.pipeline.optimizer import Optimizer


@dataclass
class Served:
    gateway: Gateway
    app: App
    url: str
    server: uvicorn.Server

    def flush(self) -> None:
        assert self.gateway.recorder.flush(10.0), "ledger writes still waiting"

    def rows(self) -> list[dict[str, Any]]:
        self.flush()
        return list(self.app.db.query("SELECT * FROM calls ORDER BY id"))


@contextmanager
def serve(
    upstream: str,
    *,
    overrides: dict[str, Any] | None = None,
    stages: list[Any] | None = None,
    load: Callable[[], object] | None = None,
    **settings: Any,
) -> Iterator[Served]:
    """Serve a gateway to `upstream` until the block ends (then shut down gracefully)."""
    app = open_app(overrides=overrides)
    base = GatewaySettings(upstream=upstream, port=0, optimizer_timeout_s=10.0)
    if load is not None:  # the server's own wiring: a cold chain until `load` returns
        gateway = make_gateway(app, replace(base, **settings), load=load)
    else:
        optimizer = Optimizer(app.config, app.db, stages=stages)
        gateway = Gateway(optimizer, replace(base, **settings))
    config = uvicorn.Config(
        build_app(gateway),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        server_header=False,
        date_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Served(gateway, app, f"http://127.0.0.1:{port}", server)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
