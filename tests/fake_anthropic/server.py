"""A local fake of the Anthropic Messages API for tests that drive the real SDK (stdlib only).

Run it in-process: ``with FakeAnthropic() as api: Anthropic(base_url=api.url, api_key="k")``,
or as its own process (see `tests.fake_anthropic.__main__`). It validates requests as strictly
as the API (see `validate`), answers deterministically (thinking, parallel and server tool
calls on demand, see `replies.build_reply`), bills prompt caching like the API (see
`tokens.PromptCache`), applies context editing (see `context`), runs Message Batches and
injects faults (429/529/500, resets, slow answers, broken streams) on demand.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .batches import Batch, paginate, validate_batch
from .context import apply_context_management
from .faults import Fault, FaultPlan
from .models import MODELS, MODELS_BY_ID
from .replies import build_reply, message_json, sse_events
from .tokens import CacheUsage, PromptCache, count_input_tokens
from .transport import ApiError, Handler, HTTPServer, Response, Stream
from .validate import beta_error, header_betas, message_params_error

Responder = Callable[[dict[str, Any]], "dict[str, Any] | str | None"]
BatchOutcome = Callable[[str, dict[str, Any]], "str | dict[str, Any] | None"]
RequestValidator = Callable[[str, dict[str, Any]], "str | None"]


@dataclass
class RecordedRequest:
    """One request as the server saw it; `status` is filled in once answered (None: no answer)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    request_id: str
    time: float
    fault: str | None = None
    status: int | None = None
    # Wall-clock and CPU seconds the fake's thread spent on it, from reading its body to
    # the last byte of the answer (None until answered): what a proxy in front of the fake
    # adds then shows apart.
    seconds: float | None = None
    cpu_seconds: float | None = None
    # Set once the two figures above are: the client can read its answer a moment before.
    timed: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    def spent(self, timeout_s: float = 10.0) -> tuple[float, float]:
        """(seconds, cpu_seconds), waiting for the fake's thread to finish timing them."""
        if not self.timed.wait(timeout_s):
            raise TimeoutError(f"{self.request_id}: the fake is still answering it")
        return self.seconds or 0.0, self.cpu_seconds or 0.0

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def _error_body(error_type: str, message: str, request_id: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(obj).encode(), headers=dict(headers or {}))


