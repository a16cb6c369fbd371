"""What `tars-opt serve` adds to a call, against direct calls and a bare relay.

The fake API runs in its own process as the upstream; the bare relay (starlette + uvicorn +
httpx2 relaying bytes, `benchmarks/bare_relay.py`) and tars-opt serve each in theirs. Calls
are tau_bench airline agent requests (system prompt, 14 tools, the conversation so far),
sent paired and interleaved: each request goes to every target in a rotating order, once as
JSON and once streamed, over kept-alive connections. Printed side by side: p50/p95 latency
added over direct calls (whole JSON answer; time to the first streamed event), CPU per
request of each proxy process, cold start to the first answer, RSS.

Two tars-opt targets: the default chain (cache, pruning, routing, tools, prompt caching)
and the front door alone (every stage off), so the gateway's own cost shows apart from the
stages' work.

With `--db URL` (a PostgreSQL database) or `--pg` (a throwaway loopback server started
here, fsync on), both tars-opt targets run a second time with that database as their store,
interleaved with the SQLite ones, so the store's share of the added latency shows.

    python benchmarks/gateway.py [--requests 120] [--delay 0.0] [--pg | --db URL]
    python benchmarks/gateway.py --soak 60 --clients 50   # concurrent streams, rows checked
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TARS_OPT_SHARED_DATA", REPO.parent / "shared" / "data"))
TAU = DATA / "tau_bench" / "airline_conversations.jsonl"
MODEL = "claude-sonnet-4-6"
HEADERS = {"x-api-key": "sk-bench", "anthropic-version": "2023-06-01"}
TICK = os.sysconf("SC_CLK_TCK")
STAGES_OFF = """\
cache: {enabled: false}
defer: {enabled: false}
prune: {enabled: false}
routing: {enabled: false}
tools: {enabled: false}
prompt_cache: {enabled: false}
"""


def tau_requests(n: int) -> list[dict]:
    """n agent calls: every prefix of a conversation that ends with a user turn (a message or
    tool results), taken evenly across the file."""
    calls = []
    with TAU.open() as f:
        for line in f:
            convo = json.loads(line)
            for k, m in enumerate(convo["messages"], 1):
                if m["role"] == "user" and unique_tool_ids(convo["messages"][:k]):
                    calls.append(
                        {
                            "model": MODEL,
                            "max_tokens": 1024,
                            "system": convo["system"],
                            "tools": convo["tools"],
                            "messages": convo["messages"][:k],
                        }
                    )
    step = max(1, len(calls) // n)
    return calls[::step][:n]


def unique_tool_ids(messages: list[dict]) -> bool:
    """Some recorded conversations reuse a tool_use id, which the API (and the strict fake)
    refuse: such calls are left out."""
    ids = [
        b["id"]
        for m in messages
        if isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_use"
    ]
    return len(ids) == len(set(ids))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_up(url: str, proc: subprocess.Popen, path: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            httpx2.get(url + path, headers=HEADERS, timeout=1)
            return
        except httpx2.TransportError:
            time.sleep(0.005)
    raise SystemExit(f"{url} did not start")


def start(cmd: list[str], env: dict[str, str], url: str, path: str, body: dict) -> tuple:
    """Start a proxy; return (process, seconds to start, to the first answer)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    wait_up(url, proc, path)
    up = time.perf_counter() - t0
    answer = httpx2.post(url + "/v1/messages", json=body, headers=HEADERS, timeout=60)
    answer.raise_for_status()
    return proc, up, time.perf_counter() - t0


def timed_json(http: httpx2.Client, url: str, body: dict, headers: dict) -> float:
    t0 = time.perf_counter()
    answer = http.post(url + "/v1/messages", json=body, headers=headers)
    answer.raise_for_status()
    return (time.perf_counter() - t0) * 1000


