"""Small things a new user trips over: a bad flag named as the flag, accurate offline
placeholder text, JSON without float noise, --version, the dashboard at 80x24 with `q`,
a crontab that works on cron's PATH, and `cache clear` asking first."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tars_opt import __version__, open_app
from tars_opt.accounting.alerts import Alert, Alerter
from tars_opt.cache.store import CacheStore
from tars_opt.cli.main import app
from tars_opt.cli.render.common import to_json
from tars_opt.defer.queue import Queue
from tars_opt.monitor.dashboard import KeyReader, read_frame, render, run_live
from tests.conftest import REPO
from tests.handmade import add_call, haiku

OFFLINE = ["--backend", "offline"]


def invoke(runner: CliRunner, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


# --- a bad flag value is the flag's fault, not the config file's ----------------------


def test_a_bad_backend_flag_is_named_as_the_flag(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "performance-config.yaml").write_text("budget:\n  monthly_usd: 50\n")
    out = invoke(runner, "ask", "--backend", "foo", "hi", code=2)
    assert (
        out.strip()
        == "error: --backend 'foo' is not valid: Input should be 'anthropic' or 'offline'"
    )
    assert "config error" not in out and "performance-config.yaml" not in out


def test_a_bad_backend_variable_is_named_as_the_variable(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TARS_OPT_BACKEND", "foo")
    out = invoke(runner, "costs", code=2)
    assert out.startswith("error: TARS_OPT_BACKEND='foo' is not valid: ")


# --- the offline placeholder says what is true ------------------------------------------


def test_offline_answer_without_a_key_says_to_set_it(runner: CliRunner) -> None:
    answer = json.loads(invoke(runner, "ask", *OFFLINE, "--json", "hi there"))["answer"]
    assert "for real answers set ANTHROPIC_API_KEY and use --backend anthropic" in answer


def test_offline_answer_with_a_key_does_not_ask_for_one(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key-0123456789")
    answer = json.loads(invoke(runner, "ask", *OFFLINE, "--json", "hi there"))["answer"]
    assert "ANTHROPIC_API_KEY is set: use --backend anthropic for real answers" in answer
    assert "set ANTHROPIC_API_KEY and" not in answer and "sk-ant-test" not in answer


# --- JSON money without float noise ----------------------------------------------------


def test_json_floats_are_rounded_and_still_add_up() -> None:
    text = to_json({"cost": 2.2800000000000002e-05, "big": 1234.5678901234567,
                    "parts": [0.1, 0.2], "total": 0.1 + 0.2, "n": 3, "ok": True})  # fmt: skip
    data = json.loads(text)
    assert "2.28e-05" in text and data["big"] == 1234.567890123
    assert data["total"] == 0.3 and data["n"] == 3 and data["ok"] is True
    assert abs(sum(data["parts"]) - data["total"]) <= 1e-9 * len(data["parts"])


def test_costs_json_prints_no_float_noise(runner: CliRunner) -> None:
    db = open_app().db
    now = time.time()
    for _ in range(3):
        add_call(db, now - 5, cost=0.1, baseline_cost=2.2800000000000002e-05 * 10)
    text = invoke(runner, "costs", "--json")
    assert "0.30000000000000004" not in text and "0000000000" not in text
    assert json.loads(text)["periods"]["today"]["cost"] == 0.3
    longest = max(len(m) for m in re.findall(r"\d+\.\d+(?:e-?\d+)?", text))
    assert longest <= 16


# --- --version ---------------------------------------------------------------------------


def test_version(runner: CliRunner) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert invoke(runner, "--version").strip() == f"tars-opt {__version__}"
    assert __version__ == project["version"]


# --- the dashboard -----------------------------------------------------------------------


def busy_ledger() -> tuple[object, list[str]]:
    """A ledger with a queue, three alerts and more recent calls than 80x24 can hold."""
    opened = open_app(backend="offline")
    now = time.time()
    ids = [add_call(opened.db, now - 60 + i, request_id=f"req_{i:020x}", backend="offline",
                    **haiku()) for i in range(8)]  # fmt: skip
    opt = opened.optimizer()
    from tars_opt import Request

    for i in range(2):
        opt.ask(Request.from_prompt(f"Summarise the history of Rome, part {i}", defer=True))
    alerter = Alerter(opened.config.alerts, opened.db)
    for i in range(3):
        alerter.raise_once(Alert(key=f"test:{i}", level="warning", period="p",
                                 message=f"alert number {i} " + "long words " * 12))  # fmt: skip
    return opened, ids


def test_dashboard_fits_80x24_with_queue_and_recent_calls(home: Path) -> None:
    opened, ids = busy_ledger()
    assert Queue(opened.db).counts()["queued"] == 2
    console = Console(file=io.StringIO(), width=80, height=24)
    frame = read_frame(opened.db, opened.config, time.time())
    console.print(render(frame, height=console.size.height))
    lines = console.file.getvalue().splitlines()
    assert len(lines) <= 24
    assert all(len(line) <= 80 for line in lines)
    text = "\n".join(lines)
    assert "queue" in text and "queued" in text
    assert "recent calls" in text and ids[-1] in text and ids[-2] in text  # the newest
    assert "offline" in text and "alert number 2" in text


def test_live_dashboard_quits_on_q(home: Path) -> None:
    opened = open_app()
    reads: list[int] = []
    presses = iter([None, "x", "q"])

    def read():
        reads.append(1)
        return read_frame(opened.db, opened.config, time.time())

    waits: list[float] = []

    def keys(timeout: float) -> str | None:
        waits.append(timeout)
        return next(presses)

    run_live(read, Console(file=io.StringIO(), width=80, height=24), interval_s=5, keys=keys)
    assert waits == [5, 5, 5] and len(reads) == 3  # q ended it; no frame after the q


def test_key_reader_reads_single_keys_from_a_terminal() -> None:
    master, slave = pty.openpty()
    with os.fdopen(slave, "r") as term:
        with KeyReader(term) as reader:
            assert reader.active
            assert reader.wait(0.01) is None
            os.write(master, b"q")
            assert reader.wait(2.0) == "q"  # no Enter needed
        assert not reader.active
    os.close(master)
    with KeyReader(io.StringIO()) as reader:  # not a terminal: waits only
        assert not reader.active and reader.wait(0.0) is None


# --- the crontab example works on cron's PATH ------------------------------------------


@pytest.mark.skipif(shutil.which("flock") is None, reason="needs flock")
def test_crontab_line_runs_with_crons_path(tmp_path: Path) -> None:
    text = (REPO / "scripts" / "tars-opt-drain.crontab").read_text()
    settings = dict(re.findall(r"^([A-Z_]+)=(.*)$", text, re.M))
    (line,) = [x for x in text.splitlines() if x and not x.startswith("#") and "=" not in x[:12]]
    command = line.split(None, 5)[5]
    assert settings["TARS_OPT"].startswith("/") and '"$TARS_OPT" drain' in command
    assert re.search(r"(^|[\s;&|])tars-opt\s", command) is None  # not the bare name
    # Run it as cron would: a bare environment, cron's PATH, our TARS_OPT.
    home = tmp_path / "home"
    (home / ".config" / "tars-opt").mkdir(parents=True)
    (home / ".cache").mkdir()
    (home / ".config" / "tars-opt" / "env").write_text("ANTHROPIC_API_KEY=sk-ant-from-file\n")
    fake = tmp_path / "bin" / "tars-opt"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@ key=$ANTHROPIC_API_KEY" > {tmp_path}/ran\n')
    fake.chmod(0o755)
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "SHELL": settings["SHELL"],
           "TARS_OPT": str(fake)}  # fmt: skip
    subprocess.run([settings["SHELL"], "-c", command], env=env, check=True, timeout=30)
    assert (tmp_path / "ran").read_text().strip() == "drain key=sk-ant-from-file"


# --- cache clear asks first --------------------------------------------------------------


def fill_cache(runner: CliRunner) -> CacheStore:
    for prompt in ("What is the capital of France?", "Name a primary colour"):
        invoke(runner, "ask", *OFFLINE, "--json", prompt)
    store = CacheStore(open_app().db)
    assert store.count() == 2
    return store


def test_cache_clear_without_a_terminal_needs_yes(runner: CliRunner) -> None:
    store = fill_cache(runner)
    out = invoke(runner, "cache", "clear", code=2)
    assert out.strip() == (
        "error: cache clear needs confirmation and nobody is at a terminal to give it: "
        "add --yes to clear without asking"
    )
    assert store.count() == 2
    assert "forgot 2 entries" in invoke(runner, "cache", "clear", "--yes")
    assert store.count() == 0


def run_in_terminal(args: list[str], answer: bytes, home: Path) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal, answer its prompt, return (exit code, output)."""
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TARS_OPT_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "tars_opt", *args], stdin=slave,
                            stdout=slave, stderr=slave, env=env)  # fmt: skip
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60
    while b"?" not in out and time.monotonic() < deadline:
        if select.select([master], [], [], 0.5)[0]:
            out += os.read(master, 4096)
    os.write(master, answer)
    code = proc.wait(timeout=60)
    while select.select([master], [], [], 0.2)[0]:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return code, out.decode(errors="replace")


def test_cache_clear_in_a_terminal_asks(runner: CliRunner, home: Path) -> None:
    store = fill_cache(runner)
    code, out = run_in_terminal(["cache", "clear"], b"n\n", home)
    assert "forget 2 cached answers? [y/N]" in out and "nothing forgotten" in out
    assert code == 1 and store.count() == 2
    code, out = run_in_terminal(["cache", "clear"], b"y\n", home)
    assert code == 0 and "forgot 2 entries" in out and store.count() == 0
    fill_cache(runner)
    invoke(runner, "cache", "forget", "--match", "France")
    code, out = run_in_terminal(["cache", "clear"], b"y\n", home)
    assert "forget 1 cached answer? [y/N]" in out and "forgot 1 entry" in out
