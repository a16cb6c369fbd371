"""In-memory exact cosine search over float32 vectors, and their SQLite BLOB encoding.

SQLite holds the vectors (``to_blob``/``from_blob``); a :class:`VectorIndex` keeps them as
float32 matrices refreshed incrementally (amortised doubling on add, swap-with-last on
remove), so a search is a BLAS matrix-vector product. :class:`PartitionedIndex` keeps one
index per partition key - the semantic cache only compares entries with the same
(namespace, context fingerprint, query type) - so a search reads only its partition.

A scan is memory-bound (100k x 384 float32 is 150 MB), so each row is stored in two
column blocks: the first quarter ("head") and the rest ("tail", with its norm). A search
with a ``min_score`` reads only the heads and bounds the rest by Cauchy-Schwarz
(q_tail . x_tail <= |q_tail| |x_tail|); only rows whose bound reaches the score have their
tail read. The result is exact - the same hits as a full scan - at about a quarter of the
memory traffic when the score is high (the cache's thresholds are ~0.99). Scans run on one
BLAS thread: OpenBLAS's idle workers spin after a call and would otherwise slow the
embedding model sharing the cores by 2-3x.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

Id = Hashable
Hit = tuple[Any, float]

_BLOB_DTYPE = np.dtype("<f4")  # fixed little-endian so BLOBs are portable across machines


def to_blob(vec: Any) -> bytes:
    """Encode a vector as little-endian float32 bytes for a SQLite BLOB column."""
    return np.ascontiguousarray(vec, dtype=_BLOB_DTYPE).ravel().tobytes()


def from_blob(blob: bytes, dim: int | None = None) -> np.ndarray:
    """Decode :func:`to_blob` bytes to a writable float32 vector (checks ``dim`` if given)."""
    if len(blob) % _BLOB_DTYPE.itemsize:
        raise ValueError(f"vector blob of {len(blob)} bytes is not a whole number of float32")
    vec = np.frombuffer(blob, dtype=_BLOB_DTYPE).astype(np.float32)  # astype copies
    if dim is not None and vec.shape[0] != dim:
        raise ValueError(f"vector blob has {vec.shape[0]} dimensions, expected {dim}")
    return vec


def _checked(vecs: Any, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """A (n, dim) float32 view of ``vecs`` (no copy if already float32) and its row norms."""
    mat = np.asarray(vecs, dtype=np.float32)
    if mat.ndim == 1:
        mat = mat[None, :]
    if mat.ndim != 2 or mat.shape[1] != dim:
        raise ValueError(f"expected vectors of dimension {dim}, got shape {mat.shape}")
    # einsum avoids linalg.norm's full-size temporary (100k x 384 is 150 MB).
    norms = np.sqrt(np.einsum("ij,ij->i", mat, mat))
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise ValueError("vectors must be finite and non-zero")
    return mat, norms


def _unit_rows(vecs: Any, dim: int) -> np.ndarray:
    """Validate and L2-normalise a (n, dim) batch so dot products are cosines."""
    mat, norms = _checked(vecs, dim)
    return mat / norms[:, None]


def _top(scores: np.ndarray, k: int, min_score: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Positions and scores of the k best entries of ``scores``, best first."""
    if min_score is not None:
        keep = np.flatnonzero(scores >= min_score)
        if keep.size == 0:
            return keep, scores[keep]
        if keep.size < scores.size:
            sub_pos, sub_scores = _top(scores[keep], k, None)
            return keep[sub_pos], sub_scores
    if k == 1:  # the cache's common case: argmax is one pass, no sort
        best = int(np.argmax(scores))
        return np.array([best]), scores[best : best + 1]
    k = min(k, scores.size)
    pos = np.argpartition(-scores, k - 1)[:k]
    pos = pos[np.argsort(-scores[pos], kind="stable")]
    return pos, scores[pos]


_BOUND_SLACK = 1e-5  # float32 rounding in the bound; a wider candidate set stays exact
_blas: Any = None  # threadpoolctl controller, built on first search (it scans loaded libs)


