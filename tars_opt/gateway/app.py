"""The ASGI app: POST /v1/messages through the Optimizer, everything else passed through.

Upstream calls are raw HTTP on httpx2 (the client the SDK is built on) with retries off:
the agent's own SDK retries what the gateway mirrors back. The stages and the store run
on worker threads under a deadline; ledger rows are written after the answer, by the
Recorder, from a local journal each row is appended to before its answer is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import anyio
import httpx2
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from tars_opt.backends import betas
from tars_opt.backends.messages import message_result
from tars_opt.errors import BackendError, BudgetExceeded, InputError, Refusal
from tars_opt.gateway.capture import Capture, Seen
from tars_opt.gateway.guard import Guard
from tars_opt.gateway.headers import error_body, forwarded, relayed
from tars_opt.gateway.metrics import Metrics
from tars_opt.gateway.recorder import Recorder
from tars_opt.gateway.settings import GatewaySettings
from tars_opt.gateway.stream import StreamReader
from tars_opt.pipeline.controls import client_key, header_controls
from tars_opt.pipeline.optimizer import Optimizer
from tars_opt.pipeline.sse import message_stream
from tars_opt.tokens import estimate_params
from tars_opt.types import BackendResult, Decision, Prepared, Reply, Request, Source

log = logging.getLogger("tars_opt.gateway")

H_ID = "x-tars-opt-request-id"
H_SOURCE = "x-tars-opt-source"
H_COST = "x-tars-opt-cost"
H_SAVED = "x-tars-opt-saved"
# The API's error types by status, for the gateway's own answers.
_KIND = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
}


def refusal_response(refusal: Refusal, request_id: str | None = None) -> Response:
    """The HTTP answer of a request the gateway refused itself."""
    headers = dict(refusal.headers)
    if request_id:
        headers[H_ID] = request_id
    headers.setdefault(H_SOURCE, "tars-opt")
    return Response(
        error_body(_KIND.get(refusal.status, "api_error"), str(refusal), request_id),
        status_code=refusal.status,
        headers=headers,
        media_type="application/json",
    )


@dataclass
class _Call:
    """One /v1/messages request on its way: what is sent and what records it."""

    prepared: Prepared
    content: bytes
    # The chain that prepared it (cold or warm) prices and records it too.
    opt: Optimizer
    reservation: Any = None
    source: str = "api"  # api | unoptimized (fail-open) | shadow
    would: Prepared | None = None  # shadow: what the stages would have sent
    # Betas the stages' changes need (context_management), merged into the client's.
    betas: tuple[str, ...] = ()
    seen: Seen | None = None  # gateway.capture: the request as it came, to capture


@dataclass
class _Answer:
    """A stage's answer (a cache hit) and the request as the stages saw it."""

    request: Request
    reply: Reply


