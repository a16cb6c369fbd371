"""The gateway's own counters in the Prometheus text format (GET /tars-opt/metrics)."""

from __future__ import annotations

import threading
from collections import Counter

# Upper bounds (seconds) of the upstream latency histogram's buckets.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Requests by route and source, errors by status, money, and upstream latency."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.errors: Counter[tuple[str, int]] = Counter()
        self.cost = 0.0
        self.saved = 0.0
        self.fail_open = 0
        self._buckets = [0] * len(BUCKETS)
        self._latency_sum = 0.0
        self._latency_count = 0

    def request(self, route: str, source: str) -> None:
        with self._lock:
            self.requests[(route, source)] += 1

    def error(self, route: str, status: int) -> None:
        with self._lock:
            self.errors[(route, status)] += 1

    def money(self, cost: float, saved: float) -> None:
        with self._lock:
            self.cost += cost
            self.saved += saved

    def upstream_latency(self, seconds: float) -> None:
        with self._lock:
            self._latency_sum += seconds
            self._latency_count += 1
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self._buckets[i] += 1

    def render(self, backlog: int = 0) -> str:
        """The exposition text."""
        p = "tars_opt_gateway_"
        with self._lock:
            lines = [
                f"# HELP {p}requests_total Requests answered, by route and source.",
                f"# TYPE {p}requests_total counter",
            ]
            for (route, source), n in sorted(self.requests.items()):
                lines.append(f'{p}requests_total{{route="{route}",source="{source}"}} {n}')
            lines += [
                f"# HELP {p}errors_total Error answers (upstream's or the gateway's), by status.",
                f"# TYPE {p}errors_total counter",
            ]
            for (route, status), n in sorted(self.errors.items()):
                lines.append(f'{p}errors_total{{route="{route}",status="{status}"}} {n}')
            lines += [
                f"# HELP {p}cost_usd_total What the answered requests cost, in USD.",
                f"# TYPE {p}cost_usd_total counter",
                f"{p}cost_usd_total {self.cost:.9f}",
                f"# HELP {p}saved_usd_total Baseline minus actual cost, in USD.",
                f"# TYPE {p}saved_usd_total counter",
                f"{p}saved_usd_total {self.saved:.9f}",
                f"# HELP {p}fail_open_total Requests sent unoptimized because a stage or the "
                "store failed.",
                f"# TYPE {p}fail_open_total counter",
                f"{p}fail_open_total {self.fail_open}",
                f"# HELP {p}ledger_backlog Ledger writes waiting for the store.",
                f"# TYPE {p}ledger_backlog gauge",
                f"{p}ledger_backlog {backlog}",
                f"# HELP {p}upstream_latency_seconds Time to the upstream's response headers.",
                f"# TYPE {p}upstream_latency_seconds histogram",
            ]
            for bound, n in zip(BUCKETS, self._buckets, strict=True):
                lines.append(f'{p}upstream_latency_seconds_bucket{{le="{bound}"}} {n}')
            lines.append(f'{p}upstream_latency_seconds_bucket{{le="+Inf"}} {self._latency_count}')
            lines.append(f"{p}upstream_latency_seconds_sum {self._latency_sum:.6f}")
            lines.append(f"{p}upstream_latency_seconds_count {self._latency_count}")
        return "\n".join(lines) + "\n"
