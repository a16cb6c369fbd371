"""An agent is never stalled by the optimizer: fail-open when a stage or the store fails,
rows written once the store is back; streams that end early leave one estimated row."""

from __future__ import annotations

import json
import time

import anthropic
import httpx2
import pytest

from tars_opt.types import Request
from tests.fake_anthropic.server import FakeAnthropic
from tests.gateway.harness import serve
from tests.stored import writes_held

MODEL = "claude-sonnet-4-6"
KEY = "sk-ant-test"
NO_ROUTE = {"x-tars-opt-route": "off"}


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


class Boom:
    name = "prune"

    def apply(self, request: Request) -> None:
        raise RuntimeError("stage exploded")


def test_a_failing_stage_sends_the_request_unoptimized(fake_api: FakeAnthropic) -> None:
    with serve(fake_api.url, stages=[Boom()]) as gw:
        c = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)
        raw = c.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=ask("hi"))
        assert raw.headers["x-tars-opt-source"] == "unoptimized"
        (row,) = gw.rows()
    decisions = json.loads(row["decisions"])
    assert decisions[0]["stage"] == "gateway" and decisions[0]["action"] == "fail-open"
    assert "stage exploded" in decisions[0]["reason"]
    assert row["model"] == MODEL and row["cost"] > 0
    (sent,) = fake_api.requests_to("/v1/messages")
    assert sent.body == {"model": MODEL, "max_tokens": 64, "messages": ask("hi")}


def test_fail_closed_refuses_with_503(fake_api: FakeAnthropic) -> None:
    with serve(fake_api.url, stages=[Boom()], fail_open=False) as gw:
        c = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)
        with pytest.raises(anthropic.InternalServerError) as caught:
            c.messages.create(model=MODEL, max_tokens=64, messages=ask("hi"))
    assert caught.value.status_code == 503 and "gateway.fail_open" in caught.value.message
    assert fake_api.requests_to("/v1/messages") == []


def test_a_locked_database_fails_open_and_the_row_lands_when_it_is_back(
    fake_api: FakeAnthropic,
) -> None:
    with serve(fake_api.url, optimizer_timeout_s=0.3) as gw:
        c = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)
        c.messages.create(
            model=MODEL, max_tokens=64, messages=ask("warm up"), extra_headers=NO_ROUTE
        )
        assert len(gw.rows()) == 1
        with writes_held(gw.app.config.resolved_database()):
            started = time.monotonic()
            raw = c.messages.with_raw_response.create(
                model=MODEL, max_tokens=64, messages=ask("while locked"), extra_headers=NO_ROUTE
            )
            took = time.monotonic() - started
            assert raw.parse().content[0].text and took < 5
            assert raw.headers["x-tars-opt-source"] == "unoptimized"
            rid = raw.headers["x-tars-opt-request-id"]
            assert gw.gateway.recorder.pending(rid)  # waiting for the store
        rows = gw.rows()
    assert len(rows) == 2 and rows[1]["request_id"] == rid
    assert "optimizer_timeout_s" in json.loads(rows[1]["decisions"])[0]["reason"]


def long_answer(body: dict) -> str:
    return " ".join(f"word{i}" for i in range(400))


def test_a_client_hanging_up_mid_stream_leaves_one_estimated_row(fake_api: FakeAnthropic) -> None:
    fake_api.responder = long_answer
    fake_api.stream_chunk_chars = 8
    fake_api.stream_event_delay = 0.02  # ~500 events: the whole stream would take ~10 s
    body = {"model": MODEL, "max_tokens": 4000, "stream": True, "messages": ask("long please")}
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01", **NO_ROUTE}
    with serve(fake_api.url) as gw:
        with (
            httpx2.Client() as http,
            http.stream("POST", f"{gw.url}/v1/messages", json=body, headers=headers) as answer,
        ):
            seen = b""
            for chunk in answer.iter_raw():
                seen += chunk
                if seen.count(b"text_delta") >= 5:
                    break
            rid = answer.headers["x-tars-opt-request-id"]
        hung_up = time.monotonic()
        deadline = hung_up + 5
        while gw.gateway.recorder.pending(rid) or gw.app.ledger.get(rid) is None:
            assert time.monotonic() < deadline, "no row after the client hung up"
            time.sleep(0.02)
        assert time.monotonic() - hung_up < 3  # not after the upstream stream's ~10 s
        rows = gw.rows()
    assert len(rows) == 1
    row = rows[0]
    assert row["tokens_estimated"] == 1 and "client disconnected" in row["error"]
    assert row["input_tokens"] > 0  # message_start's usage
    assert 0 < row["output_tokens"] < 400
    assert row["cost"] > 0


def test_a_mid_stream_error_is_relayed_and_recorded(fake_api: FakeAnthropic) -> None:
    fake_api.inject("stream_error")
    with serve(fake_api.url) as gw:
        c = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)
        with (
            pytest.raises(anthropic.APIStatusError) as caught,
            c.messages.stream(model=MODEL, max_tokens=64, messages=ask("hi")) as stream,
        ):
            stream.get_final_message()
        rows = gw.rows()
    assert "overloaded" in str(caught.value.body or caught.value.message).lower()
    assert len(rows) == 1 and "(mid-stream)" in rows[0]["error"]
    assert rows[0]["tokens_estimated"] == 1


def test_a_cut_stream_leaves_one_estimated_row(fake_api: FakeAnthropic) -> None:
    fake_api.inject("stream_cut")
    with serve(fake_api.url) as gw:
        c = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)
        with (
            pytest.raises((anthropic.APIError, httpx2.TransportError)),
            c.messages.stream(model=MODEL, max_tokens=64, messages=ask("hi")) as stream,
        ):
            stream.get_final_message()
        rows = gw.rows()
    assert len(rows) == 1 and rows[0]["tokens_estimated"] == 1
    assert "upstream broke mid-stream" in rows[0]["error"]
