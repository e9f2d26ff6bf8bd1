"""Offline payments recorded by staff (`STOCKFLOW_PAYMENTS=manual`): orders wait for payment,
are confirmed once paid in full, and never take more than they owe."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from stockflow.app import create_app
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.payments import expiry
from tests.api.test_orders import COASTER, MUG, cancel, create_product, order_audit, place, ship
from tests.assertions import assert_problem
from tests.conftest import Keys


@pytest.fixture
def manual_app(database_url: str, database: Database) -> FastAPI:
    return create_app(Settings(database_url=database_url, payments="manual"), database=database)


@pytest.fixture
async def manual(manual_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=manual_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as c:
        yield c
    await manual_app.state.key_usage.drain()


@pytest.fixture
async def shop(manual: httpx.AsyncClient, keys: Keys) -> None:
    await create_product(manual, keys, MUG, unit_price=1290, stock=20)
    await create_product(manual, keys, COASTER, unit_price=350, stock=10)


async def unpaid(client: httpx.AsyncClient, keys: Keys) -> dict[str, Any]:
    """2 mugs and a coaster (29.30), placed by the service key for the own customer."""
    response = await place(client, keys.service, keys.customer_id, (MUG, 2), (COASTER, 1))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def pay(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    order_id: str,
    amount: int,
    reference: str = "SEPA REF 1",
) -> httpx.Response:
    return await client.post(
        f"/v1/orders/{order_id}/payments",
        headers=headers,
        json={"amount": amount, "reference": reference},
    )


async def events_of(client: httpx.AsyncClient, keys: Keys, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/v1/events", headers=keys.staff, params={"limit": 100, **params})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


@pytest.mark.usefixtures("shop")
async def test_an_order_waits_for_payment_and_cannot_ship_before(
    manual: httpx.AsyncClient, keys: Keys
) -> None:
    order = await unpaid(manual, keys)
    assert order["status"] == "pending_payment"
    assert (order["payment_status"], order["amount_paid"], order["amount_refunded"]) == (
        "unpaid",
        0,
        0,
    )
    assert order["total"] == 2930
    # Stock is reserved while it waits.
    inventory = (await manual.get(f"/v1/inventory/{MUG}", headers=keys.staff)).json()
    assert inventory["reserved"] == 2
    assert_problem(await ship(manual, keys, order["id"], (MUG, 1)), 409, "invalid-state-transition")


@pytest.mark.usefixtures("shop")
async def test_payments_confirm_the_order_once_they_cover_its_total(
    manual: httpx.AsyncClient, keys: Keys
) -> None:
    order = await unpaid(manual, keys)
    first = await pay(manual, keys.staff, order["id"], 1000, "cash at the counter")
    assert first.status_code == 201, first.text
    payment = first.json()
    assert payment["id"].startswith("pay_")
    assert (payment["provider"], payment["status"], payment["amount"]) == (
        "manual",
        "succeeded",
        1000,
    )
    assert (payment["currency"], payment["reference"]) == ("EUR", "cash at the counter")
    halfway = (await manual.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert (halfway["status"], halfway["payment_status"], halfway["amount_paid"]) == (
        "pending_payment",
        "partially_paid",
        1000,
    )

    second = await pay(manual, keys.admin, order["id"], 1930)
    assert second.status_code == 201, second.text
    paid = (await manual.get(f"/v1/orders/{order['id']}", headers=keys.customer)).json()
    assert (paid["status"], paid["payment_status"], paid["amount_paid"]) == (
        "confirmed",
        "paid",
        2930,
    )
    assert [p["id"] for p in paid["payments"]] == [payment["id"], second.json()["id"]]
    assert paid["refunds"] == []

    told = await events_of(manual, keys, object_id=order["id"])
    assert [e["type"] for e in reversed(told)] == ["order.created", "order.confirmed"]
    confirmed = next(e for e in told if e["type"] == "order.confirmed")
    assert confirmed["data"]["object"]["status"] == "confirmed"
    payments_told = await events_of(manual, keys, type="payment.succeeded")
    assert sorted(e["data"]["object"]["amount"] for e in payments_told) == [1000, 1930]
    # Now it ships.
    assert (await ship(manual, keys, order["id"], (MUG, 2))).status_code == 201


@pytest.mark.usefixtures("shop")
async def test_a_payment_never_takes_more_than_is_owed(
    manual: httpx.AsyncClient, keys: Keys
) -> None:
    order = await unpaid(manual, keys)
    assert_problem(
        await pay(manual, keys.staff, order["id"], 2931),
        422,
        "payment-exceeds-amount-due",
        amount_due=2930,
    )
    assert (await pay(manual, keys.staff, order["id"], 2930)).status_code == 201
    assert_problem(
        await pay(manual, keys.staff, order["id"], 1),
        422,
        "payment-exceeds-amount-due",
        amount_due=0,
    )
    other = await unpaid(manual, keys)
    assert (await cancel(manual, keys.customer, other["id"])).status_code == 200
    assert_problem(
        await pay(manual, keys.staff, other["id"], 100),
        422,
        "payment-exceeds-amount-due",
        amount_due=0,
    )
    detail = (await manual.get(f"/v1/orders/{other['id']}", headers=keys.staff)).json()
    assert (detail["amount_paid"], detail["payments"]) == (0, [])


@pytest.mark.usefixtures("shop")
async def test_concurrent_payments_of_one_order_never_exceed_its_total(
    manual: httpx.AsyncClient, keys: Keys
) -> None:
    order = await unpaid(manual, keys)
    answers = await asyncio.gather(
        *(pay(manual, keys.staff, order["id"], 1800, f"terminal {n}") for n in range(6))
    )
    assert sorted(a.status_code for a in answers) == [201] + [422] * 5
    detail = (await manual.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert (detail["amount_paid"], len(detail["payments"]), detail["status"]) == (
        1800,
        1,
        "pending_payment",
    )


@pytest.mark.usefixtures("shop")
async def test_a_retried_payment_is_recorded_once(manual: httpx.AsyncClient, keys: Keys) -> None:
    order = await unpaid(manual, keys)
    headers = {**keys.staff, "Idempotency-Key": "terminal-receipt-0042"}
    first = await pay(manual, headers, order["id"], 500)
    again = await pay(manual, headers, order["id"], 500)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    detail = (await manual.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert (detail["amount_paid"], len(detail["payments"])) == (500, 1)


@pytest.mark.usefixtures("shop")
async def test_only_staff_record_payments_and_only_for_manual_orders(
    manual: httpx.AsyncClient, client: httpx.AsyncClient, keys: Keys
) -> None:
    order = await unpaid(manual, keys)
    for role in ("customer", "service"):
        assert_problem(await pay(manual, keys.for_role(role), order["id"], 100), 403, "forbidden")
    assert_problem(await pay(manual, keys.staff, "ord_missing", 100), 404, "not-found")
    # Placed with payments off: confirmed at once, nothing to record.
    free = await place(client, keys.service, keys.customer_id, (MUG, 1))
    assert free.json()["status"] == "confirmed"
    assert free.json()["payment_status"] == "not_required"
    assert_problem(
        await pay(manual, keys.staff, free.json()["id"], 100),
        409,
        "payment-provider-mismatch",
        payment_provider="none",
    )


@pytest.mark.usefixtures("shop")
async def test_recording_a_payment_is_audited(
    manual: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    order = await unpaid(manual, keys)
    assert (await pay(manual, keys.staff, order["id"], 2930)).status_code == 201
    recorded = [
        r for r in await order_audit(database, order["id"]) if r.action == "payment.recorded"
    ]
    assert len(recorded) == 1
    assert recorded[0].before == {"status": "pending_payment", "amount_paid": 0}
    assert (recorded[0].after or {})["status"] == "confirmed"
    assert recorded[0].actor_id == keys.ids["staff"]


@pytest.mark.usefixtures("shop")
async def test_a_recorded_refund_is_done_at_once_and_cancelling_refunds_the_rest(
    manual: httpx.AsyncClient, keys: Keys
) -> None:
    order = await unpaid(manual, keys)
    assert (await pay(manual, keys.staff, order["id"], 2930)).status_code == 201
    given = await manual.post(
        f"/v1/orders/{order['id']}/refunds",
        headers=keys.staff,
        json={"amount": 350, "reason": "coaster chipped"},
    )
    assert given.status_code == 201, given.text
    assert (given.json()["provider"], given.json()["status"]) == ("manual", "succeeded")
    cancelled = await cancel(manual, keys.staff, order["id"])
    assert cancelled.json()["amount_refunded"] == 2930
    detail = (await manual.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert [(r["amount"], r["status"]) for r in detail["refunds"]] == [
        (350, "succeeded"),
        (2580, "succeeded"),
    ]
    assert detail["payment_status"] == "refunded"


@pytest.mark.usefixtures("shop")
async def test_an_order_unpaid_past_the_timeout_is_cancelled_and_its_stock_released(
    manual: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    waiting = await unpaid(manual, keys)
    settled = await unpaid(manual, keys)
    assert (await pay(manual, keys.staff, settled["id"], 2930)).status_code == 201
    # Part paid: left to staff, since cancelling it would owe money taken outside.
    part_paid = await unpaid(manual, keys)
    assert (await pay(manual, keys.staff, part_paid["id"], 1000)).status_code == 201
    assert (
        await expiry.expire_unpaid(
            database, None, unpaid_for=timedelta(hours=1), lease=timedelta(seconds=10)
        )
        == 0
    )
    assert (
        await expiry.expire_unpaid(
            database, None, unpaid_for=timedelta(0), lease=timedelta(seconds=10)
        )
        == 1
    )
    statuses = [
        (await manual.get(f"/v1/orders/{o['id']}", headers=keys.staff)).json()["status"]
        for o in (waiting, settled, part_paid)
    ]
    assert statuses == ["cancelled", "confirmed", "pending_payment"]
    inventory = (await manual.get(f"/v1/inventory/{MUG}", headers=keys.staff)).json()
    assert inventory["reserved"] == 4
