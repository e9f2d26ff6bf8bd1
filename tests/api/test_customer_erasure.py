"""Erasing a customer: afterwards no column of any table holds its personal data, while its
orders keep their quantities and money, the ledger is untouched, its keys stop working, and
other customers are left as they were."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from stockflow.app import create_app
from stockflow.config import Settings
from stockflow.db.base import Base
from stockflow.db.engine import Database
from tests.api.test_orders import COASTER, MUG, create_product, place
from tests.assertions import assert_problem
from tests.conftest import Keys

NAME = "Zebulon Quixotic-Marmaduke"
EMAIL = "zebulon.q@erasure.example"
PHONE = "+44 7700 900123"
EXTERNAL_REF = "shop:zq-991"
LOYALTY = "ZQ-LOYAL-7731"
ADDRESS = "17 Quince Lane"
# Every piece of the person, whole and in parts, as a search through the database finds it.
NEEDLES = (
    NAME,
    "Zebulon",
    "Quixotic",
    EMAIL,
    "zebulon.q",
    PHONE,
    "7700 900123",
    EXTERNAL_REF,
    LOYALTY,
    ADDRESS,
)
KEPT_NAME = "Kept Customer"


@pytest.fixture
async def shop(database_url: str, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(
        Settings(database_url=database_url, payments="manual"), database=database
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as c:
        yield c
    await app.state.key_usage.drain()


def ok(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def leave_traces(client: httpx.AsyncClient, keys: Keys) -> dict[str, Any]:
    """A customer whose personal data is copied into every kind of record the service
    keeps: the customer, an idempotent response, a key, orders, payments, a refund, a
    cancellation, events and audit records."""
    customer = ok(
        await client.post(
            "/v1/customers",
            headers={**keys.staff, "Idempotency-Key": "erasure-customer"},
            json={
                "name": NAME,
                "email": EMAIL,
                "phone": PHONE,
                "external_ref": EXTERNAL_REF,
                "metadata": {"loyalty_card": LOYALTY, "home": ADDRESS},
            },
        )
    )
    key = ok(
        await client.post(
            "/v1/api-keys",
            headers=keys.admin,
            json={
                "name": f"Storefront login of {NAME}",
                "role": "customer",
                "customer_id": customer["id"],
            },
        )
    )
    own = {"Authorization": f"Bearer {key['key']}"}
    await create_product(client, keys, MUG, unit_price=1000, stock=20)
    await create_product(client, keys, COASTER, unit_price=300, stock=20)
    gift = {"gift_message": f"Happy birthday {NAME}!", "deliver_to": ADDRESS}
    paid = ok(await place(client, own, None, (MUG, 2), (COASTER, 1), metadata=gift))
    ok(
        await client.post(
            f"/v1/orders/{paid['id']}/payments",
            headers=keys.staff,
            json={"amount": paid["total"], "reference": f"Transfer from {NAME}"},
        )
    )
    ok(
        await client.post(
            f"/v1/orders/{paid['id']}/refunds",
            headers=keys.staff,
            json={"amount": 300, "reason": f"Zebulon returned a coaster ({PHONE})"},
        )
    )
    cancelled = ok(
        await client.post(
            "/v1/orders",
            headers={**keys.staff, "Idempotency-Key": "erasure-order"},
            json={
                "customer_id": customer["id"],
                "lines": [{"sku": MUG, "quantity": 1}],
                "metadata": {"contact": EMAIL},
            },
        )
    )
    ok(
        await client.post(
            f"/v1/orders/{cancelled['id']}/cancel",
            headers=keys.staff,
            json={"reason": f"{NAME} moved to {ADDRESS}"},
        ),
        200,
    )
    return {"customer": customer, "own": own, "paid": paid, "cancelled": cancelled}


async def database_text(database: Database) -> list[tuple[str, str, str]]:
    """Every value of every column of every table, as text: (table, column, value)."""
    found: list[tuple[str, str, str]] = []
    async with database.transaction(write=False) as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).mappings():
                for column, value in row.items():
                    if value is not None:
                        found.append((table.name, str(column), str(value)))
    return found


def traces(found: list[tuple[str, str, str]], needles: tuple[str, ...]) -> list[str]:
    return [
        f"{table}.{column}: {value[:200]}"
        for table, column, value in found
        for needle in needles
        if needle.casefold() in value.casefold()
    ]


async def test_after_erasure_no_personal_data_is_left_anywhere(
    shop: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    kept = ok(
        await shop.post(
            "/v1/customers",
            headers=keys.staff,
            json={"name": KEPT_NAME, "email": "kept@example.com"},
        )
    )
    left = await leave_traces(shop, keys)
    customer_id = left["customer"]["id"]
    before = await database_text(database)
    # The search finds the person before: the test looks where the data really is.
    assert len({row.split(":")[0] for row in traces(before, NEEDLES)}) >= 8

    erased = ok(await shop.post(f"/v1/customers/{customer_id}/erase", headers=keys.admin), 200)
    assert erased["name"] == "Erased customer"
    assert (erased["email"], erased["phone"], erased["external_ref"], erased["metadata"]) == (
        None,
        None,
        None,
        {},
    )
    assert erased["erased_at"] is not None

    assert traces(await database_text(database), NEEDLES) == []

    # Quantities, money and history are kept.
    paid = ok(await shop.get(f"/v1/orders/{left['paid']['id']}", headers=keys.staff), 200)
    assert (paid["total"], paid["amount_paid"], paid["amount_refunded"]) == (
        left["paid"]["total"],
        left["paid"]["total"],
        300,
    )
    assert [(line["sku"], line["quantity"]) for line in paid["lines"]] == [
        (line["sku"], line["quantity"]) for line in left["paid"]["lines"]
    ]
    assert paid["metadata"] == {}
    cancelled = ok(await shop.get(f"/v1/orders/{left['cancelled']['id']}", headers=keys.staff), 200)
    assert (cancelled["status"], cancelled["cancel_reason"]) == ("cancelled", "[erased]")
    # The customer's own key stops working at once.
    assert_problem(await shop.get("/v1/orders", headers=left["own"]), 401, "unauthenticated")
    # Others are untouched.
    other = ok(await shop.get(f"/v1/customers/{kept['id']}", headers=keys.staff), 200)
    assert (other["name"], other["email"], other["erased_at"]) == (
        KEPT_NAME,
        "kept@example.com",
        None,
    )
    # Who erased whom is on record, without the data.
    audit = ok(
        await shop.get(
            "/v1/audit-events",
            headers=keys.admin,
            params={"resource_id": customer_id, "action": "customer.erased"},
        ),
        200,
    )["data"]
    assert [(a["actor_id"], a["after"]["erased_at"]) for a in audit] == [
        (keys.ids["admin"], erased["erased_at"])
    ]


async def test_erasure_is_for_admins_and_known_customers_and_can_be_repeated(
    shop: httpx.AsyncClient, keys: Keys
) -> None:
    path = f"/v1/customers/{keys.other_customer_id}/erase"
    assert_problem(await shop.post(path, headers=keys.staff), 403, "forbidden")
    assert_problem(await shop.post(path, headers=keys.customer), 403, "forbidden")
    assert_problem(await shop.post(path), 401, "unauthenticated")
    assert_problem(
        await shop.post("/v1/customers/cus_NOBODY/erase", headers=keys.admin), 404, "not-found"
    )
    first = ok(await shop.post(path, headers=keys.admin), 200)
    again = ok(await shop.post(path, headers=keys.admin), 200)
    assert first["name"] == again["name"] == "Erased customer"
