"""Events (the outbox): every state change writes its events in its own transaction, with
the object as the API shows it; staff read them under /v1/events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update

from stockflow.app import create_app
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.db.models import PurchaseOrder
from stockflow.orders import readiness
from stockflow.workers import maintenance
from tests.assertions import assert_problem
from tests.backorders import (
    adjust,
    backorder_product,
    create_purchase_order,
    order,
    place,
    po_action,
    purchase_order,
    purchase_orders,
    receive,
)
from tests.conftest import Keys

SKU = "MUG-EVT"


async def events(
    client: httpx.AsyncClient, keys: Keys, **params: str | list[str]
) -> list[dict[str, Any]]:
    """Every event matching ``params``, oldest first, read page by page."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query: dict[str, Any] = {**params, "limit": "7"}
        if cursor:
            query["cursor"] = cursor
        response = await client.get("/v1/events", params=query, headers=keys.staff)
        assert response.status_code == 200, response.text
        body = response.json()
        found.extend(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return sorted(found, key=lambda event: event["id"])


def types_of(found: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in found]


async def reject_product(
    client: httpx.AsyncClient, keys: Keys, sku: str, stock: int, **fields: Any
) -> None:
    response = await client.post(
        "/v1/products",
        json={"sku": sku, "name": sku, "unit_price": 1000, "currency": "EUR", **fields},
        headers=keys.staff,
    )
    assert response.status_code == 201, response.text
    await adjust(client, keys, sku, stock)


async def test_an_order_tells_order_created_with_the_order_as_the_api_shows_it(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await reject_product(client, keys, SKU, 10)
    placed = await place(client, keys, {SKU: 3}, metadata={"channel": "web"})

    (created,) = await events(client, keys, object_id=placed["id"])
    assert created["type"] == "order.created"
    assert created["id"].startswith("evt_")
    assert created["data"] == {"object": placed}
    assert created["data"]["object"] == await order(client, keys, placed["id"])
    single = await client.get(f"/v1/events/{created['id']}", headers=keys.admin)
    assert single.status_code == 200
    assert single.json() == created


async def test_a_refused_order_leaves_no_event(client: httpx.AsyncClient, keys: Keys) -> None:
    await reject_product(client, keys, SKU, 2)
    refused = await client.post(
        "/v1/orders",
        json={"customer_id": keys.customer_id, "lines": [{"sku": SKU, "quantity": 3}]},
        headers=keys.staff,
    )
    assert_problem(refused, 409, "insufficient-stock")
    assert await events(client, keys, type="order.created") == []


async def settle(database: Database) -> list[str]:
    """Run the worker's readiness job once: the orders it told ready to ship."""
    async with database.transaction() as session:
        return await readiness.settle(session, now=datetime.now(UTC))


async def test_a_backordered_order_tells_created_then_backordered_then_ready_to_ship(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    await backorder_product(client, keys, SKU, stock=2)
    placed = await place(client, keys, {SKU: 5})
    assert placed["lines"][0]["backordered"] == 3

    told = await events(client, keys, object_id=placed["id"])
    assert types_of(told) == ["order.created", "order.backordered"]
    assert all(event["data"] == {"object": placed} for event in told)
    assert placed["lines"][0]["expected_available_date"] is not None

    (po,) = await purchase_orders(client, keys)
    assert types_of(await events(client, keys, object_id=po["id"])) == [
        "purchase_order.created",
        "purchase_order.submitted",
    ]
    await receive(client, keys, po["id"], {SKU: 2})
    # Two of three waiting units: still waiting, so not ready to ship yet.
    assert await settle(database) == []
    assert "order.ready_to_ship" not in types_of(await events(client, keys, object_id=placed["id"]))
    await receive(client, keys, po["id"], {SKU: 1})
    assert await settle(database) == [placed["id"]]
    assert await settle(database) == []  # told once
    ready = (await events(client, keys, object_id=placed["id"]))[-1]
    assert ready["type"] == "order.ready_to_ship"
    assert ready["data"]["object"] == await order(client, keys, placed["id"])
    assert ready["data"]["object"]["fulfilment"] == "ready_to_ship"
    received = await events(client, keys, object_id=po["id"], type="purchase_order.received")
    assert [event["data"]["receipt"]["lines"] for event in received] == [
        [{"sku": SKU, "quantity": 2, "over_received": 0}],
        [{"sku": SKU, "quantity": 1, "over_received": 0}],
    ]
    assert received[-1]["data"]["object"] == await purchase_order(client, keys, po["id"])


async def test_a_cancellation_tells_its_reason_and_readies_the_order_it_serves(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    await backorder_product(client, keys, SKU, stock=4)
    first = await place(client, keys, {SKU: 4})
    waiting = await place(client, keys, {SKU: 3})
    cancelled = await client.post(
        f"/v1/orders/{first['id']}/cancel",
        json={"reason": "customer changed mind"},
        headers=keys.staff,
    )
    assert cancelled.status_code == 200, cancelled.text

    told = (await events(client, keys, object_id=first["id"]))[-1]
    assert told["type"] == "order.cancelled"
    assert told["data"]["object"]["cancel_reason"] == "customer changed mind"
    assert told["data"]["object"] == cancelled.json()
    assert await settle(database) == [waiting["id"]]
    ready = (await events(client, keys, object_id=waiting["id"]))[-1]
    assert ready["type"] == "order.ready_to_ship"
    assert ready["data"]["object"]["lines"][0]["allocated"] == 3


async def test_each_shipment_tells_order_shipped_with_the_shipment(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await reject_product(client, keys, SKU, 10)
    placed = await place(client, keys, {SKU: 5})
    shipments = []
    for quantity in (2, 3):
        response = await client.post(
            f"/v1/orders/{placed['id']}/shipments",
            json={"lines": [{"sku": SKU, "quantity": quantity}]},
            headers=keys.staff,
        )
        assert response.status_code == 201, response.text
        shipments.append(response.json())

    told = await events(client, keys, object_id=placed["id"], type="order.shipped")
    assert [event["data"]["object"]["status"] for event in told] == [
        "partially_shipped",
        "shipped",
    ]
    for event, shipment in zip(told, shipments, strict=True):
        assert event["data"]["object"] == shipment["order"]
        assert event["data"]["shipment"] == {
            "id": shipment["id"],
            "lines": shipment["lines"],
            "created_at": shipment["created_at"],
        }


async def test_adjustments_tell_stock_adjusted_and_a_fall_to_the_threshold_tells_stock_low_once(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await reject_product(client, keys, SKU, 10, low_stock_threshold=4)
    product_id = (await client.get(f"/v1/products/{SKU}", headers=keys.staff)).json()["id"]
    (adjusted,) = await events(client, keys, type="stock.adjusted")
    assert adjusted["data"]["object"]["available"] == 10
    assert adjusted["data"]["movement"]["on_hand_delta"] == 10

    await place(client, keys, {SKU: 5})  # 10 -> 5: above the threshold
    assert await events(client, keys, type="stock.low") == []
    await place(client, keys, {SKU: 1})  # 5 -> 4: at the threshold
    (low,) = await events(client, keys, type="stock.low")
    assert low["data"]["object"]["available"] == 4
    assert low["data"]["low_stock_threshold"] == 4
    await place(client, keys, {SKU: 1})  # still low: told once per fall
    await adjust(client, keys, SKU, -2)  # 3 -> 1
    assert len(await events(client, keys, type="stock.low")) == 1

    await adjust(client, keys, SKU, 10)  # back above
    await adjust(client, keys, SKU, -9)  # 11 -> 2: a new fall
    lows = await events(client, keys, type="stock.low")
    assert [event["data"]["object"]["available"] for event in lows] == [4, 2]
    assert {event["id"] for event in await events(client, keys, object_id=product_id)} >= {
        event["id"] for event in lows
    }


async def test_a_purchase_order_tells_each_step(client: httpx.AsyncClient, keys: Keys) -> None:
    supplier_id = await backorder_product(client, keys, SKU)
    manual = await create_purchase_order(client, keys, supplier_id, {SKU: 10})
    await po_action(client, keys, manual["id"], "submit")
    acknowledged = await po_action(
        client, keys, manual["id"], "acknowledge", {"expected_delivery_date": "2030-01-15"}
    )
    second = await create_purchase_order(client, keys, supplier_id, {SKU: 4})
    await po_action(client, keys, second["id"], "cancel", {"reason": "duplicate"})

    told = await events(client, keys, object_id=manual["id"])
    assert types_of(told) == [
        "purchase_order.created",
        "purchase_order.submitted",
        "purchase_order.acknowledged",
    ]
    assert told[-1]["data"]["object"] == acknowledged
    assert types_of(await events(client, keys, object_id=second["id"])) == [
        "purchase_order.created",
        "purchase_order.cancelled",
    ]


async def test_events_filter_by_several_types_and_page_newest_first(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await reject_product(client, keys, SKU, 100)
    placed = [await place(client, keys, {SKU: 1}) for _ in range(9)]
    found = await events(client, keys, type=["order.created", "stock.adjusted"])
    assert types_of(found) == ["stock.adjusted"] + ["order.created"] * 9
    assert [event["data"]["object"]["id"] for event in found[1:]] == [o["id"] for o in placed]
    first_page = await client.get("/v1/events", params={"limit": 3}, headers=keys.staff)
    assert [event["id"] for event in first_page.json()["data"]] == [
        event["id"] for event in reversed(found[-3:])
    ]


async def test_events_are_for_staff_and_admin_keys(client: httpx.AsyncClient, keys: Keys) -> None:
    for role in ("service", "customer"):
        response = await client.get("/v1/events", headers=keys.for_role(role))
        assert_problem(response, 403, "forbidden")
    missing = await client.get("/v1/events/evt_01KB3J5Q2W8Z6Y4X0V9T7S5R3P", headers=keys.staff)
    assert_problem(missing, 404, "not-found")
    unknown_type = await client.get("/v1/events", params={"type": "order.nope"}, headers=keys.staff)
    assert unknown_type.status_code == 422


async def test_a_consolidated_draft_tells_created_once_and_submitted_when_its_window_closes(
    database_url: str, database: Database, keys: Keys
) -> None:
    app = create_app(
        Settings(database_url=database_url, po_consolidation_seconds=3600), database=database
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as client:
        await backorder_product(client, keys, SKU)
        await place(client, keys, {SKU: 2})
        await place(client, keys, {SKU: 3})
        (draft,) = await purchase_orders(client, keys)
        assert draft["status"] == "draft"
        assert types_of(await events(client, keys, object_id=draft["id"])) == [
            "purchase_order.created"
        ]
        async with database.transaction() as session:
            await session.execute(
                update(PurchaseOrder)
                .where(PurchaseOrder.id == draft["id"])
                .values(submit_after=datetime.now(UTC) - timedelta(seconds=1))
            )
        assert await maintenance.submit_due_purchase_orders(database) == [draft["id"]]
        told = await events(client, keys, object_id=draft["id"])
        assert types_of(told) == ["purchase_order.created", "purchase_order.submitted"]
        assert told[-1]["data"]["object"] == await purchase_order(client, keys, draft["id"])
    await app.state.key_usage.drain()


async def test_the_low_stock_threshold_is_set_changed_and_removed_on_the_product(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await reject_product(client, keys, SKU, 10)
    path = f"/v1/products/{SKU}"
    assert (await client.get(path, headers=keys.staff)).json()["low_stock_threshold"] is None
    for value in (3, 0, None):
        response = await client.patch(path, json={"low_stock_threshold": value}, headers=keys.staff)
        assert response.status_code == 200, response.text
        assert response.json()["low_stock_threshold"] == value
    refused = await client.patch(path, json={"low_stock_threshold": -1}, headers=keys.staff)
    assert_problem(refused, 422, "validation-error")
    await client.patch(path, json={"low_stock_threshold": 9}, headers=keys.staff)
    await place(client, keys, {SKU: 1})
    (low,) = await events(client, keys, type="stock.low")
    assert low["data"]["low_stock_threshold"] == 9
