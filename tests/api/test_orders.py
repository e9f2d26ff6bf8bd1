"""Orders over HTTP: placing (with every validation problem), reserving, reading, shipping,
cancelling, and the audit trail. After every test the ledger, the stock rows and the open
orders must still agree (reconcile finds nothing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from stockflow.app import create_app
from stockflow.audit import repository as audit_repository
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.db.models import AuditRecord, Order, StockMovement
from stockflow.inventory import service as inventory_service
from tests.assertions import assert_invalid, assert_problem
from tests.conftest import Keys

MUG = "MUG-BLUE-330"
COASTER = "COASTER-4"
TEAPOT = "TEAPOT-1L"


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
async def reconciles(database: Database) -> AsyncIterator[None]:
    """Whatever the test did, the ledger, the stock rows and the orders agree afterwards."""
    yield
    async with database.transaction(write=False) as session:
        assert await inventory_service.reconcile(session) == []


async def create_product(
    client: httpx.AsyncClient,
    keys: Keys,
    sku: str,
    *,
    unit_price: int = 1000,
    currency: str = "EUR",
    stock: int = 0,
    active: bool = True,
) -> None:
    created = await client.post(
        "/v1/products",
        headers=keys.admin,
        json={
            "sku": sku,
            "name": sku,
            "unit_price": unit_price,
            "currency": currency,
            "active": active,
        },
    )
    assert created.status_code == 201, created.text
    if stock:
        await restock(client, keys, sku, stock)


async def restock(client: httpx.AsyncClient, keys: Keys, sku: str, delta: int) -> None:
    adjusted = await client.post(
        f"/v1/inventory/{sku}/adjustments",
        headers=keys.admin,
        json={"delta": delta, "reason": "delivery"},
    )
    assert adjusted.status_code == 201, adjusted.text


@pytest.fixture
async def catalog(client: httpx.AsyncClient, keys: Keys) -> None:
    """A mug (12.90, 20 in stock), coasters (3.50, 10 in stock), a teapot (45.00, 5)."""
    await create_product(client, keys, MUG, unit_price=1290, stock=20)
    await create_product(client, keys, COASTER, unit_price=350, stock=10)
    await create_product(client, keys, TEAPOT, unit_price=4500, stock=5)


def lines(*pairs: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"sku": sku, "quantity": quantity} for sku, quantity in pairs]


async def place(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    customer_id: str | None,
    *pairs: tuple[str, int],
    **extra: Any,
) -> httpx.Response:
    body: dict[str, Any] = {"lines": lines(*pairs), **extra}
    if customer_id is not None:
        body["customer_id"] = customer_id
    return await client.post("/v1/orders", headers=headers, json=body)


async def placed(
    client: httpx.AsyncClient, keys: Keys, *pairs: tuple[str, int], **extra: Any
) -> dict[str, Any]:
    """An order for the key's own customer, placed by the service key; its body."""
    response = await place(client, keys.service, keys.customer_id, *pairs, **extra)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def stock(client: httpx.AsyncClient, keys: Keys, sku: str) -> tuple[int, int, int]:
    """(on_hand, reserved, available) of a SKU."""
    response = await client.get(f"/v1/inventory/{sku}", headers=keys.staff)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["on_hand"], body["reserved"], body["available"]


async def movements(client: httpx.AsyncClient, keys: Keys, sku: str) -> list[dict[str, Any]]:
    """The SKU's ledger, newest first."""
    response = await client.get(f"/v1/inventory/{sku}/movements?limit=100", headers=keys.staff)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def ship(
    client: httpx.AsyncClient,
    keys: Keys,
    order_id: str,
    *pairs: tuple[str, int],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        f"/v1/orders/{order_id}/shipments",
        headers=headers or keys.staff,
        json={"lines": lines(*pairs)},
    )


async def cancel(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    order_id: str,
    reason: str = "customer changed their mind",
) -> httpx.Response:
    return await client.post(
        f"/v1/orders/{order_id}/cancel", headers=headers, json={"reason": reason}
    )


async def get_order(client: httpx.AsyncClient, keys: Keys, order_id: str) -> dict[str, Any]:
    """The order as placing it answers: without a payment provider it has no payments or
    refunds, which only reading it shows."""
    response = await client.get(f"/v1/orders/{order_id}", headers=keys.staff)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert (body.pop("payments"), body.pop("refunds")) == ([], [])
    return body


async def count_orders(database: Database) -> int:
    async with database.transaction(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(Order)) or 0)


async def count_movements(database: Database) -> int:
    async with database.transaction(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(StockMovement)) or 0)


async def order_audit(database: Database, order_id: str) -> list[AuditRecord]:
    async with database.transaction(write=False) as session:
        return await audit_repository.for_resource(session, "order", order_id)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def line_view(
    sku: str, quantity: int, unit_price: int, *, allocated: int | None = None, shipped: int = 0
) -> dict[str, Any]:
    return {
        "sku": sku,
        "quantity": quantity,
        "unit_price": unit_price,
        "line_total": quantity * unit_price,
        "allocated": quantity if allocated is None else allocated,
        "backordered": 0,
        "shipped": shipped,
        "expected_available_date": None,
    }


