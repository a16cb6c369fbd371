"""`tars_opt.Anthropic` / `tars_opt.AsyncAnthropic`: the SDK's clients, optimized in-process.

They are `anthropic.Anthropic` / `anthropic.AsyncAnthropic` whose HTTP transport answers
Messages calls through the Optimizer (see `transport`), so every method, argument, return
type and error is the SDK's own. Importing this module imports the SDK (~1.7 s).
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2

from tars_opt.app import App, open_app
from tars_opt.pipeline.optimizer import Optimizer
from tars_opt.sdk.transport import (
    AsyncOptimizingTransport,
    Controls,
    OptimizingTransport,
    _Chain,
)
from tars_opt.sdk.upstream import HttpBackend


def _optimizer(app: App, chain_http: httpx2.Client) -> Optimizer:
    """The client's Optimizer: upstream calls on the client's connections, unless the
    config names the offline backend."""
    backend = None if app.config.backend == "offline" else HttpBackend(chain_http)
    return app.optimizer(backend=backend)


class _OptimizingHttpClient(anthropic.DefaultHttpxClient):
    """The HTTP client a tars-opt client sends through; a copy of the client
    (`with_options`) is handed this one back and keeps its chain and controls."""

    tars_app: App
    tars_optimizer: Optimizer


class _OptimizingAsyncHttpClient(anthropic.DefaultAsyncHttpxClient):
    tars_app: App
    tars_optimizer: Optimizer


class Anthropic(anthropic.Anthropic):
    """`anthropic.Anthropic`, with Messages calls optimized and recorded by tars-opt.

    Takes the SDK's arguments plus tars-opt's controls for every call it makes:
    `namespace`, `session`, `priority` (high|normal|low), `cache_mode` (use|refresh|off),
    `route` (False: keep the body's model); a call's `extra_headers` override them with
    `x-tars-opt-namespace/-session/-priority/-cache: off|refresh/-route: off`. `app` is an
    opened tars-opt (config + database; default `open_app()`). Safe to share between
    threads. The API key goes upstream with each request and is never stored.
    """

    tars_app: App
    tars_optimizer: Optimizer

    def __init__(
        self,
        *,
        namespace: str = "default",
        session: str | None = None,
        priority: str = "normal",
        cache_mode: str = "use",
        route: bool = True,
        app: App | None = None,
        http_client: httpx2.Client | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(http_client, _OptimizingHttpClient):
            outer = http_client
        else:
            controls = Controls(namespace, session, priority, cache_mode, route)
            app = app if app is not None else open_app()
            upstream = http_client if http_client is not None else anthropic.DefaultHttpxClient()
            optimizer = _optimizer(app, upstream)
            transport = OptimizingTransport(_Chain(optimizer, controls), upstream)
            outer = _OptimizingHttpClient(transport=transport)
            outer.tars_app, outer.tars_optimizer = app, optimizer
        super().__init__(http_client=outer, **kwargs)
        self.tars_app, self.tars_optimizer = outer.tars_app, outer.tars_optimizer


class AsyncAnthropic(anthropic.AsyncAnthropic):
    """`anthropic.AsyncAnthropic`, with Messages calls optimized and recorded by tars-opt.

    The same controls as `Anthropic`. The chain runs on worker threads, never on the event
    loop; many tasks may share one client.
    """

    tars_app: App
    tars_optimizer: Optimizer

    def __init__(
        self,
        *,
        namespace: str = "default",
        session: str | None = None,
        priority: str = "normal",
        cache_mode: str = "use",
        route: bool = True,
        app: App | None = None,
        http_client: httpx2.AsyncClient | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(http_client, _OptimizingAsyncHttpClient):
            outer = http_client
        else:
            controls = Controls(namespace, session, priority, cache_mode, route)
            app = app if app is not None else open_app()
            upstream = (
                http_client if http_client is not None else anthropic.DefaultAsyncHttpxClient()
            )
            chain_http = anthropic.DefaultHttpxClient()
            optimizer = _optimizer(app, chain_http)
            transport = AsyncOptimizingTransport(_Chain(optimizer, controls), upstream, chain_http)
            outer = _OptimizingAsyncHttpClient(transport=transport)
            outer.tars_app, outer.tars_optimizer = app, optimizer
        super().__init__(http_client=outer, **kwargs)
        self.tars_app, self.tars_optimizer = outer.tars_app, outer.tars_optimizer
