"""Property-based bad input: config files, CLI arguments, context and tools files, decision
traces, and API answers with odd fields. Always a one-line error naming the problem and an
exit code, never a traceback, never a half-written row."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tars_opt import Request, open_app
from tars_opt.cli.main import app
from tars_opt.errors import BackendError
from tars_opt.pipeline.trace import cache_hit_kind, was_deferred, was_escalated
from tars_opt.types import Usage

SETTINGS = settings(
    # scripts/soak.py runs these with more examples.
    max_examples=int(os.environ.get("TARS_OPT_SOAK_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
# The old section names (lazy, context) too: they still load, renamed with a warning.
SECTIONS = [
    "backend",
    "api",
    "models",
    "budget",
    "cache",
    "defer",
    "prune",
    "prompt_cache",
    "routing",
    "ledger",
    "lazy",
    "context",
]


def calls(home: Path) -> int:
    path = home / "tars-opt.db"
    if not path.exists():
        return 0
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    finally:
        conn.close()


def assert_clean_exit(result, allowed: tuple[int, ...] = (0, 2)) -> None:
    """No traceback; a known exit code; a failure said in one line (ours start 'error:')."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code in allowed, (result.exit_code, result.output)
    err = result.stderr
    assert "Traceback" not in err
    if result.exit_code != 0 and err.startswith(("error:", "refused:")):
        assert len([line for line in err.splitlines() if line.strip()]) == 1, err


@SETTINGS
@given(
    body=st.one_of(
        st.text(max_size=200),
        st.dictionaries(st.sampled_from(SECTIONS), JSON, max_size=4).map(
            lambda d: yaml.safe_dump(d, allow_unicode=True)
        ),
    )
)
def test_any_config_file(runner, tmp_path: Path, body: str) -> None:
    path = tmp_path / "fuzz-config.yaml"
    path.write_text(body, encoding="utf-8")
    result = runner.invoke(app, ["config", "check", "-c", str(path)])
    assert_clean_exit(result)
    if result.exit_code:
        assert str(path.name) in result.stderr or "config" in result.stderr


@SETTINGS
@given(
    prompt=st.text(max_size=60),
    qtype=st.none() | st.text(max_size=8) | st.sampled_from(["fact", "code"]),
    priority=st.text(max_size=6) | st.sampled_from(["high", "normal", "low"]),
    max_tokens=st.none() | st.integers(-3, 10**9),
    max_wait=st.none() | st.text(max_size=6) | st.sampled_from(["30m", "2d", "0s"]),
    extra=st.lists(st.sampled_from(["--urgent", "--defer", "--no-cache", "--refresh"]), max_size=2),
)
def test_any_ask_arguments(
    runner, home: Path, prompt, qtype, priority, max_tokens, max_wait, extra
) -> None:
    args = ["ask", "--backend", "offline", "--priority", priority, *extra]
    if qtype is not None:
        args += ["--type", qtype]
    if max_tokens is not None:
        args += ["--max-tokens", str(max_tokens)]
    if max_wait is not None:
        args += ["--max-wait", max_wait]
    before = calls(home)
    result = runner.invoke(app, [*args, "--", f"q {prompt}"])
    assert_clean_exit(result)
    if result.exit_code != 0:
        assert calls(home) == before  # nothing half-written


@SETTINGS
@given(doc=JSON, flag=st.sampled_from(["--context", "--tools"]))
def test_any_context_or_tools_file(runner, home: Path, tmp_path: Path, doc, flag: str) -> None:
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    before = calls(home)
    result = runner.invoke(app, ["ask", "--backend", "offline", flag, str(path), "q what now"])
    assert_clean_exit(result)
    if result.exit_code:
        assert path.name in result.stderr or flag.strip("-") in result.stderr, result.stderr
        assert calls(home) == before


@SETTINGS
@given(raw=st.binary(max_size=80))
def test_a_context_file_that_is_not_text(runner, home: Path, tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "fuzz.bin"
    path.write_bytes(raw)
    result = runner.invoke(app, ["ask", "--backend", "offline", "--context", str(path), "q"])
    assert_clean_exit(result)


@SETTINGS
@given(trace=JSON)
def test_any_decision_trace_is_read_safely(trace) -> None:
    for decisions in (trace, [trace], [{"stage": "cache", "data": trace}]):
        assert cache_hit_kind(decisions) in ("exact", "semantic")
        assert was_deferred(decisions) in (True, False)
        assert was_escalated({}, decisions) in (True, False)


@SETTINGS
@given(raw=JSON)
def test_usage_with_junk_fields(raw) -> None:
    try:
        usage = Usage.from_api(raw)
    except ValueError as exc:
        assert "usage" in str(exc) and "\n" not in str(exc)
        return
    for n in (usage.input_tokens, usage.output_tokens, usage.cache_write, usage.cache_read):
        assert isinstance(n, int) and n >= 0


@SETTINGS
@given(
    field=st.sampled_from(
        ["input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation"]
    ),
    value=st.one_of(st.text(max_size=5), st.floats(), st.integers(-5, -1), st.lists(st.none())),
)
def test_usage_field_junk_is_named(field: str, value) -> None:
    try:
        Usage.from_api({"input_tokens": 3, field: value})
    except ValueError as exc:
        assert field in str(exc)


@SETTINGS
@given(
    text=st.text(max_size=40),
    output_tokens=st.integers(0, 5000),
    stop=st.sampled_from(["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"]),
    tools=st.lists(
        st.fixed_dictionaries({"name": st.text(min_size=1, max_size=8), "input": JSON}),
        max_size=2,
    ),
)
def test_odd_api_answers_end_answered_or_failed(
    fake_api_env, text, output_tokens, stop, tools
) -> None:
    fake_api_env.responder = lambda body: {
        "text": text,
        "output_tokens": output_tokens,
        "stop_reason": stop,
        "tool_use": [t if isinstance(t["input"], dict) else {**t, "input": {}} for t in tools],
    }
    opened = open_app(overrides={"cache.enabled": False, "defer.enabled": False})
    req = Request.from_prompt("odd answers: name a prime")
    try:
        reply = opened.optimizer().ask(req)
    except BackendError as exc:
        assert str(exc) and "\n" not in str(exc)
        row = opened.ledger.get(req.request_id)
        assert row is not None and row["error"] and row["cost"] == 0
    else:
        row = opened.ledger.get(reply.request_id)
        assert row is not None and row["error"] is None and row["cost"] >= 0
    finally:
        opened.db.close()


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic notes the junk it was given
def test_an_answer_with_unreadable_usage_is_failed_not_billed(
    fake_api_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fake_anthropic import tokens

    real = tokens.CacheUsage.usage

    def odd(self, output_tokens, service_tier):
        return {**real(self, output_tokens, service_tier), "output_tokens": "lots"}

    monkeypatch.setattr(tokens.CacheUsage, "usage", odd)
    opened = open_app(overrides={"cache.enabled": False, "defer.enabled": False})
    req = Request.from_prompt("what is a prime")
    with pytest.raises(BackendError, match="usage.output_tokens"):
        opened.optimizer().ask(req)
    row = opened.ledger.get(req.request_id)
    assert row["error"].startswith("bad_response") and row["cost"] == 0
    assert opened.db.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 0
