"""The in-process client: `Anthropic` / `AsyncAnthropic`, the SDK's own clients with
Messages calls answered through the Optimizer (no server). Loaded on first use (the SDK)."""

from __future__ import annotations

from typing import Any

__all__ = ["Anthropic", "AsyncAnthropic"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tars_opt.sdk import clients

        return getattr(clients, name)
    raise AttributeError(f"module 'tars_opt.sdk' has no attribute {name!r}")
