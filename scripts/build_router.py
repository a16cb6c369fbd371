"""Build the routers' shipped files from the CALIBRATION split of routellm_evals.

    python scripts/build_router.py [--data ../shared/data] [--cache /tmp/router-cache]

Writes, in tars_opt/data/:
  router_learned.npz / .json           the learned router's weights and its note
  router_heuristic_calibration.json    the heuristic's threshold -> strong share -> quality table
Only weights and tables are written: the prompts (MMLU MIT, GSM8K MIT, via RouteLLM
Apache-2.0) stay in ../shared/data. Evaluation buckets (6-9), MT-Bench and arena_bench_v1
are never read here. Embedding ~9k prompts takes minutes: --cache keeps the vectors.

Which MiniLM layer the router reads is chosen here too, on the held-out calibration prompts
alone: a router is fitted on every layer's hidden state, and the shallowest layer within
LAYER_TOLERANCE of the best held-out APGR wins (shallower is faster: layer 2 costs a third
of the full model).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tars_opt.config.loader import load_config  # noqa: E402
from tars_opt.routing import learned  # noqa: E402
from tars_opt.routing.calibration import summary  # noqa: E402
from tars_opt.routing.datasets import Labelled, load_gsm8k, load_mmlu  # noqa: E402
from tars_opt.routing.heuristic import HeuristicRouter  # noqa: E402
from tars_opt.routing.tables import SHIPPED_HEURISTIC  # noqa: E402

HOLDOUT_BUCKETS = {5}  # of the calibration buckets 0-5: fit on 0-4, calibrate on 5
LAYER_TOLERANCE = 0.01  # held-out APGR a shallower layer may give up (about its noise)
SOURCE = (
    "lm-sys/RouteLLM routellm/evals (commit 0b64fdafe049e596a3f5657c219329f24af24198): "
    "MMLU (57 subjects) and GSM8K test, Mixtral-8x7B-Instruct (weak) vs gpt-4-1106-preview "
    "(strong) correctness"
)


def embeddings(data: Labelled, cache: Path | None) -> np.ndarray:
    """The prompts' hidden states after every layer (7, n, dim), from the cache if it matches."""
    from tars_opt.embeddings.model import LAYERS, get_embedder

    digest = hashlib.sha256("\x1e".join(data.prompts).encode()).hexdigest()[:16]
    path = cache / f"calibration-layers-{digest}.npy" if cache else None
    if path is not None and path.is_file():
        return np.load(path)
    started = time.time()
    vectors = get_embedder().hidden_states(data.prompts, range(LAYERS + 1))
    print(f"embedded {len(data)} prompts in {time.time() - started:.0f} s")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "tars_opt" / "data")
    parser.add_argument("--cache", type=Path, default=None, help="keep embeddings here")
    args = parser.parse_args()

    mmlu, gsm8k = load_mmlu(args.data, "calibration"), load_gsm8k(args.data, "calibration")
    data = Labelled.concat("mmlu+gsm8k calibration", [mmlu, gsm8k])
    holdout = data.holdout(HOLDOUT_BUCKETS)
    made = datetime.now(UTC).date().isoformat()
    note = {
        "data": "MMLU + GSM8K calibration split (routellm_evals)",
        "source": SOURCE,
        "split": "bucket(key) = int(sha1(key).hexdigest(), 16) % 10 with key mmlu:<prompt> / "
        "gsm8k:<prompt>; calibration = buckets 0-5: fit on 0-4, L2 and calibration table on 5; "
        "RouteLLM's contaminated prompts skipped",
        "rows": {"mmlu": len(mmlu), "gsm8k": len(gsm8k)},
        "label": "quality gain = strong correct - weak correct (per prompt)",
        "made": made,
        "made_by": "scripts/build_router.py",
    }
    by_layer = embeddings(data, args.cache)
    fitted = [learned.train(data, v, holdout, note=note, layer=i) for i, v in enumerate(by_layer)]
    held = [r.note["calibration"]["apgr"] for r in fitted]
    best = max(held)
    router = next(r for r, apgr in zip(fitted, held, strict=True) if apgr >= best - LAYER_TOLERANCE)
    router.note["layer_search"] = {
        "rule": f"the shallowest layer within {LAYER_TOLERANCE} of the best held-out APGR",
        "held_out_apgr": {str(i): round(a, 4) for i, a in enumerate(held)},
        "chosen": router.layer,
    }
    print("held-out APGR by layer: " + ", ".join(f"{i}: {a:.3f}" for i, a in enumerate(held)))
    if router.layer != learned.LAYER:
        print(
            f"note: layer {router.layer} chosen; learned.LAYER (for `router train`) is "
            f"{learned.LAYER}"
        )
    note_path = router.save(args.out / learned.SHIPPED.name)
    cal = router.note["calibration"]
    print(
        f"learned: layer {router.layer}, l2 {router.note['l2']}, held-out APGR {cal['apgr']:.3f} "
        f"CPT50 {cal['cpt50']:.2f} CPT80 {cal['cpt80']:.2f} -> {note_path}"
    )

    config = load_config().config
    heuristic = HeuristicRouter(config.routing.heuristic)
    scores = np.array([heuristic.score_text(p).score for p in data.prompts])
    result = summary(scores, data.weak, data.strong)
    entry = {
        "weights": config.routing.heuristic.weights.model_dump(),
        **{k: v for k, v in note.items() if k != "split"},
        "split": "calibration buckets 0-5 (no fitting: the whole calibration split)",
        **result,
    }
    out = args.out / SHIPPED_HEURISTIC.name
    out.write_text(json.dumps({"heuristic": entry}, indent=1) + "\n", encoding="utf-8")
    print(f"heuristic: APGR {result['apgr']:.3f} on {result['n']} prompts -> {out}")


if __name__ == "__main__":
    main()
