"""The A/B holdout: which requests go unoptimized, chosen deterministically."""

from __future__ import annotations

import hashlib


def in_holdout(request_id: str, share: float) -> bool:
    """True for about `share` of request ids: a hash, so the same id always lands alike."""
    if share <= 0:
        return False
    digest = hashlib.sha256(b"holdout\x1f" + request_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share
