"""The HTTP transports behind `tars_opt.Anthropic` / `AsyncAnthropic`.

`POST .../v1/messages` is answered in-process by the Optimizer: JSON, or SSE when the body
asks for a stream (a live call's bytes relayed as they arrive; an answer tars-opt gives
itself, such as a cache hit, as the events of the finished Message). Every other path
(count_tokens, models, batches, files ...) goes to the real transport unchanged. The
caller's SDK sees the API's own responses, so it returns its own types and raises its own
errors, and its retry policy applies as it would against the API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import httpx2

from tars_opt.errors import (
    BudgetExceeded,
    InputError,
    TarsOptError,
    UpstreamBroken,
    UpstreamFailure,
)
from tars_opt.pipeline.controls import client_key, header_controls
from tars_opt.pipeline.optimizer import Optimizer
from tars_opt.pipeline.sse import message_stream
from tars_opt.sdk.upstream import HOP_HEADERS, Call, bound
from tars_opt.types import PRIORITIES, Reply, Request

log = logging.getLogger("tars_opt.sdk")

# Enough workers for many concurrent streams: each holds one for as long as it lasts.
MAX_WORKERS = 64


@dataclass(frozen=True)
class Controls:
    """tars-opt's controls for a client's requests (the same names the gateway reads
    from `x-tars-opt-*` headers)."""

    namespace: str = "default"
    session: str | None = None
    priority: str = "normal"
    cache_mode: str = "use"
    route: bool = True

    def __post_init__(self) -> None:
        if not self.namespace:
            raise InputError("namespace must be non-empty text")
        if self.priority not in PRIORITIES:
            raise InputError(f"priority must be one of {', '.join(PRIORITIES)}")
        if self.cache_mode not in ("use", "refresh", "off"):
            raise InputError("cache_mode must be use, refresh or off")

    def with_headers(self, headers: httpx2.Headers) -> Controls:
        """These controls with a request's `x-tars-opt-*` headers applied (they win)."""
        found = header_controls(headers)
        return replace(self, **found) if found else self


def is_messages(request: httpx2.Request) -> bool:
    """Whether the optimizer answers this request: a Messages API call."""
    return request.method == "POST" and request.url.path.rstrip("/").endswith("/v1/messages")


def error_response(status: int, kind: str, message: str) -> httpx2.Response:
    """An error in the API's shape that the SDK does not retry."""
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return httpx2.Response(
        status,
        headers={"content-type": "application/json", "x-should-retry": "false"},
        content=json.dumps(body).encode(),
    )


def _relayed(headers: httpx2.Headers) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers.multi_items() if k.lower() not in HOP_HEADERS]


def _tars_headers(reply: Reply, *, money: bool) -> list[tuple[str, str]]:
    out = [("x-tars-opt-request-id", reply.request_id), ("x-tars-opt-source", reply.source)]
    if money and not reply.cost_unknown:
        out += [
            ("x-tars-opt-cost", f"{reply.cost:.8f}"),
            ("x-tars-opt-saved", f"{reply.baseline_cost - reply.cost:.8f}"),
        ]
    return out


