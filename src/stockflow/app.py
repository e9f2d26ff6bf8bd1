"""The composition root of the HTTP service."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig
from opentelemetry.sdk.trace import TracerProvider

from stockflow import __version__
from stockflow.api.direct import DirectRoutes
from stockflow.api.health import router as health_router
from stockflow.api.health import sample_pool
from stockflow.api.idempotency import REPLAYED_HEADER
from stockflow.api.middleware import RequestContextMiddleware
from stockflow.api.problems import install_problem_handlers
from stockflow.api.ratelimit import RateLimiter, RateLimitMiddleware
from stockflow.api.router import DIRECT_ENDPOINTS, OPENAPI_TAGS, V1_PREFIX, V1_ROUTERS
from stockflow.auth.usage import KeyUsageRecorder
from stockflow.config import Environment, Settings
from stockflow.db.engine import Database
from stockflow.db.migrate import head_revision
from stockflow.observability import metrics, tracing
from stockflow.observability.logging import configure_logging, get_logger
from stockflow.payments.checkout import build_checkout
from stockflow.webhooks.secrets import SecretBox
from stockflow.webhooks.service import WebhookConfig
from stockflow.workers.runner import Worker, build_relay

log = get_logger(__name__)
POOL_SAMPLE_SECONDS = 5.0
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "X-Request-ID",
]
CORS_EXPOSED_HEADERS = [
    "X-Request-ID",
    "ETag",
    "Location",
    "Retry-After",
    "RateLimit",
    "RateLimit-Policy",
    REPLAYED_HEADER,
]

DESCRIPTION = """
Stockflow takes orders, reserves stock without ever overselling, and tells you exactly
what is on hand, reserved and available at every location.

