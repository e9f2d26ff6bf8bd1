"""Object level authorization (OWASP API1): a customer key reaches its own customer's objects
and nothing else, whatever id it puts in a path, a query or a body.

DESIGN.md section 4: "a customer's view of another customer's object is 404, never 403". A
403 would confirm that the object exists; a 200 would hand it over. So for every operation
whose path names an object, this module states which kind of object it is:

- customer-owned (an order, a customer): the owner's key gets the success status, another
  customer's key gets exactly the 404 an id that does not exist gets, and the object stays
  as it was;
- catalog (an active product and its availability): the same answer for every customer;
- not for customers: 403 for a customer key, the same for an existing and a missing id, so
  the refusal tells nothing either;
- signed (a supplier's inbound messages): no API key opens it, a customer's no more than
  any other.

Lists a customer may call must hold that customer's rows only, however they are asked:
filters naming another customer, pages, cursors taken from a wider listing. The app runs
with Stripe payments (against a fake of Stripe on loopback) so that asking for an order's
PaymentIntent, whose ``client_secret`` takes the payment, succeeds for its owner.

Two tests enumerate the OpenAPI document, so a new route without a row here fails.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from stockflow.adapters.webhook_http import Reply
from stockflow.app import create_app
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.ids import new_id
from stockflow.workers.runner import build_relay
from tests.api.test_payments_stripe import stripe_settings as settings_for_stripe
from tests.assertions import PROBLEM, assert_problem
from tests.conftest import Keys
from tests.fake_stripe import FakeStripe, running_fake_stripe

SKU = "BOLA-MUG"
INACTIVE_SKU = "BOLA-OLD"
LINE = {"sku": SKU, "quantity": 1}
CANCEL = {"reason": "changed my mind"}
SHIPMENT = {"lines": [LINE]}
PAYMENT = {"amount": 100, "reference": "object level"}
REFUND = {"amount": 100, "reason": "object level"}
ADJUSTMENT = {"delta": 1, "reason": "object level"}
PRODUCT_CHANGE = {"name": "Renamed"}
SUPPLIER_CHANGE = {"lead_time_days": 9}
LINK = {
    "supplier_id": "{spare_supplier_id}",
    "supplier_sku": "B-2",
    "cost_price": 1,
    "currency": "EUR",
}
LINK_CHANGE = {"priority": 3}
ACKNOWLEDGEMENT = {"expected_delivery_date": "2030-01-15"}
RECEIPT = {"lines": [{"sku": SKU, "quantity": 1}]}
ENDPOINT_CHANGE = {"description": "object level"}
REPLAY = {"since": "2020-01-01T00:00:00Z"}
INBOUND = {"type": "purchase_order.shipped", "purchase_order_id": "{po_id}"}

# A well-formed id of each kind that names nothing, for the answers a missing object gets.
MISSING = {
    "order_id": new_id("ord"),
    "customer_id": new_id("cus"),
    "sku": "NO-SUCH-SKU",
    "supplier_id": new_id("sup"),
    "po_id": new_id("po"),
    "event_id": new_id("evt"),
    "endpoint_id": new_id("whe"),
    "delivery_id": new_id("whd"),
    "key_id": new_id("key"),
}


@dataclass(frozen=True)
class Owned:
    """An operation on an object that belongs to one customer."""

    method: str
    path: str
    body: dict[str, Any] | None
    success: int
    view: str  # where admin reads the object, to see that a refused call left it alone


OWNED = [
    Owned("GET", "/v1/customers/{customer_id}", None, 200, "/v1/customers/{customer_id}"),
    Owned("GET", "/v1/orders/{order_id}", None, 200, "/v1/orders/{order_id}"),
    Owned("POST", "/v1/orders/{order_id}/cancel", CANCEL, 200, "/v1/orders/{order_id}"),
    Owned("POST", "/v1/orders/{order_id}/payment-intent", None, 200, "/v1/orders/{order_id}"),
]

# The catalog is shared: every customer reads the same active products.
CATALOG = [("GET", "/v1/products/{sku}"), ("GET", "/v1/inventory/{sku}")]

NOT_FOR_CUSTOMERS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/customers/{customer_id}/erase", None),
    ("POST", "/v1/orders/{order_id}/shipments", SHIPMENT),
    ("POST", "/v1/orders/{order_id}/payments", PAYMENT),
    ("POST", "/v1/orders/{order_id}/refunds", REFUND),
    ("POST", "/v1/inventory/{sku}/adjustments", ADJUSTMENT),
    ("GET", "/v1/inventory/{sku}/movements", None),
    ("PATCH", "/v1/products/{sku}", PRODUCT_CHANGE),
    ("GET", "/v1/products/{sku}/suppliers", None),
    ("POST", "/v1/products/{sku}/suppliers", LINK),
    ("PATCH", "/v1/products/{sku}/suppliers/{supplier_id}", LINK_CHANGE),
    ("DELETE", "/v1/products/{sku}/suppliers/{supplier_id}", None),
    ("GET", "/v1/purchase-orders/{po_id}", None),
    ("POST", "/v1/purchase-orders/{po_id}/submit", None),
    ("POST", "/v1/purchase-orders/{po_id}/acknowledge", ACKNOWLEDGEMENT),
    ("POST", "/v1/purchase-orders/{po_id}/receipts", RECEIPT),
    ("POST", "/v1/purchase-orders/{po_id}/cancel", CANCEL),
    ("GET", "/v1/suppliers/{supplier_id}", None),
    ("PATCH", "/v1/suppliers/{supplier_id}", SUPPLIER_CHANGE),
    ("POST", "/v1/suppliers/{supplier_id}/signing-secret", None),
    ("GET", "/v1/events/{event_id}", None),
    ("GET", "/v1/webhook-endpoints/{endpoint_id}", None),
    ("PATCH", "/v1/webhook-endpoints/{endpoint_id}", ENDPOINT_CHANGE),
    ("DELETE", "/v1/webhook-endpoints/{endpoint_id}", None),
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/rotate-secret", None),
    ("GET", "/v1/webhook-endpoints/{endpoint_id}/deliveries", None),
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/replay", REPLAY),
    ("POST", "/v1/webhook-deliveries/{delivery_id}/retry", None),
    ("GET", "/v1/api-keys/{key_id}", None),
    ("DELETE", "/v1/api-keys/{key_id}", None),
    ("POST", "/v1/api-keys/{key_id}/rotate", {"grace_seconds": 60}),
]

# Authenticated by the supplier's signature: an API key of any role opens nothing.
SIGNED = [("POST", "/v1/suppliers/{supplier_id}/inbound", INBOUND)]

# Lists (GET operations without an id in the path), by what a customer key may see in them.
OWNED_LISTS = ("/v1/orders", "/v1/customers")
CATALOG_LISTS = ("/v1/products",)
LISTS_NOT_FOR_CUSTOMERS = (
    "/v1/purchase-orders",
    "/v1/suppliers",
    "/v1/events",
    "/v1/webhook-endpoints",
    "/v1/api-keys",
    "/v1/audit-events",
)
OPEN = ("/healthz", "/readyz", "/metrics")


class AcceptingReceiver:
    """A webhook receiver that takes every delivery, so that deliveries exist to name."""

    async def post(self, url: str, *, body: str, headers: dict[str, str]) -> Reply:
        return Reply(status_code=204, retry_after=None, error=None, latency_ms=1)

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True)
class Customer:
    """A customer, its key, its orders, and everything by which its data could be spotted."""

    id: str
    headers: dict[str, str]
    key_id: str
    order_ids: tuple[str, ...]
    traces: tuple[str, ...]


@dataclass(frozen=True)
class World:
    ada: Customer
    barbara: Customer
    admin: dict[str, str]
    values: dict[str, str]  # path parameters of the operations customers may not call
    bystanders: tuple[str, ...]  # the ids of the other customers that exist

    def ids_of(self, customer: Customer) -> dict[str, str]:
        return {"customer_id": customer.id, "order_id": customer.order_ids[0]}

    def strangers_traces(self) -> tuple[str, ...]:
        return self.barbara.traces + self.bystanders


def filled(template: str, values: dict[str, str]) -> str:
    return template.format(**values)


def filled_body(body: dict[str, Any] | None, values: dict[str, str]) -> dict[str, Any] | None:
    if body is None:
        return None
    return {k: v.format(**values) if isinstance(v, str) else v for k, v in body.items()}


def anonymised(response: httpx.Response, object_id: str | None = None) -> dict[str, Any]:
    """The problem without what differs between any two requests (its request id) and
    with the object's id, which the caller sent itself, blanked out."""
    body: dict[str, Any] = response.json()
    body.pop("request_id", None)
    if object_id is None:
        return body
    blanked: dict[str, Any] = json.loads(json.dumps(body).replace(object_id, "<id>"))
    return blanked


