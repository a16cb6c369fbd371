"""Alerts: each raised once per period, to stderr, the log, and optionally a webhook and/or
a command.

The `alerts` table makes "once" hold across processes: a row (key, period) is inserted
before anything is sent, and only the process whose insert succeeded delivers it. A channel
that fails is logged and noted on the row; it never fails the caller.
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from tars_opt.config.schema import AlertsConfig
from tars_opt.store.database import Database
from tars_opt.timefmt import iso

log = logging.getLogger("tars_opt.alerts")
LEVELS = ("info", "warning", "critical")


@dataclass(frozen=True)
class Alert:
    """One condition worth telling a human about."""

    key: str  # what it is about, e.g. "budget:80" or "regression:daily_cost_usd"
    level: str  # info | warning | critical
    message: str  # one line, says what and what to do
    period: str  # the period it is raised once in, e.g. "2026-11" or "2026-11-21"
    data: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        """The Slack-compatible one-liner."""
        return f"[tars-opt] {self.level.upper()}: {self.message}"

    def payload(self) -> dict[str, Any]:
        return {
            "text": self.text(),
            "level": self.level,
            "key": self.key,
            "period": self.period,
            "message": self.message,
            "data": self.data,
        }


def month_period(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m")


def day_period(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def week_period(now: float) -> str:
    year, week, _ = datetime.fromtimestamp(now, UTC).isocalendar()
    return f"{year}-W{week:02d}"


class Alerter:
    """Raises alerts once per (key, period) and sends them to the configured channels."""

    def __init__(
        self,
        config: AlertsConfig,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        stderr: TextIO | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self._stderr = stderr

    def raise_once(self, alert: Alert) -> bool:
        """Record and deliver `alert` unless it was already raised this period; True if sent."""
        if alert.level not in LEVELS:
            raise ValueError(f"alert level {alert.level!r} is not one of {LEVELS}")
        now = self.clock()
        row = {"key": alert.key, "period": alert.period, "ts": now, "ts_iso": iso(now),
               "level": alert.level, "message": alert.message,
               "data": json.dumps(alert.data, default=str)}  # fmt: skip
        # Another process (or host) raising the same alert first wins: sent once.
        if self.db.insert_many("alerts", [row], on_conflict="ignore") == 0:
            return False
        delivery = self.deliver(alert)
        self.db.execute(
            "UPDATE alerts SET delivery = ? WHERE key = ? AND period = ?",
            [json.dumps(delivery), alert.key, alert.period],
        )
        return True

    def deliver(self, alert: Alert) -> dict[str, str]:
        """Send to every channel; return each channel's outcome ("ok" or the error)."""
        out: dict[str, str] = {}
        stream = self._stderr if self._stderr is not None else sys.stderr
        print(f"tars-opt {alert.level.upper()}: {alert.message}", file=stream, flush=True)
        out["stderr"] = "ok"
        level = {"info": logging.INFO, "warning": logging.WARNING}.get(alert.level, logging.ERROR)
        log.log(level, alert.message, extra={"alert": alert.key, "period": alert.period})
        out["log"] = "ok"
        if self.config.webhook_url:
            out["webhook"] = self._post(alert)
        if self.config.command:
            out["command"] = self._run(alert)
        return out

    def _post(self, alert: Alert) -> str:
        url = self.config.webhook_url or ""
        body = json.dumps(alert.payload(), default=str).encode()
        req = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.config.timeout_s) as resp:
                resp.read()
            return "ok"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # URLs may carry a token (Slack's do): log the host only.
            host = urllib.parse.urlsplit(url).netloc
            log.warning("alert webhook failed", extra={"host": host, "error": str(exc)})
            return f"error: {exc}"

    def _run(self, alert: Alert) -> str:
        argv = shlex.split(self.config.command or "")
        try:
            done = subprocess.run(
                argv,
                input=json.dumps(alert.payload(), default=str),
                text=True,
                capture_output=True,
                timeout=self.config.timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("alert command failed", extra={"error": str(exc)})
            return f"error: {exc}"
        if done.returncode != 0:
            log.warning("alert command failed", extra={"exit": done.returncode})
            return f"error: exit {done.returncode}"
        return "ok"


def alerts_between(db: Database, start: float, end: float) -> list[dict[str, Any]]:
    """Alerts raised between two epoch times, oldest first."""
    rows = db.query("SELECT * FROM alerts WHERE ts >= ? AND ts < ? ORDER BY ts, id", [start, end])
    return [{**r, "data": json.loads(r["data"]), "delivery": json.loads(r["delivery"])}
            for r in rows]  # fmt: skip
