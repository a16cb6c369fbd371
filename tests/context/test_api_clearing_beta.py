"""`prune.clear_tool_results.mode: api` adds `context_management`, which the API takes only
with the `context-management-2025-06-27` beta: every path that sends it carries the beta
(the SDK backend, its Message Batches, the gateway, the in-process client), merged into the
betas a client sent itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import pytest

import tars_opt
from tars_opt import Request, open_app
from tars_opt.backends.anthropic import AnthropicBackend
from tars_opt.backends.betas import CONTEXT_MANAGEMENT, merged, with_betas
from tests.fake_anthropic.server import FakeAnthropic
from tests.gateway.harness import serve
from tests.pipeline.test_agent_core import body

OTHER = "interleaved-thinking-2025-05-14"


@pytest.fixture(autouse=True)
def api_clearing(home: Path) -> None:
    Path("performance-config.yaml").write_text(
        "prune:\n  semantic: false\n"
        "  clear_tool_results: {mode: api, api_models: [claude-sonnet-5-5]}\n"
        "tools: {semantic: false}\n"
    )


def loop_body() -> dict[str, Any]:
    """An agent loop's second call: a tool use and its result in the history."""
    use = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Oslo"}}
    return body(
        [
            {"role": "user", "content": "What's the weather in Oslo?"},
            {"role": "assistant", "content": [use]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "rain, 8C"}
                ],
            },
        ]  # fmt: skip
    )


def _sent(fake: FakeAnthropic) -> Any:
    (sent,) = fake.requests_to("/v1/messages")
    assert sent.status == 200, sent.status
    assert sent.body["context_management"]["edits"][-1]["type"] == "clear_tool_uses_20250919"
    return sent


def test_the_sdk_backend_sends_the_beta_and_the_trace_says_so(fake_api_env: FakeAnthropic) -> None:
    fake_api_env.responder = lambda b: {"text": "Rainy, 8 C."}
    reply = open_app().optimizer().ask(Request.from_body(loop_body(), cache_mode="off"))
    assert reply.text == "Rainy, 8 C."
    assert _sent(fake_api_env).header("anthropic-beta") == CONTEXT_MANAGEMENT
    prune = next(d for d in reply.decisions if d.stage == "prune")
    assert prune.action == "api_clearing" and prune.data["beta"] == CONTEXT_MANAGEMENT
    assert f"anthropic-beta {CONTEXT_MANAGEMENT}" in prune.reason
    row = open_app().ledger.get(reply.request_id)
    assert any(d.get("data", {}).get("beta") == CONTEXT_MANAGEMENT for d in row["decisions"])


def test_a_batch_carries_the_betas_its_requests_need(fake_api: FakeAnthropic) -> None:
    backend = AnthropicBackend("test-key", base_url=fake_api.url, max_retries=0)
    edit = {"type": "clear_tool_uses_20250919"}
    params = {**loop_body(), "context_management": {"edits": [edit]}}
    batch = backend.submit_batch([{"custom_id": "a", "params": params}])
    (item,) = backend.batch_results(batch.id)
    assert item.outcome == "succeeded", item.error
    plain = backend.submit_batch([{"custom_id": "b", "params": loop_body()}])
    created = fake_api.requests_to("/v1/messages/batches")
    assert [r.header("anthropic-beta") for r in created if r.method == "POST"] == [
        CONTEXT_MANAGEMENT,
        None,
    ]
    assert plain.id != batch.id


@pytest.mark.parametrize(
    ("own", "expected"),
    [
        (None, CONTEXT_MANAGEMENT),
        (OTHER, f"{OTHER},{CONTEXT_MANAGEMENT}"),
        (f"{OTHER}, {CONTEXT_MANAGEMENT}", f"{OTHER}, {CONTEXT_MANAGEMENT}"),  # as sent
    ],
)
def test_the_gateway_merges_the_beta_into_the_clients(
    fake_api: FakeAnthropic, own: str | None, expected: str
) -> None:
    fake_api.responder = lambda b: {"text": "Rainy."}
    headers = {"anthropic-beta": own} if own else None
    with serve(fake_api.url) as gw:
        c = anthropic.Anthropic(base_url=gw.url, api_key="test-key", max_retries=0)
        message = c.messages.create(**loop_body(), extra_headers=headers)
        assert message.content[0].text == "Rainy."
        # A call tars-opt adds no beta field to goes with the client's header as sent.
        plain = {**loop_body(), "tools": [], "messages": [{"role": "user", "content": "hi"}]}
        c.messages.create(**plain, extra_headers=headers)
    first, second = fake_api.requests_to("/v1/messages")
    assert first.header("anthropic-beta") == expected
    assert "context_management" not in second.body
    assert second.header("anthropic-beta") == own


def test_the_in_process_client_merges_the_beta_into_the_callers(
    fake_api_env: FakeAnthropic,
) -> None:
    fake_api_env.responder = lambda b: {"text": "Rainy."}
    client = tars_opt.Anthropic()
    client.messages.create(**loop_body(), extra_headers={"anthropic-beta": OTHER})
    assert _sent(fake_api_env).header("anthropic-beta") == f"{OTHER},{CONTEXT_MANAGEMENT}"


def test_a_client_that_sends_context_management_itself_keeps_its_own_headers(
    fake_api: FakeAnthropic,
) -> None:
    # Its own edits (no tool clearing): ours is added after them; its beta is its own.
    own = {"context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}}
    with serve(fake_api.url) as gw:
        c = anthropic.Anthropic(base_url=gw.url, api_key="test-key", max_retries=0)
        with pytest.raises(anthropic.BadRequestError, match="context_management"):
            c.messages.create(**loop_body(), extra_body=own)  # refused as by the API
        beta = {"anthropic-beta": CONTEXT_MANAGEMENT}
        c.messages.create(**loop_body(), extra_body=own, extra_headers=beta)
    refused, accepted = fake_api.requests_to("/v1/messages")
    assert refused.header("anthropic-beta") is None and refused.status == 400
    edits = [e["type"] for e in accepted.body["context_management"]["edits"]]
    assert edits == ["clear_thinking_20251015", "clear_tool_uses_20250919"]
    assert accepted.header("anthropic-beta") == CONTEXT_MANAGEMENT


def test_betas_merge_without_duplicates_in_the_clients_order() -> None:
    assert merged(["b, a", "c"], ["a", "d", "d"]) == "b,a,c,d"
    headers = [("x-api-key", "k"), ("Anthropic-Beta", "a"), ("anthropic-beta", "b")]
    assert with_betas(headers, ["c"]) == [("x-api-key", "k"), ("anthropic-beta", "a,b,c")]
    assert with_betas(headers, []) is headers
    assert with_betas(headers, ["b"]) is headers  # named already: forwarded as sent
