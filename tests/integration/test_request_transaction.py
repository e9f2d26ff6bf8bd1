"""One transaction per unit of work, whether its statements go through the session or,
on PostgreSQL, straight to the driver (the order path's own SQL)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.auth import repository as auth_repository
from stockflow.config import Settings
from stockflow.db.driver import pg_driver
from stockflow.db.engine import Database
from stockflow.db.models import Customer, IdempotencyRecord
from stockflow.idempotency import repository as idempotency
from tests.server import asyncpg_dsn


class Boom(Exception):
    pass


async def _claim(session: AsyncSession, key: str) -> bool:
    """An idempotency claim: a write that goes through the driver on PostgreSQL."""
    now = datetime.now(UTC)
    return await idempotency.insert_if_absent(
        session,
        principal_id="key_test",
        key=key,
        request_hash="h",
        method="POST",
        path="/v1/orders",
        now=now,
        expires_at=now + timedelta(hours=1),
        wait_seconds=1,
    )


async def _write_both(database: Database, suffix: str, *, fail: bool) -> None:
    """A write through the driver (an idempotency claim) and one through the session (a
    customer), in one transaction."""
    async with database.transaction() as session:
        assert await _claim(session, f"key-{suffix}")
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
    async with database.transaction() as session:
        await _claim(session, "key-alone")
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


async def test_the_most_recently_returned_connection_is_handed_out_first(
    database: Database, backend: str
) -> None:
    # Last in, first out: under a load lighter than the pool, the same few server processes
    # (with their caches and prepared plans) do the work, and the rest stay idle.
    if backend != "postgresql":
        pytest.skip("SQLite connections are not pooled this way")

    async def backend_pid(session: AsyncSession) -> int:
        pid = await session.scalar(text("SELECT pg_backend_pid()"))
        assert isinstance(pid, int)
        return pid

    async with database.transaction() as first, database.transaction() as second:
        earlier, later = await backend_pid(first), await backend_pid(second)
        # Leaving the block returns `second` first, then `first`.
    assert earlier != later
    async with database.transaction() as again:
        assert await backend_pid(again) == earlier


async def test_a_connection_past_its_recycle_age_is_replaced_when_next_taken(
    database_url: str, backend: str
) -> None:
    # Connections are not pinged before use; the recycle age is what keeps one that sat
    # idle in the pool from outliving an idle timeout on the way to the server.
    if backend != "postgresql":
        pytest.skip("SQLite connections are not pooled this way")
    database = Database(
        Settings(database_url=database_url, database_pool_size=1, database_pool_recycle_seconds=1)
    )
    try:

        async def backend_pid() -> object:
            async with database.transaction() as session:
                return await session.scalar(text("SELECT pg_backend_pid()"))

        first = await backend_pid()
        assert await backend_pid() == first
        await asyncio.sleep(1.2)
        assert await backend_pid() != first
    finally:
        await database.dispose()


# --- failures around the driver's BEGIN and COMMIT (PostgreSQL) ------------------------


@pytest.fixture
async def pool_of_one(database_url: str, backend: str) -> AsyncIterator[Database]:
    """The test database behind a pool of one connection, so that the next transaction
    gets the connection the last one left (PostgreSQL only)."""
    if backend != "postgresql":
        pytest.skip("the driver path is PostgreSQL's")
    database = Database(Settings(database_url=database_url, database_pool_size=1))
    try:
        yield database
    finally:
        await database.dispose()


async def _authenticate(database: Database) -> None:
    """A request's first statement: the key lookup, through the driver."""
    async with database.transaction() as session:
        await auth_repository.get_by_hash(session, "0" * 64)


async def test_a_dropped_connection_fails_one_transaction_at_most(
    pool_of_one: Database, database_url: str
) -> None:
    database = pool_of_one
    await _authenticate(database)
    async with database.transaction() as session:
        pid = await session.scalar(text("SELECT pg_backend_pid()"))
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    await asyncio.sleep(0.2)
    failures = 0
    for _ in range(4):
        try:
            await _authenticate(database)
        except DBAPIError:
            # Answered as a retryable 503 by the problem handlers.
            failures += 1
    assert failures <= 1


async def test_a_transaction_cancelled_at_any_point_leaves_the_next_one_whole(
    pool_of_one: Database, database_url: str
) -> None:
    database = pool_of_one
    observer = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        for turns in range(12):

            async def begin_and_wait() -> None:
                async with database.transaction() as session:
                    await pg_driver(session)
                    await asyncio.sleep(10)

            task = asyncio.create_task(begin_and_wait())
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            async with database.transaction() as session:
                await _claim(session, f"key-after-cancel-{turns}")
            committed = await observer.fetchval(
                "SELECT count(*) FROM idempotency_records WHERE key = $1",
                f"key-after-cancel-{turns}",
            )
            assert committed == 1, f"cancelled after {turns} turns: the next write was lost"
    finally:
        await observer.close()


async def test_a_lost_idempotency_claim_leaves_lock_waits_unbounded(
    database: Database, backend: str
) -> None:
    """The claim bounds its own wait only: after losing to a committed record, the rest of
    the transaction (a replay, or deleting an expired record) waits as any other would."""
    if backend != "postgresql":
        pytest.skip("a PostgreSQL setting")
    async with database.transaction() as session:
        assert await _claim(session, "key-lost")
    async with database.transaction() as session:
        assert not await _claim(session, "key-lost")
        timeout = await session.scalar(text("SHOW lock_timeout"))
    assert timeout == "0"