def assert_nothing_of(texts: list[str], traces: tuple[str, ...]) -> None:
    for text in texts:
        for trace in traces:
            assert trace not in text, f"{trace!r} leaked: {text[:500]}"


async def every_page(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], params: dict[str, str]
) -> list[httpx.Response]:
    """Every page of a list as the caller gets it (one response when it is refused)."""
    pages: list[httpx.Response] = []
    query = dict(params)
    while True:
        response = await client.get(path, headers=headers, params=query)
        pages.append(response)
        if response.status_code != 200:
            return pages
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "the list does not end"
        query = {**params, "cursor": cursor}


def rows_of(pages: list[httpx.Response]) -> list[dict[str, Any]]:
    return [row for page in pages if page.status_code == 200 for row in page.json()["data"]]


async def admin_trail(client: httpx.AsyncClient, admin: dict[str, str]) -> tuple[list[str], ...]:
    """The ids of every audit record and event: a refused call must add none."""
    trail = []
    for path in ("/v1/audit-events", "/v1/events"):
        pages = await every_page(client, path, admin, {"limit": "100"})
        trail.append([row["id"] for row in rows_of(pages)])
    return tuple(trail)


@pytest.fixture
async def fake() -> AsyncIterator[FakeStripe]:
    async with running_fake_stripe() as running:
        yield running


