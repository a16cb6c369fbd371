"""How the CLI and the Markdown report show simulation results. Formatting only."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tars_opt.accounting.money import usd
from tars_opt.errors import ReportError
from tars_opt.monitor.report import markdown_table
from tars_opt.plural import counted
from tars_opt.sim.simulate import SimResult
from tars_opt.store.files import atomic_write_text
from tars_opt.types import STRATEGIES


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def headline(r: SimResult) -> str:
    """The one line that answers "what would I save?"."""
    share = pct(r.saved_share)
    rel = f", quality {pct(r.relative_quality)} of baseline" if r.relative_quality else ""
    return (
        f"{counted(r.calls, 'call')}: baseline {usd(r.baseline_cost)} -> optimized {usd(r.cost)}, "
        f"saved {usd(r.saved)} ({share}){rel}"
    )


def rows(r: SimResult) -> list[tuple[str, str]]:
    """The summary as (label, value) pairs, shared by the terminal and the report."""
    mix = ", ".join(f"{m['model']} {m['calls']}" for m in r.model_mix) or "—"
    out = [
        (
            "workload",
            f"{r.workload} ({counted(r.calls, 'call')}, {_when(r.start)} to {_when(r.end)} UTC)",
        ),
        ("config", r.config),
        ("stages", " -> ".join(r.stages) or "none"),
        ("baseline cost", usd(r.baseline_cost)),
        ("optimized cost", usd(r.cost)),
        ("saved", f"{usd(r.saved)} ({pct(r.saved_share)})"),
    ]
    out += [(f"  by {s.replace('_', ' ')}", usd(r.saved_by_strategy.get(s, 0.0)))
            for s in STRATEGIES]  # fmt: skip
    out += [
        ("model calls", mix),
        ("cache hits", f"exact {pct(r.rate(r.exact_hits))} ({r.exact_hits}), "
                       f"semantic {pct(r.rate(r.semantic_hits))} ({r.semantic_hits})"),
        ("deferred", f"{pct(r.rate(r.deferred))} ({r.deferred}), {r.drains} drain run(s)"),
        ("escalations", f"{r.escalations} (cost {usd(r.escalation_cost)})"),
        ("agent loops", loops(r)),
        ("A/B holdout", f"{counted(r.holdout, 'call')} sent unoptimized (experiment.holdout)"),
        ("quality", pct(r.relative_quality) + (f" of baseline, {r.labelled} labelled prompts"
                                               if r.labelled else "")),
        ("answered", f"{r.answered} of {r.calls} (refused {r.refused}, errors {r.errors})"),
        ("wall time", f"{r.wall_s:.1f} s"),
    ]  # fmt: skip
    return out


def loops(r: SimResult) -> str:
    """Replayed conversations and captured requests, and their prompt-cache tokens."""
    if not r.loop_calls:
        return "none (no conversation or request records)"
    writes = r.loop_cache_write_5m + r.loop_cache_write_1h
    return (
        f"{counted(r.loop_calls, 'call')}, {counted(r.conversations, 'conversation')}; "
        f"cache read {r.loop_cache_read:,} / written {writes:,} tokens "
        f"(1h: {r.loop_cache_write_1h:,})"
    )


def summary(console: Console, r: SimResult) -> None:
    table = Table("", "", title="tars-opt simulate (offline, simulated clock)", show_header=False)
    for label, value in rows(r):
        table.add_row(label, value)
    console.print(table)
    for note in r.notes:
        console.print(f"note: {note}", style="yellow", markup=False)
    console.print(headline(r), style="bold", markup=False)


def compare(console: Console, a: SimResult, b: SimResult) -> None:
    table = Table("", a.config, b.config, title=f"simulate --compare on {a.workload}")
    for (label, va), (_, vb) in zip(rows(a), rows(b), strict=True):
        if label not in ("workload", "config", "wall time"):
            table.add_row(label, va, vb)
    console.print(table)
    for r in (a, b):
        console.print(f"{r.config}: {headline(r)}", markup=False)


def write_markdown(results: list[SimResult], path: Path, now: float) -> Path:
    """A Markdown report of one simulation (or of a comparison), written atomically."""
    first = results[0]
    title = "Simulation" if len(results) == 1 else "Simulation: comparison"
    lines = [
        f"# {title}: {first.workload}",
        "",
        f"Generated {_when(now)} UTC by `tars-opt simulate`. Offline backend, simulated clock: "
        "token counts are estimates and every cost is computed from them with the config's "
        "prices; quality counts a labelled prompt as good when the tier that answered it "
        "(or, for a cache hit, the answer it served) was labelled good.",
        "",
        "## Summary",
        "",
    ]
    head = ["", *(r.config for r in results)]
    table = [[label, *(dict(rows(r))[label] for r in results)] for label, _ in rows(first)]
    lines += markdown_table(head, [row for row in table if row[0] not in ("config",)])
    lines += ["", "## Model mix", ""]
    for r in results:
        lines += [f"**{r.config}**", ""]
        lines += markdown_table(
            ["model", "calls", "cost"],
            [[m["model"], str(m["calls"]), usd(m["cost"])] for m in r.model_mix],
        )
        lines.append("")
    for r in results:
        lines += [f"- {r.config}: {headline(r)}"]
        lines += [f"  - note: {n}" for n in r.notes]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "\n".join(lines) + "\n")
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror}; use --out") from None
    return path