def timed_first_event(http: httpx2.Client, url: str, body: dict, headers: dict) -> float:
    t0 = time.perf_counter()
    with http.stream("POST", url + "/v1/messages", json={**body, "stream": True},
                     headers=headers) as answer:  # fmt: skip
        answer.raise_for_status()
        first = None
        for _ in answer.iter_raw():
            if first is None:
                first = (time.perf_counter() - t0) * 1000
        assert first is not None
    return first


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def soak_clients(url: str, bodies: list[dict], clients: int, seconds: float) -> tuple:
    """`clients` streaming clients for `seconds`: (request ids answered, errors)."""
    import asyncio

    ids: list[str] = []
    errors: list[str] = []
    stop = time.monotonic() + seconds
    headers = {**HEADERS, "x-tars-opt-cache": "off"}

    async def client(n: int, http: httpx2.AsyncClient) -> None:
        i = n
        while time.monotonic() < stop:
            body = {**bodies[i % len(bodies)], "stream": True}
            i += clients
            try:
                async with http.stream("POST", url + "/v1/messages", json=body,
                                       headers=headers) as answer:  # fmt: skip
                    data = b"".join([chunk async for chunk in answer.aiter_raw()])
                    if answer.status_code != 200 or b"message_stop" not in data:
                        errors.append(f"{answer.status_code} {data[:100]!r}")
                    else:
                        ids.append(answer.headers["x-tars-opt-request-id"])
            except httpx2.HTTPError as exc:
                errors.append(repr(exc))

    limits = httpx2.Limits(max_connections=clients)
    async with httpx2.AsyncClient(timeout=120, limits=limits) as http:
        await asyncio.gather(*(client(n, http) for n in range(clients)))
    return ids, errors


def soak(seconds: float, clients: int, delay: float) -> None:
    """Concurrent streaming clients through tars-opt serve; then every answer must have
    exactly one ledger row."""
    import asyncio

    bodies = tau_requests(200)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TARS_OPT_HOLDOUT": "0"}
    env.pop("ANTHROPIC_API_KEY", None)
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_anthropic", "--port", "0", "--print-url",
         "--request-delay", str(delay), "--event-delay", "0.002"],
        env=env, stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    assert fake.stdout is not None
    upstream = fake.stdout.readline().strip()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc, _, _ = start(
            [sys.executable, "-m", "tars_opt", "serve", "--port", str(port),
             "--upstream", upstream],
            {**env, "TARS_OPT_HOME": str(home)}, url, "/tars-opt/health", bodies[0],
        )  # fmt: skip
        try:
            ids, errors = asyncio.run(soak_clients(url, bodies, clients, seconds))
            while httpx2.get(url + "/tars-opt/health").json()["ledger_backlog"]:
                time.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            fake.terminate()
            fake.wait(timeout=30)
        os.environ["TARS_OPT_HOME"] = str(home)
        from tars_opt import open_app

        rows = [r["request_id"] for r in open_app().db.query("SELECT request_id FROM calls")]
    answered = set(ids)
    recorded = [r for r in rows if r in answered]
    print(f"{clients} streaming clients for {seconds:g} s: {len(ids)} answers, "
          f"{len(errors)} errors, {len(set(ids)) - len(set(recorded))} answers without a row, "
          f"{len(recorded) - len(set(recorded))} doubled rows")  # fmt: skip
    for error in errors[:5]:
        print("  error:", error)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--delay", type=float, default=0.0, help="the fake's request delay (s)")
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of concurrent streams")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--db", help="also run the tars-opt targets on this PostgreSQL URL")
    parser.add_argument("--pg", action="store_true", help="--db on a throwaway local server")
    args = parser.parse_args()
    if args.soak:
        soak(args.soak, args.clients, args.delay)
        return
    server = None
    if args.pg:
        sys.path.insert(0, str(REPO))
        from tests import pgserver

        server = pgserver.start(fsync=True)
        args.db = server.url
    try:
        run(args)
    finally:
        if server is not None:
            server.stop()


