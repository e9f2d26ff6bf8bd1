"""A supplier's terms for a product carry a version, answered as an ``ETag``, and a change
sent with ``If-Match`` applies only to the version it was made against, as for products and
suppliers. There is no read of a single entry: the ETag comes from adding or changing it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from stockflow.audit import repository as audit_repository
from stockflow.auth.roles import Principal
from stockflow.db.engine import Database
from stockflow.db.models import AuditRecord
from stockflow.errors import PreconditionFailed
from stockflow.purchasing import service as purchasing_service
from stockflow.purchasing.schemas import SupplierProductUpdate
from tests.assertions import assert_invalid, assert_problem
from tests.conftest import Keys
from tests.supplier_links import links_of, post_link

SKU = "ETAG-MUG"
REPLAYED = "Idempotent-Replayed"


async def audit_records(database: Database, link_id: str) -> list[AuditRecord]:
    async with database.transaction(write=False) as session:
        return await audit_repository.for_resource(session, "supplier_product", link_id)


@pytest.fixture
async def supplier_id(client: httpx.AsyncClient, keys: Keys) -> str:
    response = await client.post(
        "/v1/suppliers", json={"name": "Stoneware Bros."}, headers=keys.staff
    )
    assert response.status_code == 201, response.text
    created: str = response.json()["id"]
    return created


@pytest.fixture
async def product(client: httpx.AsyncClient, keys: Keys) -> str:
    response = await client.post(
        "/v1/products",
        json={"sku": SKU, "name": "Mug", "unit_price": 1290, "currency": "EUR"},
        headers=keys.staff,
    )
    assert response.status_code == 201, response.text
    return SKU


@pytest.fixture
async def link(
    client: httpx.AsyncClient, keys: Keys, product: str, supplier_id: str
) -> dict[str, Any]:
    return await post_link(
        client,
        keys,
        product,
        {
            "supplier_id": supplier_id,
            "supplier_sku": "SB-MUG-330",
            "cost_price": 540,
            "currency": "EUR",
            "priority": 10,
        },
    )


def url_of(link: dict[str, Any]) -> str:
    return f"/v1/products/{link['sku']}/suppliers/{link['supplier_id']}"


def etag(link: dict[str, Any], version: int) -> str:
    return f'"{link["id"]}.{version}"'


# --- ETag out -------------------------------------------------------------------------------


async def test_add_answers_the_entry_with_version_1_and_its_etag(
    client: httpx.AsyncClient, keys: Keys, product: str, supplier_id: str
) -> None:
    response = await client.post(
        f"/v1/products/{product}/suppliers",
        json={
            "supplier_id": supplier_id,
            "supplier_sku": "SB-MUG-330",
            "cost_price": 540,
            "currency": "EUR",
        },
        headers=keys.staff,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["version"] == 1
    assert response.headers["etag"] == f'"{body["id"]}.1"'
    assert await links_of(client, keys, SKU) == [body]


async def test_a_replayed_add_keeps_the_etag(
    client: httpx.AsyncClient, keys: Keys, link: dict[str, Any]
) -> None:
    other = await client.post("/v1/suppliers", json={"name": "Other"}, headers=keys.staff)
    body = {
        "supplier_id": other.json()["id"],
        "supplier_sku": "O-1",
        "cost_price": 500,
        "currency": "EUR",
    }
    headers = {**keys.staff, "Idempotency-Key": "etag-link-1"}
    first = await client.post(f"/v1/products/{SKU}/suppliers", json=body, headers=headers)
    assert first.status_code == 201, first.text
    changed = await client.patch(
        f"/v1/products/{SKU}/suppliers/{body['supplier_id']}",
        json={"cost_price": 510},
        headers=keys.staff,
    )
    assert changed.status_code == 200, changed.text

    again = await client.post(f"/v1/products/{SKU}/suppliers", json=body, headers=headers)

    assert again.headers[REPLAYED] == "true"
    assert again.content == first.content
    # The replay shows the entry as it was then, ETag included: stale by now.
    assert again.headers["etag"] == first.headers["etag"] == f'"{first.json()["id"]}.1"'
    assert changed.headers["etag"] == f'"{first.json()["id"]}.2"'


# --- If-Match in ----------------------------------------------------------------------------


async def test_patch_with_the_current_etag_applies_and_changes_the_etag(
    client: httpx.AsyncClient, keys: Keys, database: Database, link: dict[str, Any]
) -> None:
    response = await client.patch(
        url_of(link),
        json={"cost_price": 610, "pack_size": 6},
        headers={**keys.staff, "If-Match": etag(link, 1)},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["cost_price"], body["pack_size"], body["version"]) == (610, 6, 2)
    assert response.headers["etag"] == etag(link, 2)
    assert response.headers["etag"] != etag(link, 1)
    assert await links_of(client, keys, SKU) == [body]

    created, updated = await audit_records(database, link["id"])
    assert (created.action, updated.action) == (
        "supplier_product.created",
        "supplier_product.updated",
    )
    assert updated.before == link
    assert updated.after == body


async def test_patch_with_a_stale_etag_is_412_and_changes_nothing(
    client: httpx.AsyncClient, keys: Keys, database: Database, link: dict[str, Any]
) -> None:
    first = await client.patch(
        url_of(link), json={"cost_price": 600}, headers={**keys.staff, "If-Match": etag(link, 1)}
    )
    assert first.status_code == 200, first.text

    response = await client.patch(
        url_of(link),
        json={"cost_price": 1, "priority": -5},
        headers={**keys.staff, "If-Match": etag(link, 1)},
    )

    body = assert_problem(response, 412, "precondition-failed", current_etag=etag(link, 2))
    assert link["supplier_id"] in body["detail"]
    assert SKU in body["detail"]
    [read] = await links_of(client, keys, SKU)
    assert read == first.json()
    assert (read["cost_price"], read["priority"], read["version"]) == (600, 10, 2)
    assert len(await audit_records(database, link["id"])) == 2


async def test_patch_without_if_match_applies(
    client: httpx.AsyncClient, keys: Keys, link: dict[str, Any]
) -> None:
    response = await client.patch(url_of(link), json={"priority": 3}, headers=keys.admin)

    assert response.status_code == 200, response.text
    assert (response.json()["priority"], response.json()["version"]) == (3, 2)
    assert response.headers["etag"] == etag(link, 2)


async def test_patch_accepts_a_wildcard_or_a_list_of_etags(
    client: httpx.AsyncClient, keys: Keys, link: dict[str, Any]
) -> None:
    star = await client.patch(
        url_of(link), json={"cost_price": 550}, headers={**keys.staff, "If-Match": "*"}
    )
    assert star.status_code == 200, star.text
    listed = await client.patch(
        url_of(link),
        json={"cost_price": 560},
        headers={**keys.staff, "If-Match": f'"spr_other.9", {star.headers["etag"]}'},
    )
    assert listed.status_code == 200, listed.text
    assert listed.json()["version"] == 3


@pytest.mark.parametrize(
    "if_match",
    [
        "W/{current}",
        "{bare}",
        '"{id}"',
        '"{id}.one"',
        "",
        '"sup_other.1"',
    ],
    ids=["weak", "unquoted", "no-version", "not-a-version", "empty", "other-resource"],
)
async def test_a_weak_or_malformed_if_match_never_matches(
    client: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    link: dict[str, Any],
    if_match: str,
) -> None:
    """If-Match compares strongly: a weak tag, or anything but the exact current tag, is a
    412 that names the current ETag, never a silent unconditional update."""
    header = if_match.format(current=etag(link, 1), bare=f"{link['id']}.1", id=link["id"])

    response = await client.patch(
        url_of(link), json={"cost_price": 1}, headers={**keys.staff, "If-Match": header}
    )

    assert_problem(response, 412, "precondition-failed", current_etag=etag(link, 1))
    assert await links_of(client, keys, SKU) == [link]
    assert len(await audit_records(database, link["id"])) == 1


async def test_a_patch_that_changes_nothing_keeps_the_version_and_the_etag(
    client: httpx.AsyncClient, keys: Keys, database: Database, link: dict[str, Any]
) -> None:
    for change in ({}, {"cost_price": link["cost_price"], "currency": "EUR"}):
        response = await client.patch(
            url_of(link), json=change, headers={**keys.staff, "If-Match": etag(link, 1)}
        )
        assert response.status_code == 200, response.text
        assert response.json() == link
        assert response.headers["etag"] == etag(link, 1)
    assert len(await audit_records(database, link["id"])) == 1


async def test_the_etag_is_checked_only_for_an_entry_that_exists(
    client: httpx.AsyncClient, keys: Keys, link: dict[str, Any]
) -> None:
    response = await client.patch(
        f"/v1/products/{SKU}/suppliers/sup_01KB3J5Q2W8Z6Y4X0V9T7S5R3P",
        json={"cost_price": 1},
        headers={**keys.staff, "If-Match": etag(link, 1)},
    )
    assert_problem(response, 404, "not-found")


async def test_a_preferred_change_elsewhere_keeps_the_etag(
    client: httpx.AsyncClient, keys: Keys, link: dict[str, Any]
) -> None:
    """The ETag guards the entry's own terms: another supplier taking over as preferred
    flips ``preferred`` here but leaves these terms, and their ETag, as they were."""
    other = await client.post("/v1/suppliers", json={"name": "Other"}, headers=keys.staff)
    await post_link(
        client,
        keys,
        SKU,
        {
            "supplier_id": other.json()["id"],
            "supplier_sku": "O-1",
            "cost_price": 500,
            "currency": "EUR",
            "priority": 20,
        },
    )

    response = await client.patch(
        url_of(link), json={"cost_price": 530}, headers={**keys.staff, "If-Match": etag(link, 1)}
    )

    assert response.status_code == 200, response.text
    assert (response.json()["preferred"], response.json()["version"]) == (False, 2)


@pytest.mark.parametrize("field", ["version", "etag"])
async def test_version_and_etag_are_read_only(
    client: httpx.AsyncClient, keys: Keys, link: dict[str, Any], field: str
) -> None:
    response = await client.patch(url_of(link), json={field: 7}, headers=keys.staff)
    assert_invalid(response, f"body.{field}", "read-only field")
    assert await links_of(client, keys, SKU) == [link]


async def test_concurrent_patches_with_one_etag_let_one_win(
    client: httpx.AsyncClient, keys: Keys, database: Database, link: dict[str, Any]
) -> None:
    """The entry is locked from the If-Match check to the commit: the second update, holding
    the same ETag, sees the first one's version and fails instead of overwriting it."""
    actor = Principal.command_line()
    first_updated = asyncio.Event()
    release_first = asyncio.Event()

    async def update(cost_price: int, *, hold: bool) -> None:
        async with database.transaction() as session:
            await purchasing_service.update_product_supplier(
                session,
                actor=actor,
                sku=SKU,
                supplier_id=link["supplier_id"],
                data=SupplierProductUpdate(cost_price=cost_price),
                if_match=etag(link, 1),
            )
            if hold:
                first_updated.set()
                await release_first.wait()

    first_task = asyncio.create_task(update(601, hold=True))
    await first_updated.wait()
    second_task = asyncio.create_task(update(602, hold=False))
    await asyncio.sleep(0.3)
    release_first.set()
    await first_task
    with pytest.raises(PreconditionFailed):
        await second_task

    [read] = await links_of(client, keys, SKU)
    assert (read["cost_price"], read["version"]) == (601, 2)
    assert len(await audit_records(database, link["id"])) == 2
