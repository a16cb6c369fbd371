"""kill -9 of `ask` (library loop and CLI) and `drain` at random points: nothing lost,
nothing paid or recorded twice, no reservation kept past its TTL, the file intact."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.killing import run_kills


def test_sigkill_at_random_points_of_ask_and_drain(fake_api, tmp_path: Path) -> None:
    run = run_kills(fake_api, tmp_path, asks=32, clis=14, drains=14, seed=11)
    print(run)
    assert run.problems == []
    assert run.killed >= 50
    assert run.received > 0 and run.tasks == 42
