"""Suppliers and the terms on which they sell us each product (issue 4, point 1), over HTTP.

Suppliers: create (with the connector that carries purchase orders to them), list, read,
update with ``If-Match``. Supplier products under ``/v1/products/{sku}/suppliers``: the
highest priority is the preferred supplier, ties going to the one added first. Every
mutation leaves an audit record with its before and after.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from stockflow.audit import repository as audit_repository
from stockflow.auth.roles import Principal
from stockflow.db.engine import Database
from stockflow.db.models import AuditRecord, Product, Supplier, SupplierProduct
from stockflow.errors import AlreadyExists, PreconditionFailed
from stockflow.ids import new_id
from stockflow.purchasing import service as purchasing_service
from stockflow.purchasing.schemas import SupplierProductCreate, SupplierUpdate
from tests.assertions import assert_invalid, assert_problem
from tests.conftest import Keys
from tests.supplier_links import links_of as shared_links_of
from tests.supplier_links import post_link

SKU = "SUP-MUG"
REPLAYED = "Idempotent-Replayed"
SERVER_OWNED = {"id", "created_at", "updated_at"}


def supplier_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Stoneware Bros.",
        "contact_email": "sales@stoneware.example",
        "lead_time_days": 10,
        "connector": {"type": "email", "to": "orders@stoneware.example"},
    }
    body.update(overrides)
    return body


async def create_supplier(
    client: httpx.AsyncClient, keys: Keys, **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/suppliers", json=supplier_body(**overrides), headers=keys.staff
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def create_product(client: httpx.AsyncClient, keys: Keys, sku: str = SKU) -> None:
    response = await client.post(
        "/v1/products",
        headers=keys.staff,
        json={"sku": sku, "name": sku, "unit_price": 1290, "currency": "EUR"},
    )
    assert response.status_code == 201, response.text


def link_body(supplier_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "supplier_id": supplier_id,
        "supplier_sku": "SB-MUG-330",
        "cost_price": 540,
        "currency": "EUR",
        "pack_size": 12,
        "min_order_qty": 24,
        "lead_time_days": 5,
        "priority": 10,
    }
    body.update(overrides)
    return body


async def add_link(
    client: httpx.AsyncClient, keys: Keys, supplier_id: str, sku: str = SKU, **overrides: Any
) -> dict[str, Any]:
    return await post_link(client, keys, sku, link_body(supplier_id, **overrides))


async def links_of(client: httpx.AsyncClient, keys: Keys, sku: str = SKU) -> list[dict[str, Any]]:
    return await shared_links_of(client, keys, sku)


def preferred_of(links: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    return [(link["supplier_id"], link["preferred"]) for link in links]


async def audit_records(
    database: Database, resource_type: str, resource_id: str
) -> list[AuditRecord]:
    async with database.transaction(write=False) as session:
        return await audit_repository.for_resource(session, resource_type, resource_id)


async def count(database: Database, model: type[Supplier] | type[SupplierProduct]) -> int:
    async with database.transaction(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None
    return parsed


def without_server_owned(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in SERVER_OWNED}


@pytest.fixture
async def product(client: httpx.AsyncClient, keys: Keys) -> str:
    await create_product(client, keys)
    return SKU


@pytest.fixture
async def supplier(client: httpx.AsyncClient, keys: Keys) -> dict[str, Any]:
    return await create_supplier(client, keys)


# --- creating a supplier --------------------------------------------------------------------


async def test_create_answers_the_supplier_with_etag_and_location(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    response = await client.post("/v1/suppliers", json=supplier_body(), headers=keys.staff)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"].startswith("sup_")
    assert without_server_owned(body) == {
        "name": "Stoneware Bros.",
        "contact_email": "sales@stoneware.example",
        "lead_time_days": 10,
        "connector": {"type": "email", "to": "orders@stoneware.example"},
        "active": True,
        "version": 1,
    }
    assert body["created_at"] == body["updated_at"]
    assert parse_time(body["created_at"]).utcoffset() == timedelta(0)
    assert response.headers["etag"] == f'"{body["id"]}.1"'
    assert response.headers["location"] == f"/v1/suppliers/{body['id']}"

    read = await client.get(response.headers["location"], headers=keys.staff)
    assert read.status_code == 200
    assert read.json() == body
    assert read.headers["etag"] == response.headers["etag"]


async def test_create_defaults_to_a_manual_connector_and_a_week(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    response = await client.post("/v1/suppliers", json={"name": "Plain"}, headers=keys.admin)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["connector"] == {"type": "manual"}
    assert body["lead_time_days"] == 7
    assert body["contact_email"] is None
    assert body["active"] is True


@pytest.mark.parametrize(
    ("connector", "stored"),
    [
        ({"type": "manual"}, {"type": "manual"}),
        (
            {"type": "email", "to": "po@supplier.example"},
            {"type": "email", "to": "po@supplier.example"},
        ),
        (
            {"type": "webhook", "url": "https://supplier.example/stockflow/po"},
            {"type": "webhook", "url": "https://supplier.example/stockflow/po"},
        ),
    ],
    ids=["manual", "email", "webhook"],
)
async def test_each_connector_type_is_stored_as_given(
    client: httpx.AsyncClient, keys: Keys, connector: dict[str, str], stored: dict[str, str]
) -> None:
    created = await create_supplier(client, keys, connector=connector)
    assert created["connector"] == stored
    read = await client.get(f"/v1/suppliers/{created['id']}", headers=keys.service)
    assert read.json()["connector"] == stored


@pytest.mark.parametrize(
    ("connector", "location", "message_part"),
    [
        ({"type": "fax", "number": "+49 30 1234"}, "body.connector", "fax"),
        ({"to": "po@supplier.example"}, "body.connector", "type"),
        ({"type": "email"}, "body.connector.email.to", "Field required"),
        ({"type": "email", "to": "not-an-address"}, "body.connector.email.to", "email"),
        ({"type": "webhook"}, "body.connector.webhook.url", "Field required"),
        ({"type": "webhook", "url": "not a url"}, "body.connector.webhook.url", "URL"),
        ({"type": "webhook", "url": "ftp://supplier.example/po"}, "body.connector.webhook.url", ""),
        ({"type": "manual", "to": "po@x.example"}, "body.connector.manual.to", "unknown field"),
        ("email", "body.connector", ""),
    ],
    ids=[
        "unknown-type",
        "no-type",
        "email-without-to",
        "email-bad-to",
        "webhook-without-url",
        "webhook-bad-url",
        "webhook-not-http",
        "manual-with-extra-field",
        "not-an-object",
    ],
)
async def test_an_invalid_connector_is_422_naming_the_field(
    client: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    connector: object,
    location: str,
    message_part: str,
) -> None:
    response = await client.post(
        "/v1/suppliers", json=supplier_body(connector=connector), headers=keys.staff
    )
    assert_invalid(response, location, message_part)
    assert await count(database, Supplier) == 0


@pytest.mark.parametrize(
    ("overrides", "location", "message_part"),
    [
        ({"contact_email": "no-at-sign"}, "body.contact_email", "email"),
        ({"contact_email": "a@b@c.example"}, "body.contact_email", "email"),
        ({"name": ""}, "body.name", "at least 1"),
        ({"name": "   "}, "body.name", "at least 1"),
        ({"name": "x" * 201}, "body.name", "at most 200"),
        ({"lead_time_days": -1}, "body.lead_time_days", "greater than or equal to 0"),
        ({"lead_time_days": 366}, "body.lead_time_days", "less than or equal to 365"),
        ({"lead_time_days": "7"}, "body.lead_time_days", "integer"),
        ({"lead_time_days": 7.5}, "body.lead_time_days", "integer"),
        ({"active": "maybe"}, "body.active", "boolean"),
        ({"fax": "+49 30 1234"}, "body.fax", "unknown field"),
        ({"id": "sup_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"}, "body.id", "read-only field"),
        ({"version": 4}, "body.version", "read-only field"),
        ({"created_at": "2026-01-01T00:00:00Z"}, "body.created_at", "read-only field"),
    ],
    ids=lambda value: str(value)[:40],
)
async def test_an_invalid_supplier_is_422_naming_the_field(
    client: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    overrides: dict[str, Any],
    location: str,
    message_part: str,
) -> None:
    response = await client.post(
        "/v1/suppliers", json=supplier_body(**overrides), headers=keys.staff
    )
    assert_invalid(response, location, message_part)
    assert await count(database, Supplier) == 0


async def test_a_supplier_without_a_name_is_422(client: httpx.AsyncClient, keys: Keys) -> None:
    body = supplier_body()
    del body["name"]
    response = await client.post("/v1/suppliers", json=body, headers=keys.staff)
    assert_invalid(response, "body.name", "Field required")


async def test_create_writes_an_audit_record(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    response = await client.post("/v1/suppliers", json=supplier_body(), headers=keys.admin)
    assert response.status_code == 201
    created = response.json()

    [record] = await audit_records(database, "supplier", created["id"])
    assert record.action == "supplier.created"
    assert (record.actor_id, record.actor_role) == (keys.ids["admin"], "admin")
    assert record.before is None
    assert record.after == created
    assert record.request_id == response.headers["x-request-id"]


async def test_a_replayed_create_returns_the_same_supplier_and_creates_one(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    headers = {**keys.staff, "Idempotency-Key": "supplier-create-1"}
    first = await client.post("/v1/suppliers", json=supplier_body(), headers=headers)
    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers

    again = await client.post("/v1/suppliers", json=supplier_body(), headers=headers)

    assert again.status_code == 201, again.text
    assert again.headers[REPLAYED] == "true"
    assert again.content == first.content
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["location"] == first.headers["location"]
    assert await count(database, Supplier) == 1
    assert len(await audit_records(database, "supplier", first.json()["id"])) == 1

    other_body = await client.post(
        "/v1/suppliers", json=supplier_body(name="Someone else"), headers=headers
    )
    assert_problem(other_body, 422, "idempotency-key-reused")
    assert await count(database, Supplier) == 1


async def test_without_a_key_two_creates_make_two_suppliers(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    first = await create_supplier(client, keys)
    second = await create_supplier(client, keys)
    assert first["id"] != second["id"]
    assert await count(database, Supplier) == 2


# --- listing and reading ------------------------------------------------------------------


async def test_list_pages_newest_first_with_a_cursor(client: httpx.AsyncClient, keys: Keys) -> None:
    ids = [(await create_supplier(client, keys, name=f"Supplier {n}"))["id"] for n in range(5)]
    newest_first = list(reversed(ids))

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get("/v1/suppliers", params=params, headers=keys.service)
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        assert len(page["data"]) <= 2
        seen.extend(s["id"] for s in page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == newest_first

    whole = await client.get("/v1/suppliers", headers=keys.staff)
    assert [s["id"] for s in whole.json()["data"]] == newest_first
    assert whole.json()["next_cursor"] is None


async def test_list_filters_by_active(client: httpx.AsyncClient, keys: Keys) -> None:
    active = await create_supplier(client, keys, name="Active")
    retired = await create_supplier(client, keys, name="Retired", active=False)
    later = await create_supplier(client, keys, name="Later")

    def ids(response: httpx.Response) -> list[str]:
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()["data"]]

    everything = await client.get("/v1/suppliers", headers=keys.staff)
    assert ids(everything) == [later["id"], retired["id"], active["id"]]
    only_active = await client.get("/v1/suppliers", params={"active": "true"}, headers=keys.staff)
    assert ids(only_active) == [later["id"], active["id"]]
    inactive = await client.get("/v1/suppliers", params={"active": "false"}, headers=keys.staff)
    assert ids(inactive) == [retired["id"]]


async def test_the_active_filter_pages_too(client: httpx.AsyncClient, keys: Keys) -> None:
    wanted = []
    for n in range(4):
        wanted.append((await create_supplier(client, keys, name=f"A{n}"))["id"])
        await create_supplier(client, keys, name=f"I{n}", active=False)
    first = (
        await client.get("/v1/suppliers", params={"active": "true", "limit": 3}, headers=keys.staff)
    ).json()
    second = (
        await client.get(
            "/v1/suppliers",
            params={"active": "true", "limit": 3, "cursor": first["next_cursor"]},
            headers=keys.staff,
        )
    ).json()
    assert [s["id"] for s in first["data"] + second["data"]] == list(reversed(wanted))
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "status", "slug"),
    [
        ({"limit": 0}, 422, "validation-error"),
        ({"limit": 101}, 422, "validation-error"),
        ({"cursor": "not-a-cursor"}, 422, "invalid-cursor"),
        ({"active": "maybe"}, 422, "validation-error"),
    ],
    ids=["limit-0", "limit-101", "bad-cursor", "bad-active"],
)
async def test_bad_list_parameters_are_422(
    client: httpx.AsyncClient, keys: Keys, params: dict[str, Any], status: int, slug: str
) -> None:
    response = await client.get("/v1/suppliers", params=params, headers=keys.staff)
    assert_problem(response, status, slug)


async def test_an_empty_list(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.get("/v1/suppliers", headers=keys.staff)
    assert response.json() == {"data": [], "next_cursor": None}


async def test_get_an_unknown_supplier_is_404(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.get("/v1/suppliers/sup_01KB3J5Q2W8Z6Y4X0V9T7S5R3P", headers=keys.staff)
    body = assert_problem(response, 404, "not-found")
    assert "sup_01KB3J5Q2W8Z6Y4X0V9T7S5R3P" in body["detail"]


@pytest.mark.parametrize("role", ["customer"])
async def test_customers_see_no_suppliers(
    client: httpx.AsyncClient, keys: Keys, supplier: dict[str, Any], role: str
) -> None:
    for path in ("/v1/suppliers", f"/v1/suppliers/{supplier['id']}"):
        assert_problem(await client.get(path, headers=keys.for_role(role)), 403, "forbidden")


# --- updating a supplier ------------------------------------------------------------------


async def test_patch_with_the_current_etag_changes_the_given_fields(
    client: httpx.AsyncClient, keys: Keys, database: Database, supplier: dict[str, Any]
) -> None:
    url = f"/v1/suppliers/{supplier['id']}"
    etag = (await client.get(url, headers=keys.staff)).headers["etag"]

    response = await client.patch(
        url,
        json={
            "lead_time_days": 14,
            "connector": {"type": "webhook", "url": "https://s.example/po"},
        },
        headers={**keys.staff, "If-Match": etag},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["lead_time_days"] == 14
    assert body["connector"] == {"type": "webhook", "url": "https://s.example/po"}
    assert body["name"] == supplier["name"]
    assert body["contact_email"] == supplier["contact_email"]
    assert body["version"] == 2
    assert body["created_at"] == supplier["created_at"]
    assert parse_time(body["updated_at"]) > parse_time(supplier["updated_at"])
    assert response.headers["etag"] == f'"{supplier["id"]}.2"'
    assert response.headers["etag"] != etag
    read = await client.get(url, headers=keys.staff)
    assert read.json() == body
    assert read.headers["etag"] == response.headers["etag"]

    created, updated = await audit_records(database, "supplier", supplier["id"])
    assert created.action == "supplier.created"
    assert updated.action == "supplier.updated"
    assert (updated.actor_id, updated.actor_role) == (keys.ids["staff"], "staff")
    assert updated.before == supplier
    assert updated.after == body


async def test_patch_with_a_stale_etag_is_412_and_changes_nothing(
    client: httpx.AsyncClient, keys: Keys, database: Database, supplier: dict[str, Any]
) -> None:
    url = f"/v1/suppliers/{supplier['id']}"
    stale = f'"{supplier["id"]}.1"'
    first = await client.patch(
        url, json={"name": "Renamed"}, headers={**keys.staff, "If-Match": stale}
    )
    assert first.status_code == 200, first.text

    response = await client.patch(
        url,
        json={"name": "Lost update", "active": False},
        headers={**keys.staff, "If-Match": stale},
    )

    body = assert_problem(
        response, 412, "precondition-failed", current_etag=f'"{supplier["id"]}.2"'
    )
    assert supplier["id"] in body["detail"]
    read = await client.get(url, headers=keys.staff)
    assert read.json() == first.json()
    assert read.json()["name"] == "Renamed"
    assert read.json()["active"] is True
    assert len(await audit_records(database, "supplier", supplier["id"])) == 2


async def test_patch_without_if_match_applies(
    client: httpx.AsyncClient, keys: Keys, supplier: dict[str, Any]
) -> None:
    response = await client.patch(
        f"/v1/suppliers/{supplier['id']}", json={"active": False}, headers=keys.admin
    )
    assert response.status_code == 200, response.text
    assert response.json()["active"] is False
    listed = await client.get("/v1/suppliers", params={"active": "false"}, headers=keys.staff)
    assert [s["id"] for s in listed.json()["data"]] == [supplier["id"]]


async def test_patch_accepts_a_wildcard_or_a_list_of_etags(
    client: httpx.AsyncClient, keys: Keys, supplier: dict[str, Any]
) -> None:
    url = f"/v1/suppliers/{supplier['id']}"
    star = await client.patch(url, json={"name": "Star"}, headers={**keys.staff, "If-Match": "*"})
    assert star.status_code == 200, star.text
    listed = await client.patch(
        url,
        json={"name": "Listed"},
        headers={**keys.staff, "If-Match": f'"other.9", {star.headers["etag"]}'},
    )
    assert listed.status_code == 200, listed.text
    assert listed.json()["version"] == 3


async def test_patch_clears_the_contact_email_with_null(
    client: httpx.AsyncClient, keys: Keys, supplier: dict[str, Any]
) -> None:
    response = await client.patch(
        f"/v1/suppliers/{supplier['id']}", json={"contact_email": None}, headers=keys.staff
    )
    assert response.status_code == 200, response.text
    assert response.json()["contact_email"] is None


@pytest.mark.parametrize("field", ["name", "lead_time_days", "connector", "active"])
async def test_patch_with_null_for_a_required_field_is_422(
    client: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    supplier: dict[str, Any],
    field: str,
) -> None:
    url = f"/v1/suppliers/{supplier['id']}"
    response = await client.patch(url, json={field: None}, headers=keys.staff)
    assert_invalid(response, f"body.{field}", "cannot be null")
    assert (await client.get(url, headers=keys.staff)).json() == supplier
    assert len(await audit_records(database, "supplier", supplier["id"])) == 1


@pytest.mark.parametrize(
    ("change", "location", "message_part"),
    [
        ({"id": "sup_X"}, "body.id", "read-only field"),
        ({"version": 7}, "body.version", "read-only field"),
        ({"fax": "1"}, "body.fax", "unknown field"),
        ({"contact_email": "nope"}, "body.contact_email", "email"),
        ({"lead_time_days": -3}, "body.lead_time_days", "greater than or equal to 0"),
        ({"connector": {"type": "email"}}, "body.connector.email.to", "Field required"),
        ({"connector": {"type": "carrier-pigeon"}}, "body.connector", "carrier-pigeon"),
    ],
    ids=["id", "version", "unknown", "email", "lead-time", "connector-to", "connector-type"],
)
async def test_an_invalid_patch_is_422_and_changes_nothing(
    client: httpx.AsyncClient,
    keys: Keys,
    supplier: dict[str, Any],
    change: dict[str, Any],
    location: str,
    message_part: str,
) -> None:
    url = f"/v1/suppliers/{supplier['id']}"
    response = await client.patch(url, json=change, headers=keys.staff)
    assert_invalid(response, location, message_part)
    assert (await client.get(url, headers=keys.staff)).json() == supplier


async def test_a_patch_that_changes_nothing_keeps_the_version_and_writes_no_audit(
    client: httpx.AsyncClient, keys: Keys, database: Database, supplier: dict[str, Any]
) -> None:
    url = f"/v1/suppliers/{supplier['id']}"
    for change in ({}, {"name": supplier["name"], "connector": supplier["connector"]}):
        response = await client.patch(url, json=change, headers=keys.staff)
        assert response.status_code == 200, response.text
        assert response.json() == supplier
        assert response.headers["etag"] == f'"{supplier["id"]}.1"'
    assert len(await audit_records(database, "supplier", supplier["id"])) == 1


async def test_patch_an_unknown_supplier_is_404(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.patch(
        "/v1/suppliers/sup_01KB3J5Q2W8Z6Y4X0V9T7S5R3P", json={"name": "x"}, headers=keys.staff
    )
    assert_problem(response, 404, "not-found")


async def test_service_may_read_but_not_change_a_supplier(
    client: httpx.AsyncClient, keys: Keys, supplier: dict[str, Any]
) -> None:
    url = f"/v1/suppliers/{supplier['id']}"
    assert (await client.get(url, headers=keys.service)).status_code == 200
    response = await client.patch(url, json={"name": "Hijacked"}, headers=keys.service)
    assert_problem(response, 403, "forbidden")
    assert (await client.get(url, headers=keys.staff)).json() == supplier


# --- supplier products --------------------------------------------------------------------


async def test_add_a_supplier_to_a_product(
    client: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    product: str,
    supplier: dict[str, Any],
) -> None:
    response = await client.post(
        f"/v1/products/{product}/suppliers", json=link_body(supplier["id"]), headers=keys.staff
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"].startswith("spr_")
    assert without_server_owned(body) == {
        "sku": SKU,
        "supplier_id": supplier["id"],
        "supplier_sku": "SB-MUG-330",
        "cost_price": 540,
        "currency": "EUR",
        "pack_size": 12,
        "min_order_qty": 24,
        "lead_time_days": 5,
        "priority": 10,
        "preferred": True,
        "version": 1,
    }
    assert body["created_at"] == body["updated_at"]
    assert await links_of(client, keys) == [body]

    [record] = await audit_records(database, "supplier_product", body["id"])
    assert record.action == "supplier_product.created"
    assert (record.actor_id, record.actor_role) == (keys.ids["staff"], "staff")
    assert record.before is None
    assert record.after == body


async def test_supplier_product_defaults(
    client: httpx.AsyncClient, keys: Keys, product: str, supplier: dict[str, Any]
) -> None:
    response = await client.post(
        f"/v1/products/{product}/suppliers",
        json={
            "supplier_id": supplier["id"],
            "supplier_sku": "S-1",
            "cost_price": 0,
            "currency": "USD",
        },
        headers=keys.admin,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["pack_size"], body["min_order_qty"], body["priority"]) == (1, 1, 0)
    assert body["lead_time_days"] is None
    assert body["cost_price"] == 0
    assert body["preferred"] is True


async def test_the_highest_priority_is_preferred_and_listed_first(
    client: httpx.AsyncClient, keys: Keys, product: str
) -> None:
    low = await create_supplier(client, keys, name="Low")
    high = await create_supplier(client, keys, name="High")
    middle = await create_supplier(client, keys, name="Middle")

    added_low = await add_link(client, keys, low["id"], priority=-5)
    assert added_low["preferred"] is True
    added_high = await add_link(client, keys, high["id"], priority=50)
    assert added_high["preferred"] is True
    added_middle = await add_link(client, keys, middle["id"], priority=10)
    assert added_middle["preferred"] is False

    assert preferred_of(await links_of(client, keys)) == [
        (high["id"], True),
        (middle["id"], False),
        (low["id"], False),
    ]


async def test_equal_priorities_prefer_the_supplier_added_first(
    client: httpx.AsyncClient, keys: Keys, product: str
) -> None:
    # Created in the reverse order of their links, so neither the supplier's id nor its
    # name decides the tie.
    second = await create_supplier(client, keys, name="A second")
    first = await create_supplier(client, keys, name="Z first")
    lower = await create_supplier(client, keys, name="Lower")

    assert (await add_link(client, keys, first["id"], priority=3))["preferred"] is True
    assert (await add_link(client, keys, lower["id"], priority=2))["preferred"] is False
    assert (await add_link(client, keys, second["id"], priority=3))["preferred"] is False

    assert preferred_of(await links_of(client, keys)) == [
        (first["id"], True),
        (second["id"], False),
        (lower["id"], False),
    ]


async def test_each_product_has_its_own_preferred_supplier(
    client: httpx.AsyncClient, keys: Keys, product: str
) -> None:
    await create_product(client, keys, "SUP-PLATE")
    one = await create_supplier(client, keys, name="One")
    two = await create_supplier(client, keys, name="Two")
    await add_link(client, keys, one["id"], priority=1)
    await add_link(client, keys, two["id"], priority=2)
    await add_link(client, keys, one["id"], sku="SUP-PLATE", priority=9)
    await add_link(client, keys, two["id"], sku="SUP-PLATE", priority=0)

    assert preferred_of(await links_of(client, keys)) == [(two["id"], True), (one["id"], False)]
    plate = await links_of(client, keys, "SUP-PLATE")
    assert preferred_of(plate) == [(one["id"], True), (two["id"], False)]
    assert {link["sku"] for link in plate} == {"SUP-PLATE"}


async def test_a_product_without_suppliers_lists_none(
    client: httpx.AsyncClient, keys: Keys, product: str
) -> None:
    assert await links_of(client, keys) == []


async def test_the_same_supplier_twice_is_409_and_keeps_the_first(
    client: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    product: str,
    supplier: dict[str, Any],
) -> None:
    original = await add_link(client, keys, supplier["id"])

    response = await client.post(
        f"/v1/products/{product}/suppliers",
        json=link_body(supplier["id"], cost_price=1, supplier_sku="OTHER", priority=99),
        headers=keys.staff,
    )

    body = assert_problem(response, 409, "already-exists", sku=SKU, supplier_id=supplier["id"])
    assert supplier["id"] in body["detail"]
    assert await links_of(client, keys) == [original]
    assert await count(database, SupplierProduct) == 1
    assert len(await audit_records(database, "supplier_product", original["id"])) == 1


async def test_an_unknown_supplier_is_422_at_supplier_id(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: str
) -> None:
    response = await client.post(
        f"/v1/products/{product}/suppliers",
        json=link_body("sup_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"),
        headers=keys.staff,
    )
    assert_invalid(response, "body.supplier_id", "unknown supplier")
    assert await count(database, SupplierProduct) == 0


async def test_an_unknown_sku_is_404(
    client: httpx.AsyncClient, keys: Keys, database: Database, supplier: dict[str, Any]
) -> None:
    base = "/v1/products/NO-SUCH-SKU/suppliers"
    responses = [
        await client.get(base, headers=keys.staff),
        await client.post(base, json=link_body(supplier["id"]), headers=keys.staff),
        await client.patch(f"{base}/{supplier['id']}", json={"priority": 1}, headers=keys.staff),
        await client.delete(f"{base}/{supplier['id']}", headers=keys.staff),
    ]
    for response in responses:
        body = assert_problem(response, 404, "not-found")
        assert "NO-SUCH-SKU" in body["detail"]
    assert await count(database, SupplierProduct) == 0


@pytest.mark.parametrize(
    ("overrides", "location", "message_part"),
    [
        ({"pack_size": 0}, "body.pack_size", "greater than or equal to 1"),
        ({"min_order_qty": 0}, "body.min_order_qty", "greater than or equal to 1"),
        ({"cost_price": -1}, "body.cost_price", "greater than or equal to 0"),
        ({"cost_price": 10**12 + 1}, "body.cost_price", "less than or equal to"),
        ({"cost_price": 5.4}, "body.cost_price", "integer"),
        ({"pack_size": "12"}, "body.pack_size", "integer"),
        ({"lead_time_days": -1}, "body.lead_time_days", "greater than or equal to 0"),
        ({"priority": 1001}, "body.priority", "less than or equal to 1000"),
        ({"currency": "EURO"}, "body.currency", ""),
        ({"currency": "XYZ"}, "body.currency", ""),
        ({"supplier_sku": ""}, "body.supplier_sku", "at least 1"),
        ({"preferred": True}, "body.preferred", "read-only field"),
        ({"sku": "OTHER"}, "body.sku", "read-only field"),
        ({"discount": 5}, "body.discount", "unknown field"),
    ],
    ids=lambda value: str(value)[:40],
)
async def test_invalid_terms_are_422_before_the_database_sees_them(
    client: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    product: str,
    supplier: dict[str, Any],
    overrides: dict[str, Any],
    location: str,
    message_part: str,
) -> None:
    response = await client.post(
        f"/v1/products/{product}/suppliers",
        json=link_body(supplier["id"], **overrides),
        headers=keys.staff,
    )
    assert_invalid(response, location, message_part)
    assert await count(database, SupplierProduct) == 0


@pytest.mark.parametrize(
    ("column", "value"),
    [("pack_size", 0), ("min_order_qty", 0), ("cost_price", -1), ("lead_time_days", -1)],
)
async def test_the_database_refuses_terms_the_api_would_refuse(
    database: Database, column: str, value: int
) -> None:
    """The CHECK constraints hold on their own, for writers that skip the API."""
    async with database.transaction() as session:
        product = Product(
            id=new_id("prod"), sku="CHECK-1", name="Check", unit_price=1, currency="EUR"
        )
        supplier = Supplier(id=new_id("sup"), name="Check", lead_time_days=1, connector={})
        session.add_all([product, supplier])
        await session.flush()
    terms: dict[str, Any] = {
        "supplier_sku": "C",
        "cost_price": 1,
        "currency": "EUR",
        "pack_size": 1,
        "min_order_qty": 1,
        "lead_time_days": None,
        "priority": 0,
    }
    terms[column] = value

    async def insert() -> None:
        async with database.transaction() as session:
            session.add(
                SupplierProduct(
                    id=new_id("spr"), product_id=product.id, supplier_id=supplier.id, **terms
                )
            )

    with pytest.raises(IntegrityError, match=f"{column}|CHECK|check"):
        await insert()
    assert await count(database, SupplierProduct) == 0


async def test_patch_changes_terms_and_writes_before_and_after(
    client: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    product: str,
    supplier: dict[str, Any],
) -> None:
    original = await add_link(client, keys, supplier["id"])
    url = f"/v1/products/{product}/suppliers/{supplier['id']}"

    response = await client.patch(
        url,
        json={
            "cost_price": 610,
            "currency": "USD",
            "pack_size": 6,
            "min_order_qty": 6,
            "supplier_sku": "SB-MUG-330-V2",
            "lead_time_days": None,
        },
        headers=keys.admin,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {
        **original,
        "cost_price": 610,
        "currency": "USD",
        "pack_size": 6,
        "min_order_qty": 6,
        "supplier_sku": "SB-MUG-330-V2",
        "lead_time_days": None,
        "version": 2,
        "updated_at": body["updated_at"],
    }
    assert parse_time(body["updated_at"]) > parse_time(original["updated_at"])
    assert await links_of(client, keys) == [body]

    created, updated = await audit_records(database, "supplier_product", original["id"])
    assert created.action == "supplier_product.created"
    assert updated.action == "supplier_product.updated"
    assert (updated.actor_id, updated.actor_role) == (keys.ids["admin"], "admin")
    assert updated.before == original
    assert updated.after == body


async def test_patch_can_change_the_preferred_supplier(
    client: httpx.AsyncClient, keys: Keys, product: str
) -> None:
    usual = await create_supplier(client, keys, name="Usual")
    backup = await create_supplier(client, keys, name="Backup")
    await add_link(client, keys, usual["id"], priority=10)
    await add_link(client, keys, backup["id"], priority=1)
    assert preferred_of(await links_of(client, keys)) == [
        (usual["id"], True),
        (backup["id"], False),
    ]

    promoted = await client.patch(
        f"/v1/products/{SKU}/suppliers/{backup['id']}", json={"priority": 20}, headers=keys.staff
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["preferred"] is True
    assert preferred_of(await links_of(client, keys)) == [
        (backup["id"], True),
        (usual["id"], False),
    ]

    # Back to a tie: the supplier added first wins it again.
    tied = await client.patch(
        f"/v1/products/{SKU}/suppliers/{backup['id']}", json={"priority": 10}, headers=keys.staff
    )
    assert tied.json()["preferred"] is False
    assert preferred_of(await links_of(client, keys)) == [
        (usual["id"], True),
        (backup["id"], False),
    ]


@pytest.mark.parametrize(
    "field", ["supplier_sku", "cost_price", "currency", "pack_size", "min_order_qty", "priority"]
)
async def test_patch_with_null_for_a_required_term_is_422(
    client: httpx.AsyncClient, keys: Keys, product: str, supplier: dict[str, Any], field: str
) -> None:
    original = await add_link(client, keys, supplier["id"])
    response = await client.patch(
        f"/v1/products/{product}/suppliers/{supplier['id']}", json={field: None}, headers=keys.staff
    )
    assert_invalid(response, f"body.{field}", "cannot be null")
    assert await links_of(client, keys) == [original]


@pytest.mark.parametrize(
    ("change", "location", "message_part"),
    [
        ({"pack_size": 0}, "body.pack_size", "greater than or equal to 1"),
        ({"min_order_qty": 0}, "body.min_order_qty", "greater than or equal to 1"),
        ({"cost_price": -1}, "body.cost_price", "greater than or equal to 0"),
        ({"supplier_id": "sup_other"}, "body.supplier_id", "read-only field"),
        ({"preferred": True}, "body.preferred", "read-only field"),
        ({"discount": 5}, "body.discount", "unknown field"),
    ],
    ids=lambda value: str(value)[:40],
)
async def test_an_invalid_terms_patch_is_422_and_changes_nothing(
    client: httpx.AsyncClient,
    keys: Keys,
    product: str,
    supplier: dict[str, Any],
    change: dict[str, Any],
    location: str,
    message_part: str,
) -> None:
    original = await add_link(client, keys, supplier["id"])
    response = await client.patch(
        f"/v1/products/{product}/suppliers/{supplier['id']}", json=change, headers=keys.staff
    )
    assert_invalid(response, location, message_part)
    assert await links_of(client, keys) == [original]


async def test_a_terms_patch_that_changes_nothing_writes_no_audit(
    client: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    product: str,
    supplier: dict[str, Any],
) -> None:
    original = await add_link(client, keys, supplier["id"])
    response = await client.patch(
        f"/v1/products/{product}/suppliers/{supplier['id']}",
        json={"cost_price": original["cost_price"], "currency": "EUR"},
        headers=keys.staff,
    )
    assert response.status_code == 200, response.text
    assert response.json() == original
    assert len(await audit_records(database, "supplier_product", original["id"])) == 1


async def test_patch_a_supplier_that_does_not_sell_the_product_is_404(
    client: httpx.AsyncClient, keys: Keys, product: str, supplier: dict[str, Any]
) -> None:
    for supplier_id in (supplier["id"], "sup_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"):
        response = await client.patch(
            f"/v1/products/{product}/suppliers/{supplier_id}",
            json={"priority": 1},
            headers=keys.staff,
        )
        assert_problem(response, 404, "not-found")


async def test_delete_removes_the_supplier_from_the_product(
    client: httpx.AsyncClient, keys: Keys, database: Database, product: str
) -> None:
    kept = await create_supplier(client, keys, name="Kept")
    dropped = await create_supplier(client, keys, name="Dropped")
    kept_link = await add_link(client, keys, kept["id"], priority=1)
    dropped_link = await add_link(client, keys, dropped["id"], priority=5)

    response = await client.delete(
        f"/v1/products/{product}/suppliers/{dropped['id']}", headers=keys.staff
    )

    assert response.status_code == 204, response.text
    assert response.content == b""
    listed = await links_of(client, keys)
    assert [link["supplier_id"] for link in listed] == [kept["id"]]
    assert listed[0] == {**kept_link, "preferred": True}
    assert await count(database, SupplierProduct) == 1
    # The supplier itself stays.
    assert (
        await client.get(f"/v1/suppliers/{dropped['id']}", headers=keys.staff)
    ).status_code == 200

    created, removed = await audit_records(database, "supplier_product", dropped_link["id"])
    assert created.action == "supplier_product.created"
    assert removed.action == "supplier_product.removed"
    assert (removed.actor_id, removed.actor_role) == (keys.ids["staff"], "staff")
    assert removed.before == dropped_link
    assert removed.after is None

    again = await client.delete(
        f"/v1/products/{product}/suppliers/{dropped['id']}", headers=keys.staff
    )
    assert_problem(again, 404, "not-found")
    # Removed, the same supplier can be added again.
    readded = await add_link(client, keys, dropped["id"], priority=0)
    assert readded["id"] != dropped_link["id"]


async def test_delete_an_unknown_link_is_404(
    client: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    product: str,
    supplier: dict[str, Any],
) -> None:
    for supplier_id in (supplier["id"], "sup_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"):
        response = await client.delete(
            f"/v1/products/{product}/suppliers/{supplier_id}", headers=keys.staff
        )
        assert_problem(response, 404, "not-found")
    async with database.transaction(write=False) as session:
        removals = await session.scalar(
            select(func.count())
            .select_from(AuditRecord)
            .where(AuditRecord.action == "supplier_product.removed")
        )
    assert removals == 0


async def test_a_replayed_link_creates_one(
    client: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    product: str,
    supplier: dict[str, Any],
) -> None:
    headers = {**keys.staff, "Idempotency-Key": "link-1"}
    url = f"/v1/products/{product}/suppliers"
    first = await client.post(url, json=link_body(supplier["id"]), headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post(url, json=link_body(supplier["id"]), headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers[REPLAYED] == "true"
    assert again.content == first.content
    assert await count(database, SupplierProduct) == 1


@pytest.mark.parametrize("role", ["service", "customer"])
async def test_only_staff_and_admin_touch_supplier_products(
    client: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    product: str,
    supplier: dict[str, Any],
    role: str,
) -> None:
    original = await add_link(client, keys, supplier["id"])
    headers = keys.for_role(role)
    base = f"/v1/products/{product}/suppliers"
    other = await create_supplier(client, keys, name="Other")
    responses = [
        await client.get(base, headers=headers),
        await client.post(base, json=link_body(other["id"]), headers=headers),
        await client.patch(f"{base}/{supplier['id']}", json={"priority": 99}, headers=headers),
        await client.delete(f"{base}/{supplier['id']}", headers=headers),
    ]
    for response in responses:
        assert_problem(response, 403, "forbidden")
    assert await links_of(client, keys) == [original]


# --- concurrency ----------------------------------------------------------------------------


async def test_concurrent_adds_of_one_supplier_give_one_link_and_one_conflict(
    client: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    product: str,
    supplier: dict[str, Any],
) -> None:
    """Two requests adding the same supplier: the loser gets AlreadyExists (409), not a 500
    from the unique constraint, and its transaction leaves nothing behind."""
    actor = Principal.command_line()
    first_added = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with database.transaction() as session:
            await purchasing_service.add_product_supplier(
                session,
                actor=actor,
                sku=product,
                data=SupplierProductCreate.model_validate(link_body(supplier["id"], priority=1)),
            )
            first_added.set()
            await release_first.wait()

    async def second() -> None:
        await first_added.wait()
        async with database.transaction() as session:
            await purchasing_service.add_product_supplier(
                session,
                actor=actor,
                sku=product,
                data=SupplierProductCreate.model_validate(link_body(supplier["id"], priority=2)),
            )

    first_task = asyncio.create_task(first())
    second_task = asyncio.create_task(second())
    await first_added.wait()
    # Time for the second to block on the first's lock (unique index, or BEGIN IMMEDIATE).
    await asyncio.sleep(0.3)
    release_first.set()
    await first_task
    with pytest.raises(AlreadyExists):
        await second_task

    [link] = await links_of(client, keys)
    assert link["priority"] == 1
    assert len(await audit_records(database, "supplier_product", link["id"])) == 1


async def test_concurrent_patches_with_one_etag_let_one_win(
    client: httpx.AsyncClient, keys: Keys, database: Database, supplier: dict[str, Any]
) -> None:
    """The row is locked from the If-Match check to the commit: the second update, holding
    the same ETag, sees the first one's version and fails instead of overwriting it."""
    actor = Principal.command_line()
    etag = f'"{supplier["id"]}.1"'
    first_updated = asyncio.Event()
    release_first = asyncio.Event()

    async def update(name: str, *, hold: bool) -> None:
        async with database.transaction() as session:
            await purchasing_service.update_supplier(
                session,
                actor=actor,
                supplier_id=supplier["id"],
                data=SupplierUpdate(name=name),
                if_match=etag,
            )
            if hold:
                first_updated.set()
                await release_first.wait()

    first_task = asyncio.create_task(update("First", hold=True))
    await first_updated.wait()
    second_task = asyncio.create_task(update("Second", hold=False))
    await asyncio.sleep(0.3)
    release_first.set()
    await first_task
    with pytest.raises(PreconditionFailed):
        await second_task

    read = (await client.get(f"/v1/suppliers/{supplier['id']}", headers=keys.staff)).json()
    assert (read["name"], read["version"]) == ("First", 2)
    assert len(await audit_records(database, "supplier", supplier["id"])) == 2
