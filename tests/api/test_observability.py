"""Metrics, traces and logs, observed from outside: what `/metrics` shows after a scripted
workload, the trace of one order into the worker's delivery, and what the logs never hold."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import select, update

from stockflow.adapters.webhook_http import HttpWebhookSender
from stockflow.app import create_app
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.db.models import Delivery
from stockflow.observability import metrics, tracing
from stockflow.observability.logging import configure_logging
from stockflow.webhooks.secrets import SecretBox
from stockflow.workers.relay import Relay, RelaySettings
from stockflow.workers.runner import Heartbeat, _every
from tests.api.test_events import reject_product
from tests.backorders import backorder_product, purchase_orders, receive
from tests.conftest import Keys, offline_resolver
from tests.loopback import free_port, serving
from tests.receiver import Answer, Received, running_receiver

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def relay_for(settings: Settings, database: Database) -> Relay:
    return Relay(
        database,
        HttpWebhookSender(timeout_seconds=5, allow_private=True),
        SecretBox(settings.secret_key.get_secret_value()),
        settings=RelaySettings(lease_seconds=30),
        jitter=lambda: 1.0,
    )


async def order(client: httpx.AsyncClient, keys: Keys, lines: dict[str, int]) -> httpx.Response:
    return await client.post(
        "/v1/orders",
        json={
            "customer_id": keys.customer_id,
            "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines.items()],
        },
        headers=keys.staff,
    )


async def failing(_: Received) -> Answer:
    return 500, {}


async def test_metrics_count_a_scripted_workload(
    dev_app: FastAPI, client: httpx.AsyncClient, keys: Keys, settings: Settings, database: Database
) -> None:
    async with running_receiver(failing) as receiver:
        response = await client.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url, "events": ["order.created"]},
            headers=keys.admin,
        )
        assert response.status_code == 201, response.text
        await reject_product(client, keys, "MUG-REJECT", stock=5, low_stock_threshold=4)
        await backorder_product(client, keys, "MUG-BACK", stock=1)
        before = await scrape(client)

        accepted = await order(client, keys, {"MUG-REJECT": 2})
        backordered = await order(client, keys, {"MUG-BACK": 3})
        rejected = await order(client, keys, {"MUG-REJECT": 100})
        invalid = await order(client, keys, {"NO-SUCH-SKU": 1})
        statuses = [r.status_code for r in (accepted, backordered, rejected, invalid)]
        assert statuses == [201, 201, 409, 422]

        waiting = await scrape(client)
        placed = "stockflow_orders_placed_total"
        for outcome in ("accepted", "backordered", "rejected_insufficient_stock", "invalid"):
            assert grew(before, waiting, placed, outcome=outcome) == 1, outcome
        # 2 of the reject product, and the 1 unit there was of the backorder product.
        assert grew(before, waiting, "stockflow_units_reserved_total") == 3
        assert grew(before, waiting, "stockflow_stock_outs_total") == 1
        assert value(waiting, "stockflow_backorders_open") == 1
        assert value(waiting, "stockflow_backordered_units") == 2
        assert value(waiting, "stockflow_products_out_of_stock") == 1
        assert value(before, "stockflow_products_low_stock") == 0
        assert value(waiting, "stockflow_products_low_stock") == 1  # 3 left, threshold 4
        assert value(waiting, "stockflow_purchase_orders", state="submitted") == 1
        assert value(waiting, "stockflow_outbox_pending_events") >= 2
        assert value(waiting, "stockflow_state_up") == 1
        http = "stockflow_http_requests_total"
        route = {"method": "POST", "route": "/v1/orders"}
        assert grew(before, waiting, http, **route, status_class="2xx") == 2
        assert grew(before, waiting, http, **route, status_class="4xx") == 2
        latency = "stockflow_http_request_duration_seconds_count"
        assert grew(before, waiting, latency, **route) == 4
        statements = "stockflow_db_statements_per_request_sum"
        assert grew(before, waiting, statements, **route) >= 4

        (po,) = await purchase_orders(client, keys)
        await receive(client, keys, po["id"], {"MUG-BACK": po["lines"][0]["quantity"]})
        relay = relay_for(settings, database)
        try:
            attempted = await relay.run_once()
        finally:
            await relay.aclose()
        assert attempted == 2  # order.created of the two orders placed
        assert len(receiver.received) == 2

    after = await scrape(client)
    assert grew(before, after, "stockflow_receipts_total") == 1
    assert grew(before, after, "stockflow_units_received_total") == po["lines"][0]["quantity"]
    # The receipt filled the 2 backordered units.
    assert grew(waiting, after, "stockflow_units_reserved_total") == 2
    assert value(after, "stockflow_backorders_open") == 0
    assert value(after, "stockflow_backordered_units") == 0
    assert value(after, "stockflow_purchase_orders", state="received") == 1
    deliveries = "stockflow_deliveries_total"
    assert grew(before, after, deliveries, target_type="webhook", outcome="retrying") == 2
    assert grew(before, after, deliveries, target_type="webhook", outcome="delivered") == 0
    assert value(after, "stockflow_deliveries_pending", target_type="webhook") == 2
    assert value(after, "stockflow_outbox_pending_events") == 0
    assert value(after, "stockflow_outbox_oldest_age_seconds") == 0
    assert value(after, "stockflow_dead_letters", target_type="webhook") == 0


async def test_payments_and_refunds_are_counted(
    app: FastAPI, client: httpx.AsyncClient, keys: Keys, settings: Settings
) -> None:
    app.state.settings = settings.model_copy(update={"payments": "manual"})
    await reject_product(client, keys, "MUG-PAID", stock=5)
    before = await scrape(client)
    placed = await order(client, keys, {"MUG-PAID": 1})
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    unpaid = await scrape(client)
    paid = await client.post(
        f"/v1/orders/{order_id}/payments",
        json={"amount": placed.json()["total"], "reference": "bank transfer 1"},
        headers=keys.staff,
    )
    assert paid.status_code == 201, paid.text
    awaiting = await scrape(client)
    refunded = await client.post(
        f"/v1/orders/{order_id}/refunds",
        json={"amount": 100, "reason": "chipped"},
        headers=keys.staff,
    )
    assert refunded.status_code == 201, refunded.text
    after = await scrape(client)
    payments = "stockflow_payments_total"
    assert grew(before, after, payments, provider="manual", outcome="succeeded") == 1
    assert grew(before, after, "stockflow_refunds_total", outcome="succeeded") == 1
    assert value(unpaid, "stockflow_orders_awaiting_payment") == 1
    assert value(awaiting, "stockflow_orders_awaiting_payment") == 0


async def test_metrics_can_require_a_token(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    app.state.settings = settings.model_copy(update={"metrics_token": SecretStr("scrape-me-123")})
    refused = await client.get("/metrics")
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    allowed = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me-123"})
    assert (refused.status_code, wrong.status_code, allowed.status_code) == (401, 401, 200)
    assert refused.headers["content-type"] == "application/problem+json"
    assert "stockflow_http_requests_total" in allowed.text


async def test_readiness_reports_the_worker_heartbeat_and_outbox_lag(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    quiet = (await client.get("/readyz")).json()
    assert quiet["worker_heartbeat_age_seconds"] is None
    assert (quiet["workers_alive"], quiet["outbox_lag_seconds"]) == (0, 0)

    heartbeat = Heartbeat(database)
    await heartbeat.beat()
    await reject_product(client, keys, "MUG-READY", stock=3)
    await order(client, keys, {"MUG-READY": 1})
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert 0 <= body["worker_heartbeat_age_seconds"] < 60
    assert body["workers_alive"] == 1
    assert body["outbox_lag_seconds"] > 0
    samples = await scrape(client)
    assert 0 <= value(samples, "stockflow_worker_heartbeat_age_seconds") < 60
    assert value(samples, "stockflow_workers_alive") == 1

    await heartbeat.stop()
    assert (await client.get("/readyz")).json()["workers_alive"] == 0


# --- operations as code ---------------------------------------------------------------

OPS = ROOT / "ops"
_METRIC_NAME = re.compile(r"\bstockflow_[a-z0-9_]+")


def _names_in_ops() -> set[str]:
    names: set[str] = set()
    for path in [*OPS.rglob("*.yml"), *OPS.rglob("*.json")]:
        names |= set(_METRIC_NAME.findall(path.read_text()))
    return names


def _exposed(samples: Samples, text: str) -> set[str]:
    """Every series name the exposition can carry, including those of labelled metrics
    that have no sample yet (their HELP and TYPE lines are there)."""
    names = {name for name, _labels in samples}
    for family in text_string_to_metric_families(text):
        if family.type == "counter":
            names |= {family.name + "_total"}
        elif family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
        else:
            names.add(family.name)
    return names


async def test_every_metric_in_the_alerts_and_dashboard_exists(
    client: httpx.AsyncClient, database: Database
) -> None:
    await Heartbeat(database).beat()
    response = await client.get("/metrics")
    exposed = _exposed(await scrape(client), response.text)
    used = _names_in_ops()
    assert len(used) > 20
    assert sorted(used - exposed) == []


def test_the_dashboard_is_grafana_json_with_panels() -> None:
    dashboard = json.loads((OPS / "grafana" / "stockflow-dashboard.json").read_text())
    assert dashboard["title"]
    queried = [panel for panel in dashboard["panels"] if panel.get("targets")]
    assert len(queried) >= 10
    for panel in queried:
        exprs = [target["expr"] for target in panel["targets"]]
        assert any(_METRIC_NAME.search(e) or "stockflow:" in e for e in exprs), panel["title"]


def test_every_alert_has_a_runbook_that_exists() -> None:
    rules = (OPS / "prometheus" / "stockflow-alerts.yml").read_text()
    alerts = re.findall(r"^\s*- alert:\s*(\S+)", rules, re.MULTILINE)
    runbooks = re.findall(r"runbook_url:\s*\"?([^\s\"]+)", rules)
    assert len(alerts) >= 9
    assert len(runbooks) == len(alerts)
    for runbook in runbooks:
        assert (ROOT / runbook).is_file(), runbook


# --- tracing --------------------------------------------------------------------------


@pytest.fixture
async def traced(
    settings: Settings, database: Database
) -> AsyncIterator[tuple[FastAPI, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(settings, database=database, tracer_provider=provider)
    app.state.webhooks = replace(app.state.webhooks, resolver=offline_resolver, allow_private=True)
    try:
        yield app, exporter
    finally:
        tracing.uninstrument()


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Everything the application logs, as it renders it."""
    captured = io.StringIO()
    original = sys.stderr
    sys.stderr = captured
    try:
        yield captured
    finally:
        sys.stderr = original
        structlog.reset_defaults()


