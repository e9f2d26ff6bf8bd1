"""Liveness, readiness and metrics, outside ``/v1``."""

from __future__ import annotations

import asyncio
import hmac
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from stockflow.api.deps import bearer_token
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.db.migrate import probe
from stockflow.errors import (
    PROBLEM_TYPES,
    AuthenticationRequired,
    NotFound,
    ServiceUnavailable,
    problem_type_uri,
)
from stockflow.observability import metrics
from stockflow.observability import repository as observed
from stockflow.observability.logging import get_logger
from stockflow.observability.state import StateSnapshot, age_seconds, read_state

router = APIRouter(tags=["Health"])
# Reading shared state for /readyz and /metrics waits at most this long (a pool worn out by
# load must not make the scrape time out and lose the counters with it).
STATE_TIMEOUT_SECONDS = 3.0
log = get_logger(__name__)


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(examples=["ok"])
    database: str = Field(examples=["postgresql"])
    migration: str = Field(description="Applied schema revision.", examples=["0009"])
    worker_heartbeat_age_seconds: float | None = Field(
        description=(
            "Seconds since any worker last wrote its heartbeat; null when none ever has. "
            "Reported, not judged: a stalled worker alerts through /metrics and never takes "
            "this instance out of the load balancer."
        ),
        examples=[4.2],
    )
    workers_alive: int = Field(
        description="Workers whose heartbeat is recent (within three intervals).", examples=[1]
    )
    outbox_lag_seconds: float = Field(
        description="Age of the oldest event not yet handed to its receivers (0: none waits).",
        examples=[0.0],
    )


class ProblemTypeRead(BaseModel):
    type: str = Field(examples=["/problems/insufficient-stock"])
    title: str
    description: str


@router.get(
    "/healthz",
    summary="Liveness",
    description="200 while the process serves requests; checks nothing else.",
)
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness",
    description=(
        "200 when the database answers and its schema is at the migration head this build "
        "expects; otherwise 503, so a load balancer sends traffic elsewhere. The body also "
        "reports the workers' heartbeat age and the outbox lag, for a person looking: they "
        "do not change the status (they alert through `/metrics`)."
    ),
    responses={503: {"description": "Database unreachable or not migrated"}},
)
async def readyz(request: Request) -> Readiness:
    database: Database = request.app.state.database
    expected: str = request.app.state.migration_head
    try:
        applied = await probe(database.engine)
    except Exception as exc:
        log.warning("readiness_database_unreachable", error=type(exc).__name__)
        raise ServiceUnavailable("The database cannot be reached.") from exc
    if applied != expected:
        raise ServiceUnavailable(
            f"The database schema is at {applied or 'no revision (not migrated)'}, "
            f"this build needs {expected}."
        )
    settings: Settings = request.app.state.settings
    now = datetime.now(UTC)
    alive_since = now - timedelta(seconds=3 * settings.worker_heartbeat_seconds)
    last_beat: datetime | None = None
    oldest: datetime | None = None
    alive = 0
    try:
        # Shared state, reported for a person looking: however it fails, the instance
        # stays ready.
        async with (
            asyncio.timeout(STATE_TIMEOUT_SECONDS),
            database.transaction(write=False) as session,
        ):
            last_beat, alive = await observed.heartbeats(session, alive_since=alive_since)
            oldest = await observed.oldest_undispatched(session)
    except Exception as exc:
        log.warning("readiness_state_unavailable", error=type(exc).__name__)
    return Readiness(
        status="ok",
        database=database.dialect,
        migration=applied,
        worker_heartbeat_age_seconds=(
            None if last_beat is None else round(age_seconds(now, last_beat), 3)
        ),
        workers_alive=alive,
        outbox_lag_seconds=round(age_seconds(now, oldest), 3),
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description=(
        "Prometheus text exposition: HTTP, database, business and background-work metrics. "
        "Counters add up over every server process of this instance; the state read from "
        "the database (backorders, purchase orders, stock-outs, outbox lag, dead letters, "
        "worker heartbeat) is the same from every instance, so aggregate it with `max`. "
        "With STOCKFLOW_METRICS_TOKEN set, send it as `Authorization: Bearer <token>`."
    ),
    response_class=Response,
    responses={
        200: {
            "content": {
                "text/plain": {
                    "example": 'stockflow_orders_placed_total{outcome="accepted"} 42.0\n'
                }
            },
            "description": "The metrics, in Prometheus text format 0.0.4",
        },
        401: {"description": "STOCKFLOW_METRICS_TOKEN is set and was not sent"},
    },
)
async def prometheus_metrics(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if settings.metrics_token is not None:
        token = bearer_token(request) or ""
        if not hmac.compare_digest(
            token.encode(), settings.metrics_token.get_secret_value().encode()
        ):
            raise AuthenticationRequired(
                "Send the metrics token as `Authorization: Bearer <token>`."
            )
    database: Database = request.app.state.database
    sample_pool(database)
    snapshot: StateSnapshot | None
    try:
        async with asyncio.timeout(STATE_TIMEOUT_SECONDS):
            snapshot = await read_state(
                database, heartbeat_interval=settings.worker_heartbeat_seconds
            )
    except Exception as exc:
        # The counters are still worth having while the database is away.
        log.warning("metrics_state_unavailable", error=type(exc).__name__)
        snapshot = None
    return Response(metrics.exposition(snapshot), media_type=CONTENT_TYPE_LATEST)


def sample_pool(database: Database) -> None:
    status = database.pool_status()
    if status is not None:
        in_use, idle = status
        metrics.DB_POOL.labels("in_use").set(in_use)
        metrics.DB_POOL.labels("idle").set(idle)


@router.get(
    "/problems/{slug}",
    summary="Describe a problem type",
    description="Every error's `type` is a link here, explaining what it means.",
)
async def problem_type(slug: str) -> ProblemTypeRead:
    if slug not in PROBLEM_TYPES:
        raise NotFound(f"No problem type {slug!r}.")
    title, description = PROBLEM_TYPES[slug]
    return ProblemTypeRead(type=problem_type_uri(slug), title=title, description=description)
