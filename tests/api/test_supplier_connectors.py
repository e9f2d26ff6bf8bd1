"""Purchase orders reach suppliers through their connectors (a signed webhook, or an
e-mail with a CSV), customers get their notices by e-mail, and suppliers answer on their
signed inbound endpoint; against a real receiver and a real SMTP server on loopback."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import Message
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from standardwebhooks import Webhook

from stockflow.adapters.mail import SmtpMailer, SmtpSettings
from stockflow.adapters.webhook_http import HttpWebhookSender
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.db.models import Delivery
from stockflow.webhooks.secrets import SecretBox
from stockflow.workers import maintenance
from stockflow.workers.relay import Relay
from tests.assertions import assert_problem
from tests.backorders import adjust, order, place, purchase_order, purchase_orders
from tests.conftest import Keys
from tests.mailbox import Mailbox, running_mailbox
from tests.receiver import running_receiver

SKU = "MUG-SUP"


@pytest.fixture
def mailbox() -> Any:
    with running_mailbox() as box:
        yield box


@pytest.fixture
async def relay(settings: Settings, database: Database, mailbox: Mailbox) -> AsyncIterator[Relay]:
    relay = Relay(
        database,
        HttpWebhookSender(timeout_seconds=5, allow_private=True),
        SecretBox(settings.secret_key.get_secret_value()),
        mailer=SmtpMailer(
            SmtpSettings(
                host="127.0.0.1",
                port=mailbox.port,
                username=None,
                password=None,
                starttls=False,
                use_tls=False,
                timeout_seconds=5,
                sender="Stockflow <stock@shop.example>",
            )
        ),
    )
    yield relay
    await relay.aclose()


async def supplier(
    client: httpx.AsyncClient, keys: Keys, connector: dict[str, str]
) -> dict[str, Any]:
    created = await client.post(
        "/v1/suppliers",
        json={"name": "Stoneware Bros.", "lead_time_days": 5, "connector": connector},
        headers=keys.staff,
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def secret_of(client: httpx.AsyncClient, keys: Keys, supplier_id: str) -> str:
    issued = await client.post(f"/v1/suppliers/{supplier_id}/signing-secret", headers=keys.staff)
    assert issued.status_code == 200, issued.text
    secret: str = issued.json()["secret"]
    return secret


async def backorder_product(
    client: httpx.AsyncClient, keys: Keys, supplier_id: str, *, stock: int = 0
) -> None:
    created = await client.post(
        "/v1/products",
        json={
            "sku": SKU,
            "name": "Mug",
            "unit_price": 1290,
            "currency": "EUR",
            "shortage_policy": "backorder",
            "suppliers": [
                {
                    "supplier_id": supplier_id,
                    "supplier_sku": "SB-MUG-7",
                    "cost_price": 540,
                    "currency": "EUR",
                }
            ],
        },
        headers=keys.staff,
    )
    assert created.status_code == 201, created.text
    if stock:
        await adjust(client, keys, SKU, stock)


async def test_a_submitted_po_reaches_a_webhook_supplier_signed_with_its_secret(
    client: httpx.AsyncClient, dev_app: FastAPI, keys: Keys, relay: Relay
) -> None:
    async with running_receiver() as receiver:
        sup = await supplier(client, keys, {"type": "webhook", "url": receiver.url})
        secret = await secret_of(client, keys, sup["id"])
        await backorder_product(client, keys, sup["id"])
        await place(client, keys, {SKU: 5})
        (po,) = await purchase_orders(client, keys)
        await relay.run_once()
        (request,) = await receiver.wait_for(1)
    body = Webhook(secret).verify(request.body, request.headers)
    assert body["type"] == "purchase_order.submitted"
    assert body["data"]["object"] == po
    assert body["data"]["object"]["lines"][0]["supplier_sku"] == "SB-MUG-7"


async def test_a_submitted_po_reaches_an_email_supplier_with_its_lines_as_csv(
    client: httpx.AsyncClient, keys: Keys, relay: Relay, mailbox: Mailbox
) -> None:
    sup = await supplier(client, keys, {"type": "email", "to": "orders@stoneware.example"})
    await backorder_product(client, keys, sup["id"])
    await place(client, keys, {SKU: 5})
    (po,) = await purchase_orders(client, keys)
    await relay.run_once()

    (mail,) = [(to, m) for to, m in mailbox.received if "orders@stoneware.example" in to]
    message = mail[1]
    assert message["Subject"] == f"Purchase order {po['id']}"
    assert message["From"] == "Stockflow <stock@shop.example>"
    parts = list(message.walk())
    text = next(p for p in parts if p.get_content_type() == "text/plain")
    assert "SB-MUG-7" in decoded(text)
    attached = next(p for p in parts if p.get_filename() == f"{po['id']}.csv")
    rows = list(csv.DictReader(io.StringIO(decoded(attached))))
    assert rows == [
        {
            "line": "1",
            "supplier_sku": "SB-MUG-7",
            "sku": SKU,
            "quantity": str(po["lines"][0]["quantity"]),
            "unit_cost": "5.40",
            "currency": "EUR",
        }
    ]


async def test_a_manual_supplier_is_sent_nothing(
    client: httpx.AsyncClient, keys: Keys, relay: Relay, mailbox: Mailbox, database: Database
) -> None:
    sup = await supplier(client, keys, {"type": "manual"})
    await backorder_product(client, keys, sup["id"])
    await place(client, keys, {SKU: 5})
    await relay.run_once()
    async with database.transaction(write=False) as session:
        targets = (await session.scalars(select(Delivery.target_type))).all()
    assert "supplier" not in targets
    assert mailbox.received == []  # the default customer has no address either


async def test_customers_get_a_confirmation_and_a_ready_to_ship_notice(
    client: httpx.AsyncClient, keys: Keys, relay: Relay, mailbox: Mailbox
) -> None:
    customer = await client.post(
        "/v1/customers", json={"name": "Ada", "email": "ada@example.com"}, headers=keys.staff
    )
    customer_id = customer.json()["id"]
    sup = await supplier(client, keys, {"type": "manual"})
    await backorder_product(client, keys, sup["id"], stock=1)
    placed = await place(client, keys, {SKU: 3}, customer_id=customer_id)
    await relay.run_once()
    (po,) = await purchase_orders(client, keys)
    received = await client.post(
        f"/v1/purchase-orders/{po['id']}/receipts",
        json={"lines": [{"sku": SKU, "quantity": 2}]},
        headers=keys.staff,
    )
    assert received.status_code == 201
    await relay.run_once()

    to_ada = [m for to, m in mailbox.received if to == ["ada@example.com"]]
    assert [m["Subject"] for m in to_ada] == [
        f"Your order {placed['id']}",
        f"Your order {placed['id']} is ready to ship",
    ]
    confirmation = decoded(to_ada[0])
    assert "Hello Ada" in confirmation
    assert "2 expected by" in confirmation
    assert (await order(client, keys, placed["id"]))["fulfilment"] == "ready_to_ship"


def decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def signed(secret: str, message_id: str, body: dict[str, Any]) -> tuple[str, dict[str, str]]:
    text = json.dumps(body)
    now = datetime.now(UTC)
    return text, {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, text),
        "content-type": "application/json",
    }


async def test_a_signed_acknowledgement_sets_the_dates_once_and_a_bad_signature_is_refused(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    sup = await supplier(client, keys, {"type": "manual"})
    secret = await secret_of(client, keys, sup["id"])
    await backorder_product(client, keys, sup["id"])
    placed = await place(client, keys, {SKU: 4})
    (po,) = await purchase_orders(client, keys)
    path = f"/v1/suppliers/{sup['id']}/inbound"
    ack = {
        "type": "purchase_order.acknowledged",
        "purchase_order_id": po["id"],
        "expected_delivery_date": "2030-03-14",
    }
    body, headers = signed(secret, "msg_ack_1", ack)
    for duplicate in (False, True):
        response = await client.post(path, content=body, headers=headers)
        assert response.status_code == 202, response.text
        assert response.json() == {"id": "msg_ack_1", "duplicate": duplicate}
    assert await maintenance.apply_supplier_messages(database) == 1
    assert await maintenance.apply_supplier_messages(database) == 0

    assert (await purchase_order(client, keys, po["id"]))["expected_delivery_date"] == "2030-03-14"
    line = (await order(client, keys, placed["id"]))["lines"][0]
    assert line["expected_available_date"] == "2030-03-14"
    acknowledged = await client.get(
        "/v1/events",
        params={"object_id": po["id"], "type": "purchase_order.acknowledged"},
        headers=keys.staff,
    )
    assert len(acknowledged.json()["data"]) == 1

    tampered = body.replace("2030-03-14", "2030-01-01")
    refused = await client.post(path, content=tampered, headers=headers)
    assert_problem(refused, 401, "invalid-signature")
    other = await client.post(
        path, content=body, headers=signed("whsec_" + "A" * 43 + "=", "msg_ack_2", ack)[1]
    )
    assert_problem(other, 401, "invalid-signature")
    unknown = await client.post(
        "/v1/suppliers/sup_01KB3J5Q2W8Z6Y4X0V9T7S5R3P/inbound", content=body, headers=headers
    )
    assert_problem(unknown, 401, "invalid-signature")
    unsigned = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert_problem(unsigned, 401, "invalid-signature")
    malformed_body, malformed_headers = signed(secret, "msg_bad", {"type": "purchase_order.lost"})
    malformed = await client.post(path, content=malformed_body, headers=malformed_headers)
    assert malformed.status_code == 422
    garbled = await client.post(
        path, content=body, headers={**headers, "webhook-signature": "v1-no-comma"}
    )
    assert_problem(garbled, 401, "invalid-signature")
    not_utf8 = await client.post(path, content=b"\xff\xfe{}", headers=headers)
    assert_problem(not_utf8, 401, "invalid-signature")
    long_body, long_headers = signed(secret, "m" * 201, ack)
    long_id = await client.post(path, content=long_body, headers=long_headers)
    assert_problem(long_id, 422, "validation-error")


async def test_a_message_about_another_suppliers_po_is_kept_but_not_applied(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    owner = await supplier(client, keys, {"type": "manual"})
    intruder = await supplier(client, keys, {"type": "manual"})
    secret = await secret_of(client, keys, intruder["id"])
    await backorder_product(client, keys, owner["id"])
    await place(client, keys, {SKU: 4})
    (po,) = await purchase_orders(client, keys)
    body, headers = signed(
        secret,
        "msg_x",
        {
            "type": "purchase_order.acknowledged",
            "purchase_order_id": po["id"],
            "expected_delivery_date": "2030-03-14",
        },
    )
    response = await client.post(
        f"/v1/suppliers/{intruder['id']}/inbound", content=body, headers=headers
    )
    assert response.status_code == 202
    assert await maintenance.apply_supplier_messages(database) == 1
    assert (await purchase_order(client, keys, po["id"]))["expected_delivery_date"] is None


async def test_a_webhook_supplier_url_must_be_safe_outside_development_mode(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    response = await client.post(
        "/v1/suppliers",
        json={
            "name": "Sneaky",
            "lead_time_days": 1,
            "connector": {"type": "webhook", "url": "https://169.254.169.254/latest"},
        },
        headers=keys.staff,
    )
    assert_problem(response, 422, "unsafe-webhook-url")
    assert response.json()["errors"][0]["location"] == "body.connector.url"


async def test_a_po_for_a_supplier_switched_to_manual_is_dead_at_once(
    client: httpx.AsyncClient, dev_app: FastAPI, keys: Keys, relay: Relay
) -> None:
    async with running_receiver() as receiver:
        sup = await supplier(client, keys, {"type": "webhook", "url": receiver.url})
        await secret_of(client, keys, sup["id"])
        await backorder_product(client, keys, sup["id"])
        await place(client, keys, {SKU: 5})
        assert await relay.dispatch_once() > 0  # the PO is on its way to the webhook...
        changed = await client.patch(  # ...when the supplier is switched to manual
            f"/v1/suppliers/{sup['id']}", json={"connector": {"type": "manual"}}, headers=keys.staff
        )
        assert changed.status_code == 200, changed.text
        await relay.run_once()
        assert receiver.received == []
    async with dev_app.state.database.transaction(write=False) as session:
        (delivery,) = (
            await session.scalars(select(Delivery).where(Delivery.target_type == "supplier"))
        ).all()
    assert delivery.status == "dead"
    assert delivery.last_error == "the supplier's connector is now manual"
