"""Headers in and out: what is forwarded, the controls a client sets by header, and the
API's error shape for the gateway's own answers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from tars_opt.errors import InputError

# Connection-level headers (RFC 9110 7.6.1) are the hop's own: never forwarded. Length and
# host are the new hop's too; the encoding of a body the gateway reads is its own choice.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
CONTROL_PREFIX = "x-tars-opt-"
AUTH_HEADERS = ("x-api-key", "authorization")

_PRIORITIES = ("high", "normal", "low")
_CACHE = {"off": "off", "refresh": "refresh", "on": "use", "use": "use"}


def forwarded(
    headers: Iterable[tuple[str, str]], *, drop: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """Request headers to send upstream: all but hop-by-hop ones, tars-opt's controls and
    any named in `drop`, in the order sent."""
    skip = HOP_BY_HOP | {d.lower() for d in drop}
    out = []
    for name, value in headers:
        low = name.lower()
        if low in skip or low.startswith(CONTROL_PREFIX):
            continue
        out.append((name, value))
    return out


def relayed(headers: Iterable[tuple[str, str]], *, decoded: bool = False) -> dict[str, str]:
    """Response headers to give the client: all but hop-by-hop ones (request-id,
    retry-after, anthropic-ratelimit-* and the rest pass). `decoded`: the body was read
    and re-sent as identity, so its encoding header no longer applies."""
    out: dict[str, str] = {}
    for name, value in headers:
        low = name.lower()
        if low in HOP_BY_HOP or (decoded and low == "content-encoding"):
            continue
        out[low] = f"{out[low]}, {value}" if low in out and low != "set-cookie" else value
    return out


def client_key(headers: Any) -> str | None:
    """The key a client sent: x-api-key, else a Bearer token."""
    key = headers.get("x-api-key")
    if key:
        return str(key)
    auth = str(headers.get("authorization") or "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


def controls(headers: Any) -> dict[str, Any]:
    """tars-opt's controls from x-tars-opt-* headers, as Request fields.

    Raises InputError naming the header and the values it takes.
    """
    out: dict[str, Any] = {}
    for name, field in (("namespace", "namespace"), ("session", "session")):
        value = headers.get(CONTROL_PREFIX + name)
        if value:
            out[field] = value
    priority = headers.get(CONTROL_PREFIX + "priority")
    if priority:
        if priority.lower() not in _PRIORITIES:
            raise InputError(
                f"header {CONTROL_PREFIX}priority {priority!r} is not one of "
                f"{', '.join(_PRIORITIES)}"
            )
        out["priority"] = priority.lower()
    cache = headers.get(CONTROL_PREFIX + "cache")
    if cache:
        if cache.lower() not in _CACHE:
            raise InputError(f"header {CONTROL_PREFIX}cache {cache!r} is not one of off, refresh")
        out["cache_mode"] = _CACHE[cache.lower()]
    route = headers.get(CONTROL_PREFIX + "route")
    if route:
        if route.lower() not in ("off", "on"):
            raise InputError(f"header {CONTROL_PREFIX}route {route!r} is not one of off, on")
        out["route"] = route.lower() == "on"
    return out


def error_body(kind: str, message: str, request_id: str | None = None) -> bytes:
    """The API's error shape, for answers the gateway gives itself."""
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    body["request_id"] = request_id
    return json.dumps(body).encode()
