"""Turn token usage into dollars, and split the saving over the strategies that made it."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from tars_opt.config.schema import PricingConfig, TierPrice
from tars_opt.errors import UnknownModelPrice
from tars_opt.types import STRATEGIES, Money, Usage

_SNAPSHOT = re.compile(r"-\d{8}$")


@dataclass(frozen=True)
class Rates:
    """USD per million tokens for each bucket."""

    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float

    @classmethod
    def of(cls, price: TierPrice) -> Rates:
        return cls(
            price.input, price.output, price.cache_write_5m, price.cache_write_1h, price.cache_read
        )


class PriceBook:
    """Prices from the config, looked up by model id (dated snapshots fall back to the alias)."""

    def __init__(self, config: PricingConfig) -> None:
        self.config = config

    def known(self, model: str) -> bool:
        return self._entry_name(model) is not None

    def _entry_name(self, model: str) -> str | None:
        if model in self.config.models:
            return model
        alias = _SNAPSHOT.sub("", model)
        return alias if alias in self.config.models else None

    def rates(self, model: str, prompt_tokens: int = 0) -> Rates:
        """The rates for `model` for a request whose whole prompt has `prompt_tokens` tokens."""
        name = self._entry_name(model)
        if name is None:
            raise UnknownModelPrice(
                f"no price for model {model!r}: add it under pricing.models in "
                "performance-config.yaml (USD per million tokens)"
            )
        entry = self.config.models[name]
        if (
            entry.long_context is not None
            and entry.long_context_above is not None
            and prompt_tokens > entry.long_context_above
        ):
            return Rates.of(entry.long_context)
        return Rates.of(entry)

    def cost(self, usage: Usage, model: str) -> float:
        """Dollars for one call: every bucket at its rate, the batch discount on batch calls."""
        r = self.rates(model, usage.prompt_tokens)
        dollars = (
            usage.input_tokens * r.input
            + usage.cache_write_5m * r.cache_write_5m
            + usage.cache_write_1h * r.cache_write_1h
            + usage.cache_read * r.cache_read
            + usage.output_tokens * r.output
        ) / 1e6
        if usage.service_tier == "batch":
            dollars *= 1.0 - self.config.batch_discount
        return dollars

    def plain_cost(self, model: str, prompt_tokens: int, output_tokens: int) -> float:
        """Dollars for a call with no prompt caching and no batch discount."""
        return self.cost(Usage(input_tokens=prompt_tokens, output_tokens=output_tokens), model)

    def attribute(
        self,
        usage: Usage,
        model: str,
        baseline_model: str,
        removed_tokens: int = 0,
        *,
        response_cache_hit: bool = False,
        client_caching: bool = False,
    ) -> Money:
        """Actual and baseline cost, and the gap split over the strategies in a fixed order.

        Baseline: the request as the client sent it - `baseline_model`, the unpruned prompt
        (`removed_tokens` added back), no batch discount, no response cache, and no prompt
        caching unless the client marked its own (`client_caching`): then the cache buckets
        it was billed are its own doing and stay in the baseline, so tars-opt is credited
        nothing for prompt caching on it (what marks tars-opt added cannot be told apart
        from the client's, and a saving is never overstated). Each step below changes one
        thing, so the parts add up exactly to baseline minus actual:
        pruning -> routing -> prompt caching -> batching -> response cache.
        A step that cost more (an escalation to a dearer model, an unread cache write)
        shows as a negative saving.
        """
        out = usage.output_tokens
        pruned_prompt = usage.prompt_tokens
        standard = Usage(
            input_tokens=usage.input_tokens,
            output_tokens=out,
            cache_write_5m=usage.cache_write_5m,
            cache_write_1h=usage.cache_write_1h,
            cache_read=usage.cache_read,
        )
        if client_caching:
            unpruned = replace(standard, input_tokens=usage.input_tokens + removed_tokens)
            baseline = self.cost(unpruned, baseline_model)
        else:
            baseline = self.plain_cost(baseline_model, pruned_prompt + removed_tokens, out)
        if response_cache_hit:
            # The chain stopped at the cache: nothing after it acted, and nothing was paid.
            saved = dict.fromkeys(STRATEGIES, 0.0)
            saved["response_cache"] = baseline
            return Money(actual=0.0, baseline=baseline, saved=saved)
        after_caching = self.cost(standard, model)
        if client_caching:
            after_pruning = self.cost(standard, baseline_model)
            after_routing = after_caching
        else:
            after_pruning = self.plain_cost(baseline_model, pruned_prompt, out)
            after_routing = self.plain_cost(model, pruned_prompt, out)
        actual = self.cost(usage, model)
        saved = {
            "pruning": baseline - after_pruning,
            "routing": after_pruning - after_routing,
            "prompt_caching": after_routing - after_caching,
            "batching": after_caching - actual,
            "response_cache": 0.0,
        }
        return Money(actual=actual, baseline=baseline, saved=saved)
