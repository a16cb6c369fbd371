"""VectorIndex and PartitionedIndex against brute force; BLOB encoding."""

from __future__ import annotations

import numpy as np
import pytest

from tars_opt.embeddings.index import PartitionedIndex, VectorIndex, from_blob, to_blob

DIM = 16


def _unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    m = rng.standard_normal((n, dim)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def _brute(ref: dict[object, np.ndarray], q: np.ndarray, k: int) -> list[tuple[object, float]]:
    q = q / np.linalg.norm(q)
    scored = sorted(((float(v @ q), i) for i, v in ref.items()), key=lambda t: -t[0])
    return [(i, s) for s, i in scored[:k]]


def _same(got: list[tuple[object, float]], want: list[tuple[object, float]]) -> None:
    assert [i for i, _ in got] == [i for i, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def test_blob_round_trip() -> None:
    vec = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    blob = to_blob(vec)
    assert isinstance(blob, bytes) and len(blob) == 384 * 4
    back = from_blob(blob, dim=384)
    assert back.dtype == np.float32 and np.array_equal(back, vec)
    back[0] = 1.0  # writable, independent of the blob
    assert to_blob([1.0, 2.0]) == np.array([1, 2], dtype="<f4").tobytes()
    with pytest.raises(ValueError, match="dimensions"):
        from_blob(blob, dim=383)
    with pytest.raises(ValueError, match="whole number"):
        from_blob(b"\x00" * 5)


def test_random_adds_and_removes_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    index = VectorIndex(DIM, capacity=2)
    ref: dict[object, np.ndarray] = {}
    next_id = 0
    for step in range(600):
        if ref and rng.random() < 0.35:
            victim = list(ref)[rng.integers(len(ref))]
            assert index.remove(victim)
            del ref[victim]
        else:
            vec = _unit(rng, 1)[0] * rng.uniform(0.5, 3)  # stored normalised
            index.add(f"id{next_id}", vec)
            ref[f"id{next_id}"] = vec / np.linalg.norm(vec)
            next_id += 1
        if step % 25 == 0 and ref:
            q = rng.standard_normal(DIM)
            for k in (1, 3, 50):
                _same(index.search(q, k=k), _brute(ref, q, k))
    assert len(index) == len(ref) and set(index) == set(ref)
    assert not index.remove("never-added")


@pytest.mark.parametrize("spread", [0.02, 0.3, 3.0])
def test_pruned_min_score_search_is_exact(spread: float) -> None:
    """The head-only bound never drops a match, whether it prunes nearly every row (tight
    clusters far from the query), few rows (a loose bound), or something between."""
    rng = np.random.default_rng(11)
    centres = _unit(rng, 5, 384)
    vecs = np.repeat(centres, 400, axis=0) + spread * _unit(rng, 2000, 384) / 384**0.5 * 8
    index = VectorIndex(384)
    index.add_many(list(range(2000)), vecs)
    ref = {i: v / np.linalg.norm(v) for i, v in enumerate(vecs)}
    for q in [vecs[3], vecs[1500] + 0.05 * rng.standard_normal(384), rng.standard_normal(384)]:
        for min_score in (0.0, 0.5, 0.9, 0.99):
            want = [(i, s) for i, s in _brute(ref, q, 7) if s >= min_score]
            _same(index.search(q, k=7, min_score=min_score), want)
            allowed = set(range(0, 2000, 2))
            sub = {i: ref[i] for i in allowed}
            want = [(i, s) for i, s in _brute(sub, q, 3) if s >= min_score]
            _same(index.search(q, k=3, min_score=min_score, allowed=allowed), want)
    np.testing.assert_allclose(index.vector(3), ref[3], atol=1e-6)


def test_min_score_and_allowed_filter() -> None:
    rng = np.random.default_rng(2)
    vecs = _unit(rng, 200)
    index = VectorIndex(DIM)
    index.add_many(list(range(200)), vecs)
    q = vecs[7] + 0.1 * rng.standard_normal(DIM).astype(np.float32)
    hits = index.search(q, k=10, min_score=0.5)
    assert hits and all(s >= 0.5 for _, s in hits) and hits[0][0] == 7
    assert index.search(q, k=5, min_score=1.01) == []
    allowed = set(range(0, 200, 3)) | {"unknown"}
    ref = {i: vecs[i] for i in allowed if i != "unknown"}
    _same(index.search(q, k=4, allowed=allowed), _brute(ref, q, 4))
    assert index.search(q, allowed=set()) == []
    assert index.search(q, k=0) == [] and VectorIndex(DIM).search(q) == []


def test_replace_and_duplicate_ids() -> None:
    index = VectorIndex(3)
    index.add("a", [1, 0, 0])
    index.add_many(["b", "a", "b"], [[0, 1, 0], [0, 0, 1], [0, 2, 0]])
    assert len(index) == 2
    np.testing.assert_allclose(index.vector("a"), [0, 0, 1])
    assert index.search([0, 0, 5])[0] == ("a", pytest.approx(1.0))


def test_growth_is_amortised_doubling() -> None:
    index = VectorIndex(4, capacity=1)
    caps = set()
    for i in range(2000):
        index.add(i, [np.cos(i / 1000), np.sin(i / 1000), 0, 0])
        caps.add(index.capacity)
    assert caps == {2**j for j in range(12)}  # 1, 2, 4, ... 2048: 11 reallocations
    for i in range(1990):
        index.remove(i)
    assert len(index) == 10 and index.capacity <= 1024  # shrinks after mass removal
    assert [i for i, _ in index.search([np.cos(1.995), np.sin(1.995), 0, 0])] == [1995]


def test_rejects_bad_vectors() -> None:
    index = VectorIndex(3)
    with pytest.raises(ValueError, match="dimension 3"):
        index.add("x", [1.0, 2.0])
    with pytest.raises(ValueError, match="non-zero"):
        index.add("x", [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="finite"):
        index.add("x", [np.nan, 1.0, 0.0])
    with pytest.raises(ValueError, match="2 ids but 1"):
        index.add_many(["x", "y"], [[1.0, 0, 0]])


def test_partitions_are_isolated_and_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    parts = PartitionedIndex(DIM)
    ref: dict[tuple[str, str, str], dict[object, np.ndarray]] = {}
    keys = [("ns", f"ctx{c}", qt) for c in range(3) for qt in ("fact", "code")]
    for n in range(300):
        key = keys[n % len(keys)]
        vec = _unit(rng, 1)[0]
        parts.add(key, n, vec)
        ref.setdefault(key, {})[n] = vec
    q = rng.standard_normal(DIM)
    for key in keys:
        _same(parts.search(key, q, k=5), _brute(ref[key], q, 5))
    assert parts.search(("other", "ctx", "fact"), q) == []
    assert len(parts) == 300 and set(parts.keys()) == set(keys)

    # Re-adding an id under another key moves it; emptying a partition drops it.
    parts.add(keys[1], 0, ref[keys[0]][0])
    assert parts.key_of(0) == keys[1] and 0 not in parts.partition(keys[0])  # type: ignore[operator]
    for n in list(ref[keys[2]]):
        assert parts.remove(n)
    assert parts.partition(keys[2]) is None and parts.search(keys[2], q) == []
    assert not parts.remove("missing")


def test_partitioned_load_from_blobs() -> None:
    rng = np.random.default_rng(4)
    vecs = _unit(rng, 10)
    rows = [(("ns", i % 2), f"e{i}", to_blob(v)) for i, v in enumerate(vecs)]
    parts = PartitionedIndex(DIM)
    assert parts.load(rows) == 10
    hit = parts.search(("ns", 1), vecs[3], k=1)
    assert hit[0][0] == "e3" and hit[0][1] == pytest.approx(1.0, abs=1e-6)
