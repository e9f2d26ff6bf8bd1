"""Latency percentiles and per-scenario summaries (pure: no I/O, no clock)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

PERCENTILES = (50.0, 90.0, 99.0)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile of already sorted values, interpolating between ranks.

    Linear interpolation (numpy's default) rather than nearest rank, so that p99 of a short
    smoke run still moves with the data instead of jumping between two samples. An empty
    sample has no percentile: NaN, which the report prints as a dash.
    """
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"percentile must be within 0..100, not {pct}")
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    rank = (len(sorted_values) - 1) * pct / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(sorted_values[low])
    weight = rank - low
    return float(sorted_values[low] * (1.0 - weight) + sorted_values[high] * weight)


def latency_summary(latencies_s: Iterable[float]) -> dict[str, float]:
    """p50/p90/p99, mean and max in milliseconds."""
    ordered = sorted(latencies_s)
    summary = {f"p{pct:g}_ms": percentile(ordered, pct) * 1000.0 for pct in PERCENTILES}
    summary["mean_ms"] = (sum(ordered) / len(ordered) * 1000.0) if ordered else math.nan
    summary["max_ms"] = (ordered[-1] * 1000.0) if ordered else math.nan
    return summary


def is_success(status: str) -> bool:
    """2xx (or ``ok``: a committed replayed order) is success; anything else (4xx, 5xx,
    ``conn``, ``timeout``, an SQLSTATE) is an error."""
    return status == "ok" or (status.isdigit() and 200 <= int(status) < 300)


@dataclass
class Sample:
    """What one load run collected inside its measured window."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)

    def record(self, operation: str, status: str, latency_s: float) -> None:
        self.statuses[status] += 1
        self.by_operation[operation] += 1
        if is_success(status):
            self.latencies_s.append(latency_s)

    @property
    def successes(self) -> int:
        return sum(count for status, count in self.statuses.items() if is_success(status))

    @property
    def errors(self) -> dict[str, int]:
        return {s: c for s, c in sorted(self.statuses.items()) if not is_success(s)}


def summarise(sample: Sample, duration_s: float) -> dict[str, Any]:
    """Throughput (successful requests per second), latency of successes, errors by status."""
    return {
        "requests": sum(sample.statuses.values()),
        "successes": sample.successes,
        "throughput_per_s": sample.successes / duration_s if duration_s > 0 else math.nan,
        "latency": latency_summary(sample.latencies_s),
        "errors": sample.errors,
        "error_count": sum(sample.errors.values()),
        "statuses": dict(sorted(sample.statuses.items())),
        "operations": dict(sorted(sample.by_operation.items())),
    }