def _by_trace(spans: list[ReadableSpan], trace_id: int) -> list[ReadableSpan]:
    return [span for span in spans if span.context.trace_id == trace_id]


async def test_one_order_is_one_trace_from_the_request_to_the_webhook_delivery(
    traced: tuple[FastAPI, InMemorySpanExporter],
    keys: Keys,
    settings: Settings,
    database: Database,
) -> None:
    app, exporter = traced
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        running_receiver() as receiver,
        httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as client,
    ):
        response = await client.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url, "events": ["order.created"]},
            headers=keys.admin,
        )
        assert response.status_code == 201, response.text
        await reject_product(client, keys, "MUG-TRACE", stock=5)
        exporter.clear()
        with captured_logs() as logs:
            placed = await order(client, keys, {"MUG-TRACE": 1})
        assert placed.status_code == 201, placed.text
        await app.state.key_usage.drain()  # its own write, not the worker's
        relay = relay_for(settings, database)
        before_relay = len(exporter.get_finished_spans())
        try:
            # As the worker runs it: its polling untraced, each delivery traced.
            with tracing.quiet():
                assert await relay.run_once() == 1
        finally:
            await relay.aclose()
        by_relay = list(exporter.get_finished_spans())[before_relay:]
        await app.state.key_usage.drain()

    spans = list(exporter.get_finished_spans())
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER]
    assert server.name == "POST /v1/orders"
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/v1/orders"
    trace_id = server.context.trace_id
    in_trace = _by_trace(spans, trace_id)
    names = {span.name for span in in_trace}
    assert {"place_order", "reserve_stock"} <= names
    sql = [s for s in in_trace if s.attributes and "db.statement" in s.attributes]
    assert sql, names
    (delivery,) = [s for s in spans if s.name == "deliver_webhook"]
    assert delivery.context.trace_id == trace_id
    # The delivery hangs under the request, and its HTTP call under the delivery.
    assert delivery.parent is not None
    assert delivery.parent.span_id in {span.context.span_id for span in in_trace}
    under_delivery = [
        s for s in spans if s.parent is not None and s.parent.span_id == delivery.context.span_id
    ]
    assert any(s.kind is SpanKind.CLIENT and s.name == "POST" for s in under_delivery), [
        (s.name, s.kind) for s in under_delivery
    ]
    # The worker's polling (claiming, dispatching) made no spans of its own.
    assert delivery in by_relay
    assert all(s.context.trace_id == trace_id for s in by_relay), [
        str((s.attributes or {}).get("db.statement", s.name))
        for s in by_relay
        if s.context.trace_id != trace_id
    ]

    access = [line for line in logs.getvalue().splitlines() if "request" in line]
    assert any(format(trace_id, "032x") in line for line in access), logs.getvalue()


