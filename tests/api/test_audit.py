"""The audit trail: one record per mutation, in the mutation's own transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from stockflow.audit import repository as audit_repository
from stockflow.audit import service as audit_service
from stockflow.auth import service as auth_service
from stockflow.auth.keys import hash_key
from stockflow.auth.roles import Principal
from stockflow.db.engine import Database
from stockflow.db.models import AuditRecord
from tests.conftest import Keys


async def records_for(
    database: Database, resource_type: str, resource_id: str
) -> list[AuditRecord]:
    async with database.transaction(write=False) as session:
        return await audit_repository.for_resource(session, resource_type, resource_id)


async def count_records(database: Database) -> int:
    async with database.transaction(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(AuditRecord)) or 0)


async def only_record(database: Database, resource_type: str, resource_id: str) -> AuditRecord:
    records = await records_for(database, resource_type, resource_id)
    assert len(records) == 1, [(r.action, r.actor_id) for r in records]
    return records[0]


def assert_recent(moment: datetime) -> None:
    assert moment.utcoffset() is not None
    assert abs((datetime.now(moment.tzinfo) - moment).total_seconds()) < 60


# --- what each mutation records ------------------------------------------------------------


async def test_creating_a_key_records_who_what_and_after(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    total = await count_records(database)
    response = await client.post(
        "/v1/api-keys", headers=keys.admin, json={"name": "Storefront", "role": "service"}
    )
    assert response.status_code == 201
    created = response.json()

    record = await only_record(database, "api_key", created["id"])
    assert await count_records(database) == total + 1
    assert record.id.startswith("aud_")
    assert record.actor_id == keys.ids["admin"]
    assert record.actor_role == "admin"
    assert record.action == "api_key.created"
    assert record.resource_type == "api_key"
    assert record.resource_id == created["id"]
    assert record.before is None
    assert record.after == {k: v for k, v in created.items() if k != "key"}
    assert record.request_id == response.headers["x-request-id"]
    assert_recent(record.created_at)


async def test_the_audit_record_of_a_key_holds_no_secret(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    response = await client.post(
        "/v1/api-keys", headers=keys.admin, json={"name": "Secret", "role": "admin"}
    )
    secret = response.json()["key"]
    record = await only_record(database, "api_key", response.json()["id"])
    stored = repr(record.before) + repr(record.after)
    assert secret not in stored
    assert hash_key(secret) not in stored
    assert "key_hash" not in stored
    assert record.after is not None
    assert "key" not in record.after


async def test_revoking_a_key_records_before_and_after(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    target = keys.ids["staff"]
    total = await count_records(database)
    response = await client.delete(
        f"/v1/api-keys/{target}", headers={**keys.admin, "X-Request-ID": "req-revoke-1"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-revoke-1"
    assert await count_records(database) == total + 1

    revocations = [
        r for r in await records_for(database, "api_key", target) if r.action == "api_key.revoked"
    ]
    assert len(revocations) == 1
    record = revocations[0]
    assert record.actor_id == keys.ids["admin"]
    assert record.actor_role == "admin"
    assert record.resource_id == target
    assert record.request_id == "req-revoke-1"
    assert record.before is not None
    assert record.after is not None
    assert record.before["revoked_at"] is None
    assert record.after["revoked_at"] is not None
    assert record.after["revoked_at"] == response.json()["revoked_at"]
    assert record.after == response.json()
    # Nothing else about the key changed.
    unchanged = {k: v for k, v in record.before.items() if k != "revoked_at"}
    assert unchanged == {k: v for k, v in record.after.items() if k != "revoked_at"}


async def test_revoking_twice_records_once(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    target = keys.ids["service"]
    await client.delete(f"/v1/api-keys/{target}", headers=keys.admin)
    total = await count_records(database)
    again = await client.delete(f"/v1/api-keys/{target}", headers=keys.admin)
    assert again.status_code == 200
    assert await count_records(database) == total
    actions = [r.action for r in await records_for(database, "api_key", target)]
    assert actions.count("api_key.revoked") == 1


@pytest.mark.parametrize("role", ["admin", "staff", "service"])
async def test_creating_a_customer_records_the_calling_key(
    client: httpx.AsyncClient, keys: Keys, database: Database, role: str
) -> None:
    total = await count_records(database)
    response = await client.post(
        "/v1/customers",
        headers={**keys.for_role(role), "X-Request-ID": f"req-customer-{role}"},
        json={"name": "Ada", "email": "ada@example.com", "external_ref": f"ref-{role}"},
    )
    assert response.status_code == 201
    customer = response.json()
    record = await only_record(database, "customer", customer["id"])
    assert await count_records(database) == total + 1
    assert record.actor_id == keys.ids[role]
    assert record.actor_role == role
    assert record.action == "customer.created"
    assert record.before is None
    assert record.after == customer
    assert record.request_id == f"req-customer-{role}" == response.headers["x-request-id"]


async def test_a_minted_request_id_is_the_one_recorded(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    # A request id the service will not take is replaced; the record carries the new one.
    response = await client.post(
        "/v1/customers",
        headers={**keys.staff, "X-Request-ID": "no spaces allowed"},
        json={"name": "Minted"},
    )
    assert response.status_code == 201
    minted = response.headers["x-request-id"]
    assert minted != "no spaces allowed"
    record = await only_record(database, "customer", response.json()["id"])
    assert record.request_id == minted


async def test_each_request_records_its_own_request_id(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    responses = [
        await client.post("/v1/customers", headers=keys.staff, json={"name": f"C{i}"})
        for i in range(3)
    ]
    request_ids = {r.headers["x-request-id"] for r in responses}
    assert len(request_ids) == 3
    recorded = {
        (await only_record(database, "customer", r.json()["id"])).request_id for r in responses
    }
    assert recorded == request_ids


async def test_reads_record_nothing(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    total = await count_records(database)
    for path in (
        "/v1/api-keys",
        f"/v1/api-keys/{keys.ids['staff']}",
        "/v1/customers",
        f"/v1/customers/{keys.customer_id}",
    ):
        assert (await client.get(path, headers=keys.admin)).status_code == 200
    assert await count_records(database) == total


# --- failed mutations leave nothing --------------------------------------------------------


async def test_a_duplicate_external_ref_leaves_no_record(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    first = await client.post(
        "/v1/customers", headers=keys.staff, json={"name": "A", "external_ref": "dup"}
    )
    assert first.status_code == 201
    total = await count_records(database)
    second = await client.post(
        "/v1/customers", headers=keys.staff, json={"name": "B", "external_ref": "dup"}
    )
    assert second.status_code == 409
    assert await count_records(database) == total


@pytest.mark.parametrize(
    ("path", "payload", "status"),
    [
        ("/v1/customers", {"name": "A", "email": "nope"}, 422),
        ("/v1/customers", {"name": "A", "color": "red"}, 422),
        ("/v1/api-keys", {"name": "k", "role": "customer"}, 422),
        (
            "/v1/api-keys",
            {"name": "k", "role": "customer", "customer_id": "cus_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"},
            422,
        ),
    ],
    ids=["bad-email", "unknown-field", "customer-key-unbound", "unknown-customer"],
)
async def test_refused_mutations_leave_no_record(
    client: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    path: str,
    payload: dict[str, Any],
    status: int,
) -> None:
    total = await count_records(database)
    response = await client.post(path, headers=keys.admin, json=payload)
    assert response.status_code == status, response.text
    assert await count_records(database) == total


async def test_forbidden_and_unknown_mutations_leave_no_record(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    total = await count_records(database)
    assert (
        await client.post("/v1/customers", headers=keys.customer, json={"name": "X"})
    ).status_code == 403
    assert (
        await client.post("/v1/api-keys", headers=keys.staff, json={"name": "k", "role": "admin"})
    ).status_code == 403
    assert (
        await client.delete(f"/v1/api-keys/{keys.ids['staff']}", headers=keys.service)
    ).status_code == 403
    assert (
        await client.delete("/v1/api-keys/key_01KB3J5Q2W8Z6Y4X0V9T7S5R3P", headers=keys.admin)
    ).status_code == 404
    assert await count_records(database) == total


async def test_a_failure_after_the_record_rolls_both_back(
    client: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The record and the change share one transaction: a crash after the record is
    written undoes the record and the change together."""
    original: Callable[..., Awaitable[None]] = audit_service.record

    async def record_then_fail(*args: Any, **kwargs: Any) -> None:
        await original(*args, **kwargs)
        raise RuntimeError("crash after the audit record")

    monkeypatch.setattr(audit_service, "record", record_then_fail)
    total = await count_records(database)
    customers_before = (
        await client.get("/v1/customers", headers=keys.admin, params={"limit": 100})
    ).json()["data"]

    response = await client.post(
        "/v1/customers", headers=keys.staff, json={"name": "Doomed", "external_ref": "doomed"}
    )
    assert response.status_code == 500
    revoke = await client.delete(f"/v1/api-keys/{keys.ids['service']}", headers=keys.admin)
    assert revoke.status_code == 500

    monkeypatch.undo()
    assert await count_records(database) == total
    customers_after = (
        await client.get("/v1/customers", headers=keys.admin, params={"limit": 100})
    ).json()["data"]
    assert customers_after == customers_before
    assert (await client.get("/v1/products", headers=keys.service)).status_code == 200


