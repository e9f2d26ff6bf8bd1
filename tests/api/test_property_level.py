"""Object property level authorization (OWASP API3): what a caller may write, and what any
caller may read, property by property.

Writing: a request body holds only what its caller may decide. Status, totals, reservations,
allocations, roles and payment figures are the server's; a client that sends one is refused
with a 422 problem naming it, and nothing happens (no mass assignment, and no silently
ignored field that the client believes it set). Every operation with a body in the OpenAPI
document has a row here, so a new one must be classified before it ships.

Reading: no response carries a credential or the bookkeeping behind it. An API key is shown
once, by the answer that creates (or rotates) it; lists show its first characters only. A
webhook endpoint's or a supplier's signing secret is shown once too, by the answer that
issues it (DESIGN.md section 4: "Responses that reveal a secret once ... replay without
it"). Hashes, salts, leases, sequence numbers and integer row ids never appear. Every GET
operation is called as admin, on a world with data of every kind, and every list is
followed to every item.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from stockflow.adapters.webhook_http import Reply
from stockflow.app import create_app
from stockflow.auth.keys import hash_key
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.workers.runner import build_relay
from tests.api.test_payments_stripe import stripe_settings
from tests.api.test_supplier_connectors import signed
from tests.assertions import PROBLEM, assert_problem
from tests.conftest import Keys, offline_resolver
from tests.fake_stripe import running_fake_stripe

SKU = "PROP-MUG"
SPARE_SKU = "PROP-JUG"
LINE = {"sku": SKU, "quantity": 1}
ORDER = {"lines": [LINE]}
CANCEL = {"reason": "property level"}

# --- writing --------------------------------------------------------------------------


@dataclass(frozen=True)
class BodyOperation:
    """An operation with a request body, a body it accepts, and what accepting it answers.

    ``targets`` says which object of the world each path parameter names, where it is not
    the object of the same name (shipping needs a paid order, paying an unpaid one).
    """

    method: str
    path: str
    body: dict[str, Any]
    success: int
    targets: dict[str, str] = field(default_factory=dict)


CUSTOMER_BODIES = [
    BodyOperation("POST", "/v1/orders", ORDER, 201),
    BodyOperation("POST", "/v1/orders/preview", ORDER, 200),
    BodyOperation("POST", "/v1/orders/{order_id}/cancel", CANCEL, 200, {"order_id": "own_order"}),
]

STAFF_BODIES = [
    BodyOperation(
        "POST",
        "/v1/orders/{order_id}/shipments",
        {"lines": [LINE]},
        201,
        {"order_id": "paid_order"},
    ),
    BodyOperation(
        "POST",
        "/v1/orders/{order_id}/payments",
        {"amount": 100, "reference": "SEPA 1"},
        201,
        {"order_id": "unpaid_order"},
    ),
    BodyOperation(
        "POST",
        "/v1/orders/{order_id}/refunds",
        {"amount": 100, "reason": "broken"},
        201,
        {"order_id": "paid_order"},
    ),
    BodyOperation("POST", "/v1/inventory/{sku}/adjustments", {"delta": 3, "reason": "count"}, 201),
    BodyOperation(
        "POST",
        "/v1/products",
        {"sku": "PROP-NEW", "name": "New", "unit_price": 990, "currency": "EUR"},
        201,
    ),
    BodyOperation("PATCH", "/v1/products/{sku}", {"name": "Renamed mug"}, 200),
    BodyOperation("POST", "/v1/customers", {"name": "Grace Hopper"}, 201),
    BodyOperation(
        "POST",
        "/v1/purchase-orders",
        {"supplier_id": "{supplier_id}", "lines": [{"sku": SKU, "quantity": 5}]},
        201,
    ),
    BodyOperation(
        "POST",
        "/v1/purchase-orders/{po_id}/acknowledge",
        {"expected_delivery_date": "2030-01-15"},
        200,
    ),
    BodyOperation(
        "POST",
        "/v1/purchase-orders/{po_id}/receipts",
        {"lines": [{"sku": SKU, "quantity": 2}]},
        201,
    ),
    BodyOperation("POST", "/v1/purchase-orders/{po_id}/cancel", CANCEL, 200),
    BodyOperation("POST", "/v1/suppliers", {"name": "Another supplier"}, 201),
    BodyOperation("PATCH", "/v1/suppliers/{supplier_id}", {"lead_time_days": 12}, 200),
    BodyOperation(
        "POST",
        "/v1/products/{sku}/suppliers",
        {
            "supplier_id": "{spare_supplier_id}",
            "supplier_sku": "S-2",
            "cost_price": 450,
            "currency": "EUR",
        },
        201,
    ),
    BodyOperation("PATCH", "/v1/products/{sku}/suppliers/{supplier_id}", {"priority": 5}, 200),
    BodyOperation(
        "POST", "/v1/webhook-endpoints", {"url": "https://93.184.216.34/more-hooks"}, 201
    ),
    BodyOperation("PATCH", "/v1/webhook-endpoints/{endpoint_id}", {"description": "shop"}, 200),
    BodyOperation(
        "POST",
        "/v1/webhook-endpoints/{endpoint_id}/replay",
        {"since": "2020-01-01T00:00:00Z"},
        202,
    ),
    BodyOperation("POST", "/v1/api-keys", {"name": "another", "role": "service"}, 201),
    BodyOperation("POST", "/v1/api-keys/{key_id}/rotate", {"grace_seconds": 60}, 201),
]

# Signed by the supplier with its signing secret instead of an API key.
SIGNED_BODIES = [
    BodyOperation(
        "POST",
        "/v1/suppliers/{supplier_id}/inbound",
        {"type": "purchase_order.shipped", "purchase_order_id": "{po_id}"},
        202,
    )
]

# Stripe's own event format, authenticated by Stripe's signature: its members are Stripe's
# to add, so unknown ones are expected there, and it is not this API's schema to police.
FOREIGN_BODIES = {("POST", "/v1/webhooks/stripe")}

# What a customer might try to decide for itself on an order, with tempting values.
CUSTOMER_OWNED_BY_SERVER: dict[str, Any] = {
    "status": "shipped",
    "total": 0,
    "subtotal": 0,
    "reserved": 0,
    "allocated": 100,
    "role": "admin",
    "paid": True,
    "amount_paid": 10**6,
    "amount_refunded": 0,
    "payment_status": "paid",
    "fulfilment": "ready_to_ship",
    "currency": "XXX",
    "id": "ord_01M8PNFC08V30YYBSBZFQWY388",
    "created_at": "2020-01-01T00:00:00Z",
}
# The same on an order line: its price and what is reserved or shipped for it.
LINE_OWNED_BY_SERVER: dict[str, Any] = {
    "unit_price": 1,
    "line_total": 1,
    "allocated": 1,
    "backordered": 0,
    "shipped": 1,
    "reserved": 1,
    "status": "shipped",
}
# Server-owned members that no staff or admin body takes either.
STAFF_OWNED_BY_SERVER: dict[str, Any] = {
    "status": "received",
    "total": 0,
    "reserved": 0,
    "allocated": 0,
    "id": "x_01M8PNFC08V30YYBSBZFQWY388",
    "created_at": "2020-01-01T00:00:00Z",
    "updated_at": "2020-01-01T00:00:00Z",
}

# --- reading --------------------------------------------------------------------------

# Lists, with what makes them show everything they hold.
LISTS: dict[str, dict[str, str]] = {
    "/v1/orders": {},
    "/v1/products": {},
    "/v1/customers": {},
    "/v1/purchase-orders": {},
    "/v1/suppliers": {},
    "/v1/events": {},
    "/v1/webhook-endpoints": {},
    "/v1/api-keys": {"include_revoked": "true"},
    "/v1/audit-events": {},
}
# Items, with the list whose rows name them and the member that does.
ITEMS: dict[str, tuple[str, str]] = {
    "/v1/orders/{order_id}": ("/v1/orders", "id"),
    "/v1/customers/{customer_id}": ("/v1/customers", "id"),
    "/v1/products/{sku}": ("/v1/products", "sku"),
    "/v1/products/{sku}/suppliers": ("/v1/products", "sku"),
    "/v1/inventory/{sku}": ("/v1/products", "sku"),
    "/v1/inventory/{sku}/movements": ("/v1/products", "sku"),
    "/v1/purchase-orders/{po_id}": ("/v1/purchase-orders", "id"),
    "/v1/suppliers/{supplier_id}": ("/v1/suppliers", "id"),
    "/v1/events/{event_id}": ("/v1/events", "id"),
    "/v1/webhook-endpoints/{endpoint_id}": ("/v1/webhook-endpoints", "id"),
    "/v1/webhook-endpoints/{endpoint_id}/deliveries": ("/v1/webhook-endpoints", "id"),
    "/v1/api-keys/{key_id}": ("/v1/api-keys", "id"),
}
OPEN = ("/healthz", "/readyz", "/metrics")
PROBLEM_TYPES = {"/problems/{slug}": ("not-found", "validation-error", "invalid-signature")}

# Member names no response may carry: credentials and anything derived from them, and the
# bookkeeping of the database and the workers (sequence numbers, leases, idempotency records,
# trace context, ORM attribute names), which clients cannot use and must not come to rely on.
FORBIDDEN_MEMBER = re.compile(
    r"hash|secret|passw|salt|token|lease|nonce|credential|private|"
    r"^seq$|_seq$|^_|_$|^key$|^pid$|hostname|trace_context|request_key|"
    r"response_body|response_headers|principal_id",
    re.IGNORECASE,
)
# Named after a secret, but only when it stops working.
NOT_SECRETS = frozenset({"previous_secret_expires_at"})


def is_forbidden_member(name: str, value: Any) -> bool:
    """A flag that says whether something exists (``has_signing_secret``) reveals nothing."""
    if isinstance(value, bool) or name in NOT_SECRETS:
        return False
    return FORBIDDEN_MEMBER.search(name) is not None


# Shapes of credentials in any text: a whole API key, a Standard Webhooks secret, a SHA-256.
CREDENTIAL_SHAPES = (
    re.compile(r"sf_[0-9A-Za-z]{38}"),
    re.compile(r"whsec_[A-Za-z0-9+/=]{8,}"),
    re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])"),
)


class AcceptingReceiver:
    """A webhook receiver that takes every delivery, so that deliveries with attempts exist."""

    async def post(self, url: str, *, body: str, headers: dict[str, str]) -> Reply:
        return Reply(status_code=204, retry_after=None, error=None, latency_ms=1)

    async def aclose(self) -> None:
        return None


@dataclass
class World:
    """Data of every kind, the objects the body operations act on, and every secret that
    was shown once while making it."""

    admin: dict[str, str]
    customer: dict[str, str]
    values: dict[str, str]
    supplier_secret: str
    api_keys: list[str]
    secrets: list[str]

    def url(self, operation: BodyOperation) -> str:
        names = {**self.values, **{k: self.values[v] for k, v in operation.targets.items()}}
        return operation.path.format(**names)

    def body(self, body: dict[str, Any]) -> dict[str, Any]:
        filled: dict[str, Any] = json.loads(
            re.sub(
                r"\{(\w+)\}",
                lambda m: self.values.get(m.group(1), m.group(0)),
                json.dumps(body),
            )
        )
        return filled


def served_operations() -> dict[tuple[str, str], dict[str, Any]]:
    app = create_app(Settings(database_url="sqlite:///:memory:"))
    return {
        (method.upper(), path): operation
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
    }


@pytest.fixture
def manual_settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, payments="manual")


@pytest.fixture
async def desk(manual_settings: Settings, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    """The API of a shop that records offline payments, so orders carry payments and
    refunds."""
    app = create_app(manual_settings, database=database)
    app.state.webhooks = replace(app.state.webhooks, resolver=offline_resolver)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as c:
        yield c
    await app.state.key_usage.drain()


@pytest.fixture
async def checkout(database_url: str, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    """The same database behind an API that takes payments through (a fake of) Stripe, for
    a payment whose client secret is stored."""
    async with running_fake_stripe() as fake:
        app: FastAPI = create_app(stripe_settings(database_url, fake), database=database)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as c:
            yield c
        await app.state.key_usage.drain()
        await app.state.checkout.gateway.aclose()


async def sent(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
    status: int = 201,
) -> dict[str, Any]:
    response = await client.request(method, path, headers=headers, json=body)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.fixture
async def world(
    desk: httpx.AsyncClient,
    checkout: httpx.AsyncClient,
    keys: Keys,
    manual_settings: Settings,
    database: Database,
) -> World:
    admin = keys.admin
    shown: list[str] = []
    endpoint = await sent(
        desk, "POST", "/v1/webhook-endpoints", admin, {"url": "https://93.184.216.34/hooks"}
    )
    shown.append(endpoint["secret"])
    for sku in (SKU, SPARE_SKU):
        await sent(
            desk,
            "POST",
            "/v1/products",
            admin,
            {
                "sku": sku,
                "name": sku,
                "unit_price": 1290,
                "currency": "EUR",
                "metadata": {"colour": "blue"},
                "reorder_point": 2,
                "low_stock_threshold": 3,
            },
        )
        await sent(
            desk, "POST", f"/v1/inventory/{sku}/adjustments", admin, {"delta": 60, "reason": "in"}
        )
    ada = await sent(
        desk,
        "POST",
        "/v1/customers",
        admin,
        {
            "name": "Ada Lovelace",
            "email": "ada@analytical.example",
            "phone": "+44 20 7946 0001",
            "external_ref": "shop:ada",
            "metadata": {"segment": "engines"},
        },
    )
    customer_key = await sent(
        desk,
        "POST",
        "/v1/api-keys",
        admin,
        {"name": "Ada's app", "role": "customer", "customer_id": ada["id"]},
    )
    customer = {"Authorization": f"Bearer {customer_key['key']}"}

    supplier = await sent(
        desk, "POST", "/v1/suppliers", admin, {"name": "Linked", "lead_time_days": 4}
    )
    spare = await sent(desk, "POST", "/v1/suppliers", admin, {"name": "Spare"})
    await sent(
        desk,
        "POST",
        "/v1/suppliers",
        admin,
        {
            "name": "Posted to",
            "connector": {"type": "webhook", "url": "https://supplier.example/po"},
        },
    )
    supplier_secret = ""
    for _ in range(2):  # the second issue leaves a previous secret behind
        issued = await sent(
            desk, "POST", f"/v1/suppliers/{supplier['id']}/signing-secret", admin, status=200
        )
        supplier_secret = issued["secret"]
        shown.append(supplier_secret)
    await sent(
        desk,
        "POST",
        f"/v1/products/{SKU}/suppliers",
        admin,
        {
            "supplier_id": supplier["id"],
            "supplier_sku": "S-1",
            "cost_price": 400,
            "currency": "EUR",
        },
    )
    draft = await sent(
        desk,
        "POST",
        "/v1/purchase-orders",
        admin,
        {"supplier_id": supplier["id"], "lines": [{"sku": SKU, "quantity": 10}]},
    )
    po = await sent(
        desk,
        "POST",
        "/v1/purchase-orders",
        admin,
        {"supplier_id": supplier["id"], "lines": [{"sku": SKU, "quantity": 10}], "note": "PO"},
    )
    received = await sent(
        desk,
        "POST",
        "/v1/purchase-orders",
        admin,
        {"supplier_id": supplier["id"], "lines": [{"sku": SKU, "quantity": 4}]},
    )
    for order in (po, received):
        await sent(desk, "POST", f"/v1/purchase-orders/{order['id']}/submit", admin, status=200)
    await sent(
        desk,
        "POST",
        f"/v1/purchase-orders/{received['id']}/receipts",
        admin,
        {"lines": [{"sku": SKU, "quantity": 4}]},
    )

    own_order = await sent(desk, "POST", "/v1/orders", customer, ORDER)
    order_for_ada = {"customer_id": ada["id"], "lines": [{"sku": SKU, "quantity": 2}]}
    unpaid = await sent(desk, "POST", "/v1/orders", keys.service, order_for_ada)
    paid = await sent(desk, "POST", "/v1/orders", admin, {**order_for_ada, "metadata": {"c": 1}})
    await sent(
        desk,
        "POST",
        f"/v1/orders/{paid['id']}/payments",
        admin,
        {"amount": paid["total"], "reference": "SEPA 2"},
    )
    await sent(
        desk,
        "POST",
        f"/v1/orders/{paid['id']}/shipments",
        admin,
        {"lines": [{"sku": SKU, "quantity": 1}]},
    )
    await sent(
        desk, "POST", f"/v1/orders/{paid['id']}/refunds", admin, {"amount": 50, "reason": "chip"}
    )
    by_card = await sent(checkout, "POST", "/v1/orders", customer, ORDER)
    intent = await sent(
        checkout, "POST", f"/v1/orders/{by_card['id']}/payment-intent", customer, status=200
    )
    shown.append(intent["client_secret"])

    spare_key = await sent(desk, "POST", "/v1/api-keys", admin, {"name": "spare", "role": "staff"})
    rotated = await sent(desk, "POST", f"/v1/api-keys/{spare_key['id']}/rotate", admin, {})
    revoked = await sent(desk, "POST", "/v1/api-keys", admin, {"name": "gone", "role": "service"})
    await sent(desk, "DELETE", f"/v1/api-keys/{revoked['id']}", admin, status=200)
    rotation = await sent(
        desk, "POST", f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", admin, status=200
    )
    shown.append(rotation["secret"])

    relay = build_relay(manual_settings, database, sender=AcceptingReceiver())
    assert await relay.run_once() > 0
    for _ in range(20):
        if await relay.run_once() == 0:
            break
    await relay.aclose()

    fixture_keys = [
        headers["Authorization"].removeprefix("Bearer ")
        for headers in (keys.admin, keys.staff, keys.service, keys.customer)
    ]
    return World(
        admin=admin,
        customer=customer,
        values={
            "own_order": own_order["id"],
            "unpaid_order": unpaid["id"],
            "paid_order": paid["id"],
            "sku": SKU,
            "supplier_id": supplier["id"],
            "spare_supplier_id": spare["id"],
            "po_id": po["id"],
            "draft_po_id": draft["id"],
            "endpoint_id": endpoint["id"],
            "key_id": rotated["id"],
        },
        supplier_secret=supplier_secret,
        api_keys=[
            *fixture_keys,
            customer_key["key"],
            spare_key["key"],
            rotated["key"],
            revoked["key"],
        ],
        secrets=shown,
    )


async def every_page(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], params: dict[str, str]
) -> list[httpx.Response]:
    pages: list[httpx.Response] = []
    query = {**params, "limit": "100"}
    while True:
        response = await client.get(path, headers=headers, params=query)
        assert response.status_code == 200, response.text
        pages.append(response)
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages
        query = {**params, "limit": "100", "cursor": cursor}


async def trail(client: httpx.AsyncClient, world: World) -> tuple[list[str], list[str]]:
    """Every audit record and event: a refused request must add none."""
    ids: list[list[str]] = []
    for path in ("/v1/audit-events", "/v1/events"):
        pages = await every_page(client, path, world.admin, {})
        ids.append([row["id"] for page in pages for row in page.json()["data"]])
    return ids[0], ids[1]


def assert_refused(response: httpx.Response, location: str) -> None:
    """A 422 problem whose errors point at the member that may not be sent: at the member
    itself, or at the object holding it with the member named in the message."""
    body = assert_problem(response, 422, "validation-error")
    parent, _, name = location.rpartition(".")
    assert any(
        error["location"] == location or (error["location"] == parent and name in error["message"])
        for error in body["errors"]
    ), body


def with_member(body: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    return {**body, name: value}


def with_line_member(body: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    first, *rest = body["lines"]
    return {**body, "lines": [{**first, name: value}, *rest]}


def test_every_operation_with_a_body_has_a_row() -> None:
    """A new body must be classified: who may send it, and so which members it refuses."""
    with_bodies = {
        key for key, operation in served_operations().items() if "requestBody" in operation
    }
    classified = {
        (op.method, op.path) for op in CUSTOMER_BODIES + STAFF_BODIES + SIGNED_BODIES
    } | FOREIGN_BODIES
    assert with_bodies == classified


@pytest.mark.parametrize(
    "operation", [pytest.param(op, id=f"{op.method} {op.path}") for op in CUSTOMER_BODIES]
)
async def test_a_customer_cannot_set_what_the_server_decides(
    desk: httpx.AsyncClient, world: World, operation: BodyOperation
) -> None:
    """Mass assignment: a customer that adds `status`, `total`, `amount_paid` or the like
    to its order, or a price to a line, must be told no, not have it applied or ignored."""
    url = world.url(operation)
    body = world.body(operation.body)
    before = await trail(desk, world)
    for name, value in CUSTOMER_OWNED_BY_SERVER.items():
        response = await desk.request(
            operation.method, url, headers=world.customer, json=with_member(body, name, value)
        )
        assert_refused(response, f"body.{name}")
    if "lines" in body:
        for name, value in LINE_OWNED_BY_SERVER.items():
            response = await desk.request(
                operation.method,
                url,
                headers=world.customer,
                json=with_line_member(body, name, value),
            )
            assert_refused(response, f"body.lines.0.{name}")
    assert await trail(desk, world) == before
    # The body itself was acceptable: only the added member was refused.
    accepted = await desk.request(operation.method, url, headers=world.customer, json=body)
    assert accepted.status_code == operation.success, accepted.text


@pytest.mark.parametrize(
    "operation",
    [pytest.param(op, id=f"{op.method} {op.path}") for op in CUSTOMER_BODIES if "lines" in op.body],
)
async def test_a_customer_cannot_choose_its_own_discount(
    desk: httpx.AsyncClient, world: World, operation: BodyOperation
) -> None:
    """DESIGN.md section 1: "the storefront supplies shipping, tax and discount" — the
    storefront being its backend's service key. A customer key that sets the discount sets
    its own price: an order discounted to 0 needs no payment and is confirmed at once. So
    a discount from a customer key is refused, and nothing is placed."""
    before = await trail(desk, world)
    orders = await every_page(desk, "/v1/orders", world.admin, {})
    body = {**world.body(operation.body), "discount_amount": 1290}
    response = await desk.request(
        operation.method, world.url(operation), headers=world.customer, json=body
    )
    assert response.status_code in (403, 422), response.text
    assert response.headers["content-type"] == PROBLEM
    assert await trail(desk, world) == before
    after = await every_page(desk, "/v1/orders", world.admin, {})
    assert [p.json()["data"] for p in after] == [p.json()["data"] for p in orders]


@pytest.mark.parametrize(
    "operation", [pytest.param(op, id=f"{op.method} {op.path}") for op in STAFF_BODIES]
)
async def test_staff_bodies_refuse_server_owned_members(
    desk: httpx.AsyncClient, world: World, operation: BodyOperation
) -> None:
    """Even admin does not write an object's id, status, timestamps or stock figures:
    they follow from what was done, and the audit trail records what was done."""
    url = world.url(operation)
    body = world.body(operation.body)
    before = await trail(desk, world)
    for name, value in STAFF_OWNED_BY_SERVER.items():
        response = await desk.request(
            operation.method, url, headers=world.admin, json=with_member(body, name, value)
        )
        assert_refused(response, f"body.{name}")
    # For a customer key the operation does not exist, with or without extra members.
    refused = await desk.request(
        operation.method, url, headers=world.customer, json=with_member(body, "status", "x")
    )
    assert_problem(refused, 403, "forbidden")
    assert await trail(desk, world) == before
    accepted = await desk.request(operation.method, url, headers=world.admin, json=body)
    assert accepted.status_code == operation.success, accepted.text


@pytest.mark.parametrize(
    "operation", [pytest.param(op, id=f"{op.method} {op.path}") for op in SIGNED_BODIES]
)
async def test_signed_bodies_refuse_server_owned_members(
    desk: httpx.AsyncClient, world: World, operation: BodyOperation
) -> None:
    """A supplier's message says what happened at the supplier, never what our purchase
    order's status or stock figures are; a correctly signed one with such members is
    still refused."""
    url = world.url(operation)
    body = world.body(operation.body)
    for number, (name, value) in enumerate(STAFF_OWNED_BY_SERVER.items()):
        text, headers = signed(
            world.supplier_secret, f"msg_{number}", with_member(body, name, value)
        )
        response = await desk.post(url, content=text, headers=headers)
        assert_refused(response, f"body.{name}")
    text, headers = signed(world.supplier_secret, "msg_clean", body)
    accepted = await desk.post(url, content=text, headers=headers)
    assert accepted.status_code == operation.success, accepted.text


# --- reading --------------------------------------------------------------------------


def parameter_of(template: str) -> str:
    match = re.search(r"\{(\w+)\}", template)
    assert match is not None
    return match.group(1)


async def crawl(client: httpx.AsyncClient, headers: dict[str, str]) -> list[httpx.Response]:
    """Every GET operation: each list with all its pages, then each item every list names."""
    responses: list[httpx.Response] = []
    rows: dict[str, list[dict[str, Any]]] = {}
    for path, params in LISTS.items():
        pages = await every_page(client, path, headers, params)
        responses.extend(pages)
        rows[path] = [row for page in pages for row in page.json()["data"]]
        assert rows[path], f"{path} is empty: nothing would be checked"
    for template, (source, member) in ITEMS.items():
        for row in rows[source]:
            url = template.replace(f"{{{parameter_of(template)}}}", str(row[member]))
            response = await client.get(url, headers=headers)
            assert response.status_code == 200, (url, response.text)
            responses.append(response)
    for path in OPEN:
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, response.text
        responses.append(response)
    for template, slugs in PROBLEM_TYPES.items():
        for slug in slugs:
            response = await client.get(template.replace("{slug}", slug))
            assert response.status_code == 200, response.text
            responses.append(response)
    return responses


def members(value: Any, where: str = "$") -> Iterator[tuple[str, str, Any]]:
    """Every object member in a JSON document: (where, name, value)."""
    if isinstance(value, dict):
        for name, child in value.items():
            yield where, name, child
            yield from members(child, f"{where}.{name}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from members(child, f"{where}[{index}]")


def documents(responses: list[httpx.Response]) -> Iterator[tuple[str, Any]]:
    for response in responses:
        if response.headers.get("content-type", "").startswith("application/"):
            yield str(response.url), response.json()


def everything_said(response: httpx.Response) -> str:
    headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
    return f"{response.url}\n{headers}\n{response.text}"


@pytest.fixture
async def crawled(desk: httpx.AsyncClient, world: World) -> list[httpx.Response]:
    return await crawl(desk, world.admin)


def test_every_get_operation_is_crawled() -> None:
    """A new GET must be added to the crawl, so that what it shows is checked too."""
    gets = {path for method, path in served_operations() if method == "GET"}
    assert gets == {*LISTS, *ITEMS, *OPEN, *PROBLEM_TYPES}


async def test_no_response_has_a_member_for_a_credential_or_internal_bookkeeping(
    crawled: list[httpx.Response],
) -> None:
    found = [
        f"{url} {where}.{name}"
        for url, document in documents(crawled)
        for where, name, value in members(document)
        if is_forbidden_member(name, value)
    ]
    assert found == []


async def test_ids_are_opaque_strings_never_row_numbers(crawled: list[httpx.Response]) -> None:
    """Integer ids are guessable and enumerable, and tie clients to the storage."""
    found = [
        f"{url} {where}.{name}={value!r}"
        for url, document in documents(crawled)
        for where, name, value in members(document)
        if (name == "id" or name.endswith("_id")) and not isinstance(value, str | None)
    ]
    assert found == []


async def test_no_response_holds_a_key_its_hash_or_a_secret_shown_once(
    world: World, crawled: list[httpx.Response]
) -> None:
    """The values themselves, wherever they might surface: a list, an item, an audit
    record's before and after, an event's object, a header."""
    hashes = [hash_key(key) for key in world.api_keys]
    for response in crawled:
        said = everything_said(response)
        for value in (*world.api_keys, *hashes, *world.secrets):
            assert value not in said, f"{response.url} shows {value!r}"
        for shape in CREDENTIAL_SHAPES:
            assert not shape.search(said), f"{response.url} shows {shape.search(said)}"


async def test_the_key_listing_shows_only_the_first_characters_of_each_key(
    desk: httpx.AsyncClient, world: World
) -> None:
    """Enough to tell keys apart, far too little to use or to guess one."""
    pages = await every_page(desk, "/v1/api-keys", world.admin, {"include_revoked": "true"})
    listed = [row for page in pages for row in page.json()["data"]]
    assert len(listed) >= len(world.api_keys)
    for row in listed:
        assert "key" not in row
        whole = [key for key in world.api_keys if key.startswith(row["prefix"])]
        assert len(whole) == 1, row
        assert len(whole[0]) - len(row["prefix"]) >= 24, row


async def test_an_api_key_is_shown_only_by_the_answers_that_create_it(
    desk: httpx.AsyncClient, world: World
) -> None:
    """A replayed create or rotation (the same Idempotency-Key) answers without the key:
    the stored response is not a second copy of the secret."""
    once = {"Idempotency-Key": "key-once", **world.admin}
    first = await desk.post("/v1/api-keys", headers=once, json={"name": "once", "role": "staff"})
    assert first.status_code == 201, first.text
    replay = await desk.post("/v1/api-keys", headers=once, json={"name": "once", "role": "staff"})
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["key"] is None
    assert {**replay.json(), "key": first.json()["key"]} == first.json()

    again = {"Idempotency-Key": "rotate-once", **world.admin}
    rotate = f"/v1/api-keys/{first.json()['id']}/rotate"
    rotated = await desk.post(rotate, headers=again, json={})
    assert rotated.status_code == 201, rotated.text
    replayed = await desk.post(rotate, headers=again, json={})
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json()["key"] is None

    shown = (first.json()["key"], rotated.json()["key"])
    for response in await crawl(desk, world.admin):
        said = everything_said(response)
        for key in shown:
            assert key not in said, f"{response.url} shows the key"
            assert hash_key(key) not in said, f"{response.url} shows the key's hash"


async def test_a_webhook_endpoints_secret_is_shown_only_when_issued(
    desk: httpx.AsyncClient, world: World
) -> None:
    once = {"Idempotency-Key": "endpoint-once", **world.admin}
    body = {"url": "https://93.184.216.34/once"}
    created = await desk.post("/v1/webhook-endpoints", headers=once, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["secret"].startswith("whsec_")
    replay = await desk.post("/v1/webhook-endpoints", headers=once, json=body)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["secret"] is None
    endpoint = f"/v1/webhook-endpoints/{created.json()['id']}"
    read = await desk.get(endpoint, headers=world.admin)
    assert read.status_code == 200
    assert "secret" not in read.json()

    again = {"Idempotency-Key": "rotate-secret-once", **world.admin}
    rotated = await desk.post(f"{endpoint}/rotate-secret", headers=again)
    assert rotated.status_code == 200, rotated.text
    replayed = await desk.post(f"{endpoint}/rotate-secret", headers=again)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json()["secret"] is None

    shown = (created.json()["secret"], rotated.json()["secret"])
    for response in await crawl(desk, world.admin):
        said = everything_said(response)
        for secret in shown:
            assert secret not in said, f"{response.url} shows the secret"


async def test_a_suppliers_signing_secret_is_shown_only_when_issued(
    desk: httpx.AsyncClient, world: World
) -> None:
    supplier_id = world.values["spare_supplier_id"]
    once = {"Idempotency-Key": "supplier-secret-once", **world.admin}
    issue = f"/v1/suppliers/{supplier_id}/signing-secret"
    issued = await desk.post(issue, headers=once)
    assert issued.status_code == 200, issued.text
    assert issued.json()["secret"].startswith("whsec_")
    replay = await desk.post(issue, headers=once)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["secret"] is None
    read = await desk.get(f"/v1/suppliers/{supplier_id}", headers=world.admin)
    assert "secret" not in json.dumps(read.json())

    for response in await crawl(desk, world.admin):
        assert issued.json()["secret"] not in everything_said(response), str(response.url)
