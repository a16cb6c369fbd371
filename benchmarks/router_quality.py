"""Router quality as RouteLLM reports it, and the routing decision's speed.

Run: python benchmarks/router_quality.py [--data ../shared/data] [--cache DIR] [--json]
     [--split evaluation|calibration] [--no-speed]

For the heuristic, the shipped learned router, a random router (every prompt tied: APGR 0.5
by construction) and the oracle (the strong tier only where it gained), on
  - MMLU and GSM8K EVALUATION splits (buckets 6-9; Mixtral weak, GPT-4-1106 strong),
  - MT-Bench (evaluation only; GPT-4 judge score 1-10, mean of both turns; same models),
  - arena_bench_v1 (evaluation only; claude-instant-1 weak, claude-2.1 strong),
with RouteLLM's contaminated prompts excluded. Prints APGR, CPT(50%), CPT(80%) and the
quality at 0, 20, ..., 100% strong calls; then the p50 / p99 of one routing decision
(RouteStage.apply, embedding included for the learned router) over real prompts, and the
time of one decision on a 2 MB prompt (a pasted log: routing reads its head and tail).
Nothing here tunes anything: the routers are the shipped ones. `--split calibration`
scores MMLU and GSM8K on their calibration splits instead (MT-Bench and arena have none).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.texts import pasted_log  # noqa: E402
from tars_opt.config.loader import load_config  # noqa: E402
from tars_opt.embeddings.model import get_embedder  # noqa: E402
from tars_opt.routing.calibration import curve, oracle_scores  # noqa: E402
from tars_opt.routing.datasets import (  # noqa: E402
    Labelled,
    load_arena,
    load_gsm8k,
    load_mmlu,
    load_mt_bench,
)
from tars_opt.routing.heuristic import HeuristicRouter  # noqa: E402
from tars_opt.routing.learned import load_learned  # noqa: E402
from tars_opt.routing.stage import RouteStage  # noqa: E402
from tars_opt.tokens import read_ends  # noqa: E402
from tars_opt.types import Request  # noqa: E402

CURVE_AT = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def embed_cached(embedder: object, data: Labelled, cache: Path | None) -> np.ndarray:
    """The prompts' vectors from `embedder`, kept in `cache` by embedder and prompts."""
    digest = hashlib.sha256("\x1e".join(data.prompts).encode()).hexdigest()[:16]
    name = getattr(embedder, "name", "embedder")
    path = cache / f"{data.name}-{name}-{digest}.npy" if cache else None
    if path is not None and path.is_file():
        return np.load(path)
    vectors = embedder.embed(data.prompts)  # type: ignore[attr-defined]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    return vectors


def evaluate(sets: list[Labelled], cache: Path | None) -> list[dict[str, object]]:
    config = load_config().config
    heuristic = HeuristicRouter(config.routing.heuristic)
    learned = load_learned()
    rows = []
    for data in sets:
        # What the route stage hands the routers: the prompt, or head and tail of a huge one.
        read = replace(data, prompts=[read_ends(p) for p in data.prompts])
        scores = {
            "heuristic": np.array([heuristic.score_text(p).score for p in read.prompts]),
            "learned": learned.score_embedded(
                embed_cached(learned.embedder, read, cache), read.prompts
            ),
            "random": np.zeros(len(data)),
            "oracle": oracle_scores(data.weak, data.strong),
        }
        for name, s in scores.items():
            c = curve(s, data.weak, data.strong)
            rows.append(
                {
                    "set": data.name,
                    "n": len(data),
                    "router": name,
                    "weak": round(c.weak, 3),
                    "strong": round(c.strong, 3),
                    "apgr": round(c.apgr(), 3),
                    "cpt50": round(c.cpt(0.5), 3),
                    "cpt80": round(c.cpt(0.8), 3),
                    "curve": {f"{x:.0%}": round(c.quality_at(x), 3) for x in CURVE_AT},
                }
            )
    return rows


