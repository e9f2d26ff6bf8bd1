"""Every mutating operation of the API is audited (DESIGN.md section 4): performed with an
admin or staff key, it writes exactly one audit record, naming that key, with the resource
as the API showed it before and after.

``OPERATIONS`` holds one row per mutating operation of the OpenAPI document (POST, PUT,
PATCH, DELETE): how to get ready for it, how to perform it, and which record it must leave.
A new operation without a row fails `test_every_mutating_operation_has_a_row`. Operations
authenticated by a signature rather than an API key (a supplier's message, Stripe's events)
are done by no one on the staff: each is kept once in the inbox instead, and its row checks
the kept message. An operation that changes nothing (an order preview) must record nothing.

Admin-only operations are performed by the admin key, every other one by the staff key.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import pytest
from sqlalchemy import select, update
from standardwebhooks import Webhook

from stockflow.app import create_app
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.db.models import AuditRecord, Delivery, InboxMessage
from stockflow.webhooks.schedule import MAX_ATTEMPTS
from stockflow.workers.runner import build_relay
from tests.api.test_payments_stripe import stripe_settings
from tests.conftest import Keys, offline_resolver
from tests.fake_stripe import FakeStripe, running_fake_stripe

SKU = "AUDIT-MUG"
MUTATING = ("post", "put", "patch", "delete")

Payments = Literal["none", "manual", "stripe"]


# --- the shop every row starts from ---------------------------------------------------------


@dataclass
class Shop:
    """The app under test with its keys; setting up goes through the API with the admin
    key, so that only the operation under test is done by the performing key."""

    client: httpx.AsyncClient
    keys: Keys
    database: Database
    settings: Settings
    stripe: FakeStripe | None

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Any:
        response = await self.client.request(
            method, path, headers=headers or self.keys.admin, json=body
        )
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    async def read(self, path: str) -> Any:
        """The resource as the API shows it, or None once it is gone."""
        response = await self.client.get(path, headers=self.keys.admin)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return response.json()

    async def product(self, sku: str = SKU, *, stock: int = 20, **fields: Any) -> dict[str, Any]:
        created: dict[str, Any] = await self.call(
            "POST",
            "/v1/products",
            body={"sku": sku, "name": sku, "unit_price": 1290, "currency": "EUR", **fields},
            status=201,
        )
        if stock:
            await self.adjust(sku, stock)
        return created

    async def adjust(self, sku: str, delta: int) -> None:
        await self.call(
            "POST",
            f"/v1/inventory/{sku}/adjustments",
            body={"delta": delta, "reason": "opening stock"},
            status=201,
        )

    async def supplier(self, name: str = "Audit Supplier") -> dict[str, Any]:
        created: dict[str, Any] = await self.call(
            "POST", "/v1/suppliers", body={"name": name, "lead_time_days": 4}, status=201
        )
        return created

    async def sold_by(self, supplier_id: str, sku: str = SKU) -> dict[str, Any]:
        link: dict[str, Any] = await self.call(
            "POST",
            f"/v1/products/{sku}/suppliers",
            body={
                "supplier_id": supplier_id,
                "supplier_sku": f"S-{sku}",
                "cost_price": 500,
                "currency": "EUR",
            },
            status=201,
        )
        return link

    async def order(
        self, quantity: int = 2, *, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        placed: dict[str, Any] = await self.call(
            "POST",
            "/v1/orders",
            body={
                "customer_id": self.keys.customer_id,
                "lines": [{"sku": SKU, "quantity": quantity}],
            },
            status=201,
            headers=headers,
        )
        return placed

    async def purchase_order(self, *, submit: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """A PO for 10 of the product, as a draft or submitted; and its supplier."""
        await self.product(stock=0)
        supplier = await self.supplier()
        await self.sold_by(supplier["id"])
        po: dict[str, Any] = await self.call(
            "POST",
            "/v1/purchase-orders",
            body={"supplier_id": supplier["id"], "lines": [{"sku": SKU, "quantity": 10}]},
            status=201,
        )
        if submit:
            po = await self.call("POST", f"/v1/purchase-orders/{po['id']}/submit")
        return po, supplier

    async def endpoint(self) -> dict[str, Any]:
        created: dict[str, Any] = await self.call(
            "POST",
            "/v1/webhook-endpoints",
            body={"url": "https://hooks.example/stockflow", "events": ["stock.adjusted"]},
            status=201,
        )
        return created

    async def dispatched_event(self) -> None:
        """A `stock.adjusted` event, handed out to the endpoints that want it."""
        await self.product()
        relay = build_relay(self.settings, self.database)
        try:
            assert await relay.dispatch_once() > 0
        finally:
            await relay.aclose()


@asynccontextmanager
async def opened(
    payments: Payments, database_url: str, database: Database, keys: Keys
) -> AsyncIterator[Shop]:
    async with AsyncExitStack() as stack:
        fake: FakeStripe | None = None
        if payments == "stripe":
            fake = await stack.enter_async_context(running_fake_stripe())
            settings = stripe_settings(database_url, fake)
        else:
            settings = Settings(database_url=database_url, payments=payments)
        app = create_app(settings, database=database)
        app.state.webhooks = replace(app.state.webhooks, resolver=offline_resolver)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as c:
            yield Shop(c, keys, database, settings, fake)
        await app.state.key_usage.drain()
        if app.state.checkout is not None:
            await app.state.checkout.gateway.aclose()


# --- what a row declares --------------------------------------------------------------------

View = Callable[[Any], Awaitable[Any]]
"""Reads the resource an operation changes, as the API shows it: called with None before
the operation, and with the response's body after it (a creation is found by its id)."""


