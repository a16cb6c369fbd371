"""A complexity score (0-100) from prompt features, with factors that actually spread.

Every factor is first scaled to 0-1 (a log scale for lengths, a saturating count for cues)
and then worth up to its weight in points; the weights sum to 100 by default, so the score
uses the whole range and each factor's share can be shown (`ask --explain`). Raw counts
times weights summing to 1 would leave most prompts under 10.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from tars_opt.config.schema import HeuristicRouterConfig
from tars_opt.routing import RouteScore
from tars_opt.tokens import estimate_message, estimate_system
from tars_opt.types import Request

# Where each factor reaches its full value.
FULL_WORDS = 300
FULL_QUESTIONS = 3
FULL_TECHNICAL = 5
FULL_REASONING = 3
FULL_CONTEXT_TOKENS = 8000
FULL_OUTPUT_TOKENS = 1000
DEFAULT_OUTPUT_TOKENS = 150

_TECH_TERMS = (
    r"algorithm|complexity|recursion|recursive|data ?structure|hash ?map|binary tree|graph|"
    r"database|sql|query|index(es)?|schema|transaction|api|endpoint|http|rest|grpc|json|yaml|"
    r"latency|throughput|concurren\w*|thread\w*|async\w*|mutex|deadlock|race condition|"
    r"kubernetes|docker|container|microservices?|distributed|scalab\w*|cache|caching|"
    r"compiler|runtime|memory leak|pointer|stack trace|exception|regex|unit tests?|"
    r"encryption|authentication|oauth|tls|protocol|kernel|cpu|gpu|neural|gradient|"
    r"regression|probability|statistic\w*|variance|eigen\w*|matrix|matrices|integral|"
    r"derivative|equation|theorem|lemma|polynomial|logarithm\w*|vector|tensor|"
    r"function|variable|class|interface|module|library|framework|python|javascript|"
    r"typescript|java|rust|golang|c\+\+|react|node\.?js|bash|shell|git|"
    r"molecul\w*|enzyme|quantum|thermodynamic\w*|voltage|circuit|genome|protein"
)
_TECH = re.compile(rf"\b({_TECH_TERMS})\b", re.IGNORECASE)
# Code-shaped tokens (snake_case, camelCase, calls, fences) count as technical terms too.
_CODE_TOKEN = re.compile(r"```|\b[a-z]+_[a-z_]+\b|\b[a-z]+[A-Z]\w*\b|\w+\(\)")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?%?")
_REASONING = re.compile(
    r"\b(why|explain|prove|proof|derive|step[- ]by[- ]step|analy[sz]e|analysis|compare|"
    r"contrast|design|architect\w*|debug|optimi[sz]e|trade-?offs?|evaluate|assess|calculate|"
    r"compute|solve|justify|reason(ing)?|implications?|what if|how would|how many|how much|"
    r"plan|strategy|critique|pros and cons|root cause|refactor|estimate)\b",
    re.IGNORECASE,
)
_LONG_OUTPUT = (
    (re.compile(r"\b(essay|article|report|story|blog post|chapter|whitepaper)\b", re.I), 1000),
    (re.compile(r"\b(detailed|comprehensive|in[- ]depth|thorough|exhaustive)\b", re.I), 800),
    (
        re.compile(
            r"\b(implement|write (a |the )?(code|program|function|script|class)|rewrite|"
            r"translate)\b",
            re.I,
        ),
        600,
    ),
    (re.compile(r"\b(list|steps|outline|plan|compare|explain)\b", re.I), 400),
    (re.compile(r"\b(summari[sz]e|summary|describe)\b", re.I), 300),
)
_SHORT_OUTPUT = re.compile(
    r"\b(one word|yes or no|true or false|briefly|in short|one sentence|one line|tl;?dr|"
    r"just the (answer|number|name)|short answer)\b",
    re.IGNORECASE,
)
FACTORS = ("words", "questions", "technical", "reasoning", "context", "output")
LEVEL_NAMES = ("simple", "straightforward", "complex", "highly complex")


@dataclass(frozen=True)
class Factor:
    """One factor of the score: what was counted, its 0-1 value and the points it adds."""

    name: str
    raw: float
    value: float
    points: float
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class HeuristicScore:
    """The complexity score of one request and the factors that make it."""

    score: float
    level: str
    factors: tuple[Factor, ...]

    def explain(self) -> str:
        """One line: each factor's points, largest first."""
        parts = sorted(self.factors, key=lambda f: -f.points)
        return ", ".join(f"{f.name} {f.points:.1f} ({f.note})" for f in parts if f.points > 0)


