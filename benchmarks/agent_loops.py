"""Agent loops: what prompt caching, clearing and routing save on real tool-calling traffic.

    python benchmarks/agent_loops.py [--data ../shared/data] [--split evaluation]
        [--via gateway|inprocess] [--limit N] [--seed 0] [--only NAME,...] [--levers]
        [--holdout SHARE] [--profile N] [--json FILE]

Workload: tau_bench/airline_conversations.jsonl (a gpt-4o airline agent, 200 conversations,
2,454 calls; every assistant message is one API call whose request is system + tools + the
messages before it). Thresholds are tuned on the CALIBRATION split; figures are reported on
the EVALUATION split (the default).

--via gateway (the default): the strict fake (`tests/fake_anthropic`), a bare relay
(`benchmarks/bare_relay.py`) and tars-opt serve (`tars_opt.gateway`, over a fresh database
per row) run on loopback threads of this process, all on the replay's virtual clock, and
every call is made by the real `anthropic` SDK over HTTP: the rows sent unchanged and
one-line through the bare relay, the chain rows through tars-opt serve (whose own summary
calls go straight to the fake, as `serve` sends them). Money is what the fake billed: the
usage on each answer, priced, must equal the gateway's ledger row for it (the run stops
if not); side calls are their own ledger rows. Per call, the wall time and process CPU
besides the fake's own share (`RecordedRequest.seconds` / `cpu_seconds`) are compared
between tars-opt serve and the bare relay: the gateway's overhead targets.

--via inprocess (quicker; the same money to the cent): each call is replayed in-process
against the strict fake API's own code: its request validation
(`tests/fake_anthropic/validate.py`: a request the API would refuse fails the run), its
context editing and its prompt-cache billing (`tokens.PromptCache`: per model,
TTLs, 20-block lookback, minimum cacheable length per model as the config states it). The
answer is always the recorded assistant message, so every strategy replays the same
conversation. The data has no timestamps; a seeded clock gives the gaps (the gap model of
`tars-opt simulate`): a call after tool results comes 2-8 s after the previous call, a call
after a user's text 10-60 s after it; conversations start at random through a working day
(09:00-12:00 and 13:15-17:00 UTC, so the lunch break leaves the shared prefix idle for over
an hour) and interleave. The fake's clock is that clock.

Rows (total over the replay, claude-sonnet-5-5 list prices from the shipped config):
  unmarked      every call sent as recorded, no cache_control
  one-line      top-level `cache_control: {type: ephemeral}` and the system prompt as one text
                block marked `{type: ephemeral, ttl: 1h}` (what any client gets with one edit)
  tars-opt      the whole chain (`Optimizer.ask`) with the shipped defaults, the client
                sending the calls unmarked
  <lever> only  the chain with only that stage on (--levers; always --via inprocess)
  stages off    tars-opt serve with every stage off (--via gateway): the front door's own
                per-call cost, apart from the stages'
  limit         every call reads its conversation's previous call whole (5m writes for the
                rest, no expiry): a floor no cache placement can beat
The A/B holdout (experiment.holdout, 0 in the shipped config; --holdout to set it): held-out
conversations are left out of every row and reported apart.
Side calls the chain makes itself (summaries) are paid like any other call.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import json
import logging
import pstats
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))  # bare_relay, the gateway's bare comparison

from bare_relay import build as build_relay  # noqa: E402

from tars_opt.accounting.pricing import PriceBook  # noqa: E402
from tars_opt.backends import BatchInfo, BatchItem  # noqa: E402
from tars_opt.backends.anthropic import AnthropicBackend  # noqa: E402
from tars_opt.config.loader import EXAMPLE_CONFIG, load_config  # noqa: E402
from tars_opt.config.schema import Config  # noqa: E402
from tars_opt.errors import BackendError  # noqa: E402
from tars_opt.gateway.app import Gateway, build_app  # noqa: E402
from tars_opt.gateway.server import uses_embeddings  # noqa: E402
from tars_opt.gateway.settings import GatewaySettings  # noqa: E402
from tars_opt.pipeline.optimizer import Optimizer  # noqa: E402
from tars_opt.sim.conversations import unique_tool_ids  # noqa: E402
from tars_opt.sim.gaps import DAY, GapModel  # noqa: E402
from tars_opt.sim.simulate import SimClock  # noqa: E402
from tars_opt.store import Database, connect  # noqa: E402
from tars_opt.types import BackendResult, Reply, Request, Usage  # noqa: E402
from tests.fake_anthropic import FakeAnthropic, RecordedRequest  # noqa: E402
from tests.fake_anthropic.context import apply_context_management  # noqa: E402
from tests.fake_anthropic.tokens import (  # noqa: E402
    PromptCache,
    block_tokens,
    count_input_tokens,
    segments,
)
from tests.fake_anthropic.validate import message_params_error  # noqa: E402

CLIENT_MODEL = "claude-sonnet-5-5"
MAX_TOKENS = 1024
SUMMARY_TEXT = (
    "Goal: the user's request so far. Facts: ids, dates and amounts stated. "
    "Decisions: what was agreed. Open: what is left to do. " * 6
)
LEVERS = ("cache", "defer", "prune", "routing", "tools", "prompt_cache")


@dataclass
class Call:
    """One API call of a conversation: the messages sent and the recorded answer."""

    conversation: str
    index: int
    at: float
    system: str
    tools: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    answer: list[dict[str, Any]]

    def identifiers(self) -> set[str]:
        """Tokens of 3+ characters holding a digit (ids, codes, flight numbers, prices)
        that the recorded answer uses and an earlier tool result gave."""
        answer = set(_ids(json.dumps(self.answer, ensure_ascii=False)))
        results = " ".join(
            json.dumps(b.get("content"), ensure_ascii=False)
            for m in self.messages
            for b in m["content"]
            if isinstance(b, dict) and b.get("type") == "tool_result"
        )
        return answer & set(_ids(results))

    def body(self) -> dict[str, Any]:
        return {
            "model": CLIENT_MODEL,
            "max_tokens": MAX_TOKENS,
            "system": self.system,
            "tools": self.tools,
            "messages": self.messages,
        }


def load_calls(data: Path, split: str, limit: int | None, seed: int) -> list[Call]:
    """Every call of the split's conversations, in the order the seeded clock sends them
    (the gap model of `tars-opt simulate`, tars_opt/sim/gaps.py)."""
    path = data / "tau_bench" / "airline_conversations.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    rows = [r for r in rows if split == "all" or r["split"] == split]
    if limit:
        rows = rows[:limit]
    gaps = GapModel(seed, DAY)
    calls: list[Call] = []
    for row in rows:
        messages = unique_tool_ids(row["messages"])
        times = iter(gaps.call_times(messages))
        index = 0
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            calls.append(
                Call(row["id"], index, next(times), row["system"], row["tools"], messages[:i],
                     message["content"])
            )  # fmt: skip
            index += 1
    calls.sort(key=lambda c: (c.at, c.conversation, c.index))
    return calls


_TOKEN = re.compile(r"[A-Za-z0-9_$]+(?:[.:\-][A-Za-z0-9_]+)*")


def _ids(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text) if len(t) >= 3 and any(c.isdigit() for c in t)]


@dataclass
class Bill:
    """What one strategy paid, per conversation and in all."""

    name: str
    cost: float = 0.0
    input_tokens: int = 0  # every prompt token sent (cached or not)
    cache_read: int = 0
    cache_write: int = 0
    calls: int = 0
    side_calls: int = 0
    per_conversation: dict[str, float] = field(default_factory=dict)
    models: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    backend_seconds: float = 0.0
    note: str = ""
    # Clearing checks: prompt tokens sent per conversation, identifiers kept / wanted.
    sent_tokens: dict[str, int] = field(default_factory=dict)
    ids_wanted: int = 0
    ids_kept: int = 0
    cleared_calls: int = 0
    # Through the gateway: per call, the wall time and CPU the front (tars-opt serve or the
    # bare relay) and the SDK took besides the fake's own share; held-out conversations;
    # answers the response cache gave; what the fake billed for the answers it gave.
    added_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    held_out: set[str] = field(default_factory=set)
    note_cache: int = 0
    fake_cost: float = 0.0
    entries: list[tuple[str, str, Usage, float]] = field(default_factory=list)
    warnings: Counter[str] = field(default_factory=Counter)

    def only(self, keep: Callable[[str], bool]) -> Bill:
        """The money and tokens of the conversations `keep` accepts (timings kept whole)."""
        out = Bill(self.name, calls=self.calls, side_calls=self.side_calls, note=self.note)
        out.seconds, out.backend_seconds = self.seconds, self.backend_seconds
        out.ids_wanted, out.ids_kept = self.ids_wanted, self.ids_kept
        out.cleared_calls, out.note_cache, out.fake_cost = (
            self.cleared_calls,
            self.note_cache,
            self.fake_cost,
        )
        out.added_ms, out.cpu_ms, out.held_out = self.added_ms, self.cpu_ms, self.held_out
        out.warnings = self.warnings
        for conversation, model, usage, cost in self.entries:
            if keep(conversation):
                out.add(conversation, model, usage, cost)
        for conversation in self.per_conversation.keys() - out.per_conversation.keys():
            if keep(conversation):  # answered by the response cache only
                out.per_conversation[conversation] = 0.0
        return out

    @property
    def overhead_ms(self) -> float:
        """Mean time the chain spent on a call besides the fake's own work."""
        return (self.seconds - self.backend_seconds) * 1000.0 / max(1, self.calls)

    def add(self, conversation: str, model: str, usage: Usage, cost: float) -> None:
        self.entries.append((conversation, model, usage, cost))
        self.cost += cost
        self.input_tokens += usage.prompt_tokens
        self.cache_read += usage.cache_read
        self.cache_write += usage.cache_write
        self.per_conversation[conversation] = self.per_conversation.get(conversation, 0.0) + cost
        self.models[model] = self.models.get(model, 0) + 1
        self.sent_tokens[conversation] = self.sent_tokens.get(conversation, 0) + usage.prompt_tokens


