"""What makes two requests the same for the response cache.

The exact key hashes everything that shapes an answer: namespace, model selector (forced
model, requested tier, or "routed" with the tier map), query type, system, tools, the whole
history, the prompt and max_tokens. `cache_control` markers are dropped first: they change
what the API bills, never what it answers. The context fingerprint (system + tools) and the
selector partition the semantic cache, so different agents and contexts never share.
"""

from __future__ import annotations

import re
import unicodedata

from tars_opt.config.schema import Config
from tars_opt.hashing import canonical, sha256_text
from tars_opt.types import Request

KEY_VERSION = 1


def model_selector(request: Request, config: Config) -> str:
    """Which model will answer: the forced model, the requested tier, or the router.

    A routed request names the tier map and the routing settings too: the router picks the
    tier from the prompt and those, so changing either invalidates old answers. The offline
    backend's placeholder answers live apart: a run against the API never gets one.
    """
    offline = "offline/" if config.backend == "offline" else ""
    if request.forced_model and request.model:
        return f"{offline}model:{request.model}"
    if request.tier:
        return f"{offline}tier:{request.tier}:{config.models.tiers.get(request.tier, '?')}"
    routing = config.routing.model_dump(mode="json") if config.routing.enabled else None
    tiers = canonical(
        {"tiers": config.models.tiers, "default": config.models.default_tier, "routing": routing}
    )
    return f"{offline}routed:{sha256_text(tiers)[:12]}"


def context_fingerprint(request: Request, *, with_history: bool = False) -> str:
    """Hash of the system prompt and tools (and the history, when it is fixed context such
    as few-shot examples): answers are only shared within one context."""
    context: dict[str, object] = {"system": request.system, "tools": list(request.tools)}
    if with_history:
        context["history"] = list(request.messages)
    return sha256_text(canonical(context))[:32]


def exact_key(request: Request, selector: str) -> str:
    """The exact-match key of a request (hex SHA-256)."""
    return sha256_text(
        canonical(
            {
                "v": KEY_VERSION,
                "namespace": request.namespace,
                "selector": selector,
                "query_type": request.query_type,
                "system": request.system,
                "tools": list(request.tools),
                "messages": list(request.messages),
                "prompt": request.prompt,
                "max_tokens": request.max_tokens,
            }
        )
    )


_SPACE = re.compile(r"\s+")
_EDGE_PUNCT = re.compile(r"^[\s\W_]+|[\s.!?,;:]+$")


def normalize_prompt(text: str) -> str:
    """Case-, width- and whitespace-folded prompt without trailing punctuation.

    "Hi!" and "hi" normalise alike; used for a model-free near-exact match that still
    passes the semantic safety conditions.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = folded.replace("\u2019", "'")
    return _EDGE_PUNCT.sub("", _SPACE.sub(" ", folded)).strip()


def norm_key(text: str) -> str:
    """Hash of the normalised prompt."""
    return sha256_text(normalize_prompt(text))[:32]