class RelayResponse(StreamingResponse):
    """A streamed body that always closes its source when the response ends, however it
    ends: a client that hangs up cancels the upstream request at once."""

    def __init__(
        self, content: AsyncIterator[bytes], closer: Callable[[], Awaitable[None]], **kw: Any
    ) -> None:
        super().__init__(content, **kw)
        self._closer = closer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                aclose = getattr(self.body_iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
                await self._closer()


class Gateway:
    """The gateway's state: the Optimizer, the upstream client, the ledger writer."""

    def __init__(
        self,
        optimizer: Optimizer,
        settings: GatewaySettings,
        *,
        cold: Optimizer | None = None,
        warm: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        self._optimizer = optimizer
        # Until `warm()` says the embedding model is loaded, requests use `cold`: the same
        # chain without its semantic parts, so no request waits for the model.
        self._cold = cold
        self._warm = warm
        self.recorder = Recorder(journal_dir=optimizer.config.resolved_data_dir() / "journal")
        self.recorder.replay(optimizer.ledger)
        self.metrics = Metrics()
        self.capture = Capture(settings.capture_dir) if settings.capture_dir else None
        self.started = time.time()
        self._budget_checked = float("-inf")  # written by the recorder thread only
        self.client: httpx2.AsyncClient | None = None
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="tars-opt-stages")

    # ----- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self.client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(
                connect=s.connect_timeout_s, read=s.read_timeout_s, write=60.0, pool=60.0
            ),
            limits=httpx2.Limits(max_connections=1000, max_keepalive_connections=100),
            follow_redirects=False,
        )

    async def close(self) -> None:
        """After the last request: close the upstream client, write every row left."""
        if self.client is not None:
            await self.client.aclose()
        await anyio.to_thread.run_sync(self.recorder.close)
        self._pool.shutdown(wait=False)

    @property
    def optimizer(self) -> Optimizer:
        if self._cold is not None and self._warm is not None and not self._warm():
            return self._cold
        return self._optimizer

    # ----- helpers -----------------------------------------------------------------
    def _url(self, request: HttpRequest) -> str:
        query = request.url.query
        return self.settings.upstream + request.url.path + (f"?{query}" if query else "")

    def _upstream_headers(
        self, request: HttpRequest, *, identity: bool
    ) -> tuple[list[tuple[str, str]], str | None]:
        """Headers to send upstream and the API key that pays. With a gateway token the
        client's credential is the token, so the gateway's own key replaces it; a client
        without a key gets the gateway's only when use_own_key is on."""
        s = self.settings
        raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        drop = ["accept-encoding"] if identity else []
        key = client_key(request.headers)
        if s.token is not None or (key is None and s.use_own_key and s.own_key):
            drop += ["x-api-key", "authorization"]
            headers = forwarded(raw, drop=drop)
            headers.append(("x-api-key", s.own_key or ""))
            key = s.own_key
        else:
            headers = forwarded(raw, drop=drop)
        if identity:
            # The gateway reads this body (usage, the answer), so it asks for it unencoded.
            headers.append(("accept-encoding", "identity"))
        return headers, key

    async def _body(self, request: HttpRequest) -> bytes:
        limit = self.settings.max_bytes(request.url.path)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refusal(413, f"Request exceeds the maximum allowed size ({limit} bytes)")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.wrap_future(self._pool.submit(fn, *args))

    def _client(self) -> httpx2.AsyncClient:
        if self.client is None:
            raise RuntimeError("the gateway is not started")
        return self.client

    # ----- routes ------------------------------------------------------------------
    async def messages(self, request: HttpRequest) -> Response:
        """POST /v1/messages: optimize, send, relay, record."""
        try:
            raw = await self._body(request)
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                # Not a body the gateway can read: the API says what is wrong with it.
                return await self._relay(request, raw, route="messages")
            try:
                controls = header_controls(request.headers)
                ask = Request.from_body(body, **controls, defer=False)
            except InputError as exc:
                raise Refusal(400, f"tars-opt: {exc}") from None
            except (TypeError, ValueError):
                return await self._relay(request, raw, route="messages")
            seen = self.capture.seen(body, controls) if self.capture is not None else None
            headers, key = self._upstream_headers(request, identity=True)
            outcome = await self._prepare(ask, key, raw)
        except Refusal as refusal:
            self.metrics.error("messages", refusal.status)
            return refusal_response(refusal)
        if isinstance(outcome, _Answer):
            self._captured(seen, outcome.reply.content)
            return self._cached(outcome.reply, outcome.request)
        outcome.seen = seen
        if ask.stream:
            return await self._stream(request, outcome, headers)
        return await self._json(request, outcome, headers)

    async def _prepare(self, ask: Request, key: str | None, raw: bytes) -> _Call | _Answer:
        """The stages on a worker thread, under the deadline; fail-open when they fail."""
        s = self.settings
        opt = self.optimizer
        work = self._pool.submit(self._prepare_sync, opt, ask, key)
        try:
            outcome = await asyncio.wait_for(asyncio.wrap_future(work), s.optimizer_timeout_s)
        except BudgetExceeded as exc:
            raise Refusal(402, str(exc)) from None
        except TimeoutError:
            work.add_done_callback(self._abandoned)
            limit = s.optimizer_timeout_s
            reason = f"the optimizer took longer than gateway.optimizer_timeout_s ({limit:g} s)"
            return self._fail_open(ask, raw, reason)
        except Exception as exc:
            log.warning(
                "optimizer failed", extra={"request_id": ask.request_id, "error": repr(exc)}
            )
            return self._fail_open(ask, raw, f"the optimizer failed: {type(exc).__name__}: {exc}")
        if isinstance(outcome, _Answer):
            return outcome
        prepared, reservation = outcome
        if s.shadow:
            original = self._as_sent(ask, [Decision("gateway", "shadow", "sent unchanged")])
            return _Call(original, raw, opt, source="shadow", would=prepared)
        needs = tuple(betas.added(prepared.params, ask.extra))
        return _Call(prepared, _encode(prepared.params, ask.stream), opt, reservation, betas=needs)

    def _prepare_sync(
        self, opt: Optimizer, ask: Request, key: str | None
    ) -> _Answer | tuple[Prepared, Any]:
        if key is not None:
            ask = replace(ask, key_id=opt.key_ids.of(key))
        if self.settings.shadow:
            prepared = opt.prepare(replace(ask, dry_run=True))
            assert isinstance(prepared, Prepared)  # no stage answers a dry run
            return prepared, None
        held: list[Request] = []
        prepared = opt.prepare(ask, on_answer=lambda q, r: held.append(q))
        if isinstance(prepared, Reply):
            if opt is self._cold:
                prepared.decisions.append(_COLD_NOTE)
            return _Answer(held[0] if held else ask, prepared)
        if opt is self._cold:
            prepared.decisions.append(_COLD_NOTE)
        reservation = self._reserve(opt, prepared)
        opt.before_send(prepared)
        return prepared, reservation

    def _reserve(self, opt: Optimizer, prepared: Prepared) -> Any:
        """A budget reservation where one can change the answer: under `block`, concurrent
        requests must see each other's cost before the month's budget refuses them. Under
        `warn` and `defer` nothing is refused, and estimating every request's size would
        cost a few ms of CPU each, so the row settles the spend when it is written."""
        if opt.config.budget.policy != "block":
            return None
        return opt.budget.reserve(prepared)

    def _abandoned(self, work: Future[Any]) -> None:
        """Stages that finished after the deadline: their request went unoptimized, so only
        a budget reservation they made needs undoing."""
        with contextlib.suppress(Exception):
            outcome = work.result()
            if isinstance(outcome, tuple) and outcome[1] is not None:
                opt = self.optimizer
                self.recorder.submit("abandoned", lambda: opt.budget.settle(outcome[1]))

    def _as_sent(self, ask: Request, decisions: list[Decision]) -> Prepared:
        """`ask` going out as the client sent it (fail-open, shadow)."""
        model = ask.client_model
        unknown = not (model and self.optimizer.prices.known(model))
        sent = replace(ask, model=model, forced_model=True)
        return Prepared(sent, sent.to_body(), decisions, time.perf_counter(), cost_unknown=unknown)

    def _fail_open(self, ask: Request, raw: bytes, reason: str) -> _Call:
        if not self.settings.fail_open:
            raise Refusal(
                503,
                f"tars-opt could not optimize this request ({reason}) and gateway.fail_open is "
                "false; retry, or set gateway.fail_open: true to send such requests unoptimized",
            )
        self.metrics.fail_open += 1
        note = f"{reason}: sent unoptimized (gateway.fail_open)"
        call = self._as_sent(ask, [Decision("gateway", "fail-open", note, {"warning": note})])
        return _Call(call, raw, self.optimizer, source="unoptimized")

    def _cached(self, reply: Reply, ask: Request) -> Response:
        """A stage's answer (a response-cache hit), in the shape the client asked for."""
        opt = self.optimizer
        row = opt.ledger.row(opt.call_record(ask, reply))
        self.recorder.submit_row(reply.request_id, opt.ledger, row)
        self.metrics.request("messages", reply.source)
        self.metrics.money(reply.cost, reply.baseline_cost - reply.cost)
        headers = {H_ID: reply.request_id, H_SOURCE: reply.source}
        message = reply.to_message()
        if ask.stream:
            return StreamingResponse(
                message_stream(message), media_type="text/event-stream", headers=headers
            )
        headers.update(_money_headers(reply))
        return Response(
            json.dumps(message).encode(), media_type="application/json", headers=headers
        )

    async def _send(
        self, request: HttpRequest, call: _Call, headers: list[tuple[str, str]], *, stream: bool
    ) -> httpx2.Response:
        """Send upstream; a failure to reach it is recorded and answered 502/504."""
        client = self._client()
        outgoing = client.build_request(
            "POST",
            self._url(request),
            headers=betas.with_betas(headers, call.betas),
            content=call.content,
        )
        started = time.perf_counter()
        try:
            response = await client.send(outgoing, stream=stream)
        except httpx2.TimeoutException as exc:
            self._failed(call, BackendError(f"upstream timed out: {exc}", kind="timeout"))
            raise Refusal(
                504,
                f"tars-opt: the upstream {self.settings.upstream} did not answer in time "
                f"({type(exc).__name__}); raise gateway.connect_timeout_s or read_timeout_s",
            ) from None
        except httpx2.TransportError as exc:
            self._failed(
                call, BackendError(f"upstream unreachable: {exc}", kind="connection_error")
            )
            raise Refusal(
                502,
                f"tars-opt could not reach the upstream {self.settings.upstream} "
                f"({type(exc).__name__}); check that it is up, or --upstream",
            ) from None
        self.metrics.upstream_latency(time.perf_counter() - started)
        return response

    async def _json(
        self, request: HttpRequest, call: _Call, headers: list[tuple[str, str]]
    ) -> Response:
        try:
            response = await self._send(request, call, headers, stream=False)
        except Refusal as refusal:
            self.metrics.error("messages", refusal.status)
            return refusal_response(refusal, call.prepared.request.request_id)
        if response.status_code != 200:
            return self._mirror_error(call, response)
        api_id = response.headers.get("request-id")
        try:
            result = message_result(json.loads(response.content), api_id)
        except ValueError as exc:
            self._failed(call, BackendError(f"unreadable answer: {exc}", kind="bad_response"))
            return self._mirror(response, call, call.source)
        opt = call.opt
        if call.source == "api" and not call.prepared.cost_unknown:
            retry = await self._in_pool(opt.escalation, call.prepared, result)
            if retry is not None:
                escalated = await self._escalate(request, call, result, retry, headers)
                if isinstance(escalated, Response):
                    return escalated
                return self._mirror(response, call, call.source, escalated)
        reply = self._finish(call, result)
        return self._mirror(response, call, call.source, reply)

    async def _escalate(
        self,
        request: HttpRequest,
        call: _Call,
        first: BackendResult,
        retry: Prepared,
        headers: list[tuple[str, str]],
    ) -> Response | Reply:
        """Re-ask on the stronger tier a stage asked for: its answer, or - when the re-ask
        cannot be made or fails - the first answer's Reply (already recorded)."""
        opt = call.opt
        first_reply = self._finish(call, first, notify=False)
        try:
            reservation = await self._in_pool(self._reserve, opt, retry)
        except BudgetExceeded:
            return first_reply
        again = _Call(retry, _encode(retry.params, False), opt, reservation, betas=call.betas)
        try:
            response = await self._send(request, again, headers, stream=False)
        except Refusal:
            return first_reply
        if response.status_code != 200:
            self._mirror_error(again, response)
            return first_reply
        try:
            result = message_result(
                json.loads(response.content), response.headers.get("request-id")
            )
        except ValueError:
            return first_reply
        reply = self._finish(again, result, escalated_from=call.prepared.request.request_id)
        # The headers tell what the answer cost in all (both rows); the rows stay apart.
        both = replace(
            reply,
            cost=reply.cost + first_reply.cost,
            baseline_cost=reply.baseline_cost + first_reply.baseline_cost,
        )
        return self._mirror(response, again, reply.source, both)

    def _finish(
        self,
        call: _Call,
        result: BackendResult,
        *,
        escalated_from: str | None = None,
        notify: bool = True,
        error: str | None = None,
    ) -> Reply:
        """Price the answer now; record it (and let the stages see it) off the path."""
        opt = call.opt
        prepared = call.prepared
        source: Source = "shadow" if call.source == "shadow" else "api"
        reply = opt.price(prepared, result, source=source, escalated_from=escalated_from)
        if call.would is not None:
            reply = _shadowed(opt, call.would, result, reply)
        rid = prepared.request.request_id

        record = opt.call_record(
            prepared.request,
            reply,
            api_request_id=result.api_request_id,
            escalated_from=escalated_from,
            error=error,
        )

        def then() -> None:
            if call.reservation is not None:
                opt.budget.settle(call.reservation)
            self._check_budget(opt, prepared)
            if error is None:
                log.info(
                    "answered",
                    extra={"request_id": rid, "model": reply.model, "source": reply.source,
                           "cost": reply.cost},
                )  # fmt: skip

        self.recorder.submit_row(rid, opt.ledger, opt.ledger.row(record), then)
        if escalated_from is None:  # the client's request (a re-ask is the chain's own)
            self._captured(call.seen, result.content if error is None else None)
        cacheable = notify and error is None and call.source == "api" and not result.usage.estimated
        if cacheable:
            self.recorder.submit(rid, lambda: opt.notify(prepared, reply), must=False)
        self.metrics.request("messages", call.source)
        self.metrics.money(reply.cost, reply.baseline_cost - reply.cost)
        return reply

    def _check_budget(self, opt: Optimizer, prepared: Prepared) -> None:
        """The budget's alerts (and the warning for a call sent past a spent budget), at
        most once a second: each check sums the month's ledger."""
        now = time.monotonic()
        if now - self._budget_checked < 1.0:
            return
        self._budget_checked = now
        warning = opt.check_budget(prepared)
        if warning is not None:
            log.warning("budget", extra={"warning": warning.reason})

    def _failed(self, call: _Call, error: BackendError) -> None:
        opt = call.opt
        prepared = call.prepared
        log.warning("failed", extra={"request_id": prepared.request.request_id,
                                     "error": str(error)})  # fmt: skip
        row = opt.ledger.row(opt.failure_record(prepared, error))

        def then() -> None:
            if call.reservation is not None:
                opt.budget.settle(call.reservation)

        self.recorder.submit_row(prepared.request.request_id, opt.ledger, row, then)
        self._captured(call.seen, None)

    def _captured(self, seen: Seen | None, answer: Any) -> None:
        """Capture a request off the response path (gateway.capture)."""
        capture = self.capture
        if seen is not None and capture is not None:
            self.recorder.submit("capture", lambda: capture.write(seen, answer), must=False)

    def _mirror_error(self, call: _Call, response: httpx2.Response) -> Response:
        """An upstream error: recorded, and given back with its status, headers, body."""
        kind, message = _api_error(response.content)
        self._failed(call, BackendError(f"API error {response.status_code} {kind}: {message}",
                                        kind=kind, status=response.status_code))  # fmt: skip
        self.metrics.error("messages", response.status_code)
        return self._mirror(response, call, call.source)

    def _mirror(
        self, response: httpx2.Response, call: _Call, source: str, reply: Reply | None = None
    ) -> Response:
        headers = relayed(response.headers.multi_items(), decoded=True)
        headers[H_ID] = (reply.request_id if reply else None) or call.prepared.request.request_id
        headers[H_SOURCE] = source
        if reply is not None:
            headers.update(_money_headers(reply))
        return Response(response.content, status_code=response.status_code, headers=headers)

    async def _stream(
        self, request: HttpRequest, call: _Call, headers: list[tuple[str, str]]
    ) -> Response:
        """Relay the upstream's events as they arrive; record from the usage they carry."""
        try:
            response = await self._send(request, call, headers, stream=True)
        except Refusal as refusal:
            self.metrics.error("messages", refusal.status)
            return refusal_response(refusal, call.prepared.request.request_id)
        if response.status_code != 200:
            await response.aread()
            await response.aclose()
            return self._mirror_error(call, response)
        reader = StreamReader()
        api_id = response.headers.get("request-id")
        done = False

        async def events() -> AsyncIterator[bytes]:
            nonlocal done
            ended: str | None = "client disconnected"
            try:
                async for chunk in response.aiter_raw():
                    reader.feed(chunk)
                    if (reader.stopped or reader.error is not None) and not done:
                        # The row is journaled before the client sees message_stop or an
                        # error event: a client reading its row next must find it.
                        done = True
                        self._stream_ended(call, reader, api_id, None)
                    yield chunk
                ended = None
            except httpx2.TransportError as exc:
                ended = f"upstream broke mid-stream ({type(exc).__name__})"
                raise
            finally:
                if not done:
                    done = True
                    self._stream_ended(call, reader, api_id, ended)

        out = relayed(response.headers.multi_items(), decoded=True)
        out[H_ID] = call.prepared.request.request_id
        out[H_SOURCE] = call.source
        return RelayResponse(events(), response.aclose, status_code=200, headers=out)

    def _stream_ended(
        self, call: _Call, reader: StreamReader, api_id: str | None, ended: str | None
    ) -> None:
        """The one row of a streamed request: whole when message_stop came, else what was
        relayed before the stream stopped (a client hanging up, a broken upstream),
        marked estimated."""
        prompt = estimate_params(call.prepared.params)
        if reader.error is not None:
            kind = str(reader.error.get("type") or "api_error")
            error = f"{kind}: {reader.error.get('message', '')} (mid-stream)"
            self._finish(call, reader.partial(api_id, prompt), error=error)
            self.metrics.error("messages", 200)
        elif ended is None and reader.stopped:
            result = reader.result(api_id)
            self._finish(call, result, notify=reader.faithful)
        else:
            why = ended or "the stream ended before message_stop"
            self._finish(call, reader.partial(api_id, prompt), error=f"{why}: partial answer")

    async def _relay(self, request: HttpRequest, body: bytes | None, route: str) -> Response:
        """Pass a request through unchanged and relay the answer as it comes."""
        if body is None:
            body = await self._body(request)
        headers, _ = self._upstream_headers(request, identity=False)
        client = self._client()
        outgoing = client.build_request(
            request.method,
            self._url(request),
            headers=headers,
            content=body if body or request.method not in ("GET", "HEAD") else None,
        )
        try:
            response = await client.send(outgoing, stream=True)
        except httpx2.TransportError as exc:
            raise Refusal(
                502,
                f"tars-opt could not reach the upstream {self.settings.upstream} "
                f"({type(exc).__name__}); check that it is up, or --upstream",
            ) from None
        if response.status_code >= 400:
            self.metrics.error(route, response.status_code)
        self.metrics.request(route, "passthrough")
        out = relayed(response.headers.multi_items())
        out[H_SOURCE] = "passthrough"
        return RelayResponse(
            response.aiter_raw(), response.aclose, status_code=response.status_code, headers=out
        )

    async def passthrough(self, request: HttpRequest) -> Response:
        try:
            return await self._relay(request, None, route="other")
        except Refusal as refusal:
            self.metrics.error("other", refusal.status)
            return refusal_response(refusal)

    async def health(self, request: HttpRequest) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "upstream": self.settings.upstream,
                "shadow": self.settings.shadow,
                "semantic_ready": self._warm() if self._warm is not None else True,
                "ledger_backlog": self.recorder.backlog,
                "uptime_s": round(time.time() - self.started, 1),
            }
        )

    async def metrics_text(self, request: HttpRequest) -> Response:
        return PlainTextResponse(
            self.metrics.render(self.recorder.backlog),
            media_type="text/plain; version=0.0.4",
        )

    async def request_row(self, request: HttpRequest) -> Response:
        """GET /tars-opt/requests/{id}: a request's cost once its row is written."""
        rid = request.path_params["request_id"]
        row = await self._in_pool(self.optimizer.ledger.get, rid)
        if row is None:
            if self.recorder.pending(rid):
                return JSONResponse({"request_id": rid, "status": "pending"}, status_code=202)
            return refusal_response(Refusal(404, f"tars-opt has no request {rid}"))
        return JSONResponse(_row_summary(row))


