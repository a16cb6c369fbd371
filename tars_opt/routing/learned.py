"""The learned router: a ridge regression of the strong tier's quality gain on features.

Features are the prompt's embedding (384 numbers, embeddings/model.py) and the heuristic's six
scaled factors. The embedding is MiniLM's mean-pooled hidden state after its 2nd of 6 layers,
not its last: on the held-out calibration prompts it routes as well (APGR 0.721 against
0.694) at a third of the cost, so a decision fits in the 8 ms budget on 2 slow cores.

The target is the gain of the strong answer over the weak one (1/0 correctness differences
or judge-score differences), so the prediction ranks
prompts by how much a strong call is expected to help - the order APGR rewards. Ridge has a
closed form (numpy only, no training loop to tune) and its L2 strength is chosen on a
held-out part of the training data.

The raw prediction is mapped to a 0-100 score by its percentile on the held-out prompts,
so a threshold of 50 sends about half of prompts like the training ones to the strong tier.

A ridge fit on one kind of prompt (say multiple-choice exams) says nothing useful about
another (a design question in chat), so the router knows where its training data lives: k
centroids of the training embeddings. A prompt whose cosine to the nearest centroid is below
what 95% of the held-out prompts reach is "unfamiliar" and gets the heuristic's score instead,
expressed as a percentile of the heuristic's scores on the same held-out prompts - the same
0-100 scale, so the thresholds and the strong-share knob mean the same for both.

A trained router is one .npz (weights, standardisation, percentiles, centroids, the held-out
prompts' heuristic factors: numbers only, never text) plus a .json note (data, split, date,
held-out quality, the familiarity rule and the calibration table).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np

from tars_opt.config.schema import HeuristicRouterConfig
from tars_opt.errors import EmbeddingUnavailable, LearnedUnavailable
from tars_opt.routing import RouteScore
from tars_opt.routing.calibration import summary
from tars_opt.routing.datasets import Labelled
from tars_opt.routing.heuristic import (
    FACTORS,
    HeuristicRouter,
    context_tokens,
    raw_factors,
    scaled_factors,
)
from tars_opt.store.files import atomic_write_bytes, atomic_write_text
from tars_opt.types import Request

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "router_learned.npz"
L2_GRID = (1.0, 10.0, 100.0, 1000.0, 3000.0, 10000.0, 30000.0, 100000.0)
FORMAT = 1
FAMILIAR_K = 64  # centroids summarising where the training prompts are
FAMILIAR_PERCENTILE = 5.0  # held-out prompts less familiar than this share are "unfamiliar"
LAYER = 2  # MiniLM layer whose hidden state `router train` uses (scripts/build_router.py)


def _embedder(layer: int = LAYER) -> Any:
    """The embedding model's view at `layer` (6: its last layer, the sentence embedding)."""
    try:
        from tars_opt.embeddings.model import get_embedder
    except ImportError as exc:  # pragma: no cover - embeddings/model.py ships with the package
        raise LearnedUnavailable(f"embedding module missing: {exc}") from None
    try:
        return get_embedder().at_layer(layer)
    except EmbeddingUnavailable as exc:
        raise LearnedUnavailable(str(exc)) from None


def heuristic_features(prompts: list[str], contexts: list[int] | None = None) -> np.ndarray:
    """The heuristic's six 0-1 factors per prompt, as a (n, 6) matrix."""
    contexts = contexts or [0] * len(prompts)
    rows = [scaled_factors(raw_factors(p, c)) for p, c in zip(prompts, contexts, strict=True)]
    return np.array([[r[name] for name in FACTORS] for r in rows], dtype=np.float64)


def features(embeddings: np.ndarray, heuristic: np.ndarray) -> np.ndarray:
    return np.hstack([np.asarray(embeddings, dtype=np.float64), heuristic])


