"""A local fake of the Anthropic API that the real `anthropic` SDK talks to in tests.

In a test: the `fake_api` / `fake_client` / `fake_api_env` fixtures of
`tests.fake_anthropic.plugin`, or ``with FakeAnthropic() as api: ...`` (see `server`).

It behaves like the API where an agent would notice:
  - strict validation (`validate`), on by default: 400 invalid_request_error for what the
    API refuses (tool_use without its tool_result, a tool_result without its tool_use, a
    changed thinking block, a 5th cache breakpoint, a 1h breakpoint after a 5m one, ...);
    unknown fields are accepted and recorded. `api.strict = False` keeps only the basic
    checks, for a test that must send what the API would refuse;
  - agent replies (`replies.build_reply`): signed thinking (also `display: "omitted"`),
    redacted thinking, parallel tool calls, server tool calls and results, every stop reason,
    as JSON and as SSE streams;
  - prompt-cache billing (`tokens.PromptCache`), context editing (`context`), Message Batches,
    faults (`faults`), a drivable clock (``FakeAnthropic(clock=...)``, `advance_clock`).

As its own process (benchmarks, soak runs), serving until SIGTERM:

    python -m tests.fake_anthropic --port 0 --print-url [--request-delay S] [--event-delay S]
        [--min-cacheable N] [--min-cacheable-model MODEL=N] [--api-key KEY] [--no-strict]

The first stdout line is the base URL; --request-delay adds a fixed latency to every request,
--event-delay a pause between SSE events.
"""

from .faults import Fault
from .server import FakeAnthropic, RecordedRequest
from .tokens import count_input_tokens, text_tokens

__all__ = ["FakeAnthropic", "Fault", "RecordedRequest", "count_input_tokens", "text_tokens"]
