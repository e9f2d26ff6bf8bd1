"""Paying an order through Stripe: the PaymentIntent the storefront asks for, against a fake
of Stripe's API on loopback driven by the real SDK."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from typer.testing import CliRunner, Result

from stockflow.app import create_app
from stockflow.cli.main import app as cli
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.db.models import InboxMessage, Order
from stockflow.payments import expiry, refunds, stripe_events
from tests.api.test_orders import COASTER, MUG, cancel, create_product, place, ship
from tests.assertions import assert_problem
from tests.conftest import Keys
from tests.fake_stripe import SECRET_KEY, WEBHOOK_SECRET, FakeStripe, running_fake_stripe


@pytest.fixture
async def fake() -> AsyncIterator[FakeStripe]:
    async with running_fake_stripe() as running:
        yield running


def stripe_settings(database_url: str, fake: FakeStripe, **extra: Any) -> Settings:
    return Settings(
        database_url=database_url,
        payments="stripe",
        stripe_secret_key=SECRET_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=fake.url,
        stripe_timeout_seconds=1.0,
        **extra,
    )


@pytest.fixture
async def stripe_app(
    database_url: str, database: Database, fake: FakeStripe
) -> AsyncIterator[FastAPI]:
    app = create_app(stripe_settings(database_url, fake), database=database)
    yield app
    await app.state.checkout.gateway.aclose()


@pytest.fixture
async def shop(stripe_app: FastAPI, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=stripe_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as c:
        await create_product(c, keys, MUG, unit_price=1290, stock=20)
        await create_product(c, keys, COASTER, unit_price=350, stock=10)
        yield c
    await stripe_app.state.key_usage.drain()


async def unpaid(client: httpx.AsyncClient, keys: Keys) -> dict[str, Any]:
    response = await place(client, keys.customer, None, (MUG, 2), (COASTER, 1))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def intent_for(
    client: httpx.AsyncClient, headers: dict[str, str], order_id: str
) -> httpx.Response:
    return await client.post(f"/v1/orders/{order_id}/payment-intent", headers=headers)


async def test_placing_an_order_never_calls_stripe_and_its_intent_carries_the_order(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe
) -> None:
    order = await unpaid(shop, keys)
    assert (order["status"], order["payment_status"]) == ("pending_payment", "unpaid")
    assert fake.calls == []

    response = await intent_for(shop, keys.customer, order["id"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["amount"], body["currency"], body["status"]) == (2930, "EUR", "requires_payment")
    [call] = fake.calls
    assert (call.method, call.path) == ("POST", "/v1/payment_intents")
    assert call.params == {
        "amount": "2930",
        "currency": "eur",
        "metadata[order_id]": order["id"],
        "automatic_payment_methods[enabled]": "true",
    }
    # Derived from the order and the amount, never a caller's raw key.
    assert call.idempotency_key is not None
    assert call.idempotency_key.startswith("sf-")
    assert order["id"] not in call.idempotency_key
    intent = fake.intents[body["intent_id"]]
    assert body["client_secret"] == intent["client_secret"]

    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.customer)).json()
    [payment] = detail["payments"]
    assert (payment["id"], payment["provider"], payment["intent_id"], payment["status"]) == (
        body["payment_id"],
        "stripe",
        body["intent_id"],
        "requires_payment",
    )
    assert "client_secret" not in payment

    again = await intent_for(shop, keys.service, order["id"])
    assert again.json() == body
    assert len(fake.calls) == 1, "the open PaymentIntent is answered without asking Stripe"


async def test_twenty_concurrent_calls_make_one_payment_intent(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database
) -> None:
    order = await unpaid(shop, keys)
    fake.latency = 0.2  # long enough for every caller to arrive while the first waits
    answers = await asyncio.gather(
        *(intent_for(shop, keys.customer, order["id"]) for _ in range(20))
    )
    secrets = set()
    for answer in answers:
        if answer.status_code == 200:
            secrets.add(answer.json()["client_secret"])
        else:
            assert_problem(answer, 409, "payment-in-progress")
            assert int(answer.headers["Retry-After"]) >= 1
    assert len(secrets) == 1
    assert sum(a.status_code == 200 for a in answers) >= 1
    assert len(fake.calls_to("POST", "/v1/payment_intents")) == 1
    assert len(fake.intents) == 1
    assert fake.overlapping_keys == []
    assert fake.in_flight_max == 1
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert len(detail["payments"]) == 1


@pytest.mark.parametrize("failure", [("status", 500), ("hang", 3.0), ("slow", 3.0)])
async def test_a_failed_or_timed_out_create_changes_nothing_and_a_retry_charges_once(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, failure: tuple[str, float]
) -> None:
    order = await unpaid(shop, keys)
    fake.fail_next("/v1/payment_intents", failure)
    failed = await intent_for(shop, keys.customer, order["id"])
    assert_problem(failed, 502, "payment-provider-unavailable")
    assert int(failed.headers["Retry-After"]) > 0
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert (detail["status"], detail["payments"]) == ("pending_payment", [])

    # As a client following Retry-After would (shortened): while Stripe still works on the
    # timed-out request, it refuses the same key with 409, which answers 502 here.
    async with asyncio.timeout(10):
        while (retried := await intent_for(shop, keys.customer, order["id"])).status_code != 200:
            assert_problem(retried, 502, "payment-provider-unavailable")
            await asyncio.sleep(0.25)
    # "slow" did create one at Stripe before the answer was lost: the retry gets that one.
    assert len(fake.intents) == 1
    assert retried.json()["intent_id"] in fake.intents
    keys_sent = {c.idempotency_key for c in fake.calls_to("POST", "/v1/payment_intents")}
    assert len(keys_sent) == 1


async def test_only_an_unpaid_stripe_order_of_ones_own_gets_an_intent(
    shop: httpx.AsyncClient,
    client: httpx.AsyncClient,
    keys: Keys,
    fake: FakeStripe,
) -> None:
    others = await place(shop, keys.staff, keys.other_customer_id, (MUG, 1))
    assert_problem(await intent_for(shop, keys.customer, others.json()["id"]), 404, "not-found")
    assert_problem(await intent_for(shop, keys.customer, "ord_missing"), 404, "not-found")
    assert_problem(await intent_for(shop, {}, others.json()["id"]), 401, "unauthenticated")

    cancelled = await unpaid(shop, keys)
    assert (await cancel(shop, keys.customer, cancelled["id"])).status_code == 200
    assert_problem(
        await intent_for(shop, keys.customer, cancelled["id"]),
        409,
        "invalid-state-transition",
        from_status="cancelled",
    )
    # Placed while payments were off: nothing to pay through Stripe.
    free = await place(client, keys.customer, None, (MUG, 1))
    assert_problem(
        await intent_for(shop, keys.customer, free.json()["id"]),
        409,
        "payment-provider-mismatch",
        payment_provider="none",
    )
    # A deployment without Stripe has nothing to create it with.
    assert_problem(
        await intent_for(client, keys.customer, free.json()["id"]),
        409,
        "payment-provider-mismatch",
        payment_provider="none",
    )
    assert fake.calls == []


def test_stripe_payments_need_both_keys() -> None:
    with pytest.raises(ValueError, match="STOCKFLOW_STRIPE_WEBHOOK_SECRET"):
        Settings(payments="stripe", stripe_secret_key="sk_test_x")
    with pytest.raises(ValueError, match="STOCKFLOW_STRIPE_SECRET_KEY"):
        Settings(payments="stripe", stripe_webhook_secret="whsec_x")


# --- Stripe's events -----------------------------------------------------------------


async def deliver(client: httpx.AsyncClient, payload: str, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return await client.post("/v1/webhooks/stripe", content=payload, headers=headers)


async def work(app: FastAPI, database: Database) -> int:
    """One round of the worker's Stripe job."""
    return await stripe_events.apply_waiting(database, app.state.checkout.gateway)


