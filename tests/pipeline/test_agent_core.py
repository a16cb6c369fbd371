"""The chain carries Messages API requests and replies faithfully: tool loops, unknown
fields, the client's model as the ceiling, unpriced models, keys kept apart, and work
queued in the older format - through the real SDK against the strict fake API."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tars_opt import Request, open_app
from tars_opt.accounting.pricing import PriceBook
from tars_opt.cli.main import app as cli_app
from tars_opt.defer.queue import Queue
from tars_opt.drain.runner import Drainer
from tars_opt.types import Usage
from tests.stored import database_at, stored_bytes

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city now.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def body(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-5-5",
        "max_tokens": 300,
        "system": "You are a weather agent.",
        "tools": [WEATHER],
        "messages": messages,
        **extra,
    }


def weather_agent(request_body: dict[str, Any]) -> dict[str, Any]:
    """Calls the tool on the user's question; answers once the tool result is in."""
    last = request_body["messages"][-1]["content"]
    if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
        return {"text": "It is sunny in Paris, 21 C."}
    return {"tool_use": [{"name": "get_weather", "input": {"city": "Paris"}}]}


def test_a_tool_loop_goes_through_whole_and_is_never_escalated(fake_api_env, home: Path) -> None:
    fake_api_env.responder = weather_agent
    opt = open_app().optimizer()
    first_turn = [{"role": "user", "content": "What's the weather in Paris?"}]
    call = opt.ask(Request.from_body(body(first_turn)))
    assert call.stop_reason == "tool_use"
    (use,) = [b for b in call.content if b["type"] == "tool_use"]
    assert use["name"] == "get_weather" and use["input"] == {"city": "Paris"}
    assert not any(d.stage == "escalate" for d in call.decisions)
    # The agent sends the tool's answer: the request ends with a tool_result turn.
    loop = [
        *first_turn,
        {"role": "assistant", "content": list(call.content)},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": "sunny, 21C"}],
        },
    ]
    done = opt.ask(Request.from_body(body(loop)))
    assert done.text == "It is sunny in Paris, 21 C." and done.stop_reason == "end_turn"
    assert len(fake_api_env.requests_to("/v1/messages")) == 2  # one call each, no re-ask
    rows = open_app().db.query("SELECT conversation, cost FROM calls ORDER BY id")
    convs = [r["conversation"] for r in rows]
    assert convs[0] == convs[1] and convs[0].startswith("k:")  # one conversation


def test_fields_this_version_does_not_know_arrive_unchanged(fake_api_env, home: Path) -> None:
    extra = {
        "thinking": {"type": "adaptive", "display": "omitted"},
        "output_config": {"effort": "medium"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": json.dumps({"device_id": "d1", "session_id": "s-123"})},
        "tool_choice": {"type": "auto"},
        "temperature": 0.2,
        "stop_sequences": ["END"],
        "some_future_field": {"nested": [1, 2, {"x": None}]},
    }
    tools = [WEATHER, {**WEATHER, "name": "rarely_used", "defer_loading": True}]
    messages = [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "system", "content": "Prefer metric units."},
    ]
    sent = body(messages, **extra)
    sent["tools"] = tools
    reply = open_app().optimizer().ask(Request.from_body(sent, cache_mode="off"), on_text=None)
    assert reply.source == "api"
    (seen,) = [r.body for r in fake_api_env.requests_to("/v1/messages")]
    for key, value in extra.items():
        assert seen[key] == value, key
    assert seen["tools"][1]["defer_loading"] is True
    assert seen["messages"][1] == {"role": "system", "content": "Prefer metric units."}
    # The thinking block the fake signed comes back whole.
    assert any(b["type"] == "thinking" and b.get("signature") for b in reply.content)
    # Claude Code's session id names the conversation.
    row = open_app().ledger.get(reply.request_id)
    assert row["conversation"].startswith("c:")