def _log_scale(count: float, full: float) -> float:
    return min(1.0, math.log1p(max(count, 0.0)) / math.log1p(full))


def context_tokens(request: Request) -> int:
    """Estimated tokens of the history and system prompt (the prompt itself excluded)."""
    return sum(estimate_message(m) for m in request.history) + estimate_system(request.system)


def expected_output_tokens(prompt: str) -> int:
    """A rough guess of the answer's length from cues in the prompt."""
    if _SHORT_OUTPUT.search(prompt):
        return 50
    guess = DEFAULT_OUTPUT_TOKENS
    for pattern, tokens in _LONG_OUTPUT:
        if pattern.search(prompt):
            guess = max(guess, tokens)
    return guess


def raw_factors(prompt: str, context: int) -> dict[str, float]:
    """The counts the score is made of (also used as features by the learned router)."""
    technical = len(_TECH.findall(prompt)) + len(_CODE_TOKEN.findall(prompt))
    # Several numbers in a prompt signal arithmetic: count them as one technical term.
    if len(_NUMBER.findall(prompt)) >= 3:
        technical += 1
    return {
        "words": float(len(prompt.split())),
        "questions": float(prompt.count("?")),
        "technical": float(technical),
        "reasoning": float(len(_REASONING.findall(prompt))),
        "context": float(context),
        "output": float(expected_output_tokens(prompt)),
    }


def scaled_factors(raw: dict[str, float]) -> dict[str, float]:
    """Each factor in 0-1, where 1 is the point its full weight is reached."""
    return {
        "words": _log_scale(raw["words"], FULL_WORDS),
        "questions": min(1.0, raw["questions"] / FULL_QUESTIONS),
        "technical": min(1.0, raw["technical"] / FULL_TECHNICAL),
        "reasoning": min(1.0, raw["reasoning"] / FULL_REASONING),
        "context": _log_scale(raw["context"], FULL_CONTEXT_TOKENS),
        # 50 tokens (a one-liner) is 0, FULL_OUTPUT_TOKENS is 1, log scale between.
        "output": max(
            0.0, min(1.0, math.log(raw["output"] / 50) / math.log(FULL_OUTPUT_TOKENS / 50))
        ),
    }


_NOTES = {
    "words": "{raw:.0f} words",
    "questions": "{raw:.0f} question mark(s)",
    "technical": "{raw:.0f} technical term(s)",
    "reasoning": "{raw:.0f} reasoning cue(s)",
    "context": "{raw:.0f} context tokens",
    "output": "~{raw:.0f} output tokens expected",
}


class HeuristicRouter:
    """Scores requests 0-100 from the config's weights; explainable factor by factor."""

    name = "heuristic"

    def __init__(self, config: HeuristicRouterConfig) -> None:
        weights = config.weights.model_dump()
        total = sum(weights.values())
        # Scale so full marks on every factor is exactly 100 whatever the weights sum to.
        self.points = {k: 100.0 * w / total for k, w in weights.items()}
        self.levels = list(config.levels)

    def score(self, request: Request) -> HeuristicScore:
        """The complexity score of `request` with its factors."""
        return self.score_text(request.prompt, context_tokens(request))

    def score_text(self, prompt: str, context: int = 0) -> HeuristicScore:
        """The complexity score of a bare prompt with `context` tokens of history."""
        raw = raw_factors(prompt, context)
        scaled = scaled_factors(raw)
        factors = tuple(
            Factor(
                name,
                raw[name],
                round(scaled[name], 4),
                round(scaled[name] * self.points[name], 2),
                _NOTES[name].format(raw=raw[name]),
            )
            for name in FACTORS
        )
        total = round(min(100.0, sum(f.points for f in factors)), 2)
        return HeuristicScore(total, self.level(total), factors)

    def level(self, score: float) -> str:
        """The band name of a score (simple, straightforward, complex, highly complex)."""
        band = sum(score >= edge for edge in self.levels)
        return LEVEL_NAMES[band]

    def route_score(self, request: Request) -> RouteScore:
        """The score as the route stage records it: total, level and every factor."""
        result = self.score(request)
        return RouteScore(
            result.score,
            self.name,
            f"{result.level}: {result.explain() or 'no factor fired'}",
            {"level": result.level, "factors": {f.name: f.points for f in result.factors}},
        )