@pytest.fixture
def stripe_settings(database_url: str, fake: FakeStripe) -> Settings:
    return settings_for_stripe(database_url, fake)


@pytest.fixture
async def shop(stripe_settings: Settings, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(stripe_settings, database=database)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as c:
        yield c
    await app.state.key_usage.drain()
    await app.state.checkout.gateway.aclose()


async def created(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(path, headers=headers, json=body)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def signed_up(
    client: httpx.AsyncClient, admin: dict[str, str], person: dict[str, str], orders: int
) -> Customer:
    """A customer with personal data, its own key, and orders it placed itself (the first
    with a PaymentIntent, so that a payment and its client secret exist too)."""
    customer = await created(client, "/v1/customers", admin, {**person, "metadata": {"vip": 1}})
    key = await created(
        client,
        "/v1/api-keys",
        admin,
        {"name": f"app of {person['name']}", "role": "customer", "customer_id": customer["id"]},
    )
    headers = {"Authorization": f"Bearer {key['key']}"}
    order_ids = []
    for _ in range(orders):
        order = await created(client, "/v1/orders", headers, {"lines": [LINE]})
        assert order["customer_id"] == customer["id"]
        order_ids.append(order["id"])
    intent = await client.post(f"/v1/orders/{order_ids[0]}/payment-intent", headers=headers)
    assert intent.status_code == 200, intent.text
    paying = intent.json()
    traces = (
        customer["id"],
        *person.values(),
        *order_ids,
        paying["payment_id"],
        paying["intent_id"],
        paying["client_secret"],
        key["id"],
        key["prefix"],
    )
    return Customer(customer["id"], headers, key["id"], tuple(order_ids), traces)


@pytest.fixture
async def world(
    shop: httpx.AsyncClient, keys: Keys, stripe_settings: Settings, database: Database
) -> World:
    admin = keys.admin
    endpoint = await created(
        shop, "/v1/webhook-endpoints", admin, {"url": "https://93.184.216.34/hooks"}
    )
    for sku, active in ((SKU, True), (INACTIVE_SKU, False)):
        await created(
            shop,
            "/v1/products",
            admin,
            {"sku": sku, "name": sku, "unit_price": 1290, "currency": "EUR", "active": active},
        )
        await created(
            shop, f"/v1/inventory/{sku}/adjustments", admin, {"delta": 50, "reason": "in"}
        )
    ada = await signed_up(
        shop,
        admin,
        {
            "name": "Ada Lovelace",
            "email": "ada@analytical.example",
            "phone": "+44 20 7946 0001",
            "external_ref": "shop:ada-1815",
        },
        orders=1,
    )
    barbara = await signed_up(
        shop,
        admin,
        {
            "name": "Barbara Liskov",
            "email": "barbara@substitution.example",
            "phone": "+1 617 555 0199",
            "external_ref": "shop:barbara-1939",
        },
        orders=2,
    )
    supplier = await created(shop, "/v1/suppliers", admin, {"name": "Linked", "lead_time_days": 3})
    spare = await created(shop, "/v1/suppliers", admin, {"name": "Spare"})
    await created(
        shop,
        f"/v1/products/{SKU}/suppliers",
        admin,
        {"supplier_id": supplier["id"], "supplier_sku": "B-1", "cost_price": 1, "currency": "EUR"},
    )
    po = await created(
        shop,
        "/v1/purchase-orders",
        admin,
        {"supplier_id": supplier["id"], "lines": [RECEIPT["lines"][0]]},
    )
    submitted = await shop.post(f"/v1/purchase-orders/{po['id']}/submit", headers=admin)
    assert submitted.status_code == 200, submitted.text
    relay = build_relay(stripe_settings, database, sender=AcceptingReceiver())
    assert await relay.run_once() > 0
    for _ in range(20):
        if await relay.run_once() == 0:
            break
    await relay.aclose()
    deliveries = await shop.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=admin)
    events = await shop.get("/v1/events", headers=admin)
    return World(
        ada=ada,
        barbara=barbara,
        admin=admin,
        values={
            # Where an operation takes an order, it is one of the other customer's.
            "order_id": barbara.order_ids[1],
            "customer_id": barbara.id,
            "sku": SKU,
            "supplier_id": supplier["id"],
            "spare_supplier_id": spare["id"],
            "po_id": po["id"],
            "event_id": events.json()["data"][0]["id"],
            "endpoint_id": endpoint["id"],
            "delivery_id": deliveries.json()["data"][0]["id"],
            "key_id": barbara.key_id,
        },
        bystanders=(keys.customer_id, keys.other_customer_id),
    )


def served_operations() -> set[tuple[str, str]]:
    app = create_app(Settings(database_url="sqlite:///:memory:"))
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }


