"""Calibration tables on disk: which threshold gives which strong share and quality.

A table is made on labelled data (`tars-opt router calibrate --data FILE --save`, or the
build script for the shipped router). The user's saved table (in the data dir) wins over
the shipped one. A heuristic table is only valid for the weights it was made with, so
tables carry them and a mismatch is an error rather than a silently wrong threshold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tars_opt.config.schema import Config
from tars_opt.errors import ConfigError
from tars_opt.store.files import atomic_write_text

DATA = Path(__file__).resolve().parent.parent / "data"
SHIPPED_HEURISTIC = DATA / "router_heuristic_calibration.json"
USER_FILE = "router-calibration.json"


def user_path(config: Config) -> Path:
    return config.resolved_data_dir() / USER_FILE


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"calibration file {path} is unreadable ({exc}): delete it and run "
            "`tars-opt router calibrate --data FILE --save` again"
        ) from None
    return data if isinstance(data, dict) else {}


def save_table(config: Config, router: str, entry: dict[str, Any]) -> Path:
    """Store `entry` (with its `table`) as the user's calibration for `router`."""
    path = user_path(config)
    data = _read(path)
    data[router] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1))
    return path


def heuristic_table(config: Config) -> tuple[list[dict[str, float]], str]:
    """The heuristic's calibration rows and where they came from."""
    weights = config.routing.heuristic.weights.model_dump()
    for path in (user_path(config), SHIPPED_HEURISTIC):
        entry = _read(path).get("heuristic")
        if entry and entry.get("weights") == weights:
            return entry["table"], str(path)
    raise ConfigError(
        "routing.strong_share/quality_target need a calibration made with the current "
        "routing.heuristic.weights: run `tars-opt router calibrate --data FILE --save`"
    )


def learned_table(
    config: Config, model_id: str, shipped: list[dict[str, float]]
) -> tuple[list[dict[str, float]], str]:
    """The learned router's rows: the user's saved ones for this model, else its own."""
    entry = _read(user_path(config)).get("learned")
    if entry and entry.get("model_id") == model_id:
        return entry["table"], str(user_path(config))
    return shipped, "the router file"
