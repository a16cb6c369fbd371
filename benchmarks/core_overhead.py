"""The in-process chain's overhead per call: Optimizer.prepare + finish, no network.

Two workloads, each on a fresh SQLite file with the default config and the offline
backend (its `send` is not timed): agent loop calls from tau_bench (every call of the
airline conversations whose last turn hands tool results back: system prompt, 14 tools
and the conversation so far) and single prompts (the first user turn of each
conversation, no tools). Prints the median and p95 milliseconds per call of each.

With `--compare TREE` the single-prompt workload also runs on another checkout's code
(e.g. /work/main), in rounds alternating with this one in the same run, so the two are
measured under the same machine load.

    python benchmarks/core_overhead.py [--loop-calls 300] [--prompts 300] [--compare ../main]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tau_bench"
CONVERSATIONS = DATA / "airline_conversations.jsonl"
MODEL = "claude-sonnet-5-5"


def load_calls(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every API call of the conversations that answers a tool result (as a Messages body),
    and the first user turn of each conversation (a single prompt)."""
    loops: list[dict[str, Any]] = []
    prompts: list[str] = []
    for line in path.read_text().splitlines():
        convo = json.loads(line)
        messages = convo["messages"]
        first = messages[0]["content"]
        prompts.append(first if isinstance(first, str) else first[0].get("text", ""))
        for i, message in enumerate(messages):
            if message["role"] != "assistant" or i == 0:
                continue
            last = messages[i - 1]["content"]
            if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
                loops.append(
                    {
                        "model": MODEL,
                        "max_tokens": 1024,
                        "system": convo["system"],
                        "tools": convo["tools"],
                        "messages": messages[:i],
                    }
                )
    return loops, prompts


def measure(kind: str, n: int, offset: int) -> list[float]:
    """Milliseconds of prepare + finish for `n` calls of `kind` (loop | prompt)."""
    from tars_opt import Prepared, Request, open_app
    from tars_opt.backends.offline import OfflineBackend

    loops, prompts = load_calls(CONVERSATIONS)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TARS_OPT_HOME"] = tmp
        os.environ["TARS_OPT_HOLDOUT"] = "0"
        opened = open_app(db=Path(tmp) / "bench.db", backend="offline")
        opt = opened.optimizer(backend=OfflineBackend())
        times: list[float] = []
        for i in range(n):
            if kind == "loop":
                request = Request.from_body(loops[(offset + i) % len(loops)])
            else:
                # A distinct prompt each time: every call runs the whole chain (no cache hit).
                text = f"{prompts[(offset + i) % len(prompts)]} (#{offset + i})"
                request = Request.from_prompt(text, max_tokens=1024)
            t0 = time.perf_counter()
            prepared = opt.prepare(request)
            t1 = time.perf_counter()
            assert isinstance(prepared, Prepared), "a stage answered: not a full chain run"
            result = opt.backend.send(prepared.params)
            t2 = time.perf_counter()
            opt.finish(prepared, result)
            t3 = time.perf_counter()
            times.append(((t1 - t0) + (t3 - t2)) * 1000.0)
        return times


def worker(tree: str | None, kind: str, n: int, offset: int) -> list[float]:
    """`measure` in a fresh process running `tree`'s code (this checkout's when None)."""
    root = tree or str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root}
    out = subprocess.run(
        [sys.executable, __file__, "--worker", kind, str(n), str(offset)],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def summary(times: list[float]) -> str:
    p95 = statistics.quantiles(times, n=20)[-1] if len(times) >= 20 else max(times)
    return f"median {statistics.median(times):7.2f} ms   p95 {p95:7.2f} ms   ({len(times)} calls)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop-calls", type=int, default=300)
    parser.add_argument("--prompts", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (--compare)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls per process")
    parser.add_argument("--compare", help="another checkout to time single prompts on")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, n, offset = args.worker[0], int(args.worker[1]), int(args.worker[2])
        measure(kind, min(args.warmup, n), offset + 10_000)  # imports, model loads
        print(json.dumps(measure(kind, n, offset)))
        return
    loops, prompts = load_calls(CONVERSATIONS)
    print(
        f"tau_bench airline: {len(loops)} loop calls (after a tool result), {len(prompts)} prompts"
    )
    loop_times = worker(None, "loop", args.loop_calls, 0)
    print(f"agent loop calls, this tree:   {summary(loop_times)}")
    rounds = max(1, args.rounds if args.compare else 1)
    per_round = max(1, args.prompts // rounds)
    ours: list[float] = []
    theirs: list[float] = []
    for r in range(rounds):
        ours += worker(None, "prompt", per_round, r * per_round)
        if args.compare:
            theirs += worker(args.compare, "prompt", per_round, r * per_round)
    print(f"single prompts, this tree:     {summary(ours)}")
    if args.compare:
        print(f"single prompts, {args.compare}: {summary(theirs)}")
        diff = statistics.median(ours) - statistics.median(theirs)
        print(f"difference in medians: {diff:+.2f} ms per single prompt")


if __name__ == "__main__":
    main()
