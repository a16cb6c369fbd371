"""Traffic capture (gateway.capture): each POST /v1/messages the gateway answers, appended
as a workload request record that `tars-opt simulate --workload FILE` replays.

One JSON line per request in `<data_dir>/capture/<UTC date>.jsonl` (readable by the user
only): the body as the client sent it, the time it came, the x-tars-opt-* controls, and
the answer's content when there is one. No header value other than the controls is
kept: never the API key or an Authorization header. A write that fails is logged once
and the calls go on.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tars_opt.timefmt import iso

log = logging.getLogger("tars_opt.gateway")


@dataclass(frozen=True)
class Seen:
    """A request as it came in, waiting for its answer to be captured with it."""

    time: float
    body: dict[str, Any]
    controls: dict[str, Any]


class Capture:
    """Appends request records to the day's capture file; thread-safe."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._warned = False

    def seen(self, body: dict[str, Any], controls: dict[str, Any]) -> Seen:
        return Seen(time.time(), body, dict(controls))

    def path(self, when: float) -> Path:
        """The file a request seen at `when` goes to (one per UTC day)."""
        return self.folder / f"{datetime.fromtimestamp(when, UTC):%Y-%m-%d}.jsonl"

    def write(self, seen: Seen, answer: Sequence[dict[str, Any]] | None) -> None:
        """Append `seen` (and its answer, if any) as one request record."""
        record: dict[str, Any] = {"time": iso(seen.time), "request": seen.body}
        if seen.controls:
            record["controls"] = seen.controls
        if answer:
            record["answer"] = [dict(b) for b in answer]
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")
        dest = self.path(seen.time)
        try:
            with self._lock:
                self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(dest, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning(
                    "capture write failed; requests go on uncaptured",
                    extra={"path": str(dest), "error": exc.strerror or repr(exc)},
                )
