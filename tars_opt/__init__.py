"""tars-opt: cut what an agent pays for the Anthropic API without making its answers worse.

Everything the CLI does can be done from here, e.g.::

    from tars_opt import Request, open_app
    app = open_app(backend="offline")
    reply = app.optimizer().ask(Request.from_prompt("What is the capital of France?"))

An agent written against the Anthropic SDK swaps one line::

    from tars_opt import Anthropic      # instead of: from anthropic import Anthropic
    client = Anthropic()                # every Messages call optimized and recorded
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tars_opt.accounting.ledger import Ledger
from tars_opt.accounting.pricing import PriceBook
from tars_opt.app import App, open_app
from tars_opt.backends import Backend, BatchInfo, BatchItem
from tars_opt.config.loader import LoadedConfig, load_config
from tars_opt.config.schema import Config
from tars_opt.errors import (
    BackendError,
    BudgetExceeded,
    ConfigError,
    DatabaseError,
    InputError,
    MissingApiKey,
    TarsOptError,
    UnknownModelPrice,
)
from tars_opt.monitor.metrics import spend_summary
from tars_opt.pipeline.optimizer import Optimizer, build_backend
from tars_opt.store import connect
from tars_opt.types import BackendResult, Decision, Money, Prepared, Reply, Request, Usage

if TYPE_CHECKING:
    from tars_opt.sdk.clients import Anthropic, AsyncAnthropic

__version__ = "0.1.0"
__all__ = [
    "Anthropic",
    "App",
    "AsyncAnthropic",
    "Backend",
    "BackendError",
    "BackendResult",
    "BatchInfo",
    "BatchItem",
    "BudgetExceeded",
    "Config",
    "ConfigError",
    "DatabaseError",
    "Decision",
    "InputError",
    "Ledger",
    "LoadedConfig",
    "MissingApiKey",
    "Money",
    "Optimizer",
    "Prepared",
    "PriceBook",
    "Reply",
    "Request",
    "TarsOptError",
    "UnknownModelPrice",
    "Usage",
    "build_backend",
    "connect",
    "load_config",
    "open_app",
    "spend_summary",
]


def __getattr__(name: str) -> Any:
    # The client classes import the SDK (~1.7 s): only when asked for.
    if name in ("Anthropic", "AsyncAnthropic"):
        from tars_opt.sdk import clients

        return getattr(clients, name)
    raise AttributeError(f"module 'tars_opt' has no attribute {name!r}")
