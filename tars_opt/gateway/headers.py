"""Headers in and out: what is forwarded, the controls a client sets by header, and the
API's error shape for the gateway's own answers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from tars_opt.pipeline.controls import CONTROL_PREFIX

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
AUTH_HEADERS = ("x-api-key", "authorization")


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


def error_body(kind: str, message: str, request_id: str | None = None) -> bytes:
    """The API's error shape, for answers the gateway gives itself."""
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    body["request_id"] = request_id
    return json.dumps(body).encode()
