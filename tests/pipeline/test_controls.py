"""One reading of the x-tars-opt-* headers for the gateway, its batch routes and the SDK
client: the same header means the same thing wherever it is sent."""

from __future__ import annotations

import pytest

from tars_opt.errors import InputError
from tars_opt.pipeline.controls import client_key, header_controls


def test_values_are_case_insensitive_and_map_to_request_fields() -> None:
    got = header_controls(
        {
            "X-Tars-Opt-Namespace": "team-a",
            "x-tars-opt-session": "task-42",
            "x-tars-opt-priority": "HIGH",
            "x-tars-opt-cache": "On",
            "x-tars-opt-route": "OFF",
            "anthropic-version": "2023-06-01",
        }
    )
    assert got == {"namespace": "team-a", "session": "task-42", "priority": "high",
                   "cache_mode": "use", "route": False}  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ({"x-tars-opt-priority": "urgent"}, "x-tars-opt-priority 'urgent' is not one of high"),
        ({"x-tars-opt-cache": "sometimes"}, "is not one of off, refresh, use"),
        ({"x-tars-opt-route": "maybe"}, "is not one of off, on"),
        ({"x-tars-opt-namespce": "a"}, "unknown header x-tars-opt-namespce"),
    ],
)
def test_a_bad_or_unknown_control_header_is_named(headers: dict[str, str], says: str) -> None:
    with pytest.raises(InputError, match=says):
        header_controls(headers)


def test_the_key_is_x_api_key_else_a_bearer_token() -> None:
    assert client_key({"x-api-key": "sk-1", "authorization": "Bearer sk-2"}) == "sk-1"
    assert client_key({"authorization": "Bearer  sk-2 "}) == "sk-2"
    assert client_key({"authorization": "Basic abc"}) is None
    assert client_key({}) is None
