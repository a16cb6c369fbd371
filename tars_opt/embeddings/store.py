"""Embedding vectors kept across processes, so a new process does not embed again.

Every `tars-opt ask` is a new process: with vectors cached only in memory, each one would
embed the whole old history again to score it against the prompt (~0.7 s for 50 long
messages on 2 cores). :class:`VectorCache` keeps the vectors in the SQLite table
``text_vectors``, keyed by the embedding model's name and the SHA-256 of the exact text
embedded; :class:`CachedEmbedder` wraps an Embedder so cached texts are read back and only
the others are embedded, in one batch, then written in one transaction.

Only the hash and the vector are stored, never the text. The table is bounded
(``prune.vector_cache_rows``): past it the least recently used rows go. A row that does
not decode to a unit vector of the model's dimension (a damaged file) is ignored, embedded
again and replaced. A database that cannot be read or written (locked past the busy
timeout, read-only, full disk) only costs the embedding: the request goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from tars_opt.embeddings.index import from_blob, to_blob
from tars_opt.errors import DatabaseError
from tars_opt.hashing import sha256_text
from tars_opt.store.database import Database, Executor

log = logging.getLogger("tars_opt.vector_cache")

# A read refreshes a row's `used` only when it is older than this: the LRU order is kept
# to within an hour, and a request whose vectors are all cached writes nothing.
TOUCH_AFTER_S = 3600.0
# Keys per SELECT ... IN (...) (SQLite's default limit on bound parameters is 32,766).
_CHUNK = 500
# How far a stored vector's norm may be from 1 before it counts as damaged.
_NORM_TOLERANCE = 1e-3


def text_key(text: str) -> str:
    """Hex SHA-256 of the exact text (lone surrogates kept, so every str has a key)."""
    return sha256_text(text)


class VectorCache:
    """The ``text_vectors`` table: vectors by (model, text SHA-256), at most ``max_rows``."""

    def __init__(
        self,
        db: Database,
        max_rows: int = 50_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.db = db
        self.max_rows = max_rows
        self.clock = clock

    def get(self, model: str, dim: int, keys: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
        """The stored vectors among ``keys`` and the keys whose `used` is due a refresh.

        Damaged rows (wrong size, not a finite unit vector) are left out, so the caller
        embeds those texts again and :meth:`put` replaces them.
        """
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        stale: list[str] = []
        due = self.clock() - TOUCH_AFTER_S
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows = self.db.execute(
                "SELECT sha256, dim, vector, used FROM text_vectors "
                f"WHERE model = ? AND sha256 IN ({','.join('?' * len(chunk))})",
                [model, *chunk],
            ).fetchall()
            for key, row_dim, blob, used in rows:
                vec = _decode(blob, row_dim, dim)
                if vec is None:
                    log.warning(
                        "damaged vector in text_vectors ignored, embedding again",
                        extra={"model": model, "sha256": key[:16]},
                    )
                    continue
                found[key] = vec
                if used < due:
                    stale.append(key)
        return found, stale

    def put(self, model: str, dim: int, vectors: dict[str, Any], touch: Sequence[str] = ()) -> None:
        """Store ``vectors`` (key -> vector), refresh `used` of ``touch``, evict past the
        bound: all in one transaction. Does nothing when there is nothing to write."""
        if not vectors and not touch:
            return
        now = self.clock()
        with self.db.transaction() as cur:
            if vectors:
                rows = [{"model": model, "sha256": key, "dim": dim, "vector": to_blob(vec),
                         "used": now} for key, vec in vectors.items()]  # fmt: skip
                cur.insert_many("text_vectors", rows, on_conflict="replace")
            if touch:
                cur.executemany(
                    "UPDATE text_vectors SET used = ? WHERE model = ? AND sha256 = ?",
                    [(now, model, key) for key in touch],
                )
            if vectors:
                self._evict(cur)

    def _evict(self, cur: Executor) -> None:
        """Delete the least recently used rows past ``max_rows`` (any model)."""
        over = cur.execute("SELECT COUNT(*) FROM text_vectors").fetchone()[0] - self.max_rows
        if over > 0:
            cur.execute(
                "DELETE FROM text_vectors WHERE (model, sha256) IN "
                "(SELECT model, sha256 FROM text_vectors ORDER BY used, model, sha256 LIMIT ?)",
                (over,),
            )

    def count(self) -> int:
        """Rows stored (all models)."""
        return int(self.db.execute("SELECT COUNT(*) FROM text_vectors").fetchone()[0])


def _decode(blob: Any, row_dim: int, dim: int) -> Any | None:
    """The stored vector, or None when it is not a finite unit vector of ``dim``."""
    if row_dim != dim or not isinstance(blob, bytes):
        return None
    try:
        vec = from_blob(blob, dim)
    except ValueError:
        return None
    norm = float(np.sqrt(np.dot(vec, vec)))
    if not np.isfinite(norm) or abs(norm - 1.0) > _NORM_TOLERANCE:
        return None
    return vec


class CachedEmbedder:
    """An Embedder whose vectors are read from a :class:`VectorCache` when stored there;
    the rest are embedded by ``inner`` in one batch and stored in one transaction."""

    def __init__(self, inner: Any, cache: VectorCache) -> None:
        self.inner = inner
        self.cache = cache
        self.name: str = inner.name
        self.dim: int = inner.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Float32 (len(texts), dim) unit rows, in input order, like ``inner.embed``."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings, not a single string")
        keys = [text_key(t) for t in texts]
        found, stale = self._read(keys)
        todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in found}
        fresh: dict[str, Any] = {}
        if todo:
            vecs = self.inner.embed(list(todo.values()))
            fresh = dict(zip(todo, vecs, strict=True))
        self._write(fresh, stale)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = found[key] if key in found else fresh[key]
        return out

    def lookup(self, texts: Sequence[str]) -> dict[int, Any]:
        """The stored vectors of ``texts`` by position; embeds nothing."""
        keys = [text_key(t) for t in texts]
        found, stale = self._read(keys)
        self._write({}, stale)
        return {i: found[k] for i, k in enumerate(keys) if k in found}

    def store(self, texts: Sequence[str], vectors: Any) -> None:
        """Keep vectors embedded elsewhere (a background thread) for ``texts``."""
        self._write({text_key(t): v for t, v in zip(texts, vectors, strict=True)}, [])

    def _read(self, keys: list[str]) -> tuple[dict[str, Any], list[str]]:
        try:
            return self.cache.get(self.name, self.dim, keys)
        except DatabaseError as exc:
            log.warning("vector cache unreadable, embedding all", extra={"error": str(exc)})
            return {}, []

    def _write(self, fresh: dict[str, Any], stale: list[str]) -> None:
        try:
            self.cache.put(self.name, self.dim, fresh, stale)
        except DatabaseError as exc:
            # The vectors are good; only the next process pays for them again.
            log.warning("vector cache not written", extra={"error": str(exc)})


def open_vector_cache(db: Database | None, max_rows: int) -> VectorCache | None:
    """The shared vector cache of ``db``, or None without a db or when ``max_rows`` is 0."""
    if db is None or max_rows <= 0:
        return None
    return VectorCache(db, max_rows)
