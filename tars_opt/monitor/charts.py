"""PNG charts for the reports, drawn with matplotlib (Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tars_opt.accounting.money import usd
from tars_opt.types import STRATEGIES

COLORS = {
    "cost": "#6b7280",
    "pruning": "#60a5fa",
    "routing": "#34d399",
    "prompt_caching": "#fbbf24",
    "batching": "#a78bfa",
    "response_cache": "#f87171",
}
LABELS = {
    "cost": "actual cost",
    "pruning": "saved: pruning",
    "routing": "saved: routing",
    "prompt_caching": "saved: prompt caching",
    "batching": "saved: batching",
    "response_cache": "saved: response cache",
}


def _pyplot() -> Any:
    # Imported here: matplotlib costs ~0.3 s and only reports draw.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _days(per_day: list[dict[str, Any]]) -> list[str]:
    return [d["day"][5:] for d in per_day]  # MM-DD


def usd_ticks(locs: list[float]) -> list[str]:
    """Labels for y-axis ticks at `locs`: the fewest decimals (2 to 8) that show every tick
    exactly, so an axis of small amounts reads $0.0025, $0.0050 rather than $0.00 each."""
    tolerance = 1e-9 * max((abs(v) for v in locs), default=0.0) + 1e-15  # float noise
    decimals = 2
    while decimals < 8 and any(abs(v - round(v, decimals)) > tolerance for v in locs):
        decimals += 1
    return [f"${v:,.{decimals}f}" for v in locs]


def _usd_formatter() -> Any:
    from matplotlib.ticker import Formatter

    class UsdFormatter(Formatter):
        def format_ticks(self, values: list[float]) -> list[str]:
            return usd_ticks(list(values))  # one precision for the whole axis

        def __call__(self, x: float, pos: int | None = None) -> str:
            return usd_ticks([x])[0]

    return UsdFormatter()


def savings_figure(
    per_day: list[dict[str, Any]], title: str, *, baseline_daily: float | None = None
) -> Any:
    """Stacked bars per day: the actual cost, then each strategy's saving on top, so a
    bar's height is what the calls would have cost as sent; `baseline_daily` (the report's
    baseline) as a dashed line. Negative savings (escalations) are left out of the stack;
    the report's table shows them."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    x = list(range(len(per_day)))
    bottom = [0.0] * len(per_day)
    for key in ("cost", *STRATEGIES):
        col = "cost" if key == "cost" else f"saved_{key}"
        values = [max(float(d.get(col) or 0), 0.0) for d in per_day]
        if key != "cost" and not any(values):
            continue
        ax.bar(x, values, bottom=bottom, color=COLORS[key], label=LABELS[key], width=0.7)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    _baseline_line(ax, baseline_daily)
    _finish(ax, x, per_day, title, "USD per day")
    return fig


def savings_chart(
    per_day: list[dict[str, Any]],
    path: Path,
    title: str,
    *,
    baseline_daily: float | None = None,
) -> Path:
    """savings_figure as a PNG at `path`."""
    return _save(savings_figure(per_day, title, baseline_daily=baseline_daily), path)


def cost_figure(
    per_day: list[dict[str, Any]],
    daily_budget: float,
    title: str,
    *,
    baseline_daily: float | None = None,
    target_daily: float | None = None,
) -> Any:
    """Cost per day as bars against lines for the daily budget, target and baseline."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    x = list(range(len(per_day)))
    costs = [float(d.get("cost") or 0) for d in per_day]
    colors = ["#dc2626" if c > daily_budget else COLORS["cost"] for c in costs]
    ax.bar(x, costs, color=colors, width=0.7, label="actual cost")
    ax.axhline(daily_budget, color="#dc2626", linestyle="-", linewidth=1.5,
               label=f"budget pace {usd(daily_budget)}/day")  # fmt: skip
    _baseline_line(ax, baseline_daily)
    if target_daily is not None:
        ax.axhline(target_daily, color="#059669", linestyle=":", linewidth=1.8,
                   label=f"target {usd(target_daily)}/day")  # fmt: skip
    _finish(ax, x, per_day, title, "USD per day")
    return fig


def cost_vs_budget_chart(
    per_day: list[dict[str, Any]],
    daily_budget: float,
    path: Path,
    title: str,
    *,
    baseline_daily: float | None = None,
    target_daily: float | None = None,
) -> Path:
    """cost_figure as a PNG at `path`."""
    fig = cost_figure(
        per_day, daily_budget, title, baseline_daily=baseline_daily, target_daily=target_daily
    )
    return _save(fig, path)


def _baseline_line(ax: Any, baseline_daily: float | None) -> None:
    if baseline_daily is not None:
        ax.axhline(baseline_daily, color="#111827", linestyle="--", linewidth=1.2,
                   label=f"baseline {usd(baseline_daily)}/day")  # fmt: skip


def _finish(ax: Any, x: list[int], per_day: list[dict[str, Any]], title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11)
    ax.set_ylabel(ylabel)
    labels = _days(per_day)
    step = max(1, len(labels) // 14)  # at most ~14 date labels
    ax.set_xticks(x[::step], labels[::step], rotation=45, ha="right", fontsize=8)
    ax.yaxis.set_major_formatter(_usd_formatter())
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if not any(d.get("calls") for d in per_day):
        ax.text(0.5, 0.5, "no calls in this period", ha="center", transform=ax.transAxes)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    # No creation time or version in the file: the same data gives the same bytes.
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path