async def kept_events(database: Database) -> list[InboxMessage]:
    async with database.transaction(write=False) as session:
        rows = await session.scalars(
            select(InboxMessage).where(InboxMessage.source_type == "stripe")
        )
        return list(rows.all())


async def told(client: httpx.AsyncClient, keys: Keys, kind: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/events", headers=keys.staff, params={"type": kind})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def paying(shop: httpx.AsyncClient, keys: Keys) -> tuple[dict[str, Any], dict[str, Any]]:
    order = await unpaid(shop, keys)
    response = await intent_for(shop, keys.customer, order["id"])
    assert response.status_code == 200, response.text
    return order, response.json()


async def test_an_event_without_a_good_recent_signature_is_refused_and_changes_nothing(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    order, intent = await paying(shop, keys)
    payload = fake.event("payment_intent.succeeded", fake.succeed(intent["intent_id"]))
    stale = int(time.time()) - 301
    for signature in (
        None,
        "t=1,v1=deadbeef",
        fake.sign(payload, secret="whsec_someone_else"),
        fake.sign(payload, timestamp=stale),
        fake.sign(payload.replace("succeeded", "succeeded "), timestamp=None),
    ):
        assert_problem(await deliver(shop, payload, signature), 400, "invalid-stripe-signature")
    assert await kept_events(database) == []
    assert await work(stripe_app, database) == 0
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert (detail["status"], detail["amount_paid"]) == ("pending_payment", 0)


async def test_a_succeeded_event_sent_five_times_at_once_is_applied_once(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    order, intent = await paying(shop, keys)
    payload = fake.event("payment_intent.succeeded", fake.succeed(intent["intent_id"]))
    answers = await asyncio.gather(*(deliver(shop, payload, fake.sign(payload)) for _ in range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True, True, True]
    assert len(await kept_events(database)) == 1
    assert await work(stripe_app, database) == 1
    assert await work(stripe_app, database) == 0

    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.customer)).json()
    assert (detail["status"], detail["payment_status"], detail["amount_paid"]) == (
        "confirmed",
        "paid",
        2930,
    )
    [payment] = detail["payments"]
    assert (payment["status"], payment["amount_received"]) == ("succeeded", 2930)
    assert len(await told(shop, keys, "payment.succeeded")) == 1
    [confirmed] = await told(shop, keys, "order.confirmed")
    assert confirmed["data"]["object"]["id"] == order["id"]


async def test_a_declined_payment_leaves_the_order_payable_and_a_late_failure_changes_nothing(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    order, intent = await paying(shop, keys)
    declined = fake.event("payment_intent.payment_failed", fake.fail(intent["intent_id"]))
    assert (await deliver(shop, declined, fake.sign(declined))).status_code == 200
    await work(stripe_app, database)
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert (detail["status"], detail["payments"][0]["status"]) == ("pending_payment", "failed")
    assert detail["payments"][0]["failure_message"] == "Your card was declined."
    [failed] = await told(shop, keys, "payment.failed")
    assert failed["data"]["object"]["intent_id"] == intent["intent_id"]
    # The customer tries again with the same PaymentIntent and another card.
    again = await intent_for(shop, keys.customer, order["id"])
    assert again.json()["client_secret"] == intent["client_secret"]

    succeeded = fake.event("payment_intent.succeeded", fake.succeed(intent["intent_id"]))
    # The failure is delivered again, after the success: Stripe's word now counts.
    for payload in (succeeded, declined.replace('"evt_', '"evt_late_')):
        assert (await deliver(shop, payload, fake.sign(payload))).status_code == 200
    await work(stripe_app, database)
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert (detail["status"], detail["payments"][0]["status"]) == ("confirmed", "succeeded")
    assert len(await told(shop, keys, "payment.failed")) == 1


async def test_a_success_told_before_the_intent_call_returned_still_confirms_the_order(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    order = await unpaid(shop, keys)
    # Stripe creates the PaymentIntent but its answer comes too late for the call.
    fake.fail_next("/v1/payment_intents", ("slow", 1.5))
    lost = await intent_for(shop, keys.customer, order["id"])
    assert_problem(lost, 502, "payment-provider-unavailable")
    [intent_id] = fake.intents
    payload = fake.event("payment_intent.succeeded", fake.succeed(intent_id))
    assert (await deliver(shop, payload, fake.sign(payload))).status_code == 200
    await work(stripe_app, database)
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert (detail["status"], detail["amount_paid"]) == ("confirmed", 2930)
    assert [p["intent_id"] for p in detail["payments"]] == [intent_id]
    # The storefront's retry finds the order paid.
    assert_problem(
        await intent_for(shop, keys.customer, order["id"]), 409, "invalid-state-transition"
    )
    assert len(fake.intents) == 1


async def test_an_event_whose_intent_stripe_cannot_show_now_waits_for_the_next_round(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    order, intent = await paying(shop, keys)
    payload = fake.event("payment_intent.succeeded", fake.succeed(intent["intent_id"]))
    assert (await deliver(shop, payload, fake.sign(payload))).status_code == 200
    fake.fail_next(f"/v1/payment_intents/{intent['intent_id']}", ("status", 500))
    assert await work(stripe_app, database) == 0
    assert (await kept_events(database))[0].processed_at is None
    assert await work(stripe_app, database) == 1
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert detail["status"] == "confirmed"


async def test_stripe_events_are_not_taken_where_payments_are_not_stripe(
    client: httpx.AsyncClient, fake: FakeStripe
) -> None:
    payload = fake.event("payment_intent.succeeded", {"id": "pi_x", "object": "payment_intent"})
    assert_problem(await deliver(client, payload, fake.sign(payload)), 404, "not-found")


# --- refunds ---------------------------------------------------------------------------


async def paid(
    shop: httpx.AsyncClient,
    keys: Keys,
    fake: FakeStripe,
    database: Database,
    stripe_app: FastAPI,
) -> tuple[dict[str, Any], dict[str, Any]]:
    order, intent = await paying(shop, keys)
    payload = fake.event("payment_intent.succeeded", fake.succeed(intent["intent_id"]))
    assert (await deliver(shop, payload, fake.sign(payload))).status_code == 200
    assert await work(stripe_app, database) == 1
    return order, intent


async def refund(
    client: httpx.AsyncClient, headers: dict[str, str], order_id: str, amount: int
) -> httpx.Response:
    return await client.post(
        f"/v1/orders/{order_id}/refunds",
        headers=headers,
        json={"amount": amount, "reason": "one mug arrived broken"},
    )


async def test_partial_then_full_refunds_never_exceed_what_was_paid(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    order, intent = await paid(shop, keys, fake, database, stripe_app)
    first = await refund(shop, keys.staff, order["id"], 1000)
    assert first.status_code == 201, first.text
    assert (first.json()["status"], first.json()["amount"]) == ("succeeded", 1000)
    [made] = fake.refunds.values()
    assert (made["payment_intent"], made["amount"]) == (intent["intent_id"], 1000)
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert (detail["payment_status"], detail["amount_refunded"]) == ("partially_refunded", 1000)

    assert_problem(
        await refund(shop, keys.staff, order["id"], 1931),
        422,
        "refund-exceeds-paid",
        refundable=1930,
    )
    rest = await refund(shop, keys.admin, order["id"], 1930)
    assert rest.json()["status"] == "succeeded"
    assert_problem(
        await refund(shop, keys.staff, order["id"], 1), 422, "refund-exceeds-paid", refundable=0
    )
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert (detail["payment_status"], detail["amount_refunded"]) == ("refunded", 2930)
    assert [r["amount"] for r in detail["refunds"]] == [1000, 1930]
    assert sum(r["amount"] for r in fake.refunds.values()) == 2930
    assert len(await told(shop, keys, "refund.succeeded")) == 2
    for role in ("customer", "service"):
        assert_problem(await refund(shop, keys.for_role(role), order["id"], 1), 403, "forbidden")


async def test_two_concurrent_refunds_that_together_exceed_the_payment_one_is_refused(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    order, _ = await paid(shop, keys, fake, database, stripe_app)
    answers = await asyncio.gather(
        refund(shop, keys.staff, order["id"], 2000), refund(shop, keys.admin, order["id"], 2000)
    )
    assert sorted(a.status_code for a in answers) == [201, 422]
    refused = next(a for a in answers if a.status_code == 422)
    assert_problem(refused, 422, "refund-exceeds-paid", refundable=930)
    assert [r["amount"] for r in fake.refunds.values()] == [2000]


async def test_a_retried_refund_is_made_once_with_a_derived_key(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    order, _ = await paid(shop, keys, fake, database, stripe_app)
    headers = {**keys.staff, "Idempotency-Key": "refund-broken-mug-1"}
    first = await refund(shop, headers, order["id"], 1290)
    again = await refund(shop, headers, order["id"], 1290)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    [call] = fake.calls_to("POST", "/v1/refunds")
    assert call.idempotency_key is not None
    assert call.idempotency_key.startswith("sf-")
    assert "refund-broken-mug-1" not in call.idempotency_key
    assert len(fake.refunds) == 1


async def test_a_refund_stripe_cannot_take_now_is_made_later_by_the_worker(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    order, _ = await paid(shop, keys, fake, database, stripe_app)
    fake.fail_next("/v1/refunds", ("status", 500))
    pending = await refund(shop, keys.staff, order["id"], 1290)
    assert pending.status_code == 201, pending.text
    assert pending.json()["status"] == "pending"
    assert fake.refunds == {}
    # Counted already: nothing more than the rest can be refunded meanwhile.
    assert_problem(
        await refund(shop, keys.staff, order["id"], 1700),
        422,
        "refund-exceeds-paid",
        refundable=1640,
    )
    assert await refunds.send_pending(database, stripe_app.state.checkout.gateway) == 1
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert [r["status"] for r in detail["refunds"]] == ["succeeded"]
    assert [r["amount"] for r in fake.refunds.values()] == [1290]
    assert await refunds.send_pending(database, stripe_app.state.checkout.gateway) == 0


async def test_cancelling_a_paid_partly_shipped_order_refunds_what_did_not_ship(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    order, intent = await paid(shop, keys, fake, database, stripe_app)
    assert (await ship(shop, keys, order["id"], (MUG, 1))).status_code == 201
    cancelled = await cancel(shop, keys.staff, order["id"])
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["amount_refunded"] == 1290 + 350
    await refunds.send_pending(database, stripe_app.state.checkout.gateway)
    [made] = fake.refunds.values()
    assert (made["payment_intent"], made["amount"]) == (intent["intent_id"], 1640)
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    [owed] = detail["refunds"]
    assert (owed["status"], owed["amount"]) == ("succeeded", 1640)
    assert owed["reason"].startswith("order cancelled")

    # Nothing shipped: everything paid goes back.
    whole, _ = await paid(shop, keys, fake, database, stripe_app)
    assert (await cancel(shop, keys.customer, whole["id"])).json()["amount_refunded"] == 2930


# --- unpaid orders past the timeout ----------------------------------------------------


async def expire(stripe_app: FastAPI, database: Database) -> int:
    return await expiry.expire_unpaid(
        database,
        stripe_app.state.checkout.gateway,
        unpaid_for=timedelta(0),
        lease=timedelta(seconds=10),
    )


async def available(client: httpx.AsyncClient, keys: Keys, sku: str) -> int:
    body = (await client.get(f"/v1/inventory/{sku}", headers=keys.staff)).json()
    found: int = body["available"]
    return found


async def test_an_unpaid_order_past_the_timeout_is_cancelled_with_its_intent(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    order, intent = await paying(shop, keys)
    never_asked = await unpaid(shop, keys)
    assert await available(shop, keys, MUG) == 16
    assert await expire(stripe_app, database) == 2
    for placed in (order, never_asked):
        detail = (await shop.get(f"/v1/orders/{placed['id']}", headers=keys.staff)).json()
        assert (detail["status"], detail["cancel_reason"]) == (
            "cancelled",
            "payment not received in time",
        )
    assert await available(shop, keys, MUG) == 20
    assert fake.intents[intent["intent_id"]]["status"] == "canceled"
    cancelled = await told(shop, keys, "order.cancelled")
    assert {e["data"]["object"]["id"] for e in cancelled} == {order["id"], never_asked["id"]}
    # Nobody can pay it any more.
    assert_problem(
        await intent_for(shop, keys.customer, order["id"]), 409, "invalid-state-transition"
    )


async def test_an_intent_that_succeeded_just_before_expiry_confirms_the_order(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    order, intent = await paying(shop, keys)
    fake.succeed(intent["intent_id"])  # paid; its webhook has not arrived yet
    assert await expire(stripe_app, database) == 0
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert (detail["status"], detail["amount_paid"]) == ("confirmed", 2930)
    assert fake.calls_to("POST", f"/v1/payment_intents/{intent['intent_id']}/cancel") == []
    assert await available(shop, keys, MUG) == 18


async def test_an_intent_still_processing_or_stripe_unreachable_makes_the_order_wait(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    order, intent = await paying(shop, keys)
    fake.set_status(intent["intent_id"], "processing")
    assert await expire(stripe_app, database) == 0
    fake.set_status(intent["intent_id"], "requires_payment_method")
    fake.fail_next(f"/v1/payment_intents/{intent['intent_id']}", ("status", 503))
    assert await expire(stripe_app, database) == 0
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert detail["status"] == "pending_payment"
    assert fake.intents[intent["intent_id"]]["status"] == "requires_payment_method"
    # Next round, Stripe answers and nothing was paid.
    assert await expire(stripe_app, database) == 1


async def test_the_expiry_leaves_an_order_whose_intent_call_holds_the_lease(
    shop: httpx.AsyncClient, keys: Keys, database: Database, stripe_app: FastAPI
) -> None:
    order = await unpaid(shop, keys)
    async with database.transaction() as session:
        await session.execute(
            update(Order)
            .where(Order.id == order["id"])
            .values(payment_lease_until=datetime.now(UTC) + timedelta(minutes=1))
        )
    assert await expire(stripe_app, database) == 0
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert detail["status"] == "pending_payment"


# --- reconciliation ----------------------------------------------------------------------


async def reconcile_by_command(database_url: str, fake: FakeStripe, *arguments: str) -> Result:
    def invoke() -> Result:
        return CliRunner().invoke(
            cli,
            ["payments", "reconcile", *arguments],
            env={
                "STOCKFLOW_DATABASE_URL": database_url,
                "STOCKFLOW_PAYMENTS": "stripe",
                "STOCKFLOW_STRIPE_SECRET_KEY": SECRET_KEY,
                "STOCKFLOW_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "STOCKFLOW_STRIPE_API_BASE": fake.url,
                "COLUMNS": "200",  # an operator's terminal: the table's rows on one line
            },
        )

    return await asyncio.to_thread(invoke)


async def test_reconcile_finds_a_payment_whose_webhook_never_came_and_confirms_it(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database_url: str
) -> None:
    missed, intent = await paying(shop, keys)
    fine, _ = await paying(shop, keys)
    fake.succeed(intent["intent_id"])  # paid at Stripe; the webhook is lost

    found = await reconcile_by_command(database_url, fake)
    assert found.exit_code == 1, found.output
    assert intent["intent_id"] in found.output
    assert "requires_payment" in found.output
    detail = (await shop.get(f"/v1/orders/{missed['id']}", headers=keys.staff)).json()
    assert detail["status"] == "pending_payment"

    repaired = await reconcile_by_command(database_url, fake, "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert "1 difference(s) repaired" in repaired.output
    detail = (await shop.get(f"/v1/orders/{missed['id']}", headers=keys.staff)).json()
    assert (detail["status"], detail["amount_paid"]) == ("confirmed", 2930)
    untouched = (await shop.get(f"/v1/orders/{fine['id']}", headers=keys.staff)).json()
    assert untouched["status"] == "pending_payment"
    [confirmed] = await told(shop, keys, "order.confirmed")
    assert confirmed["data"]["object"]["id"] == missed["id"]

    # Another system's PaymentIntents on the same account are not this service's business.
    fake.succeed(fake._new_intent({"amount": "100", "currency": "eur"})["id"])
    fake._new_intent({"amount": "100", "currency": "eur", "metadata[order_id]": "ord_elsewhere"})
    again = await reconcile_by_command(database_url, fake)
    assert again.exit_code == 0, again.output
    assert "no difference" in again.output


async def test_a_refund_made_in_stripes_dashboard_is_recorded_once_the_unsent_one_is_settled(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    order, intent = await paid(shop, keys, fake, database, stripe_app)
    fake.fail_next("/v1/refunds", ("status", 500))
    unsent = await refund(shop, keys.staff, order["id"], 1290)
    assert unsent.json()["status"] == "pending"

    async def charge_refunded(amount_refunded: int) -> None:
        charge = {
            "id": f"ch_{intent['intent_id']}",
            "object": "charge",
            "amount": 2930,
            "amount_refunded": amount_refunded,
            "refunded": False,
            "payment_intent": intent["intent_id"],
        }
        payload = fake.event("charge.refunded", charge)
        assert (await deliver(shop, payload, fake.sign(payload))).status_code == 200
        assert await work(stripe_app, database) == 1

    # 500 refunded in the dashboard while ours waits: ours may have been made (its answer
    # lost), so nothing is recorded yet rather than anything twice.
    await charge_refunded(500)
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert [(r["amount"], r["status"]) for r in detail["refunds"]] == [(1290, "pending")]
    assert await refunds.send_pending(database, stripe_app.state.checkout.gateway) == 1
    await charge_refunded(1790)
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert [(r["amount"], r["status"], r["reason"]) for r in detail["refunds"]] == [
        (1290, "succeeded", "one mug arrived broken"),
        (500, "succeeded", "refunded in Stripe"),
    ]
    assert detail["amount_refunded"] == 1790
    assert sorted(
        e["data"]["object"]["amount"] for e in await told(shop, keys, "refund.succeeded")
    ) == [
        500,
        1290,
    ]


async def test_a_refund_whose_answer_was_lost_is_counted_once(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    order, intent = await paid(shop, keys, fake, database, stripe_app)
    fake.fail_next("/v1/refunds", ("slow", 2.0))  # made at Stripe, answered too late
    lost = await refund(shop, keys.staff, order["id"], 1290)
    assert lost.json()["status"] == "pending"
    charge = {
        "id": f"ch_{intent['intent_id']}",
        "object": "charge",
        "amount": 2930,
        "amount_refunded": 1290,
        "refunded": False,
        "payment_intent": intent["intent_id"],
    }
    payload = fake.event("charge.refunded", charge)
    assert (await deliver(shop, payload, fake.sign(payload))).status_code == 200
    assert await work(stripe_app, database) == 1
    await asyncio.sleep(1.5)  # Stripe has finished the first request by now
    assert await refunds.send_pending(database, stripe_app.state.checkout.gateway) == 1
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert [(r["amount"], r["status"]) for r in detail["refunds"]] == [(1290, "succeeded")]
    assert detail["amount_refunded"] == 1290
    assert len(fake.refunds) == 1


async def test_a_refund_key_reused_for_another_refund_is_refused_and_keys_are_per_caller(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    order, _ = await paid(shop, keys, fake, database, stripe_app)
    staff = {**keys.staff, "Idempotency-Key": "refund-1"}
    admin = {**keys.admin, "Idempotency-Key": "refund-1"}
    assert (await refund(shop, staff, order["id"], 100)).status_code == 201
    assert_problem(await refund(shop, staff, order["id"], 200), 422, "idempotency-key-reused")
    # The same key from another caller is another request: another refund, another key.
    assert (await refund(shop, admin, order["id"], 100)).status_code == 201
    sent = [c.idempotency_key for c in fake.calls_to("POST", "/v1/refunds")]
    assert len(sent) == len(set(sent)) == 2
    assert len(fake.refunds) == 2


async def test_a_success_applied_while_the_intent_call_still_waits_for_stripe_confirms_it(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    order = await unpaid(shop, keys)
    fake.fail_next("/v1/payment_intents", ("slow", 0.6))  # answered late, within the timeout
    call = asyncio.create_task(intent_for(shop, keys.customer, order["id"]))
    async with asyncio.timeout(5):
        while not fake.intents:
            await asyncio.sleep(0.01)
    [intent_id] = fake.intents
    payload = fake.event("payment_intent.succeeded", fake.succeed(intent_id))
    assert (await deliver(shop, payload, fake.sign(payload))).status_code == 200
    assert await work(stripe_app, database) == 1
    assert not call.done(), "the storefront's call was still waiting for Stripe"
    answered = await call
    assert answered.status_code == 200, answered.text
    assert answered.json()["intent_id"] == intent_id
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert (detail["status"], detail["amount_paid"]) == ("confirmed", 2930)
    assert [p["intent_id"] for p in detail["payments"]] == [intent_id]


async def test_money_taken_after_the_order_was_cancelled_goes_back(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    order, intent = await paying(shop, keys)
    assert (await cancel(shop, keys.customer, order["id"])).status_code == 200
    # The customer's payment page was still open, and they paid.
    payload = fake.event("payment_intent.succeeded", fake.succeed(intent["intent_id"]))
    assert (await deliver(shop, payload, fake.sign(payload))).status_code == 200
    assert await work(stripe_app, database) == 1
    assert await refunds.send_pending(database, stripe_app.state.checkout.gateway) == 1
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert (detail["status"], detail["amount_paid"], detail["amount_refunded"]) == (
        "cancelled",
        2930,
        2930,
    )
    [back] = detail["refunds"]
    assert (back["status"], back["reason"]) == ("succeeded", "paid after the order was cancelled")
    assert [r["amount"] for r in fake.refunds.values()] == [2930]


async def test_an_order_cancelled_while_its_intent_was_created_gets_no_payable_intent(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe
) -> None:
    order = await unpaid(shop, keys)
    fake.fail_next("/v1/payment_intents", ("slow", 0.6))
    call = asyncio.create_task(intent_for(shop, keys.customer, order["id"]))
    async with asyncio.timeout(5):
        while not fake.intents:
            await asyncio.sleep(0.01)
    assert (await cancel(shop, keys.customer, order["id"])).status_code == 200
    assert_problem(await call, 409, "invalid-state-transition", from_status="cancelled")
    [intent] = fake.intents.values()
    assert intent["status"] == "canceled"


async def test_expiry_cancels_an_order_whose_intent_stripe_does_not_know_and_waits_on_bad_keys(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    locked_out, intent = await paying(shop, keys)
    fake.fail_next(f"/v1/payment_intents/{intent['intent_id']}", ("status", 401))
    gone, other = await paying(shop, keys)
    del fake.intents[other["intent_id"]]  # made with keys of another account, say
    assert await expire(stripe_app, database) == 1
    statuses = [
        (await shop.get(f"/v1/orders/{o['id']}", headers=keys.staff)).json()["status"]
        for o in (locked_out, gone)
    ]
    assert statuses == ["pending_payment", "cancelled"]
    assert await expire(stripe_app, database) == 1  # the key works again


async def test_cancelling_shares_a_discount_out_over_the_unshipped_units(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe, database: Database, stripe_app: FastAPI
) -> None:
    # The storefront grants the discount (a customer key may not).
    placed = await place(
        shop, keys.service, keys.customer_id, (MUG, 2), (COASTER, 1), discount_amount=930
    )
    order = placed.json()
    assert order["total"] == 2000
    intent = (await intent_for(shop, keys.customer, order["id"])).json()
    payload = fake.event("payment_intent.succeeded", fake.succeed(intent["intent_id"]))
    assert (await deliver(shop, payload, fake.sign(payload))).status_code == 200
    await work(stripe_app, database)
    assert (await ship(shop, keys, order["id"], (MUG, 1))).status_code == 201
    cancelled = await cancel(shop, keys.staff, order["id"])
    # (1290 + 350) of 2930 in goods, charged 2000 for them: 1640 * 2000 // 2930.
    assert cancelled.json()["amount_refunded"] == 1119


async def test_a_payment_intent_stripe_refuses_outright_is_a_422_and_changes_nothing(
    shop: httpx.AsyncClient, keys: Keys, fake: FakeStripe
) -> None:
    order = await unpaid(shop, keys)
    fake.fail_next("/v1/payment_intents", ("status", 400))
    refused = await intent_for(shop, keys.customer, order["id"])
    assert_problem(refused, 422, "payment-refused")
    assert "Retry-After" not in refused.headers
    detail = (await shop.get(f"/v1/orders/{order['id']}", headers=keys.staff)).json()
    assert (detail["status"], detail["payments"]) == ("pending_payment", [])
    # The lease was given back: the next request asks Stripe again at once.
    assert (await intent_for(shop, keys.customer, order["id"])).status_code == 200
