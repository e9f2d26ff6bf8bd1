"""`POST /v1/orders/preview` (DESIGN §2 "Preview"): the same rules as placing, no side
effect. A preview that drifted from placement would promise a customer dates and quantities
the real order then does not keep, so every check here compares the preview with what
placing the same order right after actually does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update

from stockflow.app import create_app
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.db.models import PurchaseOrder
from stockflow.inventory import service as inventory_service
from tests.assertions import assert_problem
from tests.backorders import (
    backorder_product,
    create_supplier,
    inventory,
    place,
    purchase_orders,
)
from tests.conftest import Keys
from tests.support import DATA_TABLES

MUG = "MUG-PREVIEW"
BOWL = "BOWL-PREVIEW"
PLATE = "PLATE-PREVIEW"

# --- helpers --------------------------------------------------------------------------------


def order_body(keys: Keys, lines: dict[str, int], **extra: Any) -> dict[str, Any]:
    return {
        "customer_id": keys.customer_id,
        "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines.items()],
        **extra,
    }


async def preview(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]
) -> httpx.Response:
    return await client.post("/v1/orders/preview", json=body, headers=headers)


async def snapshot(database: Database) -> dict[str, object]:
    """Every data table's row count and, except API keys (whose ``last_used_at`` is kept
    apart from any request), its full contents: a preview must leave all of it as it was."""
    taken: dict[str, object] = {}
    async with database.transaction(write=False) as session:
        for table in DATA_TABLES:
            rows = (await session.execute(text(f"SELECT * FROM {table}"))).all()
            taken[f"{table} rows"] = len(rows)
            if table != "api_keys":
                taken[table] = sorted(repr(tuple(row)) for row in rows)
    return taken


def po_line_ids(pos: list[dict[str, Any]]) -> set[str]:
    return {line["id"] for po in pos for line in po["lines"]}


def without_cause(explanation: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in explanation.items() if name != "caused_by"}


def planned_view(line: dict[str, Any], supplier_id: str) -> dict[str, Any]:
    """A PO line as placing created it, in the shape of a preview's planned line."""
    return {
        "supplier_id": supplier_id,
        "sku": line["sku"],
        "supplier_sku": line["supplier_sku"],
        "quantity": line["quantity"],
        "cost_price": line["cost_price"],
        "currency": line["currency"],
        "reason": line["reason"],
        "explanation": without_cause(line["explanation"]),
    }


def sort_key(line: dict[str, Any]) -> tuple[str, str]:
    return line["sku"], line["reason"]


async def assert_preview_then_place_agree(
    client: httpx.AsyncClient, keys: Keys, database: Database, body: dict[str, Any]
) -> dict[str, Any]:
    """Preview ``body`` (writing nothing), place it, and check both tell the same story;
    returns the preview."""
    before = await snapshot(database)
    pos_before = await purchase_orders(client, keys)
    response = await preview(client, {**keys.staff, "Idempotency-Key": "preview-1"}, body)
    assert response.status_code == 200, response.text
    previewed: dict[str, Any] = response.json()
    assert await snapshot(database) == before

    placed = await client.post("/v1/orders", json=body, headers=keys.staff)
    assert placed.status_code == 201, placed.text
    order = placed.json()

    for field in (
        "customer_id",
        "fulfilment",
        "currency",
        "subtotal",
        "shipping_amount",
        "tax_amount",
        "discount_amount",
        "total",
    ):
        assert previewed[field] == order[field], field
    assert previewed["lines"] == [
        {name: line[name] for name in previewed["lines"][0]} for line in order["lines"]
    ]
    assert [line["sku"] for line in previewed["lines"]] == [line["sku"] for line in order["lines"]]

    pos_after = await purchase_orders(client, keys)
    created = [
        planned_view(line, po["supplier_id"])
        for po in pos_after
        for line in po["lines"]
        if line["id"] not in po_line_ids(pos_before)
    ]
    assert sorted(previewed["purchase_order_lines"], key=sort_key) == sorted(created, key=sort_key)
    for po in pos_after:
        for line in po["lines"]:
            if line["id"] not in po_line_ids(pos_before):
                assert [cause["order_id"] for cause in line["explanation"]["caused_by"]] == [
                    order["id"]
                ]
    async with database.transaction(write=False) as session:
        assert await inventory_service.reconcile(session) == []
    return previewed


