"""8 processes running `ask` plus a drain on one database for a bounded time."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.concurrency import BUDGET_USD, run_concurrency


def test_eight_asking_processes_and_a_drain(fake_api, tmp_path: Path) -> None:
    run = run_concurrency(fake_api, tmp_path, workers=8, seconds=6.0)
    print(run)
    assert run.problems == []
    assert run.answered > 10 and run.queued > 0
    # The budget was approached (asks until refused, --defer tasks the drain keeps queued)
    # and held.
    assert run.spent > 0.5 * BUDGET_USD
