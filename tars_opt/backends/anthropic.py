"""The real Anthropic API through the official SDK.

`import anthropic` costs ~1.7 s, so it happens when this backend is built - which the
Optimizer does only on the path that sends - never at import: `--help`, cache hits,
deferrals, reports and the dashboard stay fast.
Retries and timeouts are the SDK's own, configured from the config.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, cast

from tars_opt.backends import BatchInfo, BatchItem, betas
from tars_opt.errors import BackendError, MissingApiKey
from tars_opt.types import BackendResult, Usage

if TYPE_CHECKING:
    from anthropic.types.messages.batch_create_params import Request as BatchRequest


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None and hasattr(value, "isoformat") else value


class AnthropicBackend:
    """Messages, streaming, token counting and Message Batches on the real SDK."""

    name = "anthropic"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        if not api_key:
            raise MissingApiKey("no API key given")
        self._base_url = base_url
        import anthropic  # lazy: only code that sends builds this backend

        self._client = anthropic.Anthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout_s,
            max_retries=max_retries,
        )

    def __repr__(self) -> str:  # never show the key
        return f"AnthropicBackend(base_url={self._base_url!r})"

    def _arguments(self, params: dict[str, Any], method: Any) -> dict[str, Any]:
        """`params` as the SDK method's arguments: body fields it does not name (newer
        betas, fields this SDK predates) go in `extra_body`, unchanged, and the betas the
        body needs (`context_management`) in the `anthropic-beta` header."""
        known = _parameters(method)
        args = {k: v for k, v in params.items() if k in known}
        extra = {k: v for k, v in params.items() if k not in known}
        if extra:
            args["extra_body"] = extra
        beta = betas.needed(params)
        if beta:
            args["extra_headers"] = {betas.HEADER: betas.merged([], beta)}
        return args

    def send(self, params: dict[str, Any]) -> BackendResult:
        """One Messages call; the SDK retries what is retryable."""
        create = self._client.messages.create
        with _translated_errors():
            message = create(**self._arguments(params, create))
        return to_result(message, getattr(message, "_request_id", None))

    def stream(self, params: dict[str, Any], on_text: Callable[[str], None]) -> BackendResult:
        """A streamed call: `on_text` gets each text delta; usage comes from the final message."""
        args = self._arguments(params, self._client.messages.stream)
        with _translated_errors(), self._client.messages.stream(**args) as stream:
            for text in stream.text_stream:
                on_text(text)
            message = stream.get_final_message()
            request_id = stream.request_id
        return to_result(message, request_id)

    def count_tokens(self, params: dict[str, Any]) -> int:
        """The API's (free, rate-limited) count of a request's input tokens."""
        fields = {k: params[k] for k in ("model", "messages", "system", "tools") if k in params}
        with _translated_errors():
            return int(self._client.messages.count_tokens(**fields).input_tokens)

    def submit_batch(self, requests: list[dict[str, Any]]) -> BatchInfo:
        """Create a Message Batch from [{custom_id, params}]."""
        # One header for the batch: the betas any of its requests needs.
        beta = [b for r in requests for b in betas.needed(r.get("params") or {})]
        headers = {betas.HEADER: betas.merged([], beta)} if beta else None
        with _translated_errors():
            # The queue builds each {custom_id, params} in the shape the API takes.
            batch = cast("list[BatchRequest]", requests)
            created = self._client.messages.batches.create(requests=batch, extra_headers=headers)
            return _batch_info(created)

    def poll_batch(self, batch_id: str) -> BatchInfo:
        with _translated_errors():
            return _batch_info(self._client.messages.batches.retrieve(batch_id))

    def cancel_batch(self, batch_id: str) -> BatchInfo:
        with _translated_errors():
            return _batch_info(self._client.messages.batches.cancel(batch_id))

    def list_batches(self, limit: int = 100) -> list[BatchInfo]:
        """The most recent batches (newest first), following pages up to `limit`."""
        out: list[BatchInfo] = []
        with _translated_errors():
            for batch in self._client.messages.batches.list(limit=min(limit, 100)):
                out.append(_batch_info(batch))
                if len(out) >= limit:
                    break
        return out

    def batch_results(self, batch_id: str) -> Iterator[BatchItem]:
        """Each request's outcome in an ended batch."""
        with _translated_errors():
            for line in self._client.messages.batches.results(batch_id):
                result = line.result
                kind = result.type
                if result.type == "succeeded":
                    yield BatchItem(line.custom_id, kind, result=to_result(result.message, None))
                elif result.type == "errored":
                    err = result.error.model_dump() if hasattr(result.error, "model_dump") else {}
                    inner = err.get("error") or {}
                    yield BatchItem(
                        line.custom_id,
                        kind,
                        error=f"{inner.get('type', 'error')}: {inner.get('message', '')}".strip(),
                    )
                else:
                    yield BatchItem(line.custom_id, kind, error=kind)


