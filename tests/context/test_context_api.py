"""Pruning, summaries, breakpoints and count_tokens through the real SDK against the local
fake API (strict: request bodies are checked against the public OpenAPI document)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tars_opt import Request, open_app
from tars_opt.backends.anthropic import AnthropicBackend
from tars_opt.context.token_counts import TokenCounter
from tests.context.test_prompt_cache import LONG_SYSTEM
from tests.context.test_prune import FILLER, conversation


@pytest.fixture
def backend(strict_fake_api) -> AnthropicBackend:
    return AnthropicBackend("test-key", base_url=strict_fake_api.url, max_retries=0)


def test_pruned_and_marked_requests_are_valid_and_hit_the_cache(
    strict_fake_api, backend: AnthropicBackend, home: Path
) -> None:
    Path("performance-config.yaml").write_text("prune: {semantic: false}\n")
    app = open_app()
    opt = app.optimizer(backend=backend)
    history = list(conversation(30))
    replies = []
    for turn in range(3):
        req = Request.from_prompt(
            f"Next step {turn}?",
            messages=tuple(history),
            system=LONG_SYSTEM,
            model="claude-sonnet-5-5",
        )
        replies.append(opt.ask(req))
        history += [
            {"role": "user", "content": req.prompt},
            {"role": "assistant", "content": f"Answer {turn}: " + FILLER},
        ]
    sent = [r.body for r in strict_fake_api.requests_to("/v1/messages", "POST")]
    summaries = [b for b in sent if "Summarize this part" in str(b["messages"][-1]["content"])]
    assert len(summaries) == 1  # made once, reused on the next turns
    main_calls = [b for b in sent if b not in summaries]
    assert all(len(b["messages"]) < 61 for b in main_calls)  # pruned
    # ttl auto: the first call marks the end of its history; from the second the
    # system prompt, sent moments ago, gets its own 1h breakpoint.
    assert "cache_control" in str(main_calls[0]["messages"])
    assert all("'ttl': '1h'" in str(b["system"]) for b in main_calls[1:])
    assert replies[0].usage.cache_write > 0
    assert replies[1].usage.cache_read > 0 and replies[2].usage.cache_read > 0
    summary_row = app.db.execute(
        "SELECT model, cost, baseline_cost FROM calls WHERE query_type = 'summary'"
    ).fetchone()
    assert summary_row[0] == "claude-haiku-5-5" and summary_row[1] > 0 and summary_row[2] == 0


def test_count_tokens_through_the_sdk_is_exact_cached_and_backs_off(
    strict_fake_api, backend: AnthropicBackend
) -> None:
    body = {"model": "claude-sonnet-5-5", "messages": [{"role": "user", "content": "hi there"}]}
    now = [0.0]
    counter = TokenCounter(backend, clock=lambda: now[0])
    count = counter.count(body)
    assert count.exact and count.tokens == strict_fake_api.count_tokens(body)
    assert counter.count(body).exact
    assert len(strict_fake_api.requests_to("/v1/messages/count_tokens")) == 1  # cached
    strict_fake_api.inject(429, path_prefix="/v1/messages/count_tokens")
    other = {**body, "messages": [{"role": "user", "content": "something else"}]}
    limited = counter.count(other)
    assert limited.exact is False  # the estimate, marked as such
    assert counter.count(other).exact is False  # backing off: no second call
    assert len(strict_fake_api.requests_to("/v1/messages/count_tokens")) == 2
    now[0] = 61.0
    assert counter.count(other).exact
