"""Liveness and readiness: open to everyone, outside ``/v1``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from stockflow.db.engine import Database
from stockflow.db.migrate import probe
from stockflow.errors import PROBLEM_TYPES, NotFound, ServiceUnavailable, problem_type_uri
from stockflow.observability.logging import get_logger

router = APIRouter(tags=["Health"])
log = get_logger(__name__)


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(examples=["ok"])
    database: str = Field(examples=["postgresql"])
    migration: str = Field(description="Applied schema revision.", examples=["0001"])


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
        "expects; otherwise 503, so a load balancer sends traffic elsewhere."
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
    return Readiness(status="ok", database=database.dialect, migration=applied)


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
