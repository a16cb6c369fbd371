"""What `tars-opt router train|calibrate` do, as library calls."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tars_opt.config.schema import Config
from tars_opt.errors import InputError, LearnedUnavailable
from tars_opt.routing import tables as store
from tars_opt.routing.calibration import summary
from tars_opt.routing.datasets import load_jsonl
from tars_opt.routing.heuristic import HeuristicRouter

USER_HOLDOUT = {8, 9}  # buckets of the prompt held out of fitting (about 20%)
DEFAULT_MODEL_FILE = "router-learned.npz"


def routing_pair(config: Config) -> tuple[str, str]:
    """The two tiers a router decides between: the cheapest and the first one above it."""
    tiers = list(config.models.tiers)
    if len(tiers) < 2:
        raise InputError("routing needs two tiers under models.tiers (e.g. cheap and strong)")
    thresholds = getattr(config.routing, config.routing.router).thresholds
    above = [t for t in tiers[1:] if t in thresholds]
    return tiers[0], above[0] if above else tiers[1]


def default_model_path(config: Config) -> Path:
    return config.resolved_data_dir() / DEFAULT_MODEL_FILE


def train_file(
    config: Config, data: Path, out: Path | None = None, *, layer: int | None = None
) -> tuple[Any, Path]:
    """Train a learned router on a labelled JSONL file; return it and where it was saved.

    `layer` is the MiniLM layer whose hidden state it reads (default: learned.LAYER).
    """
    from tars_opt.routing import learned

    layer = learned.LAYER if layer is None else layer
    weak, strong = routing_pair(config)
    labelled = load_jsonl(data, weak, strong)
    holdout = labelled.holdout(USER_HOLDOUT)
    if holdout.sum() < 2 or (~holdout).sum() < 2:
        raise InputError(
            f"{data}: {len(labelled)} prompts leave {int(holdout.sum())} held out for "
            "calibration: give at least ~20 labelled prompts"
        )
    try:
        embedder = learned._embedder(layer)
    except LearnedUnavailable as exc:
        raise InputError(f"cannot train the learned router: {exc}") from None
    note = {
        "data": str(Path(data).name),
        "source": str(Path(data).resolve()),
        "split": "prompts whose bucket(prompt) is 8 or 9 held out for L2 and calibration",
        "rows": len(labelled),
        "tiers": {"weak": weak, "strong": strong},
        "made": datetime.now(UTC).date().isoformat(),
        "made_by": "tars-opt router train",
    }
    vectors = embedder.embed(labelled.prompts)
    router = learned.train(labelled, vectors, holdout, note=note, layer=layer)
    target = Path(out).expanduser() if out else default_model_path(config)
    router.save(target)
    return router, target


def calibrate(config: Config, router_name: str, data: Path | None = None) -> dict[str, Any]:
    """The threshold -> strong share -> quality table of a router.

    With `data`, measured on that labelled file; without, the table the router uses now
    (the user's saved one, else the shipped one).
    """
    heuristic = HeuristicRouter(config.routing.heuristic)
    if data is None:
        if router_name == "heuristic":
            table, source = store.heuristic_table(config)
            return {"router": router_name, "source": source, "table": table}
        from tars_opt.routing.learned import load_learned

        try:
            model = load_learned(config.routing.learned.path, embed=False)
        except LearnedUnavailable as exc:
            raise InputError(str(exc)) from None
        table, source = store.learned_table(config, model.model_id, model.table)
        return {
            "router": router_name,
            "source": source,
            "table": table,
            **{k: model.note["calibration"].get(k) for k in ("apgr", "cpt50", "cpt80")},
        }
    weak, strong = routing_pair(config)
    labelled = load_jsonl(data, weak, strong)
    if router_name == "heuristic":
        scores = np.array([heuristic.score_text(p).score for p in labelled.prompts])
        extra: dict[str, Any] = {"weights": config.routing.heuristic.weights.model_dump()}
    else:
        from tars_opt.routing.learned import load_learned

        try:
            model = load_learned(config.routing.learned.path)
        except LearnedUnavailable as exc:
            raise InputError(str(exc)) from None
        scores = model.score_prompts(labelled.prompts)
        extra = {"model_id": model.model_id}
    result = summary(scores, labelled.weak, labelled.strong)
    return {
        "router": router_name,
        "source": str(data),
        "made": datetime.now(UTC).date().isoformat(),
        **extra,
        **result,
    }


def save(config: Config, result: dict[str, Any]) -> Path:
    """Keep a measured table as the one `routing.strong_share` uses for its router."""
    return store.save_table(config, result["router"], result)
