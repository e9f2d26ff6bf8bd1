"""Helpers for tests of the backorder flow: products that backorder, orders, purchase
orders and receipts, all through the API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Keys


async def create_supplier(
    client: httpx.AsyncClient, keys: Keys, name: str = "Stoneware Bros.", lead_time_days: int = 7
) -> str:
    response = await client.post(
        "/v1/suppliers", json={"name": name, "lead_time_days": lead_time_days}, headers=keys.staff
    )
    assert response.status_code == 201, response.text
    supplier_id: str = response.json()["id"]
    return supplier_id


async def backorder_product(
    client: httpx.AsyncClient,
    keys: Keys,
    sku: str,
    *,
    supplier_id: str | None = None,
    stock: int = 0,
    buffer_pct: int = 20,
    pack_size: int = 1,
    min_order_qty: int = 1,
    unit_price: int = 1290,
    **fields: Any,
) -> str:
    """A ``backorder`` product with one supplier (created unless given) and ``stock`` on
    hand; returns the supplier id."""
    if supplier_id is None:
        supplier_id = await create_supplier(client, keys)
    body = {
        "sku": sku,
        "name": f"Product {sku}",
        "unit_price": unit_price,
        "currency": "EUR",
        "shortage_policy": "backorder",
        "replenish_buffer_pct": buffer_pct,
        "suppliers": [
            {
                "supplier_id": supplier_id,
                "supplier_sku": f"S-{sku}",
                "cost_price": 500,
                "currency": "EUR",
                "pack_size": pack_size,
                "min_order_qty": min_order_qty,
                "priority": 10,
            }
        ],
        **fields,
    }
    response = await client.post("/v1/products", json=body, headers=keys.staff)
    assert response.status_code == 201, response.text
    if stock:
        await adjust(client, keys, sku, stock)
    return supplier_id


async def adjust(client: httpx.AsyncClient, keys: Keys, sku: str, delta: int) -> dict[str, Any]:
    response = await client.post(
        f"/v1/inventory/{sku}/adjustments",
        json={"delta": delta, "reason": "count"},
        headers=keys.staff,
    )
    assert response.status_code == 201, response.text
    adjusted: dict[str, Any] = response.json()
    return adjusted


async def place(
    client: httpx.AsyncClient, keys: Keys, lines: dict[str, int], **body: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/orders",
        json={
            "customer_id": keys.customer_id,
            "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines.items()],
            **body,
        },
        headers=keys.staff,
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


async def order(client: httpx.AsyncClient, keys: Keys, order_id: str) -> dict[str, Any]:
    """The order as its events show it: without a payment provider it has no payments or
    refunds, which only reading it shows."""
    response = await client.get(f"/v1/orders/{order_id}", headers=keys.staff)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    assert (found.pop("payments"), found.pop("refunds")) == ([], [])
    return found


def line_of(order_body: dict[str, Any], sku: str) -> dict[str, Any]:
    matching: list[dict[str, Any]] = [line for line in order_body["lines"] if line["sku"] == sku]
    (line,) = matching
    return line


async def inventory(client: httpx.AsyncClient, keys: Keys, sku: str) -> dict[str, Any]:
    response = await client.get(f"/v1/inventory/{sku}", headers=keys.staff)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def purchase_orders(
    client: httpx.AsyncClient, keys: Keys, **params: str
) -> list[dict[str, Any]]:
    """Every purchase order, oldest first."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": "100", **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/purchase-orders", params=query, headers=keys.staff)
        assert response.status_code == 200, response.text
        body = response.json()
        found.extend(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return sorted(found, key=lambda po: po["id"])


def po_lines(pos: list[dict[str, Any]], sku: str) -> list[dict[str, Any]]:
    """Every PO line of ``sku``, in the order they were created."""
    return sorted(
        (line for po in pos for line in po["lines"] if line["sku"] == sku),
        key=lambda line: line["id"],
    )


async def receive(
    client: httpx.AsyncClient, keys: Keys, po_id: str, lines: dict[str, int]
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/purchase-orders/{po_id}/receipts",
        json={"lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines.items()]},
        headers=keys.staff,
    )
    assert response.status_code == 201, response.text
    received: dict[str, Any] = response.json()
    return received


async def create_purchase_order(
    client: httpx.AsyncClient,
    keys: Keys,
    supplier_id: str,
    lines: dict[str, int],
    **body: Any,
) -> dict[str, Any]:
    """A purchase order placed by hand (a draft); the created PO."""
    response = await client.post(
        "/v1/purchase-orders",
        json={
            "supplier_id": supplier_id,
            "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines.items()],
            **body,
        },
        headers=keys.staff,
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def purchase_order(client: httpx.AsyncClient, keys: Keys, po_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/purchase-orders/{po_id}", headers=keys.staff)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def po_action(
    client: httpx.AsyncClient,
    keys: Keys,
    po_id: str,
    action: str,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``submit``, ``acknowledge`` or ``cancel`` a purchase order, expecting success; the
    purchase order as it is afterwards."""
    response = await client.post(
        f"/v1/purchase-orders/{po_id}/{action}", json=body or {}, headers=keys.staff
    )
    assert response.status_code == 200, response.text
    changed: dict[str, Any] = response.json()
    return changed
