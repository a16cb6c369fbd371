"""pytest fixtures for the fake Anthropic API (enable with pytest_plugins or ``-p``).

def test_x(fake_api):                   # a started FakeAnthropic, stopped afterwards
    fake_api.responder = lambda body: {"text": "42"}
    client = anthropic.Anthropic(base_url=fake_api.url, api_key="test-key", max_retries=0)

def test_cli(fake_api_env, runner):     # ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY point at it
    ...

def test_y(fake_client):                # the SDK client itself (max_retries=0)
    ...

def test_z(strict_fake_api):            # also 400s request bodies the OpenAPI document rejects
    ...

Every fake validates conversations like the API (see `validate`). A test that has to send what
the API would refuse sets ``fake_api.strict = False`` with a comment naming the violation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .server import FakeAnthropic

TEST_API_KEY = "test-key"


@pytest.fixture
def fake_api() -> Iterator[FakeAnthropic]:
    """A running fake API on a free 127.0.0.1 port, with a fresh state; stopped after the test."""
    with FakeAnthropic() as server:
        yield server
    if server.handler_errors:  # a responder or batch_outcome raised: a bug in the test
        pytest.fail("fake API handler errors:\n" + "\n".join(server.handler_errors))


@pytest.fixture
def fake_api_env(fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> FakeAnthropic:
    """`fake_api`, plus ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY set for code that reads them."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_api.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_API_KEY)
    return fake_api


@pytest.fixture
def fake_client(fake_api: FakeAnthropic) -> Iterator[Any]:
    """A real `anthropic.Anthropic` client bound to `fake_api`, without retries."""
    import anthropic  # lazy: importing the SDK takes ~1.7 s

    client = anthropic.Anthropic(base_url=fake_api.url, api_key=TEST_API_KEY, max_retries=0)
    yield client
    client.close()


@pytest.fixture
def strict_fake_api(fake_api: FakeAnthropic) -> FakeAnthropic:
    """`fake_api` that also answers 400 to request bodies the public OpenAPI document rejects.

    Skips when the document is not in the shared data. Note the document is older than the SDK
    (see its SOURCE.txt): a field only the newest API knows would be rejected here.
    """
    from .openapi import OPENAPI_PATH, load_schemas

    if not OPENAPI_PATH.is_file():
        pytest.skip(f"OpenAPI document not found at {OPENAPI_PATH}")
    fake_api.request_validator = load_schemas(OPENAPI_PATH).request_validator()
    return fake_api
