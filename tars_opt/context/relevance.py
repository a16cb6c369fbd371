"""How relevant a piece of text (an old turn, a tool) is to the current prompt.

Two signals, both in 0..1:
- lexical: the share of the prompt's *needles* (names, numbers, code identifiers) and
  content words found in the text - cheap, exact, and what a follow-up question usually
  refers back to;
- semantic: cosine similarity of sentence embeddings (embeddings/model.py), when the model
  is installed. Embeddings are kept per text hash in memory and, given a VectorCache, in
  the database too, so a conversation that grows turn by turn only embeds its new
  messages - also when each turn is a new process.
When the model is missing the scorer degrades to the lexical signal alone, and says so.

Texts seen for the first time can be embedded *later* (``scores(..., defer_missing=True)``):
they are scored by word overlap this once, and :meth:`Scorer.start_background` embeds them
on a thread while the API call is in flight (waiting on the network costs no CPU), so the
first request of a long history does not pay ~0.4 s of embedding before it is sent.
:meth:`Scorer.settle` joins that thread and stores the vectors for the next request. What
is scored semantically depends only on what was stored before the request, never on how
far the thread got, so results stay deterministic.
"""

from __future__ import annotations

import atexit
import functools
import logging
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from tars_opt.hashing import sha256_text
from tars_opt.tokens import read_ends

if TYPE_CHECKING:
    from tars_opt.embeddings.store import VectorCache

log = logging.getLogger("tars_opt.relevance")

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:[.:][A-Za-z_][A-Za-z0-9_]*)*|\d[\d.,:/-]*\d|\d")
_NUMBER = re.compile(r"\d[\d.,:/-]*\d|\d")
# Identifiers that carry a digit: alpha-7, v2, B7, x86_64, mia_li_3668, XEWRD9, GPT-4,
# file2.py, and issue numbers (#4). The digit is what a follow-up quotes exactly.
_CODE = re.compile(
    r"#\d+\b|(?<![\w#])(?:[A-Za-z0-9]+[-_.])*[A-Za-z]*\d[A-Za-z0-9]*(?:[-_.][A-Za-z0-9]+)*"
)
_ORDINAL = re.compile(r"\d+(?:st|nd|rd|th)", re.IGNORECASE)
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
    """Lower-cased content words of a text: stopwords and 1-letter words left out, single
    digits kept (a weak term: "7" is a word of "alpha-7", not of "alpha-17")."""
    return {
        w.lower()
        for w in _WORD.findall(text)
        if (len(w) > 1 or w.isdigit()) and w.lower() not in STOPWORDS
    }


def _is_code(token: str) -> bool:
    if token.startswith("#"):
        return True
    has_digit = any(c.isdigit() for c in token)
    has_letter = any(c.isalpha() for c in token)
    return has_digit and has_letter and not _ORDINAL.fullmatch(token)


def needles(text: str) -> set[str]:
    """What a later message would quote exactly: identifiers with digits, numbers (two
    digits or more), code identifiers and names. A number inside an identifier belongs to
    it ("alpha-12" is one needle, not "alpha-12" and "12"); match them with `holds`."""
    found: set[str] = set()

    def take(m: re.Match[str]) -> str:
        if not _is_code(m.group()):
            return m.group()
        found.add(m.group())
        return " " * len(m.group())

    plain = _CODE.sub(take, text)
    found |= {n for n in _NUMBER.findall(plain) if len(n) >= 2}
    found |= set(_IDENT.findall(plain))
    found |= {n for n in _NAME.findall(plain) if n.lower() not in STOPWORDS}
    return found


@functools.lru_cache(maxsize=8192)
def _needle_pattern(needle: str) -> re.Pattern[str]:
    body = re.escape(needle)
    if needle[0].isdigit() and not any(c.isalpha() for c in needle):
        # A number: not part of a longer number ("8003" is not in "18003" or "8003.5"),
        # but it may end an identifier ("12" is in "alpha-12").
        return re.compile(rf"(?<!\d)(?<!\d[.,]){body}(?!\d)(?![.,]\d)")
    # A name or identifier: whole, not the start or end of a longer one ("alpha-7" is
    # not in "alpha-17", "alpha-70" or "alpha-7-west"; "os.path" is in "os.path.join").
    # Case matters for plain names ("Will" is not "will"), not once a digit is in it.
    flags = re.IGNORECASE if _folded(needle) is not None else 0
    return re.compile(rf"(?<!\w)(?<![A-Za-z0-9]-){body}(?!\w)(?!-[A-Za-z0-9])(?!\.\d)", flags)


def holds(text: str, needle: str) -> bool:
    """Whether `text` holds the needle as a whole name, number or identifier."""
    return _needle_pattern(needle).search(text) is not None


