"""Token counting: the API's count_tokens when there is one (cached, rate limited), else
the local estimate, each count marked exact or estimated."""

from __future__ import annotations

from pathlib import Path

from tars_opt import tokens
from tars_opt.backends.offline import OfflineBackend
from tars_opt.context.token_counts import TokenCounter
from tars_opt.errors import BackendError
from tars_opt.store import connect
from tars_opt.tokens import estimate_params


class Counting(OfflineBackend):
    """A backend whose count_tokens answers like the API (a fixed per-message count)."""

    name = "anthropic"

    def __init__(self, fail: str | None = None) -> None:
        super().__init__()
        self.calls = 0
        self.fail = fail

    def count_tokens(self, params: dict) -> int:
        self.calls += 1
        if self.fail:
            raise BackendError("API error 429 rate_limit_error: slow down", kind=self.fail)
        return 100 + 7 * len(params["messages"])


def body(text: str) -> dict:
    return {"model": "claude-sonnet-5-5", "messages": [{"role": "user", "content": text}]}


def test_offline_backend_gives_marked_estimates() -> None:
    count = TokenCounter(OfflineBackend()).count(body("hello there"))
    assert count.exact is False and count.tokens == estimate_params(body("hello there"))


def test_exact_counts_are_cached_in_memory_and_in_the_database(tmp_path: Path) -> None:
    db = connect(tmp_path / "t.db")
    backend = Counting()
    counter = TokenCounter(lambda: backend, db=db)
    first = counter.count(body("a"))
    assert first.exact and first.tokens == 107
    assert counter.count(body("a")).tokens == 107 and backend.calls == 1
    again = TokenCounter(backend, db=db)  # a new process: the table answers
    assert again.count(body("a")).exact and backend.calls == 1


def test_rate_limit_budget_and_backoff() -> None:
    now = [0.0]
    backend = Counting()
    counter = TokenCounter(backend, per_minute=2, clock=lambda: now[0])
    assert counter.count(body("a")).exact and counter.count(body("b")).exact
    third = counter.count(body("c"))
    assert third.exact is False and backend.calls == 2  # over budget: estimate, no call
    now[0] = 61.0
    assert counter.count(body("c")).exact
    limited = Counting(fail="rate_limit_error")
    quiet = TokenCounter(limited, clock=lambda: now[0])
    assert quiet.count(body("d")).exact is False and limited.calls == 1
    assert quiet.count(body("e")).exact is False and limited.calls == 1  # backing off
    now[0] += 61
    quiet.count(body("f"))
    assert limited.calls == 2


def test_the_prune_stage_uses_exact_counts_when_configured(home: Path) -> None:
    from tars_opt import Request, open_app
    from tests.context.test_prune import conversation

    Path("performance-config.yaml").write_text(
        "backend: offline\nprune: {count_tokens: api, semantic: false}\n"
    )
    app = open_app()
    backend = Counting()
    prune = [s for s in app.optimizer(backend=backend).stages if s.name == "prune"][0]
    _, decision = prune.apply(Request.from_prompt("go", messages=conversation(30)))
    assert decision.data["tokens_exact"] is True and backend.calls == 2


def test_one_helper_decides_what_the_stages_read_of_a_long_prompt() -> None:
    """Routing, the query-type guess, pruning's needles and the tool stage read a pasted log
    through tokens.read_ends alone: no stage keeps its own head/tail cut to drift apart."""
    import tars_opt
    from tars_opt.tokens import READ_HEAD_CHARS, READ_MAX_CHARS, READ_TAIL_CHARS, read_ends

    text = "ask " + "x" * 50_000 + " end"
    cut = read_ends(text)
    assert len(cut) == READ_MAX_CHARS and read_ends(cut) is cut
    assert cut.startswith(text[:READ_HEAD_CHARS]) and cut.endswith(text[-READ_TAIL_CHARS:])
    root = Path(tars_opt.__file__).parent
    cuts = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if "[:12_000]" in (src := p.read_text()) or "12_000\n" in src and p.name != "tokens.py"
    ]
    assert cuts == []
    for module in ("routing/stage.py", "pipeline/classify.py", "context/relevance.py",
                   "context/prune.py", "context/tools.py"):  # fmt: skip
        assert "read_ends" in (root / module).read_text(), module


def test_a_remembered_estimate_is_the_estimate_and_memory_stays_bounded() -> None:
    memo = tokens._Memo(max_chars=10_000)
    texts = [f"turn {i}: " + "mia_li_3668 booked XEWRD9 for $1,234. " * 40 for i in range(20)]
    assert [memo.estimate(t) for t in texts] == [tokens._estimate(t) for t in texts]
    assert memo.chars <= 10_000 and len(memo.counts) < len(texts)  # oldest dropped
    again = "".join(texts[-1])  # an equal text, another object: found by value
    assert again in memo.counts and memo.estimate(again) == tokens._estimate(texts[-1])
    huge = "word " * 3_000  # longer than a quarter of the budget: counted, not kept
    assert memo.estimate(huge) == tokens._estimate(huge) and huge not in memo.counts
    assert tokens.estimate_text("") == 0 and tokens.estimate_text("hi") == 1
