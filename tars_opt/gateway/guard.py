"""The checks every request passes before a route sees it: the Host it names (a DNS
rebinding guard), a browser Origin, the gateway's token, and the body's size."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from tars_opt.gateway.headers import error_body
from tars_opt.gateway.settings import GatewaySettings
from tars_opt.pipeline.controls import client_key

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})
# Routes that carry no secret and that a load balancer polls without credentials.
_OPEN = frozenset({"/tars-opt/health"})


def host_name(host: str) -> str:
    """The name part of a Host header (no port; IPv6 without brackets)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware refusing, in the API's error shape, what a local proxy must not take."""

    def __init__(self, app: ASGIApp, settings: GatewaySettings) -> None:
        self.app = app
        self.settings = settings
        bound = settings.host.lower().strip("[]")
        self._any_host = bound in _WILDCARDS
        self._hosts = _LOOPBACK_NAMES | {bound} | settings.allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = self._check(scope)
        if problem is None:
            await self.app(scope, receive, send)
            return
        status, kind, message = problem
        body = error_body(kind, message)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-tars-opt-source", b"tars-opt"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _check(self, scope: Scope) -> tuple[int, str, str] | None:
        s = self.settings
        headers = Headers(scope=scope)
        host = host_name(headers.get("host", ""))
        if not self._any_host and host not in self._hosts:
            return (
                403,
                "permission_error",
                f"tars-opt refused this request: Host {host!r} is not a name the gateway is "
                "bound to (a guard against DNS rebinding); call it by "
                f"{s.host} or add the name to gateway.allowed_hosts",
            )
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/").lower() not in s.allowed_origins:
            shown = urlsplit(origin).netloc or origin
            return (
                403,
                "permission_error",
                f"tars-opt refused a browser request from origin {shown!r}: a web page must "
                "not spend your API key; add the origin to gateway.allowed_origins to allow it",
            )
        if s.token is not None and scope.get("path") not in _OPEN:
            given = client_key(headers) or ""
            if not hmac.compare_digest(given.encode(), s.token.encode()):
                return (
                    401,
                    "authentication_error",
                    "tars-opt: this gateway needs its token as the API key (x-api-key or "
                    "Authorization: Bearer); set ANTHROPIC_API_KEY to the gateway token in "
                    "the client",
                )
        length = headers.get("content-length")
        limit = s.max_bytes(scope.get("path", ""))
        if length is not None and length.isdigit() and int(length) > limit:
            return (
                413,
                "request_too_large",
                f"Request exceeds the maximum allowed size ({limit} bytes); tars-opt refused "
                "it as the API would",
            )
        return None