def run(args: argparse.Namespace) -> None:
    bodies = tau_requests(args.requests)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TARS_OPT_HOLDOUT": "0"}
    env.pop("ANTHROPIC_API_KEY", None)
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_anthropic", "--port", "0", "--print-url",
         "--request-delay", str(args.delay)],
        env=env, stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    assert fake.stdout is not None
    upstream = fake.stdout.readline().strip()
    procs: list[subprocess.Popen] = [fake]
    targets: dict[str, str] = {"direct": upstream}
    pids: dict[str, int] = {}
    starts: dict[str, tuple[float, float, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            proc, up, first = start(
                [sys.executable, str(REPO / "benchmarks" / "bare_relay.py"),
                 "--upstream", upstream, "--port", str(port)],
                env, f"http://127.0.0.1:{port}", "/v1/models", bodies[0],
            )  # fmt: skip
            procs.append(proc)
            targets["bare relay"] = f"http://127.0.0.1:{port}"
            pids["bare relay"] = proc.pid
            starts["bare relay"] = (up, first, rss_mb(proc.pid))
            off = Path(tmp) / "stages-off.yaml"
            off.write_text(STAGES_OFF)
            stores = [("", None)] + ([(" [pg]", args.db)] if args.db else [])
            for (name, extra), (tag, db) in (
                (target, store)
                for store in stores
                for target in (
                    ("tars-opt chain", []),
                    ("tars-opt front door", ["--config", str(off)]),
                )
            ):
                name += tag
                port = free_port()
                home = Path(tmp) / name.replace(" ", "-")
                store_env = {"TARS_OPT_DB": db} if db else {}
                proc, up, first = start(
                    [sys.executable, "-m", "tars_opt", "serve", "--port", str(port),
                     "--upstream", upstream, *extra],
                    {**env, **store_env, "TARS_OPT_HOME": str(home)},
                    f"http://127.0.0.1:{port}", "/tars-opt/health", bodies[0],
                )  # fmt: skip
                procs.append(proc)
                targets[name] = f"http://127.0.0.1:{port}"
                pids[name] = proc.pid
                starts[name] = (up, first, rss_mb(proc.pid))
            time.sleep(3)  # the embedding model loads in the background
            names = list(targets)
            lat: dict[tuple[str, str], list[float]] = {
                (n, m): [] for n in names for m in ("json", "ttfe")
            }
            with httpx2.Client(timeout=60) as http:
                for url in targets.values():  # warm connections and code paths
                    for body in bodies[:5]:
                        timed_json(http, url, body, HEADERS)
                        timed_first_event(http, url, body, HEADERS)
                cpu0 = {n: cpu_s(p) for n, p in pids.items()}
                for i, body in enumerate(bodies):
                    order = names[i % len(names) :] + names[: i % len(names)]
                    for mode, fn in (("json", timed_json), ("ttfe", timed_first_event)):
                        for name in order:
                            # No response-cache hits: every target sends every call upstream.
                            headers = {**HEADERS, "x-tars-opt-cache": "off"}
                            lat[(name, mode)].append(fn(http, targets[name], body, headers))
                cpu = {n: (cpu_s(p) - cpu0[n]) * 1000 / (2 * len(bodies)) for n, p in pids.items()}
            peak = {n: rss_mb(p, "VmHWM") for n, p in pids.items()}
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)

    print(f"{len(bodies)} tau_bench airline calls, each sent JSON and streamed to every target, "
          f"interleaved; fake API delay {args.delay:g} s")  # fmt: skip
    if args.db:
        print("[pg] = the same target with a PostgreSQL store (loopback, fsync on)")
    print()
    direct = {m: lat[("direct", m)] for m in ("json", "ttfe")}
    cols = f"{'p50':>9} {'p95':>7} {'+p50':>7} {'+p95':>7}"
    head = f"{'target':22} {'json ' + cols[5:]}   {'ttfe ' + cols[5:]}   {'cpu/req':>8}"
    print(head)
    print("-" * len(head))
    for name in names:
        cells = []
        for mode in ("json", "ttfe"):
            values = lat[(name, mode)]
            added = [v - d for v, d in zip(values, direct[mode], strict=True)]
            cells.append(f"{pct(values, .5):9.2f} {pct(values, .95):7.2f} "
                         f"{pct(added, .5):+7.2f} {pct(added, .95):+7.2f}")  # fmt: skip
        cpu_text = f"{cpu[name]:6.2f}ms" if name in cpu else "       -"
        print(f"{name:22} {cells[0]}   {cells[1]}   {cpu_text}")
    print("\n(ms; + = added over the same call made directly; ttfe = time to the first")
    print(" streamed bytes; cpu/req = the proxy process's CPU per request)")
    bare = {m: lat[("bare relay", m)] for m in ("json", "ttfe")}
    for name in names[2:]:
        for mode in ("json", "ttfe"):
            over = [v - b for v, b in zip(lat[(name, mode)], bare[mode], strict=True)]
            print(f"{name} over the bare relay, {mode}: p50 {pct(over, .5):+.2f} ms, "
                  f"p95 {pct(over, .95):+.2f} ms")  # fmt: skip
        print(
            f"{name} CPU per request over the bare relay: {cpu[name] - cpu['bare relay']:+.2f} ms"
        )
    for name in names:
        if not name.endswith(" [pg]"):
            continue
        lite = name.removesuffix(" [pg]")
        for mode in ("json", "ttfe"):
            over = [v - b for v, b in zip(lat[(name, mode)], lat[(lite, mode)], strict=True)]
            print(f"{name} over {lite} (SQLite), {mode}: p50 {pct(over, .5):+.2f} ms, "
                  f"p95 {pct(over, .95):+.2f} ms")  # fmt: skip
    print()
    for name, (up, first, rss) in starts.items():
        print(f"{name}: listening after {up:.2f} s, first answer after {first:.2f} s, "
              f"RSS at first answer {rss:.0f} MB, peak {peak[name]:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
