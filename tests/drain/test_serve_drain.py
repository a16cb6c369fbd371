"""The drain inside `serve`: start_drain runs the daemon's jobs in background threads,
unless the config says another process drains."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tars_opt import open_app
from tars_opt.defer.facade import BatchFacade
from tars_opt.drain.daemon import start_drain


def wait_for(condition: Callable[[], bool], limit: float = 30.0) -> bool:
    # Background threads on the wall clock: poll briefly rather than sleep a fixed time.
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_serve_does_not_drain_when_another_process_does(home: Path) -> None:
    config = open_app(backend="offline", overrides={"defer.serve_drains": False}).config
    assert start_drain(config, config.resolved_database()) is None


def test_serve_drains_in_the_background_and_wakes_on_demand(home: Path) -> None:
    # Outside the window all day, so only the deadline rule can send the batch.
    now = time.time()
    window_hour = (time.gmtime(now).tm_hour + 12) % 24
    app = open_app(backend="offline", overrides={"defer.window": f"{window_hour:02d}:00-"
                                                 f"{window_hour:02d}:30"})  # fmt: skip
    # A batch created 23.5 hours ago: its deadline is 30 minutes away.
    facade = BatchFacade(app.config, app.db, clock=lambda: now - 23.5 * 3600)
    body = {"requests": [{"custom_id": "a", "params": {"model": "claude-haiku-4-5",
            "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}}]}  # fmt: skip
    batch_id = facade.create(body, base_url="http://x")["id"]
    daemon = start_drain(app.config, app.config.resolved_database())
    assert daemon is not None
    try:
        assert daemon.scheduler.running
        ended = wait_for(
            lambda: facade.retrieve(batch_id, base_url="http://x")["processing_status"] == "ended"
        )
        assert ended, "the collector did not send the batch due before its deadline"
        view = facade.retrieve(batch_id, base_url="http://x")
        assert view["request_counts"]["succeeded"] == 1
        runs = daemon.runs
        daemon.wake()  # after a client's cancel: collect (and cancel upstream) at once
        assert wait_for(lambda: daemon.runs > runs)
    finally:
        daemon.stop()
    assert not daemon.scheduler.running