def _one_blas_thread() -> Any:
    """A context manager that runs BLAS calls inside it on one thread."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")


class VectorIndex:
    """Exact cosine top-k over vectors with hashable ids (ints, strings, tuples).

    Not thread-safe: the owner (e.g. the cache store) serialises writes with its own lock.
    """

    def __init__(self, dim: int, capacity: int = 16) -> None:
        """An empty index for ``dim``-dimensional vectors; ``capacity`` rows preallocated."""
        if dim <= 0:
            raise ValueError("dim must be positive")
        self.dim = dim
        self._split = max(1, dim // 4)
        rows = max(1, capacity)
        self._head = np.empty((rows, self._split), dtype=np.float32)
        self._tail = np.empty((rows, dim - self._split), dtype=np.float32)
        self._tail_norm = np.empty(rows, dtype=np.float32)
        self._ids: list[Id] = []
        self._row: dict[Id, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, id: object) -> bool:
        return id in self._row

    def __iter__(self) -> Iterator[Id]:
        return iter(list(self._ids))

    @property
    def capacity(self) -> int:
        """Rows allocated; grows by doubling, so adding n vectors copies O(n) rows in total."""
        return self._head.shape[0]

    def _resize(self, rows: int) -> None:
        used = len(self)
        for name in ("_head", "_tail", "_tail_norm"):
            old = getattr(self, name)
            new = np.empty((rows, *old.shape[1:]), dtype=np.float32)
            new[:used] = old[:used]
            setattr(self, name, new)

    def _put(self, row: int | slice, unit: np.ndarray) -> None:
        """Store already-normalised rows ``unit`` at ``row``."""
        self._head[row] = unit[..., : self._split]
        tail = unit[..., self._split :]
        self._tail[row] = tail
        self._tail_norm[row] = np.sqrt(np.einsum("...j,...j->...", tail, tail))

    def add(self, id: Id, vec: Any) -> None:
        """Add (or replace) one vector; it is stored L2-normalised."""
        self.add_many([id], vec)

    def add_many(self, ids: Sequence[Id], vecs: Any) -> None:
        """Add (or replace) vectors in bulk; a repeated id keeps its last vector."""
        if not len(ids):
            return
        mat, norms = _checked(vecs, self.dim)
        if mat.shape[0] != len(ids):
            raise ValueError(f"{len(ids)} ids but {mat.shape[0]} vectors")
        last = {id: i for i, id in enumerate(ids)}  # dedupe within the batch
        fresh: list[int] = []
        for id, i in last.items():
            row = self._row.get(id)
            if row is None:
                fresh.append(i)
            else:
                self._put(row, mat[i] / norms[i])
        if not fresh:
            return
        start, end = len(self), len(self) + len(fresh)
        if end > self.capacity:
            self._resize(max(end, 2 * self.capacity))
        # Normalise in slices of 8k rows: no batch-sized temporary (100k x 384 is 150 MB).
        for lo in range(0, len(fresh), 8192):
            part = fresh[lo : lo + 8192]
            self._put(slice(start + lo, start + lo + len(part)), mat[part] / norms[part, None])
        new_ids = [ids[i] for i in fresh]
        self._row.update(zip(new_ids, range(start, end), strict=True))
        self._ids.extend(new_ids)

    def remove(self, id: Id) -> bool:
        """Remove a vector by id (the last row moves into its slot); False if absent."""
        row = self._row.pop(id, None)
        if row is None:
            return False
        last = len(self._ids) - 1
        if row != last:
            self._head[row] = self._head[last]
            self._tail[row] = self._tail[last]
            self._tail_norm[row] = self._tail_norm[last]
            moved = self._ids[last]
            self._ids[row] = moved
            self._row[moved] = row
        self._ids.pop()
        # Give memory back after mass expiry, with slack so add/remove cycles don't thrash.
        if self.capacity > 1024 and len(self._ids) < self.capacity // 4:
            self._resize(self.capacity // 2)
        return True

    def clear(self) -> None:
        """Remove every vector."""
        self._ids.clear()
        self._row.clear()

    def vector(self, id: Id) -> np.ndarray:
        """A copy of the stored (normalised) vector; KeyError if absent."""
        row = self._row[id]
        return np.concatenate([self._head[row], self._tail[row]])

    def search(
        self,
        vec: Any,
        k: int = 1,
        min_score: float | None = None,
        allowed: Collection[Id] | None = None,
    ) -> list[Hit]:
        """The ``k`` nearest ids by cosine, best first, as (id, cosine) pairs.

        ``min_score`` drops weaker matches (and lets the scan skip most of each row);
        ``allowed`` restricts the search to those ids (ids not in the index are ignored).
        The query need not be normalised.
        """
        if k <= 0 or not self._ids:
            return []
        query = _unit_rows(vec, self.dim)[0]
        q_head, q_tail = query[: self._split], query[self._split :]
        if allowed is None:
            rows: np.ndarray | slice = slice(0, len(self._ids))
        else:
            rows = np.fromiter(
                (r for r in (self._row.get(i) for i in allowed) if r is not None), dtype=np.intp
            )
            if rows.size == 0:
                return []
        with _one_blas_thread():
            head = self._head[rows] @ q_head
            if min_score is None:
                cand = None
                scores = head + self._tail[rows] @ q_tail
            else:
                bound = head + self._tail_norm[rows] * np.float32(np.linalg.norm(q_tail))
                cand = np.flatnonzero(bound >= min_score - _BOUND_SLACK)
                if cand.size == 0:
                    return []
                if cand.size > head.size // 4:  # a loose bound: gathering rows costs more
                    cand, scores = None, head + self._tail[rows] @ q_tail
                else:
                    picked = cand if isinstance(rows, slice) else rows[cand]
                    scores = head[cand] + self._tail[picked] @ q_tail
        pos, best = _top(scores, k, min_score)
        if cand is not None:
            pos = cand[pos]
        if not isinstance(rows, slice):
            pos = rows[pos]
        return [(self._ids[p], float(s)) for p, s in zip(pos.tolist(), best.tolist(), strict=True)]


class PartitionedIndex:
    """One :class:`VectorIndex` per partition key; ids are unique across partitions.

    A search scans only its partition, so unrelated namespaces and contexts cost nothing
    and can never match each other.
    """

    def __init__(self, dim: int) -> None:
        """An empty partitioned index for ``dim``-dimensional vectors."""
        self.dim = dim
        self._parts: dict[Hashable, VectorIndex] = {}
        self._key_of: dict[Id, Hashable] = {}

    def __len__(self) -> int:
        return len(self._key_of)

    def __contains__(self, id: object) -> bool:
        return id in self._key_of

    def keys(self) -> list[Hashable]:
        """Partition keys that hold at least one vector."""
        return list(self._parts)

    def partition(self, key: Hashable) -> VectorIndex | None:
        """The index of one partition, or None if it is empty."""
        return self._parts.get(key)

    def key_of(self, id: Id) -> Hashable | None:
        """The partition key an id lives in, or None."""
        return self._key_of.get(id)

    def add(self, key: Hashable, id: Id, vec: Any) -> None:
        """Add (or replace) a vector in partition ``key``, moving the id if it lived elsewhere."""
        self.add_many(key, [id], vec)

    def add_many(self, key: Hashable, ids: Sequence[Id], vecs: Any) -> None:
        """Add (or replace) vectors in bulk into one partition."""
        if not len(ids):
            return
        mat, _ = _checked(vecs, self.dim)  # validate before moving any id
        if mat.shape[0] != len(ids):
            raise ValueError(f"{len(ids)} ids but {mat.shape[0]} vectors")
        for id in ids:
            old = self._key_of.get(id)
            if old is not None and old != key:
                self.remove(id)
        part = self._parts.get(key)
        if part is None:
            part = self._parts[key] = VectorIndex(self.dim)
        part.add_many(ids, mat)
        for id in ids:
            self._key_of[id] = key

    def remove(self, id: Id) -> bool:
        """Remove a vector by id from whichever partition holds it; False if absent."""
        key = self._key_of.pop(id, None)
        if key is None:
            return False
        part = self._parts[key]
        part.remove(id)
        if not len(part):
            del self._parts[key]
        return True

    def search(
        self,
        key: Hashable,
        vec: Any,
        k: int = 1,
        min_score: float | None = None,
        allowed: Collection[Id] | None = None,
    ) -> list[Hit]:
        """Like :meth:`VectorIndex.search`, within partition ``key`` only."""
        part = self._parts.get(key)
        return part.search(vec, k, min_score, allowed) if part is not None else []

    def load(self, rows: Iterable[tuple[Hashable, Id, bytes]]) -> int:
        """Bulk-fill from (key, id, blob) rows, e.g. a SELECT over cache_entries."""
        grouped: dict[Hashable, tuple[list[Id], list[np.ndarray]]] = {}
        for key, id, blob in rows:
            ids, vecs = grouped.setdefault(key, ([], []))
            ids.append(id)
            vecs.append(from_blob(blob, self.dim))
        for key, (ids, vecs) in grouped.items():
            self.add_many(key, ids, np.vstack(vecs))
        return sum(len(ids) for ids, _ in grouped.values())
