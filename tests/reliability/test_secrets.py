"""The API key never reaches the database, logs, reports or outputs; the data dir and its
files are user-only; cached answers never cross namespaces."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tars_opt.cli.main import app
from tars_opt.store import is_server
from tests.stored import database_at, stored_bytes

KEY = "sk-ant-api03-RELIABILITY-SECRET-7f3c9d1e5b2a"


def run(runner, args: list[str], outputs: list[str], code: int | None = 0) -> str:
    result = runner.invoke(app, args)
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    outputs.append(text)
    if code is not None:
        assert result.exit_code == code, (args, text)
    return text


def test_the_key_is_nowhere_and_files_are_private(
    fake_api_env, runner, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    fake_api_env.api_key = KEY
    fake_api_env.batch_mode = "immediate"
    outputs: list[str] = []
    run(runner, ["ask", "-v", "--explain", "What is the capital of France?"], outputs)
    run(runner, ["ask", "--stream", "--json", "Name three primes below twenty"], outputs)
    run(runner, ["ask", "--defer", "--json", "Summarise the history of Rome"], outputs)
    run(runner, ["drain", "--now", "--wait", "-v"], outputs)
    run(runner, ["report", "--week", "--out", str(tmp_path / "r" / "week.md")], outputs)
    # Phase 1 starts with these first calls; its 18% cache-hit target is the plan's example,
    # not judged without a baseline of the user's (exit 0).
    run(runner, ["heartbeat", "--json"], outputs, code=0)
    run(runner, ["log", "-n", "20", "--json"], outputs)
    run(runner, ["costs"], outputs)
    run(runner, ["config", "show", "--json"], outputs)
    run(runner, ["budget", "--json"], outputs)
    # A failing call: the API refuses the key; the error says so without showing it.
    fake_api_env.api_key = "another-key"
    err = run(runner, ["ask", "-v", "What is 2+2?", "--no-cache"], outputs, code=1)
    assert "authentication_error" in err
    for text in outputs:
        assert KEY not in text
        assert KEY[-12:] not in text
    files = [p for root in (home, tmp_path / "r") for p in root.rglob("*") if p.is_file()]
    location = database_at(home)
    on_server = is_server(location)
    assert on_server or any(p.name.endswith("-wal") or p.suffix == ".db" for p in files)
    for path in files:
        data = path.read_bytes()
        assert KEY.encode() not in data, path
        assert KEY[-12:].encode() not in data, path
    stored = stored_bytes(location)  # on PostgreSQL the rows are not in these files
    assert KEY.encode() not in stored and KEY[-12:].encode() not in stored
    # User-only: the data dir, the database with its WAL/SHM, the logs.
    for path in [home, *[p for p in home.rglob("*")]]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
    names = {p.name for p in home.rglob("*")}
    assert "tars-opt.log" in names and (on_server or any(n.endswith("-wal") for n in names))


def test_cached_answers_never_cross_namespaces(fake_api_env, runner) -> None:
    outputs: list[str] = []

    def ask(namespace: str, prompt: str) -> str:
        text = run(runner, ["ask", "--json", "--namespace", namespace, prompt], outputs)
        return json.loads(text)["source"]

    assert ask("alpha", "What is the capital of France?") == "api"
    assert ask("alpha", "What is the capital of France?") == "cache"
    assert ask("beta", "What is the capital of France?") == "api"
    assert ask("beta", "what is the capital of france") == "cache"  # its own entry
    assert ask("gamma", "What's the capital city of France?") == "api"


def test_the_log_scrubs_the_key_from_extras_and_tracebacks(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    from tars_opt.logs import setup_logging

    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    logger = setup_logging(home)
    log = logging.getLogger("tars_opt.test")
    log.warning("key %s in args", KEY, extra={"header": f"x-api-key: {KEY}"})
    try:
        raise RuntimeError(f"client built with {KEY}")
    except RuntimeError:
        log.exception("failed")
    for handler in logger.handlers:
        handler.flush()
    text = (home / "logs" / "tars-opt.log").read_text()
    assert "[REDACTED]" in text and "RuntimeError" in text
    assert KEY not in text
