"""The ledger's decision trace is read by each decision's structured fields, not its text."""

from __future__ import annotations

from tars_opt.pipeline.trace import cache_hit_kind, was_deferred, was_escalated
from tars_opt.types import Decision


def _trace(*decisions: Decision) -> list[dict]:
    return [d.to_dict() for d in decisions]


def test_cache_hit_kind_reads_the_hits_match() -> None:
    semantic = Decision("cache", "hit", "semantic match of entry 3", {"match": "semantic"})
    exact = Decision("cache", "hit", "exact match of entry 4", {"match": "exact"})
    assert cache_hit_kind(_trace(semantic)) == "semantic"
    assert cache_hit_kind(_trace(exact)) == "exact"


def test_cache_hit_kind_ignores_wording_of_other_decisions() -> None:
    # A miss whose reason mentions the semantic cache is not a semantic hit.
    miss = Decision("cache", "miss", "no match; semantic cache disabled", {})
    assert cache_hit_kind(_trace(miss)) == "exact"
    worded = Decision("cache", "hit", "semantic-looking reason", {"match": "exact"})
    assert cache_hit_kind(_trace(worded)) == "exact"


def test_escalated_by_the_row_link_or_the_escalate_decision() -> None:
    assert was_escalated({"escalated_from": "req_1"}, [])
    retry = Decision("escalate", "strong", "cheap answer empty: re-asked on strong", {})
    assert was_escalated({}, _trace(retry))
    routed = Decision("route", "cheap", "score 12; escalation on for empty answers", {})
    assert not was_escalated({}, _trace(routed))


def test_deferred_only_when_the_defer_stage_queued_it() -> None:
    queued = Decision("defer", "queued", "low priority", {"ticket": "t1"})
    sent = Decision("defer", "send", "deferral would miss the deadline: queue skipped", {})
    assert was_deferred(_trace(queued))
    assert not was_deferred(_trace(sent))
    assert not was_deferred(_trace(Decision("batch", "prompt_cache", "queued batch", {})))