async def nothing(_body: Any) -> None:
    return None


@dataclass(frozen=True)
class Stage:
    """What an arrangement made ready: the path's parameters, the request, and how to read
    the resource the operation changes."""

    params: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    content: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    view: View = nothing
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    stage: Stage
    response: httpx.Response
    before: Any
    after: Any

    @property
    def body(self) -> Any:
        return self.response.json() if self.response.content else None

    @property
    def facts(self) -> dict[str, Any]:
        return self.stage.facts


Expect = Callable[[Outcome], Any]


def created(_o: Outcome) -> None:
    return None


def as_before(o: Outcome) -> Any:
    return o.before


def as_answered(o: Outcome) -> Any:
    """The resource as read after the operation, which is also what the operation answered."""
    assert o.body == o.after
    return o.after


def gone(o: Outcome) -> None:
    """Deleted: no longer there to read, and nothing after."""
    assert o.after is None


def answered_without(secret: str) -> Expect:
    """As `as_answered`, for a response that also shows a secret, once."""

    def after(o: Outcome) -> Any:
        assert without(o.body, secret) == o.after
        return o.after

    return after


class Including:
    """Equal to a recorded value that holds at least these members, and none of the
    ``absent`` strings anywhere: for records whose extras are the operation's own."""

    def __init__(self, members: dict[str, Any], *, absent: tuple[str, ...] = ()) -> None:
        self.members = members
        self.absent = absent

    def __eq__(self, recorded: object) -> bool:
        return (
            isinstance(recorded, dict)
            and {k: recorded.get(k) for k in self.members} == self.members
            and not any(text in json.dumps(recorded) for text in self.absent)
        )

    def __repr__(self) -> str:
        return f"Including({self.members!r}, absent={self.absent!r})"


@dataclass(frozen=True)
class Audited:
    """One audit record, by the performing key, on this resource, with these values."""

    action: str
    resource_type: str
    resource_id: Expect
    before: Expect
    after: Expect


@dataclass(frozen=True)
class Inboxed:
    """No audit record: the message is kept once in the inbox for the worker to apply."""

    source_type: str
    source_id: Expect
    message_id: Expect
    type: str


@dataclass(frozen=True)
class Unchanged:
    """Nothing written, so nothing recorded."""


Arrange = Callable[[Shop], Awaitable[Stage]]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    performer: Literal["admin", "staff"] | None
    """The key that performs it; None for an operation authenticated by a signature."""
    status: int
    arrange: Arrange
    expect: Audited | Inboxed | Unchanged
    payments: Payments = "none"


# --- views ----------------------------------------------------------------------------------


def reading(shop: Shop, path: str | Callable[[Any], str]) -> View:
    async def view(body: Any) -> Any:
        if callable(path):
            return None if body is None else await shop.read(path(body))
        return await shop.read(path)

    return view


def order_view(shop: Shop, order_id: str | None = None, *, money: bool = False) -> View:
    """An order as placing, shipping and cancelling answer it; with ``money``, also its
    payments and refunds, which only reading it shows."""

    async def view(body: Any) -> Any:
        found_id = order_id or (None if body is None else body["id"])
        if found_id is None:
            return None
        order: dict[str, Any] | None = await shop.read(f"/v1/orders/{found_id}")
        if order is not None and not money:
            del order["payments"], order["refunds"]
        return order

    return view


def link_view(shop: Shop, supplier_id: str) -> View:
    async def view(_body: Any) -> Any:
        links = await shop.read(f"/v1/products/{SKU}/suppliers")
        return next((link for link in links["data"] if link["supplier_id"] == supplier_id), None)

    return view


def stock_view(shop: Shop) -> View:
    async def view(_body: Any) -> Any:
        inventory = await shop.read(f"/v1/inventory/{SKU}")
        [default] = [row for row in inventory["locations"] if row["location"] == "default"]
        return default

    return view