def test_every_operation_on_an_object_has_a_row() -> None:
    """A new route that takes an id must be classified here before it ships: owned by a
    customer, shared catalog, not for customers, or signed."""
    # /problems/{slug} documents error types: public, and about no one's data.
    on_objects = {
        (method, path)
        for method, path in served_operations()
        if "{" in path and path != "/problems/{slug}"
    }
    classified = (
        {(row.method, row.path) for row in OWNED}
        | set(CATALOG)
        | {(method, path) for method, path, _ in NOT_FOR_CUSTOMERS}
        | {(method, path) for method, path, _ in SIGNED}
    )
    assert on_objects == classified


def test_every_list_has_a_row() -> None:
    """A new list must say what a customer key sees in it."""
    lists = {path for method, path in served_operations() if method == "GET" and "{" not in path}
    classified = {*OWNED_LISTS, *CATALOG_LISTS, *LISTS_NOT_FOR_CUSTOMERS, *OPEN}
    assert lists == classified


@pytest.mark.parametrize("row", [pytest.param(row, id=f"{row.method} {row.path}") for row in OWNED])
async def test_another_customers_object_is_404_and_the_owners_is_served(
    shop: httpx.AsyncClient, world: World, row: Owned
) -> None:
    """Ada asking for Barbara's object must learn no more than asking for an id that
    was never issued: the same 404, nothing of Barbara's in it, and Barbara's object as
    it was. Barbara and Ada each get their own."""
    ada, barbara = world.ada, world.barbara
    theirs = world.ids_of(barbara)
    view = filled(row.view, theirs)
    before = (await shop.get(view, headers=world.admin)).json()
    intruding = await shop.request(
        row.method, filled(row.path, theirs), headers=ada.headers, json=row.body
    )
    missing = await shop.request(
        row.method, filled(row.path, MISSING), headers=ada.headers, json=row.body
    )
    assert_problem(intruding, 404, "not-found")
    assert_problem(missing, 404, "not-found")
    target = next(v for k, v in theirs.items() if f"{{{k}}}" in row.path)
    missing_id = next(v for k, v in MISSING.items() if f"{{{k}}}" in row.path)
    assert anonymised(intruding, target) == anonymised(missing, missing_id)
    assert_nothing_of([intruding.text.replace(target, "")], world.strangers_traces())
    assert (await shop.get(view, headers=world.admin)).json() == before

    own = await shop.request(
        row.method, filled(row.path, world.ids_of(ada)), headers=ada.headers, json=row.body
    )
    assert own.status_code == row.success, own.text
    assert_nothing_of([own.text], world.strangers_traces())
    # The object Ada was refused is one Barbara can act on: the 404 was about Ada.
    owner = await shop.request(
        row.method, filled(row.path, theirs), headers=barbara.headers, json=row.body
    )
    assert owner.status_code == row.success, owner.text


