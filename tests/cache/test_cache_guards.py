"""Semantic-cache guards, threshold choice, pairs files and config editing (no model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from tars_opt.cache.calibrate import (
    choose_threshold,
    evaluate,
    min_hits,
    read_pairs,
    set_yaml_scalars,
)
from tars_opt.cache.guards import check, entities, numbers
from tars_opt.cache.keys import normalize_prompt
from tars_opt.config.loader import EXAMPLE_CONFIG
from tars_opt.errors import InputError


@pytest.mark.parametrize(
    ("a", "b", "guard"),
    [
        ("How do I enable X", "How do I disable X", "opposite"),
        ("How do I install numpy?", "How do I uninstall numpy?", "opposite"),
        ("France beat Germany", "Germany beat France", "order"),
        ("dog bites man", "man bites dog", "order"),
        ("Is coffee bad for you?", "Is coffee not bad for you?", "negation"),
        ("Why doesn't my code compile?", "Why does my code compile?", "negation"),
        ("What is 15% of 80?", "What is 15% of 90?", "numbers"),
        ("Best laptop under $1,000", "Best laptop under $2000", "numbers"),
        ("Tips for a two week trip", "Tips for a three week trip", "numbers"),
        ("Who is the CEO of Tesla?", "Who is the CEO of Apple?", "entities"),
        ("Convert user_id to int", "Convert account_id to int", "entities"),
    ],
)
def test_guards_veto(a: str, b: str, guard: str) -> None:
    veto = check(a, b)
    assert veto is not None and veto.guard == guard
    assert check(b, a) is not None  # symmetric


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I learn Python?", "how do i learn python"),
        ("What is the best way to lose weight?", "What are the best ways to lose weight?"),
        ("How can I improve my English?", "How do I improve my English speaking skills?"),
        ("How do I reset my password?", "How can I reset my password?"),
        ("Explain quantum computing in simple terms", "Explain quantum computing simply."),
    ],
)
def test_guards_let_paraphrases_through(a: str, b: str) -> None:
    assert check(a, b) is None


def test_guard_extractors() -> None:
    assert numbers("1,000 apples and two pears") == numbers("two pears, 1000 apples")
    assert entities("Did France beat Germany in Paris?") == ["france", "germany", "paris"]
    assert entities("What is the capital?") == []
    assert normalize_prompt("  Hi   THERE!! ") == normalize_prompt("hi there")


def test_choose_threshold_is_the_lowest_within_target() -> None:
    # 300 pairs above 0.9 with 1 false; below, 50% false.
    rng = np.random.default_rng(0)
    high = rng.uniform(0.9, 1.0, 300)
    low = rng.uniform(0.5, 0.9, 300)
    sims = np.concatenate([high, low])
    labels = np.concatenate([np.ones(300, bool), rng.random(300) < 0.5])
    labels[int(np.argmin(high))] = False  # one false hit near 0.9
    score = choose_threshold(sims, labels, None, 0.01)
    assert score.threshold is not None and 0.85 < score.threshold <= 0.91
    assert score.false_hit_rate <= 0.01
    lower = evaluate(sims, labels, None, score.threshold - 0.01)
    assert lower.false_hit_rate > 0.01  # one step lower breaks the contract
    assert score.recall == pytest.approx((score.hits - score.false_hits) / labels.sum())


def test_choose_threshold_none_when_unreachable_or_too_few_hits() -> None:
    sims = np.linspace(0, 1, 50)
    labels = np.zeros(50, bool)
    assert choose_threshold(sims, labels, None, 0.01).threshold is None
    labels[-12:] = True  # 12 perfect hits: fewer than min_hits(0.01)
    assert min_hits(0.01) == 100
    assert choose_threshold(sims, labels, None, 0.01).threshold is None
    assert choose_threshold(sims, labels, None, 0.2).threshold is not None


def test_guards_mask_counts_only_passing_pairs() -> None:
    sims = np.array([0.99, 0.98, 0.97])
    labels = np.array([True, False, True])
    passes = np.array([True, False, True])
    assert evaluate(sims, labels, passes, 0.95).false_hits == 0
    assert evaluate(sims, labels, None, 0.95).false_hits == 1


def test_read_pairs_layouts(tmp_path: Path) -> None:
    plain = tmp_path / "p.tsv"
    plain.write_text("a one\tb one\t1\na two\tb two\t0\n")
    pairs = read_pairs(plain)
    assert pairs.a == ["a one", "a two"] and pairs.labels.tolist() == [True, False]
    qqp = tmp_path / "q.tsv"
    qqp.write_text("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t2\t3\tx?\ty?\t1\n")
    assert read_pairs(qqp).b == ["y?"]
    mrpc = tmp_path / "m.tsv"
    mrpc.write_text("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t1\t2\tA.\tB.\n")
    assert read_pairs(mrpc).labels.tolist() == [False]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("x\ty\t1\nx\ty\tmaybe\n", "must be 0 or 1"),
        ("only one column\n", "expected text1"),
        ("", "empty"),
    ],
)
def test_read_pairs_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_pairs(path)
    with pytest.raises(InputError, match="does not exist"):
        read_pairs(tmp_path / "absent.tsv")


def test_set_yaml_scalars_keeps_comments_and_adds_missing_keys() -> None:
    text = EXAMPLE_CONFIG.read_text()
    edited = set_yaml_scalars(text, ["cache", "semantic", "thresholds"], {"fact": 0.97})
    assert yaml.safe_load(edited)["cache"]["semantic"]["thresholds"]["fact"] == 0.97
    assert edited.count("\n#") == text.count("\n#") and len(edited) - len(text) < 10
    fresh = set_yaml_scalars(
        "budget:\n  monthly_usd: 5\n",
        ["cache", "semantic", "thresholds"],
        {"fact": 0.9, "code": None},
    )
    data = yaml.safe_load(fresh)
    assert data["budget"]["monthly_usd"] == 5
    assert data["cache"]["semantic"]["thresholds"] == {"fact": 0.9, "code": None}
