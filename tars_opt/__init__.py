"""tars-opt: cut what an agent pays for the Anthropic API without making its answers worse.

Everything the CLI does can be done from here, e.g.::

    from tars_opt import Request, open_app
    app = open_app(backend="offline")
    reply = app.optimizer().ask(Request(prompt="What is the capital of France?"))
"""

from __future__ import annotations

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

__version__ = "0.1.0"
__all__ = [
    "App",
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
