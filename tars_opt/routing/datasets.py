"""Labelled prompts for routers: the user's JSONL files and the public evaluation sets.

A labelled prompt has the quality of a weak (cheap) and a strong answer: 1/0 for
correctness, a judge score, or a label naming the tier that was good enough. The public
sets live in ../shared/data (see its README); they are read, never copied into the package.

Split rule (binding, data README): bucket(key) = int(sha1(key).hexdigest(), 16) % 10;
buckets 0-5 calibration, 6-9 evaluation. MT-Bench and arena_bench_v1 are evaluation only.
Prompts RouteLLM flagged as contaminated are skipped everywhere.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from tars_opt.errors import InputError

Split = Literal["calibration", "evaluation", "all"]
ROUTELLM = Path("routellm_evals") / "routellm" / "evals"
MIXTRAL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
GPT4 = "gpt-4-1106-preview"


def bucket(key: str) -> int:
    """The split bucket (0-9) of a key."""
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % 10


def in_split(key: str, split: Split) -> bool:
    if split == "all":
        return True
    calibration = bucket(key) <= 5
    return calibration if split == "calibration" else not calibration


@dataclass
class Labelled:
    """Prompts with the weak and the strong tier's quality on each (higher is better)."""

    name: str
    prompts: list[str]
    weak: np.ndarray
    strong: np.ndarray
    keys: list[str] = field(default_factory=list)  # the split keys (default: the prompts)

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = list(self.prompts)

    def holdout(self, buckets: set[int]) -> np.ndarray:
        """A mask of the prompts whose key falls in `buckets`."""
        return np.array([bucket(k) in buckets for k in self.keys], dtype=bool)

    def __len__(self) -> int:
        return len(self.prompts)

    @classmethod
    def concat(cls, name: str, parts: Iterable[Labelled]) -> Labelled:
        parts = list(parts)
        return cls(
            name,
            [p for part in parts for p in part.prompts],
            np.concatenate([part.weak for part in parts]),
            np.concatenate([part.strong for part in parts]),
            [k for part in parts for k in part.keys],
        )


def _truth(value: str) -> float:
    return 1.0 if value.strip().lower() == "true" else 0.0


def _contaminated(root: Path, name: str) -> set[str]:
    path = root / ROUTELLM / name / "contaminated_prompts.jsonl"
    with path.open(encoding="utf-8") as fh:
        return {json.loads(line)["eval_prompt"] for line in fh if line.strip()}


def _load_correctness(root: Path, name: str, files: list[Path], split: Split) -> Labelled:
    """Mixtral vs GPT-4-1106 correctness rows from RouteLLM's CSVs, split by `<name>:<prompt>`,
    with RouteLLM's contaminated prompts left out."""
    skip = _contaminated(root, name)
    prompts, weak, strong = [], [], []
    for path in files:
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                prompt = row["prompt"]
                if prompt in skip or not in_split(f"{name}:{prompt}", split):
                    continue
                prompts.append(prompt)
                weak.append(_truth(row[MIXTRAL]))
                strong.append(_truth(row[GPT4]))
    keys = [f"{name}:{p}" for p in prompts]
    return Labelled(f"{name}-{split}", prompts, np.array(weak), np.array(strong), keys)


def load_mmlu(root: Path, split: Split) -> Labelled:
    """MMLU (57 subjects): Mixtral vs GPT-4-1106 correctness, split by `mmlu:<prompt>`."""
    files = sorted((root / ROUTELLM / "mmlu" / "responses").glob("mmlu_*.csv"))
    return _load_correctness(root, "mmlu", files, split)


def load_gsm8k(root: Path, split: Split) -> Labelled:
    """GSM8K test: Mixtral vs GPT-4-1106 correctness, split by `gsm8k:<prompt>`."""
    files = [root / ROUTELLM / "gsm8k" / "gsm8k_responses.csv"]
    return _load_correctness(root, "gsm8k", files, split)


