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


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) readable by the user only; the ledger holds prompts.

    Every directory made here is 0700, the missing parents too (`mkdir(parents=True)`
    would give them the umask's default, usually 0755).
    """
    missing: list[Path] = []
    walk = path
    while not walk.exists() and walk != walk.parent:
        missing.append(walk)
        walk = walk.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    if not path.is_dir():
        path.mkdir(mode=0o700)  # raises the OSError that says why (a file is in the way)
    return path
