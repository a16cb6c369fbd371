"""How every command, report, chart and dashboard writes an amount of US dollars."""

from __future__ import annotations

import math


def usd(value: float) -> str:
    """Dollars as tars-opt shows them everywhere.

    From $1 up: two decimals and thousands separators ($1,234.50). Below $1: four decimals,
    or two significant digits where four decimals would show fewer, so a single cheap call
    is never shown as $0.0000 ($0.0644, $0.0042, $0.00012; zero is $0.0000).
    """
    if abs(value) >= 1 or not math.isfinite(value):
        return f"${value:,.2f}"
    if value == 0:
        return "$0.0000"
    return f"${value:.{max(4, 1 - math.floor(math.log10(abs(value))))}f}"