class _Chain:
    """What both transports share: reading a caller's request into a chain Request,
    answering it, and turning the outcome into the HTTP response the SDK expects."""

    def __init__(self, optimizer: Optimizer, controls: Controls) -> None:
        self.optimizer = optimizer
        self.controls = controls
        self.pool = ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="tars-opt-client")

    def request_of(self, http: httpx2.Request, body: bytes) -> Request | None:
        """The chain request for a Messages call; None when the body is no Messages body
        (sent on unchanged: the API words its own error). InputError for bad controls."""
        controls = self.controls.with_headers(http.headers)
        try:
            data = json.loads(body)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            return None
        if not isinstance(data.get("max_tokens"), int):
            return None
        return Request.from_body(
            data,
            namespace=controls.namespace,
            session=controls.session,
            priority=controls.priority,
            cache_mode=controls.cache_mode,
            route=controls.route,
            # The caller is waiting for this Message: never queued for later.
            defer=False,
            key_id=self.optimizer.key_ids.of(client_key(http.headers)),
        )

    def answer(self, call: Call, request: Request) -> Reply:
        """Run the chain for `call` (in the calling thread)."""
        with bound(call):
            if request.stream:
                return self.optimizer.ask(request, on_text=_ignore)
            return self.optimizer.ask(request)

    def json_response(self, call: Call, reply: Reply) -> httpx2.Response:
        extra = _tars_headers(reply, money=True)
        answer = call.answer
        if reply.source == "api" and answer is not None and answer[0] == reply.message_id:
            _, status, headers, raw = answer  # the API's own bytes and headers
            return httpx2.Response(status, headers=_relayed(headers) + extra, content=raw)
        return httpx2.Response(
            200,
            headers=[("content-type", "application/json"), *extra],
            content=json.dumps(reply.to_message(), ensure_ascii=False).encode(),
        )

    def sse_headers(self, reply: Reply) -> list[tuple[str, str]]:
        return [("content-type", "text/event-stream"), *_tars_headers(reply, money=True)]

    def failure(self, call: Call, exc: BaseException) -> httpx2.Response:
        """The response for a call the chain could not answer (raises the transport's own
        exception for a broken connection, as the real transport would)."""
        if isinstance(exc, UpstreamFailure):
            headers = _relayed(exc.headers) if exc.headers is not None else []
            return httpx2.Response(exc.status or 500, headers=headers, content=exc.body)
        if isinstance(exc, UpstreamBroken):
            raise _transport_error(exc)
        said = str(exc) if str(exc).startswith("tars-opt") else f"tars-opt: {exc}"
        if isinstance(exc, BudgetExceeded):
            return error_response(403, "permission_error", said)
        if isinstance(exc, InputError):
            return error_response(400, "invalid_request_error", said)
        if isinstance(exc, TarsOptError):
            return error_response(500, "api_error", said)
        raise exc

    def fails_open(self, call: Call, exc: BaseException) -> bool:
        """Whether to send the caller's request on unchanged after the chain failed: a
        stage or the store broke before anything went upstream."""
        if call.sent or isinstance(exc, BudgetExceeded | InputError | UpstreamFailure):
            return False
        if not isinstance(exc, Exception):
            return False
        log.warning(
            "the optimizer failed; request sent unoptimized and not recorded",
            extra={"error": f"{type(exc).__name__}: {exc}"},
        )
        return True

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _transport_error(exc: UpstreamBroken) -> Exception:
    """What the real transport raised, for the caller's SDK to turn into its own error."""
    return exc.cause if exc.cause is not None else httpx2.ConnectError(str(exc))


def _ignore(_: str) -> None:
    return None


class _SyncRelay(httpx2.SyncByteStream):
    """The body of a live stream: the bytes the chain's upstream call hands over, until
    the chain has finished (its ledger row written)."""

    def __init__(self, items: queue.Queue[tuple[str, Any]], call: Call) -> None:
        self.items, self.call = items, call
        self.finished = False

    def __iter__(self) -> Iterator[bytes]:
        while not self.finished:
            kind, value = self.items.get()
            if kind == "data":
                yield value
                continue
            self.finished = True
            if kind == "error" and isinstance(value, UpstreamBroken):
                raise _transport_error(value)
            # Else the API's bytes (an error event included) were all relayed.

    def close(self) -> None:
        """The caller is done reading: stop the upstream call at its next bytes and wait
        for the chain to record it, so the ledger row exists once the stream is closed."""
        self.call.cancelled.set()
        while not self.finished:
            self.finished = self.items.get()[0] != "data"


class _AsyncRelay(httpx2.AsyncByteStream):
    def __init__(self, items: asyncio.Queue[tuple[str, Any]], call: Call) -> None:
        self.items, self.call = items, call
        self.finished = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while not self.finished:
            kind, value = await self.items.get()
            if kind == "data":
                yield value
                continue
            self.finished = True
            if kind == "error" and isinstance(value, UpstreamBroken):
                raise _transport_error(value)

    async def aclose(self) -> None:
        self.call.cancelled.set()
        while not self.finished:
            self.finished = (await self.items.get())[0] != "data"