def test_the_ledger_cost_is_the_fake_usage_at_list_prices(fake_api_env, home: Path) -> None:
    fake_api_env.responder = lambda b: {"text": "Paris.", "output_tokens": 7}
    opened = open_app()
    reply = opened.optimizer().ask(
        Request.from_prompt("Capital of France?", model="claude-haiku-5-5", cache_mode="off")
    )
    (call,) = fake_api_env.requests_to("/v1/messages")
    assert call.status == 200
    usage = Usage.from_api(reply.usage.to_api())
    expected = PriceBook(opened.config.pricing).cost(usage, "claude-haiku-5-5")
    row = opened.ledger.get(reply.request_id)
    assert row["cost"] == pytest.approx(expected) and row["output_tokens"] == 7
    assert row["input_tokens"] == reply.usage.input_tokens > 0


def test_the_clients_model_is_the_ceiling(fake_api_env, home: Path) -> None:
    """A body naming the cheap model is never routed or escalated to a dearer one."""
    fake_api_env.responder = lambda b: {"text": "", "stop_reason": "end_turn"}  # "empty"
    opt = open_app().optimizer()
    hard = "Prove that there are infinitely many primes, step by step, rigorously."
    reply = opt.ask(
        Request.from_body(
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 100,
                "messages": [{"role": "user", "content": hard}],
            },
            cache_mode="off",
        )
    )
    models = [r.body["model"] for r in fake_api_env.requests_to("/v1/messages")]
    assert models == ["claude-haiku-5-5"] and reply.model == "claude-haiku-5-5"


def test_a_model_with_no_price_goes_through_with_its_cost_unknown(
    fake_api_env, home: Path, runner: CliRunner
) -> None:
    fake_api_env.responder = lambda b: {"text": "Hello from the future."}
    sent = {
        "model": "claude-future-9",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
    }
    opened = open_app()
    reply = opened.optimizer().ask(Request.from_body(sent))
    assert reply.text == "Hello from the future." and reply.cost_unknown
    assert [r.body["model"] for r in fake_api_env.requests_to("/v1/messages")] == [
        "claude-future-9"
    ]
    warning = next(d for d in reply.decisions if d.stage == "pricing")
    assert "no price for model 'claude-future-9'" in warning.reason
    row = opened.ledger.get(reply.request_id)
    assert row["cost_unknown"] == 1 and row["cost"] == 0 and row["model"] == "claude-future-9"
    shown = runner.invoke(cli_app, ["costs"])
    assert shown.exit_code == 0 and "1 call(s) this month used a model with no price" in (
        shown.stdout
    )
    asked = runner.invoke(cli_app, ["ask", "--model", "claude-future-9", "--no-cache", "hello"])
    assert asked.exit_code == 0 and "warning: no price for model 'claude-future-9'" in (
        asked.stderr
    )


def test_answers_never_cross_api_keys(fake_api_env, home: Path, monkeypatch) -> None:
    fake_api_env.responder = lambda b: {"text": "Paris."}

    def ask() -> Any:
        question = Request.from_prompt("What is the capital of France?", model="claude-haiku-5-5")
        return open_app().optimizer().ask(question)

    assert ask().source == "api"
    assert ask().source == "cache"  # the same key: a hit
    monkeypatch.setenv("ANTHROPIC_API_KEY", "another-key")
    fake_api_env.api_key = None
    assert ask().source == "api"  # another key never gets the first key's answer
    db_bytes = stored_bytes(database_at(home))
    assert b"another-key" not in db_bytes and b"test-key" not in db_bytes


