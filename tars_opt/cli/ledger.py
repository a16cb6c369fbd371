"""`costs` (spend against the budget) and `log` (recent calls, or the ledger as a trace)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from tars_opt.accounting.ledger import Periods
from tars_opt.cli.common import (
    ConfigOpt,
    DbOpt,
    JsonOpt,
    OfflineOpt,
    VerboseOpt,
    consoles,
    echo_json,
    friendly_errors,
    open_app,
    print_footer,
)
from tars_opt.cli.render import ledger as render
from tars_opt.monitor.metrics import spend_summary
from tars_opt.plural import counted


def costs(
    include_offline: OfflineOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Spend today, this week and this month against the budget, by model and by source.

    Calls the offline backend answered are left out unless --include-offline.

    Example: [bold]tars-opt costs[/bold]
    """
    with friendly_errors():
        opened = open_app(config, db, verbose, include_offline=include_offline)
        now = time.time()
        summary = spend_summary(
            opened.ledger,
            now,
            opened.config.budget.monthly_usd,
            include_offline=opened.config.counts_offline(),
        )
        if as_json:
            echo_json(summary.to_dict())
            return
        render.spend(consoles.out, summary)
        print_footer(opened, (Periods.at(now).month, now + 1), " this month")


def log(
    n: Annotated[int, typer.Option("-n", help="How many recent calls.", min=1)] = 20,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            help="Write the whole ledger as a JSONL trace for "
            "`tars-opt simulate --workload` (prompts only if stored).",
        ),
    ] = None,  # fmt: skip
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """List recent calls from the ledger, newest first; or export it as a replayable trace.

    Example: [bold]tars-opt log -n 5 --json[/bold]; [bold]tars-opt log --export mine.jsonl[/bold]
    """
    with friendly_errors():
        opened = open_app(config, db, verbose)
        if export is not None:
            from tars_opt.sim.workload import export_ledger

            done = export_ledger(opened.db, export)
            data = {"path": str(done.path), "calls": done.written,
                    "without_prompt": done.no_prompt}  # fmt: skip
            if as_json:
                echo_json(data)
                return
            skipped = (f"; {done.no_prompt} without a stored prompt left out "
                       "(ledger.store_prompts)") if done.no_prompt else ""  # fmt: skip
            consoles.out.print(
                f"wrote {counted(done.written, 'call')} to {done.path}{skipped}\n"
                f"replay them: tars-opt simulate --workload {done.path} --config candidate.yaml",
                markup=False,
            )
            print_footer(opened)
            return
        rows = opened.ledger.recent(n)
        if as_json:
            echo_json(rows)
            return
        render.calls(consoles.out, rows)
        print_footer(opened)