@dataclass
class LearnedRouter:
    """A trained ridge router; `route_score` embeds the prompt (lazily loaded model)."""

    weights: np.ndarray  # (d,) on standardised features
    bias: float
    mean: np.ndarray  # (d,)
    scale: np.ndarray  # (d,)
    percentiles: np.ndarray  # (101,) raw predictions at 0..100% on held-out prompts
    note: dict[str, Any] = field(default_factory=dict)
    model_id: str = ""
    name: str = "learned"
    embedder: Any = None
    layer: int = 6  # the MiniLM layer the features come from (files before it: the last)
    centroids: np.ndarray | None = None  # (k, dim) unit vectors; None: every prompt familiar
    familiar_min: float = -1.0  # cosine to the nearest centroid below which -> heuristic
    held_factors: np.ndarray | None = None  # (n, 6) heuristic factors of the held-out prompts
    fallback: HeuristicRouter | None = None  # scores unfamiliar prompts
    _held_heuristic: np.ndarray | None = field(default=None, repr=False)

    @property
    def table(self) -> list[dict[str, float]]:
        """The calibration rows (threshold on the 0-100 score) from the held-out prompts."""
        return list(self.note.get("calibration", {}).get("table", []))

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Predicted quality gain of the strong tier for feature rows `x`."""
        return ((x - self.mean) / self.scale) @ self.weights + self.bias

    def to_score(self, raw: np.ndarray) -> np.ndarray:
        """Raw predictions as 0-100 percentiles of the held-out predictions."""
        return np.interp(raw, self.percentiles, np.linspace(0.0, 100.0, len(self.percentiles)))

    def familiarity(self, embeddings: np.ndarray) -> np.ndarray | None:
        """Cosine of each embedding to the nearest training centroid (None: no centroids)."""
        if self.centroids is None or not len(self.centroids):
            return None
        return (np.asarray(embeddings, dtype=np.float32) @ self.centroids.T).max(axis=1)

    def unfamiliar(self, embeddings: np.ndarray) -> np.ndarray:
        """Which prompts fall outside the training data (and get the heuristic's score)."""
        fam = self.familiarity(embeddings)
        if fam is None or self.fallback is None or self.held_factors is None:
            return np.zeros(len(embeddings), dtype=bool)
        return fam < self.familiar_min

    def heuristic_percentile(self, scores: np.ndarray) -> np.ndarray:
        """Heuristic scores as mid-rank percentiles (0-100) of its held-out scores."""
        if self._held_heuristic is None:
            assert self.fallback is not None and self.held_factors is not None
            points = np.array([self.fallback.points[name] for name in FACTORS])
            self._held_heuristic = np.sort(np.minimum(100.0, self.held_factors @ points))
        held = self._held_heuristic
        below = np.searchsorted(held, scores, side="left")
        upto = np.searchsorted(held, scores, side="right")
        return 100.0 * (below + upto) / (2 * len(held))

    def score_embedded(
        self, embeddings: np.ndarray, prompts: list[str], contexts: list[int] | None = None
    ) -> np.ndarray:
        """Scores 0-100 for prompts whose embeddings are already computed."""
        heur = heuristic_features(prompts, contexts)
        scores = self.to_score(self.raw(features(embeddings, heur)))
        odd = self.unfamiliar(embeddings)
        if odd.any():
            assert self.fallback is not None
            points = np.array([self.fallback.points[name] for name in FACTORS])
            scores[odd] = self.heuristic_percentile(np.minimum(100.0, heur[odd] @ points))
        return scores

    def score_prompts(self, prompts: list[str]) -> np.ndarray:
        """Scores 0-100 for bare prompts (embeds them)."""
        if self.embedder is None:
            self.embedder = _embedder(self.layer)
        return self.score_embedded(self.embedder.embed(prompts), prompts)

    def route_score(self, request: Request) -> RouteScore:
        if self.embedder is None:
            self.embedder = _embedder(self.layer)
        started = time.perf_counter()
        vector = self.embedder.embed([request.prompt])
        heur = heuristic_features([request.prompt], [context_tokens(request)])
        gain = float(self.raw(features(vector, heur))[0])
        score = float(self.to_score(np.array([gain]))[0])
        data = self.note.get("data", "its training data")
        explain = f"predicted strong-tier gain {gain:+.3f} = percentile {score:.0f} of {data}"
        details: dict[str, Any] = {"predicted_gain": round(gain, 4), "model_id": self.model_id}
        fam = self.familiarity(vector)
        if fam is not None:
            details["familiarity"] = round(float(fam[0]), 4)
        if self.unfamiliar(vector)[0]:
            assert self.fallback is not None
            heuristic = self.fallback.route_score(request)
            score = float(self.heuristic_percentile(np.array([heuristic.score]))[0])
            explain = (
                f"prompt unlike the training data ({data}: similarity "
                f"{details['familiarity']:.2f} < {self.familiar_min:.2f}), so the heuristic "
                f"decides: score {heuristic.score:.1f} = percentile {score:.0f}; "
                f"{heuristic.explain}"
            )
            details.update(heuristic.details, fallback="heuristic", heuristic_score=heuristic.score)
        details["ms"] = round((time.perf_counter() - started) * 1000, 2)
        return RouteScore(round(score, 2), self.name, explain, details)

    def save(self, path: Path) -> Path:
        """Write `path` (.npz) and its note (`path` with .json); return the note's path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        packed = io.BytesIO()
        np.savez_compressed(
            packed,
            format=np.array(FORMAT),
            weights=self.weights.astype(np.float32),
            bias=np.array(self.bias),
            mean=self.mean.astype(np.float32),
            scale=self.scale.astype(np.float32),
            percentiles=self.percentiles,
            layer=np.array(self.layer),
            **cast(
                "dict[str, Any]",
                {
                    "centroids": self.centroids.astype(np.float32),
                    "familiar_min": np.array(self.familiar_min),
                    "held_factors": self.held_factors.astype(np.float32),
                }
                if self.centroids is not None and self.held_factors is not None
                else {},
            ),
        )
        atomic_write_bytes(path, packed.getvalue())
        self.model_id = _file_id(path)
        self.note["model_id"] = self.model_id
        return atomic_write_text(path.with_suffix(".json"), json.dumps(self.note, indent=1) + "\n")


def _file_id(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load(path: Path) -> LearnedRouter:
    """Read a router file and its note; LearnedUnavailable says what is wrong."""
    path = Path(path)
    note_path = path.with_suffix(".json")
    try:
        with np.load(path) as data:
            if int(data["format"]) != FORMAT:
                raise LearnedUnavailable(f"{path} has format {int(data['format'])}, not {FORMAT}")
            arrays = {k: np.array(data[k]) for k in data.files}
        note = json.loads(note_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise LearnedUnavailable(
            f"router file {exc.filename} not found: train one with `tars-opt router train`"
        ) from None
    except (OSError, ValueError, KeyError) as exc:
        raise LearnedUnavailable(f"router file {path} is unreadable ({exc}): retrain it") from None
    return LearnedRouter(
        weights=arrays["weights"].astype(np.float64),
        bias=float(arrays["bias"]),
        mean=arrays["mean"].astype(np.float64),
        scale=arrays["scale"].astype(np.float64),
        percentiles=arrays["percentiles"].astype(np.float64),
        note=note,
        model_id=_file_id(path),
        # A router file without centroids has no familiarity check: always familiar.
        centroids=arrays.get("centroids"),
        familiar_min=float(arrays.get("familiar_min", -1.0)),
        held_factors=arrays.get("held_factors"),
        layer=int(arrays.get("layer", 6)),
    )


def load_learned(
    path: Path | None = None, *, heuristic: HeuristicRouter | None = None, embed: bool = True
) -> LearnedRouter:
    """The router at `path` (default: the shipped one), with its embedder loaded.

    `embed=False` skips loading the embedding model (to read the note or table only).
    """
    router = load(Path(path).expanduser() if path else SHIPPED)
    router.fallback = heuristic or HeuristicRouter(HeuristicRouterConfig())
    if embed:
        router.embedder = _embedder(router.layer)
    return router


def centroids(vecs: np.ndarray, k: int, *, iters: int = 20, seed: int = 0) -> np.ndarray:
    """Spherical k-means: k unit centroids of unit vectors (deterministic for a seed)."""
    vecs = np.asarray(vecs, dtype=np.float32)
    k = min(k, len(vecs))
    cent = vecs[np.random.default_rng(seed).choice(len(vecs), k, replace=False)].copy()
    for _ in range(iters):
        nearest = np.argmax(vecs @ cent.T, axis=1)
        for j in range(k):
            total = vecs[nearest == j].sum(axis=0)
            norm = float(np.linalg.norm(total))
            if norm > 1e-9:  # an empty cluster keeps its old centre
                cent[j] = total / norm
    return cent


def _ridge(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Ridge regression on standardised x (intercept unpenalised)."""
    y_mean = float(y.mean())
    gram = x.T @ x + l2 * np.eye(x.shape[1])
    w = np.linalg.solve(gram, x.T @ (y - y_mean))
    return w, y_mean


def train(
    data: Labelled,
    embeddings: np.ndarray,
    holdout: np.ndarray,
    *,
    note: dict[str, Any] | None = None,
    l2_grid: tuple[float, ...] = L2_GRID,
    layer: int = LAYER,
) -> LearnedRouter:
    """Fit on the prompts outside `holdout`, pick L2 and calibrate on those inside it.

    `embeddings` are the prompts' vectors (n, dim) at MiniLM `layer`; `holdout` a boolean
    mask.
    """
    holdout = np.asarray(holdout, dtype=bool)
    if holdout.all() or not holdout.any():
        raise ValueError("the held-out part must be neither empty nor everything")
    x = features(embeddings, heuristic_features(data.prompts))
    gain = data.strong - data.weak
    fit, held = ~holdout, holdout
    mean = x[fit].mean(axis=0)
    scale = x[fit].std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    best: tuple[float, float, np.ndarray, float] | None = None
    tried = []
    for l2 in l2_grid:
        w, b = _ridge(z[fit], gain[fit], l2)
        pred = z[held] @ w + b
        apgr = summary(pred, data.weak[held], data.strong[held])["apgr"]
        tried.append({"l2": l2, "holdout_apgr": apgr})
        if best is None or apgr > best[0]:
            best = (apgr, l2, w, b)
    assert best is not None
    _, l2, w, b = best
    pred_held = z[held] @ w + b
    cent = centroids(embeddings[fit], FAMILIAR_K)
    held_fam = (np.asarray(embeddings[held], dtype=np.float32) @ cent.T).max(axis=1)
    router = LearnedRouter(
        weights=w,
        bias=b,
        mean=mean,
        scale=scale,
        percentiles=np.percentile(pred_held, np.arange(101)),
        centroids=cent,
        familiar_min=float(np.percentile(held_fam, FAMILIAR_PERCENTILE)),
        held_factors=x[held, embeddings.shape[1] :],
        fallback=HeuristicRouter(HeuristicRouterConfig()),
        layer=layer,
    )
    held_prompts = [p for p, h in zip(data.prompts, held, strict=True) if h]
    held_scores = router.score_embedded(embeddings[held], held_prompts)
    result = summary(held_scores, data.weak[held], data.strong[held])
    router.note = {
        **(note or {}),
        "model": "ridge regression of strong-minus-weak quality on MiniLM embedding + "
        "6 heuristic factors",
        "features": [
            f"embedding[{embeddings.shape[1]}] (all-MiniLM-L6-v2, mean-pooled hidden state "
            f"after layer {layer} of 6)"
        ]
        + [f"heuristic.{f}" for f in FACTORS],
        "trained": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "n_fit": int(fit.sum()),
        "n_holdout": int(held.sum()),
        "l2": l2,
        "l2_search": tried,
        "familiarity": {
            "centroids": len(cent),
            "min_similarity": round(router.familiar_min, 4),
            "rule": f"prompts whose cosine to the nearest of {len(cent)} k-means centroids of "
            f"the fit prompts is below the {FAMILIAR_PERCENTILE:g}th percentile of the "
            "held-out prompts' get the heuristic's score (as a percentile of its held-out "
            "scores)",
        },
        "calibration": {
            "on": "the held-out prompts",
            **{k: v for k, v in result.items() if k != "n"},
        },
    }
    return router
