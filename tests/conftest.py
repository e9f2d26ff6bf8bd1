"""Fixtures: every integration and API test runs once on SQLite and once on PostgreSQL.

Without a reachable PostgreSQL the PostgreSQL half is skipped, and the summary says so; with
``CI=true`` an unreachable PostgreSQL stops the run with a failure instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import httpx
import pytest
from fastapi import FastAPI

from stockflow.app import create_app
from stockflow.auth import service as auth_service
from stockflow.auth.roles import Principal, Role
from stockflow.auth.schemas import ApiKeyCreate
from stockflow.config import Settings
from stockflow.customers import service as customers_service
from stockflow.customers.schemas import CustomerCreate
from stockflow.db import migrate
from stockflow.db.engine import Database
from stockflow.webhooks.addresses import system_resolver
from tests.support import (
    BACKENDS,
    IN_CI,
    POSTGRES_URL,
    clear_data,
    empty_database,
    probe_postgres,
)

_postgres_unavailable: str | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _postgres_unavailable
    _postgres_unavailable = asyncio.run(probe_postgres())
    if _postgres_unavailable is not None and IN_CI:
        pytest.exit(
            f"PostgreSQL is required under CI but {POSTGRES_URL} is unreachable "
            f"({_postgres_unavailable})",
            returncode=3,
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _postgres_unavailable is not None:
        terminalreporter.section("PostgreSQL", sep="!", yellow=True, bold=True)
        terminalreporter.write_line(
            f"PostgreSQL half SKIPPED: {POSTGRES_URL} is unreachable ({_postgres_unavailable}). "
            "Only SQLite was tested. Set STOCKFLOW_TEST_POSTGRES_URL to test PostgreSQL.",
            yellow=True,
            bold=True,
        )


def skip_without_postgres(backend: str) -> None:
    if backend == "postgresql" and _postgres_unavailable is not None:
        pytest.skip(f"PostgreSQL unreachable: {_postgres_unavailable}")


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    skip_without_postgres(name)
    return name


@pytest.fixture(scope="session")
async def database_url(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    async with empty_database(backend, tmp_path_factory.mktemp("db")) as url:
        await asyncio.to_thread(migrate.upgrade, url)
        yield url


@pytest.fixture(scope="session")
async def shared_database(database_url: str) -> AsyncIterator[Database]:
    database = Database(Settings(database_url=database_url))
    yield database
    await database.dispose()


@pytest.fixture
async def database(shared_database: Database) -> Database:
    """The migrated database of this backend, emptied of data before the test."""
    await clear_data(shared_database)
    return shared_database


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url)


async def offline_resolver(host: str, port: int) -> list[str]:
    """Names under the reserved ``.example`` domain resolve to a public documentation-range
    address, so registering a webhook or a supplier URL needs no name server."""
    if host == "example" or host.endswith((".example", ".example.com")):
        return ["93.184.216.34"]
    return await system_resolver(host, port)


@pytest.fixture
def app(settings: Settings, database: Database) -> FastAPI:
    app = create_app(settings, database=database)
    app.state.webhooks = replace(app.state.webhooks, resolver=offline_resolver)
    return app


@pytest.fixture
def dev_app(app: FastAPI) -> FastAPI:
    """The app in development mode for webhooks: receivers on loopback may be registered."""
    app.state.webhooks = replace(app.state.webhooks, allow_private=True)
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as c:
        yield c
    await app.state.key_usage.drain()


@dataclass(frozen=True)
class Keys:
    """One API key per role, as ready-made headers, and the customers they concern."""

    admin: dict[str, str]
    staff: dict[str, str]
    service: dict[str, str]
    customer: dict[str, str]
    customer_id: str
    other_customer_id: str
    ids: dict[str, str]

    def for_role(self, role: str) -> dict[str, str]:
        headers: dict[str, str] = getattr(self, role)
        return headers


async def make_keys(database: Database) -> Keys:
    """Two customers and one API key per role (the customer key bound to the first)."""
    actor = Principal.command_line()
    async with database.transaction() as session:
        own = await customers_service.create_customer(
            session, actor=actor, data=CustomerCreate(name="Own Customer")
        )
        other = await customers_service.create_customer(
            session, actor=actor, data=CustomerCreate(name="Other Customer")
        )
        headers: dict[str, dict[str, str]] = {}
        ids: dict[str, str] = {}
        for role in Role:
            created = await auth_service.create_key(
                session,
                actor=actor,
                data=ApiKeyCreate(
                    name=f"test {role.value}",
                    role=role,
                    customer_id=own.id if role is Role.CUSTOMER else None,
                ),
            )
            headers[role.value] = {"Authorization": f"Bearer {created.key}"}
            ids[role.value] = created.id
    return Keys(
        admin=headers["admin"],
        staff=headers["staff"],
        service=headers["service"],
        customer=headers["customer"],
        customer_id=own.id,
        other_customer_id=other.id,
        ids=ids,
    )


@pytest.fixture
async def keys(database: Database) -> Keys:
    return await make_keys(database)
