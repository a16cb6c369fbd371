"""`drain --daemon`: APScheduler in the foreground, a drain every N minutes inside the
window and a collector all day, stopped cleanly by SIGTERM or Ctrl-C. `start_drain` runs
the same jobs in the background of another process (`serve`)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tars_opt.backends import Backend
from tars_opt.config.schema import Config, DeferConfig
from tars_opt.defer.window import Window
from tars_opt.drain.runner import Drainer, DrainReport
from tars_opt.store import connect, describe

log = logging.getLogger("tars_opt.daemon")


def add_jobs(
    scheduler: Any,
    defer: DeferConfig,
    drain_job: Callable[[], Any],
    collect_job: Callable[[], Any],
) -> None:
    """Register the two jobs: `drain` (cron, inside the window's hours, every N minutes;
    the run itself checks the exact window) and `collect` (every M minutes, at once first)."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    hours = ",".join(str(h) for h in Window.parse(defer.window).hours())
    scheduler.add_job(
        drain_job,
        CronTrigger(hour=hours, minute=f"*/{defer.drain_every_minutes}", timezone=UTC),
        id="drain",
        name=f"drain inside {defer.window} UTC every {defer.drain_every_minutes} min",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=300,
    )
    scheduler.add_job(
        collect_job,
        IntervalTrigger(minutes=defer.collect_every_minutes, timezone=UTC),
        id="collect",
        name=f"collect ended batches every {defer.collect_every_minutes} min",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),
    )


class Daemon:
    """Runs drains on a schedule. Each run opens its own database connection (jobs run in
    a worker thread); one worker, so a drain and a collect never overlap here.

    `background`: the scheduler runs in threads of its own (`start` returns at once), for
    a process that does other work, such as `serve`.
    """

    def __init__(
        self,
        config: Config,
        db_path: Path | str,
        *,
        backend_factory: Callable[[Any], Backend] | None = None,
        background: bool = False,
    ) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.schedulers.blocking import BlockingScheduler

        self.config = config
        self.db_path = db_path
        self.backend_factory = backend_factory
        self.background = background
        self.runs = 0
        kind = BackgroundScheduler if background else BlockingScheduler
        self.scheduler = kind(executors={"default": ThreadPoolExecutor(1)}, timezone=UTC)
        add_jobs(self.scheduler, config.defer, self.drain, self.collect)

    def _run(self, collect_only: bool) -> DrainReport | None:
        db = None
        try:
            db = connect(self.db_path)
            backend = self.backend_factory(db) if self.backend_factory else None
            report = Drainer(self.config, db, backend=backend).run(collect_only=collect_only)
            self.runs += 1
            return report
        except Exception:  # a failed run must not stop the daemon; the next one retries
            log.exception("drain run failed", extra={"collect_only": collect_only})
            return None
        finally:
            if db is not None:
                db.close()  # a server database's connection pool must not pile up

    def drain(self) -> DrainReport | None:
        return self._run(collect_only=False)

    def collect(self) -> DrainReport | None:
        return self._run(collect_only=True)

    def wake(self) -> None:
        """Run the collector now (after a client canceled a batch: cancel it upstream)."""
        if self.scheduler.running:
            self.scheduler.modify_job("collect", next_run_time=datetime.now(UTC))

    def stop(self, signum: int | None = None, frame: Any = None) -> None:
        """Let a running job finish, then return from `start`."""
        log.info("daemon stopping", extra={"signal": signum})
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def start(self) -> None:
        """Block, running jobs, until SIGTERM or SIGINT (in the background: return at once;
        the owner calls `stop`)."""
        if self.background:
            self.scheduler.start()
            log.info("drain started in the background", extra={"db": str(self.db_path)})
            return
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        log.info(
            "daemon started",
            extra={
                "jobs": [j.name for j in self.scheduler.get_jobs()],
                "db": describe(self.db_path),
            },
        )
        self.scheduler.start()
        log.info("daemon stopped", extra={"runs": self.runs})


def start_drain(
    config: Config,
    db_path: Path | str,
    *,
    backend_factory: Callable[[Any], Backend] | None = None,
) -> Daemon | None:
    """For `serve`: run the drain's jobs (submit inside the window, collect and the
    deadline rule all day) in background threads, unless `defer.serve_drains` is false
    (another process drains). Returns the running Daemon - call `stop()` on shutdown,
    `wake()` after a cancel - or None. Two drains at once are safe (claims are atomic)."""
    if not config.defer.serve_drains:
        log.info("serve does not drain: defer.serve_drains is false")
        return None
    daemon = Daemon(config, db_path, backend_factory=backend_factory, background=True)
    daemon.start()
    return daemon
