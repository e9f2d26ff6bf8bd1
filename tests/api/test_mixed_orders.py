"""Orders mixing `reject` and `backorder` products, and the reorder point (DESIGN §2).

A short `reject` line refuses the whole order, even when a `backorder` line of the same
order has already reserved stock and planned a purchase on its way through placement: all
of it must roll back. The reorder point runs after the backorder rule in the same order and
tops the stock position up without a buffer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from stockflow.app import create_app
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.inventory import service as inventory_service
from tests.assertions import assert_problem
from tests.backorders import (
    backorder_product,
    create_supplier,
    inventory,
    line_of,
    place,
    po_lines,
    purchase_orders,
)
from tests.conftest import Keys

# Sorted before and after the backorder SKU, so the short reject line is met both after
# and before placement has reserved and planned for the backorder line.
EARLY_REJECT = "AAA-REJECT"
BACKORDER = "MMM-BACKORDER"
LATE_REJECT = "ZZZ-REJECT"


@pytest.fixture(autouse=True)
async def reconciles(database: Database) -> AsyncIterator[None]:
    yield
    async with database.transaction(write=False) as session:
        assert await inventory_service.reconcile(session) == []


async def table_rows(database: Database, *tables: str) -> dict[str, list[str]]:
    async with database.transaction(write=False) as session:
        return {
            table: sorted(
                repr(tuple(row))
                for row in (await session.execute(text(f"SELECT * FROM {table}"))).all()
            )
            for table in tables
        }


TOUCHED_BY_ORDERS = (
    "orders",
    "order_lines",
    "stock_movements",
    "stock_levels",
    "products",
    "purchase_orders",
    "purchase_order_lines",
    "idempotency_records",
    "audit_records",
)


async def post_order(
    client: httpx.AsyncClient, keys: Keys, lines: dict[str, int], **headers: str
) -> httpx.Response:
    return await client.post(
        "/v1/orders",
        json={
            "customer_id": keys.customer_id,
            "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines.items()],
        },
        headers={**keys.staff, **headers},
    )


def counters(stock: dict[str, Any]) -> tuple[int, int, int, int]:
    return stock["on_hand"], stock["reserved"], stock["backordered"], stock["on_order"]


# --- a short reject line refuses everything -------------------------------------------------


async def mixed_catalog(client: httpx.AsyncClient, keys: Keys, reject_sku: str) -> None:
    """A backorder product with an order already waiting (and its PO), and a reject product
    with 4 in stock, both from one supplier."""
    supplier_id = await create_supplier(client, keys)
    await backorder_product(client, keys, BACKORDER, supplier_id=supplier_id, stock=3)
    await backorder_product(
        client, keys, reject_sku, supplier_id=supplier_id, stock=4, shortage_policy="reject"
    )
    waiting = await place(client, keys, {BACKORDER: 5})
    assert line_of(waiting, BACKORDER)["backordered"] == 2


@pytest.mark.parametrize("reject_sku", [EARLY_REJECT, LATE_REJECT])
async def test_a_short_reject_line_refuses_the_whole_mixed_order(
    client: httpx.AsyncClient, keys: Keys, database: Database, reject_sku: str
) -> None:
    await mixed_catalog(client, keys, reject_sku)
    await client.post(
        f"/v1/inventory/{BACKORDER}/adjustments",
        json={"delta": 6, "reason": "count"},
        headers=keys.staff,
    )
    # 6 arrived: 2 went to the waiting order, 4 are available for the next one.
    before_backorder = await inventory(client, keys, BACKORDER)
    assert counters(before_backorder) == (9, 9 - 4, 0, 3)
    before_reject = await inventory(client, keys, reject_sku)
    pos_before = await purchase_orders(client, keys)
    rows_before = await table_rows(database, *TOUCHED_BY_ORDERS)

    response = await post_order(
        client, keys, {BACKORDER: 20, reject_sku: 5}, **{"Idempotency-Key": "mixed-1"}
    )

    assert_problem(
        response,
        409,
        "insufficient-stock",
        items=[{"sku": reject_sku, "requested": 5, "available": 4}],
    )
    assert reject_sku in response.json()["detail"]
    assert BACKORDER not in response.json()["detail"]
    assert await inventory(client, keys, BACKORDER) == before_backorder
    assert await inventory(client, keys, reject_sku) == before_reject
    assert await purchase_orders(client, keys) == pos_before
    assert await table_rows(database, *TOUCHED_BY_ORDERS) == rows_before


@pytest.mark.parametrize("reject_sku", [EARLY_REJECT, LATE_REJECT])
async def test_a_fine_reject_line_and_a_short_backorder_line_are_both_accepted(
    client: httpx.AsyncClient, keys: Keys, reject_sku: str
) -> None:
    await mixed_catalog(client, keys, reject_sku)
    (first_po,) = await purchase_orders(client, keys)

    order = await place(client, keys, {BACKORDER: 6, reject_sku: 4})

    assert order["fulfilment"] == "awaiting_stock"
    rejecting = line_of(order, reject_sku)
    assert (rejecting["allocated"], rejecting["backordered"]) == (4, 0)
    assert rejecting["expected_available_date"] is None
    backordering = line_of(order, BACKORDER)
    # Nothing left after the first order: all 6 wait, behind that order's 2.
    assert (backordering["allocated"], backordering["backordered"]) == (0, 6)
    assert backordering["expected_available_date"] is not None
    assert counters(await inventory(client, keys, reject_sku)) == (4, 4, 0, 0)
    # B 8, O 3 (the first order's 2 plus 20 %): target 10, 7 more.
    assert counters(await inventory(client, keys, BACKORDER)) == (3, 3, 8, 10)
    pos = await purchase_orders(client, keys)
    assert po_lines(pos, reject_sku) == []
    assert [
        (line["quantity"], line["explanation"]["backlog"], line["explanation"]["on_order"])
        for line in po_lines(pos, BACKORDER)
    ] == [(3, 2, 0), (7, 8, 3)]
    assert pos[0] == first_po
    (caused,) = po_lines(pos, BACKORDER)[1]["explanation"]["caused_by"]
    assert (caused["order_id"], caused["backordered"]) == (order["id"], 6)


# --- with a consolidation window: the draft is left as it was ------------------------------


@pytest.fixture
async def consolidating(database: Database, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A deployment collecting shortages on one replenishment draft per supplier."""
    app: FastAPI = create_app(
        Settings(database_url=database_url, po_consolidation_seconds=3600), database=database
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as c:
        yield c
    await app.state.key_usage.drain()


async def test_a_refused_mixed_order_adds_nothing_to_the_open_draft(
    consolidating: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    client = consolidating
    await mixed_catalog(client, keys, LATE_REJECT)
    (draft,) = await purchase_orders(client, keys)
    assert (draft["status"], [line["quantity"] for line in draft["lines"]]) == ("draft", [3])
    rows_before = await table_rows(database, *TOUCHED_BY_ORDERS)

    response = await post_order(client, keys, {BACKORDER: 30, LATE_REJECT: 9})

    assert_problem(
        response,
        409,
        "insufficient-stock",
        items=[{"sku": LATE_REJECT, "requested": 9, "available": 4}],
    )
    assert await purchase_orders(client, keys) == [draft]
    assert await table_rows(database, *TOUCHED_BY_ORDERS) == rows_before

    # The same order without the short line lands on that draft.
    await place(client, keys, {BACKORDER: 30, LATE_REJECT: 4})
    (same,) = await purchase_orders(client, keys)
    assert same["id"] == draft["id"]
    # B 32, O 3: target 39, 36 more.
    assert [line["quantity"] for line in po_lines([same], BACKORDER)] == [3, 36]


# --- the reorder point ---------------------------------------------------------------------

POINTED = "REORDER-1"


def reorder_explanation(**figures: int) -> dict[str, Any]:
    """A reorder-point explanation as the PO line stores it, from the figures that vary."""
    up_to = figures["reorder_up_to"]
    position = figures["available"] + figures["on_order"] - figures["backlog"]
    return {
        "kind": "reorder_point",
        "backlog": figures["backlog"],
        "on_order": figures["on_order"],
        "buffer_pct": 0,
        "target": up_to,
        "need": up_to - position,
        "pack_size": figures["pack_size"],
        "min_order_qty": figures["min_order_qty"],
        "quantity": figures["quantity"],
        "available": figures["available"],
        "reorder_point": figures["reorder_point"],
        "reorder_up_to": up_to,
        "position": position,
    }


async def test_a_reject_product_falling_below_its_reorder_point_is_topped_up(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    supplier_id = await backorder_product(
        client,
        keys,
        POINTED,
        stock=15,
        pack_size=5,
        shortage_policy="reject",
        reorder_point=10,
        reorder_up_to=30,
    )
    # 15 -> 11: still at or above 10, nothing.
    await place(client, keys, {POINTED: 4})
    assert await purchase_orders(client, keys) == []

    # 11 -> 8: below 10, top up to 30: 22, rounded to the pack of 5 -> 25.
    trigger = await place(client, keys, {POINTED: 3})
    (po,) = await purchase_orders(client, keys)
    assert (po["supplier_id"], po["origin"], po["status"]) == (
        supplier_id,
        "replenishment",
        "submitted",
    )
    (line,) = po["lines"]
    assert (line["quantity"], line["reason"]) == (25, "reorder_point")
    explanation = dict(line["explanation"])
    (cause,) = explanation.pop("caused_by")
    assert (cause["order_id"], cause["backordered"]) == (trigger["id"], 0)
    assert explanation == reorder_explanation(
        backlog=0,
        on_order=0,
        available=8,
        reorder_point=10,
        reorder_up_to=30,
        pack_size=5,
        min_order_qty=1,
        quantity=25,
    )
    assert counters(await inventory(client, keys, POINTED)) == (15, 7, 0, 25)

    # 8 -> 7, but 25 on order lift the position to 32: nothing more.
    await place(client, keys, {POINTED: 1})
    assert len(po_lines(await purchase_orders(client, keys), POINTED)) == 1


async def test_the_minimum_order_quantity_applies_to_the_reorder_point(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await backorder_product(
        client,
        keys,
        POINTED,
        stock=12,
        pack_size=6,
        min_order_qty=40,
        shortage_policy="reject",
        reorder_point=10,
        reorder_up_to=20,
    )
    await place(client, keys, {POINTED: 5})
    (line,) = po_lines(await purchase_orders(client, keys), POINTED)
    # Position 7, need 13; the minimum 40 rounded up to whole packs of 6 is 42.
    assert (line["explanation"]["need"], line["quantity"]) == (13, 42)


async def test_without_an_up_to_level_the_reorder_point_itself_is_the_target(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await backorder_product(
        client, keys, POINTED, stock=10, shortage_policy="reject", reorder_point=10
    )
    await place(client, keys, {POINTED: 3})
    (line,) = po_lines(await purchase_orders(client, keys), POINTED)
    assert (line["explanation"]["reorder_up_to"], line["explanation"]["target"]) == (10, 10)
    assert line["quantity"] == 3


async def test_for_a_backorder_product_the_reorder_point_runs_after_the_backorder_rule(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await backorder_product(
        client, keys, POINTED, stock=5, pack_size=5, reorder_point=10, reorder_up_to=40
    )
    order = await place(client, keys, {POINTED: 12})
    assert (line_of(order, POINTED)["allocated"], line_of(order, POINTED)["backordered"]) == (
        5,
        7,
    )
    (po,) = await purchase_orders(client, keys)
    backorder, reorder = po["lines"]
    # B 7: target ceil(8.4) = 9, rounded to the pack of 5 -> 10.
    assert (backorder["reason"], backorder["quantity"]) == ("backorder", 10)
    assert {
        name: backorder["explanation"][name]
        for name in ("backlog", "on_order", "target", "need", "quantity")
    } == {"backlog": 7, "on_order": 0, "target": 9, "need": 9, "quantity": 10}
    # Then the reorder point sees those 10 on order: position 0 + 10 - 7 = 3, up to 40.
    assert reorder["reason"] == "reorder_point"
    assert {
        name: value for name, value in reorder["explanation"].items() if name != "caused_by"
    } == (
        reorder_explanation(
            backlog=7,
            on_order=10,
            available=0,
            reorder_point=10,
            reorder_up_to=40,
            pack_size=5,
            min_order_qty=1,
            quantity=40,
        )
    )
    for line in (backorder, reorder):
        assert [cause["order_id"] for cause in line["explanation"]["caused_by"]] == [order["id"]]
    assert counters(await inventory(client, keys, POINTED)) == (5, 5, 7, 50)


async def test_a_backorder_product_served_from_stock_still_checks_its_reorder_point(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await backorder_product(client, keys, POINTED, stock=12, reorder_point=10, reorder_up_to=20)
    order = await place(client, keys, {POINTED: 4})
    assert line_of(order, POINTED)["backordered"] == 0
    (line,) = po_lines(await purchase_orders(client, keys), POINTED)
    assert (line["reason"], line["quantity"], line["explanation"]["position"]) == (
        "reorder_point",
        12,
        8,
    )


async def test_a_mixed_order_runs_each_products_own_rules(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    supplier_id = await create_supplier(client, keys)
    await backorder_product(
        client,
        keys,
        POINTED,
        supplier_id=supplier_id,
        stock=11,
        shortage_policy="reject",
        reorder_point=10,
        reorder_up_to=20,
    )
    await backorder_product(client, keys, BACKORDER, supplier_id=supplier_id, stock=1)
    await place(client, keys, {BACKORDER: 6, POINTED: 2})
    (po,) = await purchase_orders(client, keys)
    assert sorted((line["sku"], line["reason"], line["quantity"]) for line in po["lines"]) == [
        (BACKORDER, "backorder", 6),
        (POINTED, "reorder_point", 11),
    ]
