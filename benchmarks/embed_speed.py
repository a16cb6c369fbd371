"""Speed, memory and quality of the offline embedder and the in-memory vector index.

Run: python benchmarks/embed_speed.py [--rounds 5] [--no-quality]

Prints model load time, single-query embed latency (p50/p99, median over rounds),
1,000-sentence throughput, STS-B test Spearman (if the shared data is beside the repo),
VectorIndex search latency at 1k/10k/100k entries, and RSS.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tars_opt.embeddings.index import PartitionedIndex, VectorIndex  # noqa: E402
from tars_opt.embeddings.model import MiniLMEmbedder, get_embedder  # noqa: E402

STSB = Path(os.environ.get("TARS_OPT_SHARED_DATA", REPO.parent / "shared" / "data")) / "stsb"


def rss_mb() -> tuple[float, float]:
    """Current and peak resident set size in MiB (Linux /proc, else getrusage peak)."""
    try:
        status = Path("/proc/self/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return peak, peak


def latencies(fn: Callable[[int], object], n: int, rounds: int) -> tuple[float, float]:
    """Median over ``rounds`` of the per-round p50 and p99 of ``n`` calls, in ms."""
    p50s, p99s = [], []
    for _ in range(rounds):
        times = np.empty(n)
        for i in range(n):
            start = time.perf_counter()
            fn(i)
            times[i] = time.perf_counter() - start
        p50s.append(np.percentile(times, 50) * 1e3)
        p99s.append(np.percentile(times, 99) * 1e3)
    return float(np.median(p50s)), float(np.median(p99s))


def stsb_test() -> tuple[list[str], list[str], np.ndarray] | None:
    """STS-B test pairs and gold scores, or None when the shared data is not there."""
    path = STSB / "sts-test.csv"
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r[5] for r in rows], [r[6] for r in rows], np.array([float(r[4]) for r in rows])


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (what scipy.stats.rankdata does), in numpy."""
    values, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2.0)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation = Pearson correlation of the ranks."""
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def bench_embedder(rounds: int, quality: bool) -> None:
    before = rss_mb()[0]
    start = time.perf_counter()
    embedder: MiniLMEmbedder = get_embedder()
    took = time.perf_counter() - start
    import onnxruntime  # already imported by the load above

    print(
        f"model load (onnxruntime {onnxruntime.__version__}; imports, sha256 of both files, "
        f"session): {took:.3f} s"
    )
    after = rss_mb()[0]
    print(
        f"RSS: {before:.0f} MiB before load (python, numpy, tars_opt), {after:.0f} MiB after "
        f"(+{after - before:.0f} MiB for onnxruntime and the model)"
    )

    data = stsb_test()
    sentences = (
        (data[0] + data[1])[:1000]
        if data
        else [
            f"Sentence {i} asks how to configure feature {i % 37} of the tool." for i in range(1000)
        ]
    )
    queries = sentences[:200]
    embedder.embed(queries[:8])  # warm-up: first run allocates onnxruntime buffers
    p50, p99 = latencies(lambda i: embedder.embed([queries[i]]), len(queries), rounds)
    mean_tokens = np.mean([len(embedder._tokenizer.encode(q).ids) for q in queries])
    print(
        f"single query embed: p50 {p50:.2f} ms, p99 {p99:.2f} ms "
        f"(median of {rounds} rounds x {len(queries)} queries, mean {mean_tokens:.0f} tokens)"
    )
    start = time.perf_counter()
    embedder.embed(sentences)
    took = time.perf_counter() - start
    print(
        f"1,000 sentences (batches of {embedder.batch_size}): {took:.2f} s "
        f"= {len(sentences) / took:.0f} sentences/s"
    )

    if quality and data:
        left, right, gold = data
        cos = np.einsum("ij,ij->i", embedder.embed(left), embedder.embed(right))
        print(f"STS-B test Spearman ({len(gold)} pairs): {100 * spearman(cos, gold):.2f}")
    elif quality:
        print(f"STS-B test Spearman: skipped, no data at {STSB}")


def bench_index(rounds: int, dim: int = 384) -> None:
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((200, dim), dtype=np.float32)
    for n in (1_000, 10_000, 100_000):
        vecs = rng.standard_normal((n, dim), dtype=np.float32)
        index = VectorIndex(dim)
        start = time.perf_counter()
        index.add_many(list(range(n)), vecs)
        built = time.perf_counter() - start
        p50, p99 = latencies(lambda i, ix=index: ix.search(queries[i], k=1), 200, rounds)
        k10 = latencies(lambda i, ix=index: ix.search(queries[i], k=10), 50, rounds)
        # The floor: one bare BLAS matrix-vector product over the same matrix.
        floor = latencies(lambda i, m=vecs: m @ queries[i], 200, rounds)
        print(
            f"VectorIndex {n:>7,} x {dim}: top-1 p50 {p50:.3f} ms, p99 {p99:.3f} ms; "
            f"top-10 p50 {k10[0]:.3f} ms; bare numpy M@q p50 {floor[0]:.3f} ms; "
            f"add_many {built * 1e3:.0f} ms"
        )
        del index, vecs

    # Per-item adds exercise the doubling growth and the id maps.
    index = VectorIndex(dim)
    one = rng.standard_normal((10_000, dim), dtype=np.float32)
    start = time.perf_counter()
    for i in range(10_000):
        index.add(i, one[i])
    print(
        f"VectorIndex add() one at a time: {(time.perf_counter() - start) * 1e2:.1f} us/add "
        f"(10k adds); remove(): ",
        end="",
    )
    start = time.perf_counter()
    for i in range(0, 10_000, 2):
        index.remove(i)
    print(f"{(time.perf_counter() - start) * 2e2:.1f} us/remove")

    # The semantic cache's shape: 100k entries over 100 partitions, search one partition.
    parts = PartitionedIndex(dim)
    vecs = rng.standard_normal((100_000, dim), dtype=np.float32)
    for p in range(100):
        parts.add_many(
            ("ns", p, "fact"),
            list(range(p * 1000, (p + 1) * 1000)),
            vecs[p * 1000 : (p + 1) * 1000],
        )
    p50, p99 = latencies(lambda i: parts.search(("ns", i % 100, "fact"), queries[i]), 200, rounds)
    print(f"PartitionedIndex 100,000 in 100 partitions: top-1 p50 {p50:.3f} ms, p99 {p99:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="repeat each latency run")
    parser.add_argument("--no-quality", action="store_true", help="skip the STS-B check")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    bench_embedder(args.rounds, quality=not args.no_quality)
    bench_index(args.rounds)
    now, peak = rss_mb()
    print(f"RSS at end: {now:.0f} MiB (peak {peak:.0f} MiB, incl. the 100k x 384 matrices)")


if __name__ == "__main__":
    main()