# --- placing -------------------------------------------------------------------------------


async def test_placing_reserves_stock_merges_lines_and_computes_totals(
    client: httpx.AsyncClient, keys: Keys, database: Database, catalog: None
) -> None:
    response = await place(
        client,
        keys.service,
        keys.customer_id,
        (MUG, 2),
        (COASTER, 3),
        (MUG, 1),
        shipping_amount=490,
        tax_amount=1021,
        discount_amount=500,
        metadata={"storefront_ref": "web-7781", "gift": True},
    )
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["id"].startswith("ord_")
    assert response.headers["Location"] == f"/v1/orders/{order['id']}"
    assert order["customer_id"] == keys.customer_id
    assert order["status"] == "confirmed"
    assert order["fulfilment"] == "ready_to_ship"
    assert order["currency"] == "EUR"
    # Two mug lines are one line of 3, at the first mug line's place.
    assert order["lines"] == [line_view(MUG, 3, 1290), line_view(COASTER, 3, 350)]
    # 3 x 1290 + 3 x 350 = 3870 + 1050
    assert order["subtotal"] == 4920
    assert order["shipping_amount"] == 490
    assert order["tax_amount"] == 1021
    assert order["discount_amount"] == 500
    # 4920 + 490 + 1021 - 500
    assert order["total"] == 5931
    assert order["metadata"] == {"storefront_ref": "web-7781", "gift": True}
    assert order["cancel_reason"] is None
    assert order["cancelled_at"] is None
    created = parse_time(order["created_at"])
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60
    assert order["updated_at"] == order["created_at"]

    assert await stock(client, keys, MUG) == (20, 3, 17)
    assert await stock(client, keys, COASTER) == (10, 3, 7)
    assert await stock(client, keys, TEAPOT) == (5, 0, 5)
    for sku, quantity, on_hand in ((MUG, 3, 20), (COASTER, 3, 10)):
        ledger = await movements(client, keys, sku)
        reserved = [m for m in ledger if m["order_id"] == order["id"]]
        assert len(reserved) == 1, ledger
        assert reserved[0] == reserved[0] | {
            "reason": "order_reserved",
            "on_hand_delta": 0,
            "reserved_delta": quantity,
            "on_hand_after": on_hand,
            "reserved_after": quantity,
            "actor": keys.ids["service"],
            "purchase_order_id": None,
        }
        assert ledger[0] == reserved[0]  # the newest entry
    assert [m["order_id"] for m in await movements(client, keys, TEAPOT)] == [None]

    # Reading it back gives the same order.
    assert await get_order(client, keys, order["id"]) == order
    assert await count_orders(database) == 1