async def test_no_secret_or_e_mail_address_reaches_the_logs(
    dev_app: FastAPI,
    client: httpx.AsyncClient,
    keys: Keys,
    settings: Settings,
    database: Database,
) -> None:
    secrets: list[str] = [
        header["Authorization"].removeprefix("Bearer ")
        for header in (keys.admin, keys.staff, keys.service, keys.customer)
    ]
    emails = ["ann.lee@shop.example", "orders+vip@example.com"]
    with captured_logs() as logs:
        # Every line of this workload is rendered by the application's own configuration.
        from stockflow.observability.logging import configure_logging, get_logger

        configure_logging(settings)
        for email in emails:
            created = await client.post(
                "/v1/customers", json={"name": "Ann", "email": email}, headers=keys.staff
            )
            assert created.status_code == 201, created.text
        key = await client.post(
            "/v1/api-keys", json={"name": "new", "role": "staff"}, headers=keys.admin
        )
        assert key.status_code == 201, key.text
        secrets.append(key.json()["key"])
        async with running_receiver(failing) as receiver:
            endpoint = await client.post(
                "/v1/webhook-endpoints", json={"url": receiver.url}, headers=keys.admin
            )
            assert endpoint.status_code == 201, endpoint.text
            secrets.append(endpoint.json()["secret"])
            await reject_product(client, keys, "MUG-LOGS", stock=2)
            await order(client, keys, {"MUG-LOGS": 1})
            await order(client, keys, {"MUG-LOGS": 50})
            relay = relay_for(settings, database)
            try:
                await relay.run_once()
            finally:
                await relay.aclose()
        # A caller sending a key where it does not belong, and a line that names them all.
        await client.get("/v1/orders", headers={"Authorization": f"Bearer {secrets[0]}x"})
        get_logger("stockflow.test").warning(
            "careless", note=f"for {emails[0]} with {secrets[-1]}", api_key=secrets[0]
        )
        await dev_app.state.key_usage.drain()
    text = logs.getvalue()
    assert "careless" in text
    assert "request" in text
    for secret in secrets:
        assert secret not in text
    for email in emails:
        assert email not in text
    assert "@" not in text.replace("[email]", "")


