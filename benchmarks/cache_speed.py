"""Response-cache lookup latency and memory at 1k, 10k and 100k entries.

All entries sit in ONE partition (same namespace, context, model and type): the worst case,
since a semantic search scans its partition. Vectors are random unit vectors (search cost
does not depend on their content). For each size it reports, over repeated lookups:
- exact hit: the stage answering a stored key (SQLite lookup + hit counter update);
- semantic miss excluding the embedding: exact + normalised lookups + a full scan of the
  partition, with the query vector precomputed;
- semantic miss including the embedding: the same with the real MiniLM model;
- cold index load: the first semantic search in a process reads every vector from SQLite;
- memory: the in-memory index matrix and the process's peak RSS.

Usage: python benchmarks/cache_speed.py [--sizes 1000 10000 100000] [--lookups 300]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tars_opt import Reply, Request  # noqa: E402
from tars_opt.cache.keys import context_fingerprint, exact_key, model_selector  # noqa: E402
from tars_opt.cache.stage import CacheStage  # noqa: E402
from tars_opt.config.loader import load_config  # noqa: E402
from tars_opt.embeddings.index import to_blob  # noqa: E402
from tars_opt.embeddings.model import DIM, get_embedder  # noqa: E402
from tars_opt.store import connect  # noqa: E402

NOW = 1_800_000_000.0


class FixedVector:
    """An embedder stand-in that returns a precomputed vector (embedding time excluded)."""

    name = "fixed"
    dim = DIM

    def __init__(self, vec: np.ndarray) -> None:
        self.vec = vec

    def embed(self, texts):  # noqa: ANN001, ANN201
        return np.tile(self.vec, (len(texts), 1))


def fill(db, config, n: int, rng: np.random.Generator) -> Request:  # noqa: ANN001
    """Insert n entries into one partition; return a request of that partition."""
    proto = Request.from_prompt("x", query_type="fact")
    selector = model_selector(proto, config)
    fingerprint = context_fingerprint(proto)
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    rows = []
    for i in range(n):
        prompt = f"Stored question number {i} about topic {i % 97}?"
        req = Request.from_prompt(prompt, query_type="fact")
        rows.append(
            (
                exact_key(req, selector),
                f"norm{i}",
                "default",
                fingerprint,
                selector,
                "fact",
                1,
                0,
                prompt,
                to_blob(vecs[i]),
                "bench",
                "An answer " * 40,
                "claude-sonnet-5-5",
                "end_turn",
                1024,
                20,
                0,
                0,
                0,
                300,
                1,
                0,
                f"req_{i}",
                NOW - 10,
                NOW + 86400,
                0,
                1800,
            )
        )
    db.execute("BEGIN")
    db.conn.executemany(
        """INSERT INTO cache_entries (key, norm_key, namespace, fingerprint, selector,
           query_type, semantic, time_sensitive, prompt, embedding, embed_model, reply, model,
           stop_reason, max_tokens, input_tokens, cache_write_5m, cache_write_1h, cache_read,
           output_tokens, usage_estimated, removed_tokens, request_id, created, expires, hits,
           bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
           ?, ?, ?, ?)""",
        rows,
    )
    db.execute("COMMIT")
    return Request.from_prompt("Stored question number 0 about topic 0?", query_type="fact")


def timed(fn, repeats: int) -> np.ndarray:  # noqa: ANN001
    out = np.empty(repeats)
    for i in range(repeats):
        t = time.perf_counter()
        fn(i)
        out[i] = (time.perf_counter() - t) * 1000.0
    return out


def stats(ms: np.ndarray) -> str:
    return f"p50 {np.percentile(ms, 50):6.2f} ms  p99 {np.percentile(ms, 99):6.2f} ms"


def measure(n: int, config, model, rng: np.random.Generator, lookups: int) -> None:  # noqa: ANN001
    """Fill a fresh database with n entries and print the latencies and memory."""
    with tempfile.TemporaryDirectory() as tmp:
        db = connect(Path(tmp) / "bench.db")
        stored = fill(db, config, n, rng)
        query = rng.standard_normal(DIM).astype(np.float32)
        query /= np.linalg.norm(query)
        fixed = FixedVector(query)
        stage = CacheStage(config, db, clock=lambda: NOW, embedder_factory=lambda: fixed)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        first = stage.apply(Request.from_prompt("Is this a new question 0?", query_type="fact"))
        cold = (time.perf_counter() - t) * 1000.0
        assert not isinstance(first, Reply), "expected a miss"
        index = stage.semantic._index
        parts = [index.partition(k) for k in index.keys()]  # noqa: SIM118 - not a dict
        index_mb = sum(part.capacity * DIM * 4 for part in parts if part) / 2**20
        assert getattr(stage.apply(stored), "source", None) == "cache", "expected a hit"
        hit = timed(lambda i: stage.apply(stored), lookups)
        excl = timed(
            lambda i: stage.apply(
                Request.from_prompt(f"Is this new question {i}?", query_type="fact")
            ),
            lookups,
        )
        real = CacheStage(config, db, clock=lambda: NOW, embedder_factory=lambda: model)
        real.apply(Request.from_prompt("warm up the index", query_type="fact"))
        incl = timed(
            lambda i: real.apply(
                Request.from_prompt(f"Is this a new question {i} about cats?", query_type="fact")
            ),
            lookups,
        )
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"{n:>8} | {'exact hit':<34} | {stats(hit)}")
        print(f"{n:>8} | {'semantic miss, embedding excluded':<34} | {stats(excl)}")
        print(f"{n:>8} | {'semantic miss, embedding included':<34} | {stats(incl)}")
        print(f"{n:>8} | {'cold index load (first search)':<34} | {cold:8.1f} ms")
        print(
            f"{n:>8} | {'memory':<34} | index {index_mb:.1f} MB, peak RSS "
            f"{rss / 1024:.0f} MB (+{(rss - rss_before) / 1024:.0f} MB at load)"
        )
        db.conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--lookups", type=int, default=300)
    args = parser.parse_args()
    config = load_config(overrides={"cache.max_entries": 10**7, "cache.max_bytes": 10**12}).config
    print(f"shipped semantic threshold (fact): {config.cache.semantic.thresholds['fact']}")
    model = get_embedder()
    rng = np.random.default_rng(7)
    print(f"{'entries':>8} | {'lookup':<34} | latency")
    for n in args.sizes:
        measure(n, config, model, rng, args.lookups)


if __name__ == "__main__":
    main()
