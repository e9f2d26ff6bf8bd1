"""``Idempotency-Key`` on every writing POST, with the semantics of DESIGN.md §4: the effect
happens at most once per (API key, Idempotency-Key); a retry of a success replays the first
status and body marked ``Idempotent-Replayed: true``; a concurrent duplicate gets the replay
or 409, never a second execution; another body under the same key is 422; a failure stores
nothing; secrets shown once are not replayed; records expire after the configured TTL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from stockflow.app import create_app
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.db.models import (
    ApiKey,
    Customer,
    IdempotencyRecord,
    Order,
    Product,
    Shipment,
    StockMovement,
)
from stockflow.idempotency import service as idempotency_service
from stockflow.inventory import service as inventory_service
from tests.assertions import assert_invalid, assert_problem
from tests.conftest import Keys
from tests.server import asyncpg_dsn

SKU = "IDEM-MUG"
REPLAYED = "Idempotent-Replayed"


@pytest.fixture(autouse=True)
async def reconciles(database: Database) -> AsyncIterator[None]:
    """Whatever was replayed or retried, the ledger and the orders still agree."""
    yield
    async with database.transaction(write=False) as session:
        assert await inventory_service.reconcile(session) == []


@pytest.fixture
async def product(client: httpx.AsyncClient, keys: Keys) -> None:
    """IDEM-MUG at 12.90 with 10 in stock."""
    created = await client.post(
        "/v1/products",
        headers=keys.admin,
        json={"sku": SKU, "name": "Mug", "unit_price": 1290, "currency": "EUR"},
    )
    assert created.status_code == 201, created.text
    await adjust_stock(client, keys, 10)


async def adjust_stock(client: httpx.AsyncClient, keys: Keys, delta: int) -> None:
    response = await client.post(
        f"/v1/inventory/{SKU}/adjustments",
        headers=keys.admin,
        json={"delta": delta, "reason": "delivery"},
    )
    assert response.status_code == 201, response.text


def with_key(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


def order_body(keys: Keys, quantity: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "customer_id": keys.customer_id,
        "lines": [{"sku": SKU, "quantity": quantity}],
        **extra,
    }


async def count(database: Database, model: Any) -> int:
    async with database.transaction(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def records(database: Database) -> list[IdempotencyRecord]:
    async with database.transaction(write=False) as session:
        return list((await session.scalars(select(IdempotencyRecord))).all())


async def stock(client: httpx.AsyncClient, keys: Keys) -> tuple[int, int]:
    body = (await client.get(f"/v1/inventory/{SKU}", headers=keys.staff)).json()
    return body["on_hand"], body["reserved"]


def assert_replay_of(replay: httpx.Response, first: httpx.Response) -> None:
    """The first status and the very same body, byte for byte (PostgreSQL's JSONB would
    reorder the keys of a body rebuilt from a stored JSON value)."""
    assert replay.status_code == first.status_code, replay.text
    assert replay.headers[REPLAYED] == "true"
    assert replay.headers["content-type"] == "application/json"
    assert replay.content == first.content


# --- orders --------------------------------------------------------------------------------


async def test_ten_sequential_replays_make_one_order(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: None
) -> None:
    headers = with_key(keys.service, "order-7781")
    body = order_body(keys, 2, metadata={"zeta": "last", "alpha": "first", "cart": "c-1"})
    responses = [await client.post("/v1/orders", headers=headers, json=body) for _ in range(10)]

    first = responses[0]
    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    for replay in responses[1:]:
        assert_replay_of(replay, first)
        assert replay.headers["Location"] == first.headers["Location"]
    assert sum(REPLAYED in r.headers for r in responses) == 9
    assert await count(database, Order) == 1
    assert await stock(client, keys) == (10, 2)
    async with database.transaction(write=False) as session:
        reservations = await session.scalar(
            select(func.count())
            .select_from(StockMovement)
            .where(StockMovement.reason == "order_reserved")
        )
    assert reservations == 1


async def test_twenty_concurrent_duplicates_make_one_order(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: None
) -> None:
    headers = with_key(keys.service, "concurrent-1")
    body = order_body(keys, 3, metadata={"zeta": 1, "alpha": 2})
    responses = await asyncio.gather(
        *(client.post("/v1/orders", headers=headers, json=body) for _ in range(20))
    )

    assert all(r.status_code < 500 for r in responses), [r.text for r in responses]
    created = [r for r in responses if r.status_code == 201 and REPLAYED not in r.headers]
    assert len(created) == 1, [(r.status_code, dict(r.headers)) for r in responses]
    order = created[0].json()
    for response in responses:
        if response is created[0]:
            continue
        if response.status_code == 409:
            assert response.headers["content-type"] == "application/problem+json"
            continue
        assert response.status_code == 201, response.text
        assert response.headers[REPLAYED] == "true"
        assert response.content == created[0].content
    assert await count(database, Order) == 1
    async with database.transaction(write=False) as session:
        assert await session.scalar(select(Order.id)) == order["id"]
    assert order["lines"][0]["quantity"] == 3
    assert await stock(client, keys) == (10, 3)


async def test_the_same_key_with_another_body_is_refused(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: None
) -> None:
    headers = with_key(keys.service, "reused")
    first = await client.post("/v1/orders", headers=headers, json=order_body(keys, 1))
    assert first.status_code == 201
    other = await client.post("/v1/orders", headers=headers, json=order_body(keys, 2))
    body = assert_problem(other, 422, "idempotency-key-reused")
    assert "reused" in body["detail"]
    # Another URL under the same key is another request too.
    elsewhere = await client.post(
        "/v1/customers", headers=headers, json={"name": "Someone", "email": "a@example.com"}
    )
    assert_problem(elsewhere, 422, "idempotency-key-reused")
    assert await count(database, Order) == 1
    assert await stock(client, keys) == (10, 1)
    # The original is still replayed.
    assert_replay_of(
        await client.post("/v1/orders", headers=headers, json=order_body(keys, 1)), first
    )


async def test_the_same_json_written_differently_is_a_replay(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: None
) -> None:
    headers = {**with_key(keys.service, "spacing"), "Content-Type": "application/json"}
    compact = (
        f'{{"customer_id":"{keys.customer_id}","lines":[{{"sku":"{SKU}","quantity":2}}],'
        '"metadata":{"a":1,"b":[1,2]}}'
    )
    reordered = (
        f'{{ "metadata": {{ "b": [1, 2], "a": 1 }},\n  "lines": [ {{ "quantity": 2, '
        f'"sku": "{SKU}" }} ],\n  "customer_id": "{keys.customer_id}" }}'
    )
    first = await client.post("/v1/orders", headers=headers, content=compact)
    assert first.status_code == 201, first.text
    replay = await client.post("/v1/orders", headers=headers, content=reordered)
    assert_replay_of(replay, first)
    assert await count(database, Order) == 1


async def test_keys_are_scoped_to_the_api_key(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: None
) -> None:
    body = order_body(keys, 1)
    by_service = await client.post("/v1/orders", headers=with_key(keys.service, "k"), json=body)
    by_staff = await client.post("/v1/orders", headers=with_key(keys.staff, "k"), json=body)
    assert by_service.status_code == 201
    assert by_staff.status_code == 201
    assert REPLAYED not in by_staff.headers
    assert by_service.json()["id"] != by_staff.json()["id"]
    assert await count(database, Order) == 2
    assert await stock(client, keys) == (10, 2)
    assert {(r.principal_id, r.key) for r in await records(database)} == {
        (keys.ids["service"], "k"),
        (keys.ids["staff"], "k"),
    }


async def test_a_refused_order_stores_nothing_and_its_retry_runs_again(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: None
) -> None:
    headers = with_key(keys.service, "after-restock")
    body = order_body(keys, 15)
    refused = await client.post("/v1/orders", headers=headers, json=body)
    assert_problem(refused, 409, "insufficient-stock")
    assert await records(database) == []
    again = await client.post("/v1/orders", headers=headers, json=body)
    assert_problem(again, 409, "insufficient-stock")
    assert REPLAYED not in again.headers

    await adjust_stock(client, keys, 5)
    retried = await client.post("/v1/orders", headers=headers, json=body)
    assert retried.status_code == 201, retried.text
    assert REPLAYED not in retried.headers
    assert await count(database, Order) == 1
    assert await stock(client, keys) == (15, 15)
    assert_replay_of(await client.post("/v1/orders", headers=headers, json=body), retried)


async def test_a_validation_failure_stores_nothing(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: None
) -> None:
    headers = with_key(keys.service, "first-try-invalid")
    invalid = await client.post("/v1/orders", headers=headers, json=order_body(keys, 1, total=5))
    assert_invalid(invalid, "body.total", "read-only")
    unknown = await client.post(
        "/v1/orders",
        headers=headers,
        json={"customer_id": keys.customer_id, "lines": [{"sku": "NOPE", "quantity": 1}]},
    )
    assert_problem(unknown, 422, "unknown-sku")
    assert await records(database) == []
    fixed = await client.post("/v1/orders", headers=headers, json=order_body(keys, 1))
    assert fixed.status_code == 201, fixed.text
    assert REPLAYED not in fixed.headers


async def test_without_a_key_every_request_runs(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: None
) -> None:
    for _ in range(3):
        response = await client.post("/v1/orders", headers=keys.service, json=order_body(keys))
        assert response.status_code == 201
        assert REPLAYED not in response.headers
    assert await count(database, Order) == 3
    assert await records(database) == []


# --- the other writing POSTs ---------------------------------------------------------------


async def test_api_key_replay_hides_the_secret(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    headers = with_key(keys.admin, "new-key")
    body = {"name": "Storefront", "role": "service"}
    keys_before = await count(database, ApiKey)
    first = await client.post("/v1/api-keys", headers=headers, json=body)
    assert first.status_code == 201, first.text
    secret = first.json()["key"]
    assert secret.startswith("sf_")

    replay = await client.post("/v1/api-keys", headers=headers, json=body)
    assert replay.status_code == 201
    assert replay.headers[REPLAYED] == "true"
    assert replay.json() == {**first.json(), "key": None}
    assert replay.content == first.content.replace(f'"{secret}"'.encode(), b"null")
    assert secret not in replay.text
    assert await count(database, ApiKey) == keys_before + 1
    # The secret is not kept in the idempotency record either.
    (record,) = await records(database)
    assert secret not in str(record.response_body)
    # The key shown the first time works.
    works = await client.get("/v1/products", headers={"Authorization": f"Bearer {secret}"})
    assert works.status_code == 200


async def test_product_replay_keeps_etag_and_location(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    headers = with_key(keys.staff, "new-product")
    body = {"sku": "IDEM-NEW", "name": "New", "unit_price": 500, "currency": "EUR"}
    first = await client.post("/v1/products", headers=headers, json=body)
    assert first.status_code == 201, first.text
    assert first.headers["Location"] == "/v1/products/IDEM-NEW"
    replay = await client.post("/v1/products", headers=headers, json=body)
    assert_replay_of(replay, first)
    assert replay.headers["ETag"] == first.headers["ETag"]
    assert replay.headers["Location"] == "/v1/products/IDEM-NEW"
    assert await count(database, Product) == 1
    # Without the key, the same body is a new request: the SKU exists.
    assert_problem(
        await client.post("/v1/products", headers=keys.staff, json=body), 409, "already-exists"
    )


async def test_adjustment_replay_adjusts_once(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: None
) -> None:
    headers = with_key(keys.staff, "delivery-42")
    body = {"delta": 7, "reason": "delivery 42"}
    first = await client.post(f"/v1/inventory/{SKU}/adjustments", headers=headers, json=body)
    assert first.status_code == 201, first.text
    replay = await client.post(f"/v1/inventory/{SKU}/adjustments", headers=headers, json=body)
    assert_replay_of(replay, first)
    assert await stock(client, keys) == (17, 0)
    # The same key on another SKU's URL is another request.
    other = await client.post("/v1/inventory/OTHER/adjustments", headers=headers, json=body)
    assert_problem(other, 422, "idempotency-key-reused")


async def test_customer_replay_keeps_location(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    headers = with_key(keys.service, "signup-1")
    body = {"name": "Ada", "email": "ada@example.com"}
    customers_before = await count(database, Customer)
    first = await client.post("/v1/customers", headers=headers, json=body)
    assert first.status_code == 201, first.text
    replay = await client.post("/v1/customers", headers=headers, json=body)
    assert_replay_of(replay, first)
    assert replay.headers["Location"] == f"/v1/customers/{first.json()['id']}"
    assert await count(database, Customer) == customers_before + 1


async def test_shipment_replay_ships_once(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: None
) -> None:
    order = await client.post("/v1/orders", headers=keys.service, json=order_body(keys, 4))
    order_id = order.json()["id"]
    headers = with_key(keys.staff, "ship-1")
    body = {"lines": [{"sku": SKU, "quantity": 3}]}
    url = f"/v1/orders/{order_id}/shipments"
    first = await client.post(url, headers=headers, json=body)
    assert first.status_code == 201, first.text
    replay = await client.post(url, headers=headers, json=body)
    assert_replay_of(replay, first)
    assert replay.json()["order"]["status"] == "partially_shipped"
    assert await count(database, Shipment) == 1
    assert await stock(client, keys) == (7, 1)
    # A second shipment needs a new key; with one it runs.
    second = await client.post(url, headers=with_key(keys.staff, "ship-2"), json=body)
    assert_problem(second, 409, "shipment-exceeds-reserved")


async def test_cancel_replay_answers_200_instead_of_a_conflict(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: None
) -> None:
    order = await client.post("/v1/orders", headers=keys.service, json=order_body(keys, 4))
    order_id = order.json()["id"]
    headers = with_key(keys.customer, "cancel-1")
    url = f"/v1/orders/{order_id}/cancel"
    first = await client.post(url, headers=headers, json={"reason": "changed my mind"})
    assert first.status_code == 200, first.text
    assert REPLAYED not in first.headers
    replay = await client.post(url, headers=headers, json={"reason": "changed my mind"})
    assert_replay_of(replay, first)
    assert replay.json()["status"] == "cancelled"
    async with database.transaction(write=False) as session:
        releases = await session.scalar(
            select(func.count())
            .select_from(StockMovement)
            .where(StockMovement.reason == "order_cancelled")
        )
    assert releases == 1
    assert await stock(client, keys) == (10, 0)
    # Without the key, cancelling again is the conflict it is.
    assert_problem(
        await client.post(url, headers=keys.customer, json={"reason": "again"}),
        409,
        "invalid-state-transition",
    )


# --- the header ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"x" * 256, id="256-chars"),
        pytest.param(b"two words", id="space"),
        pytest.param("caf\u00e9".encode(), id="non-ascii"),
        pytest.param(b"tab\there", id="tab"),
    ],
)
async def test_an_invalid_key_is_refused(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: None, key: bytes
) -> None:
    headers = [(name.encode(), value.encode()) for name, value in keys.service.items()]
    response = await client.post(
        "/v1/orders", headers=[*headers, (b"Idempotency-Key", key)], json=order_body(keys)
    )
    assert_invalid(response, "header.Idempotency-Key", "visible ASCII")
    assert await count(database, Order) == 0
    assert await records(database) == []


async def test_a_key_of_255_visible_characters_is_accepted(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: None
) -> None:
    key = "".join(chr(0x21 + i % 94) for i in range(255))
    first = await client.post(
        "/v1/orders", headers=with_key(keys.service, key), json=order_body(keys)
    )
    assert first.status_code == 201, first.text
    replay = await client.post(
        "/v1/orders", headers=with_key(keys.service, key), json=order_body(keys)
    )
    assert_replay_of(replay, first)
    assert [r.key for r in await records(database)] == [key]


# --- expiry --------------------------------------------------------------------------------


async def expire_all(database: Database, moment: datetime) -> None:
    async with database.transaction() as session:
        await session.execute(update(IdempotencyRecord).values(expires_at=moment))


async def test_an_expired_record_is_ignored_and_the_request_runs_again(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: None
) -> None:
    headers = with_key(keys.service, "old-key")
    first = await client.post("/v1/orders", headers=headers, json=order_body(keys))
    assert first.status_code == 201
    await expire_all(database, datetime.now(UTC) - timedelta(seconds=1))

    again = await client.post("/v1/orders", headers=headers, json=order_body(keys))
    assert again.status_code == 201, again.text
    assert REPLAYED not in again.headers
    assert again.json()["id"] != first.json()["id"]
    assert await count(database, Order) == 2
    (record,) = await records(database)
    assert record.response_body is not None
    assert again.json()["id"] in record.response_body
    assert record.expires_at > datetime.now(UTC) + timedelta(hours=23)
    # And the fresh record is replayed as usual.
    assert_replay_of(await client.post("/v1/orders", headers=headers, json=order_body(keys)), again)


async def test_an_expired_key_may_carry_a_new_body(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: None
) -> None:
    headers = with_key(keys.service, "recycled")
    assert (await client.post("/v1/orders", headers=headers, json=order_body(keys))).is_success
    await expire_all(database, datetime.now(UTC) - timedelta(seconds=1))
    other = await client.post("/v1/orders", headers=headers, json=order_body(keys, 2))
    assert other.status_code == 201, other.text
    assert await stock(client, keys) == (10, 3)


async def test_prune_deletes_expired_records_and_counts_them(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: None
) -> None:
    for key in ("a", "b", "c"):
        response = await client.post(
            "/v1/orders", headers=with_key(keys.service, key), json=order_body(keys)
        )
        assert response.status_code == 201
    async with database.transaction() as session:
        await session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key.in_(["a", "b"]))
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=5))
        )
    async with database.transaction() as session:
        assert await idempotency_service.prune(session) == 2
    assert [r.key for r in await records(database)] == ["c"]
    async with database.transaction() as session:
        assert await idempotency_service.prune(session) == 0
    # A moment after the TTL, the rest goes too.
    async with database.transaction() as session:
        later = datetime.now(UTC) + timedelta(hours=24, minutes=1)
        assert await idempotency_service.prune(session, now=later) == 1
    assert await records(database) == []
    assert await count(database, Order) == 3


async def test_records_are_kept_for_the_default_24_hours(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: None
) -> None:
    response = await client.post(
        "/v1/orders", headers=with_key(keys.service, "ttl"), json=order_body(keys)
    )
    assert response.status_code == 201
    (record,) = await records(database)
    assert record.expires_at - record.created_at == timedelta(hours=24)
    assert abs((datetime.now(UTC) - record.created_at).total_seconds()) < 60
    assert record.status_code == 201
    assert record.method == "POST"
    assert record.path == "/v1/orders"


@pytest.fixture
async def two_hour_client(
    database_url: str, database: Database
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(
        Settings(database_url=database_url, idempotency_ttl_hours=2), database=database
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as c:
        yield app, c
    await app.state.key_usage.drain()


async def test_the_ttl_comes_from_settings(
    two_hour_client: tuple[FastAPI, httpx.AsyncClient],
    keys: Keys,
    database: Database,
    product: None,
) -> None:
    _, client = two_hour_client
    response = await client.post(
        "/v1/orders", headers=with_key(keys.service, "ttl-2h"), json=order_body(keys)
    )
    assert response.status_code == 201, response.text
    (record,) = await records(database)
    assert record.expires_at - record.created_at == timedelta(hours=2)
    async with database.transaction() as session:
        soon = datetime.now(UTC) + timedelta(hours=1, minutes=59)
        assert await idempotency_service.prune(session, now=soon) == 0
        later = datetime.now(UTC) + timedelta(hours=2, minutes=1)
        assert await idempotency_service.prune(session, now=later) == 1


async def test_a_key_held_too_long_by_another_transaction_is_a_409_not_a_hang(
    backend: str, database_url: str, database: Database, keys: Keys, product: None
) -> None:
    """A duplicate waits for the request holding its key only so long: a connection left
    open (a crashed host, a partition) must not block every retry indefinitely."""
    if backend != "postgresql":
        pytest.skip("SQLite serialises writers; the wait there is its busy timeout")
    app = create_app(
        Settings(database_url=database_url, idempotency_wait_seconds=0.5), database=database
    )
    transport = httpx.ASGITransport(app=app)
    holder = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute(
            "INSERT INTO idempotency_records (principal_id, key, request_hash, method, path, "
            "created_at, expires_at) VALUES ($1, 'held', 'x', 'POST', '/v1/orders', now(), "
            "now() + interval '1 hour')",
            keys.ids["service"],
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://s.test") as client:
            async with asyncio.timeout(20):
                busy = await client.post(
                    "/v1/orders", headers=with_key(keys.service, "held"), json=order_body(keys)
                )
            assert_problem(busy, 409, "idempotency-key-in-use")
            await transaction.rollback()
            retried = await client.post(
                "/v1/orders", headers=with_key(keys.service, "held"), json=order_body(keys)
            )
            assert retried.status_code == 201, retried.text
            assert REPLAYED not in retried.headers
    finally:
        await holder.close()
    assert await count(database, Order) == 1
