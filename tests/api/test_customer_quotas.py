"""Per-customer quotas: no customer may hold more unpaid orders, or more units reserved for
unpaid orders, than the settings allow; over either, an order is refused with a 429
``quota-exceeded`` problem and reserves nothing. Paying or cancelling frees the quota."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from stockflow.app import create_app
from stockflow.config import Settings
from stockflow.db.engine import Database
from tests.api.test_orders import MUG, cancel, create_product, place, stock
from tests.assertions import assert_problem
from tests.conftest import Keys


@asynccontextmanager
async def serving(settings: Settings, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, database=database)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as c:
        yield c
    await app.state.key_usage.drain()


def quotas(
    settings: Settings, *, orders: int = 0, units: int = 0, payments: str = "manual"
) -> Settings:
    return settings.model_copy(
        update={
            "payments": payments,
            "max_unpaid_orders_per_customer": orders,
            "max_reserved_units_per_customer": units,
        }
    )


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_unpaid_orders_past_the_quota_are_refused_until_one_is_paid_or_cancelled(
    settings: Settings, database: Database, keys: Keys
) -> None:
    async with serving(quotas(settings, orders=2), database) as client:
        await create_product(client, keys, MUG, unit_price=1000, stock=50)
        first = created(await place(client, keys.customer, None, (MUG, 1)))
        second = created(await place(client, keys.customer, None, (MUG, 1)))
        assert {first["status"], second["status"]} == {"pending_payment"}
        refused = await place(client, keys.customer, None, (MUG, 3))
        assert_problem(
            refused,
            429,
            "quota-exceeded",
            quota="unpaid_orders",
            limit=2,
            current=2,
            requested=1,
        )
        # Nothing was reserved for the refused order.
        assert await stock(client, keys, MUG) == (50, 2, 48)
        # A quota is the customer's, whoever places the order for it.
        assert_problem(
            await place(client, keys.service, keys.customer_id, (MUG, 1)), 429, "quota-exceeded"
        )
        # Another customer has a quota of its own.
        created(await place(client, keys.service, keys.other_customer_id, (MUG, 1)))

        paid = await client.post(
            f"/v1/orders/{first['id']}/payments",
            headers=keys.staff,
            json={"amount": first["total"], "reference": "paid at the counter"},
        )
        assert paid.status_code == 201, paid.text
        third = created(await place(client, keys.customer, None, (MUG, 1)))
        assert_problem(await place(client, keys.customer, None, (MUG, 1)), 429, "quota-exceeded")
        assert (await cancel(client, keys.customer, third["id"])).status_code == 200
        created(await place(client, keys.customer, None, (MUG, 1)))


async def test_units_reserved_unpaid_past_the_quota_are_refused(
    settings: Settings, database: Database, keys: Keys
) -> None:
    async with serving(quotas(settings, units=10), database) as client:
        await create_product(client, keys, MUG, unit_price=1000, stock=50)
        created(await place(client, keys.customer, None, (MUG, 6)))
        assert_problem(
            await place(client, keys.customer, None, (MUG, 5)),
            429,
            "quota-exceeded",
            quota="reserved_units",
            limit=10,
            current=6,
            requested=5,
        )
        assert await stock(client, keys, MUG) == (50, 6, 44)
        created(await place(client, keys.customer, None, (MUG, 4)))
        assert_problem(await place(client, keys.customer, None, (MUG, 1)), 429, "quota-exceeded")


@pytest.mark.parametrize("payments", ["none", "manual"])
async def test_orders_that_need_no_payment_or_no_quota_are_never_refused(
    settings: Settings, database: Database, keys: Keys, payments: str
) -> None:
    # Without a payment provider every order is confirmed at once: nothing is unpaid.
    # With one, a quota of 0 is no quota.
    limited = quotas(settings, orders=1 if payments == "none" else 0, payments=payments)
    async with serving(limited, database) as client:
        await create_product(client, keys, MUG, unit_price=1000, stock=50)
        for _ in range(3):
            created(await place(client, keys.customer, None, (MUG, 1)))


async def test_the_documented_defaults_leave_room_for_a_busy_customer(
    settings: Settings, database: Database, keys: Keys
) -> None:
    defaults = Settings(database_url=settings.database_url)
    assert defaults.max_unpaid_orders_per_customer == 50
    assert defaults.max_reserved_units_per_customer == 100_000
    async with serving(quotas(settings, orders=50, units=100_000), database) as client:
        await create_product(client, keys, MUG, unit_price=1000, stock=100)
        for _ in range(20):
            created(await place(client, keys.customer, None, (MUG, 2)))