def load_mt_bench(root: Path) -> Labelled:
    """MT-Bench (evaluation only): GPT-4 judge scores 1-10, Mixtral vs GPT-4-1106.

    The route is chosen on the first turn and kept for the conversation, so a question's
    quality is the mean of its two turns' scores.
    """
    base = root / ROUTELLM / "mt_bench"
    skip = _contaminated(root, "mt_bench")
    with (base / "question.jsonl").open(encoding="utf-8") as fh:
        questions = {q["question_id"]: q["turns"][0] for q in map(json.loads, fh) if q}
    scores: dict[tuple[int, str], list[float]] = {}
    with (base / "judgements.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            j = json.loads(line)
            if j["score"] >= 0:
                scores.setdefault((j["question_id"], j["model"]), []).append(float(j["score"]))
    prompts, weak, strong = [], [], []
    for qid, prompt in sorted(questions.items()):
        w, s = scores.get((qid, MIXTRAL)), scores.get((qid, GPT4))
        if prompt in skip or not w or not s:
            continue
        prompts.append(prompt)
        weak.append(float(np.mean(w)))
        strong.append(float(np.mean(s)))
    return Labelled("mt-bench", prompts, np.array(weak), np.array(strong))


def load_arena(
    root: Path, weak_model: str = "claude-instant-1", strong_model: str = "claude-2.1"
) -> Labelled:
    """arena_bench_v1 (evaluation only): GPT-4 judge scores 1-10; missing or -1 skipped."""
    prompts, weak, strong = [], [], []
    path = root / "arena_bench_v1" / "per_prompt_scores.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if not row[weak_model].strip() or not row[strong_model].strip():
                continue  # no judgment for one of the two models
            w, s = float(row[weak_model]), float(row[strong_model])
            if w < 0 or s < 0:
                continue
            prompts.append(row["prompt"])
            weak.append(w)
            strong.append(s)
    return Labelled(
        f"arena-{weak_model}-vs-{strong_model}", prompts, np.array(weak), np.array(strong)
    )


def load_jsonl(path: Path, weak_tier: str, strong_tier: str) -> Labelled:
    """A user's labelled prompts, one JSON object a line, in one of three shapes:

    {"prompt": ..., "label": "<tier>"}   the cheapest tier that was good enough
    {"prompt": ..., "correct": {"<weak>": true, "<strong>": false}}
    {"prompt": ..., "quality": {"<weak>": 6.5, "<strong>": 8}}
    Tier keys may also be written "weak" and "strong".
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"labelled data file {path} does not exist: check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read labelled data file {path}: {exc}") from None
    prompts, weak, strong = [], [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"{where} is not valid JSON: one object a line") from None
        prompt = item.get("prompt") if isinstance(item, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f'{where}: needs a non-empty "prompt" string')
        if "label" in item:
            label = {"weak": weak_tier, "strong": strong_tier}.get(item["label"], item["label"])
            if label not in (weak_tier, strong_tier):
                raise InputError(
                    f"{where}: label {item['label']!r} must be {weak_tier!r} or {strong_tier!r}"
                )
            w, s = (1.0, 1.0) if label == weak_tier else (0.0, 1.0)
        else:
            values = item.get("quality", item.get("correct"))
            if not isinstance(values, dict):
                raise InputError(f'{where}: needs "label", "correct" or "quality"')
            try:
                w = float(values[weak_tier] if weak_tier in values else values["weak"])
                s = float(values[strong_tier] if strong_tier in values else values["strong"])
            except (KeyError, TypeError, ValueError):
                raise InputError(
                    f"{where}: give numbers or true/false for both {weak_tier!r} and "
                    f"{strong_tier!r} (or weak/strong)"
                ) from None
        prompts.append(prompt)
        weak.append(w)
        strong.append(s)
    if len(prompts) < 2:
        raise InputError(f"{path} has {len(prompts)} labelled prompt(s): at least 2 are needed")
    return Labelled(Path(path).name, prompts, np.array(weak), np.array(strong))
