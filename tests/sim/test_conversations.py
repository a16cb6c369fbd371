"""Agent-loop replays: conversation and request records, the gap model, recorded answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tars_opt import tokens
from tars_opt.cli.main import app
from tars_opt.config.loader import load_config
from tars_opt.errors import TraceError
from tars_opt.sim.gaps import AFTERNOON, DAY, MORNING, GapModel
from tars_opt.sim.simulate import simulate
from tars_opt.sim.workload import load_workload
from tars_opt.store import connect

SONNET = "claude-sonnet-5-5"
# ~2,500 estimated tokens: above Sonnet's minimum cacheable prefix.
SYSTEM = "You are an airline agent. Follow the policy exactly. " * 190
TOOLS = [
    {"name": "get_user", "description": "Look a user up by id.",
     "input_schema": {"type": "object", "properties": {"id": {"type": "string"}}}},
    {"name": "book", "description": "Book a flight.",
     "input_schema": {"type": "object", "properties": {"flight": {"type": "string"}}}},
]  # fmt: skip


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def text(t: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": t}]


def loop(ident: str, time: str | None = None, **extra: Any) -> dict[str, Any]:
    """A tau-bench shaped conversation: text -> tool_use -> tool_result -> text. Its
    tool_use id repeats, as in the recorded data."""
    use = {"type": "tool_use", "id": "call_1", "name": "get_user", "input": {"id": ident}}
    again = {**use, "input": {"id": ident + "-2"}}
    rec: dict[str, Any] = {
        "id": ident,
        "split": "calibration",  # tau-bench keys: accepted, not replayed
        "task_id": 3,
        "reward": 1.0,
        "model": SONNET,
        "controls": {"route": False},
        "messages": [
            {"role": "user", "content": f"Hi, I am {ident} and want to change my flight."},
            {"role": "assistant", "content": [*text("Let me look you up."), use]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1",
                                          "content": f"user {ident}: gold member"}]},
            {"role": "assistant", "content": [again]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1",
                                          "content": "no reservations"}]},
            {"role": "assistant", "content": text("You have no reservations to change.")},
        ],
    }  # fmt: skip
    if time is not None:
        rec["time"] = time
    rec.update(extra)
    return rec


def conv_file(tmp_path: Path, *records: dict[str, Any]) -> Path:
    head = {"kind": "header", "name": "loops", "defaults": {"system": SYSTEM, "tools": TOOLS}}
    return write_jsonl(tmp_path / "loops.jsonl", [head, *records])


def cfg_with(tmp_path: Path, yaml: str = "") -> Any:
    path = tmp_path / "c.yaml"
    path.write_text("experiment:\n  holdout: 0\ncache:\n  enabled: false\n" + yaml)
    return load_config(path).config


def rows(db_path: Path) -> list[dict[str, Any]]:
    db = connect(db_path)
    try:
        return list(db.query("SELECT * FROM calls ORDER BY ts, id"))
    finally:
        db.close()


# ---- parsing -------------------------------------------------------------------------


def test_a_conversation_is_one_call_per_assistant_message(tmp_path: Path) -> None:
    work = load_workload(conv_file(tmp_path, loop("a", "2026-03-02T09:00:00Z")))
    assert [len(c.body["messages"]) for c in work.calls] == [1, 3, 5]
    first, second, third = work.calls
    assert first.time == work.calls[0].time
    assert 2 <= second.time - first.time <= 8  # after tool results: the agent's own loop
    assert 2 <= third.time - second.time <= 8
    assert first.body["system"] == SYSTEM and first.body["tools"] == TOOLS
    assert first.body["model"] == SONNET and first.controls == {"route": False}
    assert first.answer[0]["text"] == "Let me look you up." and first.conversation == "a"
    # The repeated tool_use id is made unique, and the tool_result after it follows it.
    ids = [b["id"] for m in third.body["messages"] for b in m["content"]
           if b["type"] == "tool_use"]  # fmt: skip
    results = [b["tool_use_id"] for m in third.body["messages"] for b in m["content"]
               if b["type"] == "tool_result"]  # fmt: skip
    assert ids == ["call_1", "call_1_2"] and results == ids
    assert second.answer[0]["id"] == "call_1_2"
    assert work.conversations == 1


def test_untimed_conversations_follow_the_seeded_working_day(tmp_path: Path) -> None:
    path = conv_file(tmp_path, *(loop(f"c{i}") for i in range(6)))
    one = [c.time for c in load_workload(path, seed=5).calls]
    assert one == [c.time for c in load_workload(path, seed=5).calls]
    assert one != [c.time for c in load_workload(path, seed=6).calls]
    for t in one:
        of_day = t - DAY
        assert any(start <= of_day <= end + 60 for start, end in (MORNING, AFTERNOON))
    gaps = GapModel(0)
    assert all(10 <= gaps.gap(False) <= 60 and 2 <= gaps.gap(True) <= 8 for _ in range(50))


def test_untimed_conversations_land_on_the_files_day(tmp_path: Path) -> None:
    call = {"time": "2026-03-02T23:00:00Z", "prompt": "hello"}
    work = load_workload(write_jsonl(tmp_path / "w.jsonl", [call, loop("x")]))
    day = 1_772_409_600.0  # 2026-03-02T00:00Z
    assert all(day + 9 * 3600 <= c.time < day + 86400 for c in work.calls)
    assert sum(1 for c in work.calls if c.body is None) == 1


def test_a_request_record_replays_the_body_with_its_controls(tmp_path: Path) -> None:
    body = {"model": SONNET, "max_tokens": 300, "system": SYSTEM, "tools": TOOLS,
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"user_id": "u1"}}  # fmt: skip
    rec = {"time": 1_772_445_600, "request": body, "controls": {"namespace": "ops"},
           "answer": text("hello")}  # fmt: skip
    (call,) = load_workload(write_jsonl(tmp_path / "r.jsonl", [rec])).calls
    assert call.body == body and call.controls == {"namespace": "ops"}
    assert call.answer == tuple(text("hello")) and call.conversation is None


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({**loop("a"), "prompt": "x"}, "line 1: field 'prompt' belongs to another record kind"),
        ({"messages": [{"role": "user", "content": "hi"}]},
         "line 1: field 'messages' has no assistant message"),
        ({"messages": [{"role": "assistant", "content": "hi"}]},
         "line 1: field 'messages' must start with a user message"),
        ({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]},
         "line 1: field 'messages[0].content' must be text or a list of content blocks"),
        ({**loop("a"), "time": "noon"}, "line 1: field 'time' 'noon' is not ISO-8601"),
        ({**loop("a"), "controls": {"prority": "low"}},
         "line 1: field 'controls.prority' is not a control"),
        ({"request": {"messages": [{"role": "user", "content": "hi"}]}},
         "line 1: field 'time' is missing"),
        ({"time": 0, "request": "hi"}, "line 1: field 'request' must be a Messages API body"),
        ({"time": 0, "request": {"messages": [{"role": "user", "content": "hi"}]},
          "answr": []}, "line 1: field 'answr' is not a request-record field"),
        ({"time": 0, "request": {"messages": [{"role": "user", "content": "hi"}]},
          "answer": [{"text": "no type"}]}, "line 1: field 'answer' must be text or a list"),
        ({"time": 0, "request": {"messages": [{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": "x"}]}},
         "line 1: field 'request.messages' must end with the user turn"),
        ({"time": 0, "request": {"max_tokens": 0, "messages": [
            {"role": "user", "content": "hi"}]}},
         "line 1: field 'request.max_tokens' must be a whole number"),
        ({"time": 0, "request": {"messages": [{"role": "user", "content": "hi"}]},
          "controls": {"priority": "urgent"}},
         "line 1: field 'controls.priority' 'urgent' is not one of"),
        # A typo in a call record still fails: it has neither messages nor request.
        ({"time": 0, "prompt": "hi", "sesion": "s"}, "line 1: field 'sesion' is not a trace"),
    ],
)  # fmt: skip
def test_bad_records_fail_on_one_line_naming_the_field(
    tmp_path: Path, record: dict[str, Any], message: str
) -> None:
    with pytest.raises(TraceError) as err:
        load_workload(write_jsonl(tmp_path / "bad.jsonl", [record]))
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


# ---- replay ----------------------------------------------------------------------------


def test_a_replayed_loop_reads_the_cache_and_pays_the_recorded_answers(tmp_path: Path) -> None:
    path = conv_file(tmp_path, loop("a", "2026-03-02T09:00:00Z"))
    cfg = cfg_with(tmp_path, "prompt_cache:\n  ttl_interactive: 5m\n")
    r = simulate(load_workload(path), cfg, db_path=tmp_path / "s.db")
    got = rows(tmp_path / "s.db")
    assert [g["model"] for g in got] == [SONNET] * 3
    assert got[0]["cache_read"] == 0 and got[0]["cache_write_5m"] > 2000
    assert got[1]["cache_read"] >= got[0]["cache_write_5m"]  # the loop's 2nd call reads
    assert got[2]["cache_read"] > got[1]["cache_read"]
    # Output is the recorded answers' length, not a placeholder's.
    answers = [m["content"] for m in loop("a")["messages"] if m["role"] == "assistant"]
    assert [g["output_tokens"] for g in got] == [
        tokens.estimate_message({"role": "assistant", "content": a}) for a in answers
    ]
    # Money: each row from its buckets at the shipped Sonnet 5.5 prices.
    for g in got:
        cost = (g["input_tokens"] * 2.0 + g["cache_write_5m"] * 2.5 + g["cache_write_1h"] * 4.0
                + g["cache_read"] * 0.2 + g["output_tokens"] * 10.0) / 1e6  # fmt: skip
        assert g["cost"] == pytest.approx(cost)
    assert r.cost == pytest.approx(sum(g["cost"] for g in got))
    assert r.loop_calls == 3 and r.conversations == 1
    assert r.loop_cache_read == sum(g["cache_read"] for g in got)
    assert r.loop_cache_write_5m == sum(g["cache_write_5m"] for g in got)
    assert r.saved_by_strategy["prompt_caching"] > 0


def test_ttl_choices_meet_the_gaps_between_conversations(tmp_path: Path) -> None:
    """Conversation b starts 30 min after a: a 1h entry of the shared prefix (tools,
    system) is still there, a 5m one is gone. c starts 2 h later: both are gone."""
    path = conv_file(
        tmp_path,
        loop("a", "2026-03-02T09:00:00Z"),
        loop("b", "2026-03-02T09:30:00Z"),
        loop("c", "2026-03-02T11:30:00Z"),
    )
    firsts: dict[str, list[int]] = {}
    costs: dict[str, float] = {}
    for ttl in ("5m", "1h"):
        db = tmp_path / f"{ttl}.db"
        cfg = cfg_with(tmp_path, f"prompt_cache:\n  ttl_interactive: {ttl}\n")
        costs[ttl] = simulate(load_workload(path), cfg, db_path=db).cost
        got = rows(db)
        firsts[ttl] = [got[i]["cache_read"] for i in (0, 3, 6)]  # each conversation's 1st call
    assert firsts["5m"] == [0, 0, 0]
    assert firsts["1h"][0] == 0 and firsts["1h"][1] > 2000 and firsts["1h"][2] == 0
    assert costs["1h"] != costs["5m"]


def test_the_same_seed_replays_the_same_day(tmp_path: Path) -> None:
    path = conv_file(tmp_path, *(loop(f"c{i}") for i in range(4)))
    cfg = cfg_with(tmp_path)
    one, two = (simulate(load_workload(path, seed=2), cfg, seed=2).to_dict() for _ in range(2))
    for d in (one, two):
        d.pop("wall_s")
    assert one == two


def test_cli_replays_a_conversation_file(tmp_path: Path, runner: CliRunner) -> None:
    path = conv_file(tmp_path, loop("a"), loop("b"))
    result = runner.invoke(app, ["simulate", "-w", str(path), "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "6 calls, 2 conversations; cache read" in result.output
    assert "6 of 6 (refused 0, errors 0)" in result.output
    data = json.loads(runner.invoke(app, ["simulate", "-w", str(path), "--json"]).output)
    assert data["loop_calls"] == 6 and data["conversations"] == 2
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": "x"}])
    failed = runner.invoke(app, ["simulate", "-w", str(bad)])
    assert failed.exit_code == 2 and "line 1: field 'messages'" in failed.output
    assert "Traceback" not in failed.output


def test_the_bundled_loops_are_tau_bench_calibration_data_with_its_licence() -> None:
    from tars_opt.sim.workload import BUNDLED_LOOPS

    lines = BUNDLED_LOOPS.read_text(encoding="utf-8").splitlines()
    head = json.loads(lines[0])
    assert "MIT" in head["source"] and head["generator"] == "scripts/make_tau_slice.py"
    assert {json.loads(line)["split"] for line in lines[1:]} == {"calibration"}
    notice = BUNDLED_LOOPS.with_suffix(".LICENSE").read_text(encoding="utf-8")
    assert "MIT License" in notice and "Copyright (c) 2024 Sierra" in notice
    assert BUNDLED_LOOPS.stat().st_size < 200_000  # keeps the package small


def test_requests_are_answered_at_once_unless_their_controls_defer(tmp_path: Path) -> None:
    turn = {"role": "user", "content": "Summarize the week's incidents."}
    body = {"model": SONNET, "max_tokens": 100, "messages": [turn]}
    low = {"priority": "low"}
    records = [
        {"time": "2026-03-02T10:00:00Z", "request": body, "controls": low},
        {"time": "2026-03-02T10:05:00Z", "request": body, "controls": {**low, "defer": True}},
    ]
    cfg = cfg_with(tmp_path, "defer:\n  defer_low_priority: true\n")
    r = simulate(load_workload(write_jsonl(tmp_path / "r.jsonl", records)), cfg)
    assert r.deferred == 1 and r.answered == 2
    assert r.sources == {"api": 1, "batch": 1}
