"""Open what a command needs (config, database, logging, optimizer) in one call."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tars_opt.accounting.ledger import Ledger
from tars_opt.backends import Backend
from tars_opt.config.loader import LoadedConfig, load_config
from tars_opt.config.schema import Config
from tars_opt.logs import setup_logging
from tars_opt.pipeline.optimizer import Optimizer
from tars_opt.store import connect, describe, is_server
from tars_opt.store.database import Database
from tars_opt.store.files import ensure_private_dir
from tars_opt.store.spool import open_or_spool
from tars_opt.store.sqlite import require_folder

log = logging.getLogger("tars_opt.app")


@dataclass
class App:
    """A loaded config and its open database."""

    loaded: LoadedConfig
    db: Database

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
    """Load the config (flags win), set up logging and open the database.

    A database path or data dir the user named (flag, TARS_OPT_DB, TARS_OPT_HOME, config
    file) must be in an existing folder: a mistyped path must not quietly become a new,
    empty ledger. Only the default ones under the platform's data dir are created with
    their folders.
    """
    flags = {"database": str(db) if db else None, "backend": backend, **(overrides or {})}
    loaded = load_config(config_path, overrides=flags)
    cfg = loaded.config
    require_named_folders(loaded)
    database = cfg.resolved_database()
    data_dir = ensure_private_dir(cfg.resolved_data_dir())
    setup_logging(data_dir, level=cfg.logging.level, verbose=verbose, key_env=cfg.api.key_env)
    log.info(
        "config read",
        extra={"config": loaded.label, "database": describe(database), "backend": cfg.backend},
    )
    if is_server(database):
        spool = data_dir / "spool.db" if cfg.database_unreachable == "spool" else None
        return App(loaded, open_or_spool(str(database), spool))
    return App(loaded, connect(database))


def require_named_folders(loaded: LoadedConfig) -> None:
    """Refuse (DatabaseError, one line naming where the path came from and the fix) a data
    dir or database path the user named whose folder does not exist. Commands that write
    under the data dir without opening the database call it too."""
    home = _origin(loaded, "data_dir", "TARS_OPT_HOME")
    if home is not None:
        require_folder(loaded.config.resolved_data_dir(), home)
    named = _origin(loaded, "database", "TARS_OPT_DB", "--db")
    database = loaded.config.resolved_database()
    if named is not None and not is_server(database):
        require_folder(database, named)


def _origin(loaded: LoadedConfig, key: str, env: str, flag: str | None = None) -> str | None:
    """How to name the path config key `key` in an error: the flag, variable or file that
    set it; None when it is the default."""
    path = getattr(loaded.config, key)
    if path is None:
        return None
    path = describe(path)
    return {
        "flag": f"{flag or '--' + key} {path}",
        "env": f"{env}={path}",
        "file": f"{key} {path} (in {loaded.path})",
    }.get(loaded.source_of(key), f"{key} {path}")
