"""How `queue list` and `queue show` show deferred tasks."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def tasks(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(
        "ticket",
        "state",
        "priority",
        "created (UTC)",
        "expected",
        "tries",
        "batch",
        "prompt",
        title="queue",
    )
    for r in rows:
        table.add_row(
            r["ticket"],
            r["state"],
            r["priority"],
            (r["created_at"] or "")[:16].replace("T", " "),
            (r["expected_at"] or "-")[5:16].replace("T", " "),
            str(r["attempts"]),
            (r["batch_id"] or "-")[-12:],
            (r["prompt"] or "")[:40].replace("\n", " "),
        )
    console.print(table)


def task(console: Console, view: dict[str, Any]) -> None:
    """Every field of one task, then its answer if it has one."""
    table = Table("field", "value", title=f"task {view['ticket']}")
    for key, value in view.items():
        if key != "result" and value is not None:
            table.add_row(key, str(value))
    console.print(table)
