"""Many requests at once: a JSON Lines file of prompts or Messages API bodies, answered
concurrently by one Optimizer (its database and stages are safe to share between threads).

Each line is an object: a prompt (`prompt`, with optional `model`, `max_tokens`,
`system`, `tools` and `messages` - the history before it), or a Messages API body (it has
`messages` and no `prompt`; every field is sent as given). Either may carry tars-opt's
controls under `tars_opt` (namespace, session, priority, urgent, defer, max_wait_s,
cache_mode, query_type, route).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tars_opt.errors import (
    BackendError,
    BudgetExceeded,
    InputError,
    TarsOptError,
    UnknownModelPrice,
)
from tars_opt.store.files import read_text_file
from tars_opt.types import PRIORITIES, QUERY_TYPES, Reply, Request

CONTROLS = {
    "namespace": str,
    "session": str,
    "priority": str,
    "urgent": bool,
    "defer": bool,
    "max_wait_s": float,
    "cache_mode": str,
    "query_type": str,
    "route": bool,
}
PROMPT_FIELDS = ("model", "max_tokens", "system", "tools", "messages")
# What one request may fail with while the others go on.
FAILURES = (TarsOptError, BackendError, BudgetExceeded, UnknownModelPrice)


@dataclass(frozen=True)
class Outcome:
    """What became of one line: its reply, or the error that stopped it."""

    line: int
    reply: Reply | None = None
    error: str | None = None
    error_kind: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.reply is not None:
            return {"line": self.line, **self.reply.to_dict()}
        return {"line": self.line, "error": self.error, "error_kind": self.error_kind}


def request_from_line(data: Any, line: int, defaults: dict[str, Any]) -> Request:
    """The request one line describes; InputError (naming the line) when it cannot be one."""
    if not isinstance(data, dict):
        raise InputError(f"line {line}: expected a JSON object, got {type(data).__name__}")
    data = dict(data)
    raw = data.pop("tars_opt", {}) or {}
    if not isinstance(raw, dict):
        raise InputError(f"line {line}: `tars_opt` must be an object of controls")
    controls: dict[str, Any] = {}
    for name, value in raw.items():
        kind = CONTROLS.get(name)
        if kind is None:
            known = ", ".join(CONTROLS)
            raise InputError(f"line {line}: unknown control tars_opt.{name} (known: {known})")
        number = kind is float and isinstance(value, int | float)
        if isinstance(value, bool) != (kind is bool) or not (number or isinstance(value, kind)):
            raise InputError(f"line {line}: tars_opt.{name} must be a {kind.__name__}")
        controls[name] = float(value) if kind is float else value
    if controls.get("priority", "normal") not in PRIORITIES:
        raise InputError(f"line {line}: tars_opt.priority must be one of {', '.join(PRIORITIES)}")
    if controls.get("query_type", "other") not in QUERY_TYPES:
        raise InputError(
            f"line {line}: tars_opt.query_type must be one of {', '.join(QUERY_TYPES)}"
        )
    if controls.get("cache_mode", "use") not in ("use", "refresh", "off"):
        raise InputError(f"line {line}: tars_opt.cache_mode must be use, refresh or off")
    if "prompt" in data:
        prompt = data.pop("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"line {line}: `prompt` must be non-empty text")
        unknown = sorted(set(data) - set(PROMPT_FIELDS))
        if unknown:
            raise InputError(
                f"line {line}: a prompt line takes {', '.join(PROMPT_FIELDS)}, not "
                f"{', '.join(unknown)} (send a Messages API body for other fields)"
            )
        history = data.get("messages") or []
        system = data.get("system")
        return Request.from_prompt(
            prompt,
            messages=tuple(history),
            model=data.get("model"),
            max_tokens=int(data.get("max_tokens") or defaults["max_tokens"]),
            system=tuple(system) if isinstance(system, list) else system,
            tools=tuple(data.get("tools") or ()),
            **controls,
        )
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputError(f"line {line}: needs `prompt` (text) or `messages` (a Messages API body)")
    if "max_tokens" not in data:
        raise InputError(f"line {line}: a Messages API body needs max_tokens")
    return Request.from_body(data, **controls)


def read_requests(path: str | Path, defaults: dict[str, Any]) -> list[tuple[int, Request]]:
    """Every request of a JSON Lines file with its line number (blank lines skipped), or
    the first bad line's InputError."""
    text = read_text_file(path, "requests")
    out: list[tuple[int, Request]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path} line {number} is not valid JSON (column {exc.colno}): fix it there"
            ) from None
        out.append((number, request_from_line(data, number, defaults)))
    if not out:
        raise InputError(f"{path} holds no requests: one JSON object a line")
    return out


def ask_many(
    ask: Callable[[Request], Reply],
    requests: list[tuple[int, Request]],
    *,
    parallel: int,
    on_done: Callable[[Outcome], None] | None = None,
) -> Iterator[Outcome]:
    """Answer `requests` (line number, request) with `parallel` at once; yield the
    outcomes in input order, each as soon as it and every one before it are done. A failed
    request is an Outcome with its error: the others go on."""

    def one(line: int, request: Request) -> Outcome:
        try:
            return Outcome(line, reply=ask(request))
        except FAILURES as exc:
            kind = getattr(exc, "kind", None) or type(exc).__name__
            return Outcome(line, error=str(exc), error_kind=str(kind))

    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="tars-opt") as pool:
        futures: list[Future[Outcome]] = [pool.submit(one, n, r) for n, r in requests]
        if on_done is not None:
            for future in futures:
                future.add_done_callback(lambda f: on_done(f.result()))
        for future in futures:
            yield future.result()
