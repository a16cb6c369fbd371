"""The embedding vectors kept in the database: read back by a new process-like scorer
without embedding again, bounded by size, damaged rows ignored, no text stored, and the
prune stage of a chain with a database uses it."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from tars_opt import Request, open_app
from tars_opt.backends.offline import OfflineBackend
from tars_opt.context.prune import PruneStage
from tars_opt.context.relevance import Scorer
from tars_opt.embeddings.store import TOUCH_AFTER_S, CachedEmbedder, VectorCache, text_key
from tars_opt.store import connect


class BagOfWords:
    """A tiny deterministic Embedder: hashed bag of words (crc32, stable across runs)."""

    name, dim = "bag-of-words-test", 32

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for w in text.lower().split():
                out[row, zlib.crc32(w.strip(".,?:").encode()) % self.dim] += 1.0
            out[row, 0] += 0.1  # never a zero row: the protocol promises unit vectors
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class Counting:
    """Wraps an Embedder and records every text it is asked to embed."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name, self.dim = inner.name, inner.dim
        self.texts: list[str] = []
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        self.texts.extend(texts)
        return self.inner.embed(texts)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


TEXTS = [
    "The penguin colonies of Antarctica grow in winter.",
    "Quarterly budget review: vendor timelines slipped.",
    "def parse_config(path): return yaml.safe_load(path)",
]
QUERY = "tell me about antarctic penguins"


def process(path: Path, counter: Counting, **cache) -> Scorer:
    """A scorer as a new CLI process would build it: its own connection, empty memory."""
    return Scorer(lambda: counter, vectors=VectorCache(connect(path), **cache))


