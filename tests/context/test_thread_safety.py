"""State the stages share between the threads of one process stays consistent when many
requests run at once (the in-process client and the gateway answer from many threads)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from tars_opt.context.relevance import Scorer
from tars_opt.context.token_counts import TokenCounter


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Threads switch as often as the interpreter allows: races show up at once."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def run_at_once(n: int, work: Callable[[int], Any]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def one(i: int) -> None:
        try:
            start.wait(timeout=30)
            work(i)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


class CountingEmbedder:
    """Deterministic unit vectors; counts how often the model is built."""

    name, dim = "test", 8
    built = 0

    def __init__(self) -> None:
        type(self).built += 1

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.array([[hash(t) % 97 + i for i in range(self.dim)] for t in texts], np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_one_scorer_scores_from_many_threads(busy_switching: None) -> None:
    CountingEmbedder.built = 0
    # A tiny memory cache, cleared over and over while other threads read it.
    scorer = Scorer(CountingEmbedder, cache_size=6)
    texts = [f"tool {i} does thing {i}" for i in range(5)]
    expected = Scorer(CountingEmbedder, cache_size=100).scores("find thing 3", texts)
    CountingEmbedder.built = 0

    def work(i: int) -> None:
        for _ in range(30):
            assert scorer.scores("find thing 3", texts) == pytest.approx(expected)
            scorer.later([f"later {i}"])
            scorer.start_background()
            scorer.settle()

    assert run_at_once(8, work) == []
    assert CountingEmbedder.built == 1  # the model is loaded once, not once per thread


def test_the_count_tokens_rate_limit_holds_under_concurrent_callers(
    busy_switching: None,
) -> None:
    class Backend:
        name = "anthropic"
        calls = 0

        def count_tokens(self, params: dict[str, Any]) -> int:
            Backend.calls += 1
            return 7

    counter = TokenCounter(Backend(), per_minute=5, clock=lambda: 100.0)

    def work(i: int) -> None:
        counter.count({"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]})

    assert run_at_once(16, work) == []
    assert Backend.calls == 5
