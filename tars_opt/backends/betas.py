"""The `anthropic-beta` header a request body needs: body fields the API takes only with a
beta named in that header (without it: 400 "<field>: Extra inputs are not permitted").

Every path that sends a body tars-opt changed uses these: the SDK backend (messages and
Message Batches: a batch's header covers all its requests), the gateway and the in-process
client (which merge them into the betas the client sent itself, never dropping one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

CONTEXT_MANAGEMENT = "context-management-2025-06-27"
HEADER = "anthropic-beta"
# Top-level body field -> the beta the API requires for it.
FIELD_BETAS: dict[str, str] = {"context_management": CONTEXT_MANAGEMENT}


def needed(params: Mapping[str, Any]) -> list[str]:
    """The betas `params` (a Messages body) needs, in a fixed order."""
    return [beta for name, beta in FIELD_BETAS.items() if name in params]


def added(sent: Mapping[str, Any], original: Mapping[str, Any]) -> list[str]:
    """The betas `sent` needs that the client's `original` body did not: those tars-opt
    must add (a client that sends such a field itself sends its beta too)."""
    wanted = needed(sent)
    if not wanted:
        return []
    own = set(needed(original))
    return [beta for beta in wanted if beta not in own]


def merged(values: Iterable[str], betas: Iterable[str]) -> str:
    """One `anthropic-beta` value: the betas in `values` (header values, comma-separated
    lists) in their order, then those of `betas` not among them."""
    out: list[str] = []
    for value in values:
        for beta in value.split(","):
            beta = beta.strip()
            if beta and beta not in out:
                out.append(beta)
    out += [b for b in dict.fromkeys(betas) if b not in out]
    return ",".join(out)


def with_betas(headers: list[tuple[str, str]], betas: Iterable[str]) -> list[tuple[str, str]]:
    """`headers` (name, value pairs) with `betas` merged into its `anthropic-beta` header
    (one header in place of the client's, which may have been sent more than once);
    unchanged when they name every beta already."""
    own = [v for k, v in headers if k.lower() == HEADER]
    named = {b.strip() for v in own for b in v.split(",")}
    betas = [b for b in betas if b not in named]
    if not betas:
        return headers
    kept = [(k, v) for k, v in headers if k.lower() != HEADER]
    return [*kept, (HEADER, merged(own, betas))]
