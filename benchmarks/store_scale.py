"""The team database's costs: a ledger write (one row, its own transaction) and claiming
2,000 deferred tasks at once, on loopback PostgreSQL with fsync on and on an SQLite file.
Beside them: a bare INSERT + COMMIT on the same server (the floor fsync sets), and what the
gateway adds to each answer to keep its row safe: one append to its local journal (and
what an fsync per row would cost).

Starts its own throwaway PostgreSQL server (tests/pgserver.py), or uses --url.

    python benchmarks/store_scale.py [--writes 500] [--url postgresql://...]

Targets (docs/team.md): ledger write p50 <= 3 ms on PostgreSQL; claiming 2,000 tasks <= 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tars_opt.accounting.ledger import CallRecord, Ledger  # noqa: E402
from tars_opt.defer.queue import Queue, custom_id_for  # noqa: E402
from tars_opt.defer.taskjson import request_to_json  # noqa: E402
from tars_opt.store import connect  # noqa: E402
from tars_opt.types import Reply, Request  # noqa: E402


def ledger_writes(location: str, n: int) -> list[float]:
    db = connect(location)
    ledger = Ledger(db)
    times = []
    for i in range(n):
        request = Request.from_prompt(f"question {i}", request_id=f"req_{i:06d}")
        reply = Reply(text="answer", model="claude-haiku-5-5", source="api",
                      request_id=request.request_id, cost=0.001)  # fmt: skip
        record = CallRecord(request=request, reply=reply, ts=time.time())
        start = time.perf_counter()
        ledger.record(record)
        times.append((time.perf_counter() - start) * 1000)
    db.close()
    return times


def bare_inserts(url: str, n: int) -> list[float]:
    """INSERT + COMMIT of one small row, straight through psycopg: the server's floor."""
    import psycopg

    times = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bare (id serial PRIMARY KEY, v text)")
        for i in range(n):
            start = time.perf_counter()
            conn.execute("INSERT INTO bare (v) VALUES (%s)", [f"row {i}"])
            times.append((time.perf_counter() - start) * 1000)
    return times


def journal_appends(n: int, *, fsync: bool) -> list[float]:
    """The gateway's work on the response path to keep a row: make it, append it."""
    from tars_opt.store.journal import Journal

    ledger = Ledger(None)  # type: ignore[arg-type]  # rows are only made here, never written
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp))
        for i in range(n):
            request = Request.from_prompt(f"question {i} " * 40, request_id=f"req_{i:06d}")
            reply = Reply(text="answer " * 100, model="claude-haiku-5-5", source="api",
                          request_id=request.request_id, cost=0.001)  # fmt: skip
            start = time.perf_counter()
            number = journal.append({"calls": ledger.row(CallRecord(request, reply, time.time()))})
            if fsync:
                journal.sync()
            times.append((time.perf_counter() - start) * 1000)
            journal.confirm(number)
        journal.close()
    return times


def claim_all(location: str, n: int) -> float:
    db = connect(location)
    now = time.time()
    body = request_to_json(Request.from_prompt("hello", model="claude-haiku-5-5"))
    rows = [
        {"ticket": f"t{i:05d}", "request_id": f"r{i:05d}", "request": body,
         "namespace": "default", "priority": 1, "reason": "bench", "state": "queued",
         "attempts": 1, "custom_id": custom_id_for(f"t{i:05d}", 1), "created_at": now + i,
         "updated_at": now}
        for i in range(n)
    ]  # fmt: skip
    db.insert_many("tasks", rows)
    start = time.perf_counter()
    claimed = Queue(db).claim("bench", lease_s=600, limit=n)
    elapsed = time.perf_counter() - start
    assert len(claimed) == n
    db.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--url", help="an empty PostgreSQL database to use")
    args = parser.parse_args()
    server = None
    if args.url:
        urls = [args.url, args.url]
    else:
        from tests import pgserver

        server = pgserver.start(fsync=True)
        import psycopg

        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench_ledger")
            conn.execute("CREATE DATABASE bench_queue")
        urls = [server.url_for("bench_ledger"), server.url_for("bench_queue")]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for engine, ledger_at, queue_at in (
                ("sqlite", f"{tmp}/l.db", f"{tmp}/q.db"),
                ("postgresql", urls[0], urls[1]),
            ):
                writes = ledger_writes(ledger_at, args.writes)
                p50 = statistics.median(writes)
                p95 = statistics.quantiles(writes, n=20)[18]
                claim = claim_all(queue_at, args.tasks)
                print(
                    f"{engine:10s} ledger write p50 {p50:.2f} ms p95 {p95:.2f} ms "
                    f"({args.writes} writes); claim {args.tasks} tasks {claim * 1000:.0f} ms"
                )
            bare = bare_inserts(urls[0], args.writes)
            print(f"{'postgresql':10s} bare INSERT+COMMIT p50 {statistics.median(bare):.2f} ms "
                  f"p95 {statistics.quantiles(bare, n=20)[18]:.2f} ms")  # fmt: skip
        for fsync in (False, True):
            appends = journal_appends(args.writes, fsync=fsync)
            print(f"{'journal':10s} row made + appended{' + fsync' if fsync else ''}: "
                  f"p50 {statistics.median(appends):.3f} ms "
                  f"p95 {statistics.quantiles(appends, n=20)[18]:.3f} ms")  # fmt: skip
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
