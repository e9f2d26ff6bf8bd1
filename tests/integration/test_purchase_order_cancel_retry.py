"""Cancelling a replenishment draft that gains a product while it is being cancelled.

Cancelling locks the PO's product rows before the PO row (the lock order shared with order
placement), so it must know the draft's products before it holds the draft; an order may
still add a line for another product in between. The cancellation then finds, under the
PO row lock, a line whose product it neither locked nor counted. It must not go on with
that stale set, which would leave that product's ``on_order`` counting a cancelled line
and its backlog never ordered again; it undoes the attempt and tries again with the
products as they are, and answers 503 (nothing changed) if they keep changing.

The interleaving is produced by serving the first read of the draft's products stale (the
product added since is missing) while the draft really has both lines, on both backends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.app import create_app
from stockflow.auth.roles import Principal
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.db.models import AuditRecord
from stockflow.inventory import service as inventory_service
from stockflow.purchasing import po_receiving, po_repository
from stockflow.purchasing.states import PurchaseOrderStatus
from tests.assertions import assert_problem
from tests.backorders import (
    backorder_product,
    inventory,
    place,
    purchase_order,
    purchase_orders,
)
from tests.conftest import Keys

WINDOW = 3600
"""Long enough that the draft collecting the shortages is not submitted during a test."""
FIRST = "CR-MUG"
ADDED = "CR-BOWL"

ProductsOf = Callable[[AsyncSession, str], Awaitable[list[tuple[str, str]]]]


@pytest.fixture
async def consolidating(database_url: str, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose shortages collect on one draft per supplier for an hour."""
    app = create_app(
        Settings(database_url=database_url, po_consolidation_seconds=WINDOW), database=database
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as c:
        yield c
    await app.state.key_usage.drain()


class StaleProducts:
    """``po_repository.products_of`` that leaves ``missing`` out of its first ``stale``
    answers (all of them when ``stale`` is None), as a read taken just before an order
    added that product's line would; records every call."""

    def __init__(self, real: ProductsOf, missing: str, *, stale: int | None) -> None:
        self.real = real
        self.missing = missing
        self.stale = stale
        self.calls: list[str] = []

    async def __call__(self, session: AsyncSession, po_id: str) -> list[tuple[str, str]]:
        products = await self.real(session, po_id)
        self.calls.append(po_id)
        if self.stale is None or len(self.calls) <= self.stale:
            assert self.missing in {sku for sku, _product_id in products}
            return [(sku, product_id) for sku, product_id in products if sku != self.missing]
        return products


def stale_products(monkeypatch: pytest.MonkeyPatch, *, stale: int | None) -> StaleProducts:
    fake = StaleProducts(po_repository.products_of, ADDED, stale=stale)
    monkeypatch.setattr(po_repository, "products_of", fake)
    return fake


def counters(stock: dict[str, Any]) -> tuple[int, int]:
    """``(backordered, on_order)`` of a stock level."""
    return stock["backordered"], stock["on_order"]


async def draft_of_two_products(client: httpx.AsyncClient, keys: Keys) -> dict[str, Any]:
    """Two backorder products of one supplier, a shortage of each (5 and 3 units, so 6
    and 4 on order with the 20 % buffer), collected on one replenishment draft."""
    supplier_id = await backorder_product(client, keys, FIRST)
    await backorder_product(client, keys, ADDED, supplier_id=supplier_id)
    await place(client, keys, {FIRST: 5})
    await place(client, keys, {ADDED: 3})
    (draft,) = await purchase_orders(client, keys)
    assert (draft["status"], draft["origin"]) == ("draft", "replenishment")
    assert [(line["sku"], line["quantity"]) for line in draft["lines"]] == [(FIRST, 6), (ADDED, 4)]
    assert counters(await inventory(client, keys, FIRST)) == (5, 6)
    assert counters(await inventory(client, keys, ADDED)) == (3, 4)
    return draft


async def assert_reconciled(database: Database) -> None:
    """Stock rows match their ledger, and backlog and on_order match the open lines."""
    async with database.transaction() as session:
        assert await inventory_service.reconcile(session) == []


async def audit_count(database: Database) -> int:
    async with database.transaction(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(AuditRecord)) or 0)


