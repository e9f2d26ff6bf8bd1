"""Prometheus metrics: what happened (counters and histograms, kept by each process) and
what is (gauges read from the database when scraped).

Counters are incremented where the thing happens and add up across server processes:
with ``PROMETHEUS_MULTIPROC_DIR`` set (``stockflow serve --workers N`` sets it), every
process writes its values to files there and a scrape of any one of them sums them all.
State that lives in the database (backorders, purchase orders, stock-outs, outbox lag,
dead letters, the worker's heartbeat) is read from it at scrape time instead, so every
process reports the same truth and nothing is double counted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextvars import ContextVar, Token
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from stockflow.observability.state import StateSnapshot

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

# In multi-process mode the metrics below write to files in that directory as they are
# defined: a directory named but not yet made would stop the import itself.
if os.environ.get(MULTIPROCESS_ENV):
    os.makedirs(os.environ[MULTIPROCESS_ENV], exist_ok=True)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)

# HTTP
HTTP_REQUESTS = Counter(
    "stockflow_http_requests_total",
    "HTTP requests served, by route template, method and status class (2xx..5xx).",
    ["method", "route", "status_class"],
)
HTTP_DURATION = Histogram(
    "stockflow_http_request_duration_seconds",
    "Time to serve an HTTP request, from its first byte in to its last byte out.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)

RATE_LIMITED = Counter(
    "stockflow_rate_limited_total",
    "Requests refused with 429 for being over a rate limit, by policy (per-key, per-address).",
    ["policy"],
)

# Database
DB_STATEMENTS = Histogram(
    "stockflow_db_statements_per_request",
    "SQL statements one HTTP request sent to the database.",
    ["method", "route"],
    buckets=(0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89),
)
DB_POOL = Gauge(
    "stockflow_db_pool_connections",
    "Pooled database connections by state (in_use, idle), summed over live processes.",
    ["state"],
    multiprocess_mode="livesum",
)

# Business
ORDERS_PLACED = Counter(
    "stockflow_orders_placed_total",
    "Orders placed, by outcome: accepted, backordered, rejected_insufficient_stock, invalid.",
    ["outcome"],
)
UNITS_RESERVED = Counter(
    "stockflow_units_reserved_total",
    "Units reserved for orders: when placed, and when a receipt fills a backordered line.",
)
RECEIPTS = Counter(
    "stockflow_receipts_total",
    "Goods receipts recorded against purchase orders.",
)
UNITS_RECEIVED = Counter(
    "stockflow_units_received_total",
    "Units received from suppliers.",
)
STOCK_OUTS = Counter(
    "stockflow_stock_outs_total",
    "Times an order or an adjustment took a product's available stock at the default "
    "location to zero.",
)
PAYMENTS = Counter(
    "stockflow_payments_total",
    "Payments by provider (manual, stripe) and outcome (succeeded, failed).",
    ["provider", "outcome"],
)
REFUNDS = Counter(
    "stockflow_refunds_total",
    "Refunds by outcome: succeeded, or failed (the provider refused or gave up).",
    ["outcome"],
)

# Background work
DELIVERIES = Counter(
    "stockflow_deliveries_total",
    "Delivery attempts by target (webhook, supplier, email) and outcome: delivered, "
    "retrying (failed, will be tried again) and dead (failed for good).",
    ["target_type", "outcome"],
)
JOB_DURATION = Histogram(
    "stockflow_job_duration_seconds",
    "Time one round of a background task took. Labelled `task`, not `job`: Prometheus "
    "gives `job` to the scrape.",
    ["task"],
    buckets=JOB_BUCKETS,
)
JOB_FAILURES = Counter(
    "stockflow_job_failures_total",
    "Rounds of a background task that failed (retried at its next interval).",
    ["task"],
)
WORKER_HEARTBEATS = Counter(
    "stockflow_worker_heartbeats_total",
    "Heartbeats this deployment's workers wrote to the database.",
)


# Probes and scrapes, every few seconds: counted, but neither logged nor traced.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "<unmatched>"


class RequestStats:
    """What one request did, counted as it goes (statements sent, by either path)."""

    __slots__ = ("statements",)

    def __init__(self) -> None:
        self.statements = 0


_request_stats: ContextVar[RequestStats | None] = ContextVar("request_stats", default=None)


def start_request() -> tuple[RequestStats, Token[RequestStats | None]]:
    stats = RequestStats()
    return stats, _request_stats.set(stats)


def end_request(token: Token[RequestStats | None]) -> None:
    _request_stats.reset(token)


def count_statement() -> None:
    stats = _request_stats.get()
    if stats is not None:
        stats.statements += 1


_COMMITTED = "stockflow.count_on_commit"


def count_on_commit(session: Any, counter: Counter, amount: float = 1) -> None:
    """Add ``amount`` to ``counter`` once ``session``'s transaction commits, never if it
    rolls back: a failed commit and its retry must not count twice."""
    if amount:
        session.info.setdefault(_COMMITTED, []).append((counter, amount))


def committed(session: Any) -> None:
    """Called by `Database` after a successful commit."""
    for counter, amount in session.info.pop(_COMMITTED, ()):
        counter.inc(amount)


def discarded(session: Any) -> None:
    session.info.pop(_COMMITTED, None)


def status_class(status: int) -> str:
    return f"{status // 100}xx"


# A request's series, by (method, route, status): resolving labels takes a lock and a
# dictionary walk per metric, which every request would otherwise pay again.
_request_series: dict[tuple[str, str, int], tuple[Counter, Histogram, Histogram]] = {}


def observe_request(
    *, method: str, route: str, status: int, seconds: float, statements: int
) -> None:
    key = (method, route, status)
    series = _request_series.get(key)
    if series is None:
        series = (
            HTTP_REQUESTS.labels(method, route, status_class(status)),
            HTTP_DURATION.labels(method, route),
            DB_STATEMENTS.labels(method, route),
        )
        _request_series[key] = series
    requests, duration, statements_histogram = series
    requests.inc()
    duration.observe(seconds)
    statements_histogram.observe(statements)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_ENV) or None


class StateCollector(Collector):
    """The database-derived gauges, from a snapshot read just before the scrape."""

    def __init__(self, snapshot: StateSnapshot | None) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield _gauge(
            "stockflow_state_up",
            "1 when the database state below could be read for this scrape, else 0.",
            0 if self._snapshot is None else 1,
        )
        if self._snapshot is not None:
            yield from state_metrics(self._snapshot)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _labelled(
    name: str, documentation: str, label: str, values: Iterable[tuple[str, float]]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in values:
        family.add_metric([key], value)
    return family


def state_metrics(snapshot: StateSnapshot) -> Iterator[Metric]:
    yield _gauge(
        "stockflow_backorders_open",
        "Order lines waiting for stock (backordered units not yet allocated).",
        snapshot.backorders_open,
    )
    yield _gauge(
        "stockflow_backordered_units",
        "Units ordered by customers and not yet allocated.",
        snapshot.backordered_units,
    )
    yield _labelled(
        "stockflow_purchase_orders",
        "Purchase orders by state.",
        "state",
        sorted(snapshot.purchase_orders.items()),
    )
    yield _gauge(
        "stockflow_purchase_orders_overdue",
        "Open purchase orders past their expected delivery date.",
        snapshot.purchase_orders_overdue,
    )
    yield _gauge(
        "stockflow_products_out_of_stock",
        "Active products with no available stock at the default location.",
        snapshot.products_out_of_stock,
    )
    yield _gauge(
        "stockflow_products_low_stock",
        "Active products at or below their low-stock threshold, but not out of stock.",
        snapshot.products_low_stock,
    )
    yield _gauge(
        "stockflow_outbox_pending_events",
        "Events written but not yet dispatched to their deliveries.",
        snapshot.outbox_pending_events,
    )
    yield _gauge(
        "stockflow_outbox_oldest_age_seconds",
        "Age of the oldest event not yet dispatched (0 when none waits): the relay's lag.",
        snapshot.outbox_oldest_age_seconds,
    )
    yield _labelled(
        "stockflow_deliveries_pending",
        "Deliveries waiting for a first or further attempt, by target.",
        "target_type",
        sorted(snapshot.deliveries_pending.items()),
    )
    yield _gauge(
        "stockflow_deliveries_oldest_pending_age_seconds",
        "Age of the oldest delivery still pending (0 when none).",
        snapshot.deliveries_oldest_pending_age_seconds,
    )
    yield _labelled(
        "stockflow_dead_letters",
        "Deliveries that failed for good and wait for an operator, by target.",
        "target_type",
        sorted(snapshot.dead_letters.items()),
    )
    yield _gauge(
        "stockflow_webhook_endpoints_disabled",
        "Webhook endpoints disabled, by an operator or after failing for too long.",
        snapshot.webhook_endpoints_disabled,
    )
    yield _gauge(
        "stockflow_orders_awaiting_payment",
        "Orders placed and not yet paid.",
        snapshot.orders_awaiting_payment,
    )
    if snapshot.worker_heartbeat_age_seconds is not None:
        yield _gauge(
            "stockflow_worker_heartbeat_age_seconds",
            "Seconds since the most recent heartbeat of any worker (absent: none ever ran).",
            snapshot.worker_heartbeat_age_seconds,
        )
    yield _gauge(
        "stockflow_workers_alive",
        "Workers whose last heartbeat is recent (within three heartbeat intervals).",
        snapshot.workers_alive,
    )


def exposition(snapshot: StateSnapshot | None) -> bytes:
    """The text a scrape answers: every process's counters, and the database's state."""
    directory = multiprocess_dir()
    if directory is not None:
        _forget_dead_processes(directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    state = CollectorRegistry()
    state.register(StateCollector(snapshot))
    return body + generate_latest(state)


def _forget_dead_processes(directory: str) -> None:
    """Drop the live gauges of processes that died without saying so (killed by the
    supervisor or the kernel), which would otherwise stay in the pool's sum."""
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            process_exited(int(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_exited(pid: int) -> None:
    """Drop a finished process's live gauges (its counters stay in the sum)."""
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
