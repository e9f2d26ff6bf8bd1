"""Who may call what: DESIGN.md section 4's role table, written out by hand.

Each row is one endpoint (or one kind of target) with the status every caller must get.
``none`` is a request without a key. The expectations come from the design, not from the
code: service reads products and stock and creates and reads customers, and nothing on API
keys; a customer reads active products, only `available` stock, and only its own customer
(someone else's customer is 404, never 403); staff may do everything except API keys.
Orders: every role places, previews, reads and cancels, a customer only its own (another
customer's order is 404, and so is ordering or previewing for another customer); only admin
and staff ship. Suppliers: admin and staff all, service reads, a customer nothing (its read
right covers active products only); supplier products (a product's suppliers and their
terms), purchase orders and receipts: admin and staff only.

Every allowed call sends a valid request, so it must get its success code: a product with
stock, a spare key and two customers exist before each case, and one order of each customer,
two suppliers: one selling the product, one spare, and two purchase orders of the product
from the supplier that sells it: a draft (to submit) and a submitted one (to acknowledge,
receive into and cancel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.workers.runner import build_relay
from tests.conftest import Keys

PROBLEM = "application/problem+json"
ROLES = ("admin", "staff", "service", "customer", "none")

SKU = "MATRIX-MUG"
INACTIVE_SKU = "MATRIX-OLD"

NEW_KEY = {"name": "matrix key", "role": "service"}
NEW_PRODUCT = {"sku": "MATRIX-NEW", "name": "New mug", "unit_price": 990, "currency": "EUR"}
PRODUCT_CHANGE = {"name": "Renamed mug", "unit_price": 1190}
ADJUSTMENT = {"delta": 5, "reason": "role matrix"}
NEW_CUSTOMER = {"name": "Matrix Customer", "email": "matrix@example.com"}
ORDER_FOR_OWN = {"customer_id": "{own_customer}", "lines": [{"sku": SKU, "quantity": 1}]}
ORDER_FOR_OTHER = {"customer_id": "{other_customer}", "lines": [{"sku": SKU, "quantity": 1}]}
PAYMENT = {"amount": 100, "reference": "matrix"}
REFUND = {"amount": 100, "reason": "matrix"}
CANCEL = {"reason": "role matrix"}
SHIPMENT = {"lines": [{"sku": SKU, "quantity": 1}]}
NEW_SUPPLIER = {"name": "Matrix Supplier", "connector": {"type": "manual"}}
SUPPLIER_CHANGE = {"lead_time_days": 12}
NEW_SUPPLIER_PRODUCT = {
    "supplier_id": "{spare_supplier}",
    "supplier_sku": "MS-2",
    "cost_price": 450,
    "currency": "EUR",
}
SUPPLIER_PRODUCT_CHANGE = {"cost_price": 480, "priority": 5}
NEW_PURCHASE_ORDER = {"supplier_id": "{supplier}", "lines": [{"sku": SKU, "quantity": 6}]}
ACKNOWLEDGEMENT = {"expected_delivery_date": "2030-01-15"}
RECEIPT = {"lines": [{"sku": SKU, "quantity": 2}]}
# A public address written as such: registration resolves it without a name server.
NEW_ENDPOINT = {"url": "https://93.184.216.34/hooks", "events": ["order.created"]}
ENDPOINT_CHANGE = {"description": "role matrix"}
REPLAY = {"since": "2020-01-01T00:00:00Z"}
INBOUND = {"type": "purchase_order.shipped", "purchase_order_id": "{po}"}

#  method    path                                    body            admin staff serv. cust. none
MATRIX: list[tuple[str, str, dict[str, Any] | None, tuple[int, int, int, int, int]]] = [
    # API keys: admin only.
    ("POST", "/v1/api-keys", NEW_KEY, (201, 403, 403, 403, 401)),
    ("GET", "/v1/api-keys", None, (200, 403, 403, 403, 401)),
    ("GET", "/v1/api-keys/{key_id}", None, (200, 403, 403, 403, 401)),
    ("GET", "/v1/audit-events", None, (200, 403, 403, 403, 401)),
    ("POST", "/v1/api-keys/{key_id}/rotate", {"grace_seconds": 60}, (201, 403, 403, 403, 401)),
    ("DELETE", "/v1/api-keys/{key_id}", None, (200, 403, 403, 403, 401)),
    # Products: admin and staff all; service reads; customer reads active products.
    ("POST", "/v1/products", NEW_PRODUCT, (201, 201, 403, 403, 401)),
    ("GET", "/v1/products", None, (200, 200, 200, 200, 401)),
    ("GET", "/v1/products/{sku}", None, (200, 200, 200, 200, 401)),
    ("GET", "/v1/products/{inactive_sku}", None, (200, 200, 200, 404, 401)),
    ("PATCH", "/v1/products/{sku}", PRODUCT_CHANGE, (200, 200, 403, 403, 401)),
    # Stock levels and adjustments: admin and staff all; service reads; customer `available`.
    ("GET", "/v1/inventory/{sku}", None, (200, 200, 200, 200, 401)),
    ("GET", "/v1/inventory/{inactive_sku}", None, (200, 200, 200, 404, 401)),
    ("POST", "/v1/inventory/{sku}/adjustments", ADJUSTMENT, (201, 201, 403, 403, 401)),
    ("GET", "/v1/inventory/{sku}/movements", None, (200, 200, 200, 403, 401)),
    # Customers: admin and staff all; service creates and reads; customer its own.
    ("POST", "/v1/customers", NEW_CUSTOMER, (201, 201, 201, 403, 401)),
    ("GET", "/v1/customers", None, (200, 200, 200, 200, 401)),
    ("GET", "/v1/customers/{own_customer}", None, (200, 200, 200, 200, 401)),
    ("GET", "/v1/customers/{other_customer}", None, (200, 200, 200, 404, 401)),
    # Erasure: admin only, whoever's customer it is.
    ("POST", "/v1/customers/{other_customer}/erase", None, (200, 403, 403, 403, 401)),
    # Orders: place, read, cancel for every role, a customer only its own; ship: admin, staff.
    ("POST", "/v1/orders", ORDER_FOR_OWN, (201, 201, 201, 201, 401)),
    ("POST", "/v1/orders", ORDER_FOR_OTHER, (201, 201, 201, 404, 401)),
    ("POST", "/v1/orders/preview", ORDER_FOR_OWN, (200, 200, 200, 200, 401)),
    ("POST", "/v1/orders/preview", ORDER_FOR_OTHER, (200, 200, 200, 404, 401)),
    ("GET", "/v1/orders", None, (200, 200, 200, 200, 401)),
    ("GET", "/v1/orders/{own_order}", None, (200, 200, 200, 200, 401)),
    ("GET", "/v1/orders/{other_order}", None, (200, 200, 200, 404, 401)),
    ("POST", "/v1/orders/{own_order}/cancel", CANCEL, (200, 200, 200, 200, 401)),
    ("POST", "/v1/orders/{other_order}/cancel", CANCEL, (200, 200, 200, 404, 401)),
    ("POST", "/v1/orders/{own_order}/shipments", SHIPMENT, (201, 201, 403, 403, 401)),
    ("POST", "/v1/orders/{other_order}/shipments", SHIPMENT, (201, 201, 403, 403, 401)),
    # Recording offline payments: admin and staff (these orders were placed with payments
    # off, so the permitted roles get past the role check to 409).
    ("POST", "/v1/orders/{own_order}/payments", PAYMENT, (409, 409, 403, 403, 401)),
    # The order's Stripe PaymentIntent: everyone for the orders they may see (with payments
    # off here, 409 once past the role and visibility checks).
    ("POST", "/v1/orders/{own_order}/payment-intent", None, (409, 409, 409, 409, 401)),
    # Refunds: admin and staff (nothing was paid for these orders: 422 past the role check).
    ("POST", "/v1/orders/{own_order}/refunds", REFUND, (422, 422, 403, 403, 401)),
    ("POST", "/v1/orders/{other_order}/payment-intent", None, (409, 409, 409, 404, 401)),
    # Suppliers: admin and staff all; service reads; a customer reads only active products.
    ("POST", "/v1/suppliers", NEW_SUPPLIER, (201, 201, 403, 403, 401)),
    ("GET", "/v1/suppliers", None, (200, 200, 200, 403, 401)),
    ("GET", "/v1/suppliers/{supplier}", None, (200, 200, 200, 403, 401)),
    ("PATCH", "/v1/suppliers/{supplier}", SUPPLIER_CHANGE, (200, 200, 403, 403, 401)),
    # Supplier products: admin and staff only.
    ("GET", "/v1/products/{sku}/suppliers", None, (200, 200, 403, 403, 401)),
    ("POST", "/v1/products/{sku}/suppliers", NEW_SUPPLIER_PRODUCT, (201, 201, 403, 403, 401)),
    (
        "PATCH",
        "/v1/products/{sku}/suppliers/{supplier}",
        SUPPLIER_PRODUCT_CHANGE,
        (200, 200, 403, 403, 401),
    ),
    ("DELETE", "/v1/products/{sku}/suppliers/{supplier}", None, (204, 204, 403, 403, 401)),
    # Purchase orders and receipts: admin and staff only.
    ("POST", "/v1/purchase-orders", NEW_PURCHASE_ORDER, (201, 201, 403, 403, 401)),
    ("GET", "/v1/purchase-orders", None, (200, 200, 403, 403, 401)),
    ("GET", "/v1/purchase-orders/{po}", None, (200, 200, 403, 403, 401)),
    ("POST", "/v1/purchase-orders/{draft_po}/submit", None, (200, 200, 403, 403, 401)),
    (
        "POST",
        "/v1/purchase-orders/{po}/acknowledge",
        ACKNOWLEDGEMENT,
        (200, 200, 403, 403, 401),
    ),
    ("POST", "/v1/purchase-orders/{po}/receipts", RECEIPT, (201, 201, 403, 403, 401)),
    ("POST", "/v1/purchase-orders/{po}/cancel", CANCEL, (200, 200, 403, 403, 401)),
    ("POST", "/v1/suppliers/{supplier}/signing-secret", None, (200, 200, 403, 403, 401)),
    # A supplier's messages are authenticated by their signature, never by an API key.
    ("POST", "/v1/suppliers/{supplier}/inbound", INBOUND, (401, 401, 401, 401, 401)),
    # Stripe's events are authenticated by Stripe's signature, and taken only where payments
    # are `stripe` (they are off here).
    ("POST", "/v1/webhooks/stripe", None, (404, 404, 404, 404, 404)),
    # Events: admin and staff read them.
    ("GET", "/v1/events", None, (200, 200, 403, 403, 401)),
    ("GET", "/v1/events/{event}", None, (200, 200, 403, 403, 401)),
    # Webhook endpoints and their deliveries: admin only.
    ("POST", "/v1/webhook-endpoints", NEW_ENDPOINT, (201, 403, 403, 403, 401)),
    ("GET", "/v1/webhook-endpoints", None, (200, 403, 403, 403, 401)),
    ("GET", "/v1/webhook-endpoints/{endpoint}", None, (200, 403, 403, 403, 401)),
    ("PATCH", "/v1/webhook-endpoints/{endpoint}", ENDPOINT_CHANGE, (200, 403, 403, 403, 401)),
    ("DELETE", "/v1/webhook-endpoints/{endpoint}", None, (204, 403, 403, 403, 401)),
    ("POST", "/v1/webhook-endpoints/{endpoint}/rotate-secret", None, (200, 403, 403, 403, 401)),
    ("GET", "/v1/webhook-endpoints/{endpoint}/deliveries", None, (200, 403, 403, 403, 401)),
    ("POST", "/v1/webhook-endpoints/{endpoint}/replay", REPLAY, (202, 403, 403, 403, 401)),
    ("POST", "/v1/webhook-deliveries/{delivery}/retry", None, (202, 403, 403, 403, 401)),
    # Health: open to everyone, with or without a key.
    ("GET", "/healthz", None, (200, 200, 200, 200, 200)),
    ("GET", "/readyz", None, (200, 200, 200, 200, 200)),
    # Open unless STOCKFLOW_METRICS_TOKEN is set (tests/api/test_observability.py).
    ("GET", "/metrics", None, (200, 200, 200, 200, 200)),
]

CASES = [
    pytest.param(method, path, body, role, expected[index], id=f"{role}-{method}-{path}")
    for method, path, body, expected in MATRIX
    for index, role in enumerate(ROLES)
]


@dataclass(frozen=True)
class World:
    """What the paths' placeholders stand for."""

    values: dict[str, str]

    def url(self, path: str) -> str:
        return path.format(**self.values)

    def body(self, body: dict[str, Any] | None) -> dict[str, Any] | None:
        """The body with ``{placeholder}`` string values filled in."""
        if body is None:
            return None
        return {
            name: value.format(**self.values) if isinstance(value, str) else value
            for name, value in body.items()
        }


