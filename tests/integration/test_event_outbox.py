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
    """1,400 orders from 40 clients at once over one hot SKU with stock for 1,000 of them
    and an ample one: the 1,000 that commit have one ``order.created`` each, carrying the
    body the client got; the 400 refused (rolled back) have none."""
    db = own_database
    async with (
        running_server(db.url, tmp_path / "serve.log") as server,
        concurrent_client(server.base_url) as client,
    ):
        customers = await create_customers(client, db, 20)
        await create_product(client, db, "EVT-HOT", 1000)
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

        responses = await asyncio.gather(*(one(n) for n in range(1400)))
        assert Counter(r.status_code for r in responses) == {201: 1000, 409: 400}
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
    assert orders == 1000
    assert len(rows) == 1000
    assert Counter(row["object_id"] for row in rows) == dict.fromkeys(placed, 1)
    for row in rows:
        assert json.loads(row["data"]) == {"object": placed[row["object_id"]]}


async def backorder_product(client: httpx.AsyncClient, db: OwnDatabase, sku: str) -> None:
    supplier = await client.post(
        "/v1/suppliers", headers=db.staff, json={"name": f"Supplier {sku}", "lead_time_days": 3}
    )
    assert supplier.status_code == 201, supplier.text
    created = await client.post(
        "/v1/products",
        headers=db.staff,
        json={
            "sku": sku,
            "name": sku,
            "unit_price": 500,
            "currency": "EUR",
            "shortage_policy": "backorder",
            "suppliers": [
                {
                    "supplier_id": supplier.json()["id"],
                    "supplier_sku": f"S-{sku}",
                    "cost_price": 100,
                    "currency": "EUR",
                }
            ],
        },
    )
    assert created.status_code == 201, created.text


async def test_orders_completed_by_two_receipts_at_once_are_told_ready_exactly_once(
    own_database: OwnDatabase, tmp_path: Path
) -> None:
    """30 orders each wait for one unit of A and one of B; stock for both arrives in two
    transactions at the same moment. Each transaction alone sees the other SKU still
    waiting, yet every order gets exactly one ``order.ready_to_ship`` (from the worker,
    with the order's row locked)."""
    db = own_database
    async with (
        running_server(db.url, tmp_path / "serve.log") as server,
        concurrent_client(server.base_url) as client,
    ):
        customers = await create_customers(client, db, 5)
        for sku in ("RDY-A", "RDY-B"):
            await backorder_product(client, db, sku)
        placed = []
        for n in range(30):
            response = await client.post(
                "/v1/orders",
                headers=db.service,
                json={
                    "customer_id": customers[n % 5],
                    "lines": [{"sku": "RDY-A", "quantity": 1}, {"sku": "RDY-B", "quantity": 1}],
                },
            )
            assert response.status_code == 201, response.text
            placed.append(response.json()["id"])
        adjustments = await asyncio.gather(
            *(
                client.post(
                    f"/v1/inventory/{sku}/adjustments",
                    headers=db.staff,
                    json={"delta": 30, "reason": "delivery"},
                )
                for sku in ("RDY-A", "RDY-B")
            )
        )
        assert [r.status_code for r in adjustments] == [201, 201]

        connection = await asyncpg.connect(asyncpg_dsn(db.url))
        try:
            async with asyncio.timeout(30):
                while True:
                    rows = await connection.fetch(
                        "SELECT object_id, data FROM events WHERE type = 'order.ready_to_ship'"
                    )
                    if len(rows) >= 30:
                        break
                    await asyncio.sleep(0.1)
            await asyncio.sleep(1.5)  # a second telling would have had time to appear
            rows = await connection.fetch(
                "SELECT object_id, data FROM events WHERE type = 'order.ready_to_ship'"
            )
            checks = await connection.fetchval("SELECT count(*) FROM readiness_checks")
        finally:
            await connection.close()
    assert Counter(row["object_id"] for row in rows) == dict.fromkeys(placed, 1)
    assert checks == 0
    for row in rows:
        lines = json.loads(row["data"])["object"]["lines"]
        assert [(line["allocated"], line["backordered"]) for line in lines] == [(1, 0), (1, 0)]
