"""The gateway's ledger journal: a row is on disk before its answer is sent, so a gateway
killed before the database took the row loses nothing; the next gateway writes it, once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx2
import pytest

from tars_opt.accounting.ledger import CallRecord, Ledger
from tars_opt.store import connect
from tars_opt.store.journal import Journal, replay
from tars_opt.types import Reply, Request
from tests.conftest import REPO
from tests.fake_anthropic.server import FakeAnthropic
from tests.stored import database_at, writes_held

MODEL = "claude-sonnet-4-5"
KEY = "test-key"
STAGES_OFF = """\
cache: {enabled: false}
defer: {enabled: false, serve_drains: false}
prune: {enabled: false}
routing: {enabled: false}
tools: {enabled: false}
prompt_cache: {enabled: false}
"""


def row_for(ledger: Ledger, rid: str) -> dict:
    request = Request.from_prompt("hello", request_id=rid)
    reply = Reply(text="hi", model=MODEL, source="api", request_id=rid, cost=0.002)
    return ledger.row(CallRecord(request=request, reply=reply, ts=1_700_000_000.0))


def test_a_journal_is_emptied_once_every_row_is_confirmed_and_removed_on_close(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "j", prefix="gateway")
    one = journal.append({"calls": {"request_id": "a"}})
    two = journal.append({"calls": {"request_id": "b"}})
    assert len(journal.path.read_text().splitlines()) == 2
    journal.confirm(one)
    journal.confirm(one)  # twice: harmless
    assert journal.path.stat().st_size > 0 and journal.waiting == 1
    journal.confirm(two)
    assert journal.path.stat().st_size == 0 and journal.waiting == 0
    journal.append({"calls": {"request_id": "c"}})
    assert json.loads(journal.path.read_text()) == {"calls": {"request_id": "c"}}
    journal.close()
    assert journal.path.exists()  # "c" was never confirmed: kept for the next start
    done = Journal(tmp_path / "j", prefix="gateway")
    done.confirm(done.append({"calls": {"request_id": "d"}}))
    done.close()
    assert not done.path.exists()
    assert os.stat(tmp_path / "j").st_mode & 0o077 == 0


def test_replay_writes_a_dead_journal_once_and_leaves_a_live_one(
    db_location: str, tmp_path: Path
) -> None:
    db = connect(db_location)
    ledger = Ledger(db)
    folder = tmp_path / "journal"
    live = Journal(folder, prefix="gateway")
    live.append({"calls": row_for(ledger, "req_live")})
    dead = Journal(folder, prefix="gateway")
    dead.append({"calls": row_for(ledger, "req_dead_1")})
    dead.append({"calls": row_for(ledger, "req_dead_2")})
    ledger.write_row(row_for(ledger, "req_dead_1"))  # written before its process died
    dead.close()
    with dead.path.open("a") as f:
        f.write('{"calls": {"request_id": "req_cut')  # a process killed mid-line
    assert replay(folder, lambda e: ledger.write_row(e["calls"])) == 2
    assert replay(folder, lambda e: ledger.write_row(e["calls"])) == 0
    ids = [r["request_id"] for r in db.query("SELECT request_id FROM calls ORDER BY id")]
    assert ids == ["req_dead_1", "req_dead_2"]  # each once; the live journal is its own
    assert not dead.path.exists() and live.path.exists()
    row = ledger.get("req_dead_2")
    assert row is not None and row["cost"] == pytest.approx(0.002) and row["model"] == MODEL
    live.close()
    db.close()


def test_a_failing_replay_keeps_the_journal_for_the_next_try(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    dead = Journal(folder)
    dead.append({"calls": {"request_id": "x"}})
    dead.close()

    def down(entry: dict) -> None:
        raise RuntimeError("store down")

    with pytest.raises(RuntimeError):
        replay(folder, down)
    assert dead.path.exists()
    seen: list[dict] = []
    assert replay(folder, seen.append) == 1 and seen == [{"calls": {"request_id": "x"}}]


def test_a_journaled_row_the_store_refuses_does_not_hold_back_new_rows(
    db_location: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tars_opt.gateway import recorder as recorder_module

    monkeypatch.setattr(recorder_module, "_REPLAY_WAITS", (0.0, 0.0))
    db = connect(db_location)
    ledger = Ledger(db)
    folder = tmp_path / "journal"
    dead = Journal(folder, prefix="gateway")
    # A row from a newer tars-opt with a column this schema lacks: refused every time.
    dead.append({"calls": {**row_for(ledger, "req_newer"), "column_from_the_future": 1}})
    dead.close()
    rec = recorder_module.Recorder(journal_dir=folder)
    rec.replay(ledger)
    rec.submit_row("req_new", ledger, row_for(ledger, "req_new"))
    assert rec.flush(20.0)
    assert [r["request_id"] for r in db.query("SELECT request_id FROM calls")] == ["req_new"]
    assert dead.path.exists()  # kept whole for a later start (and an upgraded gateway)
    assert rec.close()
    assert rec.journal is not None and not rec.journal.path.exists()
    db.close()


def _start(home: Path, upstream: str, config: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TARS_OPT_HOME": str(home)}
    env.pop("ANTHROPIC_API_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tars_opt", "serve", "--port", str(port), "--upstream", upstream,
         "--config", str(config)],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx2.get(f"{url}/tars-opt/health").status_code == 200:
                return proc, url
        except httpx2.TransportError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
        time.sleep(0.02)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()  # our own child, by its handle
        proc.wait()


def test_a_gateway_killed_right_after_answering_loses_no_row(
    fake_api: FakeAnthropic, home: Path, tmp_path: Path
) -> None:
    config = tmp_path / "stages-off.yaml"
    config.write_text(STAGES_OFF)
    location = database_at(home)
    proc, url = _start(home, fake_api.url, config)
    try:
        c = anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0)
        warm = c.messages.create(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "warm up"}]
        )
        assert warm.content
        db = connect(location)
        deadline = time.monotonic() + 20
        while db.scalar("SELECT COUNT(*) FROM calls") < 1:
            assert time.monotonic() < deadline, "the warm-up row was never written"
            time.sleep(0.02)
        ids = []
        # The database takes no write: each row can only be in the gateway's memory and
        # its journal when the process dies.
        with writes_held(location):
            raw = c.messages.with_raw_response.create(
                model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "one"}]
            )
            assert raw.parse().content
            ids.append(raw.headers["x-tars-opt-request-id"])
            with c.messages.with_streaming_response.create(
                model=MODEL,
                max_tokens=50,
                messages=[{"role": "user", "content": "two"}],
                stream=True,
            ) as streamed:
                assert b"message_stop" in streamed.read()
                ids.append(streamed.headers["x-tars-opt-request-id"])
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        # (On PostgreSQL the insert the dead process had waiting may still complete at the
        # server once the lock is gone: the replay then keeps that row and adds none.)
        (left,) = list((home / "journal").glob("*.jsonl"))
        assert len(left.read_text().splitlines()) == 2
    finally:
        _stop(proc)
    again, _ = _start(home, fake_api.url, config)
    try:
        deadline = time.monotonic() + 30
        while db.scalar("SELECT COUNT(*) FROM calls") < 3:
            assert time.monotonic() < deadline, "the journal was not replayed"
            time.sleep(0.05)
    finally:
        again.terminate()
        again.wait(timeout=30)
        _stop(again)
    rows = {r["request_id"]: r for r in db.query("SELECT * FROM calls")}
    assert len(rows) == 3 and set(ids) <= set(rows)
    for rid in ids:
        assert rows[rid]["error"] is None and rows[rid]["cost"] > 0
        assert rows[rid]["output_tokens"] > 0
    assert not left.exists()
    db.close()


def test_a_gateway_whose_postgresql_goes_away_answers_and_records_once_it_is_back(
    postgres, fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from tests import pgserver
    from tests.gateway.harness import serve

    server = pgserver.start(fsync=False)  # its own: this test stops it
    try:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE down")
        monkeypatch.setenv("TARS_OPT_DB", server.url_for("down"))
        with serve(fake_api.url, optimizer_timeout_s=0.5) as gw:
            c = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)
            c.messages.create(
                model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "warm up"}]
            )
            assert len(gw.rows()) == 1
            pgserver.halt(server)
            raw = c.messages.with_raw_response.create(
                model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "while down"}]
            )
            assert raw.parse().content and raw.headers["x-tars-opt-source"] == "unoptimized"
            rid = raw.headers["x-tars-opt-request-id"]
            assert gw.gateway.recorder.pending(rid)  # waiting for the server
            pgserver.resume(server)
            assert gw.gateway.recorder.flush(60.0), "the row did not land once the server was back"
            rows = gw.rows()
    finally:
        server.stop()
    assert len(rows) == 2 and rows[1]["request_id"] == rid and rows[1]["error"] is None
    assert "unoptimized" in rows[1]["decisions"] or "fail-open" in rows[1]["decisions"]
