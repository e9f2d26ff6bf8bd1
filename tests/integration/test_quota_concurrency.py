"""The quota on unpaid orders holds when one customer places many orders at once (PostgreSQL
only): the customer's row lock counts them one after the other, so concurrent orders can
never take the customer past its quota between a count and an insert."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from tests.integration.test_order_concurrency import create_product, stock
from tests.server import (
    InFlight,
    OwnDatabase,
    asyncpg_dsn,
    concurrent_client,
    create_customers,
    problem_slug,
    running_server,
)

pytestmark = pytest.mark.postgres_only

QUOTA = 5
ORDERS = 60
POOL_SIZE = 10
WAIT_TIMEOUT = 15.0


async def wait_for_lock_waiters(connection: asyncpg.Connection, database: str, count: int) -> None:
    """Until ``count`` backends of the database wait for a lock; fails after a deadline."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while time.monotonic() < deadline:
        waiting = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
            database,
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} orders waited for a lock within {WAIT_TIMEOUT} s")


async def test_concurrent_orders_of_one_customer_never_pass_its_quota(
    own_database: OwnDatabase, tmp_path: Path
) -> None:
    db = own_database
    env = {
        "STOCKFLOW_PAYMENTS": "manual",
        "STOCKFLOW_MAX_UNPAID_ORDERS_PER_CUSTOMER": str(QUOTA),
        "STOCKFLOW_DATABASE_POOL_SIZE": str(POOL_SIZE),
    }
    async with (
        running_server(db.url, tmp_path / "serve.log", env=env) as server,
        concurrent_client(server.base_url) as client,
    ):
        (hoarder, bystander) = await create_customers(client, db, 2)
        # A product per order: no stock row is shared, so only the quota orders them.
        await asyncio.gather(*(create_product(client, db, f"QUOTA-{n}", 10) for n in range(ORDERS)))
        # Inserts of orders wait behind a table lock until many orders are in flight: each
        # has counted what its customer holds by then, so without the customer's row lock
        # they would all see room under the quota.
        blocker = await asyncpg.connect(asyncpg_dsn(db.url))
        await blocker.execute("BEGIN")
        await blocker.execute("LOCK TABLE orders IN SHARE MODE")
        flight = InFlight()
        placing = asyncio.gather(
            *(
                flight.run(
                    client.post(
                        "/v1/orders",
                        headers=db.service,
                        json={
                            "customer_id": hoarder if n % 6 else bystander,
                            "lines": [{"sku": f"QUOTA-{n}", "quantity": 2}],
                        },
                    )
                )
                for n in range(ORDERS)
            )
        )
        try:
            await wait_for_lock_waiters(blocker, db.name, POOL_SIZE)
        finally:
            await blocker.execute("COMMIT")
            await blocker.close()
        responses = await placing
        assert flight.peak > 10, "the orders did not overlap"
        outcomes = Counter(
            ("created" if r.status_code == 201 else (r.status_code, problem_slug(r)))
            for r in responses
        )
        # Both customers sent more orders than their quota: each got exactly its quota.
        assert len(range(0, ORDERS, 6)) > QUOTA
        assert outcomes == {
            "created": 2 * QUOTA,
            (429, "quota-exceeded"): ORDERS - 2 * QUOTA,
        }, outcomes
        # Refused orders reserved nothing.
        reserved = [(await stock(client, db, f"QUOTA-{n}"))["reserved"] for n in range(ORDERS)]
        assert sorted(reserved, reverse=True) == [2] * (2 * QUOTA) + [0] * (ORDERS - 2 * QUOTA)

    connection = await asyncpg.connect(asyncpg_dsn(db.url))
    try:
        held = await connection.fetch(
            "SELECT customer_id, count(*) AS orders FROM orders "
            "WHERE status = 'pending_payment' GROUP BY customer_id"
        )
    finally:
        await connection.close()
    assert {row["customer_id"]: row["orders"] for row in held} == {
        hoarder: QUOTA,
        bystander: QUOTA,
    }
