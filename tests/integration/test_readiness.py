"""/readyz follows the database: 200 when reachable and migrated, 503 otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from stockflow.app import create_app
from stockflow.auth.keys import generate_key
from stockflow.config import Settings
from stockflow.db import migrate
from stockflow.db.engine import Database
from tests.conftest import skip_without_postgres
from tests.server import asyncpg_dsn
from tests.support import drop_postgres_database, empty_database


@asynccontextmanager
async def serving(url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Database]]:
    settings = Settings(database_url=url)
    database = Database(settings)
    app = create_app(settings, database=database)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://s.test") as client:
            yield client, database
    finally:
        await database.dispose()


async def test_not_migrated_is_503_then_200_at_head(backend: str, tmp_path: Path) -> None:
    async with empty_database(backend, tmp_path) as url, serving(url) as (client, _):
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == (
            "The database schema is at no revision (not migrated), this build needs "
            f"{migrate.head_revision()}."
        )

        await asyncio.to_thread(migrate.upgrade, url)
        response = await client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["migration"] == migrate.head_revision()
        assert (await client.get("/healthz")).status_code == 200


async def test_database_gone_is_503(backend: str, tmp_path: Path) -> None:
    async with empty_database(backend, tmp_path) as url:
        await asyncio.to_thread(migrate.upgrade, url)
        async with serving(url) as (client, database):
            assert (await client.get("/readyz")).status_code == 200
            if backend == "postgresql":
                await drop_postgres_database(database.engine.url.database or "")
            else:
                await database.engine.dispose()
                path = Path(database.engine.url.database or "")
                for leftover in path.parent.glob(path.name + "*"):
                    leftover.unlink()
                path.mkdir()  # a directory where the file was: SQLite cannot open it
            response = await client.get("/readyz")
            assert response.status_code == 503
            assert response.json()["detail"] == "The database cannot be reached."
            # An API call that needs the database says the same, with a retry hint.
            api = await client.get(
                "/v1/products", headers={"Authorization": f"Bearer {generate_key()}"}
            )
            assert api.status_code == 503, api.text
            assert api.headers["content-type"] == "application/problem+json"
            assert api.json()["type"] == "/problems/service-unavailable"
            assert api.headers["Retry-After"] == "5"
            # Liveness is about the process, not its dependencies.
            assert (await client.get("/healthz")).status_code == 200


async def test_connections_the_server_dropped_cost_at_most_one_retryable_request(
    backend: str, tmp_path: Path
) -> None:
    """Connections are not pinged before each use (that is a round trip per request), so
    after the database drops them (a restart, a failover) one request may meet a dead
    connection: it must be a retryable 503 with nothing written, and the pool must then be
    renewed so that the next request succeeds."""
    skip_without_postgres(backend)
    if backend != "postgresql":
        pytest.skip("SQLite has no server to drop connections")
    async with empty_database(backend, tmp_path) as url:
        await asyncio.to_thread(migrate.upgrade, url)
        async with serving(url) as (client, _database):
            # Several pooled connections, all in use at once, so several die together.
            answers = await asyncio.gather(*(client.get("/readyz") for _ in range(5)))
            assert {answer.status_code for answer in answers} == {200}
            name = make_url(url).database
            killer = await asyncpg.connect(asyncpg_dsn(url))
            try:
                dropped = await killer.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    name,
                )
            finally:
                await killer.close()
            assert dropped >= 1
            statuses = []
            for _ in range(3):
                response = await client.get("/readyz")
                statuses.append(response.status_code)
                if response.status_code == 503:
                    assert response.headers["content-type"] == "application/problem+json"
            assert statuses.count(503) <= 1, statuses
            assert statuses[-1] == 200, statuses
