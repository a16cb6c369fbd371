"""Drain at scale: N queued tasks claimed, prepared, submitted and collected in one run.

    python benchmarks/drain_scale.py [--tasks 10000] [--api fake|offline] [DATA_DIR]

`--api fake` (default) drives the real SDK against the local fake Anthropic API
(tests/fake_anthropic) started in a child process, so the peak RSS printed is the drain's
own; its batches end after two polls. `--api offline` uses the offline backend (batches
kept in the SQLite file). Prompts are Arena-Hard and ShareGPT first turns from the shared
data (cycled, each made unique); a third share one long system prompt, so the 1-hour
prompt-cache breakpoint is exercised. Prints wall time per phase, peak RSS, batches made,
and checks every task reached `done` exactly once with exactly one ledger row.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tars_opt.app import open_app  # noqa: E402
from tars_opt.defer.queue import Queue, new_ticket  # noqa: E402
from tars_opt.defer.taskjson import request_to_json  # noqa: E402
from tars_opt.drain.runner import Drainer  # noqa: E402
from tars_opt.types import Request  # noqa: E402

SERVER = """
import sys
sys.path.insert(0, {repo!r})
from tests.fake_anthropic import FakeAnthropic
api = FakeAnthropic(batch_mode="polls", batch_polls=2).start()
print(api.url, flush=True)
sys.stdin.read()  # serve until the parent closes stdin
api.stop()
"""


def load_prompts(data: Path) -> list[str]:
    prompts: list[str] = []
    for path in sorted((data / "arena_hard_prompts").glob("*/question.jsonl")):
        for line in path.read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            prompts.append(json.loads(line)["prompt"])
    sharegpt = data / "sharegpt_prompts"
    sharegpt /= "sg_90k_part1_html_cleaned_lang_first_sampled_sorted.json"
    if sharegpt.exists():
        for conv in json.loads(sharegpt.read_text(encoding="utf-8")):
            turns = conv.get("conversations") or []
            if turns and turns[0].get("from") == "human" and turns[0].get("value", "").strip():
                prompts.append(turns[0]["value"][:8000])
    if not prompts:
        raise SystemExit(f"no prompts under {data}: pass the shared data directory")
    return prompts


def enqueue(app, prompts: list[str], n: int) -> float:
    """Queue n tasks (one transaction per 1,000; the defer stage queues one at a time)."""
    system = "You are a meticulous research assistant. Cite sources. " * 200
    start = time.perf_counter()
    now = time.time()
    rows = []
    for i in range(n):
        req = Request(
            prompt=f"[{i}] {prompts[i % len(prompts)]}",
            system=system if i % 3 == 0 else None,
            max_tokens=512,
        )
        ticket = new_ticket()
        rows.append(
            (
                ticket,
                req.request_id,
                request_to_json(req),
                1,
                "benchmark",
                "queued",
                1,
                f"{ticket}-1",
                now,
                now,
            )
        )
    for k in range(0, n, 1000):
        with app.db.transaction() as cur:
            cur.executemany(
                "INSERT INTO tasks (ticket, request_id, request, priority, reason, state, "
                "attempts, custom_id, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                rows[k : k + 1000],
            )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--api", choices=["fake", "offline"], default="fake")
    args = parser.parse_args()
    prompts = load_prompts(Path(args.data))

    server = None
    home = Path(tempfile.mkdtemp(prefix="drain-bench-"))
    os.environ["TARS_OPT_HOME"] = str(home)
    overrides: dict[str, object] = {"defer.poll_seconds": 0.5}
    if args.api == "fake":
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER.format(repo=str(REPO))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        url = server.stdout.readline().strip()
        os.environ["ANTHROPIC_API_KEY"] = "test-key"
        overrides.update({"backend": "anthropic", "api.base_url": url, "api.max_retries": 2})
    else:
        overrides["backend"] = "offline"
    try:
        app = open_app(overrides=overrides)
        t_enqueue = enqueue(app, prompts, args.tasks)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        report = Drainer(app.config, app.db).run(now=True, wait=True)
        wall = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        counts = Queue(app.db).counts()
        ledger = app.db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT request_id), SUM(cost), SUM(baseline_cost), "
            "SUM(saved_batching), SUM(saved_prompt_caching) FROM calls WHERE source = 'batch'"
        ).fetchone()
        once = app.db.execute(
            "SELECT COUNT(*) FROM tasks t JOIN calls c ON c.request_id = t.request_id "
            "WHERE t.state = 'done'"
        ).fetchone()[0]
    finally:
        if server is not None:
            server.stdin.close()
            server.wait(10)
    ok = counts["done"] == args.tasks == ledger[0] == ledger[1] == once
    print(f"drain_scale: {args.tasks} tasks, api={args.api}, 2-core machine")
    print(f"  enqueue (not timed below)   {t_enqueue:8.2f} s")
    print(f"  drain: claim+prepare+submit+poll+collect  {wall:8.2f} s  (target <= 60 s)")
    print(
        f"  peak RSS                    {peak:8.1f} MB  (before drain {rss_before:.1f} MB;"
        " target <= 300 MB)"
    )
    print(
        f"  batches made                {len(report.submitted):8d}  "
        f"{[b['requests'] for b in report.submitted]}"
    )
    print(f"  outcomes                    {dict(report.outcomes)}")
    print(f"  tasks by state              { {k: v for k, v in counts.items() if v} }")
    print(f"  ledger rows (batch)         {ledger[0]:8d}  distinct request ids {ledger[1]}")
    print(
        f"  cost ${ledger[2]:.2f} vs baseline ${ledger[3]:.2f}: batching saved "
        f"${ledger[4]:.2f}, prompt caching saved ${ledger[5]:.2f}"
    )
    print(f"  every task done exactly once: {'yes' if ok else 'NO'}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