async def test_a_cancellation_that_read_the_drafts_products_stale_tries_again_with_them_all(
    consolidating: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first attempt locks only the first product, then finds the second product's
    line under the PO row lock: it is undone and the cancellation runs again with both.
    Both lines' units leave ``on_order`` (the rule runs again from 0 on order), the rule
    orders both backlogs again on a new draft, caused by the cancellation, and every
    counter agrees with its source."""
    client = consolidating
    draft = await draft_of_two_products(client, keys)
    fake = stale_products(monkeypatch, stale=1)

    async with database.transaction() as session:
        cancelled = await po_receiving.cancel(
            session,
            actor=Principal.command_line(),
            po_id=draft["id"],
            reason="supplier closed",
            consolidation_seconds=WINDOW,
        )

    assert cancelled.status is PurchaseOrderStatus.CANCELLED
    assert cancelled.cancel_reason == "supplier closed"
    assert (await purchase_order(client, keys, draft["id"]))["status"] == "cancelled"

    (reopened,) = await purchase_orders(client, keys, status="draft")
    assert reopened["id"] != draft["id"]
    by_sku = {line["sku"]: line for line in reopened["lines"]}
    assert sorted(by_sku) == sorted([FIRST, ADDED])
    for sku, backlog, quantity in ((FIRST, 5, 6), (ADDED, 3, 4)):
        line = by_sku[sku]
        explanation = line["explanation"]
        # The rule saw the cancelled line's units gone: nothing on order, all of it waiting.
        assert (explanation["backlog"], explanation["on_order"], line["quantity"]) == (
            backlog,
            0,
            quantity,
        ), sku
        assert [cause["purchase_order_cancelled"] for cause in explanation["caused_by"]] == [
            draft["id"]
        ], sku
        assert counters(await inventory(client, keys, sku)) == (backlog, quantity), sku
    await assert_reconciled(database)
    # One stale attempt, undone, then one with both products.
    assert fake.calls == [draft["id"], draft["id"]]


async def test_a_cancellation_whose_draft_keeps_changing_is_a_503_that_changes_nothing(
    consolidating: httpx.AsyncClient,
    keys: Keys,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If every attempt finds a product it did not lock, the cancellation gives up after
    a few with a 503 to retry, and its transaction is rolled back whole: the draft, its
    lines, the counters and the audit trail are as before. Retried once the draft holds
    still, the same cancellation succeeds."""
    client = consolidating
    draft = await draft_of_two_products(client, keys)
    audited = await audit_count(database)
    fake = stale_products(monkeypatch, stale=None)

    response = await client.post(
        f"/v1/purchase-orders/{draft['id']}/cancel",
        json={"reason": "supplier closed"},
        headers=keys.staff,
    )

    body = assert_problem(response, 503, "service-unavailable")
    assert "kept changing while it was being cancelled" in body["detail"], body
    assert response.headers["Retry-After"] == "1"
    assert len(fake.calls) > 1
    assert set(fake.calls) == {draft["id"]}
    assert await purchase_orders(client, keys) == [await purchase_order(client, keys, draft["id"])]
    unchanged = await purchase_order(client, keys, draft["id"])
    assert {key: value for key, value in unchanged.items() if key != "lines"} == {
        key: value for key, value in draft.items() if key != "lines"
    }
    assert [(line["id"], line["quantity"]) for line in unchanged["lines"]] == [
        (line["id"], line["quantity"]) for line in draft["lines"]
    ]
    assert counters(await inventory(client, keys, FIRST)) == (5, 6)
    assert counters(await inventory(client, keys, ADDED)) == (3, 4)
    assert await audit_count(database) == audited
    await assert_reconciled(database)

    monkeypatch.undo()
    retried = await client.post(
        f"/v1/purchase-orders/{draft['id']}/cancel",
        json={"reason": "supplier closed"},
        headers=keys.staff,
    )
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "cancelled"
    await assert_reconciled(database)
