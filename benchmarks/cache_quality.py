"""How trustworthy and how useful the semantic response cache is, on public labelled data.

1. False-hit rate and recall at the shipped thresholds, with and without the guards, on
   data never used for tuning: the QQP evaluation split, MRPC test and STS-B test.
   A pair plays "text1 is cached, text2 arrives"; a hit is similarity >= threshold (and no
   guard veto). False-hit rate = wrong hits / hits; recall = duplicates served / duplicates.
   STS-B label rule: a pair is a duplicate when its gold score is >= 4.0 ("mostly
   equivalent" or better); everything below is a different question.
2. The hit rate of a real prompt stream: every ShareGPT first-turn prompt file replayed in
   its order through the Optimizer (offline backend, fresh database, shipped config, no
   expiry), counting exact, normalised and semantic hits.

Usage: python benchmarks/cache_quality.py [--data ../shared/data] [--type fact]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tars_opt import Request, open_app  # noqa: E402
from tars_opt.cache.calibrate import (  # noqa: E402
    Pairs,
    evaluate,
    guard_passes,
    read_pairs,
    similarities,
)
from tars_opt.config.loader import load_config  # noqa: E402
from tars_opt.embeddings.model import get_embedder  # noqa: E402


def read_stsb(path: Path, cut: float = 4.0) -> Pairs:
    """STS-B: tab-separated, no header; score in column 4, sentences in 5 and 6."""
    a, b, labels = [], [], []
    with path.open(encoding="utf-8") as fh:
        for row in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) < 7:
                continue
            a.append(row[5])
            b.append(row[6])
            labels.append(float(row[4]) >= cut)
    return Pairs(a, b, np.array(labels, dtype=bool))


def pair_report(name: str, pairs: Pairs, embedder, thresholds: list[float | None]) -> list:
    """One row per (threshold, guards on/off) for a set of labelled pairs."""
    sims = similarities(embedder, pairs)
    passes = guard_passes(pairs)
    rows = []
    for threshold in thresholds:
        for label, mask in (("on", passes), ("off", None)):
            d = evaluate(sims, pairs.labels, mask, threshold).to_dict()
            above = sims >= (threshold if threshold is not None else np.inf)
            d.update(
                set=name,
                pairs=len(pairs),
                duplicates=int(pairs.labels.sum()),
                guards=label,
                vetoed_duplicates=int((above & pairs.labels & ~passes).sum()),
                vetoed_others=int((above & ~pairs.labels & ~passes).sum()),
            )
            rows.append(d)
    return rows


def replay(prompts: list[str]) -> dict:
    """Replay prompts through a fresh Optimizer (offline backend, shipped config)."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TARS_OPT_HOME"] = tmp
        app = open_app(backend="offline", db=Path(tmp) / "replay.db")
        opt = app.optimizer(clock=lambda: 1_800_000_000.0)  # no expiry during the replay
        counts = {"prompts": 0, "exact": 0, "normalized": 0, "semantic": 0, "miss": 0}
        blocked: dict[str, int] = {}
        examples: list[tuple[float, str, str]] = []
        store = opt.stages[0].store
        started = time.perf_counter()
        for prompt in prompts:
            if not prompt.strip():
                continue
            counts["prompts"] += 1
            reply = opt.ask(Request.from_prompt(prompt, max_tokens=4096))
            cache = next(d for d in reply.decisions if d.stage == "cache")
            if cache.action == "hit":
                counts[cache.data["match"]] += 1
                if cache.data["match"] == "semantic":
                    entry = store.get(cache.data["entry_id"])
                    examples.append((cache.data["similarity"], entry.prompt, prompt))
            else:
                counts["miss"] += 1
                why = cache.data.get("semantic", "allowed")
                blocked[why] = blocked.get(why, 0) + 1
        n = counts["prompts"] or 1
        return {
            **counts,
            "exact_rate": counts["exact"] / n,
            "normalized_rate": counts["normalized"] / n,
            "semantic_rate": counts["semantic"] / n,
            "hit_rate": (counts["exact"] + counts["normalized"] + counts["semantic"]) / n,
            "misses_by_semantic_status": dict(sorted(blocked.items(), key=lambda kv: -kv[1])),
            "semantic_examples": sorted(examples, reverse=True)[:15],
            "seconds": round(time.perf_counter() - started, 1),
        }


def sharegpt_prompts(path: Path) -> list[str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for item in data:
        turns = item.get("conversations") or []
        if turns:
            out.append(str(turns[0].get("value", "")))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--type", default="fact", help="whose shipped threshold to use")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--skip-replay", action="store_true")
    parser.add_argument(
        "--also",
        type=float,
        nargs="*",
        default=[],
        help="more thresholds to report (e.g. one calibrated for another target)",
    )
    args = parser.parse_args()
    cfg = load_config(args.config).config.cache.semantic
    threshold = cfg.thresholds.get(args.type)
    print(f"threshold ({args.type}, shipped): {threshold}; guards: {cfg.guards}")
    embedder = get_embedder()
    sets = [
        ("QQP evaluation", read_pairs(args.data / "qqp" / "evaluation.tsv")),
        ("MRPC test", read_pairs(args.data / "mrpc" / "msr-para-test.tsv")),
        ("STS-B test (dup: score >= 4)", read_stsb(args.data / "stsb" / "sts-test.csv")),
    ]
    print("\n## False-hit rate and recall (first threshold: shipped)")
    print(
        "| set | pairs | dups | threshold | guards | hits | false hits "
        "| false-hit rate (95% upper) | recall | guard vetoes above t (dups / others) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, pairs in sets:
        for d in pair_report(name, pairs, embedder, [threshold, *args.also]):
            vetoes = (
                f"{d['vetoed_duplicates']} / {d['vetoed_others']}" if d["guards"] == "on" else ""
            )
            print(
                f"| {name} | {d['pairs']} | {d['duplicates']} | {d['threshold']} | "
                f"{d['guards']} | {d['hits']} | {d['false_hits']} | "
                f"{d['false_hit_rate']:.2%} ({d['false_hit_rate_upper95']:.2%}) | "
                f"{d['recall']:.2%} | {vetoes} |",
                flush=True,
            )
    if args.skip_replay:
        return
    print("\n## ShareGPT first-turn prompts replayed in order (offline, no expiry)")
    print("| file | prompts | exact | normalised | semantic | total hit rate |")
    print("|---|---|---|---|---|---|")
    folder = args.data / "sharegpt_prompts"
    details = {}
    for path in sorted(folder.glob("*.json")):
        r = replay(sharegpt_prompts(path))
        details[path.name] = r
        print(
            f"| {path.name} | {r['prompts']} | {r['exact']} ({r['exact_rate']:.2%}) | "
            f"{r['normalized']} ({r['normalized_rate']:.2%}) | "
            f"{r['semantic']} ({r['semantic_rate']:.2%}) | {r['hit_rate']:.2%} |"
        )
    for name, r in details.items():
        print(f"\n{name}: misses by semantic status: {r['misses_by_semantic_status']}")
        for sim, cached, asked in r["semantic_examples"]:
            print(f"  {sim:.3f}  {cached[:70]!r}  ->  {asked[:70]!r}")


if __name__ == "__main__":
    main()
