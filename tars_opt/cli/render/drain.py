"""How `drain` tells what one run did."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from tars_opt.plural import counted
from tars_opt.timefmt import iso_minute


def drain_report(console: Console, report: Any, now: float) -> None:
    """What one `drain` did, in a few lines."""
    from tars_opt.defer.window import human_duration

    if report.forced and not report.in_window:
        console.print(
            f"outside the off-peak window {report.window}: submitting anyway (--now)"
            + ("" if report.claimed else "; nothing was queued"),
            markup=False,
        )
    elif not report.in_window and report.opens_at is not None and not report.submitted:
        console.print(
            f"outside the off-peak window {report.window}: it opens at "
            f"{iso_minute(report.opens_at)} (in {human_duration(report.opens_at - now)}); "
            "nothing submitted (use --now to submit anyway)",
            markup=False,
        )
    rec = report.to_dict()["recovered"]
    if any(rec.values()):
        console.print(
            f"recovered: {rec['released_claims']} claims released, "
            f"{len(rec['adopted_batches'])} unrecorded batches found again, "
            f"{rec['abandoned_submissions']} lost submissions requeued, "
            f"{rec['uncertain_submissions']} still uncertain",
            markup=False,
        )
    if report.outcomes:
        parts = ", ".join(f"{n} {k}" for k, n in sorted(report.outcomes.items()))
        console.print(f"collected: {parts}", markup=False)
    if report.claimed:
        console.print(
            f"claimed {counted(report.claimed, 'task')}: {report.answered_in_prepare} answered "
            "by the chain, "
            f"{sum(b['requests'] for b in report.submitted)} submitted in "
            f"{counted(len(report.submitted), 'batch', 'batches')}",
            markup=False,
        )
    for b in report.submitted:
        console.print(
            f"  {b['batch_id']}  {b['model']}  {counted(b['requests'], 'request')}", markup=False
        )
    for err in report.submit_errors:
        console.print(f"submit failed: {err}", style="red", markup=False)
    console.print(f"batches in flight: {report.in_flight}", style="dim", markup=False)