@pytest.fixture
async def world(
    client: httpx.AsyncClient, keys: Keys, settings: Settings, database: Database
) -> World:
    endpoint = await client.post("/v1/webhook-endpoints", headers=keys.admin, json=NEW_ENDPOINT)
    assert endpoint.status_code == 201, endpoint.text
    for sku, active in ((SKU, True), (INACTIVE_SKU, False)):
        created = await client.post(
            "/v1/products",
            headers=keys.admin,
            json={"sku": sku, "name": sku, "unit_price": 1290, "currency": "EUR", "active": active},
        )
        assert created.status_code == 201, created.text
        stocked = await client.post(
            f"/v1/inventory/{sku}/adjustments",
            headers=keys.admin,
            json={"delta": 40, "reason": "opening stock"},
        )
        assert stocked.status_code == 201, stocked.text
    spare = await client.post(
        "/v1/api-keys", headers=keys.admin, json={"name": "spare", "role": "staff"}
    )
    assert spare.status_code == 201, spare.text
    supplier_ids = []
    for name in ("Matrix Linked", "Matrix Spare"):
        supplier = await client.post(
            "/v1/suppliers", headers=keys.admin, json={"name": name, "lead_time_days": 3}
        )
        assert supplier.status_code == 201, supplier.text
        supplier_ids.append(supplier.json()["id"])
    linked = await client.post(
        f"/v1/products/{SKU}/suppliers",
        headers=keys.admin,
        json={
            "supplier_id": supplier_ids[0],
            "supplier_sku": "MS-1",
            "cost_price": 400,
            "currency": "EUR",
        },
    )
    assert linked.status_code == 201, linked.text
    order_ids = {}
    for customer_id in (keys.customer_id, keys.other_customer_id):
        placed = await client.post(
            "/v1/orders",
            headers=keys.admin,
            json={"customer_id": customer_id, "lines": [{"sku": SKU, "quantity": 2}]},
        )
        assert placed.status_code == 201, placed.text
        order_ids[customer_id] = placed.json()["id"]
    po_ids = []
    for _ in range(2):
        po = await client.post(
            "/v1/purchase-orders",
            headers=keys.admin,
            json={"supplier_id": supplier_ids[0], "lines": [{"sku": SKU, "quantity": 10}]},
        )
        assert po.status_code == 201, po.text
        po_ids.append(po.json()["id"])
    submitted = await client.post(f"/v1/purchase-orders/{po_ids[1]}/submit", headers=keys.admin)
    assert submitted.status_code == 200, submitted.text
    relay = build_relay(settings, database)
    assert await relay.dispatch_once() > 0
    await relay.aclose()
    endpoint_id = endpoint.json()["id"]
    deliveries = await client.get(
        f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=keys.admin
    )
    event = (await client.get("/v1/events", headers=keys.admin)).json()["data"][0]
    return World(
        {
            "sku": SKU,
            "inactive_sku": INACTIVE_SKU,
            "key_id": spare.json()["id"],
            "own_customer": keys.customer_id,
            "other_customer": keys.other_customer_id,
            "own_order": order_ids[keys.customer_id],
            "other_order": order_ids[keys.other_customer_id],
            "supplier": supplier_ids[0],
            "spare_supplier": supplier_ids[1],
            "draft_po": po_ids[0],
            "po": po_ids[1],
            "event": event["id"],
            "endpoint": endpoint_id,
            "delivery": deliveries.json()["data"][0]["id"],
        }
    )


