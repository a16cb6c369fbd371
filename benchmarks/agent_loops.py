"""Agent loops: what prompt caching, clearing and routing save on real tool-calling traffic.

    python benchmarks/agent_loops.py [--data ../shared/data] [--split evaluation]
        [--limit N] [--seed 0] [--only NAME,...] [--json FILE]

Workload: tau_bench/airline_conversations.jsonl (a gpt-4o airline agent, 200 conversations,
2,454 calls; every assistant message is one API call whose request is system + tools + the
messages before it). Thresholds are tuned on the CALIBRATION split; figures are reported on
the EVALUATION split (the default).

Each call is replayed in-process against the strict fake API's own code: its request
validation (`tests/fake_anthropic/validate.py`: a request the API would refuse fails the
run), its context editing and its prompt-cache billing (`tokens.PromptCache`: per model,
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
  <lever> only  the chain with only that stage on
  limit         every call reads its conversation's previous call whole (5m writes for the
                rest, no expiry): a floor no cache placement can beat
Side calls the chain makes itself (summaries) are paid like any other call.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tars_opt.accounting.pricing import PriceBook  # noqa: E402
from tars_opt.backends import BatchInfo, BatchItem  # noqa: E402
from tars_opt.config.loader import EXAMPLE_CONFIG, load_config  # noqa: E402
from tars_opt.config.schema import Config  # noqa: E402
from tars_opt.errors import BackendError  # noqa: E402
from tars_opt.pipeline.optimizer import Optimizer  # noqa: E402
from tars_opt.sim.conversations import unique_tool_ids  # noqa: E402
from tars_opt.sim.gaps import DAY, GapModel  # noqa: E402
from tars_opt.sim.simulate import SimClock  # noqa: E402
from tars_opt.store import connect  # noqa: E402
from tars_opt.types import BackendResult, Reply, Request, Usage  # noqa: E402
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

    @property
    def overhead_ms(self) -> float:
        """Mean time the chain spent on a call besides the fake's own work."""
        return (self.seconds - self.backend_seconds) * 1000.0 / max(1, self.calls)

    def add(self, conversation: str, model: str, usage: Usage, cost: float) -> None:
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
    with tempfile.TemporaryDirectory(prefix="tars-opt-loops-") as tmp:
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
CLEARING_GRID = [
    {"trigger_tokens": t, "clear_at_least_tokens": a, "keep_tool_uses": k}
    for t in (4000, 5000)
    for a in (500, 1500)
    for k in (1, 2)
]
# Chosen on calibration (cut 6.5% of the input of the 59 conversations past the trigger,
# identifiers 100% kept, cost +1.5%: the largest cut of the candidates tried).
CLEARING_LOWERED = {"trigger_tokens": 5000, "clear_at_least_tokens": 500, "keep_tool_uses": 1}


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
    """Try CLEARING_GRID on the calibration split (prune and prompt_cache stages only)."""
    calls = load_calls(data, "calibration", None, seed)
    levers = ("prune", "prompt_cache")
    without = replay_chain("no clearing", calls, lever_config(base, "prompt_cache"))
    print(f"calibration: {len(calls)} calls; without clearing ${without.cost:.3f}")
    for grid in CLEARING_GRID:
        config = lever_config(base, levers, prune={"clear_tool_results": grid})
        bill = replay_chain("clearing", calls, config)
        f = clearing_figures(bill, without, past_trigger(calls, grid["trigger_tokens"]))
        print(
            f"  {grid}: cost {f['cost_change']:+.1%}, input cut {f['input_cut']:.1%} in "
            f"{f['conversations']} conversations, identifiers kept {f['ids_kept']:.2%}"
        )


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument(
        "--split", default="evaluation", choices=["evaluation", "calibration", "all"]
    )
    parser.add_argument("--limit", type=int, default=None, help="first N conversations only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default=None, help="comma-separated rows to run")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument(
        "--tune-clearing", action="store_true", help="try clearing thresholds on calibration"
    )
    args = parser.parse_args(argv)

    path = args.data / "tau_bench" / "airline_conversations.jsonl"
    if not path.is_file():
        print(f"no tau_bench data at {path}: pass --data DIR (the shared data folder)")
        return 2
    base = load_config(EXAMPLE_CONFIG, environ={}).config.model_dump(mode="json")
    if args.tune_clearing:
        tune_clearing(args.data, args.seed, base)
        return 0
    calls = load_calls(args.data, args.split, args.limit, args.seed)
    config = lever_config(base, None)
    rows: dict[str, Callable[[], Bill]] = {
        "unmarked": lambda: replay_direct("unmarked", calls, config, None),
        "one-line": lambda: replay_direct("one-line", calls, config, one_line),
        "tars-opt": lambda: replay_chain("tars-opt", calls, config),
    }
    for lever in LEVERS:
        rows[f"{lever} only"] = lambda lever=lever: replay_chain(
            f"{lever} only", calls, lever_config(base, lever)
        )
    rows["tars-opt+tool-routing"] = lambda: replay_chain(
        "tars-opt+tool-routing",
        calls,
        lever_config(base, None, routing={"tool_conversations": True}),
    )
    rows["tars-opt+clearing-lowered"] = lambda: replay_chain(
        "tars-opt+clearing-lowered",
        calls,
        lever_config(base, None, prune={"clear_tool_results": CLEARING_LOWERED}),
    )
    rows["limit"] = lambda: limit_bill(calls, config)
    wanted = set(args.only.split(",")) if args.only else None
    bills: dict[str, Bill] = {}
    for name, run in rows.items():
        if wanted is None or name in wanted or name in ("unmarked", "one-line"):
            bills[name] = run()
            print(f"  ran {name} ({bills[name].seconds:.1f} s)", file=sys.stderr)
    conversations = len({c.conversation for c in calls})
    print(
        f"tau_bench airline, {args.split} split: {conversations} conversations, {len(calls)} "
        f"calls; seed {args.seed}; client model {CLIENT_MODEL}"
    )
    unmarked, line = bills["unmarked"].cost, bills["one-line"].cost
    print(f"| {'strategy':<27}| {'cost':>8} | {'vs unmarked':>11} | {'vs one-line':>11} "
          f"| {'read':>5} | {'written':>7} | notes")  # fmt: skip
    print(f"|{'-' * 28}|{'-' * 10}|{'-' * 13}|{'-' * 13}|{'-' * 7}|{'-' * 9}|------")
    for bill in bills.values():
        notes = [bill.note] if bill.note else []
        if "tool-routing" in bill.name:
            down = sum(n for m, n in bill.models.items() if m != CLIENT_MODEL)
            notes.append(
                f"cost only: quality not measured; {down / max(1, bill.calls):.0%} of calls "
                "routed down"
            )
        if bill.side_calls:
            notes.append(f"{bill.side_calls} summary calls")
        if bill.cleared_calls:
            notes.append(f"{bill.cleared_calls} calls cleared")
        if bill.name not in ("unmarked", "one-line", "limit"):
            notes.append(f"chain {bill.overhead_ms:.1f} ms/call")
        print(
            f"| {bill.name:<27}| {'$' + format(bill.cost, '.3f'):>8} "
            f"| {(bill.cost / unmarked - 1) * 100:>10.1f}% "
            f"| {(bill.cost / line - 1) * 100:>10.1f}% "
            f"| {bill.cache_read / max(1, bill.input_tokens):>5.0%} "
            f"| {bill.cache_write / max(1, bill.input_tokens):>7.0%} | {'; '.join(notes)}"
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
        convs = past_trigger(calls, CLEARING_LOWERED["trigger_tokens"])
        f = clearing_figures(lowered, bills["tars-opt"], convs)
        print(
            f"clearing lowered to {CLEARING_LOWERED}: {f['conversations']} conversations past "
            f"the trigger, their input tokens cut {f['input_cut']:.1%}; identifiers kept "
            f"{f['ids_kept']:.2%} of {f['ids_wanted']}; total cost {f['cost_change']:+.1%} "
            "against tars-opt"
        )
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
                        "note": b.note,
                    }
                    for name, b in bills.items()
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