@functools.lru_cache(maxsize=8192)
def _folded(needle: str) -> str | None:
    """The needle in lower case when it matches in any case (it has a digit), else None."""
    return needle.lower() if any(c.isdigit() for c in needle) else None


def held(text: str, candidates: Iterable[str]) -> set[str]:
    """The needles among `candidates` that `text` holds (see `holds`)."""
    found: set[str] = set()
    low: str | None = None
    for n in candidates:
        # A plain substring test first: most needles are not in a given text at all.
        folded = _folded(n)
        if folded is None:
            if n not in text:
                continue
        else:
            low = text.lower() if low is None else low
            if folded not in low:
                continue
        if holds(text, n):
            found.add(n)
    return found


def lexical_score(
    query: str,
    text: str,
    *,
    query_words: set[str] | None = None,
    text_words: set[str] | None = None,
    query_needles: set[str] | None = None,
) -> float:
    """0..1: needles of the query found in the text (weighted 2) and shared content words."""
    qn = query_needles if query_needles is not None else needles(query)
    qw = query_words if query_words is not None else words(query)
    if not qn and not qw:
        return 0.0
    tw = text_words if text_words is not None else words(text)
    hit_words = len(qw & tw)
    hit_needles = len(held(text, qn)) if qn else 0
    return (2 * hit_needles + hit_words) / (2 * len(qn) + len(qw))


EmbedderFactory = Callable[[], Any]
# Texts waiting for the background at most (a caller that plans without ever sending
# must not grow the list without bound).
_LATER_MAX = 4096
# How long an answered request waits at most for the background embedding to finish.
JOIN_TIMEOUT_S = 30.0


def default_embedder() -> Any | None:
    """The shared embedding model, or None (with the reason logged) when it is missing."""
    try:
        from tars_opt.embeddings.model import get_embedder
    except ImportError:
        log.info("semantic relevance off: tars_opt.embeddings.model is not available")
        return None
    try:
        return get_embedder()
    except Exception as exc:  # EmbeddingUnavailable and anything onnxruntime raises
        log.info("semantic relevance off, using word overlap", extra={"reason": str(exc)})
        return None


_RUNNING: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


@atexit.register
def _finish_running() -> None:
    """At exit, let a background embedding end (briefly) rather than tear the model down
    under it: a request that failed never reached the join in `after`."""
    for thread in list(_RUNNING):
        thread.join(JOIN_TIMEOUT_S / 3)