def test_the_matrix_covers_every_route_of_the_app() -> None:
    """A new endpoint without a row here fails this test: add its row from DESIGN.md."""
    from stockflow.app import create_app
    from stockflow.config import Settings

    app = create_app(Settings(database_url="sqlite:///:memory:"))
    # /problems/{slug} documents error types: public, and not part of the role table.
    served = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path != "/problems/{slug}"
        for method in operations
    }
    placeholders = {
        "{key_id}": "{key_id}",
        "{sku}": "{sku}",
        "{inactive_sku}": "{sku}",
        "{own_customer}": "{customer_id}",
        "{other_customer}": "{customer_id}",
        "{own_order}": "{order_id}",
        "{other_order}": "{order_id}",
        "{supplier}": "{supplier_id}",
        "{draft_po}": "{po_id}",
        "{po}": "{po_id}",
        "{event}": "{event_id}",
        "{endpoint}": "{endpoint_id}",
        "{delivery}": "{delivery_id}",
    }

    def route_of(path: str) -> str:
        for placeholder, parameter in placeholders.items():
            path = path.replace(placeholder, parameter)
        return path

    in_matrix = {(method, route_of(path)) for method, path, _, _ in MATRIX}
    assert served == in_matrix


@pytest.mark.parametrize(("method", "path", "body", "role", "expected"), CASES)
async def test_role_matrix(
    client: httpx.AsyncClient,
    keys: Keys,
    world: World,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    role: str,
    expected: int,
) -> None:
    headers = {} if role == "none" else keys.for_role(role)
    response = await client.request(method, world.url(path), headers=headers, json=world.body(body))
    assert response.status_code == expected, response.text
    signed = path.endswith("/inbound")  # a signature, not a key, is what it asks for
    if expected >= 400:
        assert response.headers["content-type"].startswith(PROBLEM)
        slug = {
            401: "unauthenticated",
            403: "forbidden",
            404: "not-found",
            409: "payment-provider-mismatch",
            422: "refund-exceeds-paid",
        }[expected]
        if signed:
            slug = "invalid-signature"
        assert response.json()["type"] == f"/problems/{slug}"
    if expected == 401 and not signed:
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_customer_sees_only_available_stock(
    client: httpx.AsyncClient, keys: Keys, world: World
) -> None:
    # 40 on hand, 2 + 2 reserved by the world's two orders.
    response = await client.get(f"/v1/inventory/{SKU}", headers=keys.customer)
    assert response.status_code == 200
    assert response.json() == {"sku": SKU, "available": 36}
    full = (await client.get(f"/v1/inventory/{SKU}", headers=keys.service)).json()
    assert full["on_hand"] == 40
    assert full["reserved"] == 4
    assert full["available"] == 36
    assert {"reserved", "backordered", "on_order", "locations"} <= set(full)


