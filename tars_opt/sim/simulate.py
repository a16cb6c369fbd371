"""What would I save? Replay a workload through the full chain, offline, on a simulated clock.

Every call of the workload goes through the normal Optimizer (whatever stages the config
enables: cache, defer, prune, route, tools, escalation) against the offline backend, with
one simulated clock shared by the chain, its stages, the budget and the backend's prompt
cache. Deferred work is drained through the offline backend's Message Batches at the
drain's cron ticks inside the off-peak window, and what is still queued after the last call
is drained when the window next opens. Calls replayed from conversation and request
records are answered with their recorded answers where the file has them (so output is
paid at its real length). Every number is then read back from the ledger.

The config is simulated as written, with three exceptions: the backend is offline, alert
channels (webhook, command) are off, and the database is a temporary file unless given.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tars_opt.accounting.ledger import Ledger
from tars_opt.backends.offline import OfflineBackend, RecordedAnswers
from tars_opt.config.schema import Config
from tars_opt.defer.queue import Queue
from tars_opt.errors import BudgetExceeded
from tars_opt.pipeline.optimizer import Optimizer
from tars_opt.plural import counted
from tars_opt.sim.measure import Outcome, hit_origin, measure_run
from tars_opt.sim.workload import Call, Workload
from tars_opt.store import connect
from tars_opt.store.database import Database
from tars_opt.types import Request

Progress = Callable[[int, int], None]


class SimClock:
    """A clock that only moves when the simulation moves it."""

    def __init__(self, start: float) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def set(self, moment: float) -> None:
        """Move to `moment` (never backwards)."""
        self.now = max(self.now, float(moment))

    def advance(self, seconds: float) -> None:
        self.now += max(0.0, float(seconds))


@dataclass
class SimResult:
    """What one replay cost, against the unoptimized baseline, and how good it was."""

    workload: str
    config: str
    calls: int
    answered: int
    ledger_rows: int
    baseline_cost: float
    cost: float
    saved_by_strategy: dict[str, float]
    model_mix: list[dict[str, Any]]
    sources: dict[str, int]
    exact_hits: int
    semantic_hits: int
    deferred: int
    drains: int
    escalations: int
    escalation_cost: float
    holdout: int
    refused: int
    errors: int
    labelled: int
    quality: float | None
    quality_baseline: float | None
    start: float
    end: float
    wall_s: float
    seed: int
    # Agent loops: calls replayed from conversation and request records (Messages API
    # bodies), the conversations they come from, and their prompt-cache tokens.
    loop_calls: int = 0
    conversations: int = 0
    loop_cache_read: int = 0
    loop_cache_write_5m: int = 0
    loop_cache_write_1h: int = 0
    notes: list[str] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    # Per call, by request id (left out of to_dict).
    outcomes: dict[str, Outcome] = field(default_factory=dict, repr=False)

    @property
    def saved(self) -> float:
        return self.baseline_cost - self.cost

    @property
    def saved_share(self) -> float | None:
        return self.saved / self.baseline_cost if self.baseline_cost > 0 else None

    @property
    def relative_quality(self) -> float | None:
        """Quality as a share of the all-baseline-model answers' quality."""
        if self.quality is None or not self.quality_baseline:
            return None
        return self.quality / self.quality_baseline

    def rate(self, count: int) -> float:
        return count / self.calls if self.calls else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.pop("outcomes")
        out.update(
            saved=self.saved,
            saved_share=self.saved_share,
            relative_quality=self.relative_quality,
            exact_hit_rate=self.rate(self.exact_hits),
            semantic_hit_rate=self.rate(self.semantic_hits),
            deferred_share=self.rate(self.deferred),
        )
        return out


def simulation_config(config: Config, database: Path) -> Config:
    """The config to simulate: as given, on the offline backend, alert channels off."""
    data = config.model_dump(mode="python")
    data["backend"] = "offline"
    data["database"] = database
    data["alerts"] = {**data["alerts"], "webhook_url": None, "command": None}
    return Config.model_validate(data)


def to_request(call: Call, request_id: str, config: Config) -> tuple[Request, bool]:
    """The Request a trace call makes; the flag is False when it asks for deferral that this
    build's Request cannot carry."""
    if call.body is not None:
        body = call.body
        if "max_tokens" not in body:
            body = {**body, "max_tokens": config.models.max_tokens}
        # Messages API calls are answered at once (as the gateway does) unless the record's
        # controls ask for the off-peak queue.
        controls = {"defer": False, **call.controls}
        return Request.from_body(body, request_id=request_id, **controls), True
    fields = {f.name for f in dataclasses.fields(Request)}
    extra: dict[str, Any] = {}
    supported = True
    if call.defer:
        if "defer" in fields:
            extra["defer"] = True
        else:
            supported = False
    if call.max_wait_s is not None and "max_wait_s" in fields:
        extra["max_wait_s"] = call.max_wait_s
    request = Request.from_prompt(
        call.prompt,
        messages=call.history,
        system=call.system,
        tools=call.tools,
        query_type=call.type,
        priority=call.priority,
        urgent=call.urgent,
        max_tokens=call.max_tokens or config.models.max_tokens,
        namespace=call.namespace,
        session=call.session,
        request_id=request_id,
        **extra,
    )
    return request, supported


