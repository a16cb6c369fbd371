"""Fixtures for the Message Batches facade: the real SDK talking to the batch routes in a
Starlette app, the drain sending to the fake API, all on one fake clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tars_opt import open_app
from tars_opt.defer.facade import BatchFacade
from tars_opt.drain.runner import Drainer, DrainReport
from tests.drain_helpers import Clock, at
from tests.fake_anthropic.server import FakeAnthropic

NOON = at("2026-11-23T12:00")  # outside the default 00:00-06:00 window
NIGHT = at("2026-11-24T01:00")  # inside it


class Setup:
    """One tars-opt (config overrides under `defer.`), the fake API and the SDK client."""

    def __init__(self, api: FakeAnthropic, clock: Clock, overrides: dict[str, Any]) -> None:
        self.api = api
        self.clock = clock
        self.overrides = overrides
        self.open()

    def open(self) -> None:
        """Open the database and the facade (again: as a restarted gateway would)."""
        self.app = open_app(overrides=self.overrides)
        self.facade = BatchFacade(self.app.config, self.app.db, clock=self.clock)
        self.client = self.make_client("client-key")

    def reopen(self) -> None:
        """Drop every object holding the database and open the same file again."""
        self.app.db.close()
        self.open()

    def make_client(self, key: str) -> Any:
        import anthropic
        from starlette.applications import Starlette
        from starlette.testclient import TestClient

        from tars_opt.gateway.batches import batch_routes

        http = TestClient(Starlette(routes=batch_routes(lambda: self.facade)))
        return anthropic.Anthropic(
            base_url="http://testserver", api_key=key, http_client=http, max_retries=0
        )

    def drain(self, **kw: Any) -> DrainReport:
        """One drain run on the fake clock (a fresh Drainer, as each cron run is)."""
        drainer = Drainer(self.app.config, self.app.db, clock=self.clock, sleep=self.clock.sleep)
        return drainer.run(**kw)


@pytest.fixture
def make_batches(home, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Setup]]:
    """`make_batches(**defer_overrides)` -> Setup; the fake API ends a batch on its first poll."""
    clock = Clock(NOON)
    api = FakeAnthropic(clock=clock, batch_mode="polls", batch_polls=1).start()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "drain-key")

    def make(**defer: Any) -> Setup:
        return Setup(api, clock, {f"defer.{k}": v for k, v in defer.items()})

    try:
        yield make
    finally:
        api.stop()
    assert not api.handler_errors, api.handler_errors


@pytest.fixture
def batches(make_batches: Callable[..., Setup]) -> Setup:
    return make_batches()
