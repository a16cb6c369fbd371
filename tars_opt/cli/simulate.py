"""The `simulate` command: parse arguments, call tars_opt.sim.simulate, render. No logic here."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tars_opt.cli.common import ConfigOpt, JsonOpt, consoles, echo_json, friendly_errors
from tars_opt.cli.render import sim as render_sim
from tars_opt.config.loader import load_config
from tars_opt.errors import InputError
from tars_opt.sim.simulate import Progress as ProgressFn
from tars_opt.sim.simulate import SimResult, simulate
from tars_opt.sim.workload import load_workload
from tars_opt.store.sqlite import require_folder


@contextmanager
def _progress(label: str) -> Iterator[ProgressFn]:
    """A progress bar on stderr (silent when stderr is not a terminal)."""
    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _run(workload_path: Path | None, config: Path | None, db: Path | None, seed: int,
         label: str) -> SimResult:  # fmt: skip
    if db is not None:
        require_folder(db, f"--db {db}")
    workload = load_workload(workload_path, seed=seed)
    loaded = load_config(config)
    name = str(config) if config is not None else (
        str(loaded.path) if loaded.path else "shipped defaults"
    )  # fmt: skip
    with _progress(f"{label} {workload.name}") as update:
        return simulate(
            workload, loaded.config, db_path=db, seed=seed, config_name=name, on_progress=update
        )


def simulate_cmd(
    workload: Annotated[
        Path | None,
        typer.Option(
            "--workload",
            "-w",
            help="JSONL workload to replay (default: the bundled agent day, 404 calls).",
        ),
    ] = None,  # fmt: skip
    config: ConfigOpt = None,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db", help="Keep the simulated ledger in this SQLite file (default: a temporary one)."
        ),
    ] = None,  # fmt: skip
    seed: Annotated[
        int,
        typer.Option(
            help="Names the request ids (A/B holdout picks) and draws the times of "
            "conversations recorded without them."
        ),
    ] = 0,  # fmt: skip
    compare: Annotated[
        tuple[Path, Path] | None,
        typer.Option("--compare", help="Run the workload under two configs side by side."),
    ] = None,
    report: Annotated[
        bool, typer.Option("--report", help="Also write a Markdown report (reports.dir).")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Where --report writes.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """What would tars-opt save? Replay a workload offline and compare with the baseline.

    The workload runs through the whole chain on the offline backend (no API key) on a
    simulated clock.

    Example: [bold]tars-opt simulate --workload mine.jsonl --config candidate.yaml[/bold]
    """
    with friendly_errors():
        if compare is not None:
            if config is not None or db is not None:
                raise InputError("--compare runs two configs in two temporary databases: "
                                 "drop --config and --db")  # fmt: skip
            results = [_run(workload, c, None, seed, f"[{i + 1}/2]")
                       for i, c in enumerate(compare)]  # fmt: skip
        else:
            results = [_run(workload, config, db, seed, "simulating")]
        written = None
        if report:
            cfg = load_config(compare[0] if compare else config).config
            name = "SIMULATION_COMPARE.md" if compare else "SIMULATION.md"
            dest = out if out is not None else Path(cfg.reports.dir) / name
            written = render_sim.write_markdown(results, dest, time.time())
        if as_json:
            data = [r.to_dict() for r in results]
            payload: dict[str, Any] = {"results": data} if compare else data[0]
            if written:
                payload["report"] = str(written)
            echo_json(payload)
            return
        if compare:
            render_sim.compare(consoles.out, *results)
        else:
            render_sim.summary(consoles.out, results[0])
        if written:
            consoles.out.print(f"wrote {written}", markup=False)