def decision_speed(prompts: list[str], rounds: int = 3) -> dict[str, dict[str, float]]:
    """p50 / p99 ms of RouteStage.apply per router, median over rounds, after a warm-up."""
    out = {}
    base = load_config().config
    for name in ("heuristic", "learned"):
        config = base.model_copy(
            update={"routing": base.routing.model_copy(update={"router": name})}
        )
        stage = RouteStage(config)
        requests = [Request.from_prompt(p) for p in prompts]
        for r in requests[:5]:
            stage.apply(r)  # loads the model; not part of a decision
        embedder = getattr(stage.router, "embedder", None)  # set by the warm-up
        p50s, p99s = [], []
        for _ in range(rounds):
            times = np.empty(len(requests))
            for i, r in enumerate(requests):
                if embedder is not None:
                    embedder.clear_memo()  # time the embedding, as on a prompt's first sight
                start = time.perf_counter()
                stage.apply(r)
                times[i] = time.perf_counter() - start
            p50s.append(np.percentile(times, 50) * 1e3)
            p99s.append(np.percentile(times, 99) * 1e3)
        out[name] = {"p50_ms": float(np.median(p50s)), "p99_ms": float(np.median(p99s))}
    # The learned router's own work (heuristic factors, ridge, percentile) without the
    # embedding, which is the embedder's cost (benchmarks/embed_speed.py).
    learned = load_learned()
    vectors = learned.embedder.embed(prompts)
    times = np.empty(len(prompts))
    for i, p in enumerate(prompts):
        start = time.perf_counter()
        learned.score_embedded(vectors[i : i + 1], [p])
        times[i] = time.perf_counter() - start
    out["learned without embedding"] = {
        "p50_ms": float(np.percentile(times, 50) * 1e3),
        "p99_ms": float(np.percentile(times, 99) * 1e3),
    }
    # In the chain the cache stage often embeds the prompt first (single-turn prompts): its
    # full run keeps the router's layer too, so the decision reuses it.
    stage = RouteStage(
        base.model_copy(update={"routing": base.routing.model_copy(update={"router": "learned"})})
    )
    full = get_embedder()
    times = np.empty(len(prompts))
    for i, p in enumerate(prompts):
        full.clear_memo()
        full.embed([p])
        start = time.perf_counter()
        stage.apply(Request.from_prompt(p))
        times[i] = time.perf_counter() - start
    out["learned after the cache embedded the prompt"] = {
        "p50_ms": float(np.percentile(times, 50) * 1e3),
        "p99_ms": float(np.percentile(times, 99) * 1e3),
    }
    huge = Request.from_prompt(pasted_log(2_000_000))
    for name in ("heuristic", "learned"):
        config = base.model_copy(
            update={"routing": base.routing.model_copy(update={"router": name})}
        )
        stage = RouteStage(config)
        stage.apply(Request.from_prompt("warm up"))
        embedder = getattr(stage.router, "embedder", None)
        times = np.empty(rounds)
        for i in range(rounds):
            if embedder is not None:
                embedder.clear_memo()
            start = time.perf_counter()
            stage.apply(huge)
            times[i] = time.perf_counter() - start
        out[f"{name}, one 2 MB prompt ({rounds} runs)"] = {
            "p50_ms": float(np.median(times) * 1e3),
            "p99_ms": float(times.max() * 1e3),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=None, help="keep embeddings here")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-speed", action="store_true", help="skip the timing")
    parser.add_argument(
        "--split",
        choices=["evaluation", "calibration"],
        default="evaluation",
        help="MMLU and GSM8K split (calibration: those two sets only)",
    )
    args = parser.parse_args()
    sets = [load_mmlu(args.data, args.split), load_gsm8k(args.data, args.split)]
    chat = [load_mt_bench(args.data), load_arena(args.data)]
    if args.split == "evaluation":
        sets += chat
    rows = evaluate(sets, args.cache)
    speed = {}
    if not args.no_speed:
        prompts = chat[0].prompts + chat[1].prompts[:128]
        speed = decision_speed(prompts)
    if args.json:
        print(json.dumps({"quality": rows, "speed": speed}, indent=1))
        return
    print(
        "| set | n | router | APGR | CPT(50%) | CPT(80%) | quality at 0/20/40/60/80/100% strong |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        points = " / ".join(f"{v:g}" for v in r["curve"].values())  # type: ignore[union-attr]
        print(
            f"| {r['set']} | {r['n']} | {r['router']} | {r['apgr']:.3f} | "
            f"{r['cpt50']:.0%} | {r['cpt80']:.0%} | {points} |"
        )
    if speed:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"routing decision speed ({os.cpu_count()} cores, load average {load}):")
    for name, s in speed.items():
        print(f"  {name}: p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms")


if __name__ == "__main__":
    main()