# --- scenarios: the preview is the plan placing makes ---------------------------------------


Scenario = Callable[[httpx.AsyncClient, Keys], Awaitable[dict[str, int]]]


async def design_first_order(client: httpx.AsyncClient, keys: Keys) -> dict[str, int]:
    await backorder_product(client, keys, MUG, stock=30)
    return {MUG: 50}


async def design_second_order(client: httpx.AsyncClient, keys: Keys) -> dict[str, int]:
    await backorder_product(client, keys, MUG, stock=30)
    await place(client, keys, {MUG: 50})
    return {MUG: 3}


async def covered_by_packs(client: httpx.AsyncClient, keys: Keys) -> dict[str, int]:
    # Pack 12, minimum 24: the first shortage of 4 orders 24, which covers the next 10.
    await backorder_product(client, keys, MUG, pack_size=12, min_order_qty=24)
    await place(client, keys, {MUG: 4})
    return {MUG: 10}


async def in_stock(client: httpx.AsyncClient, keys: Keys) -> dict[str, int]:
    await backorder_product(client, keys, MUG, stock=30)
    return {MUG: 30}


async def reorder_point_of_a_reject_product(
    client: httpx.AsyncClient, keys: Keys
) -> dict[str, int]:
    await backorder_product(
        client,
        keys,
        MUG,
        stock=15,
        pack_size=5,
        shortage_policy="reject",
        reorder_point=10,
        reorder_up_to=30,
    )
    return {MUG: 8}


async def backorder_then_reorder_point(client: httpx.AsyncClient, keys: Keys) -> dict[str, int]:
    await backorder_product(
        client, keys, MUG, stock=5, pack_size=5, reorder_point=10, reorder_up_to=40
    )
    return {MUG: 12}


async def mixed_lines_and_money(client: httpx.AsyncClient, keys: Keys) -> dict[str, int]:
    supplier_id = await create_supplier(client, keys)
    await backorder_product(client, keys, MUG, supplier_id=supplier_id, stock=2, unit_price=990)
    await backorder_product(
        client,
        keys,
        BOWL,
        supplier_id=supplier_id,
        stock=9,
        unit_price=450,
        shortage_policy="reject",
    )
    await backorder_product(
        client, keys, PLATE, stock=1, buffer_pct=50, pack_size=4, unit_price=1200
    )
    return {PLATE: 6, MUG: 7, BOWL: 9}


async def existing_acknowledged_po(client: httpx.AsyncClient, keys: Keys) -> dict[str, int]:
    # The first order's PO (12) is acknowledged for a date before the new PO's lead time,
    # so the next order's place in the queue is covered by the earlier PO.
    await backorder_product(client, keys, MUG)
    await place(client, keys, {MUG: 10})
    (po,) = await purchase_orders(client, keys)
    acknowledged = await client.post(
        f"/v1/purchase-orders/{po['id']}/acknowledge",
        json={"expected_delivery_date": (datetime.now(UTC).date() + timedelta(3)).isoformat()},
        headers=keys.staff,
    )
    assert acknowledged.status_code == 200, acknowledged.text
    return {MUG: 1}


async def manual_draft_covers_it(client: httpx.AsyncClient, keys: Keys) -> dict[str, int]:
    supplier_id = await backorder_product(client, keys, MUG)
    created = await client.post(
        "/v1/purchase-orders",
        json={"supplier_id": supplier_id, "lines": [{"sku": MUG, "quantity": 50}]},
        headers=keys.staff,
    )
    assert created.status_code == 201, created.text
    return {MUG: 10}


async def cancelled_backlog_leaves_cover(client: httpx.AsyncClient, keys: Keys) -> dict[str, int]:
    # An order cancellation shrinks the backlog without lowering on_order: the next small
    # order is covered by what is still coming.
    await backorder_product(client, keys, MUG)
    first = await place(client, keys, {MUG: 10})
    cancelled = await client.post(
        f"/v1/orders/{first['id']}/cancel", json={"reason": "test"}, headers=keys.staff
    )
    assert cancelled.status_code == 200, cancelled.text
    return {MUG: 5}


