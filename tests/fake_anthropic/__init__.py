"""A local fake of the Anthropic API that the real `anthropic` SDK talks to in tests.

See `server.FakeAnthropic`; the pytest fixtures live in `tests.fake_anthropic.plugin`.
"""

from .faults import Fault
from .server import FakeAnthropic, RecordedRequest
from .tokens import count_input_tokens, text_tokens

__all__ = ["FakeAnthropic", "Fault", "RecordedRequest", "count_input_tokens", "text_tokens"]