def delivery_view(shop: Shop, endpoint_id: str, delivery_id: str) -> View:
    async def view(_body: Any) -> Any:
        listed = await shop.read(f"/v1/webhook-endpoints/{endpoint_id}/deliveries")
        [delivery] = [d for d in listed["data"] if d["id"] == delivery_id]
        return {k: v for k, v in delivery.items() if k != "attempts"}

    return view


def without(body: dict[str, Any], *secrets: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in secrets}


# --- catalog, stock, customers --------------------------------------------------------------


async def new_product(shop: Shop) -> Stage:
    return Stage(
        body={"sku": SKU, "name": "Audited mug", "unit_price": 1290, "currency": "EUR"},
        view=reading(shop, lambda body: f"/v1/products/{body['sku']}"),
    )


async def product_change(shop: Shop) -> Stage:
    await shop.product()
    return Stage(
        params={"sku": SKU},
        body={"name": "Renamed mug", "unit_price": 1490},
        view=reading(shop, f"/v1/products/{SKU}"),
    )


async def adjustment_serving_a_backorder(shop: Shop) -> Stage:
    """Nothing in stock and an order waiting for 3: the 5 added serve it first."""
    supplier = await shop.supplier()
    await shop.product(
        stock=0,
        shortage_policy="backorder",
        suppliers=[
            {
                "supplier_id": supplier["id"],
                "supplier_sku": "S-1",
                "cost_price": 500,
                "currency": "EUR",
            }
        ],
    )
    waiting = await shop.order(3)
    assert waiting["lines"][0]["backordered"] == 3
    return Stage(
        params={"sku": SKU},
        body={"delta": 5, "reason": "found in the back room"},
        view=stock_view(shop),
        facts={"order_id": waiting["id"]},
    )


def stock_before(o: Outcome) -> dict[str, Any]:
    return {"location": "default", "on_hand": o.before["on_hand"], "reserved": o.before["reserved"]}


def stock_after(o: Outcome) -> dict[str, Any]:
    assert (o.before["on_hand"], o.before["reserved"]) == (0, 0)
    assert (o.after["on_hand"], o.after["reserved"]) == (5, 3)
    return {
        "location": "default",
        "on_hand": o.after["on_hand"],
        "reserved": o.after["reserved"],
        "reason": "found in the back room",
        "movement_id": o.body["movement"]["id"],
        "served_orders": [{"order_id": o.facts["order_id"], "units": 3}],
    }


async def new_customer(shop: Shop) -> Stage:
    return Stage(
        body={"name": "Ada Lovelace", "email": "ada@example.com", "external_ref": "crm-1"},
        view=reading(shop, lambda body: f"/v1/customers/{body['id']}"),
    )


async def erasure(shop: Shop) -> Stage:
    """A customer with personal data, an order and a key of its own: revoking that key is
    part of the erasure, not a record of its own."""
    customer = await shop.call(
        "POST",
        "/v1/customers",
        body={"name": "Grace Hopper", "email": "grace@example.com", "external_ref": "crm-2"},
        status=201,
    )
    await shop.product()
    await shop.call(
        "POST",
        "/v1/orders",
        body={"customer_id": customer["id"], "lines": [{"sku": SKU, "quantity": 1}]},
        status=201,
    )
    await shop.call(
        "POST",
        "/v1/api-keys",
        body={"name": "shop login", "role": "customer", "customer_id": customer["id"]},
        status=201,
    )
    return Stage(
        params={"customer_id": customer["id"]},
        view=reading(shop, f"/v1/customers/{customer['id']}"),
        facts={"personal": ("Grace Hopper", "grace@example.com", "crm-2")},
    )


def not_yet_erased(o: Outcome) -> Including:
    """Who was erased, and that they were not yet: no personal data in the trail."""
    assert o.before["erased_at"] is None
    return Including({"id": o.before["id"], "erased_at": None}, absent=o.facts["personal"])


def erased(o: Outcome) -> Including:
    """The customer as it reads back now, which holds nothing personal any more."""
    assert o.after["erased_at"] is not None
    return Including(as_answered(o), absent=o.facts["personal"])


# --- orders, payments, refunds --------------------------------------------------------------


async def order_for_a_customer(shop: Shop) -> Stage:
    await shop.product()
    return Stage(
        body={
            "customer_id": shop.keys.customer_id,
            "lines": [{"sku": SKU, "quantity": 3}],
            "shipping_amount": 490,
        },
        view=order_view(shop),
        facts={"customer_id": shop.keys.customer_id},
    )


def placed_for_the_customer(o: Outcome) -> Any:
    assert o.body["customer_id"] == o.facts["customer_id"]
    return as_answered(o)


async def preview(shop: Shop) -> Stage:
    await shop.product()
    return Stage(
        body={"customer_id": shop.keys.customer_id, "lines": [{"sku": SKU, "quantity": 3}]}
    )


