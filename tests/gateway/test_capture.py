"""gateway.capture: requests appended as workload request records, replayed by simulate."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anthropic
import pytest
from typer.testing import CliRunner

from tars_opt.cli.main import app
from tars_opt.config.loader import load_config
from tars_opt.config.schema import Config
from tars_opt.gateway.capture import Capture
from tars_opt.gateway.settings import resolve
from tars_opt.sim.simulate import simulate
from tars_opt.sim.workload import load_workload
from tests.fake_anthropic.server import FakeAnthropic
from tests.gateway.harness import serve

KEY = "sk-ant-test-secret-capture-0123456789"
MODEL = "claude-sonnet-4-6"
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


def captured(folder: Path) -> list[dict]:
    (day,) = sorted(folder.glob("*.jsonl"))
    return [json.loads(line) for line in day.read_text(encoding="utf-8").splitlines()]


def test_capture_holds_bodies_controls_answers_and_no_key(
    fake_api: FakeAnthropic, tmp_path: Path, runner: CliRunner
) -> None:
    folder = tmp_path / "capture"
    fake_api.responder = lambda body: (
        {"tool_use": [{"name": "get_weather", "input": {"city": "Lima"}}]}
        if isinstance(body["messages"][-1]["content"], str)
        else "It is sunny in Lima."
    )
    with serve(fake_api.url, capture_dir=folder) as gw:
        c = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)
        first_turn = [{"role": "user", "content": "Weather in Lima?"}]
        first = c.messages.create(
            model=MODEL, max_tokens=128, tools=TOOLS, messages=first_turn,
            extra_headers={"x-tars-opt-namespace": "weather", "x-tars-opt-priority": "high"},
        )  # fmt: skip
        use = next(b for b in first.content if b.type == "tool_use")
        loop = [
            *first_turn,
            {"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                              for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                          "content": "sunny"}]},
        ]  # fmt: skip
        with c.messages.stream(model=MODEL, max_tokens=128, tools=TOOLS, messages=loop) as s:
            second = s.get_final_message()
        fake_api.inject("rate_limit")
        with pytest.raises(anthropic.RateLimitError):
            c.messages.create(model=MODEL, max_tokens=32, messages=[
                {"role": "user", "content": "one more"}])  # fmt: skip
        gw.flush()
    records = captured(folder)
    assert len(records) == 3
    one, two, three = records
    assert one["request"] == {"max_tokens": 128, "messages": first_turn, "model": MODEL,
                              "tools": TOOLS}  # fmt: skip
    assert one["controls"] == {"namespace": "weather", "priority": "high"}
    assert one["answer"] == [b.model_dump(exclude_none=True) for b in first.content]
    assert two["request"]["stream"] is True and two["request"]["messages"] == loop
    assert two["answer"][0]["text"] == second.content[0].text == "It is sunny in Lima."
    assert "controls" not in two and "answer" not in three  # the 429 had no answer
    raw = b"".join(p.read_bytes() for p in folder.iterdir())
    assert KEY.encode() not in raw
    assert b"x-api-key" not in raw.lower() and b"authorization" not in raw.lower()
    assert (folder.stat().st_mode & 0o777) == 0o700
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in folder.iterdir())

    # The capture is a workload: simulate replays it, answering with the recorded content.
    (day,) = folder.glob("*.jsonl")
    work = load_workload(day)
    assert [len(c.body["messages"]) for c in work.calls] == [1, 3, 1]
    assert work.calls[0].controls == {"namespace": "weather", "priority": "high"}
    result = simulate(work, load_config(None).config)
    assert result.answered == 3 and result.loop_calls == 3 and result.errors == 0
    out = runner.invoke(app, ["simulate", "--workload", str(day)])
    assert out.exit_code == 0, out.output
    assert "3 of 3 (refused 0, errors 0)" in out.output


def test_capture_is_off_by_default_and_under_the_data_dir_when_on(tmp_path: Path) -> None:
    assert resolve(Config()).capture_dir is None
    on = Config.model_validate({"data_dir": str(tmp_path), "gateway": {"capture": True}})
    assert resolve(on).capture_dir == tmp_path / "capture"


def test_a_failing_capture_write_logs_once_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the capture folder should be")
    capture = Capture(blocked)
    seen = capture.seen({"model": MODEL, "messages": []}, {})
    with caplog.at_level(logging.WARNING, logger="tars_opt.gateway"):
        capture.write(seen, None)
        capture.write(seen, None)
    warnings = [r for r in caplog.records if "capture write failed" in r.getMessage()]
    assert len(warnings) == 1