class _Job:
    """Texts being embedded on a background thread, and what came of it."""

    def __init__(self, model: Any, texts: list[str]) -> None:
        self.texts = texts
        self.vectors: Any = None
        self.error: Exception | None = None
        self.thread = threading.Thread(
            target=self._run, args=(model,), name="tars-opt-embed", daemon=True
        )
        _RUNNING.add(self.thread)
        self.thread.start()

    def _run(self, model: Any) -> None:
        try:
            self.vectors = model.embed(self.texts)
        except Exception as exc:  # reported by settle(); a background error must not crash
            self.error = exc


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
        self._embedder: Any = None  # the model, reading and writing `vectors` when given
        self._raw: Any = None  # the model alone (the background thread touches no database)
        self._tried = embedder is None
        self._cache: dict[str, Any] = {}
        self._words: dict[str, set[str]] = {}
        self._cache_size = cache_size
        self._store = vectors
        self._later: dict[str, str] = {}  # key -> text, to embed after this request
        self._job: _Job | None = None
        # One Scorer serves every thread of a stage: the model load, the memory cache and
        # the background job change under this lock.
        self._lock = threading.RLock()

    @property
    def semantic(self) -> bool:
        """Whether semantic scores are in use (loads the model on first ask)."""
        return self._model() is not None

    @property
    def waiting(self) -> int:
        """Texts scored by word overlap so far, whose vectors come after the request."""
        return len(self._later) + (len(self._job.texts) if self._job else 0)

    def _model(self) -> Any:
        if not self._tried:
            with self._lock:
                if not self._tried:
                    model = self._factory() if self._factory else None
                    self._raw = model
                    if model is not None and self._store is not None:
                        from tars_opt.embeddings.store import CachedEmbedder

                        model = CachedEmbedder(model, self._store)
                    self._embedder = model
                    self._tried = True
        return self._embedder

    @staticmethod
    def _key(text: str) -> str:
        return sha256_text(text)

    def _remember(self, keys: Sequence[str], vectors: Any) -> None:
        with self._lock:
            if len(self._cache) + len(keys) > self._cache_size:
                self._cache.clear()
            for key, vec in zip(keys, vectors, strict=True):
                self._cache[key] = vec

    def _cached(self, keys: Sequence[str]) -> dict[int, Any]:
        """The vectors in memory, by position (read at once: another thread may clear)."""
        with self._lock:
            return {i: self._cache[k] for i, k in enumerate(keys) if k in self._cache}

    def _vectors(self, texts: Sequence[str]) -> Any:
        import numpy as np

        model = self._model()
        keys = [self._key(t) for t in texts]
        found = self._cached(keys)
        todo = [i for i in range(len(keys)) if i not in found]
        if todo:
            fresh = model.embed([texts[i] for i in todo])
            self._remember([keys[i] for i in todo], fresh)
            found.update(zip(todo, fresh, strict=True))
        return np.stack([found[i] for i in range(len(keys))]) if keys else np.zeros((0, 1))

    def _known(self, texts: Sequence[str]) -> dict[int, Any]:
        """The vectors already at hand (memory, then the database), by text position."""
        keys = [self._key(t) for t in texts]
        found = self._cached(keys)
        rest = [i for i in range(len(texts)) if i not in found]
        if rest and hasattr(self._embedder, "lookup"):
            stored = self._embedder.lookup([texts[i] for i in rest])
            hits = [(i, stored[j]) for j, i in enumerate(rest) if j in stored]
            self._remember([keys[i] for i, _ in hits], [v for _, v in hits])
            found.update(hits)
        return found

    def has_vector(self, text: str) -> bool:
        """Whether the text's vector is in memory (looked up or embedded already)."""
        return self._key(text) in self._cache

    def _text_words(self, text: str) -> set[str]:
        found = self._words.get(text)
        if found is None:
            found = self._words[text] = words(text)
        return found

    def scores(
        self, query: str, texts: Sequence[str], *, defer_missing: bool = False
    ) -> list[float]:
        """One 0..1 score per text.

        `defer_missing`: texts with no vector yet get their word-overlap score and are
        embedded after the request (start_background / settle) instead of now. A very
        long query is read as `tokens.read_ends` gives it.
        """
        query = read_ends(query)
        qw, qn = words(query), needles(query)
        if len(self._words) > self._cache_size:
            self._words.clear()
        lexical = [
            lexical_score(
                query, t, query_words=qw, text_words=self._text_words(t), query_needles=qn
            )
            for t in texts
        ]
        if not texts or self._model() is None:
            return lexical
        try:
            if not defer_missing:
                vecs = self._vectors([query, *texts])
                sims = dict(enumerate((vecs[1:] @ vecs[0]).tolist()))
            else:
                known = self._known(texts)
                self.later(t for i, t in enumerate(texts) if i not in known)
                qvec = self._vectors([query])[0]
                sims = {i: float(vec @ qvec) for i, vec in known.items()}
        except Exception as exc:  # a broken model must not break the request
            log.warning("embedding failed, using word overlap", extra={"error": str(exc)})
            with self._lock:
                self._embedder = self._raw = None
                self._later.clear()
            return lexical
        return [max(lex, sims[i]) if i in sims else lex for i, lex in enumerate(lexical)]

    def later(self, texts: Iterable[str]) -> None:
        """Embed these texts after the request (those not already at hand)."""
        if self._model() is None:
            return
        with self._lock:
            running = set(self._job.texts) if self._job else set()
            for text in texts:
                key = self._key(text)
                if key not in self._cache and text not in running and len(self._later) < _LATER_MAX:
                    self._later[key] = text

    def start_background(self) -> None:
        """Start embedding the texts left for later on a thread (one job at a time)."""
        with self._lock:
            if self._job is not None or not self._later or self._raw is None:
                return
            todo = list(self._later.values())
            self._later.clear()
            found = self._known(todo)  # the database may have them from another process
            todo = [t for i, t in enumerate(todo) if i not in found]
            if todo:
                self._job = _Job(self._raw, todo)

    def settle(self, *, embed_rest: bool = True) -> None:
        """Wait for the background job and keep its vectors (memory and database); then,
        with `embed_rest`, embed what was left for later but never started, else drop it."""
        with self._lock:
            job, self._job = self._job, None
            rest, self._later = list(self._later.values()), {}
        if job is not None:
            job.thread.join(JOIN_TIMEOUT_S)
            if job.thread.is_alive():
                # Never hold an answered request hostage: the vectors are only a cache.
                log.warning("background embedding still running; its vectors are dropped")
            elif job.error is not None or job.vectors is None:
                log.warning(
                    "background embedding failed", extra={"error": str(job.error or "no vectors")}
                )
            else:
                self._keep(job.texts, job.vectors)
        if rest and embed_rest and self._raw is not None:
            try:
                self._keep(rest, self._raw.embed(rest))
            except Exception as exc:
                log.warning("embedding failed", extra={"error": str(exc)})

    def _keep(self, texts: list[str], vectors: Any) -> None:
        try:
            self._remember([self._key(t) for t in texts], vectors)
            if hasattr(self._embedder, "store"):
                self._embedder.store(texts, vectors)
        except Exception as exc:  # a bad batch or an unwritable table: only the cache is lost
            log.warning("embeddings not kept", extra={"error": str(exc)})
