"""How far can routing go on MMLU? Bounds for the headline target (>= 50% cheaper at
>= 97% of the strong tier's quality).

Run: python benchmarks/router_ceiling.py [--data ../shared/data] [--cache DIR] [--json]

At a 20x price gap, 50% cheaper than all-strong allows about 47% of the calls on the
strong tier (s + (1 - s) * r = 0.5 with r = cheap/strong input price). This prints, on
the MMLU EVALUATION split (buckets 6-9, contaminated prompts skipped), each router's
APGR, CPT(80%) and its quality relative to all-strong at that share:
  - learned: the shipped router (its percentile score; familiarity fallback included);
  - knn-100: the mean quality gain of the 100 nearest CALIBRATION prompts (MiniLM cosine);
  - subject (calibration): each prompt's MMLU subject - which no router is told - scored by
    that subject's mean gain on the calibration split: topic-level routing done perfectly;
  - subject (evaluation): the same gains measured on the evaluation split itself, a router
    that cannot exist (it has seen the answers), as an upper bound for topic routing;
  - oracle: the strong tier exactly where it gained.
Nothing is tuned on the evaluation split; k = 100 was the best of 10-400 on calibration
bucket 5 with buckets 0-4 as neighbours.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from router_quality import embed_cached  # noqa: E402

from tars_opt.config.loader import load_config  # noqa: E402
from tars_opt.routing.calibration import curve, oracle_scores  # noqa: E402
from tars_opt.routing.datasets import ROUTELLM, Labelled, load_mmlu  # noqa: E402
from tars_opt.routing.learned import load_learned  # noqa: E402

K = 100


def subjects(root: Path) -> dict[str, str]:
    """Prompt -> MMLU subject (the name of the file it comes from)."""
    out = {}
    for path in sorted((root / ROUTELLM / "mmlu" / "responses").glob("mmlu_*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                out[row["prompt"]] = path.stem.removeprefix("mmlu_")
    return out


def knn_gain(neighbours: np.ndarray, gain: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Mean gain of each query's K nearest neighbours (cosine of unit vectors)."""
    out = np.empty(len(queries))
    for start in range(0, len(queries), 1000):
        sims = queries[start : start + 1000] @ neighbours.T
        idx = np.argpartition(-sims, K, axis=1)[:, :K]
        out[start : start + 1000] = gain[idx].mean(axis=1)
    return out


def subject_gain(of: Labelled, by: dict[str, str], to: Labelled) -> np.ndarray:
    """Each prompt of `to` scored by its subject's mean gain in `of`."""
    sums: dict[str, list[float]] = defaultdict(list)
    for prompt, g in zip(of.prompts, of.strong - of.weak, strict=True):
        sums[by[prompt]].append(float(g))
    mean = {s: float(np.mean(v)) for s, v in sums.items()}
    return np.array([mean.get(by[p], 0.0) for p in to.prompts])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=None, help="keep embeddings here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    config = load_config().config
    cheap = config.pricing.models[config.tier_model("cheap")].input
    strong = config.pricing.models[config.tier_model("strong")].input
    ratio = cheap / strong
    share = (0.5 - ratio) / (1 - ratio)  # strong share at which cost is half of all-strong
    calibration, evaluation = (
        load_mmlu(args.data, "calibration"),
        load_mmlu(args.data, "evaluation"),
    )
    learned = load_learned()
    cal_vecs = embed_cached(learned.embedder, calibration, args.cache)
    eval_vecs = embed_cached(learned.embedder, evaluation, args.cache)
    by = subjects(args.data)
    routers = {
        "learned (shipped)": learned.score_embedded(eval_vecs, evaluation.prompts),
        f"knn-{K} (calibration neighbours)": knn_gain(
            cal_vecs, calibration.strong - calibration.weak, eval_vecs
        ),
        "subject gain, calibration (subject given)": subject_gain(calibration, by, evaluation),
        "subject gain, evaluation (impossible bound)": subject_gain(evaluation, by, evaluation),
        "oracle": oracle_scores(evaluation.weak, evaluation.strong),
    }
    rows = []
    for name, scores in routers.items():
        c = curve(scores, evaluation.weak, evaluation.strong)
        rows.append(
            {
                "router": name,
                "apgr": round(c.apgr(), 3),
                "cpt80": round(c.cpt(0.8), 3),
                "quality_at_share": round(c.quality_at(share) / c.strong, 4),
            }
        )
    result = {"set": evaluation.name, "n": len(evaluation), "share": round(share, 3), "rows": rows}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(
        f"MMLU evaluation split, {len(evaluation)} prompts; 50% cheaper than all-strong allows "
        f"{share:.1%} strong calls (price ratio {ratio:.3f})"
    )
    print(f"| router | APGR | CPT(80%) | quality vs all-strong at {share:.1%} strong |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['router']} | {r['apgr']:.3f} | {r['cpt80']:.0%} | {r['quality_at_share']:.1%} |"
        )


if __name__ == "__main__":
    main()