async def shipment(shop: Shop) -> Stage:
    await shop.product()
    order = await shop.order(3)
    return Stage(
        params={"order_id": order["id"]},
        body={"lines": [{"sku": SKU, "quantity": 2}]},
        view=order_view(shop, order["id"]),
    )


def shipped(o: Outcome) -> Any:
    assert o.body["order"] == o.after
    assert (o.before["status"], o.after["status"]) == ("confirmed", "partially_shipped")
    return {**o.after, "shipment_id": o.body["id"]}


async def cancellation(shop: Shop) -> Stage:
    await shop.product()
    order = await shop.order(3)
    return Stage(
        params={"order_id": order["id"]},
        body={"reason": "the customer called"},
        view=order_view(shop, order["id"]),
    )


async def manual_payment(shop: Shop) -> Stage:
    await shop.product()
    order = await shop.order(2)
    assert order["status"] == "pending_payment"
    return Stage(
        params={"order_id": order["id"]},
        body={"amount": order["total"], "reference": "SEPA 42"},
        view=order_view(shop, order["id"], money=True),
    )


def paid_before(o: Outcome) -> dict[str, Any]:
    return {"status": o.before["status"], "amount_paid": o.before["amount_paid"]}


def paid_after(o: Outcome) -> dict[str, Any]:
    assert o.after["payments"] == [o.body]
    assert (o.before["status"], o.after["status"]) == ("pending_payment", "confirmed")
    return {"status": o.after["status"], "amount_paid": o.after["amount_paid"], "payment": o.body}


async def payment_intent(shop: Shop) -> Stage:
    await shop.product()
    order = await shop.order(2)
    return Stage(params={"order_id": order["id"]}, view=order_view(shop, order["id"], money=True))


def intent_before(o: Outcome) -> dict[str, Any]:
    assert o.before["payments"] == []
    return {"status": "pending_payment", "amount_paid": 0}


def intent_after(o: Outcome) -> dict[str, Any]:
    [payment] = o.after["payments"]
    assert (payment["id"], payment["intent_id"]) == (o.body["payment_id"], o.body["intent_id"])
    assert (o.after["status"], o.after["amount_paid"]) == ("pending_payment", 0)
    return {"status": "pending_payment", "amount_paid": 0, "payment": payment}


async def refund(shop: Shop) -> Stage:
    await shop.product()
    order = await shop.order(2)
    await shop.call(
        "POST",
        f"/v1/orders/{order['id']}/payments",
        body={"amount": order["total"], "reference": "SEPA 7"},
        status=201,
    )
    return Stage(
        params={"order_id": order["id"]},
        body={"amount": 500, "reason": "one mug arrived chipped"},
        view=order_view(shop, order["id"], money=True),
    )


def refunded_before(o: Outcome) -> dict[str, Any]:
    return {"amount_paid": o.before["amount_paid"], "amount_refunded": 0}


def refunded_after(o: Outcome) -> dict[str, Any]:
    assert o.after["refunds"] == [o.body]
    assert o.after["amount_refunded"] == 500
    return {
        "amount_paid": o.after["amount_paid"],
        "amount_refunded": o.after["amount_refunded"],
        "refund": o.body,
    }


# --- purchasing -----------------------------------------------------------------------------


async def new_purchase_order(shop: Shop) -> Stage:
    await shop.product(stock=0)
    supplier = await shop.supplier()
    await shop.sold_by(supplier["id"])
    return Stage(
        body={"supplier_id": supplier["id"], "lines": [{"sku": SKU, "quantity": 12}]},
        view=reading(shop, lambda body: f"/v1/purchase-orders/{body['id']}"),
    )


def po_step(*, submit: bool, body: dict[str, Any] | None = None) -> Arrange:
    async def arrange(shop: Shop) -> Stage:
        po, _supplier = await shop.purchase_order(submit=submit)
        return Stage(
            params={"po_id": po["id"]},
            body=body,
            view=reading(shop, f"/v1/purchase-orders/{po['id']}"),
        )

    return arrange


def received(o: Outcome) -> Any:
    assert o.body["purchase_order"] == o.after
    assert (o.before["status"], o.after["status"]) == ("submitted", "partially_received")
    return o.after


async def new_supplier(shop: Shop) -> Stage:
    return Stage(
        body={"name": "Stoneware Bros.", "lead_time_days": 6, "connector": {"type": "manual"}},
        view=reading(shop, lambda body: f"/v1/suppliers/{body['id']}"),
    )


async def supplier_change(shop: Shop) -> Stage:
    supplier = await shop.supplier()
    return Stage(
        params={"supplier_id": supplier["id"]},
        body={"lead_time_days": 11, "contact_email": "sales@stoneware.example"},
        view=reading(shop, f"/v1/suppliers/{supplier['id']}"),
    )