async def test_customer_lists_only_active_products(
    client: httpx.AsyncClient, keys: Keys, world: World
) -> None:
    listed = (await client.get("/v1/products", headers=keys.customer)).json()["data"]
    assert [p["sku"] for p in listed] == [SKU]
    asked = await client.get("/v1/products", headers=keys.customer, params={"active": "false"})
    assert asked.status_code == 200
    assert all(p["active"] for p in asked.json()["data"])
    everything = (await client.get("/v1/products", headers=keys.service)).json()["data"]
    assert sorted(p["sku"] for p in everything) == sorted([SKU, INACTIVE_SKU])


async def test_customer_lists_only_its_own_orders(
    client: httpx.AsyncClient, keys: Keys, world: World
) -> None:
    own = world.values["own_order"]
    other = world.values["other_order"]
    listed = await client.get("/v1/orders", headers=keys.customer)
    assert listed.status_code == 200
    assert [o["id"] for o in listed.json()["data"]] == [own]
    asked = await client.get(
        "/v1/orders", headers=keys.customer, params={"customer_id": keys.other_customer_id}
    )
    assert asked.status_code == 200
    assert asked.json() == {"data": [], "next_cursor": None}
    everything = (await client.get("/v1/orders", headers=keys.service)).json()["data"]
    assert sorted(o["id"] for o in everything) == sorted([own, other])


async def test_customer_orders_for_itself_without_naming_a_customer(
    client: httpx.AsyncClient, keys: Keys, world: World
) -> None:
    placed = await client.post(
        "/v1/orders", headers=keys.customer, json={"lines": [{"sku": SKU, "quantity": 1}]}
    )
    assert placed.status_code == 201, placed.text
    assert placed.json()["customer_id"] == keys.customer_id
