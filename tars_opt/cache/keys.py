"""What makes two requests the same for the response cache.

The exact key hashes everything that shapes an answer: the API key's keyed hash,
namespace, model selector (forced model, the client's model, requested tier, or "routed"
with the tier map), query type, system, tools, the whole conversation, max_tokens and
every other body field but `metadata` (tool_choice, thinking, temperature, ...).
`cache_control` markers are dropped first: they change what the API bills, never what it
answers. The context fingerprint (key, system + tools) and the selector partition the
semantic cache, so different keys, agents and contexts never share an answer.
"""

from __future__ import annotations

import re
import unicodedata

from tars_opt.config.schema import Config
from tars_opt.hashing import canonical, sha256_text
from tars_opt.types import Request

KEY_VERSION = 2
# Body fields that do not shape the answer (who is asking, how it is delivered).
_NOT_ANSWER = ("metadata", "stream")


def model_selector(request: Request, config: Config) -> str:
    """Which model will answer: the forced model, the requested tier, or the router.

    A routed request names the tier map and the routing settings too: the router picks the
    tier from the prompt and those, so changing either invalidates old answers. The offline
    backend's placeholder answers live apart: a run against the API never gets one.
    """
    offline = "offline/" if config.backend == "offline" else ""
    if request.forced_model and request.model:
        return f"{offline}model:{request.model}"
    if request.client_model:
        # Routing works under the client's model: the same tier map can give another model.
        routing = config.routing.model_dump(mode="json") if config.routing.enabled else None
        chosen = canonical(
            {"client": request.client_model, "tiers": config.models.tiers, "routing": routing}
        )
        return f"{offline}client:{request.client_model}:{sha256_text(chosen)[:12]}"
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
    context: dict[str, object] = {
        "key": request.key_id,
        "system": request.system,
        "tools": list(request.tools),
    }
    if with_history:
        context["history"] = list(request.history)
    return sha256_text(canonical(context))[:32]


def exact_key(request: Request, selector: str) -> str:
    """The exact-match key of a request (hex SHA-256)."""
    return sha256_text(
        canonical(
            {
                "v": KEY_VERSION,
                "key": request.key_id,
                "namespace": request.namespace,
                "selector": selector,
                "query_type": request.query_type,
                "system": request.system,
                "tools": list(request.tools),
                "messages": list(request.messages),
                "max_tokens": request.max_tokens,
                "extra": {k: v for k, v in request.extra.items() if k not in _NOT_ANSWER},
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