Authenticate with `Authorization: Bearer <api key>`. Errors are
[RFC 9457](https://www.rfc-editor.org/rfc/rfc9457) `application/problem+json`; every
problem `type` links to `/problems/{slug}`, which explains it. Lists take `?limit=` and
`?cursor=` and answer `{"data": [...], "next_cursor": ...}`.
"""

# FastAPI's own OpenTelemetry bridge stays off unless tracing is wanted: even with no
# provider set it asks OpenTelemetry on every request whether one is (about 3 % of an
# order's CPU). Metrics are Prometheus's and logs structlog's, so it never does those.
NO_FRAMEWORK_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in metrics.PROBE_PATHS


def _telemetry(provider: TracerProvider | None) -> TelemetryConfig:
    if provider is None:
        return NO_FRAMEWORK_TELEMETRY
    return {
        **NO_FRAMEWORK_TELEMETRY,
        "tracing": True,
        "tracer_provider": provider,
        "exclude": _untraced,
    }


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """The HTTP service. ``tracer_provider`` traces into the given provider; without one,
    tracing follows the ``OTEL_*`` environment (off when it names no exporter)."""
    settings = settings or Settings()
    configure_logging(settings)
    database = database or Database(settings)
    owned_provider = None
    if tracer_provider is None:
        tracer_provider = owned_provider = tracing.provider_from_environment()
    if tracer_provider is not None:
        tracing.instrument(tracer_provider, database.engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        running: asyncio.Task[None] | None = None
        relay = build_relay(settings, database)
        if settings.worker_in_process:
            running = asyncio.create_task(Worker(settings, database, relay).run(stop))
        else:
            log.info(
                "worker_not_in_process",
                detail="background jobs (webhooks, pruning, PO submission) run only in "
                "`stockflow worker` processes",
            )
        sampling = asyncio.create_task(_sample_pool(database, stop))
        yield
        stop.set()
        if running is not None:
            await running
        await sampling
        await relay.aclose()
        if app.state.checkout is not None:
            await app.state.checkout.gateway.aclose()
        await app.state.key_usage.drain()
        await database.dispose()
        metrics.process_exited(os.getpid())
        if tracer_provider is not None:
            tracing.uninstrument()
        if owned_provider is not None:
            # Sends the spans still batched before the process goes.
            owned_provider.shutdown()

    app = FastAPI(
        title="Stockflow",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=OPENAPI_TAGS,
        lifespan=lifespan,
        telemetry=_telemetry(tracer_provider),
    )
    app.state.settings = settings
    app.state.database = database
    app.state.migration_head = head_revision()
    app.state.webhooks = WebhookConfig(
        box=SecretBox(settings.secret_key.get_secret_value()),
        allow_private=settings.webhooks_allow_private,
    )
    app.state.checkout = build_checkout(settings, database)
    app.state.key_usage = KeyUsageRecorder(
        database, interval=timedelta(seconds=settings.key_usage_interval_seconds)
    )
    install_problem_handlers(app)
    for router in V1_ROUTERS:
        app.include_router(router, prefix=V1_PREFIX)
    app.include_router(health_router)
    _document_signature_scheme(app)
    # Added first, so it runs inside the request context (request id, last-resort 500).
    app.add_middleware(DirectRoutes, routes=_direct_routes(), handlers=app.exception_handlers)
    # Before any route and any database work; inside CORS, so a browser can read its 429.
    app.state.rate_limiter = RateLimiter(
        per_key=settings.rate_limit_per_key,
        per_address=settings.rate_limit_per_address,
        storage=settings.rate_limit_storage,
    )
    app.add_middleware(RateLimitMiddleware, limiter=app.state.rate_limiter)
    if settings.cors_origins:
        # Inside the request context (so a preflight has its request id and metrics),
        # outside the direct route (so an order placed from a browser gets its headers).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
            max_age=600,
        )
    app.add_middleware(
        RequestContextMiddleware,
        hsts=settings.environment is Environment.PRODUCTION,
        max_body_bytes=settings.max_body_bytes,
    )
    return app


def _direct_routes() -> dict[tuple[str, str], APIRoute]:
    """The (method, path) of each direct endpoint's declared route, so that what is served
    and what OpenAPI documents cannot drift apart."""
    routes: dict[tuple[str, str], APIRoute] = {}
    for router in V1_ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.endpoint in DIRECT_ENDPOINTS:
                if route.param_convertors or route.dependencies or route.dependant.dependencies:
                    # Called with the request alone: nothing the router would resolve first.
                    raise ValueError(
                        f"{route.path}: a direct route takes no path parameters or dependencies"
                    )
                for method in route.methods or ():
                    routes[(method, V1_PREFIX + route.path)] = route
    if {route.endpoint for route in routes.values()} != {*DIRECT_ENDPOINTS}:
        raise ValueError("every direct endpoint must be declared as a /v1 route")
    return routes


async def _sample_pool(database: Database, stop: asyncio.Event) -> None:
    """Keep this process's share of the pool gauges current, for scrapes answered by
    another process of the instance."""
    while not stop.is_set():
        sample_pool(database)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POOL_SAMPLE_SECONDS)


SUPPLIER_SIGNATURE_SCHEME = {
    "type": "apiKey",
    "in": "header",
    "name": "webhook-signature",
    "description": (
        "Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature` "
        "(HMAC-SHA256 with the supplier's signing secret) over the exact body."
    ),
}


STRIPE_SIGNATURE_SCHEME = {
    "type": "apiKey",
    "in": "header",
    "name": "stripe-signature",
    "description": (
        "Stripe's `t=<time>,v1=<HMAC-SHA256>` over the exact body, with the endpoint's "
        "signing secret (STOCKFLOW_STRIPE_WEBHOOK_SECRET), at most five minutes old."
    ),
}


def _document_signature_scheme(app: FastAPI) -> None:
    """Inbound supplier messages and Stripe's events are authenticated by their signatures;
    OpenAPI learns the schemes here, as FastAPI learns the bearer scheme from its dependency."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["SupplierSignature"] = SUPPLIER_SIGNATURE_SCHEME
            schemes["StripeSignature"] = STRIPE_SIGNATURE_SCHEME
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
