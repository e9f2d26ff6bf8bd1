"""`stockflow worker` processes delivering webhooks (PostgreSQL only): two at once share
the work, one killed mid-delivery loses nothing, and SIGTERM finishes the delivery in hand.

The API server runs with its in-process worker off, so only the worker processes here
deliver; the receiver is a real HTTP server on loopback in the test's own process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from standardwebhooks import Webhook

from stockflow.auth.roles import Role
from tests.integration.test_order_concurrency import create_product
from tests.receiver import Answer, Received, running_receiver
from tests.server import (
    OwnDatabase,
    asyncpg_dsn,
    concurrent_client,
    create_customers,
    expect,
    running_server,
)

pytestmark = pytest.mark.postgres_only

DEVELOPMENT = {"STOCKFLOW_WEBHOOKS_ALLOW_PRIVATE": "true", "STOCKFLOW_LOG_LEVEL": "warning"}
SERVER_ENV = {**DEVELOPMENT, "STOCKFLOW_WORKER_IN_PROCESS": "false"}
DEADLINE = 120.0


@contextmanager
def worker_process(
    db: OwnDatabase, log_path: Path, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    environment = {
        **os.environ,
        **DEVELOPMENT,
        "STOCKFLOW_DATABASE_URL": db.url,
        "STOCKFLOW_RELAY_POLL_SECONDS": "0.1",
        **env,
    }
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "stockflow.cli.main", "worker"],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


async def register(client: httpx.AsyncClient, db: OwnDatabase, url: str) -> dict[str, Any]:
    body: dict[str, Any] = expect(
        await client.post(
            "/v1/webhook-endpoints",
            headers=db.keys[Role.ADMIN],
            json={"url": url, "events": ["order.created", "order.cancelled"]},
        ),
        201,
    )
    return body


async def place_orders(
    client: httpx.AsyncClient, db: OwnDatabase, count: int, *, cancel_every: int = 0
) -> list[str]:
    customers = await create_customers(client, db, 10)
    await create_product(client, db, "HOOK-SKU", 1_000_000)
    semaphore = asyncio.Semaphore(32)

    async def one(n: int) -> str:
        async with semaphore:
            order = expect(
                await client.post(
                    "/v1/orders",
                    headers=db.service,
                    json={
                        "customer_id": customers[n % len(customers)],
                        "lines": [{"sku": "HOOK-SKU", "quantity": 1}],
                    },
                ),
                201,
            )
            if cancel_every and n % cancel_every == 0:
                expect(
                    await client.post(
                        f"/v1/orders/{order['id']}/cancel",
                        headers=db.staff,
                        json={"reason": "test"},
                    ),
                    200,
                )
            order_id: str = order["id"]
            return order_id

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def events_of(db: OwnDatabase) -> dict[str, tuple[str, str]]:
    """Event id -> (type, object id), for the types the endpoint hears."""
    connection = await asyncpg.connect(asyncpg_dsn(db.url))
    try:
        rows = await connection.fetch(
            "SELECT id, type, object_id FROM events "
            "WHERE type IN ('order.created', 'order.cancelled')"
        )
        return {row["id"]: (row["type"], row["object_id"]) for row in rows}
    finally:
        await connection.close()


async def delivery_statuses(db: OwnDatabase) -> Counter[str]:
    connection = await asyncpg.connect(asyncpg_dsn(db.url))
    try:
        rows = await connection.fetch("SELECT status FROM deliveries")
        return Counter(row["status"] for row in rows)
    finally:
        await connection.close()


async def until_every_event_arrived(received: list[Received], expected: set[str]) -> None:
    async with asyncio.timeout(DEADLINE):
        while not expected <= {request.headers["webhook-id"] for request in received}:
            await asyncio.sleep(0.1)


@asynccontextmanager
async def api(db: OwnDatabase, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running_server(db.url, tmp_path / "serve.log", env=SERVER_ENV) as server,
        concurrent_client(server.base_url) as client,
    ):
        yield client


async def test_two_workers_deliver_every_event_in_order_per_order_with_few_duplicates(
    own_database: OwnDatabase, tmp_path: Path
) -> None:
    """1,000 orders (every fifth cancelled: 1,200 events), two worker processes: every
    event arrives, every signature verifies, each order's events arrive in the order they
    happened, and fewer than 1 % arrive twice."""
    db = own_database
    async with running_receiver() as receiver, api(db, tmp_path) as client:
        endpoint = await register(client, db, receiver.url)
        await place_orders(client, db, 1000, cancel_every=5)
        expected = await events_of(db)
        assert len(expected) == 1200
        with (
            worker_process(db, tmp_path / "worker-1.log"),
            worker_process(db, tmp_path / "worker-2.log"),
        ):
            await until_every_event_arrived(receiver.received, set(expected))
            async with asyncio.timeout(DEADLINE):
                while (await delivery_statuses(db))["delivered"] < len(expected):
                    await asyncio.sleep(0.1)
    received = list(receiver.received)
    verifier = Webhook(endpoint["secret"])
    first_arrival: dict[str, int] = {}
    for position, request in enumerate(received):
        body = verifier.verify(request.body, request.headers)
        assert body["id"] == request.headers["webhook-id"]
        assert (body["type"], body["data"]["object"]["id"]) == expected[body["id"]]
        first_arrival.setdefault(body["id"], position)
    assert set(first_arrival) == set(expected)
    by_order: dict[str, list[tuple[int, str]]] = {}
    for event_id, (event_type, order_id) in expected.items():
        by_order.setdefault(order_id, []).append((first_arrival[event_id], event_type))
    for arrivals in by_order.values():
        assert [event_type for _, event_type in sorted(arrivals)] in (
            ["order.created"],
            ["order.created", "order.cancelled"],
        )
    duplicates = len(received) - len(first_arrival)
    assert duplicates < len(expected) / 100, duplicates
    assert await delivery_statuses(db) == {"delivered": 1200}


async def test_a_worker_killed_mid_delivery_loses_nothing(
    own_database: OwnDatabase, tmp_path: Path
) -> None:
    """The receiver holds the first requests; the worker is SIGKILLed with them in flight.
    A second worker, once the leases run out, delivers every event; an event that arrives
    twice carries the same webhook-id both times."""
    db = own_database
    gate = asyncio.Event()

    async def held(_: Received) -> Answer:
        await gate.wait()
        return 204, {}

    lease = {"STOCKFLOW_DELIVERY_LEASE_SECONDS": "3", "STOCKFLOW_WEBHOOK_TIMEOUT_SECONDS": "2"}
    async with running_receiver(held) as receiver, api(db, tmp_path) as client:
        endpoint = await register(client, db, receiver.url)
        await place_orders(client, db, 200)
        expected = await events_of(db)
        with worker_process(db, tmp_path / "killed.log", **lease) as doomed:
            await receiver.wait_for(5)
            os.killpg(doomed.pid, signal.SIGKILL)
            await asyncio.to_thread(doomed.wait, 15)
        # What the dead worker had already written reaches the receiver's loop now.
        await asyncio.sleep(1)
        in_flight = {request.headers["webhook-id"] for request in receiver.received}
        statuses = await delivery_statuses(db)
        assert statuses["delivered"] < len(expected)  # it died before finishing
        gate.set()
        with worker_process(db, tmp_path / "after.log", **lease):
            await until_every_event_arrived(receiver.received, set(expected))
            async with asyncio.timeout(DEADLINE):
                while (await delivery_statuses(db))["delivered"] < len(expected):
                    await asyncio.sleep(0.1)
    ids = Counter(request.headers["webhook-id"] for request in receiver.received)
    assert set(ids) == set(expected)
    assert {event_id for event_id, count in ids.items() if count > 1} <= in_flight
    verifier = Webhook(endpoint["secret"])
    for request in receiver.received:
        assert verifier.verify(request.body, request.headers)["id"] == request.headers["webhook-id"]


async def test_sigterm_finishes_the_delivery_in_hand(
    own_database: OwnDatabase, tmp_path: Path
) -> None:
    db = own_database
    gate = asyncio.Event()

    async def held(_: Received) -> Answer:
        await gate.wait()
        return 204, {}

    async with running_receiver(held) as receiver, api(db, tmp_path) as client:
        await register(client, db, receiver.url)
        await place_orders(client, db, 1)
        (event_id,) = await events_of(db)
        with worker_process(db, tmp_path / "worker.log") as worker:
            (request,) = await receiver.wait_for(1)
            os.killpg(worker.pid, signal.SIGTERM)
            await asyncio.sleep(0.5)
            assert worker.poll() is None  # still finishing the delivery in hand
            gate.set()
            assert await asyncio.to_thread(worker.wait, 15) == 0
    assert request.headers["webhook-id"] == event_id
    assert await delivery_statuses(db) == {"delivered": 1}
    assert json.loads(request.body)["id"] == event_id