def to_result(message: Any, request_id: str | None) -> BackendResult:
    """An SDK Message as a BackendResult."""
    try:
        usage = Usage.from_api(message.usage)
    except ValueError as exc:  # the call was made, but its cost cannot be known
        raise BackendError(
            f"the API's answer has unreadable usage ({exc}): not recorded as answered",
            kind="bad_response",
        ) from None
    blocks = tuple(b.model_dump(exclude_none=True) for b in message.content)
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    raw = message.model_dump(exclude_none=True)
    known = {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
    return BackendResult(
        text=text,
        model=message.model,
        usage=usage,
        stop_reason=message.stop_reason,
        content=blocks,
        api_request_id=request_id,
        message_id=message.id,
        stop_sequence=getattr(message, "stop_sequence", None),
        message_extra=_extra_fields(raw, known),
    )


def _extra_fields(raw: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """The Message's fields tars-opt does not model, to hand back unchanged; usage fields
    beyond the token buckets (inference_geo, server_tool_use, ...) go under `usage`."""
    extra = {k: v for k, v in raw.items() if k not in known}
    usage = raw.get("usage")
    if isinstance(usage, dict):
        modelled = set(Usage().to_api())
        more = {k: v for k, v in usage.items() if k not in modelled}
        if more:
            extra["usage"] = more
    return extra


@functools.cache
def _parameters_of(function: Any) -> frozenset[str]:
    import inspect

    skip = {"self", "extra_headers", "extra_query", "extra_body", "timeout", "betas"}
    return frozenset(n for n in inspect.signature(function).parameters if n not in skip)


def _parameters(method: Any) -> frozenset[str]:
    """The body fields an SDK method takes as arguments."""
    return _parameters_of(getattr(method, "__func__", method))


def _batch_info(batch: Any) -> BatchInfo:
    counts = batch.request_counts.model_dump() if batch.request_counts is not None else {}
    return BatchInfo(
        id=batch.id,
        status=batch.processing_status,
        counts={k: int(v or 0) for k, v in counts.items()},
        created_at=_iso(batch.created_at),
        ended_at=_iso(batch.ended_at),
    )


class _translated_errors:
    """Turn SDK exceptions into BackendError with a one-line, key-free message."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if exc is None:
            return False
        import anthropic

        if isinstance(exc, anthropic.APITimeoutError):
            raise BackendError(
                "the API did not answer in time (after retries): try again or raise api.timeout_s",
                kind="timeout",
            ) from None
        if isinstance(exc, anthropic.APIConnectionError):
            raise BackendError(
                "cannot reach the API (after retries): check the network or ANTHROPIC_BASE_URL",
                kind="connection_error",
            ) from None
        if isinstance(exc, anthropic.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {}
            err = body.get("error")
            if not isinstance(err, dict):
                err = {}
            kind = str(err.get("type") or type(exc).__name__)
            detail = str(err.get("message") or exc.message).splitlines()[0][:300]
            hint = {
                "authentication_error": " - check the API key",
                "rate_limit_error": " - slow down or raise api.max_retries",
                "overloaded_error": " - the API is overloaded; try again later",
            }.get(kind, "")
            raise BackendError(
                f"API error {exc.status_code} {kind}: {detail}{hint}",
                kind=kind,
                status=exc.status_code,
            ) from None
        if type(exc).__module__.split(".")[0] in ("httpx", "httpx2"):
            # A connection that breaks mid-stream surfaces as the transport's own error,
            # which the SDK neither wraps nor retries.
            raise BackendError(
                f"the connection to the API broke mid-answer ({type(exc).__name__}): try again",
                kind="connection_error",
            ) from None
        return False