def test_second_process_reads_the_vectors_back_without_embedding(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    first, second = Counting(BagOfWords()), Counting(BagOfWords())
    scores = process(path, first).scores(QUERY, TEXTS)
    assert sorted(first.texts) == sorted([QUERY, *TEXTS])
    assert process(path, second).scores(QUERY, TEXTS) == pytest.approx(scores)
    assert second.texts == []
    # A conversation that grew by one message: only it (and the new prompt) are embedded.
    third = Counting(BagOfWords())
    process(path, third).scores("and the budget?", [*TEXTS, "A new message."])
    assert sorted(third.texts) == ["A new message.", "and the budget?"]


def test_one_embed_call_and_duplicates_embedded_once(tmp_path: Path) -> None:
    counter = Counting(BagOfWords())
    cached = CachedEmbedder(counter, VectorCache(connect(tmp_path / "t.db")))
    out = cached.embed([TEXTS[0], TEXTS[1], TEXTS[0]])
    assert (counter.calls, counter.texts) == (1, TEXTS[:2])
    assert np.allclose(out[0], out[2])
    assert np.allclose(out, BagOfWords().embed([TEXTS[0], TEXTS[1], TEXTS[0]]))


def test_no_text_is_stored_only_its_hash_and_vector(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    secret = "my password is hunter2-zebra-4471"
    process(path, Counting(BagOfWords())).scores(QUERY, [secret, *TEXTS])
    db = connect(path)
    rows = list(db.query("SELECT * FROM text_vectors"))
    assert {r["sha256"] for r in rows} == {text_key(t) for t in [QUERY, secret, *TEXTS]}
    assert set(rows[0]) == {"model", "sha256", "dim", "vector", "used"}
    db.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("t.db*"))
    assert b"hunter2" not in raw and b"penguin" not in raw


def test_the_least_recently_used_rows_go_past_the_bound(tmp_path: Path) -> None:
    db, clock = connect(tmp_path / "t.db"), Clock()
    cache = VectorCache(db, max_rows=3, clock=clock)
    embedder = CachedEmbedder(BagOfWords(), cache)
    for text in ["one", "two", "three"]:
        embedder.embed([text])
        clock.now += 2 * TOUCH_AFTER_S
    embedder.embed(["one"])  # read after a while: "one" becomes the most recent
    clock.now += 1
    embedder.embed(["four"])
    assert cache.count() == 3
    kept = {r["sha256"] for r in db.query("SELECT sha256 FROM text_vectors")}
    assert kept == {text_key(t) for t in ["one", "three", "four"]}


def test_a_recent_read_writes_nothing(tmp_path: Path) -> None:
    db, clock = connect(tmp_path / "t.db"), Clock()
    embedder = CachedEmbedder(BagOfWords(), VectorCache(db, clock=clock))
    embedder.embed(TEXTS)
    before = db.execute("SELECT total_changes()").fetchone()[0]
    clock.now += TOUCH_AFTER_S / 2
    embedder.embed(TEXTS)
    assert db.execute("SELECT total_changes()").fetchone()[0] == before


@pytest.mark.parametrize(
    "blob",
    [
        b"\x01\x02",  # not float32
        np.zeros(16, dtype="<f4").tobytes(),  # wrong dimension
        np.full(32, 2.0, dtype="<f4").tobytes(),  # not a unit vector
        np.full(32, np.nan, dtype="<f4").tobytes(),
    ],
)
def test_a_damaged_vector_is_ignored_embedded_again_and_replaced(
    tmp_path: Path, blob: bytes
) -> None:
    path = tmp_path / "t.db"
    process(path, Counting(BagOfWords())).scores(QUERY, TEXTS)
    db = connect(path)
    db.execute("UPDATE text_vectors SET vector = ? WHERE sha256 = ?", [blob, text_key(TEXTS[1])])
    counter = Counting(BagOfWords())
    scores = process(path, counter).scores(QUERY, TEXTS)
    assert counter.texts == [TEXTS[1]]
    assert scores == pytest.approx(
        process(tmp_path / "fresh.db", Counting(BagOfWords())).scores(QUERY, TEXTS)
    )
    stored = db.execute(
        "SELECT vector FROM text_vectors WHERE sha256 = ?", [text_key(TEXTS[1])]
    ).fetchone()[0]
    assert np.allclose(np.frombuffer(stored, "<f4"), BagOfWords().embed([TEXTS[1]])[0])


def test_an_unusable_table_costs_only_the_embedding(tmp_path: Path) -> None:
    db = connect(tmp_path / "t.db")
    counter = Counting(BagOfWords())
    scorer = Scorer(lambda: counter, vectors=VectorCache(db))
    db.execute("DROP TABLE text_vectors")
    scores = scorer.scores(QUERY, TEXTS)
    assert sorted(counter.texts) == sorted([QUERY, *TEXTS])
    assert scores == pytest.approx(Scorer(lambda: BagOfWords()).scores(QUERY, TEXTS))
    assert scorer.semantic  # the model stays in use


FILLER = "The planning notes cover staffing, vendor timelines and budget reviews. " * 12


def long_history(turns: int = 15) -> list[dict]:
    """User/assistant turns, each a few hundred tokens: over the pruning budget."""
    history = []
    for i in range(turns):
        history += [
            {"role": "user", "content": f"Question {i} about penguins: {FILLER}"},
            {"role": "assistant", "content": f"Answer {i}: {FILLER}"},
        ]
    return history


@pytest.fixture
def processes() -> tuple[list[Counting], object]:
    """An embedder factory whose every call (one per new scorer: one per process) gets its
    own counting embedder, and the list of those embedders."""
    counters: list[Counting] = []

    def factory() -> Counting:
        counters.append(Counting(BagOfWords()))
        return counters[-1]

    return counters, factory


def test_the_chain_prune_stage_keeps_vectors_in_the_database(
    home: Path, monkeypatch: pytest.MonkeyPatch, processes
) -> None:
    Path("performance-config.yaml").write_text(
        "backend: offline\ncache: {enabled: false}\ntools: {semantic: false}\n"
    )
    counters, factory = processes
    monkeypatch.setattr("tars_opt.context.prune.default_embedder", factory)
    history = long_history()
    app = open_app()
    first = app.optimizer(backend=OfflineBackend()).ask(
        Request.from_prompt("What about the penguins?", messages=tuple(history))
    )
    prune = next(d for d in first.decisions if d.stage == "prune")
    assert prune.data["scoring"] == "semantic+lexical"
    # A history seen for the first time: its turns were embedded while the call was out.
    assert prune.data["scored_lexically"] > 0
    embedded = len(counters[0].texts)
    assert embedded > 1
    assert app.db.execute("SELECT COUNT(*) FROM text_vectors").fetchone()[0] == embedded
    # The next turn, in a new process: a new app and optimizer. Only the new prompt is
    # embedded before sending (the old part of the history did not change: the cut moves
    # in steps), and the turn added since, in the background.
    history += [
        {"role": "user", "content": "What about the penguins?"},
        {"role": "assistant", "content": "They are fine."},
    ]
    again = open_app().optimizer(backend=OfflineBackend())
    stages = {s.name: s for s in again.stages}
    assert isinstance(stages["prune"], PruneStage)
    assert stages["tools"].scorer._store is not None  # tool selection shares the table
    second = again.ask(Request.from_prompt("And their colonies?", messages=tuple(history)))
    prune = next(d for d in second.decisions if d.stage == "prune")
    assert prune.data["scored_lexically"] == 0
    assert counters[1].texts == ["And their colonies?", "What about the penguins?\nThey are fine."]


def test_no_database_means_memory_only(tmp_path: Path) -> None:
    from tars_opt.config.schema import PruneConfig

    assert PruneStage(PruneConfig()).scorer._store is None
    db = connect(tmp_path / "t.db")
    assert PruneStage(PruneConfig(vector_cache_rows=0), db).scorer._store is None
    assert PruneStage(PruneConfig(), db).scorer._store is not None


def test_context_inspect_reads_the_vectors_an_earlier_process_stored(
    home: Path, monkeypatch: pytest.MonkeyPatch, processes
) -> None:
    from tars_opt.config.loader import load_config
    from tars_opt.pipeline.optimizer import Optimizer

    counters, factory = processes
    monkeypatch.setattr("tars_opt.context.prune.default_embedder", factory)
    request = Request.from_prompt("What about the vendors?", messages=tuple(long_history()))
    config = load_config(None).config
    first = Optimizer(config, connect(home / "t.db")).inspect(request)
    second = Optimizer(config, connect(home / "t.db")).inspect(request)
    assert first["scoring"] == "semantic+lexical" and first["prune"] == second["prune"]
    assert len(counters[0].texts) > 1 and counters[1].texts == []


# ---- turns first seen are embedded while the request is on the wire --------------------


def _stage(path: Path, counter: Counting, **cfg) -> PruneStage:
    from tars_opt.config.schema import PruneConfig

    scorer = Scorer(lambda: counter, vectors=VectorCache(connect(path)))
    return PruneStage(PruneConfig(**cfg), None, scorer=scorer)


def _needy_request(**extra) -> Request:
    """A long history whose 3rd turn only the embedding relates to the prompt."""
    history = long_history()
    history[4] = {"role": "user", "content": "Antarctic penguins colonies grow in winter."}
    return Request.from_prompt("antarctic penguins colonies", messages=tuple(history), **extra)


def test_a_cold_history_waits_for_no_embedding_and_the_next_request_has_them(
    tmp_path: Path,
) -> None:
    path, request = tmp_path / "t.db", _needy_request()
    counter = Counting(BagOfWords())
    stage = _stage(path, counter)
    plan = stage.plan(request)
    # Before sending, only the prompt was embedded; the older turns got word overlap.
    assert counter.texts == [request.prompt]
    assert plan.lexical_only == len(plan.old) > 0
    stage.before_send(None)  # the chain: the API call starts
    stage.after(None, None)  # ... and its answer is in
    turns = len(plan.turns)
    assert len(counter.texts) == 1 + turns
    assert VectorCache(connect(path)).count() == 1 + turns
    # The next request, in a new process: everything is stored, nothing waits.
    again = Counting(BagOfWords())
    warm = _stage(path, again).plan(request)
    assert warm.lexical_only == 0 and again.texts == []
    inline = _stage(tmp_path / "inline.db", Counting(BagOfWords()), embed_in_background=False)
    assert [t.index for t in warm.relevant] == [t.index for t in inline.plan(request).relevant]


def test_deferred_work_and_the_inline_setting_embed_before_sending(tmp_path: Path) -> None:
    for name, stage, request in [
        ("deferred", _stage(tmp_path / "a.db", Counting(BagOfWords())), _needy_request(defer=True)),
        (
            "inline",
            _stage(tmp_path / "b.db", Counting(BagOfWords()), embed_in_background=False),
            _needy_request(),
        ),
    ]:
        plan = stage.plan(request)
        assert plan.lexical_only == 0, name
        assert stage.scorer.waiting == 0, name


def test_a_failed_call_leaves_its_vectors_to_the_next_request(tmp_path: Path) -> None:
    path, counter = tmp_path / "t.db", Counting(BagOfWords())
    stage = _stage(path, counter)
    request = _needy_request()
    stage.apply(request)
    stage.before_send(None)  # sent, then the API failed: after() never runs
    stage.apply(request)  # the next request keeps what the thread made
    assert VectorCache(connect(path)).count() == len(stage.plan(request).turns) + 1
    assert stage.plan(request).lexical_only == 0


def test_a_request_never_sent_drops_its_unstarted_work(tmp_path: Path) -> None:
    counter = Counting(BagOfWords())
    stage = _stage(tmp_path / "t.db", counter)
    stage.plan(_needy_request())
    assert stage.scorer.waiting > 0
    stage.apply(Request.from_prompt("hi"))  # e.g. the budget refused the first one
    assert stage.scorer.waiting == 0 and counter.texts == ["antarctic penguins colonies"]


def test_a_background_failure_is_logged_and_costs_only_the_vectors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Breaks(Counting):
        def embed(self, texts):
            if len(texts) > 1:
                raise RuntimeError("onnxruntime fell over")
            return super().embed(texts)

    stage = _stage(tmp_path / "t.db", Breaks(BagOfWords()))
    request = _needy_request()
    stage.plan(request)
    stage.before_send(None)
    stage.after(None, None)
    assert "background embedding failed" in caplog.text
    assert stage.plan(request).lexical_only > 0  # still word overlap, still answering


def test_the_chain_embeds_during_the_call(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the optimizer: the pruner's batch is embedded while the backend answers,
    and stored by the time the reply is back."""
    import threading

    Path("performance-config.yaml").write_text(
        "backend: offline\ncache: {enabled: false}\ntools: {semantic: false}\n"
    )
    running, answered = threading.Event(), threading.Event()
    overlapped: list[bool] = []

    class Gated(BagOfWords):
        def embed(self, texts):
            if len(texts) > 1:  # the turns' batch, not the prompt (on the job's thread)
                running.set()
                overlapped.append(answered.wait(10))
            return super().embed(texts)

    class Watching(OfflineBackend):
        def send(self, params):
            if "summar" not in str(params.get("system", "")):  # the request, not its summary
                assert running.wait(10)  # the thread is embedding while we answer
                answered.set()
            return super().send(params)

    monkeypatch.setattr("tars_opt.context.prune.default_embedder", lambda: Gated())
    app = open_app()
    reply = app.optimizer(backend=Watching()).ask(_needy_request())
    prune = next(d for d in reply.decisions if d.stage == "prune")
    assert prune.data["scored_lexically"] > 0
    assert overlapped == [True]  # the batch was being embedded while the backend answered
    assert app.db.execute("SELECT COUNT(*) FROM text_vectors").fetchone()[0] > 1
