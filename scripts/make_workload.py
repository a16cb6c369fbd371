"""Make the bundled workload: one realistic agent day, from permissively licensed data only.

    python scripts/make_workload.py [--data ../shared/data] [--seed 7] [--out FILE]

Sources (read from the shared data folder, never downloaded):
- MMLU and GSM8K prompts with per-model correctness (strong = gpt-4-1106-preview,
  weak = Mixtral-8x7B) from RouteLLM's evaluation data (Apache-2.0; MMLU MIT, GSM8K MIT).
  Only the EVALUATION split (buckets 6-9 of sha1(`mmlu:<prompt>` / `gsm8k:<prompt>`)),
  skipping RouteLLM's contaminated prompts: the shipped learned router was trained and
  calibrated on buckets 0-5.
- MT-Bench two-turn questions (Apache-2.0, FastChat; evaluation only) with RouteLLM's
  per-turn GPT-4 judge scores; the history of a second turn holds gpt-4-1106's own first
  answer, taken from the judge records.
- GSM8K answers of gpt-4-1106 (RouteLLM, Apache-2.0) as the assistant turns of the tutoring
  sessions' growing history.
No ShareGPT, QQP or MRPC text is used (their licences are non-commercial); ShareGPT's
repeat rate is measured (see --measure-sharegpt) and stated as a number only.

Labels: `labels: {"cheap": q, "strong": q}` per record, q = 1/0 correctness (MMLU, GSM8K)
or the judge score / 10 (MT-Bench). cheap = the weak model's label, strong = the strong one's.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tars_opt.routing.datasets import (  # noqa: E402
    GPT4,
    MIXTRAL,
    ROUTELLM,
    _contaminated,
    in_split,
    load_gsm8k,
    load_mmlu,
)

DAY = "2026-02-11"  # the first day of the plan's measured baseline (234 calls, 100% Sonnet)
OUT = REPO / "tars_opt" / "data" / "agent_day.jsonl"

from agent_profile import TOOLS, system_prompt  # noqa: E402

SYSTEM = system_prompt()
# The tools a question invites; every interactive call carries the whole catalogue.
CALC, SEARCH = ["calculator", "run_python"], ["web_search", "read_file"]

# How an agent re-words a question it asked before (the rephrasing rule; documented).
REPHRASE = [
    lambda p: "Quick check: " + p,
    lambda p: p.strip() + "\nPlease answer briefly.",
    lambda p: "Can you help with this?\n\n" + p,
    lambda p: re.sub(r"\s+", " ", p).strip(),
    lambda p: p.strip().lower(),
]

# Relative activity per UTC hour of an agent that serves a team (peaks in working hours)
# plus night jobs: about 8% of the day's calls fall inside 00:00-06:00.
HOURLY = [2, 1, 1, 1, 1, 2, 3, 5, 8, 10, 10, 9, 7, 9, 10, 10, 9, 7, 5, 4, 3, 3, 2, 2]


def measure_sharegpt(root: Path) -> dict[str, Any]:
    """ShareGPT's natural repeat rate: the share of prompts that repeat an earlier one
    after lower-casing and stripping punctuation (measured, never copied)."""
    path = root / "sharegpt_prompts" / "sg_90k_part1_html_cleaned_lang_first_sampled_sorted.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    keys = [
        " ".join(re.sub(r"[^\w\s]", "", c["conversations"][0]["value"].lower()).split())
        for c in data
        if c.get("conversations")
    ]
    counts = Counter(keys)
    groups = Counter(v for v in counts.values() if v > 1)
    return {
        "prompts": len(keys),
        "distinct": len(counts),
        "repeat_rate": round((len(keys) - len(counts)) / len(keys), 4),
        "group_sizes": {str(k): v for k, v in sorted(groups.items())},
    }


def _mt_bench(root: Path) -> list[dict[str, Any]]:
    """MT-Bench questions with per-turn labels and gpt-4-1106's first answer."""
    base = root / ROUTELLM / "mt_bench"
    skip = _contaminated(root, "mt_bench")
    questions = [json.loads(x) for x in (base / "question.jsonl").read_text().splitlines() if x]
    scores: dict[tuple[int, str, int], float] = {}
    first_answer: dict[int, str] = {}
    for line in (base / "judgements.jsonl").read_text(encoding="utf-8").splitlines():
        j = json.loads(line)
        if j["score"] >= 0:
            scores[(j["question_id"], j["model"], j["turn"])] = float(j["score"])
        if j["model"] == GPT4 and j["turn"] == 1:
            m = re.search(
                r"\[The Start of Assistant's Answer\]\n(.*?)\n\[The End of Assistant's Answer\]",
                j["user_prompt"],
                re.S,
            )
            if m:
                first_answer[j["question_id"]] = m.group(1).strip()
    out = []
    for q in questions:
        qid = q["question_id"]
        if q["turns"][0] in skip or qid not in first_answer:
            continue
        labels = []
        for turn in (1, 2):
            w, s = scores.get((qid, MIXTRAL, turn)), scores.get((qid, GPT4, turn))
            labels.append(None if w is None or s is None else {"cheap": w / 10, "strong": s / 10})
        if None in labels:
            continue
        out.append({"id": f"mt_bench:{qid}", "category": q["category"], "turns": q["turns"],
                    "answer": first_answer[qid], "labels": labels})  # fmt: skip
    return out