async def test_a_failing_audit_write_fails_the_mutation(
    client: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("audit store down")

    monkeypatch.setattr(audit_repository, "add", refuse)
    response = await client.post(
        "/v1/api-keys", headers=keys.admin, json={"name": "Unaudited", "role": "staff"}
    )
    assert response.status_code == 500
    assert "sf_" not in response.text
    monkeypatch.undo()
    listing = (await client.get("/v1/api-keys", headers=keys.admin)).json()["data"]
    assert all(k["name"] != "Unaudited" for k in listing)


async def test_concurrent_revocations_record_once(database: Database, keys: Keys) -> None:
    """Two operators revoking one key at the same moment: one revocation, one record, and
    the first revocation time stands."""
    actor = Principal.command_line()
    target = keys.ids["staff"]
    first_revoked = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> datetime | None:
        async with database.transaction() as session:
            key = await auth_service.revoke_key(session, actor=actor, key_id=target)
            first_revoked.set()
            await release_first.wait()
            return key.revoked_at

    async def second() -> datetime | None:
        await first_revoked.wait()
        async with database.transaction() as session:
            key = await auth_service.revoke_key(session, actor=actor, key_id=target)
            return key.revoked_at

    first_task = asyncio.create_task(first())
    second_task = asyncio.create_task(second())
    await first_revoked.wait()
    await asyncio.sleep(0.3)  # the second is now waiting on the first's lock
    release_first.set()
    first_at, second_at = await first_task, await second_task

    assert first_at is not None
    assert second_at == first_at
    actions = [r.action for r in await records_for(database, "api_key", target)]
    assert actions.count("api_key.revoked") == 1
    async with database.transaction(write=False) as session:
        stored = await auth_service.get_key(session, key_id=target)
    assert stored.revoked_at == first_at


# --- GET /v1/audit-events -------------------------------------------------------------


async def test_admins_read_the_audit_trail_newest_first_with_filters(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    created = await client.post(
        "/v1/products",
        headers=keys.staff,
        json={"sku": "AUD-1", "name": "Audited", "unit_price": 1000, "currency": "EUR"},
    )
    assert created.status_code == 201, created.text
    product = created.json()
    updated = await client.patch(
        "/v1/products/AUD-1",
        headers={**keys.staff, "If-Match": created.headers["etag"]},
        json={"unit_price": 1200},
    )
    assert updated.status_code == 200, updated.text

    listed = await client.get(
        "/v1/audit-events", headers=keys.admin, params={"resource_id": product["sku"]}
    )
    assert listed.status_code == 200, listed.text
    events = listed.json()["data"]
    assert [e["action"] for e in events] == ["product.updated", "product.created"]
    change = events[0]
    assert (change["actor_id"], change["actor_role"]) == (keys.ids["staff"], "staff")
    assert (change["before"]["unit_price"], change["after"]["unit_price"]) == (1000, 1200)
    assert change["request_id"] == updated.headers["x-request-id"]

    by_action = await client.get(
        "/v1/audit-events", headers=keys.admin, params={"action": "product.updated"}
    )
    assert [e["id"] for e in by_action.json()["data"]] == [change["id"]]
    by_actor = await client.get(
        "/v1/audit-events",
        headers=keys.admin,
        params={"actor_id": keys.ids["staff"], "resource_type": "product"},
    )
    # Products are audited under their SKU.
    assert {e["resource_id"] for e in by_actor.json()["data"]} == {product["sku"]}


async def test_the_audit_trail_pages_with_a_cursor(client: httpx.AsyncClient, keys: Keys) -> None:
    for n in range(5):
        response = await client.post(
            "/v1/customers", headers=keys.staff, json={"name": f"Paged {n}"}
        )
        assert response.status_code == 201
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, "action": "customer.created"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/audit-events", headers=keys.admin, params=params)).json()
        seen.extend(e["id"] for e in page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # The two customers the fixture made, and these five.
    assert len(seen) == len(set(seen)) == 7
    assert seen == sorted(seen, reverse=True)


@pytest.mark.parametrize("role", ["staff", "service", "customer"])
async def test_only_admins_read_the_audit_trail(
    client: httpx.AsyncClient, keys: Keys, role: str
) -> None:
    response = await client.get("/v1/audit-events", headers=keys.for_role(role))
    assert response.status_code == 403
