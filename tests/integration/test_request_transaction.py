"""One transaction per unit of work, whether its statements go through the session or,
on PostgreSQL, straight to the driver (the order path's own SQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from stockflow.db.driver import pg_driver
from stockflow.db.engine import Database
from stockflow.db.models import Customer, IdempotencyRecord
from stockflow.idempotency import repository as idempotency


class Boom(Exception):
    pass


async def _write_both(database: Database, suffix: str, *, fail: bool) -> None:
    """A write through the driver (an idempotency claim) and one through the session (a
    customer), in one transaction."""
    now = datetime.now(UTC)
    async with database.transaction() as session:
        assert await idempotency.insert_if_absent(
            session,
            principal_id="key_test",
            key=f"key-{suffix}",
            request_hash="h",
            method="POST",
            path="/v1/orders",
            now=now,
            expires_at=now + timedelta(hours=1),
            wait_seconds=1,
        )
        session.add(Customer(id=f"cus_{suffix}", name="Both", metadata_={}))
        await session.flush()
        if fail:
            raise Boom


async def _found(database: Database, suffix: str) -> tuple[bool, bool]:
    async with database.transaction(write=False) as session:
        record = await session.scalar(
            select(IdempotencyRecord.key).where(IdempotencyRecord.key == f"key-{suffix}")
        )
        customer = await session.get(Customer, f"cus_{suffix}")
    return record is not None, customer is not None


async def test_driver_and_session_writes_commit_together(database: Database) -> None:
    await _write_both(database, "together", fail=False)
    assert await _found(database, "together") == (True, True)


async def test_driver_and_session_writes_roll_back_together(database: Database) -> None:
    with pytest.raises(Boom):
        await _write_both(database, "neither", fail=True)
    assert await _found(database, "neither") == (False, False)


async def test_a_driver_only_write_commits(database: Database) -> None:
    now = datetime.now(UTC)
    async with database.transaction() as session:
        await idempotency.insert_if_absent(
            session,
            principal_id="key_test",
            key="key-alone",
            request_hash="h",
            method="POST",
            path="/v1/orders",
            now=now,
            expires_at=now + timedelta(hours=1),
            wait_seconds=1,
        )
    assert (await _found(database, "alone"))[0]


async def test_the_driver_sees_what_the_session_wrote_in_its_transaction(
    database: Database, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no separate driver path")
    async with database.transaction() as session:
        session.add(Customer(id="cus_seen", name="Seen", metadata_={}))
        await session.flush()
        driver = await pg_driver(session)
        assert driver is not None
        row = await driver.fetchrow("SELECT name FROM customers WHERE id = $1", "cus_seen")
        assert row is not None
        assert row[0] == "Seen"
    assert (await _found(database, "seen"))[1]


async def test_postgresql_sessions_plan_statements_once(database: Database, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("a PostgreSQL setting")
    async with database.transaction(write=False) as session:
        mode = await session.scalar(text("SHOW plan_cache_mode"))
        driver = await pg_driver(session)
        assert driver is not None
        through_driver = await driver.fetchrow("SHOW plan_cache_mode")
    assert mode == "force_generic_plan"
    assert through_driver is not None
    assert through_driver[0] == "force_generic_plan"
