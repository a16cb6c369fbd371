"""The fake API's model catalogue (GET /v1/models), newest first like the API."""

from __future__ import annotations

from typing import Any


def _model(
    model_id: str,
    name: str,
    created: str,
    line: str,
    max_input: int,
    max_out: int,
    deprecated: str | None = None,
    retires: str | None = None,
) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": name,
        "created_at": created,
        "capabilities": None,
        "max_input_tokens": max_input,
        "max_tokens": max_out,
        "line": line,
        "lifecycle": "deprecated" if deprecated else "active",
        "deprecated_at": deprecated,
        "retires_at": retires,
    }


MODELS: list[dict[str, Any]] = [
    _model(
        "claude-opus-5-5", "Claude Opus 5.5", "2026-10-07T00:00:00Z", "opus", 1_000_000, 128_000
    ),
    _model(
        "claude-sonnet-5-5",
        "Claude Sonnet 5.5",
        "2026-10-07T00:00:00Z",
        "sonnet",
        1_000_000,
        64_000,
    ),
    _model(
        "claude-haiku-5-5", "Claude Haiku 5.5", "2026-09-15T00:00:00Z", "haiku", 200_000, 64_000
    ),
    _model(
        "claude-sonnet-4-6",
        "Claude Sonnet 4.6",
        "2026-02-17T00:00:00Z",
        "sonnet",
        1_000_000,
        64_000,
    ),
    _model("claude-opus-4-5", "Claude Opus 4.5", "2025-11-24T00:00:00Z", "opus", 200_000, 64_000),
    _model(
        "claude-haiku-4-5", "Claude Haiku 4.5", "2025-10-15T00:00:00Z", "haiku", 200_000, 64_000
    ),
    _model(
        "claude-sonnet-4-5",
        "Claude Sonnet 4.5",
        "2025-09-29T00:00:00Z",
        "sonnet",
        1_000_000,
        64_000,
        deprecated="2026-08-31T00:00:00Z",
        retires="2026-11-30T00:00:00Z",
    ),
]
MODELS_BY_ID = {m["id"]: m for m in MODELS}