def _gsm8k_answers(root: Path) -> dict[str, str]:
    path = root / ROUTELLM / "gsm8k" / "gsm8k_responses.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        return {r["prompt"]: r[f"{GPT4}_response"] for r in csv.DictReader(fh)}


def _labelled(data: Any) -> list[dict[str, Any]]:
    return [
        {"id": k, "prompt": p, "labels": {"cheap": float(w), "strong": float(s)}}
        for k, p, w, s in zip(data.keys, data.prompts, data.weak, data.strong, strict=True)
    ]


def _times(rng: random.Random, n: int, start: datetime) -> list[datetime]:
    hours = rng.choices(range(24), weights=HOURLY, k=n)
    return sorted(start + timedelta(hours=h, seconds=rng.uniform(0, 3600)) for h in hours)


def build(root: Path, seed: int, repeat_rate: float, rephrase_rate: float) -> list[dict]:
    """The day's records (time-ordered), without the header."""
    rng = random.Random(seed)
    mmlu = _labelled(load_mmlu(root, "evaluation"))
    gsm = _labelled(load_gsm8k(root, "evaluation"))
    mt = _mt_bench(root)
    answers = _gsm8k_answers(root)
    for item in gsm:
        assert in_split(item["id"], "evaluation")
    rng.shuffle(mmlu)
    rng.shuffle(gsm)
    rng.shuffle(mt)
    start = datetime.fromisoformat(DAY).replace(tzinfo=UTC)
    records: list[dict[str, Any]] = []

    def add(t: datetime, item: dict[str, Any], **extra: Any) -> dict[str, Any]:
        meta = {"source": item["id"].split(":")[0], "split": "evaluation"}
        if "meta_tools" in extra:  # the tools this task invites (for the reader)
            meta["uses_tools"] = extra.pop("meta_tools")
        if extra.get("namespace") == "nightly-review":
            extra = {"tools": [], **extra}  # the overnight job sends no tools
        # system and tools (the header's defaults) are written once, not per record
        rec = {"time": t.isoformat().replace("+00:00", "Z"), "prompt": item["prompt"],
               **extra, "labels": item["labels"], "meta": meta}  # fmt: skip
        records.append(rec)
        return rec

    # 1. Single questions: 70 MMLU, 30 GSM8K (10 of them calculator work),
    #    20 MMLU as low-priority deferrable quiz review (defer: true).
    singles = _times(rng, 120, start)
    roles = ["mmlu"] * 70 + ["gsm8k-tools"] * 10 + ["gsm8k"] * 20 + ["deferred"] * 20
    rng.shuffle(roles)
    used: Counter[str] = Counter()
    for t, role in zip(singles, roles, strict=True):
        used[role] += 1
        if role == "mmlu":
            add(t, mmlu[used[role] - 1], type="fact")
        elif role.startswith("gsm8k"):
            item = gsm[used["gsm8k"] + used["gsm8k-tools"] - 1]
            extra: dict[str, Any] = {"meta_tools": CALC} if role != "gsm8k" else {}
            add(t, item, **extra)
        else:
            add(t, mmlu[69 + used[role]], type="fact", priority="low", defer=True,
                namespace="nightly-review")  # fmt: skip
    # 2. MT-Bench two-turn conversations (24 sessions = 48 calls): turn 2 carries turn 1
    #    and gpt-4-1106's answer to it as history; 8 of them search/read work.
    for n, q in enumerate(mt[:24]):
        t = _times(rng, 1, start)[0]
        session = f"chat-{q['id'].split(':')[1]}"
        extra = {"meta_tools": SEARCH} if n < 8 else {}
        first = {"id": q["id"], "prompt": q["turns"][0], "labels": q["labels"][0]}
        add(t, first, session=session, **extra)
        second = {"id": q["id"], "prompt": q["turns"][1], "labels": q["labels"][1]}
        history = [{"role": "user", "content": q["turns"][0]},
                   {"role": "assistant", "content": q["answer"]}]  # fmt: skip
        add(t + timedelta(seconds=rng.uniform(40, 240)), second, session=session,
            history=history, **extra)  # fmt: skip
    # 3. Tutoring sessions: 6 sessions x 4 GSM8K problems, each turn's history holds the
    #    earlier problems and gpt-4-1106's worked answers (24 calls, growing context).
    pool = gsm[30:]
    for s in range(6):
        t = _times(rng, 1, start)[0]
        history: list[dict[str, str]] = []
        for k in range(4):
            item = pool[s * 4 + k]
            add(t, item, session=f"tutor-{s + 1}", history=list(history))
            history += [{"role": "user", "content": item["prompt"]},
                        {"role": "assistant", "content": answers[item["prompt"]]}]  # fmt: skip
            t += timedelta(seconds=rng.uniform(60, 420))
    # 4. Repeats and rephrasings of earlier single-turn questions, later the same day.
    base = [r for r in records if "history" not in r and not r.get("defer")]
    n_total = round(len(records) / (1 - repeat_rate - rephrase_rate))
    n_repeat = round(n_total * repeat_rate)
    n_rephrase = round(n_total * rephrase_rate)
    for j in range(n_repeat + n_rephrase):
        orig = rng.choice(base)
        t0 = datetime.fromisoformat(orig["time"].replace("Z", "+00:00"))
        end = start + timedelta(days=1)
        t = t0 + (end - t0) * rng.uniform(0.02, 0.6)
        rec = {k: v for k, v in orig.items() if k not in ("time", "meta")}
        rec["time"] = t.isoformat().replace("+00:00", "Z")
        kind = "repeat" if j < n_repeat else "rephrase"
        if kind == "rephrase":
            rec["prompt"] = REPHRASE[j % len(REPHRASE)](orig["prompt"])
        rec["meta"] = {**orig["meta"], "kind": kind}
        records.append(rec)
    records.sort(key=lambda r: r["time"])
    return records


