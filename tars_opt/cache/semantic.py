"""The semantic side of the response cache: the embedder (loaded lazily) and the index.

Vectors live in `cache_entries.embedding`; a PartitionedIndex keyed by (namespace, context
fingerprint, model selector, query type) holds them in memory and catches up with rows
written since (by this or another process) before each search. Candidates are re-read from
the table before use, so entries forgotten or expired elsewhere are never served.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from tars_opt.cache.store import CacheStore, Entry
from tars_opt.errors import EmbeddingUnavailable

log = logging.getLogger("tars_opt.cache")

Partition = tuple[str, str, str, str]
EmbedderFactory = Callable[[], Any]


def _default_factory() -> Any:
    from tars_opt.embeddings.model import get_embedder

    return get_embedder()


class SemanticIndex:
    """Embeds prompts and finds the nearest live entries within one partition.

    `factory` returns an object with `name`, `dim` and `embed(texts)`; when it fails
    (model missing or corrupt), `problem` holds the one-line reason and semantic lookups
    stop for this process, with one warning.
    """

    def __init__(self, store: CacheStore, factory: EmbedderFactory | None = None) -> None:
        self.store = store
        self._factory = factory or _default_factory
        self._embedder: Any = None
        self.problem: str | None = None
        self._index: Any = None
        self._seen = 0  # highest entry id loaded into the index
        # The model load and the in-memory index are shared by the threads of a process.
        self._lock = threading.RLock()

    @property
    def model_name(self) -> str | None:
        return getattr(self._embedder, "name", None)

    def embedder(self) -> Any | None:
        """The embedder, loaded on first use; None (and `problem` set) when unavailable."""
        if self._embedder is None and self.problem is None:
            with self._lock:
                if self._embedder is None and self.problem is None:
                    try:
                        self._embedder = self._factory()
                    except EmbeddingUnavailable as exc:
                        self.problem = f"semantic cache off: {exc}"
                        log.warning(self.problem)
        return self._embedder

    def embed(self, text: str) -> np.ndarray | None:
        """The unit vector of `text`, or None when the model is unavailable."""
        model = self.embedder()
        if model is None:
            return None
        return np.asarray(model.embed([text])[0], dtype=np.float32)

    def _refresh(self, now: float) -> None:
        from tars_opt.embeddings.index import PartitionedIndex, from_blob

        model = self.embedder()
        if model is None:
            return
        if self._index is None:
            self._index = PartitionedIndex(model.dim)
        grouped: dict[Partition, tuple[list[int], list[np.ndarray]]] = {}
        for row in self.store.vectors(self._seen, now):
            self._seen = max(self._seen, row["id"])
            key = (row["namespace"], row["fingerprint"], row["selector"], row["query_type"])
            try:
                vec = from_blob(row["embedding"], model.dim)
            except ValueError:
                continue  # a vector of another model or a damaged blob: never matched
            if not np.all(np.isfinite(vec)) or not vec.any():
                continue
            ids, vecs = grouped.setdefault(key, ([], []))
            ids.append(row["id"])
            vecs.append(vec)
        for key, (ids, vecs) in grouped.items():  # one bulk add per partition
            self._index.add_many(key, ids, np.vstack(vecs))

    def forget(self, entry_id: int) -> None:
        """Drop an entry from the in-memory index (it was deleted or expired)."""
        with self._lock:
            if self._index is not None:
                self._index.remove(entry_id)

    def add(self, partition: Partition, entry_id: int, vec: np.ndarray) -> None:
        """Index an entry this process just stored."""
        with self._lock:
            if self._index is not None:
                self._index.add(partition, entry_id, vec)
                self._seen = max(self._seen, entry_id)

    def search(
        self, partition: Partition, vec: np.ndarray, k: int, min_score: float, now: float
    ) -> list[tuple[Entry, float]]:
        """Live entries of `partition` at cosine >= `min_score`, best first (at most k)."""
        with self._lock:
            self._refresh(now)
            if self._index is None:
                return []
            found = self._index.search(partition, vec, k=k, min_score=min_score)
        out: list[tuple[Entry, float]] = []
        for entry_id, score in found:
            entry = self.store.live(int(entry_id), now)
            if entry is None:
                self.forget(entry_id)
                continue
            out.append((entry, score))
        return out
