"""How relevant a piece of text (an old turn, a tool) is to the current prompt.

Two signals, both in 0..1:
- lexical: the share of the prompt's *needles* (names, numbers, code identifiers) and
  content words found in the text - cheap, exact, and what a follow-up question usually
  refers back to;
- semantic: cosine similarity of sentence embeddings (tars_opt/embed.py), when the model
  is installed. Embeddings are kept per text hash in memory and, given a VectorCache, in
  the database too, so a conversation that grows turn by turn only embeds its new
  messages - also when each turn is a new process.
When the model is missing the scorer degrades to the lexical signal alone, and says so.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tars_opt.vector_cache import VectorCache

log = logging.getLogger("tars_opt.relevance")

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:[.:][A-Za-z_][A-Za-z0-9_]*)*|\d[\d.,:/-]*\d|\d")
_NUMBER = re.compile(r"\d[\d.,:/-]*\d|\d")
_IDENT = re.compile(
    r"\b(?:[a-z]+_[a-z0-9_]+|[a-z]+[A-Z][A-Za-z0-9]*|[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*|"
    r"[A-Za-z_]\w*\.[A-Za-z_]\w*(?:\.\w+)*|[A-Za-z_]\w*\(\)|[A-Z]{2,}[0-9]*)\b"
)
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{2,}\b")
STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers him his how i if in into is it its itself just me more
    most my no nor not now of off on once only or other our out over own please same she should
    so some such than that the their them then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would you your
    yours tell give make show use using write explain want need like know get one two also thanks
    thank ok okay yes sure can't don't it's i'm let's""".split()  # noqa: SIM905
)


def words(text: str) -> set[str]:
    """Lower-cased content words of a text (stopwords and 1-letter words left out)."""
    return {w.lower() for w in _WORD.findall(text) if len(w) > 1 and w.lower() not in STOPWORDS}


def needles(text: str) -> set[str]:
    """What a later message would quote exactly: numbers, code identifiers and names."""
    found = {n for n in _NUMBER.findall(text) if len(n) >= 2}
    found |= set(_IDENT.findall(text))
    found |= {n for n in _NAME.findall(text) if n.lower() not in STOPWORDS}
    return found


def lexical_score(
    query: str,
    text: str,
    *,
    query_words: set[str] | None = None,
    text_words: set[str] | None = None,
) -> float:
    """0..1: needles of the query found in the text (weighted 2) and shared content words."""
    qn = needles(query)
    qw = query_words if query_words is not None else words(query)
    if not qn and not qw:
        return 0.0
    tw = text_words if text_words is not None else words(text)
    hit_words = len(qw & tw)
    hit_needles = sum(1 for n in qn if n in text)
    return (2 * hit_needles + hit_words) / (2 * len(qn) + len(qw))


EmbedderFactory = Callable[[], Any]


def default_embedder() -> Any | None:
    """The shared embedding model, or None (with the reason logged) when it is missing."""
    try:
        from tars_opt.embed import get_embedder
    except ImportError:
        log.info("semantic relevance off: tars_opt.embed is not available")
        return None
    try:
        return get_embedder()
    except Exception as exc:  # EmbeddingUnavailable and anything onnxruntime raises
        log.info("semantic relevance off, using word overlap", extra={"reason": str(exc)})
        return None


class Scorer:
    """Scores texts against a query: max(lexical, semantic) when the embedder is there.

    `embedder` is a factory called once on first need (the model loads lazily); pass None
    for lexical scoring only. Vectors are cached by text hash in memory, at most
    `cache_size`, and in `vectors` (the database, shared by processes) when given.
    """

    def __init__(
        self,
        embedder: EmbedderFactory | None = default_embedder,
        cache_size: int = 20_000,
        *,
        vectors: VectorCache | None = None,
    ) -> None:
        self._factory = embedder
        self._embedder: Any = None
        self._tried = embedder is None
        self._cache: dict[str, Any] = {}
        self._words: dict[str, set[str]] = {}
        self._cache_size = cache_size
        self._store = vectors

    @property
    def semantic(self) -> bool:
        """Whether semantic scores are in use (loads the model on first ask)."""
        return self._model() is not None

    def _model(self) -> Any:
        if not self._tried:
            self._tried = True
            model = self._factory() if self._factory else None
            if model is not None and self._store is not None:
                from tars_opt.vector_cache import CachedEmbedder

                model = CachedEmbedder(model, self._store)
            self._embedder = model
        return self._embedder

    def _vectors(self, texts: Sequence[str]) -> Any:
        import numpy as np

        model = self._model()
        keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        if todo:
            fresh = model.embed([texts[i] for i in todo])
            if len(self._cache) + len(todo) > self._cache_size:
                self._cache.clear()
            for i, vec in zip(todo, fresh, strict=True):
                self._cache[keys[i]] = vec
        return np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, 1))

    def _text_words(self, text: str) -> set[str]:
        found = self._words.get(text)
        if found is None:
            found = self._words[text] = words(text)
        return found

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        """One 0..1 score per text."""
        qw = words(query)
        if len(self._words) > self._cache_size:
            self._words.clear()
        lexical = [
            lexical_score(query, t, query_words=qw, text_words=self._text_words(t)) for t in texts
        ]
        if not texts or self._model() is None:
            return lexical
        try:
            vecs = self._vectors([query, *texts])
        except Exception as exc:  # a broken model must not break the request
            log.warning("embedding failed, using word overlap", extra={"error": str(exc)})
            self._embedder = None
            return lexical
        sims = (vecs[1:] @ vecs[0]).tolist()
        return [max(lex, float(sim)) for lex, sim in zip(lexical, sims, strict=True)]