class ReplayBackend:
    """The fake API's validation, context editing and prompt-cache billing, in-process.

    The main call of each step answers with the recorded message; any other request (a
    summary the chain asks for itself) answers with a fixed summary text.
    """

    name = "fake-inproc"

    def __init__(self, clock: Callable[[], float], prices: PriceBook, config: Config) -> None:
        self.cache = PromptCache(clock=clock)
        self.prices = prices
        self.config = config
        self.current: Call | None = None
        self.bill: Bill | None = None

    def send(self, params: dict[str, Any]) -> BackendResult:
        started = time.perf_counter()
        try:
            return self._send(params)
        finally:
            if self.bill is not None:
                self.bill.backend_seconds += time.perf_counter() - started

    def _send(self, params: dict[str, Any]) -> BackendResult:
        problem = message_params_error(params, need_max_tokens=True, strict=True)
        if problem:
            raise BackendError(f"fake API refused the request: {problem}", kind="invalid_request")
        call = self.current
        assert call is not None and self.bill is not None
        main = _system_text(params.get("system")).startswith(call.system[:200])
        content = call.answer if main else [{"type": "text", "text": SUMMARY_TEXT}]
        billed, _ = apply_context_management(params)
        model = str(params["model"])
        split = self.cache.apply(billed, self.config.prompt_cache.minimum(model))
        usage = Usage(
            input_tokens=split.input_tokens,
            output_tokens=sum(block_tokens(b) for b in content),
            cache_write_5m=split.cache_write_5m,
            cache_write_1h=split.cache_write_1h,
            cache_read=split.cache_read,
        )
        self.bill.add(call.conversation, model, usage, self.prices.cost(usage, model))
        if not main:
            self.bill.side_calls += 1
        else:
            wanted = call.identifiers()
            sent = json.dumps(params, ensure_ascii=False)
            self.bill.ids_wanted += len(wanted)
            self.bill.ids_kept += sum(1 for w in wanted if w in sent)
        uses = any(b.get("type") == "tool_use" for b in content)
        text = "".join(str(b.get("text", "")) for b in content if b.get("type") == "text")
        return BackendResult(
            text=text,
            model=model,
            usage=usage,
            stop_reason="tool_use" if uses else "end_turn",
            content=tuple(content),
            latency_ms=0.0,
        )

    def stream(self, params: dict[str, Any], on_text: Callable[[str], None]) -> BackendResult:
        result = self.send(params)
        on_text(result.text)
        return result

    def count_tokens(self, params: dict[str, Any]) -> int:
        return sum(s.tokens for s in segments(params))

    def submit_batch(self, requests: list[dict[str, Any]]) -> BatchInfo:
        raise BackendError("no batches in this replay", kind="invalid_request")

    def poll_batch(self, batch_id: str) -> BatchInfo:
        raise BackendError("no batches in this replay", kind="invalid_request")

    def batch_results(self, batch_id: str) -> Iterator[BatchItem]:
        raise BackendError("no batches in this replay", kind="invalid_request")

    def cancel_batch(self, batch_id: str) -> BatchInfo:
        raise BackendError("no batches in this replay", kind="invalid_request")

    def list_batches(self, limit: int = 100) -> list[BatchInfo]:
        return []


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "".join(str(b.get("text", "")) for b in system if isinstance(b, dict))
    return ""


