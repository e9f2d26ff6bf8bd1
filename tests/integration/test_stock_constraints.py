"""The stock invariants hold in the database itself: a write that bypasses the services (a
bug, a hand-written fix, another tool) is refused by the CHECK constraints."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from stockflow.auth.roles import Principal
from stockflow.catalog import service as catalog_service
from stockflow.catalog.schemas import ProductCreate
from stockflow.db.engine import Database
from stockflow.db.models import StockLevel
from stockflow.inventory import service as inventory_service
from stockflow.inventory.schemas import AdjustmentCreate

SKU = "CHECK-1"
ACTOR = Principal.command_line()


@pytest.fixture
async def product_id(database: Database) -> str:
    """A product with 10 on hand, 4 of them reserved."""
    async with database.transaction() as session:
        product = await catalog_service.create_product(
            session,
            actor=ACTOR,
            data=ProductCreate(sku=SKU, name="Checked", unit_price=100, currency="EUR"),
        )
        await inventory_service.adjust_stock(
            session, actor=ACTOR, sku=SKU, data=AdjustmentCreate(delta=10, reason="opening")
        )
        # Orders do not exist yet: reserved stock is set directly, as test setup.
        await session.execute(
            text("UPDATE stock_levels SET reserved = 4 WHERE product_id = :id"), {"id": product.id}
        )
    return product.id


async def counters(database: Database, product_id: str) -> tuple[int, int]:
    async with database.transaction(write=False) as session:
        row = (
            await session.execute(
                select(StockLevel.on_hand, StockLevel.reserved).where(
                    StockLevel.product_id == product_id
                )
            )
        ).one()
    return row[0], row[1]


async def execute(database: Database, sql: str, **params: Any) -> None:
    async with database.transaction() as session:
        await session.execute(text(sql), params)


@pytest.mark.parametrize(
    ("assignment", "violated"),
    [
        # A negative on_hand also puts it below reserved: either name may be reported.
        ("on_hand = -1", {"on_hand_non_negative", "reserved_within_on_hand"}),
        ("on_hand = -1, reserved = 0", {"on_hand_non_negative", "reserved_within_on_hand"}),
        ("on_hand = 3", {"reserved_within_on_hand"}),
        ("reserved = 11", {"reserved_within_on_hand"}),
        ("on_hand = on_hand - 7", {"reserved_within_on_hand"}),
        ("reserved = -1", {"reserved_non_negative"}),
    ],
)
async def test_database_refuses_counters_that_break_an_invariant(
    database: Database, product_id: str, assignment: str, violated: set[str]
) -> None:
    with pytest.raises(IntegrityError) as caught:
        await execute(
            database, f"UPDATE stock_levels SET {assignment} WHERE product_id = :id", id=product_id
        )

    # Both backends name the CHECK constraint that refused the row.
    message = str(caught.value.orig)
    assert any(f"ck_stock_levels_{name}" in message for name in violated), message
    assert await counters(database, product_id) == (10, 4)


async def test_valid_edges_are_accepted(database: Database, product_id: str) -> None:
    """The constraints are not simply refusing every write: the boundaries pass."""
    await execute(
        database, "UPDATE stock_levels SET on_hand = 4 WHERE product_id = :id", id=product_id
    )
    assert await counters(database, product_id) == (4, 4)
    await execute(
        database,
        "UPDATE stock_levels SET on_hand = 0, reserved = 0 WHERE product_id = :id",
        id=product_id,
    )
    assert await counters(database, product_id) == (0, 0)


async def test_a_new_row_with_reserved_above_on_hand_is_refused(
    database: Database, product_id: str
) -> None:
    async with database.transaction() as session:
        location_id = await session.scalar(
            select(StockLevel.location_id).where(StockLevel.product_id == product_id)
        )
        await session.execute(
            text("DELETE FROM stock_movements WHERE product_id = :id"), {"id": product_id}
        )
        await session.execute(
            text("DELETE FROM stock_levels WHERE product_id = :id"), {"id": product_id}
        )
    with pytest.raises(IntegrityError):
        await execute(
            database,
            "INSERT INTO stock_levels (product_id, location_id, on_hand, reserved, updated_at) "
            "VALUES (:product, :location, 1, 2, CURRENT_TIMESTAMP)",
            product=product_id,
            location=location_id,
        )


async def test_a_movement_that_changes_nothing_is_refused(
    database: Database, product_id: str
) -> None:
    async with database.transaction(write=False) as session:
        location_id = await session.scalar(
            select(StockLevel.location_id).where(StockLevel.product_id == product_id)
        )
    with pytest.raises(IntegrityError):
        await execute(
            database,
            "INSERT INTO stock_movements (id, product_id, location_id, on_hand_delta, "
            "reserved_delta, on_hand_after, reserved_after, reason, actor, created_at) "
            "VALUES ('mov_01KB3J5Q2W8Z6Y4X0V9T7S5R3P', :product, :location, 0, 0, 10, 4, "
            "'adjustment', 'cli', CURRENT_TIMESTAMP)",
            product=product_id,
            location=location_id,
        )


@pytest.mark.parametrize(
    "assignment", ["unit_price = -1", "currency = 'EU'", "backordered = -1", "on_order = -1"]
)
async def test_database_refuses_invalid_product_columns(
    database: Database, product_id: str, assignment: str
) -> None:
    with pytest.raises(IntegrityError):
        await execute(database, f"UPDATE products SET {assignment} WHERE id = :id", id=product_id)
