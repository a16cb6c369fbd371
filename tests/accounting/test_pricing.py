"""Money: every bucket, the batch tier, long-prompt tiers, attribution, and other price tables."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest
import yaml

from tars_opt.accounting.pricing import PriceBook
from tars_opt.config.loader import load_config
from tars_opt.errors import UnknownModelPrice
from tars_opt.types import STRATEGIES, Usage


@pytest.fixture
def book() -> PriceBook:
    return PriceBook(load_config().config.pricing)


def test_every_bucket_at_its_rate(book: PriceBook) -> None:
    usage = Usage(
        input_tokens=1000,
        cache_write_5m=2000,
        cache_write_1h=500,
        cache_read=3000,
        output_tokens=400,
    )
    # sonnet-5-5: 1000*2 + 2000*2.5 + 500*4 + 3000*0.2 + 400*10 = 13,600 per million
    assert book.cost(usage, "claude-sonnet-5-5") == pytest.approx(0.0136, abs=1e-12)


def test_batch_tier_is_half_price(book: PriceBook) -> None:
    usage = Usage(
        input_tokens=1000,
        cache_write_5m=2000,
        cache_write_1h=500,
        cache_read=3000,
        output_tokens=400,
        service_tier="batch",
    )
    assert book.cost(usage, "claude-sonnet-5-5") == pytest.approx(0.0068, abs=1e-12)


def test_cache_tokens_are_not_counted_twice(book: PriceBook) -> None:
    # input_tokens excludes the 10,000 read tokens: they are paid once, at the read rate.
    usage = Usage(input_tokens=100, cache_read=10_000, output_tokens=0)
    assert book.cost(usage, "claude-sonnet-5-5") == pytest.approx((100 * 2 + 10_000 * 0.2) / 1e6)
    assert usage.prompt_tokens == 10_100


def test_haiku_55_long_prompt_prices_the_whole_request(book: PriceBook) -> None:
    long = Usage(input_tokens=90_000, cache_read=20_000, output_tokens=1000)
    # 110K prompt > 100K: every bucket at the long rates: 90000*0.5 + 20000*0.05 + 1000*2.5
    assert book.cost(long, "claude-haiku-5-5") == pytest.approx(0.0485, abs=1e-12)
    edge = Usage(input_tokens=80_000, cache_read=20_000, output_tokens=1000)
    # exactly 100K is not above the line: 80000*0.1 + 20000*0.01 + 1000*0.5
    assert book.cost(edge, "claude-haiku-5-5") == pytest.approx(0.0087, abs=1e-12)


def test_missing_ttl_breakdown_counts_writes_as_5m() -> None:
    usage = Usage.from_api(
        {"input_tokens": 5, "cache_creation_input_tokens": 300, "output_tokens": 7}
    )
    assert (usage.cache_write_5m, usage.cache_write_1h) == (300, 0)
    split = Usage.from_api(
        {
            "input_tokens": 5,
            "cache_creation_input_tokens": 300,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
            "cache_read_input_tokens": None,
            "output_tokens": 7,
            "service_tier": "batch",
        }
    )
    assert (split.cache_write_5m, split.cache_write_1h, split.cache_read) == (100, 200, 0)
    assert split.service_tier == "batch"


def test_unknown_model_is_an_error_never_zero(book: PriceBook) -> None:
    with pytest.raises(UnknownModelPrice, match="pricing.models"):
        book.cost(Usage(input_tokens=1), "claude-imaginary-9")


def test_dated_snapshot_uses_the_alias_price(book: PriceBook) -> None:
    usage = Usage(input_tokens=1_000_000)
    assert book.cost(usage, "claude-haiku-4-5-20251001") == pytest.approx(1.0)


def test_attribution_adds_up_to_the_cent(book: PriceBook) -> None:
    usage = Usage(input_tokens=500, cache_read=1500, output_tokens=200, service_tier="batch")
    money = book.attribute(usage, "claude-haiku-5-5", "claude-sonnet-5-5", removed_tokens=1000)
    # baseline: sonnet, 3000 prompt tokens, 200 out = 3000*2 + 200*10 = 8000 per million
    assert money.baseline == pytest.approx(0.008, abs=1e-12)
    assert money.saved["pruning"] == pytest.approx(0.002, abs=1e-12)  # 1000 tokens * $2
    assert money.saved["routing"] == pytest.approx(0.006 - 0.0003, abs=1e-12)
    assert money.saved["prompt_caching"] == pytest.approx(0.0003 - 0.000165, abs=1e-12)
    assert money.saved["batching"] == pytest.approx(0.0000825, abs=1e-12)
    assert money.saved["response_cache"] == 0.0
    assert money.actual == pytest.approx(0.0000825, abs=1e-12)
    assert sum(money.saved.values()) == pytest.approx(money.baseline - money.actual, abs=1e-15)


def test_attribution_shows_costly_steps_as_negative(book: PriceBook) -> None:
    # Escalated to Opus with a cache write that was never read: both cost more than baseline.
    usage = Usage(input_tokens=100, cache_write_1h=2000, output_tokens=100)
    money = book.attribute(usage, "claude-opus-5-5", "claude-sonnet-5-5")
    assert money.saved["routing"] < 0 and money.saved["prompt_caching"] < 0
    assert sum(money.saved.values()) == pytest.approx(money.baseline - money.actual, abs=1e-15)


def test_response_cache_hit_saves_the_whole_baseline(book: PriceBook) -> None:
    usage = Usage(input_tokens=1000, output_tokens=100)
    money = book.attribute(usage, "claude-haiku-5-5", "claude-sonnet-5-5", response_cache_hit=True)
    assert money.actual == 0.0
    assert money.saved["response_cache"] == pytest.approx((1000 * 2 + 100 * 10) / 1e6)
    assert set(money.saved) == set(STRATEGIES)


# Where the tables kept by others disagree with ours, on purpose (see the config comments).
KNOWN_DIFFERENCES = {("claude-sonnet-5-5", "cache_read")}
FIELDS = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cache_write_5m": "cache_creation_input_token_cost",
    "cache_read": "cache_read_input_token_cost",
}


def _csv_prices(path: Path) -> dict[str, dict[str, float]]:
    out = {}
    with path.open() as fh:
        for row in csv.DictReader(fh):
            out[row["model"]] = {
                ours: float(row[theirs]) * 1e6 for ours, theirs in FIELDS.items() if row.get(theirs)
            }
    return out


@pytest.mark.parametrize("table", ["litellm", "tokencost"])
def test_prices_match_litellm_and_tokencost(shared_data: Path, table: str) -> None:
    theirs = _csv_prices(shared_data / "llm_prices" / table / "anthropic_extract.csv")
    ours = load_config().config.pricing.models
    compared = 0
    for model, price in ours.items():
        for field, value in theirs.get(model, {}).items():
            if (model, field) in KNOWN_DIFFERENCES:
                assert getattr(price, field) != pytest.approx(value)
                continue
            assert getattr(price, field) == pytest.approx(value), (table, model, field)
            compared += 1
    if table == "litellm":
        assert compared >= 30  # every current model both tables know


def _genai_current(prices: object, as_of: date) -> dict:
    if isinstance(prices, dict):
        return prices
    current = {}
    for entry in prices:  # later entries with a start_date already passed win
        start = (entry.get("constraint") or {}).get("start_date")
        if start is None or start <= as_of:
            current = entry["prices"]
    return current


def test_prices_match_genai_prices(shared_data: Path) -> None:
    doc = yaml.safe_load(
        (shared_data / "llm_prices" / "genai_prices" / "anthropic.yml").read_text()
    )
    cfg = load_config().config.pricing
    names = {
        "input_mtok": "input",
        "output_mtok": "output",
        "cache_write_mtok": "cache_write_5m",
        "cache_write_1h_mtok": "cache_write_1h",
        "cache_read_mtok": "cache_read",
    }
    compared = 0
    for model in doc["models"]:
        ours = cfg.models.get(model["id"])
        if ours is None:
            continue
        for theirs_key, field in names.items():
            value = _genai_current(model["prices"], cfg.as_of).get(theirs_key)
            if value is None:
                continue
            if isinstance(value, dict):  # {base, tiers: [{start, price}]}
                tier = value["tiers"][0]
                assert ours.long_context_above == tier["start"]
                assert getattr(ours.long_context, field) == pytest.approx(tier["price"])
                value = value["base"]
            assert getattr(ours, field) == pytest.approx(value), (model["id"], field)
            compared += 1
    assert compared >= 40
