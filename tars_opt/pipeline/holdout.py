"""The A/B holdout: which requests go unoptimized, chosen deterministically.

A held-out request skips every stage and goes to the baseline model. It must never undo
what the caller asked for, so a request carrying an instruction the holdout would
override is not eligible (see `holdout_exclusion`).
"""

from __future__ import annotations

import hashlib

from tars_opt.types import Request


def in_holdout(unit: str, share: float) -> bool:
    """True for about `share` of units (conversation ids, else request ids): a hash, so the
    same id always lands alike and every call of a conversation goes the same way."""
    if share <= 0:
        return False
    digest = hashlib.sha256(b"holdout\x1f" + unit.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def holdout_exclusion(request: Request) -> str | None:
    """The caller's instruction that keeps this request out of the holdout, or None.

    Excluded: a named model (the holdout would swap it for the baseline), `--defer` (it
    would be answered at once, at full price) and any cache instruction (`--refresh`
    would not be stored; `--no-cache` is left out with it so that one rule covers the
    cache). Whether the defer stage would queue it for another reason (low priority, the
    budget) is the Optimizer's to check: that needs the stage.
    """
    if request.model is not None:
        return f"--model {request.model}"
    if request.defer is True:
        return "--defer"
    if request.cache_mode != "use":
        return "--no-cache" if request.cache_mode == "off" else "--refresh"
    return None
