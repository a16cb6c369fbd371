"""Recovery after a crash: claims of a dead drain go back to the queue, and a batch it
submitted without recording its id is found again by listing batches and matching the
deterministic custom_ids (`<ticket>-<attempt>`) of the tasks it held."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tars_opt.backends import BatchInfo
from tars_opt.errors import BackendError
from tars_opt.store.database import Database

if TYPE_CHECKING:
    from collections.abc import Callable

    from tars_opt.backends import Backend
    from tars_opt.config.schema import DeferConfig
    from tars_opt.defer.queue import Queue
    from tars_opt.drain.runner import DrainReport

log = logging.getLogger("tars_opt.drain")
# Listed batches created this long before a lost submission are still candidates (clock skew).
SKEW_S = 600.0


def new_owner() -> str:
    """host:pid:token - who holds a claim, so a dead holder can be told from a live one."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Recovery:
    """The recovery half of the Drainer, which supplies these attributes."""

    db: Database
    queue: Queue
    defer: DeferConfig
    owner: str
    clock: Callable[[], float]

    @property
    def backend(self) -> Backend:
        """The Drainer builds its backend on first use."""
        raise NotImplementedError

    def is_stale(self, owner: str | None, lease_until: float | None) -> bool:
        """Whether a claim's holder is gone: its lease ran out, or its process died here."""
        if not owner or owner == self.owner:
            return False
        if lease_until is not None and lease_until < self.clock():
            return True
        host, _, rest = owner.partition(":")
        pid = rest.partition(":")[0]
        return host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))

    # ---- 1. recover ----------------------------------------------------------------------
    def recover(self, report: DrainReport) -> None:
        """Release dead drains' claims; find batches they submitted but did not record."""
        stale: dict[str, list[int]] = defaultdict(list)
        for row in self.queue.claims_outside_batches():
            if self.is_stale(row["owner"], row["lease_until"]):
                stale[row["owner"]].append(row["id"])
        for owner, ids in stale.items():
            report.released += self.queue.release(ids, owner)
        lost = [
            b
            for b in self.queue.batches(["submitting"])
            if self.is_stale(b["owner"], b["lease_until"])
        ]
        if lost:
            try:
                self._reconcile(lost, report)
            except BackendError as exc:
                # Cannot list batches now: leave the lost submissions for the next run.
                report.uncertain += len(lost)
                log.warning("cannot list batches to recover", extra={"error": str(exc)})

    def _reconcile(self, lost: list[dict[str, Any]], report: DrainReport) -> None:
        known = self.queue.known_batch_ids()
        listed = [
            b for b in self.backend.list_batches(self.defer.recover_list_limit) if b.id not in known
        ]
        oldest = min(b["created_at"] for b in lost) - SKEW_S
        listed = [b for b in listed if _epoch(b.created_at, oldest) >= oldest]
        ids_of: dict[str, set[str]] = {}
        for info in listed:
            if info.status == "ended":
                ids_of[info.id] = {item.custom_id for item in self.backend.batch_results(info.id)}
        for row in lost:
            tasks = self.queue.batch_tasks(row["id"], ("claimed",))
            wanted = {t["custom_id"] for t in tasks}
            match = next((b for b in listed if ids_of.get(b.id, set()) & wanted), None)
            if match is not None:
                self.queue.record_batch(row["id"], match.id, match.status, match.counts)
                self.queue.set_batch_state(row["id"], match.status, discovered=1)
                report.adopted.append(match.id)
                log.warning("adopted unrecorded batch", extra={"batch_id": match.id})
                continue
            waiting = [
                b.id
                for b in listed
                if b.status != "ended"
                and _epoch(b.created_at, row["created_at"]) >= (row["created_at"] - SKEW_S)
            ]
            if waiting:
                report.uncertain += 1
                self.queue.set_batch_state(
                    row["id"], "submitting", note=f"waiting for {', '.join(waiting)} to end"
                )
                continue
            # No listed batch holds these custom_ids: the submission never reached the API.
            self.queue.release([t["id"] for t in tasks])
            self.queue.set_batch_state(
                row["id"], "abandoned", owner=None, note="never reached the API; tasks requeued"
            )
            report.abandoned += 1
        adopted = set(report.adopted)
        for info in listed:
            if info.status == "ended" and info.id not in adopted:
                self._remember_foreign(info)

    def _remember_foreign(self, info: BatchInfo) -> None:
        # An ended batch that is none of ours: remember it so it is not read again.
        self.queue.remember_foreign_batch(info.id, self.backend.name)


def _epoch(text: str | None, default: float) -> float:
    if not text:
        return default
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default
