"""The catalog over HTTP: create, read, list, update, deactivate, and who may do what."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from stockflow.audit import repository as audit_repository
from stockflow.auth.roles import Principal
from stockflow.catalog import service as catalog_service
from stockflow.catalog.schemas import ProductCreate
from stockflow.db.engine import Database
from stockflow.db.models import AuditRecord
from stockflow.errors import AlreadyExists
from tests.assertions import assert_invalid, assert_problem
from tests.conftest import Keys

MAX_PRICE = 10**12


def product_body(sku: str = "MUG-BLUE-330", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sku": sku,
        "name": "Blue mug, 330 ml",
        "unit_price": 1290,
        "currency": "EUR",
    }
    body.update(overrides)
    return body


async def create(
    client: httpx.AsyncClient, keys: Keys, sku: str = "MUG-BLUE-330", **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/products", json=product_body(sku, **overrides), headers=keys.staff
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def create_in_order(client: httpx.AsyncClient, keys: Keys, skus: list[str]) -> None:
    for sku in skus:
        await create(client, keys, sku)
        # Ids sort by millisecond; products made within the same millisecond have no defined
        # order between them (see the report on stockflow.ids), so keep them a tick apart.
        await asyncio.sleep(0.003)


async def audit_records(database: Database, sku: str) -> list[AuditRecord]:
    async with database.transaction(write=False) as session:
        return await audit_repository.for_resource(session, "product", sku)


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None
    assert parsed.utcoffset() == UTC.utcoffset(None)
    return parsed


# --- create -------------------------------------------------------------------------------


async def test_create_answers_the_product_with_etag_and_location(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    response = await client.post(
        "/v1/products",
        json=product_body(description="Stoneware", metadata={"colour": "blue", "tags": [1, 2]}),
        headers=keys.staff,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"].startswith("prod_")
    assert {k: v for k, v in body.items() if k not in {"id", "created_at", "updated_at"}} == {
        "sku": "MUG-BLUE-330",
        "name": "Blue mug, 330 ml",
        "description": "Stoneware",
        "unit_price": 1290,
        "currency": "EUR",
        "active": True,
        "metadata": {"colour": "blue", "tags": [1, 2]},
        "shortage_policy": "reject",
        "replenish_buffer_pct": 20,
        "reorder_point": None,
        "reorder_up_to": None,
        "low_stock_threshold": None,
        "version": 1,
    }
    assert parse_time(body["created_at"]) == parse_time(body["updated_at"])
    assert response.headers["etag"] == f'"{body["id"]}.1"'
    assert response.headers["location"] == "/v1/products/MUG-BLUE-330"

    read = await client.get(response.headers["location"], headers=keys.staff)
    assert read.status_code == 200
    assert read.json() == body
    assert read.headers["etag"] == response.headers["etag"]


async def test_create_defaults_and_inactive_flag(client: httpx.AsyncClient, keys: Keys) -> None:
    body = await create(client, keys, "PLAIN-1", active=False)
    assert body["description"] is None
    assert body["metadata"] == {}
    assert body["active"] is False


async def test_create_writes_an_audit_record(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    body = await create(client, keys)

    records = await audit_records(database, "MUG-BLUE-330")
    assert len(records) == 1
    record = records[0]
    assert record.action == "product.created"
    assert record.actor_id == keys.ids["staff"]
    assert record.actor_role == "staff"
    assert record.before is None
    assert record.after == body


async def test_admin_may_create_and_is_audited_as_admin(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    response = await client.post("/v1/products", json=product_body(), headers=keys.admin)
    assert response.status_code == 201
    [record] = await audit_records(database, "MUG-BLUE-330")
    assert (record.actor_id, record.actor_role) == (keys.ids["admin"], "admin")


async def test_duplicate_sku_is_409_and_keeps_the_original(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    original = await create(client, keys, name="First")

    response = await client.post(
        "/v1/products", json=product_body(name="Second", unit_price=1), headers=keys.staff
    )

    body = assert_problem(response, 409, "already-exists", sku="MUG-BLUE-330")
    assert "MUG-BLUE-330" in body["detail"]
    read = await client.get("/v1/products/MUG-BLUE-330", headers=keys.staff)
    assert read.json() == original
    assert len(await audit_records(database, "MUG-BLUE-330")) == 1


async def test_concurrent_creates_of_one_sku_give_one_product_and_one_conflict(
    database: Database,
) -> None:
    """Both look-ups can miss the other's uncommitted product; the loser must still get
    AlreadyExists (409), not an IntegrityError (500)."""
    actor = Principal.command_line()
    data = ProductCreate(sku="RACE-1", name="Race", unit_price=1, currency="EUR")
    first_created = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with database.transaction() as session:
            await catalog_service.create_product(session, actor=actor, data=data)
            first_created.set()
            await release_first.wait()

    async def second() -> None:
        await first_created.wait()
        async with database.transaction() as session:
            await catalog_service.create_product(session, actor=actor, data=data)

    first_task = asyncio.create_task(first())
    second_task = asyncio.create_task(second())
    await first_created.wait()
    # Give the second transaction time to pass its look-up and block on the first one's
    # lock (the unique index on PostgreSQL, BEGIN IMMEDIATE on SQLite).
    await asyncio.sleep(0.3)
    release_first.set()
    await first_task
    with pytest.raises(AlreadyExists):
        await second_task

    async with database.transaction(write=False) as session:
        product = await catalog_service.get_product(session, viewer=actor, sku="RACE-1")
    assert product.name == "Race"
    assert len(await audit_records(database, "RACE-1")) == 1


@pytest.mark.parametrize("role", ["service", "customer"])
async def test_only_staff_and_admin_create(
    client: httpx.AsyncClient, keys: Keys, role: str
) -> None:
    response = await client.post("/v1/products", json=product_body(), headers=keys.for_role(role))
    assert_problem(response, 403, "forbidden")
    listed = await client.get("/v1/products", headers=keys.staff)
    assert listed.json()["data"] == []


async def test_create_without_a_key_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/products", json=product_body())
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_unknown_field_is_named(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.post(
        "/v1/products", json=product_body(colour="blue"), headers=keys.staff
    )
    body = assert_problem(response, 422, "validation-error")
    assert {"location": "body.colour", "message": "unknown field"} in body["errors"]


@pytest.mark.parametrize(
    "field",
    ["id", "version", "backordered", "on_order", "created_at", "updated_at", "etag"],
)
async def test_read_only_fields_are_refused_as_read_only(
    client: httpx.AsyncClient, keys: Keys, field: str
) -> None:
    response = await client.post(
        "/v1/products", json={**product_body(), field: 1}, headers=keys.staff
    )
    body = assert_problem(response, 422, "validation-error")
    assert body["errors"] == [{"location": f"body.{field}", "message": "read-only field"}]
    listed = await client.get("/v1/products", headers=keys.staff)
    assert listed.json()["data"] == []


@pytest.mark.parametrize(
    ("field", "value", "message_part"),
    [
        ("sku", "has space", "pattern"),
        ("sku", "a/b", "pattern"),
        ("sku", "", "pattern"),
        ("sku", "x" * 65, "pattern"),
        ("sku", "MÜG", "pattern"),
        ("unit_price", -1, "greater than or equal to 0"),
        ("unit_price", 12.5, "valid integer"),
        ("unit_price", "12", "valid integer"),
        ("unit_price", True, "valid integer"),
        ("unit_price", MAX_PRICE + 1, "less than or equal to"),
        ("currency", "EURO", ""),
        ("currency", "ABC", ""),
        ("currency", 978, ""),
        ("name", "", "at least 1"),
        ("name", "n" * 201, "at most 200"),
    ],
)
async def test_invalid_values_are_named(
    client: httpx.AsyncClient, keys: Keys, field: str, value: Any, message_part: str
) -> None:
    response = await client.post(
        "/v1/products", json=product_body(**{field: value}), headers=keys.staff
    )
    assert_invalid(response, f"body.{field}", message_part)
    listed = await client.get("/v1/products", headers=keys.staff)
    assert listed.json()["data"] == []


@pytest.mark.parametrize("field", ["sku", "name", "unit_price", "currency"])
async def test_required_fields_are_named_when_missing(
    client: httpx.AsyncClient, keys: Keys, field: str
) -> None:
    body = product_body()
    del body[field]
    response = await client.post("/v1/products", json=body, headers=keys.staff)
    assert_invalid(response, f"body.{field}", "required")


async def test_largest_price_is_stored_exactly(client: httpx.AsyncClient, keys: Keys) -> None:
    """Beyond 32 bits: the money column is 64-bit on both databases."""
    body = await create(client, keys, unit_price=MAX_PRICE)
    assert body["unit_price"] == MAX_PRICE
    read = await client.get(f"/v1/products/{body['sku']}", headers=keys.staff)
    assert read.json()["unit_price"] == MAX_PRICE


# --- read and list ------------------------------------------------------------------------


async def test_get_unknown_product_is_404(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.get("/v1/products/NOPE", headers=keys.staff)
    body = assert_problem(response, 404, "not-found")
    assert "NOPE" in body["detail"]


async def test_list_pages_newest_first_until_the_cursor_runs_out(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    skus = [f"SKU-{i}" for i in range(5)]
    await create_in_order(client, keys, skus)

    seen: list[str] = []
    page_sizes: list[int] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, str | int] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get("/v1/products", params=params, headers=keys.staff)
        assert response.status_code == 200, response.text
        page = response.json()
        seen.extend(p["sku"] for p in page["data"])
        page_sizes.append(len(page["data"]))
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert page_sizes == [2, 2, 1]
    assert seen == list(reversed(skus))


async def test_list_with_room_to_spare_has_no_next_cursor(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await create_in_order(client, keys, ["A-1", "A-2"])
    response = await client.get("/v1/products", params={"limit": 2}, headers=keys.staff)
    assert [p["sku"] for p in response.json()["data"]] == ["A-2", "A-1"]
    assert response.json()["next_cursor"] is None


async def test_list_filters_on_active(client: httpx.AsyncClient, keys: Keys) -> None:
    await create(client, keys, "ON-1")
    await create(client, keys, "OFF-1", active=False)
    await create(client, keys, "ON-2")

    def skus(response: httpx.Response) -> set[str]:
        assert response.status_code == 200, response.text
        return {p["sku"] for p in response.json()["data"]}

    assert skus(await client.get("/v1/products?active=true", headers=keys.staff)) == {
        "ON-1",
        "ON-2",
    }
    assert skus(await client.get("/v1/products?active=false", headers=keys.staff)) == {"OFF-1"}
    assert skus(await client.get("/v1/products", headers=keys.staff)) == {"ON-1", "ON-2", "OFF-1"}


@pytest.mark.parametrize("cursor", ["not-a-cursor!", "Zm9v", "cHJvZF8x"])
async def test_invalid_cursor_is_422(client: httpx.AsyncClient, keys: Keys, cursor: str) -> None:
    response = await client.get("/v1/products", params={"cursor": cursor}, headers=keys.staff)
    assert_problem(response, 422, "invalid-cursor")


@pytest.mark.parametrize("limit", [0, 101, -1])
async def test_limit_out_of_range_is_422(client: httpx.AsyncClient, keys: Keys, limit: int) -> None:
    response = await client.get("/v1/products", params={"limit": limit}, headers=keys.staff)
    assert_invalid(response, "query.limit", "")


async def test_limit_bounds_are_accepted(client: httpx.AsyncClient, keys: Keys) -> None:
    await create(client, keys)
    for limit in (1, 100):
        response = await client.get("/v1/products", params={"limit": limit}, headers=keys.staff)
        assert response.status_code == 200
        assert [p["sku"] for p in response.json()["data"]] == ["MUG-BLUE-330"]


# --- update -------------------------------------------------------------------------------


async def test_patch_changes_fields_and_bumps_version_and_etag(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    created = await create(client, keys, description="old")
    await asyncio.sleep(0.002)

    response = await client.patch(
        "/v1/products/MUG-BLUE-330",
        json={"name": "Navy mug", "unit_price": 1490, "currency": "USD", "metadata": {"a": 1}},
        headers=keys.staff,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "Navy mug"
    assert body["unit_price"] == 1490
    assert body["currency"] == "USD"
    assert body["metadata"] == {"a": 1}
    assert body["description"] == "old"
    assert body["active"] is True
    assert body["version"] == 2
    assert body["id"] == created["id"]
    assert body["created_at"] == created["created_at"]
    assert parse_time(body["updated_at"]) > parse_time(created["updated_at"])
    assert response.headers["etag"] == f'"{created["id"]}.2"'

    read = await client.get("/v1/products/MUG-BLUE-330", headers=keys.staff)
    assert read.json() == body
    assert read.headers["etag"] == response.headers["etag"]

    created_record, updated_record = await audit_records(database, "MUG-BLUE-330")
    assert created_record.action == "product.created"
    assert updated_record.action == "product.updated"
    assert updated_record.actor_id == keys.ids["staff"]
    assert updated_record.before == created
    assert updated_record.before is not None
    assert updated_record.before["name"] == "Blue mug, 330 ml"
    assert updated_record.after == body


async def test_patch_with_current_if_match_applies(client: httpx.AsyncClient, keys: Keys) -> None:
    await create(client, keys)
    etag = (await client.get("/v1/products/MUG-BLUE-330", headers=keys.staff)).headers["etag"]

    response = await client.patch(
        "/v1/products/MUG-BLUE-330",
        json={"name": "Renamed"},
        headers={**keys.staff, "If-Match": etag},
    )

    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Renamed"
    assert response.headers["etag"] != etag


async def test_patch_with_stale_if_match_is_412_and_changes_nothing(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    created = await client.post("/v1/products", json=product_body(), headers=keys.staff)
    stale = created.headers["etag"]
    first = await client.patch(
        "/v1/products/MUG-BLUE-330", json={"name": "First edit"}, headers=keys.staff
    )
    assert first.status_code == 200
    current = first.json()

    response = await client.patch(
        "/v1/products/MUG-BLUE-330",
        json={"name": "Lost edit", "unit_price": 1},
        headers={**keys.staff, "If-Match": stale},
    )

    assert_problem(response, 412, "precondition-failed", current_etag=first.headers["etag"])
    read = await client.get("/v1/products/MUG-BLUE-330", headers=keys.staff)
    assert read.json() == current
    assert read.json()["name"] == "First edit"
    assert read.json()["version"] == 2
    assert len(await audit_records(database, "MUG-BLUE-330")) == 2


async def test_if_match_star_and_lists_match(client: httpx.AsyncClient, keys: Keys) -> None:
    created = await client.post("/v1/products", json=product_body(), headers=keys.staff)
    etag = created.headers["etag"]

    listed = await client.patch(
        "/v1/products/MUG-BLUE-330",
        json={"name": "Listed"},
        headers={**keys.staff, "If-Match": f'"prod_other.1", {etag}'},
    )
    assert listed.status_code == 200
    star = await client.patch(
        "/v1/products/MUG-BLUE-330", json={"name": "Star"}, headers={**keys.staff, "If-Match": "*"}
    )
    assert star.status_code == 200
    assert star.json()["version"] == 3


async def test_patch_of_nothing_keeps_the_version(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    created = await create(client, keys)

    for body in ({}, {"name": created["name"], "unit_price": created["unit_price"]}):
        response = await client.patch("/v1/products/MUG-BLUE-330", json=body, headers=keys.staff)
        assert response.status_code == 200
        assert response.json() == created
        assert response.headers["etag"] == f'"{created["id"]}.1"'
    assert len(await audit_records(database, "MUG-BLUE-330")) == 1


@pytest.mark.parametrize("field", ["sku", "id", "version", "created_at", "backordered"])
async def test_patch_of_read_only_field_is_422(
    client: httpx.AsyncClient, keys: Keys, field: str
) -> None:
    created = await create(client, keys)

    response = await client.patch(
        "/v1/products/MUG-BLUE-330", json={field: "X", "name": "Sneaky"}, headers=keys.staff
    )

    body = assert_problem(response, 422, "validation-error")
    assert body["errors"] == [{"location": f"body.{field}", "message": "read-only field"}]
    read = await client.get("/v1/products/MUG-BLUE-330", headers=keys.staff)
    assert read.json() == created


@pytest.mark.parametrize("field", ["name", "unit_price", "currency", "active", "metadata"])
async def test_patch_with_null_for_a_required_field_is_422(
    client: httpx.AsyncClient, keys: Keys, field: str
) -> None:
    created = await create(client, keys)

    response = await client.patch(
        "/v1/products/MUG-BLUE-330", json={field: None}, headers=keys.staff
    )

    assert_invalid(response, f"body.{field}", "cannot be null")
    read = await client.get("/v1/products/MUG-BLUE-330", headers=keys.staff)
    assert read.json() == created


async def test_patch_null_description_clears_it(client: httpx.AsyncClient, keys: Keys) -> None:
    await create(client, keys, description="Stoneware")
    response = await client.patch(
        "/v1/products/MUG-BLUE-330", json={"description": None}, headers=keys.staff
    )
    assert response.status_code == 200
    assert response.json()["description"] is None
    assert response.json()["version"] == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [("unit_price", -5), ("unit_price", 9.99), ("currency", "EU"), ("name", ""), ("colour", "x")],
)
async def test_patch_with_invalid_value_is_422(
    client: httpx.AsyncClient, keys: Keys, field: str, value: Any
) -> None:
    created = await create(client, keys)
    response = await client.patch(
        "/v1/products/MUG-BLUE-330", json={field: value}, headers=keys.staff
    )
    assert_invalid(response, f"body.{field}", "")
    read = await client.get("/v1/products/MUG-BLUE-330", headers=keys.staff)
    assert read.json() == created


async def test_patch_unknown_product_is_404(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.patch("/v1/products/NOPE", json={"name": "x"}, headers=keys.staff)
    assert_problem(response, 404, "not-found")


@pytest.mark.parametrize("role", ["service", "customer"])
async def test_only_staff_and_admin_update(
    client: httpx.AsyncClient, keys: Keys, role: str
) -> None:
    created = await create(client, keys)
    response = await client.patch(
        "/v1/products/MUG-BLUE-330", json={"name": "x"}, headers=keys.for_role(role)
    )
    assert_problem(response, 403, "forbidden")
    read = await client.get("/v1/products/MUG-BLUE-330", headers=keys.staff)
    assert read.json() == created


# --- deactivation and visibility ----------------------------------------------------------


async def test_deactivated_product_is_hidden_from_customers_only(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    await create(client, keys, "KEEP-1")
    await create(client, keys, "MUG-BLUE-330")
    before = await client.get("/v1/products/MUG-BLUE-330", headers=keys.customer)
    assert before.status_code == 200
    assert (
        await client.get("/v1/inventory/MUG-BLUE-330", headers=keys.customer)
    ).status_code == 200

    response = await client.patch(
        "/v1/products/MUG-BLUE-330", json={"active": False}, headers=keys.staff
    )
    assert response.status_code == 200
    assert response.json()["active"] is False
    [_, record] = await audit_records(database, "MUG-BLUE-330")
    assert record.before is not None
    assert record.before["active"] is True
    assert record.after is not None
    assert record.after["active"] is False

    # Customers: as if it did not exist.
    got = await client.get("/v1/products/MUG-BLUE-330", headers=keys.customer)
    assert_problem(got, 404, "not-found")
    stock = await client.get("/v1/inventory/MUG-BLUE-330", headers=keys.customer)
    assert_problem(stock, 404, "not-found")
    for query in ("", "?active=true"):
        listed = await client.get(f"/v1/products{query}", headers=keys.customer)
        assert [p["sku"] for p in listed.json()["data"]] == ["KEEP-1"], query
    inactive = await client.get("/v1/products?active=false", headers=keys.customer)
    assert inactive.json() == {"data": [], "next_cursor": None}

    # Everyone else still sees it.
    for role in ("admin", "staff", "service"):
        headers = keys.for_role(role)
        got = await client.get("/v1/products/MUG-BLUE-330", headers=headers)
        assert got.status_code == 200, role
        assert got.json()["active"] is False
        listed = await client.get("/v1/products", headers=headers)
        assert {p["sku"] for p in listed.json()["data"]} == {"KEEP-1", "MUG-BLUE-330"}
        stock = await client.get("/v1/inventory/MUG-BLUE-330", headers=headers)
        assert stock.status_code == 200, role
        assert stock.json()["sku"] == "MUG-BLUE-330"

    # And it can come back.
    again = await client.patch(
        "/v1/products/MUG-BLUE-330", json={"active": True}, headers=keys.staff
    )
    assert again.json()["version"] == 3
    assert (await client.get("/v1/products/MUG-BLUE-330", headers=keys.customer)).status_code == 200


async def test_customer_and_service_read_active_products(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    created = await create(client, keys)
    for role in ("customer", "service"):
        response = await client.get("/v1/products/MUG-BLUE-330", headers=keys.for_role(role))
        assert response.status_code == 200
        assert response.json() == created
        listed = await client.get("/v1/products", headers=keys.for_role(role))
        assert listed.json() == {"data": [created], "next_cursor": None}


async def test_concurrent_updates_without_if_match_all_apply(
    client: httpx.AsyncClient, database: Database, keys: Keys
) -> None:
    """Without a precondition, concurrent PATCHes queue on the row; none is refused and
    each one bumps the version once."""
    await create(client, keys, "HOT-1")
    responses = await asyncio.gather(
        *(
            client.patch("/v1/products/HOT-1", json={"name": f"Name {i}"}, headers=keys.staff)
            for i in range(8)
        )
    )
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    assert sorted(r.json()["version"] for r in responses) == list(range(2, 10))
    final = (await client.get("/v1/products/HOT-1", headers=keys.staff)).json()
    assert final["version"] == 9
    assert len(await audit_records(database, "HOT-1")) == 9
