"""`/v1/messages/batches` on the gateway: the Message Batches API over the off-peak queue.

Mount with `Starlette(routes=[*batch_routes(facade), ...])`. Every call is answered by
tars-opt itself (nothing is forwarded): the requests wait in the deferred queue and the
drain sends them upstream with the gateway's own key; the client's key only names whose
batches these are (by a keyed hash) and is never stored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tars_opt.defer.facade import BatchControls, BatchFacade
from tars_opt.errors import BatchRequestError, InputError, TarsOptError
from tars_opt.gateway.headers import error_body
from tars_opt.pipeline.controls import client_key as header_client_key
from tars_opt.pipeline.controls import header_controls
from tars_opt.pipeline.keys import KeyIds
from tars_opt.types import new_request_id

PREFIX = "/v1/messages/batches"
MAX_BODY_BYTES = 256 * 1024 * 1024  # the API's limit for a batch
FacadeSource = BatchFacade | Callable[[], BatchFacade]


def client_key(request: Request) -> str | None:
    """The API key the client sent (x-api-key, else a Bearer token), or None."""
    return header_client_key(request.headers)


def controls_of(request: Request) -> BatchControls:
    """tars-opt's controls from the request headers (read as on /v1/messages);
    BatchRequestError names a bad one."""
    try:
        found = header_controls(request.headers)
    except InputError as exc:
        raise BatchRequestError(f"tars-opt: {exc}") from None
    return BatchControls(
        namespace=found.get("namespace", "default"),
        priority=found.get("priority", "normal"),
        cache_mode=found.get("cache_mode", "use"),
        route=found.get("route", True),
        session=found.get("session"),
    )


def _error(status: int, kind: str, message: str, request_id: str) -> Response:
    return Response(
        error_body(kind, message, request_id),
        status_code=status,
        headers=_headers(request_id),
        media_type="application/json",
    )


def _headers(request_id: str) -> dict[str, str]:
    return {"request-id": request_id, "x-tars-opt-request-id": request_id}


def _no_upstream_key(facade: BatchFacade) -> str | None:
    """Why this gateway cannot send batches later (its drain has no key), or None."""
    config = facade.config
    if config.backend != "anthropic" or not config.defer.serve_drains:
        return None  # offline, or another process drains with its own environment
    if os.environ.get(config.api.key_env):
        return None
    return (
        f"tars-opt: batches are sent later by the gateway's drain with the gateway's own key, "
        f"but {config.api.key_env} is not set where `tars-opt serve` runs (the client's key is "
        f"never stored): set {config.api.key_env} for serve, or send the batch to the API directly"
    )


def batch_routes(
    source: FacadeSource,
    *,
    key_of: Callable[[Request], str | None] = client_key,
) -> list[Route]:
    """The Message Batches routes, answered by `source` (a BatchFacade, or a callable
    returning one per request). `key_of` gives the key that names the client's batches
    (default: the key the client sent)."""
    keys: dict[int, KeyIds] = {}

    def facade_of() -> BatchFacade:
        return source if isinstance(source, BatchFacade) else source()

    def key_id(facade: BatchFacade, request: Request) -> str | None:
        ids = keys.get(id(facade.db))
        if ids is None:
            ids = keys[id(facade.db)] = KeyIds(facade.db)
        return ids.of(key_of(request))

    def endpoint(work: Callable[..., Any]) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            request_id = new_request_id()
            try:
                body = None
                if request.method == "POST":
                    body = await _body(request)
                facade = facade_of()
                base_url = str(request.base_url).rstrip("/")

                def run() -> Any:
                    return work(facade, request, base_url, key_id(facade, request), body)

                answer = await run_in_threadpool(run)
            except BatchRequestError as exc:
                return _error(exc.status, exc.kind, str(exc), request_id)
            except TarsOptError as exc:  # the store failed: retryable for the SDK
                return _error(500, "api_error", f"tars-opt: {exc}", request_id)
            if isinstance(answer, Response):
                answer.headers.update(_headers(request_id))
                return answer
            return JSONResponse(answer, headers=_headers(request_id))

        return handle

    def create(facade: BatchFacade, request: Request, base: str, key: str | None, body: Any):
        problem = _no_upstream_key(facade)
        if problem is not None:
            raise BatchRequestError(problem, status=403, kind="permission_error")
        return facade.create(body, base_url=base, key_id=key, controls=controls_of(request))

    def listing(facade: BatchFacade, request: Request, base: str, key: str | None, _: Any):
        q = request.query_params
        try:
            limit = int(q.get("limit", 20))
        except ValueError:
            raise BatchRequestError("limit: Input should be a valid integer") from None
        return facade.list(
            base_url=base,
            key_id=key,
            limit=limit,
            after_id=q.get("after_id"),
            before_id=q.get("before_id"),
        )

    def batch_id(request: Request) -> str:
        return str(request.path_params["batch_id"])

    def retrieve(facade: BatchFacade, request: Request, base: str, key: str | None, _: Any):
        return facade.retrieve(batch_id(request), base_url=base, key_id=key)

    def cancel(facade: BatchFacade, request: Request, base: str, key: str | None, _: Any):
        return facade.cancel(batch_id(request), base_url=base, key_id=key)

    def delete(facade: BatchFacade, request: Request, base: str, key: str | None, _: Any):
        return facade.delete(batch_id(request), key_id=key)

    def results(facade: BatchFacade, request: Request, base: str, key: str | None, _: Any):
        lines: Iterator[str] = facade.results(batch_id(request), key_id=key)
        return StreamingResponse(lines, media_type="application/x-jsonl")

    one = PREFIX + "/{batch_id}"
    return [
        Route(PREFIX, endpoint(create), methods=["POST"]),
        Route(PREFIX, endpoint(listing), methods=["GET"]),
        Route(one, endpoint(retrieve), methods=["GET"]),
        Route(one, endpoint(delete), methods=["DELETE"]),
        Route(one + "/cancel", endpoint(cancel), methods=["POST"]),
        Route(one + "/results", endpoint(results), methods=["GET"]),
    ]


async def _body(request: Request) -> Any:
    """The JSON body, within the API's batch size limit."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise BatchRequestError(
            "Request exceeds the maximum allowed size", status=413, kind="request_too_large"
        )
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise BatchRequestError(
            "Request exceeds the maximum allowed size", status=413, kind="request_too_large"
        )
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise BatchRequestError("tars-opt: the request body is not valid JSON") from None
