"""Release soak: the reliability tests' code, run longer, printing the figures.

    python scripts/soak.py                 # 500 kill points, 3 fault runs, 8+1 processes
    python scripts/soak.py --kills 100 --fault-requests 300 --seconds 20 --examples 200

Everything runs against the local fake Anthropic API on 127.0.0.1 (no network, no key) in
a temporary directory. Exit 0 when nothing was lost, doubled, billed wrongly or leaked.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fake_anthropic.server import FakeAnthropic  # noqa: E402


def _isolated(work: Path) -> None:
    """A fresh data dir, no inherited tars-opt or API settings (like the tests' fixture)."""
    for var in list(os.environ):
        if var.startswith(("TARS_OPT_", "ANTHROPIC_")):
            del os.environ[var]
    os.environ["TARS_OPT_HOME"] = str(work / "home")
    os.environ["TARS_OPT_HOLDOUT"] = "0"
    os.chdir(work)


def soak_kills(kills: int, seed: int) -> dict[str, object]:
    from tests.reliability.killing import run_kills

    asks, clis = kills * 55 // 100, kills * 25 // 100
    drains = kills - asks - clis
    with tempfile.TemporaryDirectory() as tmp, FakeAnthropic() as server:
        _isolated(Path(tmp))
        run = run_kills(server, Path(tmp), asks=asks, clis=clis, drains=drains, seed=seed)
    return {
        "points killed (SIGKILL)": run.killed,
        "  by job": dict(run.points),
        "workers that finished first": dict(run.finished),
        "answers received by callers": run.received,
        "deferred tasks": run.tasks,
        "batches submitted": run.batches,
        "problems": run.problems,
    }


def soak_faults(requests: int, tasks: int, runs: int, seed: int) -> dict[str, object]:
    from tests.reliability.faults import run_faults

    total: dict[str, object] = {"requests": 0, "answered": 0, "failed": 0, "http": 0}
    faults: dict[str, int] = {}
    problems: list[str] = []
    retries = 0
    for k in range(runs):
        with tempfile.TemporaryDirectory() as tmp, FakeAnthropic() as server:
            _isolated(Path(tmp))
            os.environ["ANTHROPIC_BASE_URL"] = server.url
            os.environ["ANTHROPIC_API_KEY"] = "test-key"
            run = run_faults(server, requests=requests, tasks=tasks, rate=0.3, seed=seed + k)
        total["requests"] += run.requests  # type: ignore[operator]
        total["answered"] += run.answered  # type: ignore[operator]
        total["failed"] += sum(run.failed.values())  # type: ignore[operator]
        total["http"] += run.http_requests  # type: ignore[operator]
        retries += run.retries_checked
        for kind, n in run.faults.items():
            faults[kind] = faults.get(kind, 0) + n
        problems += run.problems
    return {
        "requests (30% fault rate)": total["requests"],
        "answered": total["answered"],
        "failed with a reason": total["failed"],
        "batch tasks": tasks * runs,
        "HTTP requests seen by the API": total["http"],
        "faults injected": sum(faults.values()),
        "  by kind": faults,
        "retries checked against retry-after": retries,
        "problems": problems,
    }


def soak_concurrency(workers: int, seconds: float) -> dict[str, object]:
    from tests.reliability.concurrency import BUDGET_USD, run_concurrency

    with tempfile.TemporaryDirectory() as tmp, FakeAnthropic() as server:
        _isolated(Path(tmp))
        run = run_concurrency(server, Path(tmp), workers=workers, seconds=seconds)
    return {
        "processes (ask + drain)": run.processes,
        "asks": run.asks,
        "answered": run.answered,
        "queued": run.queued,
        "refused by the budget": run.refused,
        "spent / budget (USD)": f"{run.spent:.4f} / {BUDGET_USD:.4f}",
        "problems": run.problems,
    }


def soak_inputs(examples: int) -> dict[str, object]:
    """The property-based bad-input tests, with more examples each."""
    import subprocess

    env = {**os.environ, "TARS_OPT_SOAK_EXAMPLES": str(examples)}
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/reliability/test_bad_input.py",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "inputs tried": f"~{examples} per property x 8 properties",
        "seconds": round(time.monotonic() - started, 1),
        "problems": [] if proc.returncode == 0 else [proc.stdout[-2000:]],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=500, help="SIGKILL points (ask + drain)")
    ap.add_argument("--fault-requests", type=int, default=300, help="requests per fault run")
    ap.add_argument("--fault-runs", type=int, default=3)
    ap.add_argument("--fault-tasks", type=int, default=30, help="batch tasks per fault run")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0, help="concurrency run length")
    ap.add_argument("--examples", type=int, default=300, help="hypothesis examples")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    started = time.monotonic()
    sections = {
        "kill -9": soak_kills(args.kills, args.seed),
        "API faults": soak_faults(
            args.fault_requests, args.fault_tasks, args.fault_runs, args.seed
        ),
        "concurrency": soak_concurrency(args.workers, args.seconds),
        "bad input": soak_inputs(args.examples),
    }
    bad = 0
    for name, figures in sections.items():
        print(f"== {name}")
        for key, value in figures.items():
            if key == "problems":
                continue
            print(f"  {key}: {value}")
        problems = figures["problems"]
        print(f"  lost / doubled / wrongly billed: {len(problems)}")  # type: ignore[arg-type]
        for p in problems[:20]:  # type: ignore[index]
            print(f"    ! {p}")
        bad += len(problems)  # type: ignore[arg-type]
    print(f"== total {time.monotonic() - started:.0f} s; problems: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
