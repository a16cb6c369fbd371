"""What the wheel ships besides the code."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_py_typed_marker_is_shipped() -> None:
    # PEP 561: without the marker in the wheel, type checkers ignore tars_opt's annotations.
    assert (ROOT / "tars_opt" / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["tars_opt"]
