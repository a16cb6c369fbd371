"""Calibrate semantic-cache thresholds on labelled pairs, with the false-hit rate as contract.

A pair (text1, text2, label) plays "text1 is cached, text2 arrives": it is a hit when the
cosine similarity reaches the threshold and (with guards on) no guard vetoes it. The
false-hit rate is the share of hits whose label says "not a duplicate" (1 - precision);
recall is the share of true duplicates served from the cache. The chosen threshold is the
lowest whose false-hit rate stays within the target.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tars_opt.cache import guards as cache_guards
from tars_opt.config.loader import load_config
from tars_opt.config.schema import CacheSemanticConfig
from tars_opt.errors import EmbeddingUnavailable, InputError
from tars_opt.store.files import atomic_write_text
from tars_opt.types import QUERY_TYPES

# Header names of known layouts: (text1, text2, label).
_LAYOUTS = [
    ("text1", "text2", "label"),
    ("question1", "question2", "is_duplicate"),  # QQP
    ("#1 String", "#2 String", "Quality"),  # MRPC
    ("sentence1", "sentence2", "label"),
]


@dataclass(frozen=True)
class Pairs:
    """Labelled text pairs."""

    a: list[str]
    b: list[str]
    labels: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.a)


def read_pairs(path: str | Path) -> Pairs:
    """Read a TSV of (text1, text2, label 0/1); a header row is optional.

    QQP (question1, question2, is_duplicate) and MRPC (#1 String, #2 String, Quality)
    headers are recognised too.
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    except FileNotFoundError:
        raise InputError(f"pairs file {path} does not exist: check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read pairs file {path}: {exc}") from None
    if not rows:
        raise InputError(f"pairs file {path} is empty: it needs rows of text1<TAB>text2<TAB>label")
    cols: tuple[int, ...] = (0, 1, 2)
    header = [c.strip() for c in rows[0]]
    for layout in _LAYOUTS:
        if all(name in header for name in layout):
            cols = tuple(header.index(name) for name in layout)
            rows = rows[1:]
            break
    else:
        if len(header) >= 3 and header[2].strip() not in ("0", "1"):
            rows = rows[1:]  # an unnamed header row
    a: list[str] = []
    b: list[str] = []
    labels: list[bool] = []
    for number, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(cols):
            raise InputError(f"pairs file {path}, row {number}: expected text1<TAB>text2<TAB>label")
        label = row[cols[2]].strip()
        if label not in ("0", "1"):
            raise InputError(f"pairs file {path}, row {number}: label {label!r} must be 0 or 1")
        a.append(row[cols[0]])
        b.append(row[cols[1]])
        labels.append(label == "1")
    if not a:
        raise InputError(f"pairs file {path} holds no pairs")
    return Pairs(a, b, np.array(labels, dtype=bool))


def similarities(embedder: Any, pairs: Pairs) -> np.ndarray:
    """Cosine similarity of each pair (the embedder returns unit vectors)."""
    texts = list(dict.fromkeys([*pairs.a, *pairs.b]))
    vecs = embedder.embed(texts)
    row = {t: i for i, t in enumerate(texts)}
    va = vecs[[row[t] for t in pairs.a]]
    vb = vecs[[row[t] for t in pairs.b]]
    return np.einsum("ij,ij->i", va, vb).astype(np.float64)


def guard_passes(pairs: Pairs) -> np.ndarray:
    """True where no guard vetoes treating text2 as a repeat of text1."""
    return np.array(
        [cache_guards.check(x, y) is None for x, y in zip(pairs.a, pairs.b, strict=True)]
    )


def wilson_upper(k: int, n: int, z: float = 1.96) -> float:
    """Upper end of the 95% Wilson score interval of the rate k/n (0 when n is 0)."""
    if n == 0:
        return 0.0
    p = k / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + margin) / (1 + z * z / n))


@dataclass(frozen=True)
class Score:
    """How a threshold does on labelled pairs."""

    threshold: float | None
    hits: int
    false_hits: int
    positives: int

    @property
    def false_hit_rate(self) -> float:
        return self.false_hits / self.hits if self.hits else 0.0

    @property
    def precision(self) -> float:
        return 1.0 - self.false_hit_rate if self.hits else 1.0

    @property
    def recall(self) -> float:
        return (self.hits - self.false_hits) / self.positives if self.positives else 0.0

    @property
    def false_hit_rate_upper95(self) -> float:
        """Upper end of the 95% Wilson interval: how bad the rate could really be."""
        return wilson_upper(self.false_hits, self.hits)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "hits": self.hits,
            "false_hits": self.false_hits,
            "false_hit_rate": self.false_hit_rate,
            "false_hit_rate_upper95": self.false_hit_rate_upper95,
            "precision": self.precision,
            "recall": self.recall,
            "positives": self.positives,
        }


def evaluate(
    sims: np.ndarray, labels: np.ndarray, passes: np.ndarray | None, threshold: float | None
) -> Score:
    """Hits, false hits and recall of one threshold (None = no semantic hits)."""
    positives = int(labels.sum())
    if threshold is None:
        return Score(None, 0, 0, positives)
    hit = sims >= threshold
    if passes is not None:
        hit &= passes
    return Score(threshold, int(hit.sum()), int((hit & ~labels).sum()), positives)


def min_hits(target: float) -> int:
    """Hits needed before a false-hit rate of `target` can be told apart from zero."""
    return 200 if target <= 0 else max(10, min(200, math.ceil(1.0 / target)))


