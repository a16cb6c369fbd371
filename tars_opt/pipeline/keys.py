"""Which API key pays for a request, as a keyed hash: the response cache keeps answers
apart per key, and the key itself is never stored."""

from __future__ import annotations

import hashlib
import hmac
import threading

from tars_opt.store.database import Database
from tars_opt.store.settings import secret

_SECRET = "api_key_hash_secret"


class KeyIds:
    """Keyed hashes (HMAC-SHA256 under a secret kept in the database) of API keys."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._secret: bytes | None = None
        self._memo: dict[str, str] = {}
        self._lock = threading.Lock()

    def of(self, api_key: str | None) -> str | None:
        """The hash naming `api_key` (None for no key)."""
        if not api_key:
            return None
        found = self._memo.get(api_key)
        if found is None:
            with self._lock:
                if self._secret is None:
                    self._secret = secret(self.db, _SECRET).encode()
                found = hmac.new(self._secret, api_key.encode(), hashlib.sha256).hexdigest()[:32]
                if len(self._memo) > 64:
                    self._memo.clear()
                self._memo[api_key] = found
        return found