async def signing_secret(shop: Shop) -> Stage:
    """A second secret: the first one stays honoured for a while."""
    supplier = await shop.supplier()
    await shop.call("POST", f"/v1/suppliers/{supplier['id']}/signing-secret")
    return Stage(
        params={"supplier_id": supplier["id"]},
        view=reading(shop, f"/v1/suppliers/{supplier['id']}"),
    )


def secret_before(o: Outcome) -> dict[str, Any]:
    return {**o.before, "has_signing_secret": True, "previous_secret_expires_at": None}


def secret_after(o: Outcome) -> dict[str, Any]:
    assert o.body["previous_secret_expires_at"] is not None
    return {
        **o.after,
        "has_signing_secret": True,
        "previous_secret_expires_at": o.body["previous_secret_expires_at"],
    }


async def supplier_message(shop: Shop) -> Stage:
    po, supplier = await shop.purchase_order(submit=True)
    issued = await shop.call("POST", f"/v1/suppliers/{supplier['id']}/signing-secret")
    text = json.dumps({"type": "purchase_order.shipped", "purchase_order_id": po["id"]})
    now = datetime.now(UTC)
    return Stage(
        params={"supplier_id": supplier["id"]},
        content=text,
        headers={
            "content-type": "application/json",
            "webhook-id": "msg_audit_1",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(issued["secret"]).sign("msg_audit_1", now, text),
        },
    )


async def new_link(shop: Shop) -> Stage:
    await shop.product()
    supplier = await shop.supplier()
    return Stage(
        params={"sku": SKU},
        body={
            "supplier_id": supplier["id"],
            "supplier_sku": "SB-7",
            "cost_price": 450,
            "currency": "EUR",
            "pack_size": 6,
        },
        view=link_view(shop, supplier["id"]),
    )


def link_step(body: dict[str, Any] | None = None) -> Arrange:
    async def arrange(shop: Shop) -> Stage:
        await shop.product()
        supplier = await shop.supplier()
        await shop.sold_by(supplier["id"])
        return Stage(
            params={"sku": SKU, "supplier_id": supplier["id"]},
            body=body,
            view=link_view(shop, supplier["id"]),
        )

    return arrange


# --- webhooks -------------------------------------------------------------------------------


async def new_endpoint(shop: Shop) -> Stage:
    return Stage(
        body={"url": "https://hooks.example/orders", "events": ["order.created"]},
        view=reading(shop, lambda body: f"/v1/webhook-endpoints/{body['id']}"),
    )


def endpoint_step(body: dict[str, Any] | None = None, *, with_event: bool = False) -> Arrange:
    async def arrange(shop: Shop) -> Stage:
        endpoint = await shop.endpoint()
        if with_event:
            await shop.dispatched_event()
        return Stage(
            params={"endpoint_id": endpoint["id"]},
            body=body,
            view=reading(shop, f"/v1/webhook-endpoints/{endpoint['id']}"),
        )

    return arrange


def secret_rotated(o: Outcome) -> Any:
    assert o.before["previous_secret_expires_at"] is None
    assert o.after["previous_secret_expires_at"] == o.body["previous_secret_expires_at"]
    return o.after


def replayed(o: Outcome) -> dict[str, Any]:
    assert o.body["queued"] >= 1
    return {"since": "2020-01-01T00:00:00Z", "until": None, "types": None, **o.body}


async def dead_delivery(shop: Shop) -> Stage:
    """A delivery whose every attempt failed."""
    endpoint = await shop.endpoint()
    await shop.dispatched_event()
    listed = await shop.read(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries")
    [delivery] = listed["data"]
    async with shop.database.transaction() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery["id"])
            .values(status="dead", attempts=MAX_ATTEMPTS)
        )
    return Stage(
        params={"delivery_id": delivery["id"]},
        view=delivery_view(shop, endpoint["id"], delivery["id"]),
    )


def retried_before(o: Outcome) -> dict[str, Any]:
    assert o.before["status"] == "dead"
    return {**o.before, "max_attempts": MAX_ATTEMPTS}


def retried_after(o: Outcome) -> dict[str, Any]:
    assert without(o.body, "attempts") == o.after
    assert o.after["status"] == "pending"
    return {**o.after, "max_attempts": MAX_ATTEMPTS + 1}


async def stripe_event(shop: Shop) -> Stage:
    assert shop.stripe is not None
    await shop.product()
    order = await shop.order(2, headers=shop.keys.customer)
    intent = await shop.call(
        "POST", f"/v1/orders/{order['id']}/payment-intent", headers=shop.keys.customer
    )
    payload = shop.stripe.event(
        "payment_intent.succeeded",
        shop.stripe.succeed(intent["intent_id"]),
        event_id="evt_audit_1",
    )
    return Stage(
        content=payload,
        headers={"Content-Type": "application/json", "Stripe-Signature": shop.stripe.sign(payload)},
    )


