"""Formats every command shares: --json output, money, shares, the footer line."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from tars_opt.plural import counted


def to_json(
    data: Any, *, indent: int | None = 2, default: Callable[[Any], Any] | None = None
) -> str:
    """What `--json` prints: every float rounded to 10 significant digits or to 1e-9,
    whichever keeps more (2.2800000000000002e-05 prints as 2.28e-05, $1234.5678901234 as
    1234.567890123), so a sum of printed parts is within 1e-9 per part of the printed
    total."""
    return json.dumps(_rounded(data), indent=indent, default=default)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            return value
        significant, fixed = float(f"{value:.10g}"), round(value, 9)
        return fixed if abs(fixed - value) < abs(significant - value) else significant
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def footer(config: str, offline_excluded: int = 0, what: str = "") -> str:
    """The last line of a figures command: the config file read and, when some exist, how
    many offline-backend calls the figures leave out."""
    line = f"config: {config}"
    if offline_excluded:
        line += (
            f" | not counted: {counted(offline_excluded, 'offline-backend call')}{what} "
            "(--include-offline counts them)"
        )
    return line
