"""Ledger writes off the request path: one thread, in order, retried while the store is
busy or down, so an answer never waits for the database and no row is lost. A ledger row
goes to a local journal (store/journal.py) before its answer is sent, so it survives the
process dying before the database took it: the next gateway to start writes it."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tars_opt.accounting.ledger import Ledger
from tars_opt.errors import DatabaseError
from tars_opt.store.journal import Journal, replay

log = logging.getLogger("tars_opt.gateway")

# Seconds before each try to write the journals dead gateways left.
_REPLAY_WAITS = (0.0, 1.0, 4.0, 15.0, 40.0)


@dataclass
class _Job:
    request_id: str
    run: Callable[[], None]
    # A row must land (retried until it does); anything else is best effort.
    must: bool


class Recorder:
    """Runs the writes the gateway hands it on a thread of its own, in order.

    A required write (a ledger row, a budget settlement) that fails with a DatabaseError is
    retried, with backoff up to `max_backoff_s`, until the store takes it; other work (the
    response cache keeping an answer) is tried once and logged when it fails. With
    `journal_dir`, rows handed to `submit_row` are journaled there first.
    """

    def __init__(
        self,
        *,
        journal_dir: Path | None = None,
        backoff_s: float = 0.05,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.journal_dir = journal_dir
        self.journal: Journal | None = None
        if journal_dir is not None:
            try:
                self.journal = Journal(journal_dir, prefix="gateway")
            except OSError as exc:
                log.warning(
                    "no ledger journal: rows waiting for the store are lost if the gateway "
                    "dies; make the data dir writable",
                    extra={"journal": str(journal_dir), "error": str(exc)},
                )
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._backoff = (backoff_s, max_backoff_s)
        self._stopping = threading.Event()
        self.failures = 0  # writes that had to be retried
        self._thread = threading.Thread(target=self._run, name="tars-opt-recorder", daemon=True)
        self._thread.start()

    def submit(self, request_id: str, run: Callable[[], None], *, must: bool = True) -> None:
        with self._lock:
            self._pending[request_id] = self._pending.get(request_id, 0) + 1
        self._queue.put(_Job(request_id, run, must))

    def submit_row(
        self,
        request_id: str,
        ledger: Ledger,
        row: dict[str, Any],
        then: Callable[[], None] | None = None,
    ) -> None:
        """Write ledger `row` (made by `ledger.row`), then run `then`; the row is in the
        journal on return, so the caller may answer."""
        number = None
        if self.journal is not None:
            try:
                number = self.journal.append({"calls": row})
            except OSError as exc:  # a full disk: the row still goes to the store
                log.error("ledger journal write failed", extra={"error": str(exc)})
        journal = self.journal

        def confirm() -> None:
            if journal is not None and number is not None:
                journal.confirm(number)

        def run() -> None:
            try:
                ledger.write_row(row)
            except DatabaseError:
                if journal is not None:
                    # The store may be out for long: keep the waiting rows on disk.
                    with contextlib.suppress(OSError):
                        journal.sync()
                raise
            except Exception:
                confirm()  # no process could write it: logged below, not kept for a replay
                raise
            confirm()
            if then is not None:
                then()

        self.submit(request_id, run)

    def replay(self, ledger: Ledger) -> None:
        """Write (on the recorder's thread, retried while the store is down) the rows that
        gateways which died left in their journals; each lands once."""
        folder = self.journal_dir
        if folder is None:
            return

        def run() -> None:
            # A store that refuses a row for good must not hold back this gateway's own
            # rows: a few tries over a minute, then the journal waits for the next start.
            error: DatabaseError | None = None
            for wait in _REPLAY_WAITS:
                if self._stopping.wait(wait):
                    return
                try:
                    n = replay(folder, lambda entry: _replayed(ledger, entry))
                except DatabaseError as exc:
                    error = exc
                    continue
                if n:
                    log.warning("ledger rows a stopped gateway left were written",
                                extra={"rows": n})  # fmt: skip
                return
            log.error(
                "ledger rows a stopped gateway left were not written; kept for the next start",
                extra={"journal": str(folder), "error": str(error)},
            )

        self.submit("journal-replay", run, must=False)

    def pending(self, request_id: str) -> bool:
        """Whether writes for `request_id` are still waiting."""
        with self._lock:
            return request_id in self._pending

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every write handed over so far is done; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout_s: float = 30.0) -> bool:
        """Flush, then stop the thread; False when writes were still waiting."""
        done = self.flush(timeout_s)
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout=1.0)
        if self.journal is not None:
            self.journal.close()  # kept for the next start when rows are still waiting
        return done

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            self._do(job)
            with self._idle:
                left = self._pending.get(job.request_id, 1) - 1
                if left:
                    self._pending[job.request_id] = left
                else:
                    self._pending.pop(job.request_id, None)
                self._idle.notify_all()

    def _do(self, job: _Job) -> None:
        wait, most = self._backoff
        while True:
            try:
                job.run()
                return
            except DatabaseError as exc:
                if not job.must:
                    log.warning("gateway write skipped", extra={"error": str(exc)})
                    return
                self.failures += 1
                log.warning(
                    "store unavailable; the row is kept and retried",
                    extra={"request_id": job.request_id, "error": str(exc)},
                )
                if self._stopping.is_set():
                    log.error(
                        "row not recorded: the store was unavailable until shutdown (a "
                        "journaled ledger row is written by the next gateway to start)",
                        extra={"request_id": job.request_id},
                    )
                    return
                self._stopping.wait(wait)
                wait = min(wait * 2, most)
            except Exception as exc:  # a bug in a write must not stop the ones after it
                log.error(
                    "gateway write failed",
                    extra={"request_id": job.request_id, "error": repr(exc)},
                )
                return


def _replayed(ledger: Ledger, entry: dict[str, Any]) -> None:
    """Write one journaled row; a row no store could take is logged and skipped, so it
    cannot hold back the rows after it (a store that is down raises, and is retried)."""
    row = entry.get("calls")
    if not isinstance(row, dict):
        return
    try:
        ledger.write_row(row)
    except DatabaseError:
        raise
    except Exception as exc:
        log.error(
            "journaled row cannot be written, skipped",
            extra={"request_id": row.get("request_id"), "error": repr(exc)},
        )