SCENARIOS: dict[str, Scenario] = {
    "design first order": design_first_order,
    "design second order": design_second_order,
    "covered by packs": covered_by_packs,
    "in stock": in_stock,
    "reorder point of a reject product": reorder_point_of_a_reject_product,
    "backorder then reorder point": backorder_then_reorder_point,
    "mixed lines and money": mixed_lines_and_money,
    "existing acknowledged PO": existing_acknowledged_po,
    "manual draft covers it": manual_draft_covers_it,
    "cancelled backlog leaves cover": cancelled_backlog_leaves_cover,
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_the_preview_is_what_placing_right_after_does(
    client: httpx.AsyncClient, keys: Keys, database: Database, scenario: str
) -> None:
    lines = await SCENARIOS[scenario](client, keys)
    await assert_preview_then_place_agree(
        client,
        keys,
        database,
        order_body(
            keys, lines, shipping_amount=490, tax_amount=120, discount_amount=100, metadata={}
        ),
    )


async def test_the_design_example_preview_in_full(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    supplier_id = await backorder_product(client, keys, MUG, stock=30)
    previewed = await assert_preview_then_place_agree(
        client, keys, database, order_body(keys, {MUG: 50})
    )
    lead_time = datetime.now(UTC).date() + timedelta(days=7)
    assert previewed["fulfilment"] == "awaiting_stock"
    assert previewed["lines"] == [
        {
            "sku": MUG,
            "quantity": 50,
            "unit_price": 1290,
            "line_total": 64500,
            "allocated": 30,
            "backordered": 20,
            "expected_available_date": lead_time.isoformat(),
        }
    ]
    assert previewed["purchase_order_lines"] == [
        {
            "supplier_id": supplier_id,
            "sku": MUG,
            "supplier_sku": f"S-{MUG}",
            "quantity": 24,
            "cost_price": 500,
            "currency": "EUR",
            "reason": "backorder",
            "explanation": {
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
            },
        }
    ]


async def test_a_covered_order_plans_nothing_and_promises_the_incoming_date(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    await covered_by_packs(client, keys)
    previewed = await assert_preview_then_place_agree(
        client, keys, database, order_body(keys, {MUG: 10})
    )
    assert previewed["purchase_order_lines"] == []
    (line,) = previewed["lines"]
    assert (line["allocated"], line["backordered"]) == (0, 10)
    # 4 + 10 waiting against the 24 already on order: covered by that PO.
    assert (
        line["expected_available_date"]
        == (datetime.now(UTC).date() + timedelta(days=7)).isoformat()
    )


async def test_the_acknowledged_date_is_what_the_preview_promises(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    lines = await existing_acknowledged_po(client, keys)
    previewed = await assert_preview_then_place_agree(
        client, keys, database, order_body(keys, lines)
    )
    # B 11 against 12 acknowledged for in three days; the buffer adds 2 more (target 14).
    (line,) = previewed["lines"]
    assert (
        line["expected_available_date"]
        == (datetime.now(UTC).date() + timedelta(days=3)).isoformat()
    )
    (planned,) = previewed["purchase_order_lines"]
    assert (planned["quantity"], planned["explanation"]["on_order"]) == (2, 12)


async def test_lines_of_one_sku_are_merged_before_the_preview_as_before_placing(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    await backorder_product(client, keys, MUG, stock=4)
    await backorder_product(client, keys, BOWL, stock=9, shortage_policy="reject")
    body = {
        "customer_id": keys.customer_id,
        "lines": [
            {"sku": MUG, "quantity": 3},
            {"sku": BOWL, "quantity": 4},
            {"sku": MUG, "quantity": 5},
            {"sku": BOWL, "quantity": 5},
        ],
    }
    previewed = await assert_preview_then_place_agree(client, keys, database, body)
    assert [
        (line["sku"], line["allocated"], line["backordered"]) for line in previewed["lines"]
    ] == [
        (MUG, 4, 4),
        (BOWL, 9, 0),
    ]


@pytest.fixture
async def consolidating(database: Database, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A deployment collecting shortages on one replenishment draft per supplier for three
    days before submitting it."""
    app = create_app(
        Settings(database_url=database_url, po_consolidation_seconds=3 * 24 * 3600),
        database=database,
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as c:
        yield c
    await app.state.key_usage.drain()


async def test_with_a_fresh_draft_the_preview_promises_what_placing_does(
    consolidating: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    client = consolidating
    await backorder_product(client, keys, MUG)
    previewed = await assert_preview_then_place_agree(
        client, keys, database, order_body(keys, {MUG: 10})
    )
    # Submitted when the three-day window closes, then seven days' lead time.
    (line,) = previewed["lines"]
    assert (
        line["expected_available_date"]
        == (datetime.now(UTC).date() + timedelta(days=10)).isoformat()
    )
    (draft,) = await purchase_orders(client, keys)
    assert draft["status"] == "draft"


async def test_with_a_draft_opened_earlier_the_preview_promises_what_placing_does(
    consolidating: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    client = consolidating
    await backorder_product(client, keys, MUG)
    await place(client, keys, {MUG: 10})
    # The draft has been collecting for two days: its window closes in one.
    (draft,) = await purchase_orders(client, keys)
    async with database.transaction() as session:
        await session.execute(
            update(PurchaseOrder)
            .where(PurchaseOrder.id == draft["id"])
            .values(
                created_at=datetime.fromisoformat(draft["created_at"]) - timedelta(days=2),
                submit_after=datetime.fromisoformat(draft["submit_after"]) - timedelta(days=2),
            )
        )
    previewed = await assert_preview_then_place_agree(
        client, keys, database, order_body(keys, {MUG: 20})
    )
    (line,) = previewed["lines"]
    # B 30 against 12 on the draft: the place in the queue needs the 24 this order adds
    # to that same draft, due one day from now plus seven days' lead time.
    assert (
        line["expected_available_date"]
        == (datetime.now(UTC).date() + timedelta(days=8)).isoformat()
    )


# --- no side effect -------------------------------------------------------------------------


async def test_repeated_previews_change_nothing_and_agree_with_each_other(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    await backorder_product(client, keys, MUG, stock=3)
    before = await snapshot(database)
    stock_before = await inventory(client, keys, MUG)
    body = order_body(keys, {MUG: 10})
    first = await preview(client, {**keys.staff, "Idempotency-Key": "same-key"}, body)
    second = await preview(client, {**keys.staff, "Idempotency-Key": "same-key"}, body)
    third = await preview(client, keys.admin, body)
    assert first.status_code == second.status_code == third.status_code == 200
    assert "Idempotent-Replayed" not in second.headers
    assert first.json() == second.json() == third.json()
    assert await snapshot(database) == before
    assert await inventory(client, keys, MUG) == stock_before
    assert await purchase_orders(client, keys) == []


# --- who sees what --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "sees_purchases"),
    [("admin", True), ("staff", True), ("service", False), ("customer", False)],
)
async def test_only_staff_and_admin_see_the_purchase_order_lines(
    client: httpx.AsyncClient, keys: Keys, database: Database, role: str, sees_purchases: bool
) -> None:
    await backorder_product(client, keys, MUG, stock=30)
    body = order_body(keys, {MUG: 50})
    if role == "customer":
        del body["customer_id"]
    before = await snapshot(database)
    response = await preview(client, keys.for_role(role), body)
    assert response.status_code == 200, response.text
    previewed = response.json()
    assert await snapshot(database) == before
    assert previewed["customer_id"] == keys.customer_id
    (line,) = previewed["lines"]
    assert (line["allocated"], line["backordered"]) == (30, 20)
    assert isinstance(date.fromisoformat(line["expected_available_date"]), date)
    if sees_purchases:
        (planned,) = previewed["purchase_order_lines"]
        assert planned["quantity"] == 24
    else:
        assert "purchase_order_lines" in previewed
        assert previewed["purchase_order_lines"] is None


async def test_a_customer_may_name_itself(client: httpx.AsyncClient, keys: Keys) -> None:
    await backorder_product(client, keys, MUG, stock=5)
    response = await preview(client, keys.customer, order_body(keys, {MUG: 2}))
    assert response.status_code == 200, response.text
    assert response.json()["customer_id"] == keys.customer_id


# --- refused exactly as placing would be ---------------------------------------------------


def comparable(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    return {name: value for name, value in body.items() if name != "request_id"}


async def assert_refused_alike(
    client: httpx.AsyncClient,
    database: Database,
    headers: dict[str, str],
    body: dict[str, Any],
    status: int,
    slug: str,
) -> dict[str, Any]:
    before = await snapshot(database)
    previewed = await preview(client, headers, body)
    placed = await client.post("/v1/orders", json=body, headers=headers)
    problem = assert_problem(previewed, status, slug)
    assert_problem(placed, status, slug)
    assert comparable(previewed) == comparable(placed)
    assert await snapshot(database) == before
    return problem


async def test_a_short_reject_line_is_refused_like_placing(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    supplier_id = await create_supplier(client, keys)
    await backorder_product(
        client, keys, MUG, supplier_id=supplier_id, stock=4, shortage_policy="reject"
    )
    await backorder_product(client, keys, BOWL, supplier_id=supplier_id, stock=0)
    problem = await assert_refused_alike(
        client, database, keys.staff, order_body(keys, {BOWL: 5, MUG: 5}), 409, "insufficient-stock"
    )
    assert problem["items"] == [{"sku": MUG, "requested": 5, "available": 4}]


async def test_every_short_reject_sku_is_listed_like_placing(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    supplier_id = await create_supplier(client, keys)
    for sku, stock in ((MUG, 1), (BOWL, 2), (PLATE, 50)):
        await backorder_product(
            client, keys, sku, supplier_id=supplier_id, stock=stock, shortage_policy="reject"
        )
    problem = await assert_refused_alike(
        client,
        database,
        keys.staff,
        order_body(keys, {PLATE: 3, MUG: 2, BOWL: 3}),
        409,
        "insufficient-stock",
    )
    assert sorted(problem["items"], key=lambda item: item["sku"]) == [
        {"sku": BOWL, "requested": 3, "available": 2},
        {"sku": MUG, "requested": 2, "available": 1},
    ]


async def test_a_customer_key_is_refused_like_placing_too(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    await backorder_product(client, keys, MUG, stock=1, shortage_policy="reject")
    await assert_refused_alike(
        client,
        database,
        keys.customer,
        {"lines": [{"sku": MUG, "quantity": 2}]},
        409,
        "insufficient-stock",
    )


@pytest.mark.parametrize(
    ("case", "status", "slug"),
    [
        ("unknown sku", 422, "unknown-sku"),
        ("read-only total", 422, "validation-error"),
        ("read-only status", 422, "validation-error"),
        ("unknown field", 422, "validation-error"),
        ("zero quantity", 422, "invalid-quantity"),
        ("no customer", 422, "validation-error"),
        ("unknown customer", 422, "unknown-customer"),
        ("discount above the rest", 422, "invalid-amounts"),
    ],
)
async def test_invalid_orders_are_refused_identically(
    client: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    case: str,
    status: int,
    slug: str,
) -> None:
    await backorder_product(client, keys, MUG, stock=10)
    valid = order_body(keys, {MUG: 1})
    bodies: dict[str, dict[str, Any]] = {
        "unknown sku": order_body(keys, {MUG: 1, "NO-SUCH-SKU": 1}),
        "read-only total": {**valid, "total": 1290},
        "read-only status": {**valid, "status": "confirmed"},
        "unknown field": {**valid, "coupon": "FREE"},
        "zero quantity": order_body(keys, {MUG: 0}),
        "no customer": {"lines": valid["lines"]},
        "unknown customer": {**valid, "customer_id": "cus_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"},
        "discount above the rest": {**valid, "discount_amount": 5000},
    }
    await assert_refused_alike(client, database, keys.staff, bodies[case], status, slug)


async def test_a_customer_previewing_for_another_customer_gets_404(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    await backorder_product(client, keys, MUG, stock=10)
    await assert_refused_alike(
        client,
        database,
        keys.customer,
        {**order_body(keys, {MUG: 1}), "customer_id": keys.other_customer_id},
        404,
        "not-found",
    )


async def test_a_customer_cannot_preview_an_inactive_product(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    await backorder_product(client, keys, MUG, stock=10, active=False)
    await assert_refused_alike(
        client,
        database,
        keys.customer,
        {"lines": [{"sku": MUG, "quantity": 1}]},
        422,
        "unknown-sku",
    )


async def test_preview_needs_a_key(client: httpx.AsyncClient, keys: Keys) -> None:
    await backorder_product(client, keys, MUG, stock=1)
    response = await preview(client, {}, order_body(keys, {MUG: 1}))
    assert_problem(response, 401, "unauthenticated")
