"""UTC time text: one format for rows, JSON, messages and the log file."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

import pytest

from tars_opt.logs import JsonFormatter
from tars_opt.timefmt import iso, iso_minute

MOMENT = datetime(2026, 11, 22, 13, 45, 7, 123_900, tzinfo=UTC).timestamp()


def test_iso_and_iso_minute() -> None:
    assert iso(MOMENT) == "2026-11-22T13:45:07.123Z"
    assert iso_minute(MOMENT) == "2026-11-22T13:45Z"
    assert iso(0) == "1970-01-01T00:00:00.000Z"


def test_the_log_file_writes_utc_whatever_the_local_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "EST+5")  # POSIX form: needs no tz database
    time.tzset()
    try:
        record = logging.makeLogRecord({"msg": "hello", "levelname": "INFO"})
        record.created = MOMENT
        line = json.loads(JsonFormatter().format(record))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert line["ts"] == "2026-11-22T13:45:07.123Z"