# --- API keys -------------------------------------------------------------------------------


async def new_key(shop: Shop) -> Stage:
    return Stage(
        body={"name": "Storefront", "role": "service"},
        view=reading(shop, lambda body: f"/v1/api-keys/{body['id']}"),
    )


def key_step(body: dict[str, Any] | None = None) -> Arrange:
    async def arrange(shop: Shop) -> Stage:
        spare = await shop.call(
            "POST", "/v1/api-keys", body={"name": "spare", "role": "staff"}, status=201
        )
        return Stage(
            params={"key_id": spare["id"]},
            body=body,
            view=reading(shop, f"/v1/api-keys/{spare['id']}"),
        )

    return arrange


def rotated(o: Outcome) -> dict[str, Any]:
    assert o.after["replaced_by"] == o.body["id"]
    assert o.after["expires_at"] is not None
    return {**o.after, "replacement": without(o.body, "key")}


def path_id(name: str) -> Expect:
    return lambda o: o.stage.params[name]


def body_id(name: str = "id") -> Expect:
    return lambda o: o.body[name]


# --- the table ------------------------------------------------------------------------------

OPERATIONS: list[Operation] = [
    # Catalog and stock.
    Operation(
        "POST",
        "/v1/products",
        "staff",
        201,
        new_product,
        Audited("product.created", "product", body_id("sku"), created, as_answered),
    ),
    Operation(
        "PATCH",
        "/v1/products/{sku}",
        "staff",
        200,
        product_change,
        Audited("product.updated", "product", path_id("sku"), as_before, as_answered),
    ),
    Operation(
        "POST",
        "/v1/inventory/{sku}/adjustments",
        "staff",
        201,
        adjustment_serving_a_backorder,
        Audited(
            "stock.adjusted", "stock_level", lambda o: f"{SKU}@default", stock_before, stock_after
        ),
    ),
    # Customers.
    Operation(
        "POST",
        "/v1/customers",
        "staff",
        201,
        new_customer,
        Audited("customer.created", "customer", body_id(), created, as_answered),
    ),
    Operation(
        "POST",
        "/v1/customers/{customer_id}/erase",
        "admin",
        200,
        erasure,
        Audited("customer.erased", "customer", path_id("customer_id"), not_yet_erased, erased),
    ),
    # Orders: placed by staff for a customer, previewed, shipped, cancelled.
    Operation(
        "POST",
        "/v1/orders",
        "staff",
        201,
        order_for_a_customer,
        Audited("order.placed", "order", body_id(), created, placed_for_the_customer),
    ),
    Operation("POST", "/v1/orders/preview", "staff", 200, preview, Unchanged()),
    Operation(
        "POST",
        "/v1/orders/{order_id}/shipments",
        "staff",
        201,
        shipment,
        Audited("order.shipped", "order", path_id("order_id"), as_before, shipped),
    ),
    Operation(
        "POST",
        "/v1/orders/{order_id}/cancel",
        "staff",
        200,
        cancellation,
        Audited("order.cancelled", "order", path_id("order_id"), as_before, as_answered),
    ),
    # Payments and refunds.
    Operation(
        "POST",
        "/v1/orders/{order_id}/payments",
        "staff",
        201,
        manual_payment,
        Audited("payment.recorded", "order", path_id("order_id"), paid_before, paid_after),
        payments="manual",
    ),
    Operation(
        "POST",
        "/v1/orders/{order_id}/payment-intent",
        "staff",
        200,
        payment_intent,
        Audited(
            "payment_intent.created", "order", path_id("order_id"), intent_before, intent_after
        ),
        payments="stripe",
    ),
    Operation(
        "POST",
        "/v1/orders/{order_id}/refunds",
        "staff",
        201,
        refund,
        Audited("refund.created", "order", path_id("order_id"), refunded_before, refunded_after),
        payments="manual",
    ),
    Operation(
        "POST",
        "/v1/webhooks/stripe",
        None,
        200,
        stripe_event,
        Inboxed("stripe", lambda o: "stripe", lambda o: "evt_audit_1", "payment_intent.succeeded"),
        payments="stripe",
    ),
    # Purchase orders.
    Operation(
        "POST",
        "/v1/purchase-orders",
        "staff",
        201,
        new_purchase_order,
        Audited("purchase_order.created", "purchase_order", body_id(), created, as_answered),
    ),
    Operation(
        "POST",
        "/v1/purchase-orders/{po_id}/submit",
        "staff",
        200,
        po_step(submit=False),
        Audited(
            "purchase_order.submitted", "purchase_order", path_id("po_id"), as_before, as_answered
        ),
    ),
    Operation(
        "POST",
        "/v1/purchase-orders/{po_id}/acknowledge",
        "staff",
        200,
        po_step(submit=True, body={"expected_delivery_date": "2030-01-15"}),
        Audited(
            "purchase_order.acknowledged",
            "purchase_order",
            path_id("po_id"),
            as_before,
            as_answered,
        ),
    ),
    Operation(
        "POST",
        "/v1/purchase-orders/{po_id}/receipts",
        "staff",
        201,
        po_step(submit=True, body={"lines": [{"sku": SKU, "quantity": 4}], "note": "pallet 1"}),
        Audited("purchase_order.received", "purchase_order", path_id("po_id"), as_before, received),
    ),
    Operation(
        "POST",
        "/v1/purchase-orders/{po_id}/cancel",
        "staff",
        200,
        po_step(submit=True, body={"reason": "supplier discontinued it"}),
        Audited(
            "purchase_order.cancelled", "purchase_order", path_id("po_id"), as_before, as_answered
        ),
    ),
    # Suppliers and the terms they sell on.
    Operation(
        "POST",
        "/v1/suppliers",
        "staff",
        201,
        new_supplier,
        Audited("supplier.created", "supplier", body_id(), created, as_answered),
    ),
    Operation(
        "PATCH",
        "/v1/suppliers/{supplier_id}",
        "staff",
        200,
        supplier_change,
        Audited("supplier.updated", "supplier", path_id("supplier_id"), as_before, as_answered),
    ),
    Operation(
        "POST",
        "/v1/suppliers/{supplier_id}/signing-secret",
        "staff",
        200,
        signing_secret,
        Audited(
            "supplier.signing_secret_issued",
            "supplier",
            path_id("supplier_id"),
            secret_before,
            secret_after,
        ),
    ),
    Operation(
        "POST",
        "/v1/suppliers/{supplier_id}/inbound",
        None,
        202,
        supplier_message,
        Inboxed(
            "supplier", path_id("supplier_id"), lambda o: "msg_audit_1", "purchase_order.shipped"
        ),
    ),
    Operation(
        "POST",
        "/v1/products/{sku}/suppliers",
        "staff",
        201,
        new_link,
        Audited("supplier_product.created", "supplier_product", body_id(), created, as_answered),
    ),
    Operation(
        "PATCH",
        "/v1/products/{sku}/suppliers/{supplier_id}",
        "staff",
        200,
        link_step({"cost_price": 480, "priority": 5}),
        Audited(
            "supplier_product.updated",
            "supplier_product",
            lambda o: o.before["id"],
            as_before,
            as_answered,
        ),
    ),
    Operation(
        "DELETE",
        "/v1/products/{sku}/suppliers/{supplier_id}",
        "staff",
        204,
        link_step(),
        Audited(
            "supplier_product.removed",
            "supplier_product",
            lambda o: o.before["id"],
            as_before,
            gone,
        ),
    ),
    # Webhook endpoints and deliveries (admin only).
    Operation(
        "POST",
        "/v1/webhook-endpoints",
        "admin",
        201,
        new_endpoint,
        Audited(
            "webhook_endpoint.created",
            "webhook_endpoint",
            body_id(),
            created,
            answered_without("secret"),
        ),
    ),
    Operation(
        "PATCH",
        "/v1/webhook-endpoints/{endpoint_id}",
        "admin",
        200,
        endpoint_step({"description": "order feed", "events": ["order.created", "order.shipped"]}),
        Audited(
            "webhook_endpoint.updated",
            "webhook_endpoint",
            path_id("endpoint_id"),
            as_before,
            as_answered,
        ),
    ),
    Operation(
        "DELETE",
        "/v1/webhook-endpoints/{endpoint_id}",
        "admin",
        204,
        endpoint_step(),
        Audited(
            "webhook_endpoint.deleted",
            "webhook_endpoint",
            path_id("endpoint_id"),
            as_before,
            gone,
        ),
    ),
    Operation(
        "POST",
        "/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
        "admin",
        200,
        endpoint_step(),
        Audited(
            "webhook_endpoint.secret_rotated",
            "webhook_endpoint",
            path_id("endpoint_id"),
            as_before,
            secret_rotated,
        ),
    ),
    Operation(
        "POST",
        "/v1/webhook-endpoints/{endpoint_id}/replay",
        "admin",
        202,
        endpoint_step({"since": "2020-01-01T00:00:00Z"}, with_event=True),
        Audited(
            "webhook_endpoint.replayed",
            "webhook_endpoint",
            path_id("endpoint_id"),
            created,
            replayed,
        ),
    ),
    Operation(
        "POST",
        "/v1/webhook-deliveries/{delivery_id}/retry",
        "admin",
        202,
        dead_delivery,
        Audited(
            "webhook_delivery.retried",
            "webhook_delivery",
            path_id("delivery_id"),
            retried_before,
            retried_after,
        ),
    ),
    # API keys (admin only).
    Operation(
        "POST",
        "/v1/api-keys",
        "admin",
        201,
        new_key,
        Audited(
            "api_key.created",
            "api_key",
            body_id(),
            created,
            answered_without("key"),
        ),
    ),
    Operation(
        "DELETE",
        "/v1/api-keys/{key_id}",
        "admin",
        200,
        key_step(),
        Audited("api_key.revoked", "api_key", path_id("key_id"), as_before, as_answered),
    ),
    Operation(
        "POST",
        "/v1/api-keys/{key_id}/rotate",
        "admin",
        201,
        key_step({"grace_seconds": 60}),
        Audited("api_key.rotated", "api_key", path_id("key_id"), as_before, rotated),
    ),
]


