"""How `router calibrate` shows a router's calibration table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def calibration(console: Console, result: dict[str, Any]) -> None:
    """The threshold -> strong share -> quality table of a router."""
    title = f"{result['router']} router calibration ({result['source']})"
    table = Table("threshold", "strong share", "expected quality", "gap recovered", title=title)
    for row in result["table"]:
        table.add_row(
            f"{row['threshold']:.2f}",
            f"{row['strong_share']:.0%}",
            f"{row['quality']:.3f}",
            f"{row['pgr']:.0%}",
        )
    console.print(table)
    if result.get("apgr") is not None:
        console.print(
            f"APGR {result['apgr']:.3f}  CPT(50%) {result['cpt50']:.0%}  "
            f"CPT(80%) {result['cpt80']:.0%}"
            + (f"  on {result['n']} prompts" if result.get("n") else "")
        )
