"""Router quality on labelled data: the quality / strong-share curve, APGR, CPT, thresholds.

Definitions follow RouteLLM (routellm/evals/evaluate.py): a router scores each prompt, a
threshold sends the prompts scoring at or above it to the strong model. Quality at a strong
share is the mean of the strong model's quality on the prompts sent there and the weak
model's elsewhere; PGR (performance gap recovered) rescales it so the weak model is 0 and
the strong one 1. APGR is the area under PGR over the strong share (0-1); a random router
scores 0.5. CPT(x) is the smallest strong share whose PGR reaches x.

Prompts with equal scores cannot be told apart by a threshold, so within a tie the curve
is the average over the tie's orders (what random tie-breaking gives in expectation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SHARES = tuple(i / 20 for i in range(21))  # the calibration table's rows: 0%, 5%, ... 100%


@dataclass(frozen=True)
class Curve:
    """Quality after sending the top-k scored prompts to the strong model, k = 0..n."""

    share: np.ndarray  # (n+1,) k/n
    quality: np.ndarray  # (n+1,)
    weak: float
    strong: float

    @property
    def pgr(self) -> np.ndarray:
        gap = self.strong - self.weak
        if abs(gap) < 1e-12:
            return np.zeros_like(self.quality)
        return (self.quality - self.weak) / gap

    def apgr(self) -> float:
        """Area under PGR over strong share (random = 0.5, oracle > 1 is possible)."""
        pgr = self.pgr
        return float(np.sum((pgr[1:] + pgr[:-1]) / 2 * np.diff(self.share)))

    def cpt(self, target: float) -> float:
        """Smallest strong share whose PGR reaches `target` (1.0 if never)."""
        hit = np.nonzero(self.pgr >= target - 1e-12)[0]
        return float(self.share[hit[0]]) if len(hit) else 1.0

    def quality_at(self, share: float) -> float:
        return float(np.interp(share, self.share, self.quality))


def curve(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> Curve:
    """The curve of a router's `scores` (higher = strong) on per-prompt qualities."""
    scores = np.asarray(scores, dtype=np.float64)
    weak = np.asarray(weak, dtype=np.float64)
    strong = np.asarray(strong, dtype=np.float64)
    n = len(scores)
    if n == 0 or len(weak) != n or len(strong) != n:
        raise ValueError("scores, weak and strong qualities must be non-empty and equal length")
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    gain = (strong - weak)[order]
    # Replace each tie group's gains by their mean: the expected curve over tie orders.
    starts = np.r_[0, np.nonzero(np.diff(s))[0] + 1]
    sums = np.add.reduceat(gain, starts)
    sizes = np.diff(np.r_[starts, n])
    gain = np.repeat(sums / sizes, sizes)
    quality = (weak.sum() + np.r_[0.0, np.cumsum(gain)]) / n
    return Curve(np.arange(n + 1) / n, quality, float(weak.mean()), float(strong.mean()))


def oracle_scores(weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """The scores of a router that knows the answers: the gain of the strong model."""
    return np.asarray(strong, dtype=np.float64) - np.asarray(weak, dtype=np.float64)


def threshold_for_share(scores: np.ndarray, share: float) -> float:
    """The threshold that sends about `share` of these scores to the strong tier."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    k = int(round(share * len(s)))
    if k <= 0:
        # Above every score (by more than the table's rounding): nothing goes strong.
        return float(s[0] + 0.01) if len(s) else 100.0
    return float(s[min(k, len(s)) - 1])


def table(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> list[dict[str, float]]:
    """Rows threshold -> strong share -> expected quality -> PGR, at 0%, 5%, ... 100% strong."""
    scores = np.asarray(scores, dtype=np.float64)
    weak = np.asarray(weak, dtype=np.float64)
    strong = np.asarray(strong, dtype=np.float64)
    c = curve(scores, weak, strong)
    rows = []
    for target in SHARES:
        t = threshold_for_share(scores, target)
        routed = scores >= t
        share = float(routed.mean())
        quality = float(np.where(routed, strong, weak).mean())
        gap = c.strong - c.weak
        rows.append(
            {
                "threshold": round(t, 4),
                "strong_share": round(share, 4),
                "quality": round(quality, 4),
                "pgr": round((quality - c.weak) / gap, 4) if abs(gap) > 1e-12 else 0.0,
            }
        )
    return rows


def summary(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> dict[str, Any]:
    """APGR, CPT(50%), CPT(80%), the weak and strong qualities and the calibration table."""
    c = curve(scores, weak, strong)
    return {
        "n": len(c.share) - 1,
        "weak_quality": round(c.weak, 4),
        "strong_quality": round(c.strong, 4),
        "apgr": round(c.apgr(), 4),
        "cpt50": round(c.cpt(0.5), 4),
        "cpt80": round(c.cpt(0.8), 4),
        "table": table(scores, weak, strong),
    }


def pick_threshold(
    rows: list[dict[str, float]],
    *,
    strong_share: float | None = None,
    quality_target: float | None = None,
) -> dict[str, float]:
    """The calibration row for a strong-share target (nearest) or a PGR target (cheapest)."""
    if not rows:
        raise ValueError("empty calibration table")
    if strong_share is not None:
        return min(rows, key=lambda r: (abs(r["strong_share"] - strong_share), r["strong_share"]))
    if quality_target is not None:
        ok = [r for r in rows if r["pgr"] >= quality_target - 1e-9]
        return min(ok, key=lambda r: r["strong_share"]) if ok else max(rows, key=lambda r: r["pgr"])
    raise ValueError("give strong_share or quality_target")
