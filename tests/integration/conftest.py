"""Fixtures of the tests that run a real server on a PostgreSQL database of their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from stockflow.db import migrate
from tests.conftest import skip_without_postgres
from tests.server import OwnDatabase, create_keys
from tests.support import create_postgres_database, drop_postgres_database, postgres_url_for


@pytest.fixture
async def own_database() -> AsyncIterator[OwnDatabase]:
    """A migrated PostgreSQL database for this test alone, with admin/staff/service keys."""
    skip_without_postgres("postgresql")
    name = await create_postgres_database()
    try:
        url = postgres_url_for(name)
        await asyncio.to_thread(migrate.upgrade, url)
        yield OwnDatabase(name, url, await create_keys(url))
    finally:
        await drop_postgres_database(name)
