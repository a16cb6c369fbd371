"""One canonical JSON form and one SHA-256 of text. The keys stored in the database (cache
entries, prefix sends, summaries, vectors) are pinned: a change to how they are computed
would make every stored row unreachable (or, worse, another row's)."""

from __future__ import annotations

import pytest

from tars_opt.cache.keys import context_fingerprint, exact_key, norm_key
from tars_opt.context.prompt_cache import conversation_key, stable_key
from tars_opt.context.summaries import summary_key
from tars_opt.context.token_counts import params_key
from tars_opt.defer import batching
from tars_opt.embeddings.store import text_key
from tars_opt.hashing import canonical, prefix_key, sha256_text
from tars_opt.types import Request

MARK = {"type": "ephemeral"}
REQUEST = Request.from_prompt(
    "Wie spät ist es? ✓",
    system="Du bist hilfreich.",
    messages=(
        {"role": "user", "content": "hallo"},
        {"role": "assistant", "content": [{"type": "text", "text": "hi", "cache_control": MARK}]},
    ),
    tools=({"name": "clock", "description": "time", "input_schema": {"type": "object"}},),
    namespace="ns",
)
PARAMS = {
    "model": "claude-sonnet-5-5",
    "system": "Du bist hilfreich. ✓",
    "tools": [{"name": "clock"}],
    "messages": [{"role": "user", "content": "hallo ✓"}],
}


def test_canonical_is_stable_and_leaves_marks_out() -> None:
    a = {"b": [1, {"text": "ü", "cache_control": MARK}], "a": None}
    assert canonical(a) == '{"a":null,"b":[1,{"text":"ü"}]}'
    assert canonical({"a": None, "b": (1, {"text": "ü"})}) == canonical(a)


def test_sha256_text_hashes_every_str() -> None:
    assert sha256_text("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert len(sha256_text("lone \ud800 surrogate")) == 64


def test_stored_keys_are_the_ones_earlier_versions_stored() -> None:
    # Response-cache keys are pinned at cache.keys.KEY_VERSION 2 (the migration that
    # introduced it dropped the older entries); the others have never changed.
    selector = "model:claude-sonnet-5-5"
    assert exact_key(REQUEST, selector) == (
        "46562c9cbc2e03833889e3ac8039148ed7e6c9bd02fad57998553e3530dd9867"
    )
    assert context_fingerprint(REQUEST) == "06ab4c2c550a20cbbe4a40ffe1e1b673"
    assert context_fingerprint(REQUEST, with_history=True) == "b20a9f6782dc0756684d33df9495df0d"
    assert norm_key(REQUEST.prompt) == "cac640f93116639a99034ae314753869"
    assert stable_key(PARAMS) == "2ced95b4fc42f6be35b9a5f1dc8f81f9d3140194f911c4a0c31dc1620d318d9d"
    assert conversation_key(PARAMS) == (
        "82b319217418dfe083e5d0703cff10baea190fec80bc70cf72e7538af3491d33"
    )
    assert summary_key(PARAMS["messages"], "ns") == (
        "5a656db321073f3466440e14c4d79f0e157d985ee4e3d05c1747ebc203ebeeca"
    )
    assert text_key("Grüße ✓") == "087c35de16ad400745205d66394e4a98ce8385bc8aba58e0a2fc1f4b4c0e1fdb"


@pytest.mark.parametrize(
    "other",
    [
        {**PARAMS, "system": [{"type": "text", "text": "Du bist hilfreich. ✓"}]},
        {
            **PARAMS,
            "system": [{"type": "text", "text": "Du bist hilfreich. ✓", "cache_control": MARK}],
        },
        {**PARAMS, "tools": [{"name": "clock", "cache_control": MARK}]},
        {**PARAMS, "messages": [{"role": "user", "content": "another turn"}]},
    ],
)
def test_batching_and_prompt_caching_see_one_prefix(other: dict) -> None:
    # The drain groups a batch by the same prefix the prompt-cache marking tracks: a text
    # system prompt, its block form and a marked copy are one prefix to the API.
    assert batching.prefix_key is prefix_key
    assert prefix_key(other) == prefix_key(PARAMS) == stable_key(other)


def test_a_token_count_is_found_whatever_the_marks() -> None:
    marked = {**PARAMS, "tools": [{"name": "clock", "cache_control": MARK}]}
    assert params_key(marked) == params_key(PARAMS)
    assert params_key({**PARAMS, "model": "claude-haiku-5-5"}) != params_key(PARAMS)


def test_canonical_strips_only_keys_named_cache_control() -> None:
    # The text "cache_control" as a value is content; as a key anywhere it is a mark.
    assert canonical({"text": "cache_control"}) == '{"text":"cache_control"}'
    assert canonical({"a": [{"b": {"cache_control": MARK, "c": 1}}]}) == '{"a":[{"b":{"c":1}}]}'
    assert canonical({"x": 'say "cache_control"'}) == '{"x":"say \\"cache_control\\""}'
