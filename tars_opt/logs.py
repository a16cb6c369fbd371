"""Logging: JSON lines to a file under the data dir, optionally echoed to stderr.

A filter scrubs the API key's value from every record, whatever logged it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from tars_opt.timefmt import iso

LOGGER_NAME = "tars_opt"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields."""

    _skip = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": iso(record.created),  # UTC whatever the machine's time zone
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update({k: v for k, v in vars(record).items() if k not in self._skip})
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:  # already formatted (and scrubbed) by SecretFilter
            data["exc"] = record.exc_text
        return json.dumps(data, default=str)


class SecretFilter(logging.Filter):
    """Replaces the value of each named environment variable with a marker."""

    def __init__(self, env_names: list[str]) -> None:
        super().__init__()
        self.env_names = env_names

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = [s for s in map(os.environ.get, self.env_names) if s and len(s) >= 8]
        if not secrets:
            return True
        if record.exc_info:  # a traceback can quote a value that held the key
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        for secret in secrets:
            record.msg = str(record.msg).replace(secret, "[REDACTED]")
            if record.args:
                record.args = tuple(str(a).replace(secret, "[REDACTED]") for a in record.args)
            # `extra` fields and the formatted traceback too, not only the message.
            for key, value in list(vars(record).items()):
                if isinstance(value, str) and secret in value:
                    setattr(record, key, value.replace(secret, "[REDACTED]"))
        return True


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each record (it may be swapped)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def private_file(path: Path) -> Path:
    """Create `path` user-only (0600) if missing, and take group/other access off an
    existing one: logs carry prompts' ids, models and errors."""
    os.close(os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600))
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o600)
    return path


def setup_logging(
    data_dir: Path,
    *,
    level: str = "INFO",
    verbose: bool = False,
    key_env: str = "ANTHROPIC_API_KEY",
) -> logging.Logger:
    """Send tars-opt's logs to <data_dir>/logs/tars-opt.log (and stderr with `verbose`).

    Replaces the handlers an earlier call attached, so a process that opens several data
    dirs logs to the last one only.
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG if verbose else level)
    for old in [h for h in logger.handlers if getattr(h, "_tars_opt", False)]:
        logger.removeHandler(old)
        old.close()
    # The data dir exists (the app made it, user-only); the logs folder is ours to make.
    folder = data_dir / "logs"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_file = private_file(folder / "tars-opt.log")
    handlers: list[logging.Handler] = [logging.FileHandler(log_file, encoding="utf-8")]
    if verbose:
        handlers.append(_CurrentStderr())
    secrets = SecretFilter([key_env, "ANTHROPIC_API_KEY"])
    for handler in handlers:
        handler.setFormatter(JsonFormatter())
        handler.addFilter(secrets)
        handler._tars_opt = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    return logger
