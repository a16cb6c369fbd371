"""API faults at a 30% rate: every request ends answered or failed with a clear reason,
retries wait as the API asks, and no failed attempt is billed."""

from __future__ import annotations

from tests.reliability.faults import run_faults


def test_thirty_percent_faults_over_hundreds_of_requests(fake_api_env) -> None:
    run = run_faults(fake_api_env, requests=200, tasks=12, rate=0.3, seed=7)
    assert run.problems == []
    assert run.answered + sum(run.failed.values()) == run.requests == 200
    assert run.answered > 150
    assert run.retries_checked >= 10  # the SDK's retries absorb most faults
    assert sum(run.faults.values()) >= 60
    assert set(run.faults) >= {"rate_limit", "overloaded", "api_error", "connection_reset"}
