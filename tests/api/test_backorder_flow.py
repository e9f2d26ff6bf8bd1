"""The flow rule end to end (DESIGN §2): accept the order, backorder the shortfall, order
it plus the buffer from the preferred supplier in the same transaction, and serve the
waiting orders oldest first when stock arrives."""

from __future__ import annotations

import httpx

from stockflow.audit import repository as audit_repository
from stockflow.db.engine import Database
from stockflow.inventory import service as inventory_service
from tests.backorders import (
    adjust,
    backorder_product,
    inventory,
    line_of,
    order,
    place,
    po_lines,
    purchase_orders,
    receive,
)
from tests.conftest import Keys

SKU = "MUG-FLOW"


async def test_the_worked_example_orders_24_then_4_then_6(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    supplier_id = await backorder_product(client, keys, SKU, stock=30)

    first = await place(client, keys, {SKU: 50})
    assert line_of(first, SKU) | {"expected_available_date": None} == {
        "sku": SKU,
        "quantity": 50,
        "unit_price": 1290,
        "line_total": 64500,
        "allocated": 30,
        "backordered": 20,
        "shipped": 0,
        "expected_available_date": None,
    }
    assert line_of(first, SKU)["expected_available_date"] is not None
    assert first["fulfilment"] == "awaiting_stock"
    (po,) = await purchase_orders(client, keys)
    assert po["supplier_id"] == supplier_id
    assert po["status"] == "submitted"
    assert po["origin"] == "replenishment"
    (line,) = po["lines"]
    assert line["quantity"] == 24
    assert line["reason"] == "backorder"
    assert line["supplier_sku"] == f"S-{SKU}"
    assert line["cost_price"] == 500
    assert line["explanation"] == {
        "kind": "backorder",
        "backlog": 20,
        "on_order": 0,
        "buffer_pct": 20,
        "target": 24,
        "need": 24,
        "pack_size": 1,
        "min_order_qty": 1,
        "quantity": 24,
        "available": None,
        "reorder_point": None,
        "reorder_up_to": None,
        "position": None,
        "caused_by": [
            {
                "order_id": first["id"],
                "order_line_id": line["explanation"]["caused_by"][0]["order_line_id"],
                "backordered": 20,
            }
        ],
    }

    second = await place(client, keys, {SKU: 3})
    third = await place(client, keys, {SKU: 5})
    assert line_of(second, SKU)["backordered"] == 3
    assert line_of(third, SKU)["backordered"] == 5
    lines = po_lines(await purchase_orders(client, keys), SKU)
    assert [line["quantity"] for line in lines] == [24, 4, 6]
    assert [
        (e["backlog"], e["on_order"], e["target"], e["need"])
        for e in (line["explanation"] for line in lines)
    ] == [(20, 0, 24, 24), (23, 24, 28, 4), (28, 28, 34, 6)]

    stock = await inventory(client, keys, SKU)
    assert (stock["on_hand"], stock["reserved"], stock["backordered"], stock["on_order"]) == (
        30,
        30,
        28,
        34,
    )

    # Receiving 24 on the first PO serves the waiting orders oldest first.
    first_po = (await purchase_orders(client, keys))[0]
    receipt = await receive(client, keys, first_po["id"], {SKU: 24})
    assert [(a["order_id"], a["units"]) for a in receipt["allocations"]] == [
        (first["id"], 20),
        (second["id"], 3),
        (third["id"], 1),
    ]
    assert receipt["purchase_order"]["status"] == "received"
    served_first = await order(client, keys, first["id"])
    served_second = await order(client, keys, second["id"])
    served_third = await order(client, keys, third["id"])
    assert (line_of(served_first, SKU)["allocated"], served_first["fulfilment"]) == (
        50,
        "ready_to_ship",
    )
    assert (line_of(served_second, SKU)["allocated"], served_second["fulfilment"]) == (
        3,
        "ready_to_ship",
    )
    assert (
        line_of(served_third, SKU)["allocated"],
        line_of(served_third, SKU)["backordered"],
        served_third["fulfilment"],
    ) == (1, 4, "awaiting_stock")
    stock = await inventory(client, keys, SKU)
    assert (stock["on_hand"], stock["reserved"], stock["backordered"], stock["on_order"]) == (
        54,
        54,
        4,
        10,
    )
    async with database.transaction() as session:
        assert await inventory_service.reconcile(session) == []


async def test_pack_12_minimum_24_then_nothing_and_buffer_0_orders_the_shortfall(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await backorder_product(client, keys, "PACKED", pack_size=12, min_order_qty=24)
    await place(client, keys, {"PACKED": 4})
    await place(client, keys, {"PACKED": 10})
    lines = po_lines(await purchase_orders(client, keys), "PACKED")
    assert [line["quantity"] for line in lines] == [24]
    assert (await inventory(client, keys, "PACKED"))["on_order"] == 24

    await backorder_product(client, keys, "EXACT", buffer_pct=0)
    await place(client, keys, {"EXACT": 7})
    assert [
        line["quantity"] for line in po_lines(await purchase_orders(client, keys), "EXACT")
    ] == [7]


async def test_a_cancelled_orders_stock_goes_to_the_waiting_order_first(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await backorder_product(client, keys, SKU, stock=5)
    holder = await place(client, keys, {SKU: 5})
    waiting = await place(client, keys, {SKU: 3})
    assert line_of(waiting, SKU)["backordered"] == 3

    cancelled = await client.post(
        f"/v1/orders/{holder['id']}/cancel", json={"reason": "changed mind"}, headers=keys.staff
    )
    assert cancelled.status_code == 200, cancelled.text
    served = await order(client, keys, waiting["id"])
    assert (line_of(served, SKU)["allocated"], line_of(served, SKU)["backordered"]) == (3, 0)
    assert served["fulfilment"] == "ready_to_ship"
    # Only what the waiting order did not need is left for a new one.
    stock = await inventory(client, keys, SKU)
    assert (stock["available"], stock["backordered"]) == (2, 0)
    late = await place(client, keys, {SKU: 2})
    assert line_of(late, SKU)["backordered"] == 0


async def test_a_positive_adjustment_serves_the_backlog(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    await backorder_product(client, keys, SKU)
    waiting = await place(client, keys, {SKU: 4})
    adjusted = await adjust(client, keys, SKU, 3)
    assert adjusted["inventory"]["reserved"] == 3
    assert adjusted["inventory"]["backordered"] == 1
    served = await order(client, keys, waiting["id"])
    assert (line_of(served, SKU)["allocated"], line_of(served, SKU)["backordered"]) == (3, 1)
    async with database.transaction(write=False) as session:
        [record] = await audit_repository.for_resource(session, "stock_level", f"{SKU}@default")
    assert record.before == {"location": "default", "on_hand": 0, "reserved": 0}
    assert record.after is not None
    assert (record.after["on_hand"], record.after["reserved"]) == (3, 3)
    assert record.after["served_orders"] == [{"order_id": waiting["id"], "units": 3}]
