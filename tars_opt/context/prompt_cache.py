"""Prompt-cache breakpoints on the stable prefix of a request, and the check that they hit.

The API caches the prefix of a request (tools, then system, then messages) up to each
block marked with `cache_control`, at most 4 per request. We mark, in order:
the last tool; the original system prompt when a summary follows it; the end of the
system prompt (which holds the summary of old history); the last message before the
prompt. Everything before a breakpoint must stay byte-identical from turn to turn, which
is why pruning keeps its cuts stable (see context/prune.py) and nothing here adds dates.
A prefix shorter than the model's minimum is not marked: the API would ignore it.

TTL (`prompt_cache.ttl_interactive`): a write costs 1.25x input (5m) or 2x (1h),
a read 0.1x, and a read renews the entry. An agent calling every few minutes outlives a
5-minute entry between calls and pays 1.25x on every call for nothing. `auto` (the
default) marks the stable prefix (tools, system) with 1h when the same prefix was sent in
the last hour - so from the second call of a busy hour on it is read - and leaves it
unmarked otherwise (an isolated single-turn call pays 1x, not 2x). The end of a conversation's
history, read only by the conversation's next turn, gets 5m while its turns come less
than QUICK_TURN_S apart or no gap is known yet (a quick loop or a one-shot request: a
write at 1.25x, not 2x), 1h while they come minutes apart (a 5m entry would be gone and
the whole history written again), and no mark once they come more than an hour apart.
Deferred work gets `ttl_deferred`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from tars_opt import tokens
from tars_opt.config.schema import PromptCacheConfig
from tars_opt.errors import DatabaseError
from tars_opt.hashing import canonical, prefix_key, sha256_text
from tars_opt.store.database import Database
from tars_opt.types import Decision, Prepared, Reply, Request, Usage

log = logging.getLogger("tars_opt.prompt_cache")
MAX_BREAKPOINTS = 4
# `auto`: a stable prefix sent within this many seconds is marked with the 1h TTL.
AUTO_WINDOW_S = 3600.0
AUTO_UNMARKED = "ttl auto"  # how the reason of a prefix `auto` leaves unmarked begins
UNMARKABLE = ("thinking", "redacted_thinking")  # blocks the API takes no cache_control on
# `auto`: a conversation whose previous turn went out less than this long ago gets a 5m
# mark on its history (a margin under the 300 s lifetime: the next gap may be longer).
QUICK_TURN_S = 240.0


@dataclass(frozen=True)
class Breakpoint:
    """One cache_control mark: where it is, how many tokens the prefix up to it has, and
    its TTL."""

    where: str
    prefix_tokens: int
    ttl: str = "5m"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _marked_blocks(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The cache_control marks the request carries on its blocks, in API order."""
    found: list[dict[str, Any]] = []

    def walk(items: Any) -> None:
        for item in items or []:
            if isinstance(item, dict):
                if isinstance(item.get("cache_control"), dict):
                    found.append(item["cache_control"])
                content = item.get("content")
                if isinstance(content, list):
                    walk(content)

    walk(params.get("tools"))
    system = params.get("system")
    if isinstance(system, list):
        walk(system)
    walk(params.get("messages"))
    return found


def _has_marks(params: dict[str, Any]) -> bool:
    return "cache_control" in params or bool(_marked_blocks(params))


@dataclass
class _Candidate:
    where: str
    tokens: int  # prefix tokens up to and including this block
    block: dict[str, Any]
    kind: str  # stable (tools, system) | history (end of history) | tail (the last message)