async def test_counts_made_in_a_transaction_wait_for_its_commit(database: Database) -> None:
    def receipts() -> float:
        return REGISTRY.get_sample_value("stockflow_receipts_total") or 0.0

    async def rolled_back() -> None:
        async with database.transaction() as session:
            metrics.count_on_commit(session, metrics.RECEIPTS, 2)
            raise RuntimeError("rolled back")

    start = receipts()
    with pytest.raises(RuntimeError):
        await rolled_back()
    assert receipts() == start
    async with database.transaction() as session:
        metrics.count_on_commit(session, metrics.RECEIPTS, 2)
        assert receipts() == start
    assert receipts() == start + 2


# --- what the first tests above do not reach ------------------------------------------


async def test_the_pool_gauges_show_this_process_s_connections(
    app: FastAPI, client: httpx.AsyncClient, keys: Keys
) -> None:
    assert (await client.get("/v1/products", headers=keys.staff)).status_code == 200
    await app.state.key_usage.drain()  # its write of the key's last use holds one too
    samples = await scrape(client)
    pool = "stockflow_db_pool_connections"
    # Sampled as the scrape begins: nothing is checked out, and the request above left its
    # connection in the pool.
    assert value(samples, pool, state="in_use") == 0
    assert value(samples, pool, state="idle") >= 1


async def test_dead_letters_are_counted_by_target(
    dev_app: FastAPI, client: httpx.AsyncClient, keys: Keys, settings: Settings, database: Database
) -> None:
    response = await client.post(
        "/v1/webhook-endpoints",
        json={"url": "http://127.0.0.1:9/hooks", "events": ["order.created"]},
        headers=keys.admin,
    )
    assert response.status_code == 201, response.text
    await reject_product(client, keys, "MUG-DEAD", stock=5)
    for _ in range(3):
        assert (await order(client, keys, {"MUG-DEAD": 1})).status_code == 201
    relay = relay_for(settings, database)
    try:
        await relay.dispatch_once()
    finally:
        await relay.aclose()
    async with database.transaction() as session:
        # Two of them ran out of attempts.
        pending = list(await session.scalars(select(Delivery.id).order_by(Delivery.id).limit(2)))
        await session.execute(
            update(Delivery).where(Delivery.id.in_(pending)).values(status="dead")
        )
    samples = await scrape(client)
    assert value(samples, "stockflow_dead_letters", target_type="webhook") == 2
    assert value(samples, "stockflow_deliveries_pending", target_type="webhook") == 1