_COLD_NOTE = Decision(
    "gateway",
    "cold",
    "the embedding model was still loading: semantic stages (semantic cache, learned "
    "routing, relevance pruning, tool selection by meaning) were skipped",
)


def _encode(params: dict[str, Any], stream: bool) -> bytes:
    """The body to send: the stages' params (the Request holds `stream` as how to send)."""
    if stream:
        params = {**params, "stream": True}
    return json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode()


def _money_headers(reply: Reply) -> dict[str, str]:
    if reply.cost_unknown:
        return {H_COST: "unknown", H_SAVED: "unknown"}
    return {H_COST: f"{reply.cost:.8f}", H_SAVED: f"{reply.baseline_cost - reply.cost:.8f}"}


def _api_error(content: bytes) -> tuple[str, str]:
    try:
        err = json.loads(content).get("error") or {}
        return str(err.get("type") or "api_error"), str(err.get("message") or "")[:300]
    except (ValueError, AttributeError):
        return "api_error", content[:200].decode("utf-8", "replace")


def _shadowed(opt: Optimizer, would: Prepared, result: BackendResult, sent: Reply) -> Reply:
    """Shadow mode: the answer cost what it cost and nothing was saved; the trace carries
    what the stages would have sent and an estimate of what that would have saved: this
    answer's usage less the input the stages would have removed, on the model they chose."""
    if sent.cost_unknown or would.cost_unknown:
        return sent
    usage = result.usage
    kept = max(0, usage.input_tokens - would.request.removed_tokens)
    trimmed = replace(result, usage=replace(usage, input_tokens=kept, estimated=True))
    priced = opt.price(would, trimmed)
    would_save = max(0.0, sent.cost - priced.cost)
    changed = [d.to_dict() for d in would.decisions if d.stage != "classify"]
    sent.baseline_cost = sent.cost
    sent.saved_by_strategy = dict.fromkeys(sent.saved_by_strategy, 0.0)
    sent.decisions.append(
        Decision(
            "shadow",
            "would-save",
            f"the stages would have sent it on {priced.model}, for an estimated "
            f"${would_save:.6f} less",
            {"would_save": would_save, "model": priced.model, "decisions": changed},
        )
    )
    return sent