def _markable(messages: list[Any], i: int) -> dict[str, Any] | None:
    """The last block of messages[i] that can carry cache_control, as a copy put in place
    of the original (the message and its content list are copied too, content made
    blocks), so marking it never changes the caller's request."""
    message = dict(messages[i])
    content = message.get("content")
    blocks = (
        [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
    )
    message["content"] = blocks
    messages[i] = message
    for j in range(len(blocks) - 1, -1, -1):
        b = blocks[j]
        if (
            isinstance(b, dict)
            and b.get("type") not in UNMARKABLE
            and not (b.get("type") == "text" and b.get("text") == "")
        ):
            blocks[j] = dict(b)
            return blocks[j]
    return None


def _candidates(out: dict[str, Any], loop: bool) -> list[_Candidate]:
    """Where marks may go, in API order. `out` is a shallow copy of the request: the
    blocks returned (and the lists holding them) are copied into it, so marking them
    changes `out` only."""
    candidates: list[_Candidate] = []
    total = 0
    tools = out.get("tools") or []
    for tool in tools:
        total += tokens.estimate_tool(tool)
    if tools:
        tools = out["tools"] = [*tools[:-1], dict(tools[-1])]
        candidates.append(
            _Candidate(f"tools[{len(tools) - 1}] (last tool)", total, tools[-1], "stable")
        )
    system = out.get("system")
    if isinstance(system, str) and system:
        system = [{"type": "text", "text": system}]
    if isinstance(system, list) and system:
        system = out["system"] = [dict(b) if isinstance(b, dict) else b for b in system]
        for i, block in enumerate(system):
            total += tokens.estimate_text(str(block.get("text", "")))
            last = i == len(system) - 1
            if last or i == len(system) - 2:
                label = "system (end)" if last else f"system[{i}]"
                candidates.append(_Candidate(label, total, block, "stable"))
    messages = out["messages"] = list(out.get("messages") or [])
    for i, message in enumerate(messages):
        total += tokens.estimate_message(message)
        if i == len(messages) - 2:
            block = _markable(messages, i)
            if block is not None:
                label = f"messages[{i}] (end of history)"
                candidates.append(_Candidate(label, total, block, "history"))
        elif i == len(messages) - 1 and loop:
            block = _markable(messages, i)
            if block is not None:
                label = f"messages[{i}] (tail)"
                candidates.append(_Candidate(label, total, block, "tail"))
    return candidates


def _fit(chosen: list[_Candidate], room: int) -> list[_Candidate]:
    """At most `room` marks. Dropped first: the end of history (the tail's 20-block
    lookback reaches the previous call's entry in most loops), then the earliest stable
    marks; the last stable mark and the tail stay."""
    chosen = list(chosen)
    while len(chosen) > room:
        stable = [c for c in chosen if c.kind == "stable"]
        history = [c for c in chosen if c.kind == "history"]
        victim = history[0] if history else stable[0] if len(stable) > 1 else chosen[0]
        chosen.remove(victim)
    return chosen


def _is_loop(params: dict[str, Any]) -> bool:
    """A request whose next call is likely to repeat it and add to it: one with history
    or with tools (an agent's first call)."""
    return len(params.get("messages") or []) > 1 or bool(params.get("tools"))


def _conversation_ttl(since_turn: float | None) -> str:
    """The TTL of what only this conversation's next turn reads: 5m while turns come
    quickly or no gap is known yet, 1h for turns minutes apart."""
    return "1h" if since_turn is not None and QUICK_TURN_S <= since_turn <= AUTO_WINDOW_S else "5m"


def mark_breakpoints(
    params: dict[str, Any],
    config: PromptCacheConfig,
    *,
    deferred: bool = False,
    enabled: bool = True,
    since_sent: float | None = None,
    since_turn: float | None = None,
) -> tuple[dict[str, Any], list[Breakpoint], str]:
    """A copy of `params` with cache_control marks, the marks, and a one-line reason.

    `enabled=False` (the A/B holdout) marks nothing. A request carrying the caller's own
    marks keeps them as they are; a loop (history or tools) among them gains automatic
    caching (a top-level cache_control: the moving tail) when a breakpoint is left. Only
    the `auto` TTL reads `since_sent`, the seconds since this request's stable prefix
    (stable_key) was last sent, and `since_turn`, since this conversation's previous turn
    (conversation_key); None: not known to have been sent.
    """
    if not config.enabled or not enabled:
        return params, [], "prompt caching off"
    minimum = config.minimum(str(params.get("model") or ""))
    if "cache_control" in params:
        return params, [], "the request carries its own cache_control marks"
    if _has_marks(params):
        return _client_marked(params, minimum, since_turn)
    auto = config.ttl_interactive == "auto" and not deferred
    fixed = config.ttl_deferred if deferred else config.ttl_interactive
    loop = _is_loop(params)
    out = dict(params)
    candidates = _candidates(out, loop)
    big = [c for c in candidates if c.tokens >= minimum]
    if not big:
        longest = max((c.tokens for c in candidates), default=0)
        return params, [], f"prefix ~{longest} tokens is below the {minimum}-token minimum"
    recent = since_sent is not None and 0 <= since_sent <= AUTO_WINDOW_S
    slow = since_turn is not None and since_turn > AUTO_WINDOW_S
    if auto:
        # A write pays only when a later call reads it: the shared prefix when it recurs
        # (sent in the last hour) or when this loop's next call will read it; the
        # conversation's part unless its turns come hours apart.
        big = [
            c
            for c in big
            if (c.kind == "stable" and (recent or (loop and not slow)))
            or (c.kind != "stable" and not slow)
        ]
        if not big:
            return (
                params,
                [],
                (
                    f"{AUTO_UNMARKED}: neither this prefix nor this conversation was sent in "
                    "the last hour, so nothing is marked (a write pays only when a later call "
                    "reads it)"
                ),
            )
    chosen = _fit(big, MAX_BREAKPOINTS)
    # Chosen candidates are the only blocks to mark: unchosen ones stay as they were.
    conversation_ttl = _conversation_ttl(since_turn)
    stable_ttl = "1h" if recent or conversation_ttl == "1h" else "5m"
    marks = []
    for c in chosen:
        ttl = (stable_ttl if c.kind == "stable" else conversation_ttl) if auto else fixed
        c.block["cache_control"] = {"type": "ephemeral", "ttl": ttl}
        marks.append(Breakpoint(c.where, c.tokens, ttl))
    if not auto:
        return out, marks, f"{len(marks)} breakpoint(s), ttl {fixed}"
    parts = []
    if any(c.kind == "stable" for c in chosen):
        if recent:
            parts.append(f"tools/system {stable_ttl} (same prefix sent {since_sent:.0f} s ago)")
        else:
            parts.append(f"tools/system {stable_ttl} (first sent now; this loop reads it next)")
    if any(c.kind != "stable" for c in chosen):
        gap = f"previous turn {since_turn:.0f} s ago" if since_turn is not None else "no gap known"
        what = "end of history and tail" if chosen[-1].kind == "tail" else "end of history"
        parts.append(f"{what} {conversation_ttl} ({gap})")
    return out, marks, f"{len(marks)} breakpoint(s), ttl auto: " + ", ".join(parts)


def _client_marked(
    params: dict[str, Any], minimum: int, since_turn: float | None
) -> tuple[dict[str, Any], list[Breakpoint], str]:
    """A request with the caller's own marks: they are kept as they are. A loop with a
    breakpoint to spare gets automatic caching (top-level cache_control), which marks the
    last block without touching any of the caller's: each call then reads what the one
    before it wrote."""
    own = _marked_blocks(params)
    why = "the request carries its own cache_control marks"
    if not _is_loop(params) or len(own) >= MAX_BREAKPOINTS:
        return params, [], why
    if since_turn is not None and since_turn > AUTO_WINDOW_S:
        return params, [], why + " (turns over an hour apart: no tail mark)"
    total = tokens.estimate_params(params)
    if total < minimum:
        return params, [], why + f" (~{total} tokens, below the {minimum}-token minimum)"
    ttl = _conversation_ttl(since_turn)
    if ttl == "1h" and any(m.get("ttl", "5m") != "1h" for m in own):
        ttl = "5m"  # the last mark may not outlive a 5m one before it
    out = dict(params)
    out["cache_control"] = {"type": "ephemeral", "ttl": ttl}
    mark = Breakpoint("top-level cache_control (automatic: the last block)", total, ttl)
    gap = f"previous turn {since_turn:.0f} s ago" if since_turn is not None else "no gap known"
    return (
        out,
        [mark],
        f"{why}, kept as they are; automatic caching added for the conversation tail, "
        f"ttl {ttl} ({gap}; {len(own) + 1} of {MAX_BREAKPOINTS} breakpoints)",
    )


def stable_key(params: dict[str, Any]) -> str:
    """SHA-256 of what a request shares with the next ones: model, system, tools (marks
    left out, they change billing, not the prefix)."""
    return prefix_key(params)


def _blocks(content: Any) -> Any:
    """Message content as blocks (marking turns a text content into one block)."""
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def conversation_key(params: dict[str, Any]) -> str | None:
    """SHA-256 naming the conversation a request belongs to: the model and the first
    message (pruning keeps it while `prune.keep_first_user` is on). The same for every
    turn of one conversation, its opening request included. Left out because they change
    as a conversation goes: the system prompt (pruning adds the summary of old turns to
    it) and the tools (a selection may follow the prompt). Two conversations that open
    with the same message share a key; that only moves the choice between 5m and 1h."""
    messages = params.get("messages") or []
    if not messages:
        return None
    first = messages[0]
    shared = {
        "model": params.get("model"),
        "first": {"role": first.get("role"), "content": _blocks(first.get("content"))},
    }
    return sha256_text(canonical(shared))


class PrefixLog:
    """When each stable prefix was last sent (table `prefix_sends`), for the `auto` TTL.

    Only the SHA-256 and the model are stored. Rows older than a day are deleted as new
    ones come. A database that cannot be read or written costs only the marking: the
    request goes on as if the prefix were new.

    An agent's tool turns come seconds apart, and a commit on every call would be about a
    fifth of the chain's time: this process's own sends are kept in memory (exact here),
    and a key's row is rewritten only once it is WRITE_EVERY_S old. Another process may so
    read a send up to that much late, which changes only a TTL choice whose gap falls
    within that margin of QUICK_TURN_S or AUTO_WINDOW_S.
    """

    KEEP_S = 86_400.0
    WRITE_EVERY_S = 20.0
    REMEMBERED = 50_000  # keys kept in memory; the oldest go first

    def __init__(self, db: Database) -> None:
        self.db = db
        self._sent: OrderedDict[str, tuple[float, float]] = OrderedDict()  # (sent, written)
        self._lock = threading.Lock()

    def since_sent(self, key: str, now: float) -> float | None:
        """Seconds since `key` was last sent, or None."""
        with self._lock:
            here = self._sent.get(key)
        try:
            row = self.db.execute(
                "SELECT last_sent FROM prefix_sends WHERE key = ?", [key]
            ).fetchone()
        except DatabaseError as exc:
            log.warning("prefix log unreadable", extra={"error": str(exc)})
            row = None
        times = [] if row is None else [float(row[0])]
        if here is not None and now - here[0] <= self.KEEP_S:  # forgotten after a day, as rows
            times.append(here[0])
        return now - max(times) if times else None

    @staticmethod
    def keys(params: dict[str, Any]) -> tuple[str, str | None]:
        """(stable_key, conversation_key) of a request: what `times` and `record` read."""
        return stable_key(params), conversation_key(params)

    def times(
        self, params: dict[str, Any], now: float, keys: tuple[str, str | None] | None = None
    ) -> tuple[float | None, float | None]:
        """(since_sent, since_turn) for mark_breakpoints."""
        stable, turn = keys or self.keys(params)
        return self.since_sent(stable, now), self.since_sent(turn, now) if turn else None

    def record(
        self, params: dict[str, Any], now: float, keys: tuple[str, str | None] | None = None
    ) -> None:
        """Record that this request (its stable prefix, its conversation) is sent now."""
        stable, turn = keys or self.keys(params)
        self.sent([k for k in (stable, turn) if k], str(params.get("model") or ""), now)

    def sent(self, keys: list[str], model: str, now: float) -> None:
        """Record that `keys` are being sent now."""
        due: list[str] = []
        with self._lock:
            for key in keys:
                _, written = self._sent.pop(key, (now, float("-inf")))
                if not 0 <= now - written < self.WRITE_EVERY_S:
                    due.append(key)
                    written = now
                self._sent[key] = (now, written)
            while len(self._sent) > self.REMEMBERED:
                self._sent.popitem(last=False)
        if not due:
            return
        try:
            with self.db.transaction() as cur:
                rows = [{"key": key, "model": model, "last_sent": now} for key in due]
                cur.insert_many("prefix_sends", rows, on_conflict="replace")
                cur.execute("DELETE FROM prefix_sends WHERE last_sent < ?", (now - self.KEEP_S,))
        except DatabaseError as exc:
            log.warning("prefix log not written", extra={"error": str(exc)})
            with self._lock:
                for key in due:  # written next time
                    if key in self._sent:
                        self._sent[key] = (self._sent[key][0], float("-inf"))


def miss_cause(usage: Usage, marks: list[dict[str, Any]], minimum: int) -> str | None:
    """Why a marked prefix was neither written nor read, or None when the cache was used."""
    if not marks or usage.cache_read or usage.cache_write:
        return None
    longest = max(int(m.get("prefix_tokens", 0)) for m in marks)
    if longest < minimum * 1.3:
        return (
            f"prefix ~{longest} tokens (estimated) is close to the {minimum}-token minimum: "
            "it is probably below the model's real minimum"
        )
    return (
        "the model may not support prompt caching, or the request changed something that "
        "invalidates it (tool_choice, images, thinking settings)"
    )


def check_usage(usage: Usage, marks: list[dict[str, Any]], minimum: int, request_id: str) -> None:
    """Log a marked prefix that came back with both cache counters at 0."""
    cause = miss_cause(usage, marks, minimum)
    if cause:
        log.warning("prompt cache miss", extra={"request_id": request_id, "cause": cause})


class PromptCacheStage:
    """Marks the request's stable prefix for the API's prompt cache (see the module
    docstring); records when each prefix is sent, for the `auto` TTL; and logs a marked
    prefix the API neither wrote nor read."""

    name = "prompt_cache"

    def __init__(
        self,
        config: PromptCacheConfig,
        db: Database | None,
        *,
        model_of: Callable[[Request], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.prefixes = PrefixLog(db) if db is not None else None
        self.model_of = model_of
        self.clock = clock

    def _tracks(self, request: Request) -> bool:
        """Whether the `auto` TTL needs to know when this request's prefix was sent."""
        return (
            self.prefixes is not None
            and self.config.ttl_interactive == "auto"
            and request.defer is not True
        )

    def apply(self, request: Request) -> tuple[Request, Decision | None]:
        params = request.to_body()
        params["model"] = self.model_of(request)
        since: tuple[float | None, float | None] = (None, None)
        keys: tuple[str, str | None] | None = None
        if self._tracks(request) and self.prefixes is not None:
            # Hashed here, before the marks: a marked request's hash takes the slow path.
            keys = self.prefixes.keys(params)
            since = self.prefixes.times(params, self.clock(), keys)
        marked, marks, why = mark_breakpoints(
            params,
            self.config,
            deferred=request.defer is True,
            since_sent=since[0],
            since_turn=since[1],
        )
        if marks and "cache_control" in marked and "cache_control" not in params:
            request = replace(
                request, extra={**request.extra, "cache_control": marked["cache_control"]}
            )
            data = {"breakpoints": [m.to_dict() for m in marks], "automatic": True}
            if keys is not None:
                data["prefix_keys"] = list(keys)
            return request, Decision("prompt_cache", "marked", why, data)
        if marks:
            system = marked.get("system")
            request = replace(
                request,
                messages=tuple(marked["messages"]),
                system=tuple(system) if isinstance(system, list) else system,
                tools=tuple(marked.get("tools") or ()),
            )
            data = {"breakpoints": [m.to_dict() for m in marks]}
            if keys is not None:
                data["prefix_keys"] = list(keys)
            return request, Decision("prompt_cache", "marked", why, data)
        if why.startswith(AUTO_UNMARKED) or request.dry_run:
            return request, Decision("prompt_cache", "unmarked", why)
        return request, None  # other unmarked requests (short) add nothing to the trace

    def before_send(self, prepared: Prepared) -> None:
        if self._tracks(prepared.request) and self.prefixes is not None:
            # The keys of the marked request are those of the unmarked one it came from.
            found = next(
                (d.data["prefix_keys"] for d in prepared.decisions if "prefix_keys" in d.data),
                None,
            )
            keys = (found[0], found[1]) if found else None
            self.prefixes.record(prepared.params, self.clock(), keys)

    def after(self, prepared: Prepared, reply: Reply) -> None:
        for d in prepared.decisions:
            if d.stage == "prompt_cache" and d.data.get("breakpoints"):
                minimum = self.config.minimum(reply.model or "")
                check_usage(reply.usage, d.data["breakpoints"], minimum, reply.request_id)
