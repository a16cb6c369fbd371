"""Where tars-opt keeps its files."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def default_data_dir() -> Path:
    """TARS_OPT_HOME if set, else the user's data directory for tars-opt."""
    home = os.environ.get("TARS_OPT_HOME")
    if home:
        return Path(home).expanduser()
    return Path(platformdirs.user_data_dir("tars-opt", appauthor=False))
