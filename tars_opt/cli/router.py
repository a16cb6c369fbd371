"""`tars-opt router ...`: train the learned router and calibrate routing thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tars_opt.cli.common import (
    ConfigOpt,
    JsonOpt,
    consoles,
    echo_json,
    friendly_errors,
    load_checked,
    print_config_line,
)
from tars_opt.cli.render import router as render
from tars_opt.errors import InputError

app = typer.Typer(
    help="Train the learned router and calibrate routing thresholds.", no_args_is_help=True
)

RouterOpt = Annotated[
    str | None, typer.Option("--router", help="heuristic|learned (default: routing.router).")
]


@app.command("train")
def router_train(
    data: Annotated[Path, typer.Option("--data", help="Labelled prompts (JSONL).")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Router file (default: in the data dir).")
    ] = None,
    layer: Annotated[
        int | None,
        typer.Option(
            "--layer",
            min=0,
            max=6,
            help="MiniLM layer whose hidden state it reads: 2 (default) as fast as the "
            "shipped router, 6 the sentence embedding (3x slower).",
        ),
    ] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Train the learned router on labelled prompts and write it with its calibration table.

    The prompts are JSONL: a prompt plus a label, correct or quality per tier.

    Example: [bold]tars-opt router train --data labelled.jsonl[/bold]
    """
    from tars_opt.routing.training import train_file

    with friendly_errors():
        loaded = load_checked(config)
        model, path = train_file(loaded.config, data, out, layer=layer)
        cal = model.note["calibration"]
        if as_json:
            echo_json({"path": str(path), **model.note})
            return
        consoles.out.print(
            f"trained on {model.note['n_fit']} prompts, calibrated on {model.note['n_holdout']}"
            f" held out: APGR {cal['apgr']:.3f}, CPT(50%) {cal['cpt50']:.0%}, "
            f"CPT(80%) {cal['cpt80']:.0%}\nwrote {path} (and its .json note)\n"
            f"use it: routing.router: learned, routing.learned.path: {path}",
            markup=False,
        )
        print_config_line(loaded)


@app.command("calibrate")
def router_calibrate(
    data: Annotated[
        Path | None, typer.Option("--data", help="Labelled prompts (JSONL) to measure on.")
    ] = None,
    router: RouterOpt = None,
    save: Annotated[
        bool, typer.Option("--save", help="Use this table for routing.strong_share.")
    ] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Print a router's table: threshold -> strong share -> expected quality.

    Measured on --data, else the table in use now; routing.strong_share picks its threshold
    from it.

    Example: [bold]tars-opt router calibrate --data labelled.jsonl --save[/bold]
    """
    from tars_opt.routing import training as ops

    with friendly_errors():
        loaded = load_checked(config)
        cfg = loaded.config
        name = router or cfg.routing.router
        if name not in ("heuristic", "learned"):
            raise InputError(f"--router {name!r} is not one of heuristic, learned")
        if save and data is None:
            raise InputError("--save needs --data: the table to keep is measured on it")
        result = ops.calibrate(cfg, name, data)
        saved = ops.save(cfg, result) if save else None
        if as_json:
            echo_json({**result, "saved": str(saved) if saved else None})
            return
        render.calibration(consoles.out, result)
        if saved:
            consoles.out.print(f"saved as the {name} calibration: {saved}", markup=False)
        print_config_line(loaded)
