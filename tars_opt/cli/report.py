"""`report`: a Markdown benchmark report with PNG charts beside it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from tars_opt.cli.common import (
    ConfigOpt,
    DbOpt,
    FromOpt,
    JsonOpt,
    OfflineOpt,
    ToOpt,
    VerboseOpt,
    consoles,
    echo_json,
    friendly_errors,
    open_app,
    parse_day,
    print_footer,
)
from tars_opt.errors import InputError
from tars_opt.monitor.report import final_spec, phase_spec, range_spec, week_spec, write_report


def report(
    phase: Annotated[int | None, typer.Option(help="Phase number from the config.")] = None,
    week: Annotated[bool, typer.Option("--week", help="The last full ISO week.")] = False,
    final: Annotated[bool, typer.Option("--final", help="First phase start to last end.")] = (
        False
    ),
    first: FromOpt = None,
    last: ToOpt = None,
    out: Annotated[Path | None, typer.Option(help="Markdown file to write.")] = None,
    include_offline: OfflineOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Write a Markdown benchmark report with PNG charts beside it.

    Calls the offline backend answered are left out unless --include-offline; the report
    says how many.

    Example: [bold]tars-opt report --phase 2[/bold]  (writes reports/PHASE_2_BENCHMARK.md)
    """
    with friendly_errors():
        chosen = sum([phase is not None, week, final, first is not None or last is not None])
        if chosen != 1:
            raise InputError("choose one of --phase N, --week, --final, or --from/--to")
        opened = open_app(config, db, verbose, include_offline=include_offline)
        now = time.time()
        if phase is not None:
            spec = phase_spec(opened.db, opened.config, phase)
        elif week:
            spec = week_spec(now)
        elif final:
            spec = final_spec(opened.db, opened.config)
        else:
            if first is None or last is None:
                raise InputError("--from and --to go together: give both days")
            spec = range_spec(parse_day("--from", first), parse_day("--to", last))
        result = write_report(opened.db, opened.config, spec, now=now, out=out,
                              config_label=opened.loaded.label)  # fmt: skip
        data = {
            "report": str(result.path),
            "charts": [str(c) for c in result.charts],
            "period": {"first": str(spec.first), "last": str(spec.last), "why": spec.why},
            "baseline": result.baseline.describe() if result.baseline else None,
            "targets_met": result.passed,
            "targets_judged": result.judged,
            "targets_without_data": result.no_data,
            "targets_without_baseline": result.no_baseline,
            "offline_left_out": result.offline_left_out,
        }
        if as_json:
            echo_json(data)
            return
        met = ""
        if result.targets or result.no_baseline:
            unjudged = f", {result.no_data} without data" if result.no_data else ""
            if result.no_baseline:
                unjudged += (f"; {result.no_baseline} plan-example targets not judged: no "
                             "baseline of yours")  # fmt: skip
            met = f" (targets met: {result.passed} of {result.targets}{unjudged})"
        consoles.out.print(
            f"wrote {result.path}{met}; charts: " + ", ".join(c.name for c in result.charts),
            markup=False,
        )
        print_footer(opened, left_out=result.offline_left_out)
