"""The headline savings benchmark: cost and quality of the shipped default config against
the all-strong baseline, and what a perfect router (the oracle) would pay for that quality.

    python benchmarks/savings.py [--data ../shared/data] [--sample N] [--no-heuristic]

Workload: the EVALUATION splits of routellm_evals (MMLU, GSM8K: buckets 6-9, RouteLLM's
contaminated prompts skipped) and MT-Bench (evaluation only, both turns; the second turn
carries gpt-4-1106's first answer as history), each prompt labelled with the correctness
(or judge score / 10) of the weak (Mixtral-8x7B -> tier cheap) and strong (gpt-4-1106 ->
tier strong) model; mixed with ShareGPT's repeat pattern as MEASURED from
sharegpt_prompts (share of prompts that repeat an earlier one, and the sizes of the repeat
groups; no ShareGPT text is used). 234 calls per simulated day; a repeat comes 1 minute to
4 hours after the prompt it repeats.

Every run is `tars_opt.sim.simulate` (the whole chain the config enables, offline backend,
simulated clock). Cost is the ledger's; "saved" is against the all-strong baseline (the
ledger's baseline: the baseline model, no caching, no batching). Quality = the labels of
the tier that answered, relative to the strong tier's labels on the same prompts. The
oracle column: the cheapest per-prompt choice of tier (per-prompt costs measured by
replaying everything on each tier) whose quality reaches the row's quality.

Knobs (routing.strong_share of the default router) are chosen on the CALIBRATION split
(buckets 0-5), never on the evaluation data: the largest share that is >= 50% cheaper, and
the smallest share that keeps >= 97% quality. Their numbers on the evaluation split are then
reported, with the heuristic router (the previous default) for comparison.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from make_workload import _mt_bench, measure_sharegpt  # noqa: E402

from tars_opt.config.loader import EXAMPLE_CONFIG, load_config  # noqa: E402
from tars_opt.config.schema import Config  # noqa: E402
from tars_opt.routing.datasets import load_gsm8k, load_mmlu  # noqa: E402
from tars_opt.sim.simulate import SimResult, simulate  # noqa: E402
from tars_opt.sim.workload import Call, Workload  # noqa: E402

START = 1770768000.0  # 2026-02-11T00:00Z
PER_DAY = 234
SHARES = [round(0.1 * k, 1) for k in range(1, 10)]


def labelled_items(
    root: Path, split: str, sample: int | None, rng: random.Random, fraction: float = 1.0
) -> list[dict]:
    """(source, prompt, history, labels) items of one split: at most `sample` of MMLU and
    of GSM8K each, or `fraction` of each (keeping the split's proportions)."""
    items: list[dict[str, Any]] = []
    for name, data in (("mmlu", load_mmlu(root, split)), ("gsm8k", load_gsm8k(root, split))):
        rows = [
            {"source": name, "prompt": p, "history": (), "labels": {"cheap": float(w),
                                                                     "strong": float(s)}}
            for p, w, s in zip(data.prompts, data.weak, data.strong, strict=True)
        ]  # fmt: skip
        if sample is not None and len(rows) > sample:
            rows = rng.sample(rows, sample)
        elif fraction < 1.0:
            rows = rng.sample(rows, round(len(rows) * fraction))
        items += rows
    if split == "evaluation":  # MT-Bench is evaluation only
        for q in _mt_bench(root):
            first = {"role": "user", "content": q["turns"][0]}
            items.append({"source": "mt_bench", "prompt": q["turns"][0], "history": (),
                          "labels": q["labels"][0]})  # fmt: skip
            items.append({"source": "mt_bench", "prompt": q["turns"][1],
                          "history": (first, {"role": "assistant", "content": q["answer"]}),
                          "labels": q["labels"][1]})  # fmt: skip
    return items


def with_repeats(items: list[dict], pattern: dict[str, Any], rng: random.Random) -> Workload:
    """The items at 234 a day, plus repeats in ShareGPT's measured pattern."""
    rng.shuffle(items)
    step = 86400.0 / PER_DAY
    calls = [
        Call(line=i, time=START + i * step, prompt=it["prompt"], history=it["history"],
             labels=it["labels"], meta={"source": it["source"]})
        for i, it in enumerate(items)
    ]  # fmt: skip
    rate = pattern["repeat_rate"]
    sizes = [int(k) for k, v in pattern["group_sizes"].items() for _ in range(v)]
    wanted = round(len(calls) * rate / (1 - rate))
    singles = [c for c in calls if not c.history]
    added = 0
    while added < wanted:
        size = rng.choice(sizes)
        orig = rng.choice(singles)
        for _ in range(min(size - 1, wanted - added)):
            t = orig.time + rng.uniform(60, 4 * 3600)
            calls.append(Call(line=len(calls), time=t, prompt=orig.prompt, labels=orig.labels,
                              meta={**orig.meta, "kind": "repeat"}))  # fmt: skip
            added += 1
    calls.sort(key=lambda c: (c.time, c.line))
    return Workload("benchmark", {"name": "savings-benchmark"}, calls)


def shipped(**changes: Any) -> Config:
    """The shipped default config (the package's file, no environment), with changes."""
    cfg = load_config(EXAMPLE_CONFIG, environ={}).config
    data = cfg.model_dump(mode="python")
    for dotted, value in changes.items():
        node = data
        *path, last = dotted.split(".")
        for key in path:
            node = node[key]
        node[last] = value
    return Config.model_validate(data)


def run(work: Workload, cfg: Config, name: str) -> SimResult:
    t = time.perf_counter()
    r = simulate(work, cfg, seed=0, config_name=name)
    print(f"  {name}: {len(work.calls)} calls in {time.perf_counter() - t:.1f} s", flush=True)
    return r


def by_source(work: Workload, r: SimResult, source: str | None) -> dict[str, float]:
    """Cost, baseline, quality sums of the calls from one source (None = all)."""
    ids = [f"sim0-{i:06d}" for i, c in enumerate(work.calls)
           if source is None or c.meta.get("source") == source]  # fmt: skip
    calls = dict(zip([f"sim0-{i:06d}" for i in range(len(work.calls))], work.calls, strict=True))
    cost = sum(r.outcomes[i].cost for i in ids)
    base = sum(r.outcomes[i].baseline_cost for i in ids)
    got = ref = 0.0
    strong = n = 0
    for i in ids:
        o = r.outcomes[i]
        q = o.quality()
        if q is None:
            continue
        n += 1
        got += q
        ref += calls[i].labels["strong"]
        strong += o.tier == "strong" and o.source != "cache"
    return {"cost": cost, "baseline": base, "got": got, "ref": ref, "n": n, "strong": strong,
            "ids": ids}  # fmt: skip


def oracle_cost(work: Workload, cheap: SimResult, strong: SimResult, ids: list[str],
                target: float) -> float | None:  # fmt: skip
    """The cheapest per-call tier choice whose summed quality reaches `target`."""
    calls = dict(zip([f"sim0-{i:06d}" for i in range(len(work.calls))], work.calls, strict=True))
    cost = sum(cheap.outcomes[i].cost for i in ids)
    got = sum(calls[i].labels["cheap"] for i in ids)
    upgrades = []
    for i in ids:
        gain = calls[i].labels["strong"] - calls[i].labels["cheap"]
        extra = strong.outcomes[i].cost - cheap.outcomes[i].cost
        if gain > 0:
            upgrades.append((gain / max(extra, 1e-12), gain, extra))
    upgrades.sort(reverse=True)
    for _, gain, extra in upgrades:
        if got >= target - 1e-9:
            break
        got += gain
        cost += extra
    return cost if got >= target - 1e-9 else None


def pick_knobs(root: Path, pattern: dict, fraction: float) -> tuple[float | None, float | None]:
    """On the calibration split (a sample in its own MMLU/GSM8K proportions): the largest
    strong_share >= 50% cheaper and the smallest one with >= 97% quality."""
    rng = random.Random(1)
    items = labelled_items(root, "calibration", None, rng, fraction)
    work = with_repeats(items, pattern, rng)
    cheaper = keeps = None
    for share in SHARES:
        r = run(work, shipped(**{"routing.strong_share": share}), f"calibration share {share}")
        if (r.saved_share or 0) >= 0.5:
            cheaper = share
        if keeps is None and (r.relative_quality or 0) >= 0.97:
            keeps = share
    return cheaper, keeps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument(
        "--sample",
        type=int,
        default=None,
        help="At most this many MMLU and GSM8K prompts each (default: all).",
    )
    ap.add_argument(
        "--calibration-fraction",
        type=float,
        default=0.2,
        help="Share of the calibration split used to pick knobs.",
    )
    ap.add_argument("--no-heuristic", action="store_true", help="Skip the heuristic router's row.")
    ap.add_argument("--json", type=Path, help="Also write the numbers here.")
    args = ap.parse_args()  # fmt: skip
    with tempfile.TemporaryDirectory() as home:
        import os

        os.environ["TARS_OPT_HOME"] = home  # router tables etc.: shipped ones only
        _main(args)


def _main(args: argparse.Namespace) -> None:
    pattern = measure_sharegpt(args.data)
    print(f"ShareGPT repeat pattern: {pattern['repeat_rate']:.2%} of prompts repeat an "
          f"earlier one; group sizes {pattern['group_sizes']}")  # fmt: skip
    print("choosing knobs on the calibration split:")
    cheaper, keeps = pick_knobs(args.data, pattern, args.calibration_fraction)
    rng = random.Random(0)
    work = with_repeats(labelled_items(args.data, "evaluation", args.sample, rng), pattern, rng)
    print(f"evaluation workload: {len(work.calls)} calls")
    refs = {
        "all-strong": run(work, shipped(**{"routing.enabled": False}), "all strong"),
        "all-cheap": run(work, shipped(**{"routing.enabled": False,
                                           "models.default_tier": "cheap"}), "all cheap"),
    }  # fmt: skip
    configs: list[tuple[str, Config]] = [("default config (learned, strong_share 0.6)", shipped())]
    default_share = shipped().routing.strong_share
    if cheaper is not None and cheaper != default_share:
        configs.append((f"strong_share {cheaper} (>=50% cheaper on calibration)",
                        shipped(**{"routing.strong_share": cheaper})))  # fmt: skip
    if keeps is not None and keeps not in (cheaper, default_share):
        configs.append((f"strong_share {keeps} (>=97% quality on calibration)",
                        shipped(**{"routing.strong_share": keeps})))  # fmt: skip
    if not args.no_heuristic:
        configs.append(("heuristic router, thresholds as written (previous default)",
                        shipped(**{"routing.router": "heuristic",
                                   "routing.strong_share": None})))  # fmt: skip
    rows = []
    for name, cfg in configs:
        r = run(work, cfg, name)
        for source in (None, "mmlu", "gsm8k", "mt_bench"):
            s = by_source(work, r, source)
            target = s["got"]
            oc = oracle_cost(work, refs["all-cheap"], refs["all-strong"], s["ids"], target)
            rows.append({
                "config": name, "set": source or "all", "calls": len(s["ids"]),
                "strong_share": s["strong"] / s["n"] if s["n"] else None,
                "cost": s["cost"], "baseline": s["baseline"],
                "saved": 1 - s["cost"] / s["baseline"] if s["baseline"] else None,
                "quality": s["got"] / s["ref"] if s["ref"] else None,
                "oracle_cost": oc,
                "oracle_saved": 1 - oc / s["baseline"] if oc is not None and s["baseline"]
                else None,
                "hits": r.exact_hits + r.semantic_hits if source is None else None,
            })  # fmt: skip
    print()
    print(
        "| config | set | calls | strong calls | cost | all-strong baseline | saved | "
        "quality vs all-strong | oracle cost at same quality (saved) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for x in rows:
        share = "—" if x["strong_share"] is None else f"{x['strong_share']:.0%}"
        oracle = ("—" if x["oracle_cost"] is None
                  else f"${x['oracle_cost']:.4f} ({x['oracle_saved']:.1%})")  # fmt: skip
        print(
            f"| {x['config']} | {x['set']} | {x['calls']} | {share} | ${x['cost']:.4f} | "
            f"${x['baseline']:.4f} | {x['saved']:.1%} | {x['quality']:.1%} | {oracle} |"
        )
    default = rows[0]
    met = default["saved"] >= 0.5 and default["quality"] >= 0.97
    print(f"\ntarget (>= 50% cheaper at >= 97% quality) for the default config: "
          f"{'MET' if met else 'MISSED'} ({default['saved']:.1%} cheaper, "
          f"{default['quality']:.1%} quality)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
