"""Budget reservations under concurrency, the block policy, threshold alerts and channels."""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from tars_opt import Request, open_app
from tars_opt.accounting.alerts import Alert, Alerter, alerts_between
from tars_opt.accounting.budget import Budget
from tars_opt.backends.offline import OfflineBackend
from tars_opt.cli.main import app
from tars_opt.config.schema import AlertsConfig
from tars_opt.errors import BudgetExceeded
from tests.handmade import add_call


def write_config(path: Path, **sections) -> Path:
    # Lazy loading stays on: under warn and block the budget must not queue anything.
    path.write_text(yaml.safe_dump({"backend": "offline", **sections}))
    return path


def _worker(config: str, n: int, out) -> None:  # runs in a child process
    opened = open_app(config)
    opt = opened.optimizer()
    done = refused = 0
    for i in range(n):
        try:
            opt.ask(
                Request.from_prompt(
                    f"Explain topic {i} of worker {mp.current_process().pid}",
                    max_tokens=300,
                    model="claude-sonnet-5-5",  # forced: routing must not shrink the cost
                )
            )
            done += 1
        except BudgetExceeded:
            refused += 1
    out.put((done, refused))


def test_eight_concurrent_processes_never_overshoot_a_blocking_budget(tmp_path: Path) -> None:
    # Each call reserves ~$0.0031 (sonnet, 300 output tokens max): $0.05 fits about 15.
    config = write_config(
        tmp_path / "c.yaml",
        database=str(tmp_path / "b.db"),
        budget={"monthly_usd": 0.05, "policy": "block", "alert_at": [1.0]},
    )
    open_app(config)  # create and migrate once
    # fork: the children start in milliseconds; each opens its own connection.
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(config), 6, out)) for _ in range(8)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    done = sum(r[0] for r in results)
    refused = sum(r[1] for r in results)
    assert done + refused == 48 and refused > 0 and done > 5
    db = open_app(config).db
    spent = db.execute("SELECT SUM(cost), COUNT(*) FROM calls").fetchone()
    assert spent[1] == done
    assert spent[0] <= 0.05
    assert db.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 0


def test_block_refuses_non_urgent_with_exit_3_and_lets_urgent_through(
    tmp_path: Path, runner
) -> None:
    config = write_config(tmp_path / "c.yaml", budget={"monthly_usd": 1, "policy": "block"})
    db = open_app(config).db
    add_call(db, time.time(), cost=1.5)
    result = runner.invoke(app, ["ask", "-c", str(config), "hello"])
    assert result.exit_code == 3
    assert "monthly budget reached" in result.output and "--urgent" in result.output
    assert db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 1  # nothing recorded
    urgent = runner.invoke(app, ["ask", "-c", str(config), "--urgent", "hello"])
    assert urgent.exit_code == 0, urgent.output


def test_warn_policy_answers_and_raises_each_threshold_once(tmp_path: Path, runner) -> None:
    config = write_config(tmp_path / "c.yaml", budget={"monthly_usd": 1})
    db = open_app(config).db
    add_call(db, time.time(), cost=0.85)
    first = runner.invoke(app, ["ask", "-c", str(config), "hello"])
    assert first.exit_code == 0
    keys = [r[0] for r in db.execute("SELECT key FROM alerts ORDER BY key")]
    assert keys == ["budget:50", "budget:80"]
    assert "tars-opt WARNING: 85% of the $1.00 monthly budget spent" in first.stderr
    again = runner.invoke(app, ["ask", "-c", str(config), "hello again"])
    assert again.exit_code == 0
    assert db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0] == 2


def test_budget_state_for_the_defer_stage(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", budget={"monthly_usd": 1, "policy": "defer"})
    opened = open_app(config)
    clock = lambda: 1_771_000_000.0  # noqa: E731
    assert not Budget(opened.config, opened.db, clock=clock).state().defer_all
    add_call(opened.db, 1_771_000_000.0 - 10, cost=1.2)
    state = Budget(opened.config, opened.db, clock=clock).state()
    assert state.over and state.defer_all and state.used_share == pytest.approx(1.2)


def test_estimate_is_an_upper_bound_of_the_actual_cost(tmp_path: Path) -> None:
    opened = open_app(write_config(tmp_path / "c.yaml"))
    opt = opened.optimizer(backend=OfflineBackend())
    prepared = opt.prepare(Request.from_prompt("Write a poem about the sea " * 20, max_tokens=600))
    estimate = opt.budget.estimate(prepared)
    reply = opt.finish(prepared, opt.backend.send(prepared.params))
    assert 0 < reply.cost <= estimate


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook():
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Hook.received
    server.shutdown()
    server.server_close()


def test_alert_goes_to_stderr_log_webhook_and_command_once(tmp_path: Path, webhook) -> None:
    url, received = webhook
    marker = tmp_path / "cmd.json"
    script = tmp_path / "save.py"
    script.write_text(f"import sys; open({str(marker)!r}, 'w').write(sys.stdin.read())")
    cfg = AlertsConfig(webhook_url=url, command=f"{sys.executable} {script}")
    opened = open_app()
    err = io.StringIO()
    alerter = Alerter(cfg, opened.db, clock=lambda: 1000.0, stderr=err)
    alert = Alert("budget:80", "warning", "80% of the budget spent", "2026-11", {"x": 1})
    assert alerter.raise_once(alert) is True
    assert alerter.raise_once(alert) is False  # once per period
    assert err.getvalue() == "tars-opt WARNING: 80% of the budget spent\n"
    assert received == [alert.payload()]
    assert received[0]["text"] == "[tars-opt] WARNING: 80% of the budget spent"
    assert json.loads(marker.read_text())["key"] == "budget:80"
    log = (opened.config.resolved_data_dir() / "logs" / "tars-opt.log").read_text()
    assert "80% of the budget spent" in log
    rows = alerts_between(opened.db, 0, 2000)
    assert rows[0]["delivery"] == {"stderr": "ok", "log": "ok", "webhook": "ok", "command": "ok"}
    # A new period raises it again.
    assert alerter.raise_once(Alert("budget:80", "warning", "again", "2026-12")) is True


def test_failing_channels_are_noted_not_raised(tmp_path: Path) -> None:
    cfg = AlertsConfig(
        webhook_url="http://127.0.0.1:9/nothing", command="/nonexistent/cmd", timeout_s=2
    )
    opened = open_app()
    alerter = Alerter(cfg, opened.db, stderr=io.StringIO())
    assert alerter.raise_once(Alert("k", "critical", "m", "p"))
    row = alerts_between(opened.db, 0, 1e12)[0]
    assert row["delivery"]["webhook"].startswith("error")
    assert row["delivery"]["command"].startswith("error")
