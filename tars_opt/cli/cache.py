"""`tars-opt cache ...`: inspect, prune and calibrate the response cache."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from tars_opt.cache.store import CacheStore, summary
from tars_opt.cli.common import (
    ConfigOpt,
    DbOpt,
    JsonOpt,
    OfflineOpt,
    VerboseOpt,
    check_query_type,
    consoles,
    echo_json,
    friendly_errors,
    load_checked,
    open_app,
    print_config_line,
    print_footer,
)
from tars_opt.cli.render import cache as render
from tars_opt.errors import InputError
from tars_opt.plural import counted
from tars_opt.types import QUERY_TYPES

app = typer.Typer(
    help="The response cache: stats, entries, forgetting, calibration.", no_args_is_help=True
)


def _entries(count: int, what: str = "") -> str:
    """`1 entry`, `3 fact entries`."""
    return counted(count, f"{what.strip()} entry".strip(), f"{what.strip()} entries".strip())


@app.command("stats")
def stats(
    days: Annotated[float, typer.Option(help="Hit rate over the last N days.", min=0)] = 30,
    include_offline: OfflineOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Entries, size, hit rate by query type, tokens and dollars saved, top entries.

    Calls the offline backend answered are left out of the hit rates unless
    --include-offline.

    Example: [bold]tars-opt cache stats --days 7[/bold]
    """
    with friendly_errors():
        now = time.time()
        opened = open_app(config, db, verbose, include_offline=include_offline)
        data = summary(CacheStore(opened.db), now, now - days * 86400,
                       include_offline=opened.config.counts_offline())  # fmt: skip
        if as_json:
            echo_json(data)
            return
        render.cache_stats(consoles.out, data, now)
        print_footer(opened, what=f" in the last {days:g} days",
                     left_out=data["offline_left_out"])  # fmt: skip


@app.command("list")
def list_entries(
    n: Annotated[int, typer.Option("-n", help="How many entries, newest first.", min=1)] = 20,
    query_type: Annotated[str | None, typer.Option("--type", help="Only this query type.")] = None,
    namespace: Annotated[str | None, typer.Option(help="Only this namespace.")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """List stored answers, newest first.

    Example: [bold]tars-opt cache list -n 10 --type fact[/bold]
    """
    with friendly_errors():
        check_query_type(query_type)
        opened = open_app(config, db, verbose)
        rows = CacheStore(opened.db).listing(limit=n, query_type=query_type, namespace=namespace)
        if as_json:
            echo_json(rows)
            return
        render.cache_entries(consoles.out, rows, time.time(), "cached answers")
        print_footer(opened)


@app.command("show")
def show(
    entry_id: Annotated[int, typer.Argument(help="Entry id (from `cache list`).")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Show one entry: prompt, answer, expiry, and every answer it served (with similarity).

    Example: [bold]tars-opt cache show 42[/bold]
    """
    with friendly_errors():
        opened = open_app(config, db, verbose)
        store = CacheStore(opened.db)
        entry = store.get(entry_id)
        if entry is None:
            raise InputError(f"no cache entry {entry_id}: see `tars-opt cache list`")
        hits = store.hits_of(entry_id)
        if as_json:
            data = asdict(entry)
            data["usage"] = entry.usage.to_api()
            echo_json({"entry": data, "served": hits})
            return
        render.cache_entry(consoles.out, entry, hits, time.time())
        print_footer(opened)


@app.command("forget")
def forget(
    entry_id: Annotated[int | None, typer.Argument(help="Entry id to forget.")] = None,
    match: Annotated[
        str | None, typer.Option("--match", help="Forget every entry whose prompt has this text.")
    ] = None,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Forget one entry (e.g. a bad hit found in the ledger) or all whose prompt matches.

    Example: [bold]tars-opt cache forget 42[/bold] (or --match refund)
    """
    with friendly_errors():
        if (entry_id is None) == (match is None):
            raise InputError("give an entry id or --match TEXT (one of them)")
        if match is not None and not match.strip():
            raise InputError("--match needs some text")
        opened = open_app(config, db, verbose)
        store = CacheStore(opened.db)
        if entry_id is not None:
            if not store.delete(entry_id):
                raise InputError(f"no cache entry {entry_id}: see `tars-opt cache list`")
            consoles.out.print(f"forgot entry {entry_id}")
        else:
            count = store.delete_matching(match or "")
            consoles.out.print(f"forgot {_entries(count)} matching {match!r}", markup=False)
        print_footer(opened)


@app.command("clear")
def clear(
    query_type: Annotated[str | None, typer.Option("--type", help="Only this query type.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Clear without asking.")] = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Forget every cached answer, or those of one query type (asks first; --yes skips it).

    Example: [bold]tars-opt cache clear --type fact[/bold]
    """
    with friendly_errors():
        check_query_type(query_type)
        what = f" {query_type}" if query_type else ""
        if not yes and not sys.stdin.isatty():
            raise InputError(
                "cache clear needs confirmation and nobody is at a terminal to give it: "
                "add --yes to clear without asking"
            )
        opened = open_app(config, db, verbose)
        store = CacheStore(opened.db)
        if not yes:
            entries = store.count(query_type)
            asked = counted(entries, f"{what.strip()} cached answer".strip())
            if not typer.confirm(f"forget {asked}?", default=False):
                consoles.out.print("canceled: nothing forgotten", markup=False)
                raise typer.Exit(1)
        count = store.clear(query_type)
        consoles.out.print(f"forgot {_entries(count, what)}")
        print_footer(opened)


@app.command("calibrate")
def calibrate(
    pairs: Annotated[Path, typer.Option("--pairs", help="TSV: text1, text2, label (0/1).")],
    query_types: Annotated[
        list[str] | None, typer.Option("--type", help="Calibrate only this type (repeatable).")
    ] = None,
    target: Annotated[
        float | None,
        typer.Option(help="False-hit rate to stay within (default: the config's, per type)."),
    ] = None,
    no_guards: Annotated[
        bool, typer.Option("--no-guards", help="Measure without the guards.")
    ] = False,
    write: Annotated[
        bool, typer.Option("--write", help="Save the thresholds into the config file.")
    ] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Calibrate the semantic thresholds on labelled pairs; print precision and recall.

    Each threshold becomes the lowest value whose false-hit rate on the pairs stays within
    the target.

    Example: [bold]tars-opt cache calibrate --pairs qqp/calibration.tsv --write[/bold]
    """
    with friendly_errors():
        from tars_opt.cache import calibrate as cal

        for kind in query_types or []:
            check_query_type(kind)
        if target is not None and not 0 <= target < 1:
            raise InputError(f"--target {target} must be in [0, 1), e.g. 0.01 for 1%")
        loaded = load_checked(config)
        if write and loaded.path is None:
            raise InputError(
                "no config file to write the thresholds to: create one with "
                "`tars-opt config init` or pass --config"
            )
        data = cal.read_pairs(pairs)
        rows = cal.calibrate_thresholds(
            loaded.config.cache.semantic,
            data,
            cal.calibration_embedder(),
            query_types or QUERY_TYPES,
            target=target,
            guards=loaded.config.cache.semantic.guards and not no_guards,
        )
        if write:
            assert loaded.path is not None
            cal.write_thresholds(loaded.path, {r["type"]: r["threshold"] for r in rows})
        if as_json:
            echo_json({"pairs": len(data), "results": rows})
        else:
            render.calibration(consoles.out, rows, len(data))
            if write:
                consoles.out.print(f"wrote thresholds to {loaded.path}", markup=False)
            print_config_line(loaded)
