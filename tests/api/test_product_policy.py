"""A product's shortage policy and replenishment settings (issue 4, point 2), over HTTP.

``shortage_policy`` (``reject`` | ``backorder``; omitted: the deployment's default),
``replenish_buffer_pct`` (0..500, default 20), ``reorder_point`` / ``reorder_up_to``, and
suppliers given inline on create. A product is never ``backorder`` without a supplier: not
on create, not by PATCH, and not by removing its last supplier. The database's CHECK
constraints hold the same ranges for writes that bypass the services.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from stockflow.app import create_app
from stockflow.audit import repository as audit_repository
from stockflow.auth.roles import Principal
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.db.models import AuditRecord, Product, StockLevel, SupplierProduct
from stockflow.errors import SupplierStillNeeded
from stockflow.purchasing import service as purchasing_service
from tests.assertions import assert_invalid, assert_problem
from tests.conftest import Keys
from tests.supplier_links import links_of as shared_links_of
from tests.supplier_links import post_link

SKU = "POLICY-MUG"
UNKNOWN_SUPPLIER = "sup_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"


def product_body(sku: str = SKU, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sku": sku,
        "name": "Policy mug",
        "unit_price": 1290,
        "currency": "EUR",
    }
    body.update(overrides)
    return body


def link_body(supplier_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "supplier_id": supplier_id,
        "supplier_sku": "SB-MUG-330",
        "cost_price": 540,
        "currency": "EUR",
        "pack_size": 12,
        "min_order_qty": 24,
        "priority": 10,
    }
    body.update(overrides)
    return body


async def create_product(
    client: httpx.AsyncClient, keys: Keys, sku: str = SKU, **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/products", json=product_body(sku, **overrides), headers=keys.staff
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def create_supplier(client: httpx.AsyncClient, keys: Keys, name: str) -> str:
    response = await client.post("/v1/suppliers", json={"name": name}, headers=keys.staff)
    assert response.status_code == 201, response.text
    supplier_id: str = response.json()["id"]
    return supplier_id


async def add_link(
    client: httpx.AsyncClient, keys: Keys, supplier_id: str, sku: str = SKU, **overrides: Any
) -> dict[str, Any]:
    return await post_link(client, keys, sku, link_body(supplier_id, **overrides))


async def links_of(client: httpx.AsyncClient, keys: Keys, sku: str = SKU) -> list[dict[str, Any]]:
    return await shared_links_of(client, keys, sku)


async def read_product(client: httpx.AsyncClient, keys: Keys, sku: str = SKU) -> dict[str, Any]:
    response = await client.get(f"/v1/products/{sku}", headers=keys.staff)
    assert response.status_code == 200, response.text
    read: dict[str, Any] = response.json()
    return read


async def audit_records(
    database: Database, resource_type: str, resource_id: str
) -> list[AuditRecord]:
    async with database.transaction(write=False) as session:
        return await audit_repository.for_resource(session, resource_type, resource_id)


async def catalog_rows(database: Database) -> dict[str, int]:
    """How many products, stock rows, supplier links and audit records of either exist."""
    async with database.transaction(write=False) as session:

        async def count(model: type[Product] | type[StockLevel] | type[SupplierProduct]) -> int:
            return int(await session.scalar(select(func.count()).select_from(model)) or 0)

        audits = await session.scalar(
            select(func.count())
            .select_from(AuditRecord)
            .where(AuditRecord.resource_type.in_(["product", "supplier_product"]))
        )
        return {
            "products": await count(Product),
            "stock_levels": await count(StockLevel),
            "supplier_products": await count(SupplierProduct),
            "audit_records": int(audits or 0),
        }


NOTHING = {"products": 0, "stock_levels": 0, "supplier_products": 0, "audit_records": 0}


async def execute(database: Database, sql: str, **params: Any) -> None:
    async with database.transaction() as session:
        await session.execute(text(sql), params)


# --- defaults -------------------------------------------------------------------------------


async def test_create_defaults_to_reject_buffer_20_and_no_reorder_levels(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    created = await create_product(client, keys)

    policy = {
        k: created[k]
        for k in ("shortage_policy", "replenish_buffer_pct", "reorder_point", "reorder_up_to")
    }
    assert policy == {
        "shortage_policy": "reject",
        "replenish_buffer_pct": 20,
        "reorder_point": None,
        "reorder_up_to": None,
    }
    assert await read_product(client, keys) == created
    assert await links_of(client, keys) == []
    async with database.transaction(write=False) as session:
        row = (
            await session.execute(
                select(
                    Product.shortage_policy,
                    Product.replenish_buffer_pct,
                    Product.reorder_point,
                    Product.reorder_up_to,
                ).where(Product.sku == SKU)
            )
        ).one()
    assert tuple(row) == ("reject", 20, None, None)


def test_the_deployment_default_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.delenv("STOCKFLOW_DEFAULT_SHORTAGE_POLICY", raising=False)
    assert Settings(database_url=database_url).default_shortage_policy == "reject"
    monkeypatch.setenv("STOCKFLOW_DEFAULT_SHORTAGE_POLICY", "backorder")
    assert Settings(database_url=database_url).default_shortage_policy == "backorder"
    monkeypatch.setenv("STOCKFLOW_DEFAULT_SHORTAGE_POLICY", "maybe")
    with pytest.raises(ValueError, match="default_shortage_policy"):
        Settings(database_url=database_url)


@pytest.fixture
async def backorder_client(
    database_url: str, database: Database
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose deployment default is ``backorder``."""
    app = create_app(
        Settings(database_url=database_url, default_shortage_policy="backorder"), database=database
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as c:
        yield c
    await app.state.key_usage.drain()


async def test_the_deployment_default_applies_when_the_policy_is_omitted(
    backorder_client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    client = backorder_client

    refused = await client.post("/v1/products", json=product_body(), headers=keys.staff)
    assert_problem(refused, 422, "backorder-needs-supplier", sku=SKU)
    assert await catalog_rows(database) == NOTHING

    supplier_id = await create_supplier(client, keys, "Stoneware Bros.")
    created = await create_product(client, keys, suppliers=[link_body(supplier_id)])
    assert created["shortage_policy"] == "backorder"
    assert (await read_product(client, keys))["shortage_policy"] == "backorder"
    assert [link["supplier_id"] for link in await links_of(client, keys)] == [supplier_id]

    # A product that names its policy keeps it, whatever the deployment's default.
    named = await create_product(client, keys, "POLICY-REJECT", shortage_policy="reject")
    assert named["shortage_policy"] == "reject"


async def test_the_default_deployment_creates_reject_products_even_with_suppliers(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    supplier_id = await create_supplier(client, keys, "Stoneware Bros.")
    created = await create_product(client, keys, suppliers=[link_body(supplier_id)])
    assert created["shortage_policy"] == "reject"


# --- backorder and inline suppliers ---------------------------------------------------------


async def test_backorder_with_inline_suppliers_lists_them_preferred_first_and_audits_each(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    backup = await create_supplier(client, keys, "Backup Pottery")
    main = await create_supplier(client, keys, "Stoneware Bros.")
    late = await create_supplier(client, keys, "Late Kilns")

    response = await client.post(
        "/v1/products",
        json=product_body(
            shortage_policy="backorder",
            replenish_buffer_pct=35,
            suppliers=[
                link_body(backup, supplier_sku="BK-1", priority=1, pack_size=1, min_order_qty=1),
                link_body(main, supplier_sku="SB-1", priority=10),
                link_body(late, supplier_sku="LK-1", priority=1, lead_time_days=30),
            ],
        ),
        headers=keys.staff,
    )

    assert response.status_code == 201, response.text
    product = response.json()
    assert product["shortage_policy"] == "backorder"
    assert product["replenish_buffer_pct"] == 35
    assert "suppliers" not in product

    links = await links_of(client, keys)
    # Highest priority first; a tie goes to the one given first.
    assert [(link["supplier_id"], link["preferred"]) for link in links] == [
        (main, True),
        (backup, False),
        (late, False),
    ]
    by_supplier = {link["supplier_id"]: link for link in links}
    assert {
        k: by_supplier[main][k]
        for k in ("sku", "supplier_sku", "cost_price", "currency", "pack_size", "min_order_qty")
    } == {
        "sku": SKU,
        "supplier_sku": "SB-1",
        "cost_price": 540,
        "currency": "EUR",
        "pack_size": 12,
        "min_order_qty": 24,
    }
    assert (by_supplier[backup]["pack_size"], by_supplier[backup]["min_order_qty"]) == (1, 1)
    assert by_supplier[late]["lead_time_days"] == 30
    assert by_supplier[main]["lead_time_days"] is None

    [product_record] = await audit_records(database, "product", SKU)
    assert product_record.action == "product.created"
    assert (product_record.actor_id, product_record.actor_role) == (keys.ids["staff"], "staff")
    assert product_record.after == product
    assert product_record.request_id == response.headers["x-request-id"]
    for link in links:
        [record] = await audit_records(database, "supplier_product", link["id"])
        assert record.action == "supplier_product.created"
        assert record.before is None
        assert record.after is not None
        assert record.after["supplier_id"] == link["supplier_id"]
        assert record.after["sku"] == SKU
        assert record.request_id == response.headers["x-request-id"]


@pytest.mark.parametrize("suppliers", [None, []], ids=["omitted", "empty"])
async def test_backorder_without_suppliers_is_422_and_creates_nothing(
    client: httpx.AsyncClient, keys: Keys, database: Database, suppliers: list[Any] | None
) -> None:
    body = product_body(shortage_policy="backorder")
    if suppliers is not None:
        body["suppliers"] = suppliers

    response = await client.post("/v1/products", json=body, headers=keys.staff)

    problem = assert_problem(response, 422, "backorder-needs-supplier", sku=SKU)
    assert "suppliers" in problem["detail"]
    assert "shortage_policy: reject" in problem["detail"]
    assert await catalog_rows(database) == NOTHING
    assert (await client.get(f"/v1/products/{SKU}", headers=keys.staff)).status_code == 404


async def test_an_unknown_inline_supplier_is_422_and_creates_nothing(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    known = await create_supplier(client, keys, "Stoneware Bros.")

    response = await client.post(
        "/v1/products",
        json=product_body(
            shortage_policy="backorder",
            suppliers=[link_body(known), link_body(UNKNOWN_SUPPLIER, priority=1)],
        ),
        headers=keys.staff,
    )

    assert_invalid(response, "body.suppliers.1.supplier_id", "unknown supplier")
    assert await catalog_rows(database) == NOTHING


async def test_a_duplicate_inline_supplier_is_422_and_creates_nothing(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    supplier_id = await create_supplier(client, keys, "Stoneware Bros.")

    response = await client.post(
        "/v1/products",
        json=product_body(
            shortage_policy="backorder",
            suppliers=[link_body(supplier_id), link_body(supplier_id, priority=3)],
        ),
        headers=keys.staff,
    )

    assert_invalid(response, "body.suppliers", "listed twice")
    assert await catalog_rows(database) == NOTHING


async def test_an_invalid_inline_supplier_is_422_naming_its_place_in_the_list(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    supplier_id = await create_supplier(client, keys, "Stoneware Bros.")
    response = await client.post(
        "/v1/products",
        json=product_body(suppliers=[link_body(supplier_id, pack_size=0)]),
        headers=keys.staff,
    )
    assert_invalid(response, "body.suppliers.0.pack_size", "greater than or equal to 1")
    assert await catalog_rows(database) == NOTHING


# --- buffer and reorder levels --------------------------------------------------------------


@pytest.mark.parametrize(
    ("buffer", "message_part"),
    [
        (-1, "greater than or equal to 0"),
        (501, "less than or equal to 500"),
        (12.5, "integer"),
        ("20", "integer"),
        (None, "integer"),
    ],
    ids=["negative", "above-500", "fraction", "string", "null"],
)
async def test_a_buffer_outside_0_to_500_is_422(
    client: httpx.AsyncClient, keys: Keys, database: Database, buffer: object, message_part: str
) -> None:
    response = await client.post(
        "/v1/products", json=product_body(replenish_buffer_pct=buffer), headers=keys.staff
    )
    assert_invalid(response, "body.replenish_buffer_pct", message_part)
    assert await catalog_rows(database) == NOTHING


@pytest.mark.parametrize("buffer", [0, 500])
async def test_the_buffer_bounds_are_accepted(
    client: httpx.AsyncClient, keys: Keys, buffer: int
) -> None:
    created = await create_product(client, keys, replenish_buffer_pct=buffer)
    assert created["replenish_buffer_pct"] == buffer
    assert (await read_product(client, keys))["replenish_buffer_pct"] == buffer


@pytest.mark.parametrize(
    ("levels", "location", "message_part"),
    [
        ({"reorder_up_to": 40}, "body.reorder_up_to", "reorder_up_to needs a reorder_point"),
        (
            {"reorder_point": None, "reorder_up_to": 40},
            "body.reorder_up_to",
            "reorder_up_to needs a reorder_point",
        ),
        (
            {"reorder_point": 10, "reorder_up_to": 9},
            "body.reorder_up_to",
            "reorder_up_to must be at least reorder_point",
        ),
        ({"reorder_point": -1}, "body.reorder_point", "greater than or equal to 0"),
        ({"reorder_point": 2**31}, "body.reorder_point", "less than or equal to"),
        ({"reorder_point": 5, "reorder_up_to": 7.5}, "body.reorder_up_to", "integer"),
    ],
    ids=[
        "up-to-without-point",
        "up-to-with-null-point",
        "up-to-below-point",
        "negative-point",
        "point-beyond-32-bits",
        "fractional-up-to",
    ],
)
async def test_invalid_reorder_levels_are_422(
    client: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    levels: dict[str, Any],
    location: str,
    message_part: str,
) -> None:
    response = await client.post("/v1/products", json=product_body(**levels), headers=keys.staff)
    assert_invalid(response, location, message_part)
    assert await catalog_rows(database) == NOTHING


async def test_an_invalid_point_is_reported_once_not_also_as_a_missing_point(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    response = await client.post(
        "/v1/products",
        json=product_body(reorder_point=-1, reorder_up_to=40),
        headers=keys.staff,
    )
    problem = assert_problem(response, 422, "validation-error")
    assert [error["location"] for error in problem["errors"]] == ["body.reorder_point"]


@pytest.mark.parametrize(
    ("levels", "stored"),
    [
        ({"reorder_point": 10, "reorder_up_to": 40}, (10, 40)),
        ({"reorder_point": 10, "reorder_up_to": 10}, (10, 10)),
        ({"reorder_point": 0}, (0, None)),
    ],
    ids=["pair", "equal", "point-only"],
)
async def test_valid_reorder_levels_are_stored(
    client: httpx.AsyncClient, keys: Keys, levels: dict[str, Any], stored: tuple[int, int | None]
) -> None:
    created = await create_product(client, keys, **levels)
    assert (created["reorder_point"], created["reorder_up_to"]) == stored
    read = await read_product(client, keys)
    assert (read["reorder_point"], read["reorder_up_to"]) == stored


# --- PATCH ----------------------------------------------------------------------------------


async def test_patch_to_backorder_needs_a_supplier_first(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    created = await create_product(client, keys)

    refused = await client.patch(
        f"/v1/products/{SKU}", json={"shortage_policy": "backorder"}, headers=keys.staff
    )
    assert_problem(refused, 422, "backorder-needs-supplier", sku=SKU)
    assert await read_product(client, keys) == created
    assert len(await audit_records(database, "product", SKU)) == 1

    # The refusal holds also when other, valid changes come with it.
    refused = await client.patch(
        f"/v1/products/{SKU}",
        json={"shortage_policy": "backorder", "name": "Renamed"},
        headers=keys.staff,
    )
    assert_problem(refused, 422, "backorder-needs-supplier", sku=SKU)
    assert await read_product(client, keys) == created

    supplier_id = await create_supplier(client, keys, "Stoneware Bros.")
    await add_link(client, keys, supplier_id)
    accepted = await client.patch(
        f"/v1/products/{SKU}",
        json={"shortage_policy": "backorder"},
        headers={**keys.staff, "If-Match": f'"{created["id"]}.1"'},
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["shortage_policy"] == "backorder"
    assert accepted.json()["version"] == 2
    assert accepted.headers["etag"] == f'"{created["id"]}.2"'
    assert accepted.json()["updated_at"] > created["updated_at"]
    assert (await read_product(client, keys))["shortage_policy"] == "backorder"

    _, updated = await audit_records(database, "product", SKU)
    assert updated.action == "product.updated"
    assert updated.before is not None
    assert updated.after is not None
    assert (updated.before["shortage_policy"], updated.after["shortage_policy"]) == (
        "reject",
        "backorder",
    )

    # And back to reject, which never needs a supplier.
    back = await client.patch(
        f"/v1/products/{SKU}", json={"shortage_policy": "reject"}, headers=keys.staff
    )
    assert back.status_code == 200, back.text
    assert back.json()["shortage_policy"] == "reject"


async def test_patch_of_a_backorder_product_answers_and_audits_the_change(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    supplier_id = await create_supplier(client, keys, "Stoneware Bros.")
    created = await create_product(
        client, keys, shortage_policy="backorder", suppliers=[link_body(supplier_id)]
    )

    response = await client.patch(
        f"/v1/products/{SKU}",
        json={"name": "Renamed mug", "replenish_buffer_pct": 50},
        headers=keys.staff,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["replenish_buffer_pct"], body["version"]) == ("Renamed mug", 50, 2)
    assert body["shortage_policy"] == "backorder"
    assert body["updated_at"] > created["updated_at"]
    assert response.headers["etag"] == f'"{created["id"]}.2"'
    assert await read_product(client, keys) == body
    _, updated = await audit_records(database, "product", SKU)
    assert updated.action == "product.updated"
    assert updated.before == created
    assert updated.after == body


async def test_patch_changes_buffer_and_reorder_levels(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await create_product(client, keys)
    response = await client.patch(
        f"/v1/products/{SKU}",
        json={"replenish_buffer_pct": 0, "reorder_point": 5, "reorder_up_to": 50},
        headers=keys.staff,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["replenish_buffer_pct"], body["reorder_point"], body["reorder_up_to"]) == (
        0,
        5,
        50,
    )
    assert await read_product(client, keys) == body


async def test_patch_reorder_point_null_clears_reorder_up_to(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await create_product(client, keys, reorder_point=10, reorder_up_to=40)

    response = await client.patch(
        f"/v1/products/{SKU}", json={"reorder_point": None}, headers=keys.staff
    )

    assert response.status_code == 200, response.text
    assert (response.json()["reorder_point"], response.json()["reorder_up_to"]) == (None, None)
    read = await read_product(client, keys)
    assert (read["reorder_point"], read["reorder_up_to"]) == (None, None)
    assert read["version"] == 2


async def test_patch_reorder_point_null_with_an_up_to_level_is_422(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    created = await create_product(client, keys, reorder_point=10, reorder_up_to=40)
    response = await client.patch(
        f"/v1/products/{SKU}",
        json={"reorder_point": None, "reorder_up_to": 30},
        headers=keys.staff,
    )
    assert_invalid(response, "body.reorder_up_to", "needs a reorder_point")
    assert await read_product(client, keys) == created


async def test_patch_reorder_up_to_below_the_current_point_is_422(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    created = await create_product(client, keys, reorder_point=10, reorder_up_to=40)

    response = await client.patch(
        f"/v1/products/{SKU}", json={"reorder_up_to": 9}, headers=keys.staff
    )

    assert_invalid(response, "body.reorder_up_to", "at least reorder_point")
    assert await read_product(client, keys) == created
    assert len(await audit_records(database, "product", SKU)) == 1

    # Raising the point above the stored up-to level is refused the same way.
    response = await client.patch(
        f"/v1/products/{SKU}", json={"reorder_point": 41}, headers=keys.staff
    )
    assert_invalid(response, "body.reorder_up_to", "at least reorder_point")
    assert await read_product(client, keys) == created

    # The up-to level alone on a product without a point is refused too.
    await create_product(client, keys, "POLICY-NO-POINT")
    response = await client.patch(
        "/v1/products/POLICY-NO-POINT", json={"reorder_up_to": 5}, headers=keys.staff
    )
    assert_invalid(response, "body.reorder_up_to", "needs a reorder_point")


@pytest.mark.parametrize("field", ["shortage_policy", "replenish_buffer_pct"])
async def test_patch_null_for_a_required_policy_field_is_422(
    client: httpx.AsyncClient, keys: Keys, field: str
) -> None:
    created = await create_product(client, keys)
    response = await client.patch(f"/v1/products/{SKU}", json={field: None}, headers=keys.staff)
    assert_invalid(response, f"body.{field}", "cannot be null")
    assert await read_product(client, keys) == created


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"shortage_policy": "maybe"}, "body.shortage_policy"),
        ({"replenish_buffer_pct": 501}, "body.replenish_buffer_pct"),
        ({"replenish_buffer_pct": -1}, "body.replenish_buffer_pct"),
        ({"suppliers": []}, "body.suppliers"),
    ],
    ids=["unknown-policy", "buffer-above-500", "negative-buffer", "suppliers-on-patch"],
)
async def test_patch_with_an_invalid_policy_value_is_422(
    client: httpx.AsyncClient, keys: Keys, change: dict[str, Any], location: str
) -> None:
    created = await create_product(client, keys)
    response = await client.patch(f"/v1/products/{SKU}", json=change, headers=keys.staff)
    assert_invalid(response, location)
    assert await read_product(client, keys) == created


# --- removing suppliers ---------------------------------------------------------------------


async def test_the_last_supplier_of_a_backorder_product_cannot_be_removed(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    first = await create_supplier(client, keys, "Stoneware Bros.")
    second = await create_supplier(client, keys, "Backup Pottery")
    await create_product(
        client,
        keys,
        shortage_policy="backorder",
        suppliers=[link_body(first, priority=5), link_body(second, priority=1)],
    )

    one_of_two = await client.delete(f"/v1/products/{SKU}/suppliers/{first}", headers=keys.staff)
    assert one_of_two.status_code == 204, one_of_two.text
    [remaining] = await links_of(client, keys)
    assert (remaining["supplier_id"], remaining["preferred"]) == (second, True)

    last = await client.delete(f"/v1/products/{SKU}/suppliers/{second}", headers=keys.staff)
    problem = assert_problem(last, 409, "supplier-still-needed", sku=SKU, supplier_id=second)
    assert "shortage_policy: reject" in problem["detail"]
    assert await links_of(client, keys) == [remaining]
    [record] = await audit_records(database, "supplier_product", remaining["id"])
    assert record.action == "supplier_product.created"

    # Switched to reject, the product lets its last supplier go.
    switched = await client.patch(
        f"/v1/products/{SKU}", json={"shortage_policy": "reject"}, headers=keys.staff
    )
    assert switched.status_code == 200, switched.text
    gone = await client.delete(f"/v1/products/{SKU}/suppliers/{second}", headers=keys.staff)
    assert gone.status_code == 204, gone.text
    assert await links_of(client, keys) == []


async def test_the_last_supplier_of_a_reject_product_can_be_removed(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    supplier_id = await create_supplier(client, keys, "Stoneware Bros.")
    await create_product(client, keys, shortage_policy="reject")
    link = await add_link(client, keys, supplier_id)

    response = await client.delete(
        f"/v1/products/{SKU}/suppliers/{supplier_id}", headers=keys.staff
    )

    assert response.status_code == 204, response.text
    assert await links_of(client, keys) == []
    created, removed = await audit_records(database, "supplier_product", link["id"])
    assert (created.action, removed.action) == (
        "supplier_product.created",
        "supplier_product.removed",
    )


async def test_concurrent_removals_never_leave_a_backorder_product_without_a_supplier(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    """Two requests each removing one of the two suppliers: the second sees the first's
    removal (the product row is locked from the check to the commit) and is refused."""
    first = await create_supplier(client, keys, "Stoneware Bros.")
    second = await create_supplier(client, keys, "Backup Pottery")
    await create_product(
        client,
        keys,
        shortage_policy="backorder",
        suppliers=[link_body(first, priority=5), link_body(second, priority=1)],
    )
    actor = Principal.command_line()
    first_removed = asyncio.Event()
    release_first = asyncio.Event()

    async def remove(supplier_id: str, *, hold: bool) -> None:
        async with database.transaction() as session:
            await purchasing_service.remove_product_supplier(
                session, actor=actor, sku=SKU, supplier_id=supplier_id
            )
            if hold:
                first_removed.set()
                await release_first.wait()

    first_task = asyncio.create_task(remove(first, hold=True))
    await first_removed.wait()
    second_task = asyncio.create_task(remove(second, hold=False))
    # Time for the second to block on the first's lock (product row, or BEGIN IMMEDIATE).
    await asyncio.sleep(0.3)
    release_first.set()
    await first_task
    with pytest.raises(SupplierStillNeeded):
        await second_task

    assert [link["supplier_id"] for link in await links_of(client, keys)] == [second]


# --- the database's own checks --------------------------------------------------------------


@pytest.fixture
async def product_id(client: httpx.AsyncClient, keys: Keys) -> str:
    created = await create_product(client, keys, reorder_point=10, reorder_up_to=40)
    product_id: str = created["id"]
    return product_id


@pytest.mark.parametrize(
    "assignment",
    [
        "shortage_policy = 'maybe'",
        "replenish_buffer_pct = 501",
        "replenish_buffer_pct = -1",
        "reorder_up_to = 9",
        "reorder_point = NULL",
        "reorder_point = -1, reorder_up_to = NULL",
    ],
)
async def test_the_database_refuses_invalid_policy_columns(
    database: Database, product_id: str, assignment: str
) -> None:
    with pytest.raises(IntegrityError):
        await execute(database, f"UPDATE products SET {assignment} WHERE id = :id", id=product_id)
    async with database.transaction(write=False) as session:
        row = (
            await session.execute(
                select(
                    Product.shortage_policy,
                    Product.replenish_buffer_pct,
                    Product.reorder_point,
                    Product.reorder_up_to,
                ).where(Product.id == product_id)
            )
        ).one()
    assert tuple(row) == ("reject", 20, 10, 40)


async def test_the_database_accepts_the_bounds(database: Database, product_id: str) -> None:
    await execute(
        database,
        "UPDATE products SET shortage_policy = 'backorder', replenish_buffer_pct = 500, "
        "reorder_point = 0, reorder_up_to = 0 WHERE id = :id",
        id=product_id,
    )
    await execute(
        database,
        "UPDATE products SET replenish_buffer_pct = 0, reorder_point = NULL, "
        "reorder_up_to = NULL WHERE id = :id",
        id=product_id,
    )


async def test_an_inactive_supplier_cannot_be_linked(
    client: httpx.AsyncClient, keys: Keys, database: Database
) -> None:
    supplier_id = await create_supplier(client, keys, "Retired Ltd.")
    deactivated = await client.patch(
        f"/v1/suppliers/{supplier_id}", json={"active": False}, headers=keys.staff
    )
    assert deactivated.status_code == 200, deactivated.text
    response = await client.post(
        "/v1/products",
        json=product_body(shortage_policy="backorder", suppliers=[link_body(supplier_id)]),
        headers=keys.staff,
    )
    assert_invalid(response, "body.suppliers.0.supplier_id", "inactive supplier")
    assert await catalog_rows(database) == NOTHING


async def test_the_last_active_supplier_of_a_backorder_product_cannot_be_deactivated(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    only = await create_supplier(client, keys, "Only Ltd.")
    spare = await create_supplier(client, keys, "Spare Ltd.")
    created = await client.post(
        "/v1/products",
        json=product_body(
            shortage_policy="backorder",
            suppliers=[link_body(only, priority=10), link_body(spare, priority=1)],
        ),
        headers=keys.staff,
    )
    assert created.status_code == 201, created.text

    # With another active supplier, the preferred one may retire; the other takes over.
    retired = await client.patch(
        f"/v1/suppliers/{only}", json={"active": False}, headers=keys.staff
    )
    assert retired.status_code == 200, retired.text
    links = (await client.get(f"/v1/products/{SKU}/suppliers", headers=keys.staff)).json()["data"]
    assert [(link["supplier_id"], link["preferred"]) for link in links] == [
        (spare, True),
        (only, False),
    ]

    # Now the spare is the last active one: it can neither retire nor be removed.
    refused = await client.patch(
        f"/v1/suppliers/{spare}", json={"active": False}, headers=keys.staff
    )
    assert_problem(refused, 409, "supplier-still-needed", supplier_id=spare, skus=[SKU])
    still = await client.get(f"/v1/suppliers/{spare}", headers=keys.staff)
    assert still.json()["active"] is True
    removed = await client.delete(f"/v1/products/{SKU}/suppliers/{spare}", headers=keys.staff)
    assert_problem(removed, 409, "supplier-still-needed")
