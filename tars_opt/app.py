"""Open what a command needs (config, database, logging, optimizer) in one call."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from tars_opt.backends import Backend
from tars_opt.chain import Optimizer
from tars_opt.config import Config, LoadedConfig, load_config
from tars_opt.db import connect
from tars_opt.ledger import Ledger
from tars_opt.logs import setup_logging


@dataclass
class App:
    """A loaded config and its open database."""

    loaded: LoadedConfig
    db: sqlite_utils.Database

    @property
    def config(self) -> Config:
        return self.loaded.config

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.db, store_prompts=self.config.ledger.store_prompts)

    def optimizer(
        self, backend: Backend | None = None, clock: Callable[[], float] = time.time
    ) -> Optimizer:
        return Optimizer(self.config, self.db, backend=backend, clock=clock)


def open_app(
    config_path: str | Path | None = None,
    *,
    db: str | Path | None = None,
    backend: str | None = None,
    verbose: bool = False,
    overrides: dict[str, Any] | None = None,
) -> App:
    """Load the config (flags win), set up logging and open the database."""
    flags = {"database": str(db) if db else None, "backend": backend, **(overrides or {})}
    loaded = load_config(config_path, overrides=flags)
    cfg = loaded.config
    setup_logging(
        cfg.resolved_data_dir(), level=cfg.logging.level, verbose=verbose, key_env=cfg.api.key_env
    )
    return App(loaded, connect(cfg.resolved_database()))
