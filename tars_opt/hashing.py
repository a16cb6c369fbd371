"""Content hashes: one canonical JSON form and one SHA-256 of text, for every key tars-opt
stores or compares (response cache, prompt-cache prefixes, batches, token counts, vectors).

At the bottom layer because backends, the cache, context and defer all hash the same
request parts and must agree on how.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def _strip_cache_control(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_cache_control(v) for k, v in obj.items() if k != "cache_control"}
    if isinstance(obj, list | tuple):
        return [_strip_cache_control(v) for v in obj]
    return obj


def canonical(obj: Any) -> str:
    """Stable JSON text of `obj` for hashing: sorted keys, compact, unicode kept, and no
    `cache_control` marks (they change what the API bills, never what it reads)."""
    text = _dumps(obj)
    # Walking the object in Python costs three times the C encoder: only a text that
    # names the key (as a key or inside a value) needs the marks stripped and a redo.
    if '"cache_control"' in text:
        return _dumps(_strip_cache_control(obj))
    return text


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def sha256_text(text: str) -> str:
    """Hex SHA-256 of text as UTF-8 (lone surrogates kept, so every str has a hash)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def prefix_key(params: dict[str, Any]) -> str:
    """What a request shares with others for prompt caching: model, system and tools, as
    the API reads them (a text system prompt and its one-block form alike, marks left out)."""
    system = params.get("system")
    blocks = [{"type": "text", "text": system}] if isinstance(system, str) else system
    shared = {"model": params.get("model"), "system": blocks or None, "tools": params.get("tools")}
    return sha256_text(canonical(shared))
