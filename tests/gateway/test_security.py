"""What a local proxy must refuse: other Host names, browser origins, a missing or wrong
token, bodies over the API's limit, a bind beyond loopback without a token."""

from __future__ import annotations

from pathlib import Path

import anthropic
import httpx2
import pytest
from typer.testing import CliRunner

from tars_opt.cli import app as cli
from tars_opt.config.schema import Config
from tars_opt.errors import InputError
from tars_opt.gateway.settings import MESSAGES_MAX_BYTES, resolve
from tests.fake_anthropic.server import FakeAnthropic
from tests.gateway.harness import serve

MODEL = "claude-sonnet-4-6"
BODY = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
# Routing off: a short max_tokens would otherwise be escalated (a second upstream call).
NO_ROUTE = {"x-tars-opt-route": "off"}
HEADERS = {"x-api-key": "sk-client", "anthropic-version": "2023-06-01", **NO_ROUTE}


def post(url: str, **kw: object) -> httpx2.Response:
    headers = {**HEADERS, **kw.pop("headers", {})}  # type: ignore[dict-item]
    return httpx2.post(f"{url}/v1/messages", headers=headers, **kw)  # type: ignore[arg-type]


def refused(answer: httpx2.Response, status: int, kind: str) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["type"] == "error" and body["error"]["type"] == kind
    return body["error"]["message"]


def test_other_host_names_are_refused(fake_api: FakeAnthropic) -> None:
    with serve(fake_api.url, allowed_hosts=frozenset({"gw.internal"})) as gw:
        message = refused(post(gw.url, json=BODY, headers={"host": "evil.example"}), 403,
                          "permission_error")  # fmt: skip
        assert post(gw.url, json=BODY, headers={"host": "localhost:1"}).status_code == 200
        assert post(gw.url, json=BODY, headers={"host": "gw.internal"}).status_code == 200
    assert "tars-opt" in message and "DNS rebinding" in message and "allowed_hosts" in message
    assert len(fake_api.requests_to("/v1/messages")) == 2


def test_browser_origins_are_refused_unless_allowed(fake_api: FakeAnthropic) -> None:
    allowed = frozenset({"http://localhost:3000"})
    with serve(fake_api.url, allowed_origins=allowed) as gw:
        evil = post(gw.url, json=BODY, headers={"origin": "https://evil.example"})
        message = refused(evil, 403, "permission_error")
        ok = post(gw.url, json=BODY, headers={"origin": "http://localhost:3000"})
        assert ok.status_code == 200
    assert "evil.example" in message and "allowed_origins" in message


def test_token_replaces_the_key_and_is_required(fake_api: FakeAnthropic) -> None:
    with serve(fake_api.url, token="gw-token-1", own_key="sk-gateway-own") as gw:
        c = anthropic.Anthropic(base_url=gw.url, api_key="gw-token-1", max_retries=0)
        assert c.messages.create(**BODY, extra_headers=NO_ROUTE).content  # type: ignore[arg-type]
        with pytest.raises(anthropic.AuthenticationError) as caught:
            anthropic.Anthropic(base_url=gw.url, api_key="wrong", max_retries=0).messages.create(
                **BODY  # type: ignore[arg-type]
            )
        health = httpx2.get(f"{gw.url}/tars-opt/health")
        metrics = httpx2.get(f"{gw.url}/tars-opt/metrics")
        assert len(gw.rows()) == 1
    assert "tars-opt" in caught.value.message and "token" in caught.value.message
    (sent,) = fake_api.requests_to("/v1/messages")
    assert sent.header("x-api-key") == "sk-gateway-own" and sent.header("authorization") is None
    assert health.status_code == 200 and metrics.status_code == 401


def test_own_key_only_for_keyless_clients_when_opted_in(fake_api: FakeAnthropic) -> None:
    fake_api.api_key = "sk-gateway-own"
    keyless = {"anthropic-version": "2023-06-01", "x-tars-opt-route": "off"}
    with serve(fake_api.url, own_key="sk-gateway-own") as gw:
        answer = httpx2.post(f"{gw.url}/v1/messages", json=BODY, headers=keyless)
        refused(answer, 401, "authentication_error")  # the API's own 401, mirrored
    with serve(fake_api.url, own_key="sk-gateway-own", use_own_key=True) as gw:
        assert httpx2.post(f"{gw.url}/v1/messages", json=BODY, headers=keyless).status_code == 200
        # A client's own key is forwarded as sent, even then.
        refused(post(gw.url, json=BODY), 401, "authentication_error")


def test_bodies_over_the_api_limit_are_refused_as_the_api_does(fake_api: FakeAnthropic) -> None:
    big = {**BODY, "messages": [{"role": "user", "content": "x" * 5000}]}

    def chunked() -> object:
        yield b'{"model": "m", "messages": [{"role": "user", "content": "'
        yield b"y" * 5000
        yield b'"}]}'

    with serve(fake_api.url, messages_max_bytes=4000) as gw:
        refused(post(gw.url, json=big), 413, "request_too_large")
        refused(post(gw.url, content=chunked()), 413, "request_too_large")
        assert post(gw.url, json=BODY).status_code == 200
    assert len(fake_api.requests_to("/v1/messages")) == 1
    assert MESSAGES_MAX_BYTES == 32 * 1024 * 1024


def test_a_bind_beyond_loopback_needs_a_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    done = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "0"])
    assert done.exit_code == 2
    assert (
        "refusing to listen on 0.0.0.0" in done.output and "TARS_OPT_GATEWAY_TOKEN" in done.output
    )
    assert "Traceback" not in done.output
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    config = Config.model_validate({"gateway": {"token_file": str(token_file)}})
    with pytest.raises(InputError, match="ANTHROPIC_API_KEY"):
        resolve(config, host="0.0.0.0")  # a token, but no key of its own to send upstream
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-own")
    assert resolve(config, host="0.0.0.0").token == "from-file"
    monkeypatch.setenv("TARS_OPT_GATEWAY_TOKEN", "from-env")
    assert resolve(config, host="0.0.0.0").token == "from-env"
    assert "from-env" not in repr(resolve(config, host="0.0.0.0"))


def test_serve_has_no_token_flag() -> None:
    done = CliRunner().invoke(cli, ["serve", "--help"])
    assert "--token" not in done.output


def test_a_port_in_use_is_one_line_and_starts_nothing(home: Path) -> None:
    import socket
    import threading

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        before = set(threading.enumerate())
        done = CliRunner().invoke(cli, ["serve", "--port", str(port)])
    assert done.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.output and "--port" in done.output
    assert "Traceback" not in done.output
    # No drain, no model loading started (threads of earlier tests may end meanwhile).
    assert set(threading.enumerate()) <= before
