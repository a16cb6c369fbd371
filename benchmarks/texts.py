"""Texts the benchmarks and the tests share (importable as `benchmarks.texts` from the
repository root: the benchmark scripts put it on sys.path, pytest runs from it)."""

from __future__ import annotations


def pasted_log(chars: int) -> str:
    """A question, a pasted service log of about `chars` characters, and what to do with it:
    thousands of numbers and ids, each one a needle relevance would look for."""
    head = "Why does alpha-7 crash every night? Here is the log of the last run:\n\n"
    tail = "\n\nExplain the root cause step by step and how to fix it."
    lines, n, i = [], len(head) + len(tail), 0
    while n < chars:
        line = (
            f"2026-03-{i % 28 + 1:02d}T{i % 24:02d}:{i % 60:02d}:07Z WARN alpha-{i % 12 + 1} "
            f"GET /api/v2/orders/{i} 200 {i % 997}ms; thread pool queue depth {i % 50}"
        )
        lines.append(line)
        n, i = n + len(line) + 1, i + 1
    return head + "\n".join(lines) + tail