def choose_threshold(
    sims: np.ndarray, labels: np.ndarray, passes: np.ndarray | None, target: float
) -> Score:
    """The lowest threshold whose false-hit rate on the pairs is within `target`.

    Thresholds are compared at 4 decimals; candidates need `min_hits(target)` hits so a
    lucky handful of pairs cannot set the contract. Returns threshold None when no
    threshold qualifies (semantic hits stay off for that type).
    """
    keep = passes if passes is not None else np.ones_like(labels)
    s, y = sims[keep], labels[keep]
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    false_cum = np.cumsum(~y)
    hits_cum = np.arange(1, len(s) + 1)
    best: Score = evaluate(sims, labels, passes, None)
    need = min_hits(target)
    # The last index of each run of equal (rounded) similarities is a candidate cut.
    rounded = np.floor(s * 10_000) / 10_000
    for i in range(len(s)):
        if i + 1 < len(s) and rounded[i + 1] == rounded[i]:
            continue
        if hits_cum[i] >= need and false_cum[i] <= target * hits_cum[i]:
            best = evaluate(sims, labels, passes, float(rounded[i]))
    if best.threshold is not None and best.false_hit_rate > target:  # rounding let one in
        best = evaluate(sims, labels, passes, best.threshold + 1e-4)
    return best


def calibration_embedder() -> Any:
    """The sentence embedder calibration measures with (the cache's own)."""
    from tars_opt.embeddings.model import get_embedder

    try:
        return get_embedder()
    except EmbeddingUnavailable as exc:
        raise InputError(f"calibration needs the embedding model: {exc}") from None


def calibrate_thresholds(
    semantic: CacheSemanticConfig,
    pairs: Pairs,
    embedder: Any,
    query_types: Sequence[str] = QUERY_TYPES,
    *,
    target: float | None = None,
    guards: bool = True,
) -> list[dict[str, Any]]:
    """Per query type, the lowest threshold whose false-hit rate on `pairs` stays within
    `target` (else the type's cache.semantic.target_false_hit_rate, 1% when unset), with
    its precision and recall."""
    sims = similarities(embedder, pairs)
    passes = guard_passes(pairs) if guards else None
    rows = []
    for kind in query_types:
        goal = target if target is not None else semantic.target_false_hit_rate.get(kind, 0.01)
        score = choose_threshold(sims, pairs.labels, passes, goal)
        rows.append({"type": kind, "target": goal, "guards": guards, **score.to_dict()})
    return rows


def write_thresholds(path: Path, thresholds: dict[str, float | None]) -> None:
    """Set cache.semantic.thresholds in a config file, keeping its comments; the edit is
    checked by loading it before the file is replaced."""
    text = path.read_text(encoding="utf-8")
    edited = set_yaml_scalars(text, ["cache", "semantic", "thresholds"], thresholds)
    probe = path.with_name(f".{path.name}.check")
    try:
        probe.write_text(edited, encoding="utf-8")
        got = load_config(probe).config.cache.semantic.thresholds
    finally:
        probe.unlink(missing_ok=True)
    if any(got.get(k) != v for k, v in thresholds.items()):
        raise InputError(
            f"could not edit the thresholds in {path} (unusual YAML layout): set "
            f"cache.semantic.thresholds by hand to {thresholds}"
        )
    atomic_write_text(path, edited, private=True)


_KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w-]*):(?P<rest>.*)$")


def set_yaml_scalars(text: str, section: Sequence[str], values: dict[str, Any]) -> str:
    """Set `values` under the nested mapping `section` of a YAML text, keeping comments.

    Existing keys get their value replaced in place (a trailing comment is kept); missing
    keys and sections are added at the end of their parent block.
    """
    lines = text.splitlines()
    start, end, indent = 0, len(lines), -1  # the current block: lines[start:end]
    for depth, name in enumerate(section):
        found = None
        child_indent = None
        for i in range(start, end):
            m = _KEY_LINE.match(lines[i])
            if not m or lines[i].lstrip().startswith("#"):
                continue
            width = len(m.group("indent"))
            if width <= indent:
                break
            if child_indent is None:
                child_indent = width
            if width == child_indent and m.group("key") == name:
                found = i
                break
        if found is None:
            pad = " " * (indent + 2 if depth else 0)
            block_end = _block_end(lines, start, end, indent)
            new = [f"{pad}{name}:"]
            lines[block_end:block_end] = new
            found = block_end
        indent = len(lines[found]) - len(lines[found].lstrip())
        start = found + 1
        end = _block_end(lines, start, len(lines), indent)
    for key, value in values.items():
        rendered = "null" if value is None else str(value)
        for i in range(start, end):
            m = _KEY_LINE.match(lines[i])
            if m and len(m.group("indent")) > indent and m.group("key") == key:
                comment = re.search(r"\s+#.*$", m.group("rest"))
                lines[i] = (
                    f"{m.group('indent')}{key}: {rendered}{comment.group(0) if comment else ''}"
                )
                break
        else:
            lines.insert(end, f"{' ' * (indent + 2)}{key}: {rendered}")
            end += 1
    return "\n".join(lines) + "\n"


def _block_end(lines: list[str], start: int, end: int, indent: int) -> int:
    """The index after the last line that belongs to a block indented deeper than `indent`."""
    last = start
    for i in range(start, end):
        stripped = lines[i].strip()
        if not stripped:
            continue
        width = len(lines[i]) - len(lines[i].lstrip())
        if width <= indent and not stripped.startswith("#"):
            break
        if not stripped.startswith("#"):
            last = i + 1
    return max(last, start)