# --- the tests ------------------------------------------------------------------------------


def mutating_operations() -> dict[tuple[str, str], bool]:
    """Each mutating operation of the OpenAPI document, and whether an API key
    authenticates it (rather than a signature)."""
    app = create_app(Settings(database_url="sqlite:///:memory:"))
    return {
        (method.upper(), path): any(
            "HTTPBearer" in requirement for requirement in operation.get("security", [])
        )
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        if method in MUTATING
    }


def test_every_mutating_operation_has_a_row() -> None:
    """A new operation that writes must be added to OPERATIONS, with the record it leaves."""
    rows = [(row.method, row.path) for row in OPERATIONS]
    assert len(rows) == len(set(rows)), "one row per operation"
    served = mutating_operations()
    assert set(rows) == set(served)
    for row in OPERATIONS:
        by_key = served[(row.method, row.path)]
        # Key-authenticated: performed with a key and audited (or writes nothing at all);
        # signature-authenticated: no key, kept in the inbox.
        assert by_key == (row.performer is not None), row
        assert by_key != isinstance(row.expect, Inboxed), row


async def audit_ids(database: Database) -> set[str]:
    async with database.transaction(write=False) as session:
        return set((await session.scalars(select(AuditRecord.id))).all())


async def new_records(database: Database, known: set[str]) -> list[AuditRecord]:
    async with database.transaction(write=False) as session:
        records = await session.scalars(
            select(AuditRecord).where(AuditRecord.id.not_in(known)).order_by(AuditRecord.id)
        )
        return list(records.all())