async def test_background_tasks_are_timed_and_their_failures_counted(
    database: Database,
) -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    rounds = sample("stockflow_job_duration_seconds_count", task="probe_task")
    failures = sample("stockflow_job_failures_total", task="probe_task")
    beats = sample("stockflow_worker_heartbeats_total")
    stop = asyncio.Event()
    calls = 0

    async def job() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the database is restarting")
        stop.set()

    await asyncio.wait_for(_every("probe_task", job, interval=0.01, stop=stop), 10)
    assert sample("stockflow_job_duration_seconds_count", task="probe_task") == rounds + 2
    assert sample("stockflow_job_failures_total", task="probe_task") == failures + 1
    await Heartbeat(database).beat()
    assert sample("stockflow_worker_heartbeats_total") == beats + 1


async def test_production_logs_are_json_with_a_complete_access_line(
    settings: Settings, database: Database, keys: Keys
) -> None:
    production = Settings(
        environment="production",
        database_url="postgresql://postgres@127.0.0.1:5432/test",
        secret_key="a-production-secret-key-1234567890",
    )
    with captured_logs() as logs:
        app = create_app(production, database=database)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://s.test") as client:
            response = await client.get(
                "/v1/orders/ord_missing", headers={**keys.staff, "X-Request-ID": "probe-17"}
            )
        await app.state.key_usage.drain()
    assert response.status_code == 404
    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.strip()]
    (access,) = [line for line in lines if line.get("event") == "request"]
    assert access["request_id"] == "probe-17"
    assert (access["method"], access["route"], access["status"]) == (
        "GET",
        "/v1/orders/{order_id}",
        404,
    )
    assert access["path"] == "/v1/orders/ord_missing"
    assert isinstance(access["duration_ms"], float)
    assert access["statements"] >= 1
    assert access["level"] == "info"
    assert access["timestamp"].endswith("Z")
    configure_logging(settings)


async def test_a_backordered_order_traces_its_replenishment(
    traced: tuple[FastAPI, InMemorySpanExporter], keys: Keys
) -> None:
    app, exporter = traced
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as client:
        await backorder_product(client, keys, "MUG-TRACE-BACK", stock=1)
        exporter.clear()
        placed = await order(client, keys, {"MUG-TRACE-BACK": 3})
        assert placed.status_code == 201, placed.text
        await app.state.key_usage.drain()
    spans = list(exporter.get_finished_spans())
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER]
    in_trace = {s.name: s for s in _by_trace(spans, server.context.trace_id)}
    assert {"place_order", "reserve_stock", "replenish"} <= set(in_trace)
    replenish = in_trace["replenish"]
    assert replenish.parent is not None
    assert replenish.parent.span_id == in_trace["place_order"].context.span_id


async def test_spans_are_exported_over_otlp_http_when_the_environment_asks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[tuple[str, dict[str, str], bytes]] = []

    async def collector(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        received.append((scope["path"], headers, body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    port = free_port()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=nr-license-123")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "stockflow-test")
    provider = tracing.provider_from_environment()
    assert provider is not None
    async with serving(collector, port):
        provider.get_tracer("probe").start_span("place_order").end()
        assert await asyncio.to_thread(provider.force_flush, 10_000)
    provider.shutdown()
    (path, headers, body) = received[0]
    assert path == "/v1/traces"
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["api-key"] == "nr-license-123"
    exported = ExportTraceServiceRequest.FromString(body)
    (resource_spans,) = exported.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "stockflow-test"
    names = [s.name for scope in resource_spans.scope_spans for s in scope.spans]
    assert names == ["place_order"]


async def test_a_replayed_order_is_counted_once(client: httpx.AsyncClient, keys: Keys) -> None:
    await reject_product(client, keys, "MUG-REPLAY", stock=5)
    before = await scrape(client)
    body = {"customer_id": keys.customer_id, "lines": [{"sku": "MUG-REPLAY", "quantity": 2}]}
    headers = {**keys.staff, "Idempotency-Key": "replay-me-1"}
    first = await client.post("/v1/orders", json=body, headers=headers)
    again = await client.post("/v1/orders", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true"
    after = await scrape(client)
    assert grew(before, after, "stockflow_orders_placed_total", outcome="accepted") == 1
    assert grew(before, after, "stockflow_units_reserved_total") == 2
