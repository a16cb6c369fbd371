"""The real SDK against the local fake API: ask, stream, caching, errors, batches, secrets."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tars_opt import BackendError, Request, open_app
from tars_opt.backends.anthropic import AnthropicBackend
from tars_opt.cli.main import app

SECRET = "sk-ant-test-SECRET-0123456789abcdef"


@pytest.fixture
def api(fake_api, monkeypatch: pytest.MonkeyPatch):
    """The fake API with a key it checks, reachable through ANTHROPIC_BASE_URL."""
    fake_api.api_key = SECRET
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_api.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    return fake_api


def row(home: Path, request_id: str) -> sqlite3.Row:
    db = sqlite3.connect(home / "tars-opt.db")
    db.row_factory = sqlite3.Row
    return db.execute("SELECT * FROM calls WHERE request_id = ?", [request_id]).fetchone()


def test_ask_through_the_sdk_records_a_hand_checked_ledger_row(
    api, runner: CliRunner, home: Path
) -> None:
    api.responder = lambda body: {"text": "Paris.", "output_tokens": 7}
    result = runner.invoke(app, ["ask", "--json", "What is the capital of France?"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["answer"] == "Paris." and data["source"] == "api"
    sent = api.requests_to("/v1/messages")[-1]
    # a short fact question: routed to the cheap tier
    assert sent.body["model"] == "claude-haiku-5-5" and data["model"] == "claude-haiku-5-5"
    assert sent.body["messages"] == [{"role": "user", "content": "What is the capital of France?"}]
    r = row(home, data["request_id"])
    assert r["output_tokens"] == 7 and r["tokens_estimated"] == 0
    assert r["input_tokens"] == data["usage"]["input_tokens"] > 0
    assert r["api_request_id"] and r["backend"] == "anthropic" and r["tier"] == "cheap"
    # haiku-5-5: $0.10 in, $0.50 out per million; baseline sonnet-5-5: $2 in, $10 out
    hand = (r["input_tokens"] * 0.10 + 7 * 0.50) / 1e6
    base = (r["input_tokens"] * 2 + 7 * 10) / 1e6
    assert r["cost"] == pytest.approx(hand, abs=1e-12)
    assert r["baseline_cost"] == pytest.approx(base, abs=1e-12)
    assert r["saved_routing"] == pytest.approx(base - hand, abs=1e-12)
    costs = json.loads(runner.invoke(app, ["costs", "--json"]).output)
    assert costs["periods"]["today"]["calls"] == 1
    assert costs["periods"]["today"]["cost"] == pytest.approx(hand, abs=1e-12)


def test_stream_prints_as_it_arrives_and_counts_usage(api, runner: CliRunner, home: Path) -> None:
    api.responder = lambda body: {"text": "one two three four five six seven eight nine ten"}
    result = runner.invoke(app, ["ask", "--stream", "Count to ten"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("one two three four five six seven eight nine ten\n")
    assert api.requests_to("/v1/messages")[-1].body["stream"] is True
    (last,) = json.loads(runner.invoke(app, ["log", "--json", "-n", "1"]).output)
    assert last["output_tokens"] > 0 and last["input_tokens"] > 0 and last["cost"] > 0


def test_prompt_cache_buckets_are_priced_once_each(api, home: Path) -> None:
    opened = open_app()
    opt = opened.optimizer()
    system = (
        {
            "type": "text",
            "text": "You are a meticulous agent. " * 500,
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        },
    )
    first = opt.ask(Request.from_prompt("hi", system=system, model="claude-haiku-5-5"))
    second = opt.ask(Request.from_prompt("hello", system=system, model="claude-haiku-5-5"))
    w, r = first.usage, second.usage
    assert w.cache_write_1h > 1024 and w.cache_read == 0 and w.cache_write_5m == 0
    assert r.cache_read == w.cache_write_1h and r.cache_write == 0
    # haiku-5-5: in 0.10, 1h write 0.20, read 0.01, out 0.50 per million
    assert first.cost == pytest.approx(
        (w.input_tokens * 0.10 + w.cache_write_1h * 0.20 + w.output_tokens * 0.50) / 1e6
    )
    assert second.cost == pytest.approx(
        (r.input_tokens * 0.10 + r.cache_read * 0.01 + r.output_tokens * 0.50) / 1e6
    )
    saved = second.saved_by_strategy
    # The client marked its own prefix: that caching is in the baseline, not tars-opt's saving.
    assert saved["prompt_caching"] == 0
    # ... priced at the baseline model: sonnet-5-5 in 2, read 0.20, out 10 per million.
    assert second.baseline_cost == pytest.approx(
        (r.input_tokens * 2 + r.cache_read * 0.20 + r.output_tokens * 10) / 1e6
    )
    assert sum(saved.values()) == pytest.approx(second.baseline_cost - second.cost, abs=1e-15)
    stored = row(home, second.request_id)
    assert stored["cache_read"] == r.cache_read and stored["input_tokens"] == r.input_tokens


def test_overloaded_after_retries_exits_1_and_bills_nothing(
    api, runner: CliRunner, home: Path, tmp_path: Path
) -> None:
    (tmp_path / "performance-config.yaml").write_text("api:\n  max_retries: 1\n")
    api.inject("overloaded", times=2)
    result = runner.invoke(app, ["ask", "hello"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: API error 529 overloaded_error: Overloaded - the API is overloaded; try again later"
    )
    assert len(api.requests_to("/v1/messages")) == 2  # the SDK retried once, as configured
    (failed,) = json.loads(runner.invoke(app, ["log", "--json"]).output)
    assert failed["error"].startswith("overloaded_error") and failed["cost"] == 0


@pytest.mark.parametrize(
    ("fault", "expected"),
    [("stream_cut", "broke mid-answer"), ("stream_error", "overloaded_error")],
)
def test_a_stream_that_breaks_is_one_line_and_a_ledger_error(
    api, runner: CliRunner, fault: str, expected: str
) -> None:
    api.inject(fault)
    result = runner.invoke(app, ["ask", "--stream", "tell me a long story"])
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last
    (failed,) = json.loads(runner.invoke(app, ["log", "--json"]).output)
    assert failed["error"] and failed["cost"] == 0 and failed["output_tokens"] == 0


def test_rate_limit_is_retried_and_then_answered(api, home: Path) -> None:
    api.inject("rate_limit", times=1)
    reply = open_app().optimizer().ask(Request.from_prompt("hi"))
    assert reply.text
    assert [f["kind"] for f in api.faults_injected] == ["rate_limit"]
    assert len(api.requests_to("/v1/messages")) == 2


def test_timeout_is_a_clear_error(api, home: Path, tmp_path: Path) -> None:
    (tmp_path / "performance-config.yaml").write_text("api:\n  timeout_s: 0.2\n  max_retries: 0\n")
    from tests.fake_anthropic.faults import Fault

    api.inject(Fault("slow", delay=1.0))
    with pytest.raises(BackendError, match="did not answer in time"):
        open_app().optimizer().ask(Request.from_prompt("hi"))


def test_wrong_key_is_an_authentication_error(
    api, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong-key-000000")
    result = runner.invoke(app, ["ask", "hi"])
    assert result.exit_code == 1
    assert "authentication_error" in result.output and "check the API key" in result.output


def test_count_tokens_and_the_batch_calls(api) -> None:
    backend = AnthropicBackend(SECRET, base_url=api.url, max_retries=0)
    params = {
        "model": "claude-haiku-5-5",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Name three rivers"}],
    }
    assert backend.count_tokens(params) > 0
    api.batch_mode = "manual"
    info = backend.submit_batch(
        [{"custom_id": "t1", "params": params}, {"custom_id": "t2", "params": params}]
    )
    assert info.status == "in_progress" and info.counts["processing"] == 2
    assert [b.id for b in backend.list_batches()] == [info.id]
    api.batch_outcome = lambda custom_id, _params: "errored" if custom_id == "t2" else None
    api.end_batch(info.id)
    assert backend.poll_batch(info.id).status == "ended"
    items = {i.custom_id: i for i in backend.batch_results(info.id)}
    assert items["t1"].outcome == "succeeded" and items["t1"].result.usage.service_tier == "batch"
    assert items["t2"].outcome == "errored" and items["t2"].error
    second = backend.submit_batch([{"custom_id": "t3", "params": params}])
    assert backend.cancel_batch(second.id).status in ("canceling", "ended")


def test_the_key_never_reaches_the_database_logs_or_output(
    api, runner: CliRunner, home: Path
) -> None:
    outputs = [
        runner.invoke(app, ["ask", "-v", "What is my API key?"]).output,
        runner.invoke(app, ["ask", "--json", "--stream", "again"]).output,
        runner.invoke(app, ["log", "--json"]).output,
        runner.invoke(app, ["costs"]).output,
        runner.invoke(app, ["config", "show", "--json"]).output,
    ]
    api.inject("api_error", times=5)
    outputs.append(runner.invoke(app, ["ask", "fail please"]).output)
    for text in outputs:
        assert SECRET not in text
    for path in home.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert repr(AnthropicBackend(SECRET)).find(SECRET) == -1
