"""The off-peak window (UTC, may cross midnight) and durations like `30m` or `6h`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

DAY = 86_400.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 60.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY}


def parse_duration(text: str) -> float:
    """Seconds in `90s`, `30m`, `6h`, `2d` (a bare number means minutes).

    Raises ValueError with a one-line message naming the accepted forms.
    """
    m = _DURATION.match(text or "")
    if not m:
        raise ValueError(f"{text!r} is not a duration: use e.g. 30m, 6h or 2d")
    return float(m.group(1)) * _UNITS[m.group(2)]


def human_duration(seconds: float) -> str:
    """`3h12m`, `45m`, `20s`: short text for how long until something."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


@dataclass(frozen=True)
class Window:
    """A daily window in UTC, [start, end), as minutes after midnight.

    When `start > end` the window crosses midnight (22:00-04:00 is open from 22:00 to
    04:00 the next day). UTC has no daylight saving, so every day is 24 h long.
    """

    start_min: int
    end_min: int

    @classmethod
    def parse(cls, text: str) -> Window:
        """`HH:MM-HH:MM` (the config validates the format)."""
        start, end = text.strip().split("-")
        sh, sm = (int(x) for x in start.split(":"))
        eh, em = (int(x) for x in end.split(":"))
        return cls(sh * 60 + sm, eh * 60 + em)

    def __str__(self) -> str:
        return f"{_hhmm(self.start_min)}-{_hhmm(self.end_min)} UTC"

    @property
    def crosses_midnight(self) -> bool:
        return self.start_min > self.end_min

    def contains(self, ts: float) -> bool:
        """Whether the epoch time `ts` is inside the window."""
        minute = _minute_of_day(ts)
        if self.crosses_midnight:
            return minute >= self.start_min or minute < self.end_min
        return self.start_min <= minute < self.end_min

    def next_open(self, ts: float) -> float:
        """When the window next opens at or after `ts`; `ts` itself if it is open now."""
        if self.contains(ts):
            return ts
        day = _day_start(ts)
        opening = day + self.start_min * 60.0
        return opening if opening > ts else opening + DAY

    def hours(self) -> list[int]:
        """The UTC hours the window touches, for a cron trigger's `hour` field."""
        out: list[int] = []
        minute = self.start_min
        length = (self.end_min - self.start_min) % (24 * 60)
        for offset in range(0, length, 1):
            hour = ((minute + offset) // 60) % 24
            if not out or out[-1] != hour:
                out.append(hour)
        return sorted(set(out))


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _day_start(ts: float) -> float:
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def _minute_of_day(ts: float) -> int:
    return int((ts - _day_start(ts)) // 60)
