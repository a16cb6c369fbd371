"""The backend of the in-process client: the optimizer's calls go upstream as raw HTTP on
the client's own connection pool, with the headers the SDK put on the caller's request
(key, `anthropic-version`, `anthropic-beta`, ...), and stream bytes go back as they arrive.

Which caller's request a call belongs to travels in a context variable (`bound`): the
Optimizer stays one shared object, while every thread or task answering a request sees
its own headers, event sink and upstream response.
"""

from __future__ import annotations

import contextvars
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2

from tars_opt.backends import BatchInfo, BatchItem, betas
from tars_opt.backends.messages import message_result
from tars_opt.errors import BackendError, StreamCancelled, UpstreamBroken, UpstreamFailure
from tars_opt.pipeline.controls import CONTROL_PREFIX
from tars_opt.pipeline.sse import EventReader, MessageBuilder
from tars_opt.types import BackendResult

# Never sent upstream: tars-opt's own controls, and what httpx sets for the new body.
_NOT_FORWARDED = ("host", "content-length", "transfer-encoding", "connection")
# Not relayed to the SDK: the body it gets is decoded and complete (or re-chunked).
HOP_HEADERS = ("content-length", "content-encoding", "transfer-encoding", "connection")


def upstream_failure(status: int, headers: httpx2.Headers, body: bytes) -> UpstreamFailure:
    """The error for an error status from the API, named by the API's own error body."""
    try:
        err = json.loads(body).get("error") or {}
    except (ValueError, AttributeError):
        err = {}
    kind = str(err.get("type") or "api_error") if isinstance(err, dict) else "api_error"
    detail = str(err.get("message") or "") if isinstance(err, dict) else ""
    return UpstreamFailure(
        f"API error {status} {kind}: {detail}".strip(),
        kind=kind,
        status=status,
        headers=headers,
        body=body,
    )


def broken(exc: httpx2.TransportError) -> UpstreamBroken:
    timeout = isinstance(exc, httpx2.TimeoutException)
    return UpstreamBroken(
        f"the connection to the API failed ({type(exc).__name__})",
        cause=exc,
        kind="timeout" if timeout else "connection_error",
    )


@dataclass
class Call:
    """One caller's request being answered: what upstream calls need from it, and what
    they leave for the answer (the last upstream response, the relayed stream)."""

    request: httpx2.Request
    sink: Callable[[tuple[str, Any]], None] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    sent: bool = False
    # (message id, status, headers, raw body) of the last successful JSON answer.
    answer: tuple[str | None, int, httpx2.Headers, bytes] | None = None
    streamed: bool = False

    def forwarded_headers(self) -> dict[str, str]:
        return {
            k: v
            for k, v in self.request.headers.items()
            if k.lower() not in _NOT_FORWARDED and not k.lower().startswith(CONTROL_PREFIX)
        }

    def upstream(self, path: str, params: dict[str, Any]) -> httpx2.Request:
        """A POST of `params` to `path` beside the caller's URL (its query kept), with the
        betas the optimizer's changes need merged into the caller's."""
        url = self.request.url.copy_with(path=self.request.url.path.rsplit("/v1/", 1)[0] + path)
        headers = self.forwarded_headers()
        if betas.needed(params):
            try:
                original = json.loads(self.request.content)
            except ValueError:
                original = {}
            need = betas.added(params, original if isinstance(original, dict) else {})
            headers = dict(betas.with_betas(list(headers.items()), need))
        return httpx2.Request(
            "POST",
            url,
            headers=headers,
            content=json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode(),
            extensions=dict(self.request.extensions),
        )


_CALL: contextvars.ContextVar[Call | None] = contextvars.ContextVar("tars_opt_call", default=None)


@contextmanager
def bound(call: Call) -> Iterator[Call]:
    """Make `call` the one upstream requests in this thread/task belong to."""
    token = _CALL.set(call)
    try:
        yield call
    finally:
        _CALL.reset(token)


def current() -> Call:
    call = _CALL.get()
    if call is None:
        raise BackendError(
            "no caller request to send for: the in-process client's backend answers only "
            "calls made through tars_opt.Anthropic",
            kind="invalid_request_error",
        )
    return call


def result_from_message(message: Any, request_id: str | None) -> BackendResult:
    """The API's Message as a BackendResult; BackendError when it cannot be read (the call
    was made, but what it cost cannot be known)."""
    try:
        return message_result(message, request_id)
    except ValueError as exc:
        raise BackendError(
            f"the API's answer cannot be read ({exc}): not recorded as answered",
            kind="bad_response",
        ) from None