class _Drain:
    """Runs the drain (when this build has one) at its cron ticks inside the window."""

    def __init__(self, config: Config, db: Database, backend: Any, clock: SimClock):
        self.config, self.db, self.backend, self.clock = config, db, backend, clock
        self.runs = 0
        self.window: Any = None
        self.every = 900.0
        defer = getattr(config, "defer", None)
        if defer is not None and defer.enabled:
            try:
                from tars_opt.defer.window import Window
            except ImportError:  # a build without lazy loading: nothing is ever queued
                return
            self.window = Window.parse(defer.window)
            self.every = float(defer.drain_every_minutes) * 60.0
        self.next_tick = (clock() // self.every + 1) * self.every

    def queued(self) -> int:
        return Queue(self.db).counts()["queued"]

    def run(self) -> None:
        from tars_opt.drain.runner import Drainer

        drainer = Drainer(
            self.config, self.db, backend=self.backend, clock=self.clock, sleep=self.clock.advance
        )
        drainer.run(wait=True)
        self.runs += 1

    def until(self, moment: float) -> None:
        """Run every tick before `moment` that falls in the window with work queued."""
        if self.window is None:
            return
        while self.next_tick <= moment:
            if self.window.contains(self.next_tick) and self.queued():
                self.clock.set(self.next_tick)
                self.run()
            self.next_tick += self.every

    def finish(self) -> None:
        """After the last call: wait for the window to open and drain what is left."""
        if self.window is None or not self.queued():
            return
        now = self.clock()
        opens = now if self.window.contains(now) else self.window.next_open(now)
        self.until(opens + self.every)
        if self.queued():
            self.clock.set(self.next_tick)
            self.run()


def simulate(
    workload: Workload,
    config: Config,
    *,
    db_path: str | Path | None = None,
    seed: int = 0,
    config_name: str = "defaults",
    on_progress: Progress | None = None,
) -> SimResult:
    """Replay `workload` under `config` and measure it (see the module docstring).

    `seed` names the request ids, which decide the calls that fall in the A/B holdout
    (experiment.holdout); the same seed gives the same result.
    """
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tars-opt-sim-") as tmp:
        path = Path(db_path) if db_path is not None else Path(tmp) / "simulate.db"
        cfg = simulation_config(config, path)
        db = connect(path)
        try:
            return _run(workload, cfg, db, seed, config_name, on_progress, started)
        finally:
            db.close()


def _run(
    workload: Workload,
    cfg: Config,
    db: Database,
    seed: int,
    config_name: str,
    on_progress: Progress | None,
    started: float,
) -> SimResult:
    first_row = Ledger(db).last_id()
    clock = SimClock(workload.calls[0].time)
    answers = RecordedAnswers()
    backend = OfflineBackend(clock=clock, answers=answers)
    optimizer = Optimizer(cfg, db, backend=backend, clock=clock)
    drain = _Drain(cfg, db, backend, clock)
    by_id: dict[str, Call] = {}
    queued: set[str] = set()
    served_by: dict[str, str] = {}  # a cache hit's id -> the request whose answer it served
    refused = unsupported = 0
    total = len(workload.calls)
    for i, call in enumerate(workload.calls):
        drain.until(call.time)
        clock.set(call.time)
        rid = f"sim{seed}-{i:06d}"
        request, supported = to_request(call, rid, cfg)
        unsupported += not supported
        by_id[rid] = call
        if call.answer:
            answers.expect(request.messages, call.answer)
        try:
            reply = optimizer.ask(request)
        except BudgetExceeded:
            refused += 1
        else:
            if reply.source == "queued":
                queued.add(rid)
            elif reply.source == "cache":
                # Read the entry's origin now: expired entries are evicted later.
                origin = hit_origin(db, reply.decisions)
                if origin is not None:
                    served_by[rid] = origin
        if on_progress is not None:
            on_progress(i + 1, total)
    drain.finish()
    notes = []
    if unsupported:
        notes.append(
            f"{counted(unsupported, 'call')} asked to defer, but this build has no defer stage"
        )
    result = measure_run(db, cfg, by_id, queued, served_by, first_row)
    result.update(_loops(db, by_id, first_row))
    result.update(
        workload=workload.name, config=config_name, calls=total, refused=refused,
        drains=drain.runs, start=workload.calls[0].time, end=clock(), seed=seed,
        wall_s=time.perf_counter() - started, notes=notes,
        stages=[s.name for s in optimizer.stages],
    )  # fmt: skip
    return SimResult(**result)


def _loops(db: Database, by_id: dict[str, Call], first_row: int) -> dict[str, int]:
    """The agent-loop calls' (conversation and request records) count and cache tokens."""
    ids = {rid for rid, call in by_id.items() if call.body is not None}
    rows = [r for r in Ledger(db).rows_after(first_row)
            if r["request_id"] in ids or r["escalated_from"] in ids]  # fmt: skip
    return {
        "loop_calls": len(ids),
        "conversations": len({by_id[r].conversation for r in ids} - {None}),
        "loop_cache_read": sum(r["cache_read"] or 0 for r in rows),
        "loop_cache_write_5m": sum(r["cache_write_5m"] or 0 for r in rows),
        "loop_cache_write_1h": sum(r["cache_write_1h"] or 0 for r in rows),
    }
