"""Many processes on one database: `ask` in 8 processes plus a drain, for a bounded time.

Shared by tests/reliability/test_concurrency.py and scripts/soak.py.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tars_opt.store import connect
from tests.fake_anthropic.server import FakeAnthropic
from tests.reliability.killing import Zygote, integrity, worker_env
from tests.stored import database_at

BUDGET_USD = 0.01


@dataclass
class ConcurrencyRun:
    processes: int = 0
    asks: int = 0
    answered: int = 0
    queued: int = 0
    refused: int = 0
    spent: float = 0.0
    exits: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def run_concurrency(
    server: FakeAnthropic, work: Path, *, workers: int = 8, seconds: float = 4.0
) -> ConcurrencyRun:
    """`workers` processes loop on `tars-opt ask` (every fourth one with --defer) while one
    loops on `drain --now`, under a blocking budget answers are sized to reach."""
    home = work / "home"
    cfg = work / "performance-config.yaml"
    # The heuristic router (no model load per process) keeps the answers' prices, and so
    # how many fit the budget, what this run was sized for.
    cfg.write_text(
        f"budget:\n  monthly_usd: {BUDGET_USD}\n  policy: block\ndefer:\n  poll_seconds: 0.1\n"
        "routing:\n  router: heuristic\n  strong_share: null\n"
    )
    # Every answer uses all its max_tokens, so the budget is reached within the run.
    server.responder = lambda body: {
        "text": "ok",
        "output_tokens": body["max_tokens"],
        "delay": 0.01,
    }
    env = {**worker_env(server, home), "TARS_OPT_CONFIG": str(cfg)}
    run = ConcurrencyRun(processes=workers + 1)
    outs: list[tuple[Path, int]] = []
    with Zygote(work) as zygote:
        pids = []
        for n in range(workers):
            out = work / f"c{n}.out"
            args = ["--max-tokens", "1500"] + (["--defer"] if n % 4 == 3 else [])
            pids.append(
                zygote.fork(
                    "cli_ask", out, env, tag=f"c{n}", n=10_000, min_n=3, seconds=seconds, args=args
                )
            )
            outs.append((out, n))
        drain_out = work / "drain.out"
        pids.append(zygote.fork("drain_loop", drain_out, env, seconds=seconds))
        for pid in pids:
            status = zygote.wait(pid)
            if status["code"] != 0:
                run.problems.append(f"worker {pid} ended {status}")
    conn = connect(database_at(home))
    calls = {r[0]: r for r in conn.execute("SELECT request_id, error, source FROM calls")}
    tickets = {r[0] for r in conn.execute("SELECT ticket FROM tasks")}
    for out, _n in outs:
        err = Path(f"{out}.err").read_text() if Path(f"{out}.err").exists() else ""
        run.problems += _stderr_problems(err, out.name)
        said_from = 0
        for m in re.finditer(r"^exit (\d+)$", err, re.M):
            code = int(m.group(1))
            run.exits[code] += 1
            if code not in (0, 3):
                said = err[said_from : m.start()].strip()[-300:]
                run.problems.append(f"{out.name}: exit {code} after {said!r}")
            said_from = m.end()
        for path in sorted(out.parent.glob(f"{out.name}.*")):
            if not path.name[len(out.name) + 1 :].isdigit():
                continue
            run.asks += 1
            text = path.read_text()
            if not text.strip():
                continue  # refused (exit 3) or failed: said on stderr
            doc: dict[str, Any] = json.loads(text)
            if doc["source"] == "queued":
                run.queued += 1
                if doc["ticket"] not in tickets:
                    run.problems.append(f"queued ticket {doc['ticket']} not in the queue")
            else:
                run.answered += 1
                row = calls.get(doc["request_id"])
                if row is None or row[1] is not None:
                    run.problems.append(f"{doc['request_id']}: no clean ledger row")
    drain_err = Path(f"{drain_out}.err").read_text() if Path(f"{drain_out}.err").exists() else ""
    run.problems += _stderr_problems(drain_err, "drain")
    run.refused = run.exits.get(3, 0)
    bad_exits = {c: k for c, k in run.exits.items() if c not in (0, 3)}
    if bad_exits:
        run.problems.append(f"unexpected exit codes {bad_exits}")
    run.spent = conn.execute("SELECT COALESCE(SUM(cost), 0) FROM calls").fetchone()[0]
    if run.spent > BUDGET_USD:
        run.problems.append(f"budget overshot: ${run.spent:.4f} > ${BUDGET_USD}")
    conn.close()
    check = integrity(database_at(home))
    if check not in ("ok", None):
        run.problems.append(f"integrity_check: {check}")
    return run


def _stderr_problems(err: str, name: str) -> list[str]:
    problems = []
    if "locked" in err.lower() or "busy" in err.lower():
        problems.append(f"{name}: a lock error reached the user: {err[:300]}")
    if "Traceback" in err:
        problems.append(f"{name}: traceback: {err[err.index('Traceback') :][:800]}")
    return problems