async def inbox(database: Database) -> list[InboxMessage]:
    async with database.transaction(write=False) as session:
        return list((await session.scalars(select(InboxMessage))).all())


def check_record(
    expect: Audited, outcome: Outcome, record: AuditRecord, *, actor_id: str, role: str
) -> None:
    assert (record.action, record.resource_type) == (expect.action, expect.resource_type)
    assert record.resource_id == expect.resource_id(outcome)
    assert (record.actor_id, record.actor_role) == (actor_id, role)
    assert record.request_id == outcome.response.headers["x-request-id"]
    assert record.before == expect.before(outcome)
    assert record.after == expect.after(outcome)
    # A secret the response shows once is never kept in the trail.
    shown = outcome.body if isinstance(outcome.body, dict) else {}
    for name in ("key", "secret", "client_secret"):
        if isinstance(shown.get(name), str):
            assert shown[name] not in repr(record.before) + repr(record.after)


@pytest.mark.parametrize("row", OPERATIONS, ids=[f"{r.method} {r.path}" for r in OPERATIONS])
async def test_each_mutation_leaves_exactly_its_record(
    row: Operation, database_url: str, database: Database, keys: Keys
) -> None:
    async with opened(row.payments, database_url, database, keys) as shop:
        stage = await row.arrange(shop)
        headers = {**(keys.for_role(row.performer) if row.performer else {}), **stage.headers}
        before = await stage.view(None)
        known = await audit_ids(database)
        kept = {message.id for message in await inbox(database)}

        response = await shop.client.request(
            row.method,
            row.path.format(**stage.params),
            headers=headers,
            json=stage.body,
            content=stage.content,
        )
        assert response.status_code == row.status, response.text
        outcome = Outcome(stage, response, before, None)
        outcome = replace(outcome, after=await stage.view(outcome.body))

        records = await new_records(database, known)
        if isinstance(row.expect, Audited):
            assert row.performer is not None
            assert len(records) == 1, [(r.action, r.resource_id) for r in records]
            check_record(
                row.expect,
                outcome,
                records[0],
                actor_id=keys.ids[row.performer],
                role=row.performer,
            )
        else:
            assert records == [], [(r.action, r.resource_id) for r in records]
        if isinstance(row.expect, Inboxed):
            [message] = [m for m in await inbox(database) if m.id not in kept]
            assert message.source_type == row.expect.source_type
            assert message.source_id == row.expect.source_id(outcome)
            assert message.message_id == row.expect.message_id(outcome)
            assert message.type == row.expect.type
            assert message.body == stage.content
            assert message.processed_at is None