@pytest.mark.parametrize(
    ("method", "path"), [pytest.param(m, p, id=f"{m} {p}") for m, p in CATALOG]
)
async def test_the_catalog_is_the_same_for_every_customer(
    shop: httpx.AsyncClient, world: World, method: str, path: str
) -> None:
    """Products are not anyone's: two customers see the same active product, and the
    same 404 for an inactive one, so the catalog reveals nothing about who is asking."""
    for sku, status in ((SKU, 200), (INACTIVE_SKU, 404)):
        url = filled(path, {"sku": sku})
        ada = await shop.request(method, url, headers=world.ada.headers)
        barbara = await shop.request(method, url, headers=world.barbara.headers)
        assert ada.status_code == barbara.status_code == status, (ada.text, barbara.text)
        if status == 200:
            assert ada.json() == barbara.json()
        else:
            assert anonymised(ada, sku) == anonymised(barbara, sku)
        assert_nothing_of([ada.text], world.strangers_traces())


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [pytest.param(*row, id=f"{row[0]} {row[1]}") for row in NOT_FOR_CUSTOMERS],
)
async def test_operations_not_for_customers_are_403_whether_or_not_the_object_exists(
    shop: httpx.AsyncClient,
    world: World,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    """The role check comes before the lookup: the refusal of an existing object and of
    a missing one are the same, and nothing is done."""
    trail = await admin_trail(shop, world.admin)
    existing = await shop.request(
        method,
        filled(path, world.values),
        headers=world.ada.headers,
        json=filled_body(body, world.values),
    )
    missing = await shop.request(
        method,
        filled(path, {**world.values, **MISSING}),
        headers=world.ada.headers,
        json=filled_body(body, world.values),
    )
    assert_problem(existing, 403, "forbidden")
    assert_problem(missing, 403, "forbidden")
    assert anonymised(existing) == anonymised(missing)
    assert_nothing_of([existing.text], world.strangers_traces())
    assert await admin_trail(shop, world.admin) == trail


@pytest.mark.parametrize(
    ("method", "path", "body"), [pytest.param(*row, id=f"{row[0]} {row[1]}") for row in SIGNED]
)
async def test_signed_operations_take_no_customer_key(
    shop: httpx.AsyncClient,
    world: World,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    """A customer key is no signature: the answer is the one an anonymous caller gets."""
    url = filled(path, world.values)
    payload = filled_body(body, world.values)
    with_key = await shop.request(method, url, headers=world.ada.headers, json=payload)
    without = await shop.request(method, url, json=payload)
    assert_problem(with_key, 401, "invalid-signature")
    assert anonymised(with_key) == anonymised(without)


def queries_naming_barbara(path: str, world: World, admin_cursor: str) -> list[dict[str, str]]:
    """Query strings in which Ada names Barbara, or borrows a cursor of a wider listing.

    Parameters a list does not know are passed too: they must be ignored, not obeyed.
    """
    barbara = world.barbara
    common = [
        {"customer_id": barbara.id},
        {"customer_id": barbara.id, "limit": "1"},
        {"id": barbara.id},
        {"cursor": admin_cursor},
    ]
    if path == "/v1/orders":
        return [
            *common,
            {"customer_id": barbara.id, "status": "pending_payment"},
            {"customer_id": barbara.id, "created_after": "2000-01-01T00:00:00Z"},
            {"order_id": barbara.order_ids[0]},
        ]
    return [*common, {"email": "barbara@substitution.example"}]


def own_ids(path: str, customer: Customer) -> set[str]:
    return set(customer.order_ids) if path == "/v1/orders" else {customer.id}


@pytest.mark.parametrize("path", OWNED_LISTS)
async def test_a_customers_list_holds_its_own_rows_only_however_it_is_asked(
    shop: httpx.AsyncClient, world: World, path: str
) -> None:
    """Filters and cursors are the usual way around a per-object check: a list must apply
    the caller's customer whatever the query says. Naming another customer may give an
    empty list or a refusal, never that customer's rows."""
    ada = world.ada
    mine = own_ids(path, ada)
    for params in ({}, {"limit": "1"}, {"customer_id": ada.id}):
        pages = await every_page(shop, path, ada.headers, params)
        assert [page.status_code for page in pages] == [200] * len(pages), pages[-1].text
        assert {row["id"] for row in rows_of(pages)} == mine, params
        assert_nothing_of([page.text for page in pages], world.strangers_traces())

    wider = await shop.get(path, headers=world.admin, params={"limit": "1"})
    admin_cursor = wider.json()["next_cursor"]
    assert admin_cursor is not None
    for params in queries_naming_barbara(path, world, admin_cursor):
        pages = await every_page(shop, path, ada.headers, params)
        for page in pages:
            assert page.status_code in (200, 403, 404), page.text
            if page.status_code != 200:
                assert page.headers["content-type"] == PROBLEM
        assert {row["id"] for row in rows_of(pages)} <= mine, params
        assert_nothing_of([page.text for page in pages], world.strangers_traces())


@pytest.mark.parametrize("path", CATALOG_LISTS)
async def test_catalog_lists_are_the_same_for_every_customer(
    shop: httpx.AsyncClient, world: World, path: str
) -> None:
    ada = await every_page(shop, path, world.ada.headers, {})
    barbara = await every_page(shop, path, world.barbara.headers, {})
    assert rows_of(ada) == rows_of(barbara)
    assert [row["sku"] for row in rows_of(ada)] == [SKU]
    assert_nothing_of([page.text for page in ada], world.strangers_traces())


def barbara_filters(world: World) -> list[dict[str, str]]:
    return [
        {},
        {"customer_id": world.barbara.id},
        {"object_id": world.barbara.order_ids[0]},
        {"resource_id": world.barbara.id},
        {"actor_id": world.barbara.key_id},
    ]


@pytest.mark.parametrize("path", LISTS_NOT_FOR_CUSTOMERS)
async def test_lists_not_for_customers_are_403_however_they_are_filtered(
    shop: httpx.AsyncClient, world: World, path: str
) -> None:
    for params in barbara_filters(world):
        response = await shop.get(path, headers=world.ada.headers, params=params)
        assert_problem(response, 403, "forbidden")
        assert_nothing_of([response.text], world.strangers_traces())


@pytest.mark.parametrize("path", OPEN)
async def test_open_endpoints_tell_nothing_about_customers(
    shop: httpx.AsyncClient, world: World, path: str
) -> None:
    response = await shop.get(path, headers=world.ada.headers)
    assert response.status_code == 200, response.text
    assert_nothing_of([response.text], world.strangers_traces() + world.ada.traces)


@pytest.mark.parametrize("operation", ["/v1/orders", "/v1/orders/preview"])
async def test_ordering_for_another_customer_is_404_and_changes_nothing(
    shop: httpx.AsyncClient, world: World, operation: str
) -> None:
    """The customer named in a body is an object reference too: naming someone else's
    must look like naming no one, and must not place, reserve or reveal anything."""
    barbara = world.barbara
    stock = (await shop.get(f"/v1/inventory/{SKU}", headers=world.admin)).json()
    barbaras_orders = rows_of(
        await every_page(shop, "/v1/orders", world.admin, {"customer_id": barbara.id})
    )
    theirs = await shop.post(
        operation, headers=world.ada.headers, json={"customer_id": barbara.id, "lines": [LINE]}
    )
    nobodys = await shop.post(
        operation,
        headers=world.ada.headers,
        json={"customer_id": MISSING["customer_id"], "lines": [LINE]},
    )
    assert_problem(theirs, 404, "not-found")
    assert_problem(nobodys, 404, "not-found")
    assert anonymised(theirs, barbara.id) == anonymised(nobodys, MISSING["customer_id"])
    assert_nothing_of([theirs.text.replace(barbara.id, "")], world.strangers_traces())
    assert (await shop.get(f"/v1/inventory/{SKU}", headers=world.admin)).json() == stock
    after = rows_of(await every_page(shop, "/v1/orders", world.admin, {"customer_id": barbara.id}))
    assert after == barbaras_orders


async def test_an_idempotency_key_never_replays_another_customers_answer(
    shop: httpx.AsyncClient, world: World
) -> None:
    """Idempotency keys are chosen by clients and may collide (or be guessed): a record is
    scoped to the key that made it, so Ada reusing Barbara's Idempotency-Key gets an order
    of her own, never Barbara's stored response."""
    body: dict[str, Any] = {"lines": [LINE]}
    same_key = {"Idempotency-Key": "checkout-42"}
    barbaras = await shop.post(
        "/v1/orders", headers={**world.barbara.headers, **same_key}, json=body
    )
    assert barbaras.status_code == 201, barbaras.text
    adas = await shop.post("/v1/orders", headers={**world.ada.headers, **same_key}, json=body)
    assert adas.status_code == 201, adas.text
    assert "Idempotent-Replayed" not in adas.headers
    assert adas.json()["customer_id"] == world.ada.id
    assert adas.json()["id"] != barbaras.json()["id"]
    assert_nothing_of([adas.text], (*world.barbara.traces, barbaras.json()["id"]))
