"""Logging: JSON lines to a file under the data dir, optionally echoed to stderr.

A filter scrubs the API key's value from every record, whatever logged it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from tars_opt.paths import ensure_private_dir

LOGGER_NAME = "tars_opt"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields."""

    _skip = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update({k: v for k, v in vars(record).items() if k not in self._skip})
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class SecretFilter(logging.Filter):
    """Replaces the value of each named environment variable with a marker."""

    def __init__(self, env_names: list[str]) -> None:
        super().__init__()
        self.env_names = env_names

    def filter(self, record: logging.LogRecord) -> bool:
        for name in self.env_names:
            secret = os.environ.get(name)
            if secret and len(secret) >= 8:
                record.msg = str(record.msg).replace(secret, "[REDACTED]")
                if record.args:
                    record.args = tuple(str(a).replace(secret, "[REDACTED]") for a in record.args)
        return True


def setup_logging(
    data_dir: Path,
    *,
    level: str = "INFO",
    verbose: bool = False,
    key_env: str = "ANTHROPIC_API_KEY",
) -> logging.Logger:
    """Attach the file (and with `verbose`, stderr) handlers once per log file."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG if verbose else level)
    log_dir = ensure_private_dir(data_dir / "logs")
    path = str(log_dir / "tars-opt.log")
    attached = {getattr(h, "baseFilename", None) for h in logger.handlers}
    if os.path.abspath(path) not in attached:
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(JsonFormatter())
        handler.addFilter(SecretFilter([key_env, "ANTHROPIC_API_KEY"]))
        logger.addHandler(handler)
        if verbose:
            echo = logging.StreamHandler()
            echo.setFormatter(JsonFormatter())
            echo.addFilter(SecretFilter([key_env, "ANTHROPIC_API_KEY"]))
            logger.addHandler(echo)
    return logger