def test_work_queued_in_the_older_format_drains_after_an_upgrade(fake_api_env, home: Path) -> None:
    opened = open_app()
    queue = Queue(opened.db)
    task = queue.enqueue(
        Request.from_prompt("Summarize our Q3 plan.", defer=True),
        reason="asked to defer (--defer)",
        max_wait_s=86_400,
        deadline=4e9,
        expected_at=0,
    )
    old = {  # how a version-1 request was stored: the history and the prompt apart
        "prompt": "Summarize our Q3 plan.",
        "messages": [
            {"role": "user", "content": "Our Q3 plan: ship the gateway."},
            {"role": "assistant", "content": "Noted."},
        ],
        "system": None,
        "tools": [],
        "query_type": None,
        "priority": "normal",
        "max_tokens": 200,
        "namespace": "default",
        "request_id": task["request_id"],
        "defer": True,
        "prompt_prefix": [],
    }
    opened.db.execute("UPDATE tasks SET request = ? WHERE id = ?", [json.dumps(old), task["id"]])
    report = Drainer(opened.config, opened.db).run(now=True, wait=True)
    assert report.claimed == 1
    done = Queue(opened.db).require(task["ticket"])
    assert done["state"] == "done"
    (sent,) = [r.body for r in fake_api_env.requests_to("/v1/messages/batches")]
    messages = sent["requests"][0]["params"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[-1]["content"] == "Summarize our Q3 plan."


def test_one_optimizer_answers_from_eight_threads_at_once(fake_api_env, home: Path) -> None:
    fake_api_env.responder = weather_agent
    opt = open_app().optimizer()
    replies: list[Any] = []
    errors: list[BaseException] = []

    def agent(n: int) -> None:
        try:
            first = [{"role": "user", "content": f"Weather in city {n}?"}]
            replies.append(opt.ask(Request.from_body(body(first))))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and len(replies) == 8
    assert all(r.stop_reason == "tool_use" for r in replies)
    rows = open_app().db.scalar("SELECT COUNT(*) FROM calls")
    assert rows == 8


def test_ask_file_answers_every_line_in_order(
    fake_api_env, home: Path, runner: CliRunner, tmp_path: Path
) -> None:
    fake_api_env.responder = lambda b: {"text": "ok " + b["messages"][-1]["content"][:9]}
    path = tmp_path / "requests.jsonl"
    lines = [{"prompt": f"question {i}", "tars_opt": {"cache_mode": "off"}} for i in range(5)]
    lines.insert(2, body([{"role": "user", "content": "What's the weather?"}]))
    lines.append({"prompt": ""})
    path.write_text("\n".join(json.dumps(x) for x in lines[:-1]) + "\n")
    result = runner.invoke(cli_app, ["ask", "--file", str(path), "--parallel", "3"])
    assert result.exit_code == 0, result.output
    out = [json.loads(x) for x in result.stdout.splitlines()]
    assert [o["line"] for o in out] == [1, 2, 3, 4, 5, 6]
    assert out[0]["answer"] == "ok question "
    assert out[2]["content"][0]["type"] in ("text", "tool_use")
    path.write_text(json.dumps({"prompt": ""}) + "\n")
    bad = runner.invoke(cli_app, ["ask", "--file", str(path)])
    assert bad.exit_code == 2 and "line 1: `prompt` must be non-empty text" in bad.stderr


def test_ask_answers_a_conversation_that_ends_with_tool_results(
    fake_api_env, home: Path, runner: CliRunner, tmp_path: Path
) -> None:
    fake_api_env.responder = weather_agent
    convo = tmp_path / "loop.json"
    use = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny, 21C"}
    convo.write_text(
        json.dumps(
            [
                {"role": "user", "content": "What's the weather in Paris?"},
                {"role": "assistant", "content": [use]},
                {"role": "user", "content": [result]},
            ]
        )
    )
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([WEATHER]))
    out = runner.invoke(cli_app, ["ask", "--json", "--context", str(convo), "--tools", str(tools)])
    assert out.exit_code == 0, out.output
    answer = json.loads(out.stdout)
    assert answer["answer"] == "It is sunny in Paris, 21 C."
    (sent,) = [r.body for r in fake_api_env.requests_to("/v1/messages")]
    assert sent["messages"][-1]["content"][0] == result
    both = runner.invoke(cli_app, ["ask", "--context", str(convo), "and?"])
    assert both.exit_code == 2 and "ends with a user message" in both.stderr
