"""``/v1/customers``: who may create and read customers, and what a customer key sees."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from stockflow.auth.roles import Principal
from stockflow.customers import service as customers_service
from stockflow.customers.schemas import CustomerCreate
from stockflow.db.engine import Database
from stockflow.errors import AlreadyExists
from tests.assertions import assert_problem
from tests.conftest import Keys

MISSING = "cus_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"
CUSTOMER_FIELDS = {
    "id",
    "name",
    "email",
    "phone",
    "external_ref",
    "metadata",
    "created_at",
    "updated_at",
    "erased_at",
}


async def all_customer_ids(client: httpx.AsyncClient, keys: Keys) -> list[str]:
    body = (await client.get("/v1/customers", headers=keys.admin, params={"limit": 100})).json()
    assert body["next_cursor"] is None
    return [c["id"] for c in body["data"]]


# --- creating ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "staff", "service"])
async def test_create_customer(client: httpx.AsyncClient, keys: Keys, role: str) -> None:
    payload = {
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "phone": "+44 20 7946 0000",
        "external_ref": f"shop:{role}",
        "metadata": {"tier": "gold", "tags": ["a", "b"]},
    }
    response = await client.post("/v1/customers", headers=keys.for_role(role), json=payload)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == CUSTOMER_FIELDS
    assert body["id"].startswith("cus_")
    for field, value in payload.items():
        assert body[field] == value
    assert body["created_at"] == body["updated_at"]
    assert body["erased_at"] is None

    again = await client.get(f"/v1/customers/{body['id']}", headers=keys.for_role(role))
    assert again.status_code == 200
    assert again.json() == body


async def test_create_with_only_a_name(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.post("/v1/customers", headers=keys.staff, json={"name": "  Bob  "})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "Bob"
    assert body["email"] is None
    assert body["phone"] is None
    assert body["external_ref"] is None
    assert body["metadata"] == {}


async def test_customer_key_cannot_create_customers(client: httpx.AsyncClient, keys: Keys) -> None:
    before = await all_customer_ids(client, keys)
    response = await client.post("/v1/customers", headers=keys.customer, json={"name": "Mallory"})
    body = assert_problem(response, 403, "forbidden")
    assert "customer" in body["detail"]
    assert await all_customer_ids(client, keys) == before


async def test_create_without_a_key_is_401(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.post("/v1/customers", json={"name": "Anonymous"})
    assert_problem(response, 401, "unauthenticated")


async def test_duplicate_external_ref_is_409(client: httpx.AsyncClient, keys: Keys) -> None:
    first = await client.post(
        "/v1/customers", headers=keys.service, json={"name": "A", "external_ref": "shop:1"}
    )
    assert first.status_code == 201
    before = await all_customer_ids(client, keys)

    for headers in (keys.service, keys.staff):
        second = await client.post(
            "/v1/customers", headers=headers, json={"name": "B", "external_ref": "shop:1"}
        )
        body = assert_problem(second, 409, "already-exists")
        assert "shop:1" in body["detail"]
    assert await all_customer_ids(client, keys) == before


async def test_customers_without_external_ref_may_share_everything_else(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    payload = {"name": "Same", "email": "same@example.com"}
    first = await client.post("/v1/customers", headers=keys.staff, json=payload)
    second = await client.post("/v1/customers", headers=keys.staff, json=payload)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]


@pytest.mark.parametrize(
    ("payload", "location", "message"),
    [
        ({"name": "A", "email": "not-an-email"}, "body.email", None),
        ({"name": "A", "email": "a@"}, "body.email", None),
        ({"name": "A", "nickname": "x"}, "body.nickname", "unknown field"),
        ({"name": "A", "id": MISSING}, "body.id", "read-only field"),
        ({"name": "A", "created_at": "2026-01-01T00:00:00Z"}, "body.created_at", "read-only field"),
        ({"name": ""}, "body.name", None),
        ({"email": "a@example.com"}, "body.name", None),
        ({"name": "A", "external_ref": ""}, "body.external_ref", None),
        ({"name": "A", "metadata": []}, "body.metadata", None),
        ({"name": "A", "phone": "1" * 41}, "body.phone", None),
    ],
    ids=[
        "bad-email",
        "half-email",
        "unknown-field",
        "read-only-id",
        "read-only-created-at",
        "empty-name",
        "no-name",
        "empty-external-ref",
        "metadata-not-object",
        "phone-too-long",
    ],
)
async def test_invalid_customer_is_422(
    client: httpx.AsyncClient,
    keys: Keys,
    payload: dict[str, Any],
    location: str,
    message: str | None,
) -> None:
    before = await all_customer_ids(client, keys)
    response = await client.post("/v1/customers", headers=keys.staff, json=payload)
    body = assert_problem(response, 422, "validation-error")
    matching = [e for e in body["errors"] if e["location"].startswith(location)]
    assert matching, body
    if message is not None:
        assert any(message in e["message"] for e in matching), body
    assert await all_customer_ids(client, keys) == before


async def test_concurrent_duplicate_external_ref_is_409_not_500(database: Database) -> None:
    """Two creations with one external_ref racing: one wins, the other is told it exists.

    The first transaction inserts but has not committed when the second checks for the
    reference, so only the unique constraint can catch the second one.
    """
    actor = Principal.command_line()
    data = CustomerCreate(name="Racer", external_ref="shop:race")
    first_inserted = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> str:
        async with database.transaction() as session:
            created = await customers_service.create_customer(session, actor=actor, data=data)
            first_inserted.set()
            await release_first.wait()
            return created.id

    async def second() -> str:
        await first_inserted.wait()
        async with database.transaction() as session:
            created = await customers_service.create_customer(session, actor=actor, data=data)
            return created.id

    first_task = asyncio.create_task(first())
    second_task = asyncio.create_task(second())
    await first_inserted.wait()
    await asyncio.sleep(0.3)  # let the second reach its check (and block, where it blocks)
    release_first.set()
    winner = await first_task
    with pytest.raises(AlreadyExists):
        await second_task
    async with database.transaction(write=False) as session:
        page = await customers_service.list_customers(session, viewer=actor, limit=100, cursor=None)
    assert [c.id for c in page.items if c.external_ref == "shop:race"] == [winner]


# --- reading -------------------------------------------------------------------------------


async def test_customer_key_reads_its_own_customer(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.get(f"/v1/customers/{keys.customer_id}", headers=keys.customer)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == keys.customer_id
    assert body["name"] == "Own Customer"


async def test_customer_key_gets_404_for_another_customer(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    other = await client.get(f"/v1/customers/{keys.other_customer_id}", headers=keys.customer)
    body = assert_problem(other, 404, "not-found")
    assert "Other Customer" not in other.text
    missing = await client.get(f"/v1/customers/{MISSING}", headers=keys.customer)
    missing_body = assert_problem(missing, 404, "not-found")
    # Someone else's customer and no customer at all look exactly alike.
    assert body["title"] == missing_body["title"]
    assert body["detail"].replace(keys.other_customer_id, "X") == missing_body["detail"].replace(
        MISSING, "X"
    )


@pytest.mark.parametrize("role", ["admin", "staff", "service"])
async def test_other_roles_read_any_customer(
    client: httpx.AsyncClient, keys: Keys, role: str
) -> None:
    headers = keys.for_role(role)
    for customer_id in (keys.customer_id, keys.other_customer_id):
        response = await client.get(f"/v1/customers/{customer_id}", headers=headers)
        assert response.status_code == 200
        assert response.json()["id"] == customer_id
    assert_problem(await client.get(f"/v1/customers/{MISSING}", headers=headers), 404, "not-found")


async def test_customer_key_lists_only_itself(client: httpx.AsyncClient, keys: Keys) -> None:
    for index in range(3):
        await client.post("/v1/customers", headers=keys.staff, json={"name": f"Extra {index}"})
    body = (await client.get("/v1/customers", headers=keys.customer)).json()
    assert [c["id"] for c in body["data"]] == [keys.customer_id]
    assert body["next_cursor"] is None
    small = (await client.get("/v1/customers", headers=keys.customer, params={"limit": 1})).json()
    assert [c["id"] for c in small["data"]] == [keys.customer_id]
    assert small["next_cursor"] is None


@pytest.mark.parametrize("role", ["admin", "staff", "service"])
async def test_list_all_customers_with_pagination(
    client: httpx.AsyncClient, keys: Keys, role: str
) -> None:
    created = []
    for index in range(5):
        response = await client.post(
            "/v1/customers", headers=keys.staff, json={"name": f"Customer {index}"}
        )
        created.append(response.json()["id"])
    expected = sorted([*created, keys.customer_id, keys.other_customer_id], reverse=True)

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get("/v1/customers", headers=keys.for_role(role), params=params)
        assert response.status_code == 200
        body = response.json()
        assert len(body["data"]) <= 3
        seen.extend(c["id"] for c in body["data"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == expected


async def test_list_rejects_bad_paging(client: httpx.AsyncClient, keys: Keys) -> None:
    for params in ({"limit": "0"}, {"limit": "101"}):
        assert_problem(
            await client.get("/v1/customers", headers=keys.staff, params=params),
            422,
            "validation-error",
        )
    assert_problem(
        await client.get("/v1/customers", headers=keys.staff, params={"cursor": "garbage"}),
        422,
        "invalid-cursor",
    )