class FakeAnthropic:
    """In-process fake of the Messages, Token Counting, Models and Message Batches APIs.

    Configuration attributes may be changed at any time, also while the server runs:
      responder(body) -> None | str | {text, tool_use: [{name, input, id?}], thinking,
        redacted_thinking, server_tool_use, content, stop_reason, stop_details, output_tokens,
        delay, error: (status, type, message)} scripts replies (also in batches); see
        `replies.build_reply`. Unscripted: thinking first when the request enables it, then
        a text answer (end_turn), also after a tool_result.
      strict: validate conversations like the API (alternation, tool_use/tool_result pairing,
        thinking signatures, ...; see `validate`). On by default; a test that must send what
        the API would refuse sets it to False and says why.
      min_cacheable_tokens / min_cacheable_by_model: below this a cache breakpoint is ignored.
      request_delay: seconds every request waits before it is answered (latency simulation);
        stream_event_delay: seconds between two SSE events.
      batch_mode: "immediate" (ended on creation) | "polls" (ended on the `batch_polls`-th
        retrieve or listing; a canceling batch ends on its next one) | "manual" (`end_batch(id)`).
      batch_outcome(custom_id, params) -> "succeeded" | "errored" | "canceled" | "expired" |
        a full result dict | None (default: succeeded; canceled if the batch is canceling).
      api_key: when set, requests must carry it (x-api-key or Bearer) or get a 401.
      strict_models: unknown models get a 404 like the API (default: any model is served).
      request_validator(path, body) -> error message | None: extra 400s (e.g. OpenAPI checks).
      fault_rate / fault_seed / fault_kinds / fault_path_prefix: random faults; see `inject`.
    """

    def __init__(
        self,
        *,
        min_cacheable_tokens: int = 1024,
        batch_mode: str = "immediate",
        batch_polls: int = 2,
        api_key: str | None = None,
        clock: Callable[[], float] | None = None,
        strict: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """`clock() -> seconds` drives cache TTLs, batch expiry and timestamps (epoch seconds
        for timestamps); default: the monotonic clock for TTLs and the wall clock for times.
        `advance_clock` moves either on."""
        self.responder: Responder | None = None
        self.clock = clock
        self.strict = strict
        self.request_delay = 0.0
        self._address = (host, port)
        self.batch_outcome: BatchOutcome | None = None
        self.request_validator: RequestValidator | None = None
        self.min_cacheable_tokens = min_cacheable_tokens
        self.min_cacheable_by_model: dict[str, int] = {}
        self.batch_mode = batch_mode
        self.batch_polls = batch_polls
        self.batch_max_requests = 100_000
        self.batch_max_bytes = 256 * 1024 * 1024
        self.api_key = api_key
        self.strict_models = False
        self.fault_retry_after_ms: float | None = 10.0
        self.stream_chunk_chars = 24
        self.stream_event_delay = 0.0
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._clock_offset = 0.0
        self._ids = itertools.count(1)
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._faults = FaultPlan()
        self._fault_seed = 0
        self.reset()

    # ----- lifecycle -----
    def start(self) -> FakeAnthropic:
        """Listen on 127.0.0.1 at a free port and serve from a daemon thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = HTTPServer(self._address, self._handle)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-anthropic-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and wake any request that sleeps for a slow fault."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeAnthropic is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL for the SDK, e.g. http://127.0.0.1:PORT (no trailing slash)."""
        return f"http://{self._address[0]}:{self.port}"

    def reset(self) -> None:
        """Forget what was recorded or simulated (requests, faults, counters, cache, batches).

        Configuration (responder, modes, fault rate, ...) stays as it is.
        """
        with self._lock:
            self._requests: list[RecordedRequest] = []
            self._faults_injected: list[dict[str, Any]] = []
            self._faults.queue.clear()
            self._faults.rng.seed(self._fault_seed)
            self._counters: Counter[str] = Counter()
            self._cache = PromptCache(self._monotonic)
            self._batches: dict[str, Batch] = {}
            self._handler_errors: list[str] = []

    # ----- what tests inspect -----
    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received, in arrival order."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path equals `path` (and method, if given)."""
        return [
            r for r in self.requests if r.path == path and (method is None or r.method == method)
        ]

    @property
    def counters(self) -> Counter[str]:
        """A snapshot of event counts: requests, messages, streams, count_tokens, models,
        batches_created, batch_requests, batch_retrieves, batch_lists, batches_canceled,
        batches_deleted, batches_ended, batch_results, errors (4xx/5xx answers), faults."""
        with self._lock:
            return Counter(self._counters)

    @property
    def faults_injected(self) -> list[dict[str, Any]]:
        """Faults applied so far: {kind, source (queue|random), method, path, request_id}."""
        with self._lock:
            return list(self._faults_injected)

    @property
    def handler_errors(self) -> list[str]:
        """Exceptions raised while answering (e.g. by a responder); each was answered with 500."""
        with self._lock:
            return list(self._handler_errors)

    @property
    def pending_faults(self) -> list[dict[str, Any]]:
        """Scripted faults still waiting for a matching request."""
        with self._lock:
            return self._faults.describe()

    # ----- faults -----
    def inject(
        self,
        fault: str | int | Fault,
        times: int = 1,
        path_prefix: str = "/v1/messages",
        method: str | None = None,
    ) -> None:
        """Queue `fault` for the next `times` requests whose path starts with `path_prefix`.

        Note the prefix also matches /v1/messages/count_tokens and /v1/messages/batches...;
        pass `method` or a longer prefix to narrow it. Queued faults win over random ones.
        """
        with self._lock:
            self._faults.add(Fault.of(fault), times, path_prefix, method)

    @property
    def fault_rate(self) -> float:
        return self._faults.rate

    @fault_rate.setter
    def fault_rate(self, rate: float) -> None:
        with self._lock:
            self._faults.rate = float(rate)

    @property
    def fault_seed(self) -> int:
        return self._fault_seed

    @fault_seed.setter
    def fault_seed(self, seed: int) -> None:
        with self._lock:
            self._fault_seed = seed
            self._faults.rng.seed(seed)

    @property
    def fault_kinds(self) -> list[Fault]:
        return list(self._faults.kinds)

    @fault_kinds.setter
    def fault_kinds(self, kinds: Iterable[str | int | Fault]) -> None:
        with self._lock:
            self._faults.set_kinds(kinds)

    @property
    def fault_path_prefix(self) -> str:
        return self._faults.path_prefix

    @fault_path_prefix.setter
    def fault_path_prefix(self, prefix: str) -> None:
        self._faults.path_prefix = prefix

    # ----- time, cache and batches -----
    def advance_clock(self, seconds: float) -> None:
        """Move the fake's clock on (cache TTLs, 24 h batch expiry) without sleeping."""
        with self._lock:
            self._clock_offset += seconds

    def _monotonic(self) -> float:
        base = self.clock() if self.clock is not None else time.monotonic()
        return base + self._clock_offset

    def _wall(self) -> float:
        base = self.clock() if self.clock is not None else time.time()
        return base + self._clock_offset

    def _now(self) -> datetime:
        if self.clock is not None:
            return datetime.fromtimestamp(self._wall(), UTC)
        return datetime.now(UTC) + timedelta(seconds=self._clock_offset)

    def clear_cache(self) -> None:
        """Drop every prompt-cache entry (as if all TTLs ran out)."""
        with self._lock:
            self._cache.clear()

    @staticmethod
    def count_tokens(body: dict[str, Any]) -> int:
        """What POST /v1/messages/count_tokens answers for `body` (total input tokens, after
        any context editing the body asks for)."""
        return count_input_tokens(apply_context_management(body)[0])

    def end_batch(self, batch_id: str, outcome: str | None = None) -> dict[str, Any]:
        """Finish a batch now (any mode); `outcome` forces one result type for every request."""
        with self._lock:
            batch = self._batches[batch_id]
            self._end(batch, outcome)
            return batch.to_json(self.url)

    def batch(self, batch_id: str) -> dict[str, Any]:
        """The MessageBatch JSON of `batch_id`, without counting as a poll."""
        with self._lock:
            return self._batches[batch_id].to_json(self.url)

    def _end(self, batch: Batch, outcome: str | None = None) -> None:
        if batch.status != "ended":
            batch.end(
                self._now(),
                lambda cid, params, default: self._process_batch_request(
                    cid, params, default, batch.betas
                ),
                outcome,
            )
            self._counters["batches_ended"] += 1

    def _process_batch_request(
        self,
        custom_id: str,
        params: dict[str, Any],
        default: str,
        betas: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        outcome: Any = default
        if self.batch_outcome is not None:
            outcome = self.batch_outcome(custom_id, params) or default
        if isinstance(outcome, dict):
            return outcome
        if outcome == "succeeded":
            problem = beta_error(params, betas) or message_params_error(params, strict=self.strict)
            if problem is None and params.get("stream"):
                problem = "stream: streaming is not supported in Message Batches"
            if problem is not None:
                return {
                    "type": "errored",
                    "error": _error_body("invalid_request_error", problem, self._new_id("req_")),
                }
            result = self._answer(params, "batch")
            if isinstance(result, ApiError):
                return {
                    "type": "errored",
                    "error": _error_body(result.error_type, result.message, self._new_id("req_")),
                }
            return {"type": "succeeded", "message": result}
        if outcome == "errored":
            return {
                "type": "errored",
                "error": _error_body("api_error", "Internal server error", self._new_id("req_")),
            }
        if outcome in ("canceled", "expired"):
            return {"type": outcome}
        raise ValueError(f"batch_outcome returned {outcome!r}")

    # ----- request handling -----
    def _new_id(self, prefix: str) -> str:
        n = next(self._ids)
        return prefix + "01" + hashlib.sha256(f"{prefix}{n}".encode()).hexdigest()[:22]

    def _min_cacheable(self, model: str) -> int:
        return self.min_cacheable_by_model.get(model, self.min_cacheable_tokens)

    def _answer(self, body: dict[str, Any], service_tier: str) -> dict[str, Any] | ApiError:
        """Build the Message for a valid request; the cache is updated under the lock.

        The responder sees the request as sent; usage is billed on it after context editing.
        """
        message_id = self._new_id("msg_")
        reply = build_reply(body, self.responder(body) if self.responder else None, message_id)
        if reply.delay and service_tier != "batch":
            self._stopping.wait(reply.delay)
        if reply.error is not None:
            return ApiError(*reply.error)
        billed, context_management = apply_context_management(body)
        if context_management is not None:
            reply.extra["context_management"] = context_management
        with self._lock:
            cache: CacheUsage = self._cache.apply(billed, self._min_cacheable(body["model"]))
        return message_json(message_id, body["model"], reply, cache, service_tier)

    def _check_model(self, body: dict[str, Any], need_max_tokens: bool = True) -> None:
        problem = message_params_error(body, need_max_tokens=need_max_tokens, strict=self.strict)
        if problem:
            raise ApiError(400, "invalid_request_error", problem)
        model = MODELS_BY_ID.get(body["model"])
        if model is None:
            if self.strict_models:
                raise ApiError(404, "not_found_error", f"model: {body['model']}")
            return
        if need_max_tokens and body["max_tokens"] > model["max_tokens"]:
            raise ApiError(
                400,
                "invalid_request_error",
                f"max_tokens: {body['max_tokens']} > {model['max_tokens']}, which is the maximum "
                f"allowed number of output tokens for {body['model']}",
            )
        total = self.count_tokens(body)
        if total > model["max_input_tokens"]:
            raise ApiError(
                400,
                "invalid_request_error",
                f"prompt is too long: {total} tokens > {model['max_input_tokens']} maximum",
            )

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        body: Any,
        size: int,
        betas: frozenset[str] = frozenset(),
    ) -> Response | Stream:
        parts = path.strip("/").split("/")
        if method == "POST" and path in ("/v1/messages", "/v1/messages/count_tokens"):
            problem = beta_error(body, betas)
            if problem:
                raise ApiError(400, "invalid_request_error", problem)
        if method == "POST" and path == "/v1/messages":
            self._check_model(body)
            result = self._answer(body, "standard")
            if isinstance(result, ApiError):
                raise result
            with self._lock:
                self._counters["messages"] += 1
                if body.get("stream"):
                    self._counters["streams"] += 1
            if body.get("stream"):
                return Stream(sse_events(result, self.stream_chunk_chars))
            return _json(200, result)
        if method == "POST" and path == "/v1/messages/count_tokens":
            self._check_model(body, need_max_tokens=False)
            with self._lock:
                self._counters["count_tokens"] += 1
            edited, context_management = apply_context_management(body)
            counted: dict[str, Any] = {"input_tokens": count_input_tokens(edited)}
            if context_management is not None:
                counted["context_management"] = {"original_input_tokens": count_input_tokens(body)}
            return _json(200, counted)
        if method == "GET" and parts[:2] == ["v1", "models"] and len(parts) <= 3:
            with self._lock:
                self._counters["models"] += 1
            if len(parts) == 2:
                return _json(200, paginate(MODELS, query))
            if parts[2] not in MODELS_BY_ID:
                raise ApiError(404, "not_found_error", f"model: {parts[2]}")
            return _json(200, MODELS_BY_ID[parts[2]])
        if parts[:3] == ["v1", "messages", "batches"]:
            return self._route_batches(method, parts[3:], query, body, size, betas)
        raise ApiError(404, "not_found_error", f"Not found: {method} {path}")

    def _route_batches(
        self,
        method: str,
        rest: list[str],
        query: dict[str, str],
        body: Any,
        size: int,
        betas: frozenset[str] = frozenset(),
    ) -> Response:
        with self._lock:
            if not rest:
                if method == "POST":
                    if size > self.batch_max_bytes:
                        raise ApiError(
                            413, "request_too_large", "Request exceeds the maximum allowed size"
                        )
                    requests = validate_batch(body, self.batch_max_requests)
                    batch = Batch(self._new_id("msgbatch_"), requests, self._now(), betas=betas)
                    self._batches[batch.id] = batch
                    self._counters["batches_created"] += 1
                    self._counters["batch_requests"] += len(requests)
                    if self.batch_mode == "immediate":
                        self._end(batch)
                    return _json(200, batch.to_json(self.url))
                if method == "GET":
                    self._counters["batch_lists"] += 1
                    # A listing (its first page) counts as a poll of every batch: time
                    # passes for a batch nobody retrieves (one a killed drain sent but never
                    # recorded), as on the real API, which ends batches by time.
                    if not {"after_id", "before_id"} & set(query):
                        for listed in self._batches.values():
                            self._progress(listed)
                    newest_first = [b.to_json(self.url) for b in reversed(self._batches.values())]
                    return _json(200, paginate(newest_first, query))
            batch = self._batches.get(rest[0])
            if batch is None:
                raise ApiError(
                    404, "not_found_error", f"message_batch_id: batch '{rest[0]}' not found"
                )
            action = (method, rest[1] if len(rest) > 1 else "")
            if action == ("GET", ""):
                self._counters["batch_retrieves"] += 1
                self._progress(batch)
                return _json(200, batch.to_json(self.url))
            if action == ("POST", "cancel"):
                if batch.status == "ended":
                    raise ApiError(
                        400,
                        "invalid_request_error",
                        f"Batch {batch.id} cannot be canceled: it has already ended",
                    )
                if batch.status == "in_progress":
                    batch.status, batch.cancel_initiated_at = "canceling", self._now()
                    self._counters["batches_canceled"] += 1
                return _json(200, batch.to_json(self.url))
            if action == ("DELETE", ""):
                if batch.status != "ended":
                    raise ApiError(
                        400,
                        "invalid_request_error",
                        f"Batch {batch.id} cannot be deleted until it has ended; cancel it first",
                    )
                del self._batches[batch.id]
                self._counters["batches_deleted"] += 1
                return _json(200, {"id": batch.id, "type": "message_batch_deleted"})
            if action == ("GET", "results"):
                if batch.status != "ended" or batch.results is None:
                    raise ApiError(
                        400,
                        "invalid_request_error",
                        f"Batch {batch.id} has not ended yet: no results",
                    )
                self._counters["batch_results"] += 1
                # JSON Lines: one object per line, newline-terminated, never a blank line.
                lines = "".join(json.dumps(line) + "\n" for line in batch.results)
                return Response(200, lines.encode(), "application/x-jsonl")
        raise ApiError(
            404, "not_found_error", f"Not found: {method} /v1/messages/batches/{'/'.join(rest)}"
        )

    def _progress(self, batch: Batch) -> None:
        """Advance a polled batch: called (under the lock) on each retrieve."""
        batch.polls += 1
        if batch.status == "ended":
            return
        expired = self._now() >= batch.expires_at
        polled_out = self.batch_mode == "polls" and (
            batch.status == "canceling" or batch.polls >= self.batch_polls
        )
        if expired or polled_out:
            self._end(batch)

    def _handle(self, h: Handler, method: str) -> None:
        """Record, authenticate, maybe fault, route and answer one HTTP request."""
        started, cpu_started = time.perf_counter(), time.thread_time()
        split = urlsplit(h.path)
        path = split.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        raw = h.read_body()
        request_id = self._new_id("req_")
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        record = RecordedRequest(
            method,
            path,
            query,
            {k.lower(): v for k, v in h.headers.items()},
            body,
            request_id,
            self._wall(),
        )
        with self._lock:
            self._requests.append(record)
            self._counters["requests"] += 1
        try:
            self._respond(h, method, path, query, raw, body, bad_json, record)
        finally:
            record.seconds = time.perf_counter() - started
            record.cpu_seconds = time.thread_time() - cpu_started
            record.timed.set()

    def _respond(
        self,
        h: Handler,
        method: str,
        path: str,
        query: dict[str, str],
        raw: bytes,
        body: Any,
        bad_json: bool,
        record: RecordedRequest,
    ) -> None:
        request_id = record.request_id
        stream = (
            method == "POST"
            and path == "/v1/messages"
            and isinstance(body, dict)
            and body.get("stream") is True
        )

        def fail(
            status: int, error_type: str, message: str, headers: dict[str, str] | None = None
        ) -> None:
            with self._lock:
                self._counters["errors"] += 1
            record.status = status
            h.send(_json(status, _error_body(error_type, message, request_id), headers), request_id)

        key = record.header("x-api-key") or (record.header("authorization") or "").removeprefix(
            "Bearer "
        )
        if not key or (self.api_key is not None and key != self.api_key):
            return fail(401, "authentication_error", "invalid x-api-key")
        with self._lock:
            taken = self._faults.take(method, path, stream)
            if taken is not None:
                fault, source = taken
                record.fault = fault.kind
                self._counters["faults"] += 1
                self._faults_injected.append(
                    {
                        "kind": fault.kind,
                        "source": source,
                        "method": method,
                        "path": path,
                        "request_id": request_id,
                    }
                )
        fault = taken[0] if taken else None
        if fault is not None and fault.kind in ("rate_limit", "overloaded", "api_error"):
            status, error_type, message = fault.error()
            return fail(status, error_type, message, fault.headers(self.fault_retry_after_ms))
        if fault is not None and fault.kind == "connection_reset":
            return h.reset()
        if fault is not None and fault.kind == "slow":
            self._stopping.wait(fault.delay)
        if self.request_delay > 0:
            self._stopping.wait(self.request_delay)
        if bad_json:
            return fail(400, "invalid_request_error", "The request body is not valid JSON.")
        if isinstance(body, dict) and self.request_validator is not None:
            problem = self.request_validator(path, body)
            if problem:
                return fail(400, "invalid_request_error", problem)
        try:
            betas = header_betas(record.header("anthropic-beta"))
            answer = self._route(method, path, query, body, len(raw), betas)
        except ApiError as err:
            return fail(err.status, err.error_type, err.message)
        except Exception as err:  # a bug in a test's responder: answer it instead of hanging up
            with self._lock:
                self._handler_errors.append(f"{method} {path}: {err!r}")
            return fail(500, "api_error", f"fake server error: {err!r}")
        record.status = 200
        if isinstance(answer, Stream):
            h.send_stream(answer.events, request_id, fault, self.stream_event_delay, self._stopping)
        elif fault is not None and fault.kind == "stream_cut":
            h.send(answer, request_id, cut=True)
        else:
            h.send(answer, request_id)
