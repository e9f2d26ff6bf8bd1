"""The outbox under real concurrency (PostgreSQL only): a server process, many clients at
once, and exactly one ``order.created`` for each order that committed."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.integration.test_order_concurrency import create_product
from tests.server import (
    InFlight,
    OwnDatabase,
    asyncpg_dsn,
    concurrent_client,
    create_customers,
    running_server,
)

pytestmark = pytest.mark.postgres_only


async def test_a_thousand_orders_give_exactly_a_thousand_order_created_events(
    own_database: OwnDatabase, tmp_path: Path
) -> None:
    """1,000 orders from 40 clients at once over one hot SKU with stock for 600 of them and
    an ample one: the 600 that commit have one ``order.created`` each, carrying the body the
    client got; the 400 refused (rolled back) have none."""
    db = own_database
    async with (
        running_server(db.url, tmp_path / "serve.log") as server,
        concurrent_client(server.base_url) as client,
    ):
        customers = await create_customers(client, db, 20)
        await create_product(client, db, "EVT-HOT", 600)
        await create_product(client, db, "EVT-AMPLE", 100_000)
        flight = InFlight()
        semaphore = asyncio.Semaphore(40)

        async def one(n: int) -> httpx.Response:
            async with semaphore:
                return await flight.run(
                    client.post(
                        "/v1/orders",
                        headers=db.service,
                        json={
                            "customer_id": customers[n % len(customers)],
                            "lines": [
                                {"sku": "EVT-AMPLE", "quantity": 1},
                                {"sku": "EVT-HOT", "quantity": 1},
                            ],
                        },
                    )
                )

        responses = await asyncio.gather(*(one(n) for n in range(1000)))
        assert Counter(r.status_code for r in responses) == {201: 600, 409: 400}
        assert flight.peak >= 30, flight.peak
    placed = {r.json()["id"]: r.json() for r in responses if r.status_code == 201}

    connection = await asyncpg.connect(asyncpg_dsn(db.url))
    try:
        rows = await connection.fetch(
            "SELECT object_id, data FROM events WHERE type = 'order.created'"
        )
        orders = await connection.fetchval("SELECT count(*) FROM orders")
    finally:
        await connection.close()
    assert orders == 600
    assert len(rows) == 600
    assert Counter(row["object_id"] for row in rows) == dict.fromkeys(placed, 1)
    for row in rows:
        assert json.loads(row["data"]) == {"object": placed[row["object_id"]]}