def _row_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "request_id": row["request_id"],
        "status": "error" if row.get("error") else "recorded",
        "source": row["source"],
        "model": row["model"],
        "cost": row["cost"],
        "baseline_cost": row["baseline_cost"],
        "saved": row["baseline_cost"] - row["cost"],
        "cost_unknown": bool(row.get("cost_unknown")),
        "tokens_estimated": bool(row.get("tokens_estimated")),
        "usage": {
            "input_tokens": row["input_tokens"],
            "cache_creation_5m": row["cache_write_5m"],
            "cache_creation_1h": row["cache_write_1h"],
            "cache_read": row["cache_read"],
            "output_tokens": row["output_tokens"],
        },
        "error": row.get("error"),
        "ts": row["ts_iso"],
    }


ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def build_app(gateway: Gateway, *, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The ASGI app for `gateway`; `extra_routes` (the batches facade) are matched before
    the pass-through that takes every other path."""
    routes: list[BaseRoute] = [
        Route("/v1/messages", gateway.messages, methods=["POST"]),
        Route("/tars-opt/health", gateway.health, methods=["GET"]),
        Route("/tars-opt/metrics", gateway.metrics_text, methods=["GET"]),
        Route("/tars-opt/requests/{request_id}", gateway.request_row, methods=["GET"]),
        *extra_routes,
        Route("/{path:path}", gateway.passthrough, methods=ALL_METHODS),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(Guard, settings=gateway.settings)
    return app
