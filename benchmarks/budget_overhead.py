"""What the budget's reserve/settle (and the threshold check) adds to each `ask`.

Runs N offline requests through Optimizer.ask (which reserves, sends, records, settles and
checks alerts) and the same work without the budget (prepare, send, finish), on a fresh
SQLite file each, and prints the median time per call of each and the difference.

    python benchmarks/budget_overhead.py [--n 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from tars_opt import Request, open_app
from tars_opt.backends.offline import OfflineBackend


def run(n: int, with_budget: bool) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TARS_OPT_HOME"] = tmp
        os.environ["TARS_OPT_HOLDOUT"] = "0"
        opened = open_app(db=Path(tmp) / "bench.db", backend="offline")
        opt = opened.optimizer(backend=OfflineBackend())
        times = []
        for i in range(n):
            req = Request.from_prompt(f"benchmark question {i} " * 5, max_tokens=300)
            t0 = time.perf_counter()
            if with_budget:
                opt.ask(req)
            else:
                prepared = opt.prepare(req)
                opt.finish(prepared, opt.backend.send(prepared.params))
            times.append(time.perf_counter() - t0)
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    run(20, True)  # warm up imports and caches
    plain = statistics.median(run(args.n, False)) * 1000
    budget = statistics.median(run(args.n, True)) * 1000
    print(f"calls per arm: {args.n}")
    print(f"median per call without budget: {plain:.3f} ms")
    print(f"median per call with budget:    {budget:.3f} ms")
    print(f"budget overhead: {budget - plain:.3f} ms per call ({budget / plain:.2f}x)")


if __name__ == "__main__":
    main()