class OptimizingTransport(httpx2.BaseTransport):
    """The sync transport: Messages calls through the chain, the rest to `upstream`."""

    def __init__(self, chain: _Chain, upstream: httpx2.Client) -> None:
        self.chain = chain
        self.upstream = upstream

    def _passthrough(self, request: httpx2.Request) -> httpx2.Response:
        response = self.upstream.send(request, stream=True)
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=response.stream,
            extensions=response.extensions,
        )

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if not is_messages(request):
            return self._passthrough(request)
        call = Call(request)
        try:
            chained = self.chain.request_of(request, request.read())
        except InputError as exc:
            return self.chain.failure(call, exc)
        if chained is None:
            return self._passthrough(request)
        if chained.stream:
            return self._stream(call, chained)
        try:
            reply = self.chain.answer(call, chained)
        except BaseException as exc:
            if self.chain.fails_open(call, exc):
                return self._passthrough(request)
            return self.chain.failure(call, exc)
        return self.chain.json_response(call, reply)

    def _stream(self, call: Call, chained: Request) -> httpx2.Response:
        items: queue.Queue[tuple[str, Any]] = queue.Queue()
        call.sink = items.put

        def work() -> None:
            try:
                items.put(("done", self.chain.answer(call, chained)))
            except BaseException as exc:
                items.put(("error", exc))

        self.chain.pool.submit(work)
        kind, value = items.get()
        if kind == "head":
            status, headers = value
            ours = [("x-tars-opt-request-id", chained.request_id), ("x-tars-opt-source", "api")]
            return httpx2.Response(
                status, headers=_relayed(headers) + ours, stream=_SyncRelay(items, call)
            )
        if kind == "done":
            return httpx2.Response(
                200,
                headers=self.chain.sse_headers(value),
                content=b"".join(message_stream(value.to_message())),
            )
        if self.chain.fails_open(call, value):
            return self._passthrough(call.request)
        return self.chain.failure(call, value)

    def close(self) -> None:
        self.chain.close()
        self.upstream.close()


class AsyncOptimizingTransport(httpx2.AsyncBaseTransport):
    """The async transport: the chain runs on worker threads (it does blocking work:
    the database, embeddings, the upstream call), never on the event loop."""

    def __init__(
        self, chain: _Chain, upstream: httpx2.AsyncClient, chain_http: httpx2.Client
    ) -> None:
        self.chain = chain
        self.upstream = upstream
        self.chain_http = chain_http  # the chain's own upstream calls, made from threads

    async def _passthrough(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.upstream.send(request, stream=True)
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=response.stream,
            extensions=response.extensions,
        )

    async def _in_thread(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.chain.pool, fn)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if not is_messages(request):
            return await self._passthrough(request)
        call = Call(request)
        body = await request.aread()
        try:
            chained = await self._in_thread(lambda: self.chain.request_of(request, body))
        except InputError as exc:
            return self.chain.failure(call, exc)
        if chained is None:
            return await self._passthrough(request)
        if chained.stream:
            return await self._stream(call, chained)
        try:
            reply = await self._in_thread(lambda: self.chain.answer(call, chained))
        except BaseException as exc:
            if self.chain.fails_open(call, exc):
                return await self._passthrough(request)
            return self.chain.failure(call, exc)
        return self.chain.json_response(call, reply)

    async def _stream(self, call: Call, chained: Request) -> httpx2.Response:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def put(item: tuple[str, Any]) -> None:
            loop.call_soon_threadsafe(items.put_nowait, item)

        call.sink = put

        def work() -> None:
            try:
                put(("done", self.chain.answer(call, chained)))
            except BaseException as exc:
                put(("error", exc))

        self.chain.pool.submit(work)
        try:
            kind, value = await items.get()
        except asyncio.CancelledError:
            call.cancelled.set()
            raise
        if kind == "head":
            status, headers = value
            ours = [("x-tars-opt-request-id", chained.request_id), ("x-tars-opt-source", "api")]
            return httpx2.Response(
                status, headers=_relayed(headers) + ours, stream=_AsyncRelay(items, call)
            )
        if kind == "done":
            return httpx2.Response(
                200,
                headers=self.chain.sse_headers(value),
                content=b"".join(message_stream(value.to_message())),
            )
        if self.chain.fails_open(call, value):
            return await self._passthrough(call.request)
        return self.chain.failure(call, value)

    async def aclose(self) -> None:
        self.chain.close()
        await self.upstream.aclose()
        self.chain_http.close()
