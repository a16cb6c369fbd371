"""The Optimizer: stages, ledger rows for every answer, failures, and the offline backend."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tars_opt import BackendError, Decision, Reply, Request, open_app
from tars_opt.accounting.ledger import Periods
from tars_opt.backends.offline import OfflineBackend
from tars_opt.pipeline.classify import guess_query_type
from tars_opt.types import BackendResult, Usage


class PinTier:
    """A test stage that sends everything to the cheap tier."""

    name = "route"
    chooses_model = True  # a model the caller pinned skips it

    def apply(self, request: Request) -> tuple[Request, Decision]:
        return replace(request, tier="cheap", model="claude-haiku-5-5"), Decision(
            "route", "cheap", "test stage"
        )


class Answers:
    """A test stage that answers every request itself, as a cache hit would."""

    name = "cache"

    def apply(self, request: Request) -> Reply:
        return Reply(
            text="stored",
            model="claude-haiku-5-5",
            source="cache",
            request_id=request.request_id,
            baseline_cost=0.01,
            saved_by_strategy={"response_cache": 0.01},
            decisions=[Decision("cache", "hit", "exact")],
        )


class FailingBackend(OfflineBackend):
    def send(self, params: dict) -> BackendResult:
        raise BackendError(
            "API error 529 overloaded_error: busy", kind="overloaded_error", status=529
        )


def test_stage_decisions_reach_the_reply_and_the_ledger(home: Path) -> None:
    app = open_app(backend="offline")
    opt = app.optimizer()
    opt.stages = [PinTier()]
    reply = opt.ask(Request.from_prompt("Capital of Peru?"))
    assert reply.model == "claude-haiku-5-5"
    assert [d.stage for d in reply.decisions] == ["classify", "route"]
    row = app.ledger.get(reply.request_id)
    assert row["tier"] == "cheap" and row["decisions"][1]["reason"] == "test stage"


def test_forced_model_skips_routing(home: Path) -> None:
    opt = open_app(backend="offline").optimizer()
    opt.stages = [PinTier()]
    reply = opt.ask(Request.from_prompt("hi", model="claude-opus-5-5"))
    assert reply.model == "claude-opus-5-5"
    assert any(d.action == "forced" for d in reply.decisions)


def test_a_stage_answer_is_recorded_and_needs_no_backend(home: Path) -> None:
    app = open_app()  # backend anthropic, no key: never built, since the stage answers
    opt = app.optimizer()
    opt.stages = [Answers()]
    reply = opt.ask(Request.from_prompt("hi"))
    assert reply.source == "cache" and reply.text == "stored"
    row = app.ledger.get(reply.request_id)
    assert row["source"] == "cache" and row["saved_response_cache"] == 0.01 and row["cost"] == 0


def test_a_failed_call_is_recorded_without_cost_and_raised(home: Path) -> None:
    app = open_app(backend="offline")
    opt = app.optimizer(backend=FailingBackend())
    with pytest.raises(BackendError):
        opt.ask(Request.from_prompt("hi", request_id="req_failing"))
    row = app.ledger.get("req_failing")
    assert row["error"].startswith("overloaded_error")
    assert row["cost"] == 0 and row["baseline_cost"] == 0


def test_offline_backend_is_deterministic_and_truncates() -> None:
    backend = OfflineBackend(clock=lambda: 0.0)
    params = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 2000,
        "messages": [{"role": "user", "content": "Tell me a story"}],
    }
    first, again = backend.send(params), backend.send(params)
    assert first == again
    short = backend.send({**params, "max_tokens": 10})
    assert short.usage.output_tokens == 10 and short.stop_reason == "max_tokens"
    assert short.usage.estimated


def test_offline_prompt_caching_writes_then_reads_until_ttl() -> None:
    now = [1000.0]
    backend = OfflineBackend(clock=lambda: now[0])
    system = [
        {
            "type": "text",
            "text": "You are a careful agent. " * 600,
            "cache_control": {"type": "ephemeral", "ttl": "5m"},
        }
    ]
    params = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 50,
        "system": system,
        "messages": [{"role": "user", "content": "hello"}],
    }
    write = backend.send(params).usage
    assert write.cache_write_5m > 1024 and write.cache_read == 0
    read = backend.send(params).usage
    assert read.cache_read == write.cache_write_5m and read.cache_write == 0
    assert read.input_tokens == write.input_tokens  # input excludes cached tokens both times
    now[0] += 301
    assert backend.send(params).usage.cache_write_5m > 0  # expired: written again
    small = {**params, "system": [{**system[0], "text": "short"}]}
    tiny = backend.send(small).usage
    assert tiny.cache_write == 0 and tiny.cache_read == 0  # below the minimum: not cached


def test_offline_mixed_ttls_bill_and_live_per_breakpoint() -> None:
    """A 1h system prompt before a 5m history: each part written at its own rate, and the
    1h entry still read after the 5m one has gone."""
    now = [1000.0]
    backend = OfflineBackend(clock=lambda: now[0])
    system = "You are a careful agent. " * 600

    def request(turn: str) -> dict:
        history = [
            {"role": "user", "content": "Plan it. " * 400},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "text",
                        "text": "Planned. " * 400,
                        "cache_control": {"type": "ephemeral", "ttl": "5m"},
                    }
                ],
            },
        ]
        return {
            "model": "claude-sonnet-5-5",
            "max_tokens": 50,
            "system": [
                {
                    "type": "text",
                    "text": system,
                    "cache_control": {"type": "ephemeral", "ttl": "1h"},
                }
            ],
            "messages": [*history, {"role": "user", "content": turn}],
        }

    first = backend.send(request("a")).usage
    assert first.cache_write_1h > 1024 and first.cache_write_5m > 0 and first.cache_read == 0
    now[0] += 400  # the 5m entry is gone, the 1h one lives
    later = backend.send(request("b")).usage
    assert later.cache_read == first.cache_write_1h
    assert later.cache_write_5m == first.cache_write_5m and later.cache_write_1h == 0
    # Marks do not change the answer: the same request unmarked answers alike.
    plain = request("b")
    plain["system"] = system
    plain["messages"][1] = {"role": "assistant", "content": "Planned. " * 400}
    assert backend.send(plain).usage.output_tokens == later.output_tokens


def test_offline_prompt_cache_is_shared_by_processes_through_the_database(
    tmp_path: Path,
) -> None:
    """Two backends on one database file (two `tars-opt ask` processes): the second reads
    the entry the first wrote, and the table holds hashes, not the prompt."""
    from tars_opt.backends.offline_store import OfflinePromptCache
    from tars_opt.store import connect

    text = "You are a careful agent with a long runbook. " * 600
    params = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 50,
        "system": [
            {"type": "text", "text": text, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        ],
        "messages": [{"role": "user", "content": "hello"}],
    }
    path = tmp_path / "t.db"
    now = [1000.0]

    def process() -> OfflineBackend:
        return OfflineBackend(clock=lambda: now[0], prompt_cache=OfflinePromptCache(connect(path)))

    first = process().send(params).usage
    now[0] += 600
    second = process().send(params).usage
    assert first.cache_write_1h > 1024 and second.cache_read == first.cache_write_1h
    now[0] += 3601  # past the renewed hour: written again
    assert process().send(params).usage.cache_write_1h == first.cache_write_1h
    dump = str(list(connect(path).query("SELECT * FROM offline_prompt_cache")))
    assert "runbook" not in dump


def test_offline_batches_are_half_price(home: Path) -> None:
    backend = OfflineBackend()
    params = {
        "model": "claude-haiku-5-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    info = backend.submit_batch([{"custom_id": "a", "params": params}])
    assert info.status == "ended"
    (item,) = list(backend.batch_results(info.id))
    assert item.outcome == "succeeded" and item.result.usage.service_tier == "batch"
    app = open_app(backend="offline")
    book = app.optimizer().prices
    standard = backend.send(params)
    assert book.cost(item.result.usage, "claude-haiku-5-5") == pytest.approx(
        book.cost(standard.usage, "claude-haiku-5-5") / 2
    )


@pytest.mark.parametrize(
    ("prompt", "kind"),
    [
        ("What is the capital of France?", "fact"),
        ("Fix this Python traceback: KeyError in dict lookup", "code"),
        ("Write an email to my landlord about the broken heater", "template"),
        ("Compare the trade-offs of Raft and Paxos for a small cluster", "research"),
        ("Tell me a joke about cats", "other"),
    ],
)
def test_query_type_guess(prompt: str, kind: str) -> None:
    assert guess_query_type(prompt) == kind


def test_periods_are_utc_calendar_boundaries() -> None:
    def at(*args: int) -> float:
        return datetime(*args, tzinfo=UTC).timestamp()

    p = Periods.at(at(2026, 11, 22, 13, 45))  # a Sunday
    assert p.day == at(2026, 11, 22)
    assert p.week == at(2026, 11, 16)  # ISO weeks start on Monday
    assert p.month == at(2026, 11, 1)
    assert p.next_month == at(2026, 12, 1)
    assert Periods.at(at(2026, 12, 31, 23, 59)).next_month == at(2027, 1, 1)


def test_usage_to_api_names() -> None:
    u = Usage(input_tokens=1, output_tokens=2, cache_write_5m=3, cache_write_1h=4, cache_read=5)
    assert u.to_api()["cache_creation_input_tokens"] == 7
    assert u.to_api()["cache_creation"] == {
        "ephemeral_5m_input_tokens": 3,
        "ephemeral_1h_input_tokens": 4,
    }


def test_help_does_not_import_the_sdk() -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from tars_opt.cli.main import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0; "
        "print('anthropic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_latency_excludes_building_the_backend(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time as _time

    import tars_opt.pipeline.optimizer as chain

    class Measured(OfflineBackend):
        def send(self, params: dict) -> BackendResult:
            result = super().send(params)
            return replace(result, latency_ms=None)  # measured by the chain, not modelled

    def slow_build(config, clock, db=None):  # stands in for the ~1.7 s SDK import
        _time.sleep(0.3)
        return Measured()

    monkeypatch.setattr(chain, "build_backend", slow_build)
    opt = open_app().optimizer()
    opt.stages = []  # only the backend's time is under test
    reply = opt.ask(Request.from_prompt("hi", model="claude-haiku-5-5"))
    assert reply.latency_ms < 250


def test_price_writes_nothing_until_record(home: Path) -> None:
    """A front door answers with `price` first; the row appears only when it records."""
    app = open_app(backend="offline")
    opt = app.optimizer()
    opt.stages = [PinTier()]
    prepared = opt.prepare(Request.from_prompt("Capital of Peru?"))
    assert not isinstance(prepared, Reply)
    result = opt.backend.send(prepared.params)
    reply = opt.price(prepared, result)
    assert reply.cost > 0 and reply.model == "claude-haiku-5-5"
    assert app.ledger.get(reply.request_id) is None
    opt.record(prepared, reply, api_request_id="req_api_1")
    row = app.ledger.get(reply.request_id)
    assert row is not None and row["cost"] == reply.cost and row["api_request_id"] == "req_api_1"


def test_a_stage_answer_goes_to_on_answer_instead_of_the_ledger(home: Path) -> None:
    app = open_app(backend="offline")
    opt = app.optimizer()
    opt.stages = [Answers()]
    held: list[tuple[Request, Reply]] = []
    reply = opt.prepare(
        Request.from_prompt("Capital of Peru?"), on_answer=lambda q, r: held.append((q, r))
    )
    assert isinstance(reply, Reply) and reply.source == "cache"
    assert app.ledger.get(reply.request_id) is None and len(held) == 1
    opt.record_answer(*held[0])
    assert app.ledger.get(reply.request_id)["source"] == "cache"