async def test_amounts_default_to_zero(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    order = await placed(client, keys, (TEAPOT, 2))
    assert order["lines"] == [line_view(TEAPOT, 2, 4500)]
    assert (order["shipping_amount"], order["tax_amount"], order["discount_amount"]) == (0, 0, 0)
    assert order["subtotal"] == 9000
    assert order["total"] == 9000
    assert order["metadata"] == {}


async def test_a_discount_may_take_the_total_to_zero(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    # 2 x 350 + 100 + 50 = 850
    order = await placed(
        client, keys, (COASTER, 2), shipping_amount=100, tax_amount=50, discount_amount=850
    )
    assert order["total"] == 0
    assert order["subtotal"] == 700


async def test_exactly_all_the_stock_can_be_ordered(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    await placed(client, keys, (TEAPOT, 3), (TEAPOT, 2))
    assert await stock(client, keys, TEAPOT) == (5, 5, 0)


async def test_a_customer_key_orders_for_its_own_customer(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    omitted = await place(client, keys.customer, None, (MUG, 1))
    assert omitted.status_code == 201, omitted.text
    assert omitted.json()["customer_id"] == keys.customer_id
    named = await place(client, keys.customer, keys.customer_id, (MUG, 1))
    assert named.status_code == 201, named.text
    assert named.json()["customer_id"] == keys.customer_id
    assert await stock(client, keys, MUG) == (20, 2, 18)


async def test_a_customer_key_ordering_for_another_customer_gets_404(
    client: httpx.AsyncClient, keys: Keys, database: Database, catalog: None
) -> None:
    response = await place(client, keys.customer, keys.other_customer_id, (MUG, 1))
    assert_problem(response, 404, "not-found")
    assert keys.other_customer_id in response.json()["detail"]
    assert await count_orders(database) == 0
    assert await stock(client, keys, MUG) == (20, 0, 20)


@pytest.mark.parametrize("role", ["admin", "staff", "service"])
async def test_other_roles_order_for_any_customer(
    client: httpx.AsyncClient, keys: Keys, catalog: None, role: str
) -> None:
    response = await place(client, keys.for_role(role), keys.other_customer_id, (MUG, 1))
    assert response.status_code == 201, response.text
    assert response.json()["customer_id"] == keys.other_customer_id


# --- validation ----------------------------------------------------------------------------


@pytest.fixture
async def nothing_changes(
    client: httpx.AsyncClient, keys: Keys, database: Database, catalog: None
) -> AsyncIterator[None]:
    """A refused order leaves no order, no reservation and no ledger entry behind."""
    movements_before = await count_movements(database)
    yield
    assert await count_orders(database) == 0
    assert await count_movements(database) == movements_before
    for sku, on_hand in ((MUG, 20), (COASTER, 10), (TEAPOT, 5)):
        assert await stock(client, keys, sku) == (on_hand, 0, on_hand)


@pytest.mark.usefixtures("nothing_changes")
async def test_an_unknown_sku_is_refused_naming_its_line(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    response = await place(client, keys.staff, keys.customer_id, (MUG, 1), ("NO-SUCH-SKU", 2))
    body = assert_problem(response, 422, "unknown-sku", line=1, sku="NO-SUCH-SKU")
    assert "NO-SUCH-SKU" in body["detail"]


@pytest.mark.usefixtures("nothing_changes")
async def test_an_inactive_sku_is_refused_naming_its_line(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await create_product(client, keys, "RETIRED-CUP", active=False)
    response = await place(
        client, keys.staff, keys.customer_id, (MUG, 1), (COASTER, 1), ("RETIRED-CUP", 1)
    )
    assert_problem(response, 422, "inactive-sku", line=2, sku="RETIRED-CUP")


@pytest.mark.usefixtures("nothing_changes")
async def test_to_a_customer_an_inactive_sku_is_unknown(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    """Customers get 404 for an inactive product everywhere; ordering it must not reveal it."""
    await create_product(client, keys, "RETIRED-CUP", active=False)
    response = await place(client, keys.customer, None, (MUG, 1), ("RETIRED-CUP", 1))
    assert_problem(response, 422, "unknown-sku", line=1, sku="RETIRED-CUP")


@pytest.mark.usefixtures("nothing_changes")
@pytest.mark.parametrize("quantity", [0, -1, -5000])
async def test_a_quantity_below_one_is_refused_naming_its_line(
    client: httpx.AsyncClient, keys: Keys, quantity: int
) -> None:
    response = await place(client, keys.service, keys.customer_id, (MUG, 1), (COASTER, quantity))
    assert_problem(
        response, 422, "invalid-quantity", line=1, sku=COASTER, quantity=quantity, maximum=10000
    )


@pytest.mark.usefixtures("nothing_changes")
async def test_a_quantity_above_the_per_line_maximum_is_refused(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    response = await place(client, keys.service, keys.customer_id, (MUG, 10_001))
    assert_problem(
        response, 422, "invalid-quantity", line=0, sku=MUG, quantity=10_001, maximum=10_000
    )


@pytest.mark.usefixtures("nothing_changes")
async def test_the_maximum_applies_after_merging(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await place(
        client, keys.service, keys.customer_id, (COASTER, 1), (MUG, 6000), (MUG, 4001)
    )
    assert_problem(
        response, 422, "invalid-quantity", line=1, sku=MUG, quantity=10_001, maximum=10_000
    )


@pytest.mark.usefixtures("nothing_changes")
@pytest.mark.parametrize("quantity", ["2", 1.5, True, None])
async def test_a_quantity_that_is_not_an_integer_is_a_validation_error(
    client: httpx.AsyncClient, keys: Keys, quantity: Any
) -> None:
    response = await client.post(
        "/v1/orders",
        headers=keys.service,
        json={"customer_id": keys.customer_id, "lines": [{"sku": MUG, "quantity": quantity}]},
    )
    assert_invalid(response, "body.lines.0.quantity")


@pytest.mark.usefixtures("nothing_changes")
async def test_mixed_currencies_are_refused_naming_the_line(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await create_product(client, keys, "MUG-USD", unit_price=1500, currency="USD")
    response = await place(client, keys.service, keys.customer_id, (MUG, 1), ("MUG-USD", 1))
    assert_problem(
        response,
        422,
        "mixed-currencies",
        line=1,
        sku="MUG-USD",
        currency="USD",
        order_currency="EUR",
    )


@pytest.mark.usefixtures("nothing_changes")
async def test_a_discount_above_the_rest_of_the_total_is_refused(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    # 2 x 350 + 100 + 50 = 850 is the most a discount may take.
    response = await place(
        client,
        keys.service,
        keys.customer_id,
        (COASTER, 2),
        shipping_amount=100,
        tax_amount=50,
        discount_amount=851,
    )
    assert_problem(response, 422, "invalid-amounts", discount_amount=851, maximum_discount=850)


@pytest.mark.usefixtures("nothing_changes")
@pytest.mark.parametrize("field", ["shipping_amount", "tax_amount", "discount_amount"])
async def test_a_negative_amount_is_a_validation_error(
    client: httpx.AsyncClient, keys: Keys, field: str
) -> None:
    response = await place(client, keys.service, keys.customer_id, (MUG, 1), **{field: -1})
    assert_invalid(response, f"body.{field}")


@pytest.mark.usefixtures("nothing_changes")
async def test_an_unknown_customer_is_refused(client: httpx.AsyncClient, keys: Keys) -> None:
    missing = "cus_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"
    response = await place(client, keys.staff, missing, (MUG, 1))
    assert_problem(response, 422, "unknown-customer", customer_id=missing)


@pytest.mark.usefixtures("nothing_changes")
@pytest.mark.parametrize("role", ["admin", "staff", "service"])
async def test_a_non_customer_key_must_name_the_customer(
    client: httpx.AsyncClient, keys: Keys, role: str
) -> None:
    response = await place(client, keys.for_role(role), None, (MUG, 1))
    assert_invalid(response, "body.customer_id", "required")


@pytest.mark.usefixtures("nothing_changes")
@pytest.mark.parametrize(
    ("field", "value"),
    [("total", 100), ("status", "shipped"), ("subtotal", 0), ("id", "ord_x")],
)
async def test_read_only_fields_are_refused(
    client: httpx.AsyncClient, keys: Keys, field: str, value: Any
) -> None:
    response = await place(client, keys.service, keys.customer_id, (MUG, 1), **{field: value})
    assert_invalid(response, f"body.{field}", "read-only")


@pytest.mark.usefixtures("nothing_changes")
async def test_unknown_fields_are_refused(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await place(client, keys.service, keys.customer_id, (MUG, 1), coupon="FREE")
    assert_invalid(response, "body.coupon", "unknown field")
    nested = await client.post(
        "/v1/orders",
        headers=keys.service,
        json={
            "customer_id": keys.customer_id,
            "lines": [{"sku": MUG, "quantity": 1, "unit_price": 1}],
        },
    )
    assert_invalid(nested, "body.lines.0.unit_price", "unknown field")


async def test_totals_beyond_64_bits_are_refused_not_a_crash(
    database_url: str, database: Database, keys: Keys
) -> None:
    """A deployment may raise the per-line maximum to a million; ten lines of the dearest
    product then add up to 10**19, more than the 64-bit money columns hold."""
    settings = Settings(database_url=database_url, max_quantity_per_line=1_000_000)
    app = create_app(settings, database=database)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as c:
        for i in range(10):
            await create_product(c, keys, f"GOLD-{i}", unit_price=10**12, stock=1_000_000)
        response = await place(
            c, keys.service, keys.customer_id, *((f"GOLD-{i}", 1_000_000) for i in range(10))
        )
        assert_problem(response, 422, "invalid-amounts", subtotal=10**19, maximum_total=2**63 - 1)
        assert await stock(c, keys, "GOLD-0") == (1_000_000, 0, 1_000_000)
    await app.state.key_usage.drain()
    assert await count_orders(database) == 0


@pytest.mark.usefixtures("nothing_changes")
async def test_an_order_needs_lines(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.post(
        "/v1/orders", headers=keys.service, json={"customer_id": keys.customer_id, "lines": []}
    )
    assert_invalid(response, "body.lines")


@pytest.mark.usefixtures("nothing_changes")
async def test_more_lines_than_the_per_order_maximum_are_refused(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    many = [(f"SKU-{index:03d}", 1) for index in range(101)]  # the default maximum is 100
    response = await place(client, keys.service, keys.customer_id, *many)
    assert_invalid(response, "body.lines", "at most 100")


async def test_the_line_maximum_counts_skus_after_merging(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    """Lines for one SKU are merged before anything else, the line count included."""
    await create_product(client, keys, "BULK-1")
    adjusted = await client.post(
        "/v1/inventory/BULK-1/adjustments",
        headers=keys.staff,
        json={"delta": 200, "reason": "stock for a long order"},
    )
    assert adjusted.status_code == 201, adjusted.text
    response = await place(client, keys.service, keys.customer_id, *[("BULK-1", 1)] * 150)
    assert response.status_code == 201, response.text
    assert [(line["sku"], line["quantity"]) for line in response.json()["lines"]] == [
        ("BULK-1", 150)
    ]


# --- insufficient stock --------------------------------------------------------------------


async def test_a_short_order_lists_every_short_sku_and_reserves_nothing(
    client: httpx.AsyncClient, keys: Keys, database: Database, catalog: None
) -> None:
    movements_before = await count_movements(database)
    # COASTER (10) and MUG (20) suffice; TEAPOT (5) and a product without stock do not.
    await create_product(client, keys, "SAUCER-EMPTY", unit_price=200)
    response = await place(
        client,
        keys.service,
        keys.customer_id,
        (TEAPOT, 6),
        (MUG, 20),
        ("SAUCER-EMPTY", 1),
        (COASTER, 4),
    )
    body = assert_problem(response, 409, "insufficient-stock")
    assert body["items"] == [
        {"sku": "SAUCER-EMPTY", "requested": 1, "available": 0},
        {"sku": TEAPOT, "requested": 6, "available": 5},
    ]
    assert await count_orders(database) == 0
    assert await count_movements(database) == movements_before
    assert await stock(client, keys, MUG) == (20, 0, 20)
    assert await stock(client, keys, COASTER) == (10, 0, 10)
    assert await stock(client, keys, TEAPOT) == (5, 0, 5)


async def test_a_short_line_after_reserved_ones_undoes_their_reservations(
    client: httpx.AsyncClient, keys: Keys, database: Database, catalog: None
) -> None:
    """COASTER and MUG sort before TEAPOT, so they are reserved before TEAPOT turns out short."""
    response = await place(
        client, keys.service, keys.customer_id, (COASTER, 10), (MUG, 1), (TEAPOT, 9)
    )
    body = assert_problem(response, 409, "insufficient-stock")
    assert body["items"] == [{"sku": TEAPOT, "requested": 9, "available": 5}]
    assert await stock(client, keys, COASTER) == (10, 0, 10)
    assert await stock(client, keys, MUG) == (20, 0, 20)
    assert await count_orders(database) == 0


async def test_two_lines_of_six_with_ten_in_stock_are_refused(
    client: httpx.AsyncClient, keys: Keys, database: Database, catalog: None
) -> None:
    movements_before = await count_movements(database)
    response = await place(client, keys.service, keys.customer_id, (COASTER, 6), (COASTER, 6))
    body = assert_problem(response, 409, "insufficient-stock")
    assert body["items"] == [{"sku": COASTER, "requested": 12, "available": 10}]
    assert await stock(client, keys, COASTER) == (10, 0, 10)
    assert await count_movements(database) == movements_before
    assert await count_orders(database) == 0


async def test_reserved_stock_is_not_available_to_the_next_order(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    await placed(client, keys, (TEAPOT, 4))
    response = await place(client, keys.service, keys.other_customer_id, (TEAPOT, 2))
    body = assert_problem(response, 409, "insufficient-stock")
    assert body["items"] == [{"sku": TEAPOT, "requested": 2, "available": 1}]
    await placed(client, keys, (TEAPOT, 1))
    assert await stock(client, keys, TEAPOT) == (5, 5, 0)


# --- reading -------------------------------------------------------------------------------


async def test_an_unknown_order_is_404(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.get("/v1/orders/ord_01KB3J5Q2W8Z6Y4X0V9T7S5R3P", headers=keys.staff)
    assert_problem(response, 404, "not-found")


async def test_a_customer_reads_its_own_order_but_not_anothers(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    own = await placed(client, keys, (MUG, 1))
    other = await place(client, keys.staff, keys.other_customer_id, (MUG, 2))
    assert other.status_code == 201
    response = await client.get(f"/v1/orders/{own['id']}", headers=keys.customer)
    assert response.status_code == 200
    assert response.json() == {**own, "payments": [], "refunds": []}
    hidden = await client.get(f"/v1/orders/{other.json()['id']}", headers=keys.customer)
    assert_problem(hidden, 404, "not-found")


async def list_ids(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[str]:
    response = await client.get("/v1/orders", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return [order["id"] for order in response.json()["data"]]


async def test_the_list_filters_by_status_customer_and_creation_time(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    first = (await placed(client, keys, (MUG, 1)))["id"]
    await asyncio.sleep(0.01)
    second_response = await place(client, keys.staff, keys.other_customer_id, (MUG, 1))
    second_order = second_response.json()
    second = second_order["id"]
    await asyncio.sleep(0.01)
    third = (await placed(client, keys, (COASTER, 1)))["id"]
    assert (await cancel(client, keys.staff, third)).status_code == 200

    assert await list_ids(client, keys.staff) == [third, second, first]
    assert await list_ids(client, keys.staff, status="cancelled") == [third]
    assert await list_ids(client, keys.staff, status="confirmed") == [second, first]
    assert await list_ids(client, keys.staff, status="shipped") == []
    assert await list_ids(client, keys.staff, customer_id=keys.customer_id) == [third, first]
    assert await list_ids(client, keys.service, customer_id=keys.other_customer_id) == [second]
    assert await list_ids(client, keys.staff, customer_id=keys.customer_id, status="confirmed") == [
        first
    ]

    moment = parse_time(second_order["created_at"])
    # created_after is inclusive, created_before exclusive.
    assert await list_ids(client, keys.staff, created_after=moment.isoformat()) == [third, second]
    assert await list_ids(client, keys.staff, created_before=moment.isoformat()) == [first]
    assert await list_ids(
        client,
        keys.staff,
        created_after=moment.isoformat(),
        created_before=(moment + timedelta(microseconds=1)).isoformat(),
    ) == [second]
    # The same instant written in another offset selects the same orders.
    elsewhere = moment.astimezone(timezone(timedelta(hours=-5))).isoformat()
    assert elsewhere.endswith("-05:00")
    assert await list_ids(client, keys.staff, created_before=elsewhere) == [first]
    assert await list_ids(client, keys.staff, created_after="2999-01-01T00:00:00Z") == []


async def test_list_filters_are_validated(client: httpx.AsyncClient, keys: Keys) -> None:
    assert_invalid(await client.get("/v1/orders?status=lost", headers=keys.staff), "query.status")
    assert_invalid(
        await client.get("/v1/orders?created_after=yesterday", headers=keys.staff),
        "query.created_after",
    )
    assert_invalid(
        await client.get("/v1/orders?created_before=2026-01-01T00:00:00", headers=keys.staff),
        "query.created_before",
    )
    assert_invalid(await client.get("/v1/orders?limit=101", headers=keys.staff), "query.limit")
    assert_problem(
        await client.get("/v1/orders?cursor=nonsense", headers=keys.staff), 422, "invalid-cursor"
    )


async def test_the_list_pages_with_a_cursor(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    created = [(await placed(client, keys, (MUG, 1)))["id"] for _ in range(5)]
    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get("/v1/orders", headers=keys.staff, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        assert len(body["data"]) == (2 if pages < 3 else 1)
        seen.extend(order["id"] for order in body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(created))
    listed = (await client.get("/v1/orders", headers=keys.staff, params={"limit": 1})).json()
    assert listed["data"][0] == await get_order(client, keys, created[-1])


async def test_a_customer_lists_only_its_own_orders(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    own = (await placed(client, keys, (MUG, 1)))["id"]
    other = await place(client, keys.staff, keys.other_customer_id, (MUG, 1))
    assert other.status_code == 201
    assert await list_ids(client, keys.customer) == [own]
    assert await list_ids(client, keys.customer, customer_id=keys.customer_id) == [own]
    assert await list_ids(client, keys.customer, customer_id=keys.other_customer_id) == []
    assert await list_ids(client, keys.customer, status="confirmed") == [own]


# --- shipments -----------------------------------------------------------------------------


async def test_partial_then_full_shipment(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    order = await placed(client, keys, (MUG, 5), (COASTER, 2))

    first = await ship(client, keys, order["id"], (MUG, 1), (MUG, 1))
    assert first.status_code == 201, first.text
    shipment = first.json()
    assert shipment["id"].startswith("shp_")
    assert shipment["order_id"] == order["id"]
    assert shipment["lines"] == [{"sku": MUG, "quantity": 2}]
    after_first = shipment["order"]
    assert after_first["status"] == "partially_shipped"
    assert after_first["lines"] == [
        line_view(MUG, 5, 1290, shipped=2),
        line_view(COASTER, 2, 350),
    ]
    assert await get_order(client, keys, order["id"]) == after_first
    assert await stock(client, keys, MUG) == (18, 3, 15)
    assert await stock(client, keys, COASTER) == (10, 2, 8)
    newest = (await movements(client, keys, MUG))[0]
    assert newest == newest | {
        "reason": "shipment",
        "on_hand_delta": -2,
        "reserved_delta": -2,
        "on_hand_after": 18,
        "reserved_after": 3,
        "order_id": order["id"],
        "actor": keys.ids["staff"],
    }

    rest = await ship(client, keys, order["id"], (COASTER, 2), (MUG, 3))
    assert rest.status_code == 201, rest.text
    done = rest.json()["order"]
    assert done["status"] == "shipped"
    assert done["fulfilment"] == "ready_to_ship"
    assert done["lines"] == [
        line_view(MUG, 5, 1290, shipped=5),
        line_view(COASTER, 2, 350, shipped=2),
    ]
    assert await stock(client, keys, MUG) == (15, 0, 15)
    assert await stock(client, keys, COASTER) == (8, 0, 8)
    coaster_move = (await movements(client, keys, COASTER))[0]
    assert (coaster_move["reason"], coaster_move["on_hand_delta"]) == ("shipment", -2)
    assert coaster_move["reserved_delta"] == -2

    again = await ship(client, keys, order["id"], (MUG, 1))
    assert_problem(
        again,
        409,
        "invalid-state-transition",
        from_status="shipped",
        to_status="partially_shipped",
    )
    assert await stock(client, keys, MUG) == (15, 0, 15)


async def test_shipping_everything_at_once_ships_the_order(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    order = await placed(client, keys, (TEAPOT, 2))
    response = await ship(client, keys, order["id"], (TEAPOT, 2), headers=keys.admin)
    assert response.status_code == 201, response.text
    assert response.json()["order"]["status"] == "shipped"
    assert await stock(client, keys, TEAPOT) == (3, 0, 3)


async def test_shipping_more_than_reserved_and_unshipped_is_a_conflict(
    client: httpx.AsyncClient, keys: Keys, database: Database, catalog: None
) -> None:
    order = await placed(client, keys, (MUG, 3), (COASTER, 2))
    assert (await ship(client, keys, order["id"], (MUG, 2))).status_code == 201
    movements_before = await count_movements(database)

    response = await ship(client, keys, order["id"], (MUG, 2), (COASTER, 1), (COASTER, 2))
    assert_problem(
        response,
        409,
        "shipment-exceeds-reserved",
        items=[
            {"sku": COASTER, "requested": 3, "shippable": 2},
            {"sku": MUG, "requested": 2, "shippable": 1},
        ],
    )
    assert await stock(client, keys, MUG) == (18, 1, 17)
    assert await stock(client, keys, COASTER) == (10, 2, 8)
    assert await count_movements(database) == movements_before
    assert (await get_order(client, keys, order["id"]))["status"] == "partially_shipped"


async def test_shipping_a_sku_the_order_does_not_have_is_invalid(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    order = await placed(client, keys, (MUG, 3))
    response = await ship(client, keys, order["id"], (MUG, 1), (TEAPOT, 1))
    assert_invalid(response, "body.lines.1.sku", "not in this order")
    unknown = await ship(client, keys, order["id"], ("NO-SUCH-SKU", 1))
    assert_invalid(unknown, "body.lines.0.sku", "not in this order")
    assert await stock(client, keys, MUG) == (20, 3, 17)
    assert await stock(client, keys, TEAPOT) == (5, 0, 5)


@pytest.mark.parametrize("quantity", [0, -1])
async def test_a_shipment_quantity_must_be_positive(
    client: httpx.AsyncClient, keys: Keys, catalog: None, quantity: int
) -> None:
    order = await placed(client, keys, (MUG, 3))
    assert_invalid(await ship(client, keys, order["id"], (MUG, quantity)), "body.lines.0.quantity")


async def test_shipping_an_unknown_order_is_404(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    response = await ship(client, keys, "ord_01KB3J5Q2W8Z6Y4X0V9T7S5R3P", (MUG, 1))
    assert_problem(response, 404, "not-found")


async def test_shipping_a_cancelled_order_is_an_invalid_transition(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    order = await placed(client, keys, (MUG, 3))
    assert (await cancel(client, keys.staff, order["id"])).status_code == 200
    response = await ship(client, keys, order["id"], (MUG, 1))
    assert_problem(
        response,
        409,
        "invalid-state-transition",
        from_status="cancelled",
        to_status="partially_shipped",
    )
    assert await stock(client, keys, MUG) == (20, 0, 20)


@pytest.mark.parametrize("role", ["service", "customer"])
async def test_only_staff_ship(
    client: httpx.AsyncClient, keys: Keys, catalog: None, role: str
) -> None:
    order = await placed(client, keys, (MUG, 3))
    response = await ship(client, keys, order["id"], (MUG, 1), headers=keys.for_role(role))
    assert_problem(response, 403, "forbidden")
    assert await stock(client, keys, MUG) == (20, 3, 17)


# --- cancellation --------------------------------------------------------------------------


async def test_cancelling_releases_the_reservation(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    order = await placed(client, keys, (MUG, 4), (COASTER, 2))
    response = await cancel(client, keys.staff, order["id"], "out of budget")
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancel_reason"] == "out of budget"
    cancelled_at = parse_time(cancelled["cancelled_at"])
    assert abs((datetime.now(UTC) - cancelled_at).total_seconds()) < 60
    assert cancelled["updated_at"] == cancelled["cancelled_at"]
    assert cancelled["created_at"] == order["created_at"]
    assert cancelled["lines"] == [
        line_view(MUG, 4, 1290, allocated=0),
        line_view(COASTER, 2, 350, allocated=0),
    ]
    assert cancelled["total"] == order["total"]
    assert await get_order(client, keys, order["id"]) == cancelled
    assert await stock(client, keys, MUG) == (20, 0, 20)
    assert await stock(client, keys, COASTER) == (10, 0, 10)
    for sku, quantity, on_hand in ((MUG, 4, 20), (COASTER, 2, 10)):
        newest = (await movements(client, keys, sku))[0]
        assert newest == newest | {
            "reason": "order_cancelled",
            "on_hand_delta": 0,
            "reserved_delta": -quantity,
            "on_hand_after": on_hand,
            "reserved_after": 0,
            "order_id": order["id"],
            "note": "out of budget",
            "actor": keys.ids["staff"],
        }


async def test_cancelling_after_a_partial_shipment_keeps_what_shipped(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    order = await placed(client, keys, (MUG, 5), (COASTER, 2))
    assert (await ship(client, keys, order["id"], (MUG, 2))).status_code == 201
    ledger_before = len(await movements(client, keys, COASTER))

    response = await cancel(client, keys.staff, order["id"], "rest not wanted")
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["lines"] == [
        line_view(MUG, 5, 1290, allocated=2, shipped=2),
        line_view(COASTER, 2, 350, allocated=0),
    ]
    # 2 mugs left the building; the other 3 and both coasters are available again.
    assert await stock(client, keys, MUG) == (18, 0, 18)
    assert await stock(client, keys, COASTER) == (10, 0, 10)
    mug = (await movements(client, keys, MUG))[0]
    assert (mug["reason"], mug["on_hand_delta"], mug["reserved_delta"]) == (
        "order_cancelled",
        0,
        -3,
    )
    assert len(await movements(client, keys, COASTER)) == ledger_before + 1


async def test_cancelling_a_fully_shipped_line_writes_no_movement_for_it(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    order = await placed(client, keys, (MUG, 2), (COASTER, 2))
    assert (await ship(client, keys, order["id"], (MUG, 2))).status_code == 201
    mug_ledger = await movements(client, keys, MUG)
    assert (await cancel(client, keys.admin, order["id"])).status_code == 200
    assert await movements(client, keys, MUG) == mug_ledger
    assert await stock(client, keys, MUG) == (18, 0, 18)
    assert await stock(client, keys, COASTER) == (10, 0, 10)


async def test_a_customer_cancels_its_own_order_before_anything_shipped(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    order = await placed(client, keys, (TEAPOT, 2))
    response = await cancel(client, keys.customer, order["id"], "ordered twice")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancel_reason"] == "ordered twice"
    assert await stock(client, keys, TEAPOT) == (5, 0, 5)
    assert (await movements(client, keys, TEAPOT))[0]["actor"] == keys.ids["customer"]


async def test_a_customer_cannot_cancel_after_a_partial_shipment(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    order = await placed(client, keys, (MUG, 3))
    assert (await ship(client, keys, order["id"], (MUG, 1))).status_code == 201
    response = await cancel(client, keys.customer, order["id"])
    assert_problem(
        response,
        409,
        "invalid-state-transition",
        from_status="partially_shipped",
        to_status="cancelled",
    )
    assert (await get_order(client, keys, order["id"]))["status"] == "partially_shipped"
    assert await stock(client, keys, MUG) == (19, 2, 17)


async def test_a_customer_cannot_cancel_another_customers_order(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    other = await place(client, keys.staff, keys.other_customer_id, (MUG, 3))
    assert other.status_code == 201
    response = await cancel(client, keys.customer, other.json()["id"])
    assert_problem(response, 404, "not-found")
    assert (await get_order(client, keys, other.json()["id"]))["status"] == "confirmed"
    assert await stock(client, keys, MUG) == (20, 3, 17)


async def test_cancelling_twice_is_a_conflict(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    order = await placed(client, keys, (MUG, 3))
    assert (await cancel(client, keys.staff, order["id"], "first")).status_code == 200
    again = await cancel(client, keys.staff, order["id"], "second")
    assert_problem(
        again, 409, "invalid-state-transition", from_status="cancelled", to_status="cancelled"
    )
    current = await get_order(client, keys, order["id"])
    assert current["cancel_reason"] == "first"
    assert await stock(client, keys, MUG) == (20, 0, 20)


async def test_a_shipped_order_cannot_be_cancelled(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    order = await placed(client, keys, (MUG, 3))
    assert (await ship(client, keys, order["id"], (MUG, 3))).status_code == 201
    response = await cancel(client, keys.admin, order["id"])
    assert_problem(
        response, 409, "invalid-state-transition", from_status="shipped", to_status="cancelled"
    )
    assert await stock(client, keys, MUG) == (17, 0, 17)


async def test_cancelling_needs_a_reason(
    client: httpx.AsyncClient, keys: Keys, catalog: None
) -> None:
    order = await placed(client, keys, (MUG, 1))
    missing = await client.post(f"/v1/orders/{order['id']}/cancel", headers=keys.staff, json={})
    assert_invalid(missing, "body.reason")
    empty = await cancel(client, keys.staff, order["id"], "   ")
    assert_invalid(empty, "body.reason")
    assert (await get_order(client, keys, order["id"]))["status"] == "confirmed"


async def test_cancelling_an_unknown_order_is_404(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await cancel(client, keys.staff, "ord_01KB3J5Q2W8Z6Y4X0V9T7S5R3P")
    assert_problem(response, 404, "not-found")


# --- audit ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "staff"])
async def test_staff_order_mutations_are_audited(
    client: httpx.AsyncClient, keys: Keys, database: Database, catalog: None, role: str
) -> None:
    headers = keys.for_role(role)
    response = await place(client, headers, keys.customer_id, (MUG, 3), (COASTER, 1))
    assert response.status_code == 201
    order = response.json()
    shipment = await ship(client, keys, order["id"], (MUG, 1), headers=headers)
    assert shipment.status_code == 201
    shipped = shipment.json()
    cancelled = await cancel(client, headers, order["id"], "audit me")
    assert cancelled.status_code == 200

    records = await order_audit(database, order["id"])
    assert [r.action for r in records] == ["order.placed", "order.shipped", "order.cancelled"]
    assert {r.actor_id for r in records} == {keys.ids[role]}
    assert {r.actor_role for r in records} == {role}
    placed_record, shipped_record, cancelled_record = records

    assert placed_record.before is None
    assert placed_record.after == order

    # Before the shipment nothing had shipped; after it one mug had.
    assert shipped_record.before == order
    assert order["lines"][0]["shipped"] == 0
    assert shipped_record.after == shipped["order"] | {"shipment_id": shipped["id"]}
    assert shipped["order"]["lines"][0]["shipped"] == 1

    assert cancelled_record.before == shipped["order"]
    assert cancelled_record.after == cancelled.json()
    assert cancelled.json()["status"] == "cancelled"


async def test_service_and_customer_placements_are_not_audited(
    client: httpx.AsyncClient, keys: Keys, database: Database, catalog: None
) -> None:
    by_service = await placed(client, keys, (MUG, 1))
    by_customer = await place(client, keys.customer, None, (MUG, 1))
    assert by_customer.status_code == 201
    assert await order_audit(database, by_service["id"]) == []
    assert await order_audit(database, by_customer.json()["id"]) == []
    assert (await cancel(client, keys.service, by_service["id"])).status_code == 200
    assert (await cancel(client, keys.customer, by_customer.json()["id"])).status_code == 200
    assert await order_audit(database, by_service["id"]) == []
    assert await order_audit(database, by_customer.json()["id"]) == []
