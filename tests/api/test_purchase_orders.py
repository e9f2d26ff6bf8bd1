"""Purchase orders through the API: placing them by hand, moving them along their states,
receiving goods into the backlog, cancelling (which re-runs the backorder rule), the audit
trail, and the command that submits consolidated drafts once their window has closed."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner, Result

from stockflow.app import create_app
from stockflow.audit import repository as audit_repository
from stockflow.cli.main import app as cli
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.db.models import AuditRecord, PurchaseOrder
from stockflow.inventory import service as inventory_service
from tests.assertions import assert_invalid, assert_problem
from tests.backorders import (
    backorder_product,
    create_purchase_order,
    create_supplier,
    inventory,
    line_of,
    order,
    place,
    po_action,
    purchase_order,
    purchase_orders,
    receive,
)
from tests.conftest import Keys
from tests.supplier_links import post_link

SKU = "PO-MUG"
OTHER = "PO-BOWL"
MISSING_ID = "po_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"
TRANSITION = "invalid-purchase-order-transition"
WINDOW = 3600
"""The consolidation window of the app that collects shortages on drafts."""


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


def days_after(value: str, days: int) -> str:
    """The date ``days`` after an RFC 3339 timestamp, as the API writes dates."""
    return (moment(value) + timedelta(days=days)).date().isoformat()


def in_days(days: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=days)).isoformat()


def counters(stock: dict[str, Any]) -> tuple[int, int, int, int]:
    """``(on_hand, reserved, backordered, on_order)`` of a stock level."""
    return stock["on_hand"], stock["reserved"], stock["backordered"], stock["on_order"]


async def assert_reconciled(database: Database) -> None:
    """Stock rows match their ledger, and backlog and on_order match the open lines."""
    async with database.transaction() as session:
        assert await inventory_service.reconcile(session) == []


async def submitted_po(
    client: httpx.AsyncClient, keys: Keys, supplier_id: str, lines: dict[str, int]
) -> dict[str, Any]:
    po = await create_purchase_order(client, keys, supplier_id, lines)
    return await po_action(client, keys, po["id"], "submit")


async def second_supplier(
    client: httpx.AsyncClient, keys: Keys, sku: str, *, priority: int = 0
) -> str:
    """A further active supplier of ``sku`` (lead time 9 days, 3 for this product)."""
    supplier_id = await create_supplier(client, keys, name="Kiln & Co", lead_time_days=9)
    await post_link(
        client,
        keys,
        sku,
        {
            "supplier_id": supplier_id,
            "supplier_sku": "KC-1",
            "cost_price": 450,
            "currency": "EUR",
            "lead_time_days": 3,
            "priority": priority,
        },
    )
    return supplier_id


async def post_po(client: httpx.AsyncClient, keys: Keys, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/purchase-orders", json=body, headers=keys.staff)


# --- placing a purchase order by hand ------------------------------------------------------


async def test_a_manual_purchase_order_is_a_draft_on_the_suppliers_terms(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await backorder_product(client, keys, SKU)
    supplier_id = await second_supplier(client, keys, SKU)

    response = await post_po(
        client,
        keys,
        {
            "supplier_id": supplier_id,
            "lines": [{"sku": SKU, "quantity": 10}],
            "note": "Christmas stock",
        },
    )
    assert response.status_code == 201, response.text
    po = response.json()
    assert response.headers["location"] == f"/v1/purchase-orders/{po['id']}"
    assert po["id"].startswith("po_")
    assert {name: po[name] for name in po if name not in {"id", "lines"}} == {
        "supplier_id": supplier_id,
        "status": "draft",
        "origin": "manual",
        "created_by": keys.ids["staff"],
        "note": "Christmas stock",
        "submit_after": None,
        "submitted_at": None,
        "acknowledged_at": None,
        "expected_delivery_date": None,
        "received_at": None,
        "cancelled_at": None,
        "cancel_reason": None,
        "created_at": po["created_at"],
        "updated_at": po["updated_at"],
    }
    (line,) = po["lines"]
    assert line["id"].startswith("pol_")
    # The terms of this supplier's link, its lead time overriding the supplier's 9 days.
    assert line == {
        "id": line["id"],
        "sku": SKU,
        "supplier_sku": "KC-1",
        "quantity": 10,
        "received": 0,
        "cost_price": 450,
        "currency": "EUR",
        "lead_time_days": 3,
        "reason": "manual",
        "explanation": None,
        "expected_arrival": days_after(po["created_at"], 3),
    }
    assert await purchase_order(client, keys, po["id"]) == po


async def test_a_draft_counts_as_on_order_at_once(client: httpx.AsyncClient, keys: Keys) -> None:
    supplier_id = await backorder_product(client, keys, SKU)
    await create_purchase_order(client, keys, supplier_id, {SKU: 10})
    assert counters(await inventory(client, keys, SKU)) == (0, 0, 0, 10)
    await create_purchase_order(client, keys, supplier_id, {SKU: 5})
    assert counters(await inventory(client, keys, SKU)) == (0, 0, 0, 15)


async def test_lines_of_one_sku_are_merged(client: httpx.AsyncClient, keys: Keys) -> None:
    supplier_id = await backorder_product(client, keys, SKU)
    await backorder_product(client, keys, OTHER, supplier_id=supplier_id)
    merged = await post_po(
        client,
        keys,
        {
            "supplier_id": supplier_id,
            "lines": [
                {"sku": SKU, "quantity": 4},
                {"sku": OTHER, "quantity": 2},
                {"sku": SKU, "quantity": 6},
            ],
        },
    )
    assert merged.status_code == 201, merged.text
    assert [(line["sku"], line["quantity"]) for line in merged.json()["lines"]] == [
        (SKU, 10),
        (OTHER, 2),
    ]
    assert (await inventory(client, keys, SKU))["on_order"] == 10
    assert (await inventory(client, keys, OTHER))["on_order"] == 2


async def refusal_catalog(client: httpx.AsyncClient, keys: Keys) -> dict[str, str]:
    """SKU sold by `linked` only, OTHER by `unlinked` only, and an inactive supplier."""
    linked = await backorder_product(client, keys, SKU)
    unlinked = await backorder_product(client, keys, OTHER)
    response = await client.post(
        "/v1/suppliers",
        json={"name": "Closed Down", "lead_time_days": 5, "active": False},
        headers=keys.staff,
    )
    assert response.status_code == 201, response.text
    return {"linked": linked, "unlinked": unlinked, "inactive": response.json()["id"]}


async def assert_nothing_ordered(client: httpx.AsyncClient, keys: Keys) -> None:
    assert await purchase_orders(client, keys) == []
    assert (await inventory(client, keys, SKU))["on_order"] == 0
    assert (await inventory(client, keys, OTHER))["on_order"] == 0


@pytest.mark.parametrize("supplier", ["missing", "inactive"])
async def test_an_unknown_or_inactive_supplier_is_refused(
    client: httpx.AsyncClient, keys: Keys, supplier: str
) -> None:
    suppliers = {**await refusal_catalog(client, keys), "missing": "sup_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"}
    response = await post_po(
        client, keys, {"supplier_id": suppliers[supplier], "lines": [{"sku": SKU, "quantity": 3}]}
    )
    assert_invalid(response, "body.supplier_id", "unknown or inactive supplier")
    await assert_nothing_ordered(client, keys)


async def test_a_sku_the_supplier_does_not_sell_is_refused(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    suppliers = await refusal_catalog(client, keys)
    response = await post_po(
        client,
        keys,
        {
            "supplier_id": suppliers["linked"],
            "lines": [{"sku": SKU, "quantity": 3}, {"sku": OTHER, "quantity": 1}],
        },
    )
    assert_invalid(response, "body.lines.1.sku", "not sold by supplier")
    await assert_nothing_ordered(client, keys)


async def test_an_unknown_sku_is_refused(client: httpx.AsyncClient, keys: Keys) -> None:
    suppliers = await refusal_catalog(client, keys)
    response = await post_po(
        client,
        keys,
        {
            "supplier_id": suppliers["linked"],
            "lines": [{"sku": SKU, "quantity": 3}, {"sku": "NO-SUCH-SKU", "quantity": 1}],
        },
    )
    assert_problem(response, 422, "unknown-sku", skus=["NO-SUCH-SKU"])
    await assert_nothing_ordered(client, keys)


@pytest.mark.parametrize(
    ("change", "location", "message"),
    [
        ({"id": "po_mine"}, "body.id", "read-only"),
        ({"created_at": "2026-01-01T00:00:00Z"}, "body.created_at", "read-only"),
        ({"status": "submitted"}, "body.status", ""),
        ({"colour": "blue"}, "body.colour", "unknown field"),
        ({"lines": [{"sku": SKU, "quantity": 3, "cost_price": 1}]}, "body.lines.0.cost_price", ""),
        ({"lines": [{"sku": SKU, "quantity": 0}]}, "body.lines.0.quantity", ""),
        ({"lines": [{"sku": SKU, "quantity": "3"}]}, "body.lines.0.quantity", ""),
        ({"lines": [{"sku": SKU, "quantity": 1_000_001}]}, "body.lines.0.quantity", ""),
        ({"lines": []}, "body.lines", ""),
    ],
    ids=[
        "id",
        "created_at",
        "status",
        "unknown",
        "line-cost",
        "quantity-0",
        "quantity-string",
        "quantity-too-large",
        "no-lines",
    ],
)
async def test_an_invalid_body_is_refused(
    client: httpx.AsyncClient, keys: Keys, change: dict[str, Any], location: str, message: str
) -> None:
    suppliers = await refusal_catalog(client, keys)
    body = {"supplier_id": suppliers["linked"], "lines": [{"sku": SKU, "quantity": 3}], **change}
    assert_invalid(await post_po(client, keys, body), location, message)
    await assert_nothing_ordered(client, keys)


async def test_merged_lines_are_held_to_the_per_line_maximum(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    """Two lines of one SKU are one line of their sum, as for orders: splitting a quantity
    must not get round the per-line maximum."""
    suppliers = await refusal_catalog(client, keys)
    response = await post_po(
        client,
        keys,
        {
            "supplier_id": suppliers["linked"],
            "lines": [{"sku": SKU, "quantity": 600_000}, {"sku": SKU, "quantity": 600_000}],
        },
    )
    assert response.status_code == 422, response.text
    await assert_nothing_ordered(client, keys)


# --- reading -------------------------------------------------------------------------------


async def test_list_filters_by_status_and_supplier_and_pages(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    first_supplier = await backorder_product(client, keys, SKU)
    second = await second_supplier(client, keys, SKU)
    oldest = await create_purchase_order(client, keys, first_supplier, {SKU: 1})
    middle = await create_purchase_order(client, keys, second, {SKU: 2})
    newest = await submitted_po(client, keys, first_supplier, {SKU: 3})

    async def listed(**params: str) -> list[str]:
        response = await client.get("/v1/purchase-orders", params=params, headers=keys.staff)
        assert response.status_code == 200, response.text
        assert response.json()["next_cursor"] is None
        return [po["id"] for po in response.json()["data"]]

    assert await listed() == [newest["id"], middle["id"], oldest["id"]]
    assert await listed(status="draft") == [middle["id"], oldest["id"]]
    assert await listed(status="submitted") == [newest["id"]]
    assert await listed(status="received") == []
    assert await listed(supplier_id=first_supplier) == [newest["id"], oldest["id"]]
    assert await listed(supplier_id=first_supplier, status="draft") == [oldest["id"]]
    assert await listed(supplier_id="sup_01KB3J5Q2W8Z6Y4X0V9T7S5R3P") == []

    page = await client.get("/v1/purchase-orders", params={"limit": 2}, headers=keys.staff)
    assert page.status_code == 200, page.text
    assert [po["id"] for po in page.json()["data"]] == [newest["id"], middle["id"]]
    assert page.json()["data"][0] == newest
    rest = await client.get(
        "/v1/purchase-orders",
        params={"limit": 2, "cursor": page.json()["next_cursor"]},
        headers=keys.staff,
    )
    assert rest.json() == {"data": [oldest], "next_cursor": None}

    bad = await client.get("/v1/purchase-orders", params={"status": "open"}, headers=keys.staff)
    assert_problem(bad, 422, "validation-error")


async def test_an_unknown_purchase_order_is_404(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.get(f"/v1/purchase-orders/{MISSING_ID}", headers=keys.staff)
    assert_problem(response, 404, "not-found")
    for action, body in (
        ("submit", {}),
        ("acknowledge", {"expected_delivery_date": in_days(5)}),
        ("receipts", {"lines": [{"sku": SKU, "quantity": 1}]}),
        ("cancel", {"reason": "typo"}),
    ):
        response = await client.post(
            f"/v1/purchase-orders/{MISSING_ID}/{action}", json=body, headers=keys.staff
        )
        assert_problem(response, 404, "not-found")


# --- submitting and acknowledging ----------------------------------------------------------


async def test_submit_moves_a_draft_to_submitted(client: httpx.AsyncClient, keys: Keys) -> None:
    supplier_id = await backorder_product(client, keys, SKU)
    draft = await create_purchase_order(client, keys, supplier_id, {SKU: 10})

    submitted = await po_action(client, keys, draft["id"], "submit")
    assert submitted["status"] == "submitted"
    assert submitted["submitted_at"] is not None
    assert moment(submitted["submitted_at"]) >= moment(draft["created_at"])
    # Expected on the submission day plus the supplier's 7 days.
    assert submitted["lines"][0]["expected_arrival"] == days_after(submitted["submitted_at"], 7)
    assert (await inventory(client, keys, SKU))["on_order"] == 10
    assert await purchase_order(client, keys, draft["id"]) == submitted


async def test_acknowledging_moves_the_promise_of_waiting_order_lines(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await backorder_product(client, keys, SKU)
    waiting = await place(client, keys, {SKU: 10})
    (po,) = await purchase_orders(client, keys)
    assert po["status"] == "submitted"
    assert line_of(waiting, SKU)["expected_available_date"] == days_after(po["submitted_at"], 7)

    later = in_days(30)
    acknowledged = await po_action(
        client, keys, po["id"], "acknowledge", {"expected_delivery_date": later}
    )
    assert acknowledged["status"] == "acknowledged"
    assert acknowledged["expected_delivery_date"] == later
    assert acknowledged["acknowledged_at"] is not None
    assert acknowledged["submitted_at"] == po["submitted_at"]
    assert [line["expected_arrival"] for line in acknowledged["lines"]] == [later]
    assert line_of(await order(client, keys, waiting["id"]), SKU)["expected_available_date"] == (
        later
    )

    # The supplier says again: the date moves again, the status stays.
    sooner = in_days(12)
    moved = await po_action(
        client, keys, po["id"], "acknowledge", {"expected_delivery_date": sooner}
    )
    assert (moved["status"], moved["expected_delivery_date"]) == ("acknowledged", sooner)
    assert line_of(await order(client, keys, waiting["id"]), SKU)["expected_available_date"] == (
        sooner
    )


async def test_acknowledging_a_partly_received_po_keeps_its_status(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    supplier_id = await backorder_product(client, keys, SKU)
    po = await submitted_po(client, keys, supplier_id, {SKU: 10})
    await receive(client, keys, po["id"], {SKU: 4})
    when = in_days(3)
    moved = await po_action(client, keys, po["id"], "acknowledge", {"expected_delivery_date": when})
    assert (moved["status"], moved["expected_delivery_date"]) == ("partially_received", when)
    assert moved["lines"][0]["received"] == 4


# --- receiving -----------------------------------------------------------------------------


async def test_a_partial_receipt_then_the_rest_serve_the_waiting_order(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    await backorder_product(client, keys, SKU)
    waiting = await place(client, keys, {SKU: 20})
    (po,) = await purchase_orders(client, keys)
    assert po["lines"][0]["quantity"] == 24

    partial = await receive(client, keys, po["id"], {SKU: 10})
    assert partial["purchase_order"]["status"] == "partially_received"
    assert partial["purchase_order"]["received_at"] is None
    assert partial["purchase_order"]["lines"][0]["received"] == 10
    assert partial["received"] == [{"sku": SKU, "quantity": 10, "over_received": 0}]
    assert partial["allocations"] == [{"order_id": waiting["id"], "sku": SKU, "units": 10}]
    assert counters(await inventory(client, keys, SKU)) == (10, 10, 10, 14)
    assert (await order(client, keys, waiting["id"]))["fulfilment"] == "awaiting_stock"

    rest = await receive(client, keys, po["id"], {SKU: 14})
    assert rest["purchase_order"]["status"] == "received"
    assert rest["purchase_order"]["received_at"] is not None
    assert rest["purchase_order"]["lines"][0]["received"] == 24
    assert rest["received"] == [{"sku": SKU, "quantity": 14, "over_received": 0}]
    assert rest["allocations"] == [{"order_id": waiting["id"], "sku": SKU, "units": 10}]
    stock = await inventory(client, keys, SKU)
    assert counters(stock) == (24, 20, 0, 0)
    assert stock["available"] == 4
    served = await order(client, keys, waiting["id"])
    assert served["fulfilment"] == "ready_to_ship"
    assert line_of(served, SKU)["allocated"] == 20
    assert await purchase_order(client, keys, po["id"]) == rest["purchase_order"]
    await assert_reconciled(database)


async def test_an_over_receipt_is_kept_and_reported_without_eating_other_pos(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    supplier_id = await backorder_product(client, keys, SKU)
    await submitted_po(client, keys, supplier_id, {SKU: 10})
    po = await submitted_po(client, keys, supplier_id, {SKU: 5})
    assert (await inventory(client, keys, SKU))["on_order"] == 15

    first = await receive(client, keys, po["id"], {SKU: 3})
    assert first["received"] == [{"sku": SKU, "quantity": 3, "over_received": 0}]
    assert first["purchase_order"]["status"] == "partially_received"

    over = await receive(client, keys, po["id"], {SKU: 6})
    assert over["received"] == [{"sku": SKU, "quantity": 6, "over_received": 4}]
    assert over["purchase_order"]["status"] == "received"
    assert over["purchase_order"]["received_at"] is not None
    (line,) = over["purchase_order"]["lines"]
    assert (line["quantity"], line["received"]) == (5, 9)
    # All 9 are on the shelf; only the other PO's 10 are still to come.
    assert counters(await inventory(client, keys, SKU)) == (9, 0, 0, 10)
    await assert_reconciled(database)


async def test_an_over_receipt_of_a_lone_po_leaves_on_order_at_zero(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    supplier_id = await backorder_product(client, keys, SKU)
    po = await submitted_po(client, keys, supplier_id, {SKU: 5})
    over = await receive(client, keys, po["id"], {SKU: 8})
    assert over["received"] == [{"sku": SKU, "quantity": 8, "over_received": 3}]
    assert counters(await inventory(client, keys, SKU)) == (8, 0, 0, 0)
    await assert_reconciled(database)


async def test_a_sku_not_on_the_po_is_refused_and_nothing_is_received(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    supplier_id = await backorder_product(client, keys, SKU)
    await backorder_product(client, keys, OTHER, supplier_id=supplier_id)
    po = await submitted_po(client, keys, supplier_id, {SKU: 10})

    for lines, location in (
        ([{"sku": SKU, "quantity": 2}, {"sku": OTHER, "quantity": 1}], "body.lines.1.sku"),
        ([{"sku": "NO-SUCH-SKU", "quantity": 1}], "body.lines.0.sku"),
    ):
        response = await client.post(
            f"/v1/purchase-orders/{po['id']}/receipts", json={"lines": lines}, headers=keys.staff
        )
        assert_invalid(response, location, "not on this PO")
    assert await purchase_order(client, keys, po["id"]) == po
    assert counters(await inventory(client, keys, SKU)) == (0, 0, 0, 10)
    assert counters(await inventory(client, keys, OTHER)) == (0, 0, 0, 0)


async def test_a_retried_receipt_with_the_same_key_is_counted_once(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    supplier_id = await backorder_product(client, keys, SKU)
    po = await submitted_po(client, keys, supplier_id, {SKU: 10})
    url = f"/v1/purchase-orders/{po['id']}/receipts"
    body = {"lines": [{"sku": SKU, "quantity": 4}], "note": "pallet 1 of 2"}
    headers = {**keys.staff, "Idempotency-Key": "receipt-pallet-1"}

    first = await client.post(url, json=body, headers=headers)
    assert first.status_code == 201, first.text
    retry = await client.post(url, json=body, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json()
    assert (await purchase_order(client, keys, po["id"]))["lines"][0]["received"] == 4
    assert counters(await inventory(client, keys, SKU)) == (4, 0, 0, 6)

    # Another key is another delivery.
    second = await client.post(
        url, json=body, headers={**keys.staff, "Idempotency-Key": "receipt-pallet-2"}
    )
    assert second.status_code == 201, second.text
    assert "idempotent-replayed" not in second.headers
    assert counters(await inventory(client, keys, SKU)) == (8, 0, 0, 2)
    movements = await client.get(f"/v1/inventory/{SKU}/movements", headers=keys.staff)
    assert [
        (m["reason"], m["on_hand_delta"], m["note"], m["purchase_order_id"], m["actor"])
        for m in movements.json()["data"]
    ] == [("po_receipt", 4, "pallet 1 of 2", po["id"], keys.ids["staff"])] * 2
    await assert_reconciled(database)


# --- cancelling ----------------------------------------------------------------------------


async def test_cancelling_takes_the_unreceived_units_off_order(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    supplier_id = await backorder_product(client, keys, SKU)
    draft = await create_purchase_order(client, keys, supplier_id, {SKU: 3})
    po = await submitted_po(client, keys, supplier_id, {SKU: 10})
    await receive(client, keys, po["id"], {SKU: 4})
    assert counters(await inventory(client, keys, SKU)) == (4, 0, 0, 9)

    cancelled = await po_action(
        client, keys, po["id"], "cancel", {"reason": "supplier discontinued it"}
    )
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancel_reason"] == "supplier discontinued it"
    assert cancelled["cancelled_at"] is not None
    assert cancelled["lines"][0]["received"] == 4
    # What arrived stays; nothing waits, so nothing is ordered instead.
    assert counters(await inventory(client, keys, SKU)) == (4, 0, 0, 3)
    await po_action(client, keys, draft["id"], "cancel", {"reason": "typo"})
    assert counters(await inventory(client, keys, SKU)) == (4, 0, 0, 0)
    assert [p["id"] for p in await purchase_orders(client, keys)] == [draft["id"], po["id"]]
    await assert_reconciled(database)


async def test_cancelling_a_replenishment_po_orders_the_backlog_from_the_preferred_supplier(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    await backorder_product(client, keys, SKU)
    waiting = await place(client, keys, {SKU: 10})
    (first,) = await purchase_orders(client, keys)
    assert first["lines"][0]["quantity"] == 12
    order_line_id = first["lines"][0]["explanation"]["caused_by"][0]["order_line_id"]
    # A better supplier comes along before the first one delivers.
    preferred = await second_supplier(client, keys, SKU, priority=20)

    cancelled = await po_action(
        client, keys, first["id"], "cancel", {"reason": "supplier cannot deliver"}
    )
    assert cancelled["status"] == "cancelled"
    pos = await purchase_orders(client, keys)
    earlier, replacement = pos
    assert earlier["id"] == first["id"]
    assert replacement["supplier_id"] == preferred
    assert (replacement["status"], replacement["origin"]) == ("submitted", "replenishment")
    (line,) = replacement["lines"]
    assert (line["sku"], line["supplier_sku"], line["quantity"], line["reason"]) == (
        SKU,
        "KC-1",
        12,
        "backorder",
    )
    explanation = line["explanation"]
    assert (
        explanation["backlog"],
        explanation["on_order"],
        explanation["buffer_pct"],
        explanation["target"],
        explanation["need"],
        explanation["quantity"],
    ) == (10, 0, 20, 12, 12, 12)
    assert explanation["caused_by"] == [
        {
            "purchase_order_cancelled": first["id"],
            "waiting": [
                {"order_id": waiting["id"], "order_line_id": order_line_id, "backordered": 10}
            ],
        }
    ]
    assert counters(await inventory(client, keys, SKU)) == (0, 0, 10, 12)
    # The waiting line is now promised on the new supplier's 3 days.
    assert line_of(await order(client, keys, waiting["id"]), SKU)["expected_available_date"] == (
        days_after(replacement["submitted_at"], 3)
    )
    await assert_reconciled(database)


async def test_cancelling_a_partly_received_replenishment_po_reorders_what_still_waits(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    supplier_id = await backorder_product(client, keys, SKU)
    waiting = await place(client, keys, {SKU: 10})
    (first,) = await purchase_orders(client, keys)
    receipt = await receive(client, keys, first["id"], {SKU: 5})
    assert receipt["allocations"] == [{"order_id": waiting["id"], "sku": SKU, "units": 5}]
    assert counters(await inventory(client, keys, SKU)) == (5, 5, 5, 7)

    await po_action(client, keys, first["id"], "cancel", {"reason": "rest lost in transit"})
    (replacement,) = (await purchase_orders(client, keys))[1:]
    assert replacement["supplier_id"] == supplier_id
    (line,) = replacement["lines"]
    # B 5, O 0: target ceil(5 * 1.2) = 6.
    assert (line["explanation"]["backlog"], line["explanation"]["on_order"]) == (5, 0)
    assert line["quantity"] == 6
    assert line["explanation"]["caused_by"][0]["purchase_order_cancelled"] == first["id"]
    assert line["explanation"]["caused_by"][0]["waiting"][0]["backordered"] == 5
    assert counters(await inventory(client, keys, SKU)) == (5, 5, 5, 6)
    await assert_reconciled(database)


# --- what a status does not allow ----------------------------------------------------------

ACTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "submit": ("submit", {}),
    "acknowledge": ("acknowledge", {"expected_delivery_date": "2030-01-15"}),
    "receive": ("receipts", {"lines": [{"sku": SKU, "quantity": 1}]}),
    "cancel": ("cancel", {"reason": "not needed"}),
}
REFUSED = [
    ("draft", "acknowledge"),
    ("draft", "receive"),
    ("submitted", "submit"),
    ("acknowledged", "submit"),
    ("partially_received", "submit"),
    ("received", "submit"),
    ("received", "acknowledge"),
    ("received", "receive"),
    ("received", "cancel"),
    ("cancelled", "submit"),
    ("cancelled", "acknowledge"),
    ("cancelled", "receive"),
    ("cancelled", "cancel"),
]


async def po_in_status(
    client: httpx.AsyncClient, keys: Keys, supplier_id: str, status: str
) -> dict[str, Any]:
    """A purchase order of 4 units of SKU, brought to ``status`` through the API."""
    po = await create_purchase_order(client, keys, supplier_id, {SKU: 4})
    if status == "draft":
        return po
    po = await po_action(client, keys, po["id"], "submit")
    if status == "acknowledged":
        body = {"expected_delivery_date": in_days(5)}
        po = await po_action(client, keys, po["id"], "acknowledge", body)
    elif status in ("partially_received", "received"):
        units = 1 if status == "partially_received" else 4
        po = (await receive(client, keys, po["id"], {SKU: units}))["purchase_order"]
    elif status == "cancelled":
        po = await po_action(client, keys, po["id"], "cancel", {"reason": "not needed"})
    assert po["status"] == status
    return po


async def audit_count(database: Database) -> int:
    async with database.transaction(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(AuditRecord)) or 0)


@pytest.mark.parametrize(
    ("status", "action"), REFUSED, ids=[f"{status}-{action}" for status, action in REFUSED]
)
async def test_an_action_the_status_does_not_allow_is_409_and_changes_nothing(
    client: httpx.AsyncClient, keys: Keys, database: Database, status: str, action: str
) -> None:
    supplier_id = await backorder_product(client, keys, SKU)
    po = await po_in_status(client, keys, supplier_id, status)
    stock = await inventory(client, keys, SKU)
    audited = await audit_count(database)

    path, body = ACTIONS[action]
    response = await client.post(
        f"/v1/purchase-orders/{po['id']}/{path}", json=body, headers=keys.staff
    )
    problem = assert_problem(response, 409, TRANSITION, action=action, purchase_order_status=status)
    assert problem["detail"].startswith(
        f"Cannot {action} a {status.replace('_', ' ')} purchase order"
    )
    assert await purchase_order(client, keys, po["id"]) == po
    assert await inventory(client, keys, SKU) == stock
    assert await audit_count(database) == audited


# --- the audit trail -----------------------------------------------------------------------


async def test_every_purchase_order_action_is_audited(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    supplier_id = await backorder_product(client, keys, SKU)
    url = "/v1/purchase-orders"
    steps: list[tuple[httpx.Response, str]] = []
    created = await client.post(
        url,
        json={"supplier_id": supplier_id, "lines": [{"sku": SKU, "quantity": 10}]},
        headers=keys.staff,
    )
    po_id = created.json()["id"]
    steps.append((created, "staff"))
    steps.append((await client.post(f"{url}/{po_id}/submit", headers=keys.staff), "staff"))
    steps.append(
        (
            await client.post(
                f"{url}/{po_id}/acknowledge",
                json={"expected_delivery_date": in_days(8)},
                headers=keys.admin,
            ),
            "admin",
        )
    )
    steps.append(
        (
            await client.post(
                f"{url}/{po_id}/receipts",
                json={"lines": [{"sku": SKU, "quantity": 4}]},
                headers=keys.staff,
            ),
            "staff",
        )
    )
    steps.append(
        (
            await client.post(
                f"{url}/{po_id}/cancel", json={"reason": "rest not needed"}, headers=keys.staff
            ),
            "staff",
        )
    )
    for response, _role in steps:
        assert response.status_code in (200, 201), response.text

    async with database.transaction(write=False) as session:
        records = await audit_repository.for_resource(session, "purchase_order", po_id)
    assert [
        (
            r.action,
            r.actor_role,
            None if r.before is None else r.before["status"],
            r.after["status"],
        )
        for r in records
        if r.after is not None
    ] == [
        ("purchase_order.created", "staff", None, "draft"),
        ("purchase_order.submitted", "staff", "draft", "submitted"),
        ("purchase_order.acknowledged", "admin", "submitted", "acknowledged"),
        ("purchase_order.received", "staff", "acknowledged", "partially_received"),
        ("purchase_order.cancelled", "staff", "partially_received", "cancelled"),
    ]
    for record, (response, role) in zip(records, steps, strict=True):
        shown = response.json()
        assert record.after == shown.get("purchase_order", shown)
        assert record.actor_id == keys.ids[role]
        assert record.request_id == response.headers["x-request-id"]
    for earlier, later in itertools.pairwise(records):
        assert later.before == earlier.after


# --- consolidation and the submitting command ----------------------------------------------


@pytest.fixture
async def consolidating(database_url: str, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose shortages collect on one draft per supplier for an hour."""
    app = create_app(
        Settings(database_url=database_url, po_consolidation_seconds=WINDOW), database=database
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as c:
        yield c
    await app.state.key_usage.drain()


async def submit_by_command(database_url: str) -> list[str]:
    """Run ``stockflow maintenance submit-purchase-orders``; the ids it says it submitted."""

    def invoke() -> Result:
        return CliRunner().invoke(
            cli,
            ["maintenance", "submit-purchase-orders"],
            env={"STOCKFLOW_DATABASE_URL": database_url},
        )

    result = await asyncio.to_thread(invoke)
    assert result.exit_code == 0, result.output
    # Log lines may be interleaved; the report is a count line followed by one id a line.
    lines = result.output.splitlines()
    (start,) = [i for i, line in enumerate(lines) if line.startswith("purchase orders submitted:")]
    count = int(lines[start].rsplit(" ", 1)[1])
    ids = lines[start + 1 : start + 1 + count]
    assert all(po_id.startswith("po_") for po_id in ids), result.output
    return ids


async def close_window(database: Database, po_id: str) -> None:
    """Let a draft's consolidation window have passed already."""
    async with database.transaction() as session:
        await session.execute(
            update(PurchaseOrder)
            .where(PurchaseOrder.id == po_id)
            .values(submit_after=datetime.now(UTC) - timedelta(seconds=1))
        )


async def test_shortages_collect_on_one_draft_per_supplier_until_the_command_submits_it(
    consolidating: httpx.AsyncClient, keys: Keys, database: Database, database_url: str
) -> None:
    client = consolidating
    first_supplier = await backorder_product(client, keys, SKU)
    await backorder_product(client, keys, OTHER, supplier_id=first_supplier)
    second = await backorder_product(client, keys, "PO-JUG")

    one = await place(client, keys, {SKU: 5})
    two = await place(client, keys, {OTHER: 3, "PO-JUG": 2})
    three = await place(client, keys, {SKU: 2})

    drafts = await purchase_orders(client, keys)
    assert [(po["supplier_id"], po["status"], po["origin"]) for po in drafts] == [
        (first_supplier, "draft", "replenishment"),
        (second, "draft", "replenishment"),
    ]
    collecting = drafts[0]
    assert [(line["sku"], line["quantity"]) for line in collecting["lines"]] == [
        (SKU, 6),
        (OTHER, 4),
        (SKU, 3),
    ]
    assert [line["explanation"]["caused_by"][0]["order_id"] for line in collecting["lines"]] == [
        one["id"],
        two["id"],
        three["id"],
    ]
    submit_after = moment(collecting["submit_after"])
    assert submit_after - moment(collecting["created_at"]) == timedelta(seconds=WINDOW)
    # Drafts count as on order, and promises wait for the window plus the lead time.
    assert counters(await inventory(client, keys, SKU)) == (0, 0, 7, 9)
    assert line_of(one, SKU)["expected_available_date"] == days_after(collecting["submit_after"], 7)

    assert await submit_by_command(database_url) == []
    assert [po["status"] for po in await purchase_orders(client, keys)] == ["draft", "draft"]

    await close_window(database, collecting["id"])
    assert await submit_by_command(database_url) == [collecting["id"]]
    submitted = await purchase_order(client, keys, collecting["id"])
    assert submitted["status"] == "submitted"
    assert submitted["submitted_at"] is not None
    assert submitted["lines"] == [
        {**line, "expected_arrival": days_after(submitted["submitted_at"], 7)}
        for line in collecting["lines"]
    ]
    assert (await purchase_order(client, keys, drafts[1]["id"]))["status"] == "draft"
    assert await submit_by_command(database_url) == []

    # A shortage after the submission opens a new draft instead of growing the sent PO.
    await place(client, keys, {SKU: 4})
    newest = await purchase_orders(client, keys, status="draft", supplier_id=first_supplier)
    (fresh,) = newest
    assert fresh["id"] != collecting["id"]
    # B 11, O 9: target ceil(11 * 1.2) = 14, so 5 more.
    assert [(line["sku"], line["quantity"]) for line in fresh["lines"]] == [(SKU, 5)]

    # A receipt fills the sent PO's lines of one SKU oldest first and serves the oldest orders.
    receipt = await receive(client, keys, collecting["id"], {SKU: 7, OTHER: 4})
    assert [line["received"] for line in receipt["purchase_order"]["lines"]] == [6, 4, 1]
    assert receipt["purchase_order"]["status"] == "partially_received"
    assert sorted((a["order_id"], a["sku"], a["units"]) for a in receipt["allocations"]) == sorted(
        [(one["id"], SKU, 5), (three["id"], SKU, 2), (two["id"], OTHER, 3)]
    )
    assert counters(await inventory(client, keys, SKU)) == (7, 7, 4, 7)
    await assert_reconciled(database)


async def test_a_cancelled_po_reorders_onto_the_suppliers_open_draft(
    consolidating: httpx.AsyncClient, keys: Keys, database: Database, database_url: str
) -> None:
    client = consolidating
    supplier_id = await backorder_product(client, keys, SKU)
    await backorder_product(client, keys, OTHER, supplier_id=supplier_id)
    waiting = await place(client, keys, {SKU: 10})
    (sent,) = await purchase_orders(client, keys)
    await close_window(database, sent["id"])
    assert await submit_by_command(database_url) == [sent["id"]]
    await place(client, keys, {OTHER: 3})
    (draft,) = await purchase_orders(client, keys, status="draft")

    await po_action(client, keys, sent["id"], "cancel", {"reason": "wrong address"})
    grown = await purchase_order(client, keys, draft["id"])
    assert grown["status"] == "draft"
    assert grown["submit_after"] == draft["submit_after"]
    assert [(line["sku"], line["quantity"]) for line in grown["lines"]] == [
        (OTHER, 4),
        (SKU, 12),
    ]
    caused_by = grown["lines"][1]["explanation"]["caused_by"]
    assert caused_by[0]["purchase_order_cancelled"] == sent["id"]
    assert [entry["order_id"] for entry in caused_by[0]["waiting"]] == [waiting["id"]]
    assert counters(await inventory(client, keys, SKU)) == (0, 0, 10, 12)

    # Cancelling the open draft itself orders everything again on a new draft.
    await po_action(client, keys, draft["id"], "cancel", {"reason": "start over"})
    (reopened,) = await purchase_orders(client, keys, status="draft")
    assert reopened["id"] != draft["id"]
    assert reopened["origin"] == "replenishment"
    assert moment(reopened["submit_after"]) - moment(reopened["created_at"]) == timedelta(
        seconds=WINDOW
    )
    assert sorted((line["sku"], line["quantity"]) for line in reopened["lines"]) == [
        (OTHER, 4),
        (SKU, 12),
    ]
    assert {
        line["explanation"]["caused_by"][0]["purchase_order_cancelled"]
        for line in reopened["lines"]
    } == {draft["id"]}
    assert counters(await inventory(client, keys, SKU)) == (0, 0, 10, 12)
    assert counters(await inventory(client, keys, OTHER)) == (0, 0, 3, 4)
    await assert_reconciled(database)
