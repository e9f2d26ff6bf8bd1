"""Webhook endpoints and deliveries end to end: a real receiver on loopback, the relay run
step by step on a clock the test controls, every signature checked with the
``standardwebhooks`` library."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks import Webhook, WebhookVerificationError

from stockflow.adapters.webhook_http import HttpWebhookSender
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.webhooks import schedule
from stockflow.webhooks.addresses import system_resolver
from stockflow.webhooks.secrets import SecretBox
from stockflow.webhooks.service import WebhookConfig
from stockflow.workers.relay import Relay, RelaySettings
from tests.assertions import assert_problem
from tests.backorders import adjust, place
from tests.conftest import Keys
from tests.receiver import Answer, Received, running_receiver

SKU = "MUG-HOOK"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def relay(settings: Settings, database: Database, clock: Clock) -> AsyncIterator[Relay]:
    relay = Relay(
        database,
        HttpWebhookSender(timeout_seconds=5, allow_private=True),
        SecretBox(settings.secret_key.get_secret_value()),
        settings=RelaySettings(lease_seconds=30),
        clock=clock,
        jitter=lambda: 1.0,
    )
    yield relay
    await relay.aclose()


async def register(client: httpx.AsyncClient, keys: Keys, url: str, **body: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/webhook-endpoints", json={"url": url, **body}, headers=keys.admin
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def product(client: httpx.AsyncClient, keys: Keys, stock: int = 1000) -> None:
    response = await client.post(
        "/v1/products",
        json={"sku": SKU, "name": SKU, "unit_price": 1000, "currency": "EUR"},
        headers=keys.staff,
    )
    assert response.status_code == 201, response.text
    await adjust(client, keys, SKU, stock)


def verified(request: Received, secret: str) -> dict[str, Any]:
    body: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return body


async def deliveries(
    client: httpx.AsyncClient, keys: Keys, endpoint_id: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/v1/webhook-endpoints/{endpoint_id}/deliveries",
        params={"limit": 100},
        headers=keys.admin,
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


async def test_events_arrive_signed_and_the_body_is_the_event(
    client: httpx.AsyncClient, dev_app: FastAPI, keys: Keys, relay: Relay
) -> None:
    async with running_receiver() as receiver:
        endpoint = await register(client, keys, receiver.url, events=["order.created"])
        assert endpoint["secret"].startswith("whsec_")
        shown = await client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=keys.admin)
        assert "secret" not in shown.json()
        await product(client, keys)
        placed = [await place(client, keys, {SKU: 1}) for _ in range(3)]
        assert await relay.run_once() == 3

        got = await receiver.wait_for(3)
    bodies = [verified(request, endpoint["secret"]) for request in got]
    assert sorted(body["data"]["object"]["id"] for body in bodies) == sorted(
        order["id"] for order in placed
    )
    for request, body in zip(got, bodies, strict=True):
        assert request.headers["webhook-id"] == body["id"]
        event = await client.get(f"/v1/events/{body['id']}", headers=keys.staff)
        assert json.loads(request.body) == event.json()
    # Subscribed to order.created only: the stock adjustment was not sent.
    assert {body["type"] for body in bodies} == {"order.created"}
    assert all(d["status"] == "delivered" for d in await deliveries(client, keys, endpoint["id"]))


async def test_a_tampered_body_an_old_timestamp_or_another_secret_fail_verification(
    client: httpx.AsyncClient, dev_app: FastAPI, keys: Keys, relay: Relay, clock: Clock
) -> None:
    async with running_receiver() as receiver:
        endpoint = await register(client, keys, receiver.url)
        other = await register(client, keys, receiver.url)
        await product(client, keys)
        clock.advance(minutes=-6)  # this attempt is signed as of six minutes ago
        await relay.run_once()
        stale = await receiver.wait_for(2)
        clock.advance(minutes=6)
        await place(client, keys, {SKU: 1})
        await relay.run_once()
        fresh = (await receiver.wait_for(4))[2:]
    for request in stale:
        with pytest.raises(WebhookVerificationError, match="too old"):
            Webhook(endpoint["secret"]).verify(request.body, request.headers)
    mine = [r for r in fresh if _signed_by(r, endpoint["secret"])]
    theirs = [r for r in fresh if _signed_by(r, other["secret"])]
    assert len(mine) == len(theirs) == 1
    verified(mine[0], endpoint["secret"])
    with pytest.raises(WebhookVerificationError):
        Webhook(other["secret"]).verify(mine[0].body, mine[0].headers)
    tampered = mine[0].body.replace('"quantity":1', '"quantity":9')
    assert tampered != mine[0].body
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint["secret"]).verify(tampered, mine[0].headers)


def _signed_by(request: Received, secret: str) -> bool:
    try:
        Webhook(secret).verify(request.body, request.headers)
    except WebhookVerificationError:
        return False
    return True


async def test_failures_retry_on_the_schedule_until_dead_then_a_manual_retry_delivers(
    client: httpx.AsyncClient, dev_app: FastAPI, keys: Keys, relay: Relay, clock: Clock
) -> None:
    answers = {"status": 500}

    async def script(_: Received) -> Answer:
        return answers["status"], {}

    async with running_receiver(script) as receiver:
        endpoint = await register(client, keys, receiver.url, events=["stock.adjusted"])
        await product(client, keys)
        start = clock.now
        assert await relay.run_once() == 1
        waited = timedelta(0)
        for attempt, backoff in enumerate(schedule.BACKOFF_SECONDS, start=1):
            (delivery,) = await deliveries(client, keys, endpoint["id"])
            assert delivery["attempt_count"] == attempt
            waited += timedelta(seconds=backoff)
            assert delivery["status"] == "pending"
            assert _time(delivery["next_attempt_at"]) == start + waited
            clock.now = start + waited - timedelta(seconds=1)
            assert await relay.run_once() == 0  # not due yet
            clock.now = start + waited
            assert await relay.run_once() == 1
        (dead,) = await deliveries(client, keys, endpoint["id"])
        assert dead["status"] == "dead"
        assert dead["attempt_count"] == schedule.MAX_ATTEMPTS
        assert [a["status_code"] for a in dead["attempts"]] == [500] * schedule.MAX_ATTEMPTS
        assert len(receiver.received) == schedule.MAX_ATTEMPTS
        assert waited == timedelta(seconds=sum(schedule.BACKOFF_SECONDS))
        assert timedelta(days=2.5) < waited < timedelta(days=3.5)
        clock.advance(days=30)
        assert await relay.run_once() == 0  # dead stays dead

        answers["status"] = 200
        retried = await client.post(
            f"/v1/webhook-deliveries/{dead['id']}/retry", headers=keys.admin
        )
        assert retried.status_code == 202, retried.text
        assert retried.json()["status"] == "pending"
        assert await relay.run_once() == 1
    (delivered,) = await deliveries(client, keys, endpoint["id"])
    assert delivered["status"] == "delivered"
    assert delivered["attempts"][-1]["status_code"] == 200
    ids = {request.headers["webhook-id"] for request in receiver.received}
    assert len(ids) == 1  # the same webhook-id on every attempt


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_retry_after_is_honoured_on_429_and_503_never_sooner_than_the_schedule(
    client: httpx.AsyncClient, dev_app: FastAPI, keys: Keys, relay: Relay, clock: Clock
) -> None:
    answers = [
        (429, {"retry-after": "100"}),
        (503, {"retry-after": "3600"}),
        (429, {"retry-after": "1"}),
        (204, {}),
    ]

    async def script(_: Received) -> Answer:
        return answers.pop(0)

    async with running_receiver(script) as receiver:
        endpoint = await register(client, keys, receiver.url)
        await product(client, keys)
        start = clock.now
        await relay.run_once()
        (delivery,) = await deliveries(client, keys, endpoint["id"])
        assert _time(delivery["next_attempt_at"]) == start + timedelta(seconds=100)
        clock.advance(seconds=100)
        await relay.run_once()
        (delivery,) = await deliveries(client, keys, endpoint["id"])
        assert _time(delivery["next_attempt_at"]) == clock.now + timedelta(hours=1)
        clock.advance(hours=1)
        await relay.run_once()
        # Asked for one second, it still waits the schedule's third step.
        (delivery,) = await deliveries(client, keys, endpoint["id"])
        third_step = timedelta(seconds=schedule.BACKOFF_SECONDS[2])
        assert _time(delivery["next_attempt_at"]) == clock.now + third_step
        clock.advance(seconds=third_step.total_seconds())
        await relay.run_once()
        assert len(receiver.received) == 4
    (delivery,) = await deliveries(client, keys, endpoint["id"])
    assert delivery["status"] == "delivered"


async def test_410_disables_the_endpoint_and_its_deliveries_wait_until_it_is_enabled(
    client: httpx.AsyncClient, dev_app: FastAPI, keys: Keys, relay: Relay, clock: Clock
) -> None:
    answers = [410]

    async def script(_: Received) -> Answer:
        return (answers.pop(0) if answers else 204), {}

    async with running_receiver(script) as receiver:
        endpoint = await register(client, keys, receiver.url)
        await product(client, keys)
        await relay.run_once()
        shown = await client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=keys.admin)
        assert shown.json()["enabled"] is False
        assert "410" in shown.json()["disabled_reason"]
        clock.advance(hours=1)
        await place(client, keys, {SKU: 1})
        assert await relay.run_once() == 0
        assert len(receiver.received) == 1

        enabled = await client.patch(
            f"/v1/webhook-endpoints/{endpoint['id']}", json={"enabled": True}, headers=keys.admin
        )
        assert enabled.json()["disabled_reason"] is None
        assert await relay.run_once() == 2
    # Nothing was lost while it was disabled: the adjustment, then what happened meanwhile.
    found = {d["event_type"]: d for d in await deliveries(client, keys, endpoint["id"])}
    assert set(found) == {"stock.adjusted", "order.created"}
    assert all(d["status"] == "delivered" for d in found.values())
    assert [a["status_code"] for a in found["stock.adjusted"]["attempts"]] == [410, 204]


async def test_an_objects_events_arrive_in_order_while_others_go_ahead(
    client: httpx.AsyncClient, dev_app: FastAPI, keys: Keys, relay: Relay, clock: Clock
) -> None:
    failing = {"first": True}

    async def script(request: Received) -> Answer:
        body = json.loads(request.body)
        if body["type"] == "order.created" and failing["first"]:
            failing["first"] = False
            return 500, {}
        return 204, {}

    async with running_receiver(script) as receiver:
        await register(client, keys, receiver.url, events=["order.created", "order.cancelled"])
        await product(client, keys)
        first = await place(client, keys, {SKU: 1})
        cancelled = await client.post(
            f"/v1/orders/{first['id']}/cancel", json={"reason": "test"}, headers=keys.staff
        )
        assert cancelled.status_code == 200
        await relay.run_once()
        # The created event failed; the cancellation waits behind it.
        assert [json.loads(r.body)["type"] for r in receiver.received] == ["order.created"]
        second = await place(client, keys, {SKU: 1})
        await relay.run_once()  # another order's events are not held up
        assert json.loads(receiver.received[-1].body)["data"]["object"]["id"] == second["id"]
        clock.advance(seconds=30)
        await relay.run_once()  # the retry goes out...
        await relay.run_once()  # ...and then the cancellation
    of_first = [
        json.loads(r.body)["type"]
        for r in receiver.received
        if json.loads(r.body)["data"]["object"]["id"] == first["id"]
    ]
    assert of_first == ["order.created", "order.created", "order.cancelled"]


async def test_a_rotated_secret_signs_beside_the_new_one(
    client: httpx.AsyncClient, dev_app: FastAPI, keys: Keys, relay: Relay, clock: Clock
) -> None:
    async with running_receiver() as receiver:
        endpoint = await register(client, keys, receiver.url)
        rotated = await client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=keys.admin
        )
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert new != endpoint["secret"]
        await product(client, keys)
        await relay.run_once()
        clock.advance(hours=25)
        await place(client, keys, {SKU: 1})
        await relay.run_once()
        during, after = await receiver.wait_for(2)
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    verified(during, endpoint["secret"])
    verified(during, new)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint["secret"]).verify(after.body, after.headers)


async def test_one_hanging_endpoint_does_not_hold_up_another(
    client: httpx.AsyncClient, dev_app: FastAPI, keys: Keys, relay: Relay
) -> None:
    release = asyncio.Event()

    async def hang(_: Received) -> Answer:
        await release.wait()
        return 204, {}

    async with running_receiver(hang) as slow, running_receiver() as fast:
        await register(client, keys, slow.url, events=["order.created"])
        await register(client, keys, fast.url, events=["order.created"])
        await product(client, keys)
        stop = asyncio.Event()
        running = asyncio.create_task(relay.run(stop))
        try:
            for _ in range(10):
                await place(client, keys, {SKU: 1})
            await fast.wait_for(10)
            assert not release.is_set()  # every one of them while the slow one still hung
            assert 1 <= len(slow.received) <= 4
        finally:
            release.set()
            stop.set()
            await running


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/",
        "https://127.0.0.1/",
        "https://10.0.0.1/",
        "https://169.254.169.254/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://2130706433/",
        "https://localhost/",
        "https://internal.example.com/",
        "https://user:pw@93.184.216.34/",
        "ftp://93.184.216.34/",
    ],
)
async def test_unsafe_urls_are_refused_outside_development_mode(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings, keys: Keys, url: str
) -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return {"internal.example.com": ["93.184.216.34", "10.9.8.7"]}.get(
            host, [] if host.endswith(".example.com") else await system_resolver(host, port)
        )

    app.state.webhooks = WebhookConfig(
        box=SecretBox(settings.secret_key.get_secret_value()),
        allow_private=False,
        resolver=resolver,
    )
    response = await client.post("/v1/webhook-endpoints", json={"url": url}, headers=keys.admin)
    assert_problem(response, 422, "unsafe-webhook-url")
    assert response.json()["errors"][0]["location"] == "body.url"


async def test_send_time_checks_the_address_connected_to_and_follows_no_redirect(
    client: httpx.AsyncClient, dev_app: FastAPI, keys: Keys, relay: Relay, settings: Settings
) -> None:
    # Registered while its name resolved to a public address; by send time it resolves to
    # loopback (DNS rebinding): nothing is sent.
    answers = {"public.example.com": ["93.184.216.34"]}

    async def resolver(host: str, port: int) -> list[str]:
        return answers[host]

    async with running_receiver() as receiver:
        dev_app.state.webhooks = WebhookConfig(
            box=SecretBox(settings.secret_key.get_secret_value()),
            allow_private=False,
            resolver=resolver,
        )
        endpoint = await register(client, keys, f"https://public.example.com:{receiver.port}/hooks")
        answers["public.example.com"] = ["127.0.0.1"]
        sender = HttpWebhookSender(timeout_seconds=5, allow_private=False, resolver=resolver)
        reply = await sender.post(endpoint["url"], body="{}", headers={})
        await sender.aclose()
        assert reply.status_code is None
        assert reply.error is not None
        assert "not public" in reply.error
        assert receiver.received == []

    # A redirect is a failed attempt, and its target is never asked.
    async def redirect(_: Received) -> Answer:
        return 307, {"location": target.url}

    async with running_receiver() as target, running_receiver(redirect) as redirecting:
        dev_app.state.webhooks = WebhookConfig(
            box=SecretBox(settings.secret_key.get_secret_value()), allow_private=True
        )
        hooked = await register(client, keys, redirecting.url)
        await product(client, keys)
        await relay.run_once()
        (delivery,) = await deliveries(client, keys, hooked["id"])
        assert delivery["status"] == "pending"
        assert delivery["attempts"][0]["status_code"] == 307
        assert target.received == []


async def test_endpoints_are_listed_changed_replayed_and_deleted(
    client: httpx.AsyncClient, dev_app: FastAPI, keys: Keys, relay: Relay, clock: Clock
) -> None:
    async with running_receiver() as receiver:
        first = await register(client, keys, receiver.url, events=["order.created"])
        await product(client, keys)
        await place(client, keys, {SKU: 1})
        await relay.run_once()
        late = await register(client, keys, receiver.url, description="late")
        listed = await client.get("/v1/webhook-endpoints", headers=keys.admin)
        assert [e["id"] for e in listed.json()["data"]] == [late["id"], first["id"]]
        changed = await client.patch(
            f"/v1/webhook-endpoints/{late['id']}",
            json={"events": ["stock.adjusted"]},
            headers=keys.admin,
        )
        assert changed.json()["events"] == ["stock.adjusted"]
        assert changed.json()["version"] == late["version"] + 1
        assert changed.headers["etag"] == f'"{late["id"]}.{late["version"] + 1}"'
        stale = await client.patch(
            f"/v1/webhook-endpoints/{late['id']}",
            json={"description": "stale"},
            headers={**keys.admin, "If-Match": f'"{late["id"]}.{late["version"]}"'},
        )
        assert_problem(stale, 412, "precondition-failed")
        replayed = await client.post(
            f"/v1/webhook-endpoints/{late['id']}/replay",
            json={"since": "2020-01-01T00:00:00Z"},
            headers=keys.admin,
        )
        assert replayed.status_code == 202, replayed.text
        assert replayed.json() == {"queued": 1}
        clock.advance(minutes=1)  # the replay is due from the wall clock's now
        await relay.run_once()
        (sent,) = await deliveries(client, keys, late["id"])
        assert sent["event_type"] == "stock.adjusted"
        assert sent["status"] == "delivered"
        deleted = await client.delete(f"/v1/webhook-endpoints/{late['id']}", headers=keys.admin)
        assert deleted.status_code == 204
        gone = await client.get(f"/v1/webhook-endpoints/{late['id']}", headers=keys.admin)
        assert_problem(gone, 404, "not-found")
        bad = await client.patch(
            f"/v1/webhook-endpoints/{first['id']}", json={"enabled": None}, headers=keys.admin
        )
        assert bad.status_code == 422
        wildcard = await client.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url, "events": ["*", "order.created"]},
            headers=keys.admin,
        )
        assert wildcard.status_code == 422


async def test_an_idempotent_replay_of_registration_does_not_show_the_secret_again(
    client: httpx.AsyncClient, dev_app: FastAPI, keys: Keys
) -> None:
    headers = {**keys.admin, "Idempotency-Key": "register-once"}
    body = {"url": "http://127.0.0.1:9/hooks"}
    first = await client.post("/v1/webhook-endpoints", json=body, headers=headers)
    again = await client.post("/v1/webhook-endpoints", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["secret"].startswith("whsec_")
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == {**first.json(), "secret": None}


async def test_a_previous_secret_sealed_under_an_old_service_key_is_left_out(
    client: httpx.AsyncClient, dev_app: FastAPI, keys: Keys, database: Database, clock: Clock
) -> None:
    """After STOCKFLOW_SECRET_KEY changes, one rotation is enough: the replaced secret,
    unreadable under the new key, is not used as a second signature."""
    async with running_receiver() as receiver:
        endpoint = await register(client, keys, receiver.url)
        new_box = SecretBox("a-new-service-key")
        dev_app.state.webhooks = WebhookConfig(box=new_box, allow_private=True)
        rotated = await client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=keys.admin
        )
        secret = rotated.json()["secret"]
        relay = Relay(
            database,
            HttpWebhookSender(timeout_seconds=5, allow_private=True),
            new_box,
            clock=clock,
        )
        try:
            await product(client, keys)
            assert await relay.run_once() == 1
        finally:
            await relay.aclose()
        (request,) = await receiver.wait_for(1)
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    verified(request, secret)


async def test_an_attempt_that_gets_no_answer_ends_at_its_deadline_and_is_retried(
    client: httpx.AsyncClient, dev_app: FastAPI, keys: Keys, database: Database, clock: Clock
) -> None:
    release = asyncio.Event()

    async def never(_: Received) -> Answer:
        await release.wait()
        return 204, {}

    async with running_receiver(never) as receiver:
        endpoint = await register(client, keys, receiver.url)
        relay = Relay(
            database,
            HttpWebhookSender(timeout_seconds=0.5, allow_private=True),
            dev_app.state.webhooks.box,
            clock=clock,
            jitter=lambda: 1.0,
        )
        try:
            await product(client, keys)
            assert await relay.run_once() == 1  # returns: the attempt did not wait forever
        finally:
            release.set()
            await relay.aclose()
    (delivery,) = await deliveries(client, keys, endpoint["id"])
    (attempt,) = delivery["attempts"]
    assert attempt["status_code"] is None
    assert attempt["error"] == "timed out after 0.5 s"
    assert delivery["status"] == "pending"
    assert _time(delivery["next_attempt_at"]) == clock.now + timedelta(
        seconds=schedule.BACKOFF_SECONDS[0]
    )