def header(seed: int, repeat_rate: float, rephrase_rate: float, n: int, sg: dict | None) -> dict:
    return {
        "kind": "header",
        "name": "agent-day",
        "description": (
            f"One agent day ({n} calls) for `tars-opt simulate`: single questions, two-turn "
            "chats, tutoring sessions with growing history, tool-using requests, deferrable "
            "low-priority work, repeats and rephrasings."
        ),
        "generator": "scripts/make_workload.py",
        "seed": seed,
        "day": DAY,
        "rates": {
            "exact_repeats": repeat_rate,
            "rephrasings": rephrase_rate,
            "sharegpt_measured": sg,
        },
        "defaults": {"system": SYSTEM, "tools": TOOLS},
        "labels": "cheap = Mixtral-8x7B, strong = gpt-4-1106-preview; 1/0 correct or judge/10",
        "sources": [
            {
                "data": "MMLU (evaluation split, buckets 6-9)",
                "via": "lm-sys/RouteLLM@0b64fdaf",
                "licence": "MIT (MMLU), Apache-2.0 (RouteLLM)",
            },
            {
                "data": "GSM8K test (evaluation split) and gpt-4-1106 answers",
                "via": "lm-sys/RouteLLM@0b64fdaf",
                "licence": "MIT (GSM8K), Apache-2.0 (RouteLLM)",
            },
            {
                "data": "MT-Bench questions, judge scores, gpt-4-1106 first answers",
                "via": "lm-sys/FastChat, lm-sys/RouteLLM",
                "licence": "Apache-2.0",
            },
            {
                "data": "system prompt, tool schemas, rephrasing templates",
                "via": "this script",
                "licence": "the project's",
            },
        ],  # fmt: skip
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat-rate", type=float, default=0.12)
    ap.add_argument("--rephrase-rate", type=float, default=0.06)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    sg = measure_sharegpt(args.data)
    records = build(args.data, args.seed, args.repeat_rate, args.rephrase_rate)
    head = header(args.seed, args.repeat_rate, args.rephrase_rate, len(records), sg)
    with args.out.open("w", encoding="utf-8") as fh:
        for rec in [head, *records]:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    kinds = Counter(r["meta"].get("kind", "new") for r in records)
    print(f"wrote {args.out}: {len(records)} records {dict(kinds)}; ShareGPT repeat rate "
          f"{sg['repeat_rate']:.1%} ({sg['prompts']} prompts)")  # fmt: skip


if __name__ == "__main__":
    main()
