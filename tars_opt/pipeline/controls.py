"""tars-opt's controls sent as `x-tars-opt-*` request headers, and the key a request pays
with: one reading for every front door that takes HTTP requests (the gateway, its batch
routes, the in-process SDK client), so a header means the same wherever it is sent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tars_opt.errors import InputError
from tars_opt.types import PRIORITIES

CONTROL_PREFIX = "x-tars-opt-"
_CACHE = {"off": "off", "refresh": "refresh", "on": "use", "use": "use"}
_ROUTE = {"off": False, "on": True}
KNOWN = ("namespace", "session", "priority", "cache", "route")


def header_controls(headers: Mapping[str, str]) -> dict[str, Any]:
    """The controls a request's `x-tars-opt-*` headers set, as Request fields (namespace,
    session, priority, cache_mode, route); values are case-insensitive.

    Raises InputError naming the header and the values it takes, for a bad value or an
    unknown `x-tars-opt-*` header (a typo must not pass silently).
    """
    out: dict[str, Any] = {}
    for name, raw in headers.items():
        low = name.lower()
        if not low.startswith(CONTROL_PREFIX):
            continue
        control, value = low[len(CONTROL_PREFIX) :], raw.strip()
        if control in ("namespace", "session"):
            if value:
                out[control] = value
        elif control == "priority":
            if value.lower() not in PRIORITIES:
                raise InputError(f"header {low} {value!r} is not one of {', '.join(PRIORITIES)}")
            out["priority"] = value.lower()
        elif control == "cache":
            if value.lower() not in _CACHE:
                raise InputError(f"header {low} {value!r} is not one of off, refresh, use")
            out["cache_mode"] = _CACHE[value.lower()]
        elif control == "route":
            if value.lower() not in _ROUTE:
                raise InputError(f"header {low} {value!r} is not one of off, on")
            out["route"] = _ROUTE[value.lower()]
        else:
            known = ", ".join(CONTROL_PREFIX + k for k in KNOWN)
            raise InputError(f"unknown header {low}: tars-opt reads {known}")
    return out


def client_key(headers: Mapping[str, str]) -> str | None:
    """The key a request pays with: x-api-key, else an `Authorization: Bearer` token."""
    key = headers.get("x-api-key")
    if key:
        return str(key)
    auth = str(headers.get("authorization") or "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None
