"""Context savings on real conversations: pruning levels, needle check, prompt-cache hits,
processing time, and tool-selection recall.

Data: ShareGPT V3 (partial), conversations_first2000.json from the shared data folder:
each conversation's last user turn is the prompt, everything before it the history.
Reported on the evaluation split (bucket 6-9 of sha1(conversation id)); nothing here is
tuned on it. Summaries come from the offline backend (placeholder text), so:
- the summary's size is counted at prune.summary_max_tokens (the limit a real one has);
- the needle check counts only messages kept verbatim, never the summary (conservative).

Run: python benchmarks/context_savings.py [--data ../shared/data] [--split evaluation]
     [--semantic] [--cache-conversations N] [--processing-only] [--no-vector-cache]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.tool_catalog import catalog, prompts  # noqa: E402
from tars_opt import tokens  # noqa: E402
from tars_opt.config.loader import load_config  # noqa: E402
from tars_opt.config.schema import PruneConfig, ToolsConfig  # noqa: E402
from tars_opt.context.history import message_text  # noqa: E402
from tars_opt.context.prune import PruneStage  # noqa: E402
from tars_opt.context.relevance import Scorer, default_embedder, held, needles  # noqa: E402
from tars_opt.context.summaries import Summary  # noqa: E402
from tars_opt.context.tools import ToolStage  # noqa: E402
from tars_opt.embeddings.store import VectorCache  # noqa: E402
from tars_opt.store import connect  # noqa: E402
from tars_opt.types import Request  # noqa: E402

ROLE = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant"}


def bucket(key: str) -> int:
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % 10


def load(path: Path, split: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """(id, messages) per conversation. The file holds *pieces* (`<conversation>_<piece>`,
    cut at ~2k tokens upstream, some pieces filtered out): pieces of one conversation are
    joined in piece order to get the real long histories back. Roles mapped, same-role
    runs merged, a leading assistant message dropped (the API wants the user first), and
    the conversation ends on a user turn (the prompt). Split by conversation id."""
    data = json.loads(path.read_text(encoding="utf-8"))
    pieces: dict[str, list[tuple[int, list[dict[str, Any]]]]] = {}
    for conv in data:
        cid, _, piece = str(conv["id"]).rpartition("_")
        if not cid or not piece.isdigit():
            cid, piece = str(conv["id"]), "0"
        pieces.setdefault(cid, []).append((int(piece), conv.get("conversations", [])))
    out = []
    for cid, parts in pieces.items():
        b = bucket(cid)
        if (split == "evaluation" and b < 6) or (split == "calibration" and b >= 6):
            continue
        msgs: list[dict[str, Any]] = []
        for _, turns in sorted(parts, key=lambda p: p[0]):
            for turn in turns:
                role = ROLE.get(str(turn.get("from")))
                text = str(turn.get("value") or "").strip()
                if role is None or not text:
                    continue
                if msgs and msgs[-1]["role"] == role:
                    msgs[-1] = {"role": role, "content": msgs[-1]["content"] + "\n\n" + text}
                else:
                    msgs.append({"role": role, "content": text})
        while msgs and msgs[0]["role"] == "assistant":
            msgs.pop(0)
        while msgs and msgs[-1]["role"] == "assistant":
            msgs.pop()
        if len(msgs) >= 3:
            out.append((cid, msgs))
    return out


def as_request(msgs: list[dict[str, Any]], **extra: Any) -> Request:
    return Request.from_prompt(msgs[-1]["content"], messages=tuple(msgs[:-1]), **extra)


def history_tokens(request: Request) -> int:
    return sum(tokens.estimate_message(m) for m in request.history)


def needle_ok(request: Request, pruned: Request) -> bool | None:
    """True when every needle of the prompt found in the history (as a whole name, number
    or identifier: `relevance.holds`) is still in the kept messages; None when the prompt
    refers to nothing in the history."""
    full = "\n".join(message_text(m) for m in request.history)
    wanted = held(full, needles(request.prompt))
    if not wanted:
        return None
    kept = "\n".join(message_text(m) for m in pruned.history)
    last = pruned.messages[-1]["content"]
    if isinstance(last, list):  # the excerpt pruning put before the prompt
        kept += "\n" + "\n".join(b["text"] for b in last[:-1] if b.get("type") == "text")
    return held(kept, wanted) == wanted


def levels_table(convs: list, config: PruneConfig, scorer: Scorer) -> list[dict[str, Any]]:
    # Every turn's vector at hand, as from a conversation's second request on (the first
    # request of a history never seen scores its older turns by word overlap: the
    # lexical table).
    stage = PruneStage(replace_cfg(config, embed_in_background=False), None, scorer=scorer)
    placeholder = Summary("x", "[summary]", config.summary_max_tokens, False)
    long = [as_request(m) for _, m in convs]
    long = [r for r in long if history_tokens(r) > config.budget_tokens]
    rows = []
    for level in ("light", "medium", "aggressive", "auto"):
        before = after = 0
        ratios, checks = [], []
        for req in long:
            plan = stage.plan(req, None if level == "auto" else level)
            pruned = stage.rewrite(req, plan, placeholder if plan.summarize and plan.acts else None)
            b = sum(tokens.estimate_message(m) for m in req.api_messages())
            a = sum(tokens.estimate_message(m) for m in pruned.api_messages())
            if plan.summarize and plan.acts:
                a += config.summary_max_tokens
            a = min(a, b)  # a plan that would not save is not applied
            before, after = before + b, after + a
            ratios.append(a / b)
            ok = needle_ok(req, pruned)
            if ok is not None:
                checks.append(ok)
        rows.append(
            {
                "level": level,
                "conversations": len(long),
                "tokens_before": before,
                "tokens_after": after,
                "cut": 1 - after / before if before else 0.0,
                "median_cut": 1 - statistics.median(ratios) if ratios else 0.0,
                "needle_checked": len(checks),
                "needle_ok": sum(checks) / len(checks) if checks else 1.0,
            }
        )
    return rows


def _timed(stage: PruneStage, request: Request, placeholder: Summary) -> float:
    """Milliseconds of plan + rewrite at the medium level (the summary itself excluded)."""
    if stage.scorer.semantic:
        # The prompt is new to a new process (a request with history skips the semantic
        # cache, so nothing embedded it before the pruner): time its embedding too.
        from tars_opt.embeddings.model import get_embedder

        get_embedder().clear_memo()
    start = time.perf_counter()
    plan = stage.plan(request, "medium")
    stage.rewrite(request, plan, placeholder if plan.acts else None)
    elapsed = (time.perf_counter() - start) * 1000
    # Untimed, what the chain does while the API answers and once it has: the turns left
    # for later are embedded and stored.
    stage.before_send(None)
    stage.after(None, None)
    return elapsed


def _percentiles(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {
        "requests": len(times),
        "p50_ms": statistics.median(times),
        "p95_ms": times[max(0, int(len(times) * 0.95) - 1)],
    }


def processing_ms(
    convs: list, config: PruneConfig, semantic: bool, persist: bool = True
) -> dict[str, dict[str, float]]:
    """p50/p95 of plan + rewrite for 50-message histories (summary lookup excluded), each
    request with a new Scorer and PruneStage as a new `tars-opt ask` process has them
    (the model itself is loaded once, before any timing). `persist`: the scorer keeps its
    vectors in an SQLite VectorCache, as the chain does with a database; else in memory
    only. The ways:
    - cold: nothing cached (a long history seen for the first time): its older turns are
      scored by word overlap and embedded while the API answers (untimed, see _timed);
    - cold_inline: the same with `embed_in_background: false` (embedded before sending);
    - turn_by_turn: the conversation grew two messages a turn, each turn over the budget
      processed by its own new scorer; only the turn at 50 messages is timed;
    - repeat_new_process: the same request again with a new scorer (all vectors stored);
    - repeat_same_process: the same request again with the cold scorer (vectors in memory);
    - every_turn: every turn of the growth above the budget, 50 messages or fewer (the
      turns where the summarized part moves a step embed the turns it takes in).
    """
    placeholder = Summary("x", "[summary]", config.summary_max_tokens, False)
    samples = [m for _, m in convs if len(m) >= 51][:200]
    times: dict[str, list[float]] = {
        "cold": [],
        "cold_inline": [],
        "turn_by_turn": [],
        "repeat_new_process": [],
        "repeat_same_process": [],
        "every_turn": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        db = connect(Path(tmp) / "vectors.db")  # a real file: WAL, fsync as in use

        def new_stage(**changes: Any) -> PruneStage:
            vectors = VectorCache(db, config.vector_cache_rows) if persist else None
            scorer = Scorer(default_embedder if semantic else None, vectors=vectors)
            return PruneStage(replace_cfg(config, **changes), None, scorer=scorer)

        for msgs in samples:
            req = as_request(msgs[:51])
            db.execute("DELETE FROM text_vectors")
            inline = new_stage(embed_in_background=False)
            times["cold_inline"].append(_timed(inline, req, placeholder))
            db.execute("DELETE FROM text_vectors")
            stage = new_stage()
            times["cold"].append(_timed(stage, req, placeholder))
            times["repeat_same_process"].append(_timed(stage, req, placeholder))
            times["repeat_new_process"].append(_timed(new_stage(), req, placeholder))
            db.execute("DELETE FROM text_vectors")
            # Without persistence a new scorer starts empty whatever came before, so the
            # earlier turns would change nothing: they are only run when vectors persist.
            for end in range(2, 50, 2) if persist else ():
                turn = as_request(msgs[: end + 1])
                if history_tokens(turn) > config.budget_tokens:
                    times["every_turn"].append(_timed(new_stage(), turn, placeholder))
            times["turn_by_turn"].append(_timed(new_stage(), req, placeholder))
            if persist:
                times["every_turn"].append(times["turn_by_turn"][-1])
        db.conn.close()
    if not samples:
        return {}
    return {name: _percentiles(t) for name, t in times.items() if t}


def cache_simulation(convs: list, prune_on: bool, limit: int, semantic: bool) -> dict[str, Any]:
    """Continue conversations turn by turn through the real chain (offline backend, its
    prompt-cache simulation, a clock advancing 60 s a turn); summaries are real ledger
    rows from the offline backend. Returns hit shares and the money."""
    from tars_opt.app import open_app
    from tars_opt.backends.offline import OfflineBackend

    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "c.yaml"
        # Routing and the A/B holdout off: one model, every request optimized, so the
        # figures isolate pruning and prompt caching (a router that switches models per
        # prompt also switches caches; holdout requests are sent uncached).
        cfg_path.write_text(
            "backend: offline\nrouting: {enabled: false}\nexperiment: {holdout: 0}\n"
            f"prune: {{enabled: {str(prune_on).lower()}, semantic: {str(semantic).lower()}}}\n"
        )
        app = open_app(cfg_path, db=Path(tmp) / "t.db")
        now = [1_800_000_000.0]
        backend = OfflineBackend(clock=lambda: now[0])
        opt = app.optimizer(backend=backend, clock=lambda: now[0])
        turns = hits = 0
        read_tokens = prompt_tokens = 0
        for _, msgs in sorted(convs, key=lambda c: -len(c[1]))[:limit]:
            for end in range(2, len(msgs), 2):
                if msgs[end]["role"] != "user":
                    break
                reply = opt.ask(as_request(msgs[: end + 1]))
                now[0] += 60
                if end > 2:
                    turns += 1
                    hits += reply.usage.cache_read > 0
                    read_tokens += reply.usage.cache_read
                    prompt_tokens += reply.usage.prompt_tokens
            now[0] += 3600  # the next conversation starts cold
        spend = app.ledger.spend(0, 1e12)
        summaries = app.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(cost), 0) FROM calls WHERE query_type = 'summary'"
        ).fetchone()
    return {
        "pruning": prune_on,
        "turns": turns,
        "hit_share": hits / turns if turns else 0.0,
        "read_share": read_tokens / prompt_tokens if prompt_tokens else 0.0,
        "cost": spend["cost"],
        "baseline": spend["baseline_cost"],
        "saved_pruning": spend["saved_pruning"],
        "saved_prompt_caching": spend["saved_prompt_caching"],
        "summaries": summaries[0],
        "summary_cost": summaries[1],
    }


def tool_recall(sizes: list[int], scorer: Scorer, k: int) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        tools = catalog(n)
        pairs = prompts(tools)
        stage = ToolStage(ToolsConfig(max_per_request=k), scorer=scorer)
        hits = 0
        for text, needed in pairs:
            out, _ = stage.apply(Request.from_prompt(text, tools=tuple(tools)))
            hits += needed in {t["name"] for t in out.tools}
        rows.append({"tools": n, "prompts": len(pairs), "recall_at_k": hits / len(pairs)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument(
        "--split", choices=["evaluation", "calibration", "all"], default="evaluation"
    )
    parser.add_argument("--semantic", action="store_true", help="score with the embedding model")
    parser.add_argument("--cache-conversations", type=int, default=40)
    parser.add_argument(
        "--no-vector-cache",
        action="store_true",
        help="processing timings with vectors kept in memory only (as before the SQLite cache)",
    )
    parser.add_argument(
        "--processing-only",
        action="store_true",
        help="only the processing timings (no levels, cache simulation or tool recall)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    path = args.data / "sharegpt_v3_partial" / "conversations_first2000.json"
    if not path.is_file():
        sys.exit(f"error: {path} not found: pass --data pointing at the shared data folder")
    config = load_config(REPO / "performance-config.yaml").config
    ctx = replace_cfg(config.prune, semantic=args.semantic)
    scorer = Scorer(default_embedder if args.semantic else None)
    semantic = scorer.semantic  # loads the model now, outside the timings
    convs = load(path, args.split)
    full = not args.processing_only
    result: dict[str, Any] = {
        "split": args.split,
        "conversations": len(convs),
        "scoring": "semantic+lexical" if semantic else "lexical",
        "budget_tokens": ctx.budget_tokens,
        "vector_cache": "memory" if args.no_vector_cache else "sqlite",
        "levels": levels_table(convs, ctx, scorer) if full else [],
        "processing": processing_ms(convs, ctx, semantic, persist=not args.no_vector_cache),
        "prompt_cache": [
            cache_simulation(convs, False, args.cache_conversations, args.semantic),
            cache_simulation(convs, True, args.cache_conversations, args.semantic),
        ]
        if full and args.cache_conversations
        else [],
        "tools": tool_recall([50, 100, 150], scorer, config.tools.max_per_request) if full else [],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"split {result['split']}: {result['conversations']} conversations, scoring "
        f"{result['scoring']}, budget {ctx.budget_tokens} tokens"
    )
    if result["levels"]:
        print("\nlevel       convs  tokens before -> after    cut   median cut  needle ok (n)")
    for r in result["levels"]:
        print(
            f"{r['level']:<10} {r['conversations']:>6}  {r['tokens_before']:>10} -> "
            f"{r['tokens_after']:<10} {r['cut']:6.1%}  {r['median_cut']:9.1%}  "
            f"{r['needle_ok']:7.1%} ({r['needle_checked']})"
        )
    print(
        f"\nprocessing a 50-message history (plan + rewrite, medium; vectors in "
        f"{result['vector_cache']}; a new scorer per request unless said):"
    )
    for name, p in result["processing"].items():
        if p.get("requests"):
            print(
                f"  {name:<20} {p['requests']:>4} requests: "
                f"p50 {p['p50_ms']:7.1f} ms, p95 {p['p95_ms']:7.1f} ms"
            )
    if result["prompt_cache"]:
        print("\nturn-by-turn (offline backend cache simulation):")
    for r in result["prompt_cache"]:
        print(
            f"  pruning {'on ' if r['pruning'] else 'off'}: {r['turns']} turns, cache hit on "
            f"{r['hit_share']:.1%} of turns, {r['read_share']:.1%} of prompt tokens read from "
            f"cache; cost ${r['cost']:.4f} vs baseline ${r['baseline']:.4f} "
            f"(pruning saved ${r['saved_pruning']:.4f} net of {r['summaries']} summaries "
            f"costing ${r['summary_cost']:.4f})"
        )
    if result["tools"]:
        print("\ntool selection (generated catalogue), recall@10:")
    for r in result["tools"]:
        print(f"  {r['tools']:>4} tools, {r['prompts']} prompts: {r['recall_at_k']:.1%}")


def replace_cfg(cfg: PruneConfig, **changes: Any) -> PruneConfig:
    return cfg.model_copy(update=changes)


if __name__ == "__main__":
    main()