class HttpBackend:
    """Messages and token counts over the caller's connection pool (`client`), no retries:
    the caller's SDK retries what it would retry against the API itself."""

    name = "anthropic"

    def __init__(self, client: httpx2.Client) -> None:
        self.client = client

    def _open(self, request: httpx2.Request) -> httpx2.Response:
        call = current()
        call.sent = True
        try:
            response = self.client.send(request, stream=True)
        except httpx2.TransportError as exc:
            raise broken(exc) from exc
        if response.status_code >= 400:
            try:
                body = response.read()
            except httpx2.TransportError as exc:
                raise broken(exc) from exc
            finally:
                response.close()
            raise upstream_failure(response.status_code, response.headers, body)
        return response

    def _json(self, path: str, params: dict[str, Any]) -> tuple[httpx2.Response, bytes]:
        call = current()
        response = self._open(call.upstream(path, params))
        try:
            return response, response.read()
        except httpx2.TransportError as exc:
            raise broken(exc) from exc
        finally:
            response.close()

    def send(self, params: dict[str, Any]) -> BackendResult:
        """One Messages call; its raw answer stays with the call for the caller."""
        call = current()
        response, body = self._json("/v1/messages", params)
        try:
            message = json.loads(body)
        except ValueError:
            raise BackendError("the API's answer is not JSON", kind="bad_response") from None
        result = result_from_message(message, response.headers.get("request-id"))
        call.answer = (result.message_id, response.status_code, response.headers, body)
        return result

    def stream(self, params: dict[str, Any], on_text: Callable[[str], None]) -> BackendResult:
        """A streamed call: the bytes go to the call's sink as they arrive (status and
        headers first), text deltas to `on_text`; the result is the Message they add up to."""
        call = current()
        response = self._open(call.upstream("/v1/messages", {**params, "stream": True}))
        reader, builder = EventReader(), MessageBuilder()
        try:
            if call.sink is not None:
                call.streamed = True
                call.sink(("head", (response.status_code, response.headers)))
            for chunk in response.iter_bytes():
                if call.cancelled.is_set():
                    raise StreamCancelled()
                if call.sink is not None:
                    call.sink(("data", chunk))
                for name, data in reader.feed(chunk):
                    builder.add(name, data)
                    delta = data.get("delta") if name == "content_block_delta" else None
                    if isinstance(delta, dict) and delta.get("type") == "text_delta":
                        on_text(str(delta.get("text", "")))
        except httpx2.TransportError as exc:
            raise broken(exc) from exc
        finally:
            response.close()
        if builder.error is not None:
            kind = str(builder.error.get("type") or "api_error")
            raise BackendError(
                f"API error mid-stream {kind}: {builder.error.get('message', '')}", kind=kind
            )
        if builder.message is None or not builder.stopped:
            raise BackendError("the API's stream ended before message_stop", kind="bad_response")
        return result_from_message(builder.message, response.headers.get("request-id"))

    def count_tokens(self, params: dict[str, Any]) -> int:
        """The API's count of a request's input tokens."""
        fields: dict[str, Any] = {
            k: params[k] for k in ("model", "messages", "system", "tools") if k in params
        }
        _, body = self._json("/v1/messages/count_tokens", fields)
        try:
            return int(json.loads(body)["input_tokens"])
        except (ValueError, KeyError, TypeError):
            raise BackendError("the API's token count is unreadable", kind="bad_response") from None

    # Message Batches sent through the client pass through to the API unchanged, and its
    # requests are never deferred: the chain never asks this backend for a batch.
    def _no_batches(self) -> BackendError:
        return BackendError(
            "the in-process client does not defer to Message Batches: use "
            "client.messages.batches (passed through unchanged) or `tars-opt drain`",
            kind="invalid_request_error",
        )

    def submit_batch(self, requests: list[dict[str, Any]]) -> BatchInfo:
        raise self._no_batches()

    def poll_batch(self, batch_id: str) -> BatchInfo:
        raise self._no_batches()

    def batch_results(self, batch_id: str) -> Iterator[BatchItem]:
        raise self._no_batches()

    def cancel_batch(self, batch_id: str) -> BatchInfo:
        raise self._no_batches()

    def list_batches(self, limit: int = 100) -> list[BatchInfo]:
        raise self._no_batches()
