"""Running the gateway: shadow mode, the embedding model loading in the background,
SIGTERM finishing streams in flight, cold start."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import anthropic
import httpx2
import pytest
from typer.testing import CliRunner

from tars_opt import open_app
from tars_opt.cli import app as cli
from tests.conftest import REPO
from tests.fake_anthropic.server import FakeAnthropic
from tests.gateway.harness import serve

MODEL = "claude-sonnet-4-6"
KEY = "sk-ant-test"


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_shadow_forwards_unchanged_and_costs_shows_would_have_saved(
    fake_api: FakeAnthropic, runner: CliRunner
) -> None:
    body = {"model": MODEL, "max_tokens": 300, "messages": ask("What is 2 + 2?")}
    with serve(fake_api.url, shadow=True) as gw:
        c = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)
        for _ in range(2):
            raw = c.messages.with_raw_response.create(**body)  # type: ignore[arg-type]
            assert raw.headers["x-tars-opt-source"] == "shadow"
            assert float(raw.headers["x-tars-opt-saved"]) == 0.0
        rows = gw.rows()
    sent = fake_api.requests_to("/v1/messages")
    assert [r.body for r in sent] == [body, body]  # unchanged, and no cache hit the 2nd time
    assert [r["source"] for r in rows] == ["shadow", "shadow"]
    assert all(r["cost"] == r["baseline_cost"] > 0 for r in rows)
    shadow = json.loads(rows[0]["decisions"])[-1]
    assert shadow["stage"] == "shadow" and shadow["data"]["would_save"] > 0
    done = runner.invoke(cli, ["costs"])
    assert done.exit_code == 0, done.output
    assert "shadow: 2 call(s) this month were forwarded unchanged" in done.output
    assert "would have saved" in done.output


def test_requests_before_the_embedding_model_loads_skip_semantic_stages(
    fake_api: FakeAnthropic,
) -> None:
    loaded = threading.Event()
    with serve(fake_api.url, load=loaded.wait) as gw:
        c = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)
        started = time.monotonic()
        c.messages.create(model=MODEL, max_tokens=300, messages=ask("Explain TCP slow start."))
        assert time.monotonic() - started < 5  # answered while the model is still loading
        assert httpx2.get(f"{gw.url}/tars-opt/health").json()["semantic_ready"] is False
        loaded.set()
        deadline = time.monotonic() + 5
        while not httpx2.get(f"{gw.url}/tars-opt/health").json()["semantic_ready"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        c.messages.create(model=MODEL, max_tokens=300, messages=ask("Explain TCP fast retransmit."))
        cold, warm = gw.rows()
    cold_trace = json.loads(cold["decisions"])
    assert any(d["stage"] == "gateway" and d["action"] == "cold" for d in cold_trace)
    assert cold["router"] != "learned"
    assert not any(d["stage"] == "gateway" for d in json.loads(warm["decisions"]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigterm_finishes_streams_in_flight_and_writes_their_rows(
    fake_api: FakeAnthropic, home: Path
) -> None:
    fake_api.responder = lambda body: " ".join(f"w{i}" for i in range(60))
    fake_api.stream_chunk_chars = 8
    fake_api.stream_event_delay = 0.02  # ~1.5 s of stream
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TARS_OPT_HOME": str(home)}
    env.pop("ANTHROPIC_API_KEY", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tars_opt",
            "serve",
            "--port",
            str(port),
            "--upstream",
            fake_api.url,
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx2.get(f"{url}/tars-opt/health").status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.02)
        c = anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0)
        # `serve` answers the Message Batches routes itself, not upstream: its drain sends
        # them later with the gateway's own key, which this gateway does not have.
        with pytest.raises(anthropic.PermissionDeniedError, match="tars-opt"):
            c.messages.batches.create(
                requests=[
                    {
                        "custom_id": "a",
                        "params": {"model": MODEL, "max_tokens": 9, "messages": ask("hi")},
                    }
                ]  # fmt: skip
            )
        first = c.messages.create(model=MODEL, max_tokens=400, messages=ask("hello"))
        assert first.content
        with c.messages.stream(model=MODEL, max_tokens=400, messages=ask("count")) as stream:
            texts = iter(stream.text_stream)
            head = next(texts)
            proc.send_signal(signal.SIGTERM)
            text = head + "".join(texts)
            final = stream.get_final_message()
        assert final.stop_reason == "end_turn" and text == final.content[0].text
        # uvicorn re-raises the signal once shut down: dying by SIGTERM is a clean stop
        # (systemd counts it as success).
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rows = list(open_app().db.query("SELECT * FROM calls ORDER BY id"))
    assert len(rows) == 2 and all(r["error"] is None for r in rows)
    assert rows[1]["output_tokens"] == final.usage.output_tokens