def one_line(body: dict[str, Any]) -> dict[str, Any]:
    """The one-line version: automatic caching, and the system prompt cached for an hour."""
    out = dict(body)
    out["cache_control"] = {"type": "ephemeral"}
    out["system"] = [
        {
            "type": "text",
            "text": body["system"],
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    ]
    return out


def replay_direct(name: str, calls: list[Call], config: Config, edit: Callable | None) -> Bill:
    """Send each call straight to the fake (no chain), `edit`ed as a client would."""
    bill = Bill(name)
    clock = SimClock(calls[0].at)
    backend = ReplayBackend(clock, PriceBook(config.pricing), config)
    backend.bill = bill
    started = time.perf_counter()
    for call in calls:
        clock.set(call.at)
        backend.current = call
        body = call.body()
        backend.send(edit(body) if edit else body)
        bill.calls += 1
    bill.seconds = time.perf_counter() - started
    return bill


def replay_chain(name: str, calls: list[Call], config: Config) -> Bill:
    """Send each call through `Optimizer.ask` with `config`; the client sends it unmarked."""
    bill = Bill(name)
    clock = SimClock(calls[0].at)
    backend = ReplayBackend(clock, PriceBook(config.pricing), config)
    backend.bill = bill
    answered_from_cache = 0
    with counted_warnings(bill), tempfile.TemporaryDirectory(prefix="tars-opt-loops-") as tmp:
        db = connect(Path(tmp) / "replay.db")
        try:
            optimizer = Optimizer(config, db, backend=backend, clock=clock)
            started = time.perf_counter()
            for n, call in enumerate(calls):
                clock.set(call.at)
                backend.current = call
                request = Request.from_body(call.body(), request_id=f"r{n:05d}")
                reply: Reply = optimizer.ask(request)
                if any(d.stage == "prune" and d.action == "cleared" for d in reply.decisions):
                    bill.cleared_calls += 1
                if reply.source != "api":
                    answered_from_cache += 1
                    bill.per_conversation.setdefault(call.conversation, 0.0)
                bill.calls += 1
            bill.seconds = time.perf_counter() - started
        finally:
            db.close()
    if answered_from_cache:
        bill.note = f"{answered_from_cache} answered by the response cache"
    return bill


class Loopback:
    """The strict fake API, a bare relay and tars-opt serve on loopback threads of this
    process, every call made by the real `anthropic` SDK over HTTP, on the replay's clock.

    The fake answers each main call with its recorded assistant message and a summary the
    chain asks for itself with SUMMARY_TEXT; it bills prompt caching on the replay's clock
    with the config's minimum cacheable length per model.
    """

    def __init__(self, config: Config) -> None:
        self.fake = FakeAnthropic(clock=SimClock(0.0))
        self.fake.min_cacheable_tokens = config.prompt_cache.min_tokens.get("default", 4096)
        models = {CLIENT_MODEL, config.models.baseline, *config.models.tiers.values()}
        self.fake.min_cacheable_by_model = {m: config.prompt_cache.minimum(m) for m in models}
        self.fake.responder = self._answer
        self.prices = PriceBook(config.pricing)
        self.config = config
        self.current: Call | None = None

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        call = self.current
        assert call is not None
        if _system_text(body.get("system")).startswith(call.system[:200]):
            return {"content": call.answer}
        return {"text": SUMMARY_TEXT}

    def __enter__(self) -> Loopback:
        if uses_embeddings(self.config):  # loaded before any call is timed
            from tars_opt.embeddings.model import get_embedder

            get_embedder()
        self.fake.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.fake.stop()

    def replay(
        self,
        name: str,
        calls: list[Call],
        config: Config | None,
        edit: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> Bill:
        """Send every call through tars-opt serve (with `config`) or, with None, through
        the bare relay (`edit`ed as a client would); bill what the fake billed."""
        clock = SimClock(calls[0].at)
        self.fake.clock = clock
        self.fake.reset()
        bill = Bill(name)
        with counted_warnings(bill):
            self._replay(bill, clock, calls, config, edit)
        return bill

    def _replay(
        self,
        bill: Bill,
        clock: SimClock,
        calls: list[Call],
        config: Config | None,
        edit: Callable[[dict[str, Any]], dict[str, Any]] | None,
    ) -> None:
        import anthropic  # lazy: 1.6 s

        with (
            tempfile.TemporaryDirectory(prefix="tars-opt-loops-") as tmp,
            _front(self.fake.url, config, clock, Path(tmp)) as front,
        ):
            client = anthropic.Anthropic(
                base_url=front.url, api_key="sk-replay", max_retries=0, timeout=120.0
            )
            started = time.perf_counter()
            for call in calls:
                clock.set(call.at)
                self.current = call
                body = edit(call.body()) if edit else call.body()
                seen = len(self.fake.requests)
                cpu, wall = time.process_time(), time.perf_counter()
                raw = client.messages.with_raw_response.create(**body)
                elapsed = time.perf_counter() - wall
                front.settle()  # ledger rows and the stages' after-hooks, as between turns
                cpu = time.process_time() - cpu
                sent = self.fake.requests[seen:]
                spent = [r.spent() for r in sent]
                bill.added_ms.append((elapsed - sum(s for s, _ in spent)) * 1e3)
                bill.cpu_ms.append((cpu - sum(c for _, c in spent)) * 1e3)
                bill.calls += 1
                self._bill_call(bill, call, raw, sent, front)
            bill.seconds = time.perf_counter() - started
            client.close()
            front.check(bill)

    def _bill_call(
        self,
        bill: Bill,
        call: Call,
        raw: Any,
        sent: list[RecordedRequest],
        front: _Front,
    ) -> None:
        message = json.loads(raw.http_response.content)
        source = raw.headers.get("x-tars-opt-source", "api")
        mains = [
            r
            for r in sent
            if r.path == "/v1/messages"
            and _system_text(r.body.get("system")).startswith(call.system[:200])
        ]
        for request in mains:  # what reached the API still holds the identifiers
            wanted = call.identifiers()
            text = json.dumps(request.body, ensure_ascii=False)
            bill.ids_wanted += len(wanted)
            bill.ids_kept += sum(1 for w in wanted if w in text)
        if front.ledger is None:
            usage = _usage(message["usage"])
            model = message["model"]
            bill.add(call.conversation, model, usage, self.prices.cost(usage, model))
            return
        answer_id = raw.headers.get("x-tars-opt-request-id")
        for row in front.rows():
            usage = Usage.from_row(row)
            bill.add(call.conversation, row["model"], usage, row["cost"])
            decisions = json.loads(row["decisions"])
            if any(
                d.get("stage") == "experiment" and d.get("action") == "holdout" for d in decisions
            ):
                bill.held_out.add(call.conversation)
            if any(d.get("stage") == "prune" and d.get("action") == "cleared" for d in decisions):
                bill.cleared_calls += 1
            if row["request_id"] != answer_id:
                bill.side_calls += 1
                continue
            if row["source"] != "api":
                bill.note_cache += 1
                continue
            # Money read twice: the usage the fake put on the answer, priced here, and the
            # gateway's ledger row; they must agree.
            billed = _usage(message["usage"])
            fake_cost = self.prices.cost(billed, message["model"])
            if billed != usage or abs(fake_cost - row["cost"]) > 1e-12:
                raise SystemExit(
                    f"{bill.name}: the ledger row of {answer_id} ({usage}, ${row['cost']:.9f}) "
                    f"differs from what the fake billed ({billed}, ${fake_cost:.9f})"
                )
            bill.fake_cost += fake_cost
        if source == "api" and not mains:
            raise SystemExit(f"{bill.name}: {answer_id} was answered but never reached the fake")


def _usage(api: dict[str, Any]) -> Usage:
    """The API's usage object in tars-opt's buckets (writes without a TTL split are 5m)."""
    split = api.get("cache_creation") or {}
    write = int(api.get("cache_creation_input_tokens") or 0)
    write_1h = int(split.get("ephemeral_1h_input_tokens") or 0)
    return Usage(
        input_tokens=int(api["input_tokens"]),
        output_tokens=int(api["output_tokens"]),
        cache_write_5m=write - write_1h,
        cache_write_1h=write_1h,
        cache_read=int(api.get("cache_read_input_tokens") or 0),
    )


@contextlib.contextmanager
def counted_warnings(bill: Bill) -> Iterator[None]:
    """tars-opt's warnings while the block runs, counted into `bill.warnings`."""
    warnings = _Warnings()
    logging.getLogger("tars_opt").addHandler(warnings)
    try:
        yield
    finally:
        logging.getLogger("tars_opt").removeHandler(warnings)
        bill.warnings = warnings.counts


class _Warnings(logging.Handler):
    """Counts tars-opt's warnings during a replay (e.g. a marked prefix the API neither
    wrote nor read), so they show in the table instead of scrolling past on stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.getMessage()] += 1


@dataclass
class _Front:
    """What the SDK talks to: tars-opt serve (with its ledger) or the bare relay."""

    url: str
    gateway: Gateway | None = None
    ledger: Database | None = None
    last_row: int = 0

    def settle(self) -> None:
        if self.gateway is not None and not self.gateway.recorder.flush(60.0):
            raise SystemExit("the gateway's ledger writes did not finish in 60 s")

    def rows(self) -> list[dict[str, Any]]:
        """Ledger rows written since the last call (the answer's, side calls')."""
        assert self.ledger is not None
        rows = list(
            self.ledger.query("SELECT * FROM calls WHERE id > ? ORDER BY id", (self.last_row,))
        )
        if rows:
            self.last_row = int(rows[-1]["id"])
        return rows

    def check(self, bill: Bill) -> None:
        if self.gateway is not None and self.gateway.metrics.fail_open:
            raise SystemExit(
                f"{bill.name}: {self.gateway.metrics.fail_open} requests went unoptimized "
                "(fail-open): the replay would not measure tars-opt"
            )


@contextlib.contextmanager
def _front(upstream: str, config: Config | None, clock: SimClock, tmp: Path) -> Iterator[_Front]:
    """tars-opt serve over a fresh database (optimizer and side calls on `clock`), or the
    bare relay when `config` is None, served by uvicorn on a loopback thread."""
    if config is None:
        with _uvicorn(build_relay(upstream)) as url:
            yield _Front(url)
        return
    db = connect(tmp / "replay.db")
    try:
        # Side calls (summaries) go straight to the API, as `tars-opt serve` sends them.
        side = AnthropicBackend("sk-replay", base_url=upstream, max_retries=0)
        optimizer = Optimizer(config, db, backend=side, clock=clock)
        settings = GatewaySettings(upstream=upstream, port=0, optimizer_timeout_s=60.0)
        gateway = Gateway(optimizer, settings)
        with _uvicorn(build_app(gateway)) as url:
            yield _Front(url, gateway, db)
    finally:
        db.close()


@contextlib.contextmanager
def _uvicorn(app: Any) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 at a free port from a thread; yield its URL."""
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SystemExit("a loopback server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def limit_bill(calls: list[Call], config: Config) -> Bill:
    """Every call reads the longest prefix any earlier call sent whole (its conversation's
    previous call, or the shared tools + system), writes the rest at the 5m rate."""
    bill = Bill("limit")
    prices = PriceBook(config.pricing)
    seen: set[str] = set()
    for call in calls:
        body = call.body()
        segs = segments(body)
        running = hashlib.sha256(CLIENT_MODEL.encode())
        acc, read, hashes, cumulative = 0, 0, [], []
        for seg in segs:
            running.update(seg.key.encode() + b"\x00")
            acc += seg.tokens
            hashes.append(running.hexdigest())
            cumulative.append(acc)
        for h, n in zip(hashes, cumulative, strict=True):
            if h in seen:
                read = n
        system_end = len(call.tools)  # the system prompt is one segment after the tools
        seen.update({hashes[-1], hashes[system_end]})
        usage = Usage(
            input_tokens=0,
            output_tokens=sum(block_tokens(b) for b in call.answer),
            cache_read=read,
            cache_write_5m=acc - read,
        )
        bill.add(call.conversation, CLIENT_MODEL, usage, prices.cost(usage, CLIENT_MODEL))
        bill.calls += 1
    return bill


def lever_config(
    base: dict[str, Any], only: str | tuple[str, ...] | None, **changes: dict[str, Any]
) -> Config:
    """The shipped config; with `only`, every stage off but that one (or those); `changes`
    update sections (e.g. routing={"tool_conversations": True})."""
    data = json.loads(json.dumps(base))
    data["backend"] = "offline"
    if only is not None:
        keep = {only} if isinstance(only, str) else set(only)
        for lever in LEVERS:
            data[lever]["enabled"] = lever in keep
    for section, values in changes.items():
        for key, value in values.items():
            if isinstance(value, dict):
                data[section][key] = {**data[section][key], **value}
            else:
                data[section][key] = value
    return Config.model_validate(data)


# Clearing thresholds lowered so clearing acts on these conversations (3.6K-9.8K tokens
# per call). Candidates tried on the CALIBRATION split by --tune-clearing; the one kept
# is the cheapest that keeps >= 99% of the identifiers and cuts >= 10% of the input
# tokens of the conversations past the trigger.
# keep_tool_uses is at least 1: with 0 the result the model is about to read is itself
# cleared (the identifier check would not notice; the answer would).
CLEARING_GRID = [
    {"trigger_tokens": t, "clear_at_least_tokens": a, "keep_tool_uses": 1, "clear_tool_inputs": i}
    for t in (5000, 6000, 7000)
    for a in (0, 500, 1500)
    for i in (False, True)
]
# Chosen on calibration by --tune-clearing (the shorter placeholder): cut 10.3% of the
# input tokens of the 14 conversations past the trigger, identifiers 100% kept, cost +1.0%.
# At 5000 (59 conversations) the best cut was 8.9% (+26.8%), at 6000 (27) 10.8% (+18.1%)
# or 10.3% (+4.2%); keep 0 (the result being answered cleared too) was not tried.
CLEARING_LOWERED = {
    "trigger_tokens": 7000,
    "clear_at_least_tokens": 1500,
    "keep_tool_uses": 1,
    "clear_tool_inputs": True,
}
CLEARING_TARGET_CUT, CLEARING_TARGET_IDS = 0.10, 0.99


def past_trigger(calls: list[Call], trigger: int) -> set[str]:
    """Conversations with a call over `trigger` tokens (as the fake counts them)."""
    return {c.conversation for c in calls if count_input_tokens(c.body()) > trigger}


def clearing_figures(with_: Bill, without: Bill, convs: set[str]) -> dict[str, float]:
    """Input tokens cut in the conversations past the trigger, and identifiers kept."""
    before = sum(without.sent_tokens.get(c, 0) for c in convs)
    after = sum(with_.sent_tokens.get(c, 0) for c in convs)
    return {
        "conversations": len(convs),
        "input_cut": 1 - after / max(1, before),
        "ids_kept": with_.ids_kept / max(1, with_.ids_wanted),
        "ids_wanted": with_.ids_wanted,
        "cost_change": with_.cost / max(1e-9, without.cost) - 1,
    }


def tune_clearing(data: Path, seed: int, base: dict[str, Any]) -> None:
    """Try CLEARING_GRID on the calibration split: the whole chain, against the shipped
    clearing (which these conversations never trigger); name the cheapest candidate that
    cuts >= 10% of the input tokens past its trigger and keeps >= 99% of the identifiers."""
    calls = load_calls(data, "calibration", None, seed)
    without = replay_chain("tars-opt", calls, lever_config(base, None))
    print(f"calibration: {len(calls)} calls; tars-opt (shipped clearing) ${without.cost:.3f}")
    passing: list[tuple[float, dict[str, Any]]] = []
    for grid in CLEARING_GRID:
        config = lever_config(base, None, prune={"clear_tool_results": grid})
        bill = replay_chain("clearing", calls, config)
        f = clearing_figures(bill, without, past_trigger(calls, grid["trigger_tokens"]))
        print(
            f"  {grid}: cost {f['cost_change']:+.1%}, input cut {f['input_cut']:.1%} in "
            f"{f['conversations']} conversations, identifiers kept {f['ids_kept']:.2%}"
        )
        if f["input_cut"] >= CLEARING_TARGET_CUT and f["ids_kept"] >= CLEARING_TARGET_IDS:
            passing.append((f["cost_change"], grid))
    if passing:
        print(f"cheapest meeting both targets: {min(passing, key=lambda p: p[0])[1]}")
    else:
        print("no candidate meets both targets")


def distribution(a: Bill, b: Bill) -> dict[str, float]:
    """Per conversation: b's cost minus a's (negative: b is cheaper)."""
    diffs = sorted(b.per_conversation.get(k, 0.0) - v for k, v in a.per_conversation.items())
    if not diffs:
        return {}

    def q(p: float) -> float:
        return diffs[min(len(diffs) - 1, int(p * len(diffs)))]

    return {
        "min": diffs[0],
        "p10": q(0.1),
        "median": q(0.5),
        "p90": q(0.9),
        "max": diffs[-1],
        "worse": sum(1 for d in diffs if d > 1e-9),
        "conversations": len(diffs),
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else 0.0


# The gateway's targets over a bare relay (docs/gateway.md): added latency p50 / p95, CPU.
TARGET_P50_MS, TARGET_P95_MS, TARGET_CPU_MS = 1.5, 5.0, 1.5


def overhead_lines(bills: dict[str, Bill]) -> list[str]:
    """Per call, what the front and the SDK took besides the fake: tars-opt serve against
    the bare relay (the rows sent unchanged and one-line go through it)."""
    relay = [b for n, b in bills.items() if n in ("unmarked", "one-line") and b.added_ms]
    if not relay:
        return []
    wall = [ms for b in relay for ms in b.added_ms]
    cpu = [ms for b in relay for ms in b.cpu_ms]
    r50, r95, rcpu = percentile(wall, 0.5), percentile(wall, 0.95), sum(cpu) / len(cpu)
    lines = [
        "",
        "Per call, besides the fake's own time (SDK client + front, loopback HTTP), ms:",
        f"| {'front':<27}| {'p50':>6} | {'p95':>6} | {'CPU':>6} | {'+p50':>6} | {'+p95':>6} "
        f"| {'+CPU':>6} |",
        f"|{'-' * 28}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 8}|",
        f"| {'bare relay':<27}| {r50:>6.2f} | {r95:>6.2f} | {rcpu:>6.2f} |        |        "
        "|        |",
    ]
    for name, b in bills.items():
        if name in ("unmarked", "one-line") or not b.added_ms:
            continue
        p50, p95 = percentile(b.added_ms, 0.5), percentile(b.added_ms, 0.95)
        mean_cpu = sum(b.cpu_ms) / len(b.cpu_ms)
        lines.append(
            f"| {name:<27}| {p50:>6.2f} | {p95:>6.2f} | {mean_cpu:>6.2f} | {p50 - r50:>+6.2f} "
            f"| {p95 - r95:>+6.2f} | {mean_cpu - rcpu:>+6.2f} |"
        )
    lines.append(
        f"targets over the bare relay: +{TARGET_P50_MS} ms p50, +{TARGET_P95_MS} ms p95, "
        f"+{TARGET_CPU_MS} ms CPU"
    )
    return lines


def profiled(run: Callable[[], Bill], top: int) -> Bill:
    """`run` under cProfile on this thread and every thread it starts (the gateway's event
    loop, its stage workers and ledger writer); prints tars-opt's functions by cumulative
    time. The profiler slows the calls ~3x: read the shares, not the milliseconds."""
    profiles: list[cProfile.Profile] = []

    def start(frame: Any, event: str, arg: Any) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()  # replaces this hook on the new thread

    here = cProfile.Profile()
    threading.setprofile(start)
    here.enable()
    try:
        bill = run()
    finally:
        here.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
    stats = pstats.Stats(here)
    for profile in profiles:
        with contextlib.suppress(TypeError):  # a thread that profiled nothing
            stats.add(profile)
    print(f"\nprofile of {bill.name} ({bill.calls} calls), tars-opt's functions:")
    stats.sort_stats("cumulative").print_stats("tars_opt/", top)
    return bill


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument(
        "--split", default="evaluation", choices=["evaluation", "calibration", "all"]
    )
    parser.add_argument("--limit", type=int, default=None, help="first N conversations only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--via",
        default="gateway",
        choices=["gateway", "inprocess"],
        help="gateway: the real SDK over loopback HTTP to tars-opt serve and the fake "
        "(default); inprocess: Optimizer.ask on the fake's code, quicker",
    )
    parser.add_argument("--only", default=None, help="comma-separated rows to run")
    parser.add_argument(
        "--levers", action="store_true", help="also the <lever> only rows (default: inprocess)"
    )
    parser.add_argument(
        "--holdout", type=float, default=None, help="experiment.holdout (default: shipped)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="profile the tars-opt row, print its top N functions",
    )
    parser.add_argument(
        "--tune-clearing", action="store_true", help="try clearing thresholds on calibration"
    )
    args = parser.parse_args(argv)

    path = args.data / "tau_bench" / "airline_conversations.jsonl"
    if not path.is_file():
        print(f"no tau_bench data at {path}: pass --data DIR (the shared data folder)")
        return 2
    base = load_config(EXAMPLE_CONFIG, environ={}).config.model_dump(mode="json")
    if args.holdout is not None:
        base["experiment"]["holdout"] = args.holdout
    if args.tune_clearing:
        tune_clearing(args.data, args.seed, base)
        return 0
    calls = load_calls(args.data, args.split, args.limit, args.seed)
    config = lever_config(base, None)
    with contextlib.ExitStack() as stack:
        direct: Callable[[str, Callable | None], Bill]
        chain: Callable[[str, Config], Bill]
        if args.via == "gateway":
            loop = stack.enter_context(Loopback(config))
            direct = lambda name, edit: loop.replay(name, calls, None, edit)  # noqa: E731
            chain = lambda name, cfg: loop.replay(name, calls, cfg)  # noqa: E731
        else:
            direct = lambda name, edit: replay_direct(name, calls, config, edit)  # noqa: E731
            chain = lambda name, cfg: replay_chain(name, calls, cfg)  # noqa: E731
        rows: dict[str, Callable[[], Bill]] = {
            "unmarked": lambda: direct("unmarked", None),
            "one-line": lambda: direct("one-line", one_line),
            "tars-opt": lambda: chain("tars-opt", config),
        }
        if args.via == "gateway":  # the front door's own cost, apart from the stages'
            rows["stages off"] = lambda: chain("stages off", lever_config(base, ()))
        if args.profile:
            rows["tars-opt"] = lambda: profiled(lambda: chain("tars-opt", config), args.profile)
        if args.levers or args.via == "inprocess" or args.only:
            for lever in LEVERS:
                rows[f"{lever} only"] = lambda lever=lever: chain(
                    f"{lever} only", lever_config(base, lever)
                )
        rows["tars-opt+tool-routing"] = lambda: chain(
            "tars-opt+tool-routing", lever_config(base, None, routing={"tool_conversations": True})
        )
        rows["tars-opt+clearing-lowered"] = lambda: chain(
            "tars-opt+clearing-lowered",
            lever_config(base, None, prune={"clear_tool_results": CLEARING_LOWERED}),
        )
        rows["limit"] = lambda: limit_bill(calls, config)
        wanted = set(args.only.split(",")) if args.only else None
        bills: dict[str, Bill] = {}
        for name, run in rows.items():
            if wanted is None or name in wanted or name in ("unmarked", "one-line"):
                bills[name] = run()
                print(f"  ran {name} ({bills[name].seconds:.1f} s)", file=sys.stderr)
    report(args, calls, bills)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    name: {
                        "cost": b.cost,
                        "input_tokens": b.input_tokens,
                        "cache_read": b.cache_read,
                        "cache_write": b.cache_write,
                        "models": b.models,
                        "side_calls": b.side_calls,
                        "held_out_conversations": sorted(b.held_out),
                        "added_ms_p50": percentile(b.added_ms, 0.5),
                        "added_ms_p95": percentile(b.added_ms, 0.95),
                        "cpu_ms_mean": sum(b.cpu_ms) / max(1, len(b.cpu_ms)),
                        "note": b.note,
                    }
                    for name, b in bills.items()
                },
                indent=2,
            )
        )
    return 0


def report(args: argparse.Namespace, calls: list[Call], bills: dict[str, Bill]) -> None:
    """The table (held-out conversations apart), the distribution, clearing, overhead."""
    held = set().union(*(b.held_out for b in bills.values()))
    everything = bills
    if held:
        bills = {n: b.only(lambda c: c not in held) for n, b in bills.items()}
    conversations = len({c.conversation for c in calls})
    how = (
        "the real SDK -> tars-opt serve (or a bare relay) -> the strict fake, over loopback HTTP"
        if args.via == "gateway"
        else "in-process, on the strict fake's code"
    )
    print(
        f"tau_bench airline, {args.split} split: {conversations} conversations, {len(calls)} "
        f"calls; seed {args.seed}; client model {CLIENT_MODEL}; {how}"
    )
    print(
        f"A/B holdout: {len(held)} conversations held out"
        + (", excluded from every row below and reported after it" if held else "")
    )
    unmarked, line = bills["unmarked"].cost, bills["one-line"].cost
    print(f"| {'strategy':<27}| {'cost':>8} | {'vs unmarked':>11} | {'vs one-line':>11} "
          f"| {'read':>5} | {'written':>7} | notes")  # fmt: skip
    print(f"|{'-' * 28}|{'-' * 10}|{'-' * 13}|{'-' * 13}|{'-' * 7}|{'-' * 9}|------")
    for bill in bills.values():
        notes = [bill.note] if bill.note else []
        if bill.note_cache:
            notes.append(f"{bill.note_cache} answered by the response cache")
        if "tool-routing" in bill.name:
            down = sum(n for m, n in bill.models.items() if m != CLIENT_MODEL)
            notes.append(
                f"cost only: quality not measured; {down / max(1, bill.calls):.0%} of calls "
                "routed down"
            )
        if bill.side_calls:
            notes.append(f"{bill.side_calls} calls the chain made itself (summaries, escalations)")
        if bill.cleared_calls:
            notes.append(f"{bill.cleared_calls} calls cleared")
        notes += [f"{n} x {message!r} logged" for message, n in bill.warnings.items()]
        if bill.name not in ("unmarked", "one-line", "limit") and args.via == "inprocess":
            notes.append(f"chain {bill.overhead_ms:.1f} ms/call")
        print(
            f"| {bill.name:<27}| {'$' + format(bill.cost, '.3f'):>8} "
            f"| {(bill.cost / unmarked - 1) * 100:>10.1f}% "
            f"| {(bill.cost / line - 1) * 100:>10.1f}% "
            f"| {bill.cache_read / max(1, bill.input_tokens):>5.0%} "
            f"| {bill.cache_write / max(1, bill.input_tokens):>7.0%} | {'; '.join(notes)}"
        )
    if held and "tars-opt" in everything:
        arm = everything["tars-opt"].only(lambda c: c in held)
        ref = everything["one-line"].only(lambda c: c in held)
        print(
            f"held out ({len(held)} conversations, sent unoptimized by tars-opt): "
            f"${arm.cost:.3f}; the same conversations one-line ${ref.cost:.3f}"
        )
    if "tars-opt" in bills:
        d = distribution(bills["one-line"], bills["tars-opt"])
        print(
            "\ntars-opt minus one-line, per conversation (USD): "
            + ", ".join(
                f"{k} {v:+.6f}" if isinstance(v, float) else f"{k} {v}" for k, v in d.items()
            )
        )
    lowered = bills.get("tars-opt+clearing-lowered")
    if lowered is not None and "tars-opt" in bills:
        convs = past_trigger(calls, CLEARING_LOWERED["trigger_tokens"]) - held
        f = clearing_figures(lowered, bills["tars-opt"], convs)
        print(
            f"clearing lowered to {CLEARING_LOWERED}: {f['conversations']} conversations past "
            f"the trigger, their input tokens cut {f['input_cut']:.1%}; identifiers kept "
            f"{f['ids_kept']:.2%} of {f['ids_wanted']}; total cost {f['cost_change']:+.1%} "
            "against tars-opt"
        )
    for text in overhead_lines(everything):
        print(text)


if __name__ == "__main__":
    raise SystemExit(main())
