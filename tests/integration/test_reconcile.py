"""Replaying the ledger reproduces every stock counter; reconcile finds any that it does not."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from typer.testing import CliRunner, Result

from stockflow.auth.roles import Principal
from stockflow.catalog import service as catalog_service
from stockflow.catalog.schemas import ProductCreate
from stockflow.cli.main import app as cli_app
from stockflow.customers import service as customers_service
from stockflow.customers.schemas import CustomerCreate
from stockflow.db.engine import Database
from stockflow.db.models import Product, StockLevel, StockMovement
from stockflow.errors import StockBelowReserved
from stockflow.inventory import service
from stockflow.inventory.repository import Drift
from stockflow.inventory.schemas import AdjustmentCreate
from stockflow.orders import placement
from stockflow.orders import service as orders_service
from stockflow.orders.schemas import LineCreate, OrderCreate
from tests.support import clear_data

ACTOR = Principal.command_line()
SKUS = ("REC-A", "REC-B", "REC-C")


async def create_products(database: Database, *skus: str) -> None:
    async with database.transaction() as session:
        for sku in skus:
            await catalog_service.create_product(
                session,
                actor=ACTOR,
                data=ProductCreate(sku=sku, name=sku, unit_price=100, currency="EUR"),
            )


async def try_adjust(database: Database, sku: str, delta: int) -> bool:
    """One adjustment in its own transaction, as a request would make it; False if refused."""
    try:
        async with database.transaction() as session:
            await service.adjust_stock(
                session,
                actor=ACTOR,
                sku=sku,
                data=AdjustmentCreate(delta=delta, reason=f"property {delta:+d}"),
            )
    except StockBelowReserved:
        return False
    return True


async def reserve(database: Database, sku: str, quantity: int) -> None:
    """Reserve by placing an order, the way stock gets reserved in production."""
    async with database.transaction() as session:
        customer = await customers_service.create_customer(
            session, actor=ACTOR, data=CustomerCreate(name=f"buyer of {sku}")
        )
        await placement.place_order(
            session,
            actor=ACTOR,
            data=OrderCreate(
                customer_id=customer.id, lines=[LineCreate(sku=sku, quantity=quantity)]
            ),
            limits=orders_service.OrderLimits(max_lines=100, max_quantity=10_000),
        )


async def counters(database: Database, sku: str) -> tuple[int, int]:
    async with database.transaction(write=False) as session:
        row = (
            await session.execute(
                select(StockLevel.on_hand, StockLevel.reserved)
                .join(Product, Product.id == StockLevel.product_id)
                .where(Product.sku == sku)
            )
        ).one()
    return row[0], row[1]


async def reconcile(database: Database) -> list[Drift]:
    async with database.transaction(write=False) as session:
        return await service.reconcile(session)


# --- the property -------------------------------------------------------------------------

product_index = st.integers(min_value=0, max_value=len(SKUS) - 1)
deltas = st.one_of(st.integers(min_value=1, max_value=40), st.integers(min_value=-40, max_value=-1))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    opening=st.lists(st.integers(0, 30), min_size=len(SKUS), max_size=len(SKUS)),
    reserved_pct=st.lists(st.integers(0, 100), min_size=len(SKUS), max_size=len(SKUS)),
    steps=st.lists(st.tuples(product_index, deltas), min_size=1, max_size=25),
)
async def test_ledger_replay_reproduces_the_counters(
    database: Database,
    opening: list[int],
    reserved_pct: list[int],
    steps: list[tuple[int, int]],
) -> None:
    # The fixture empties the database once per test, not once per example.
    await clear_data(database)
    await create_products(database, *SKUS)
    accepted: dict[str, list[int]] = {sku: [] for sku in SKUS}
    reserved: dict[str, int] = {}
    for sku, stock, pct in zip(SKUS, opening, reserved_pct, strict=True):
        if stock:
            assert await try_adjust(database, sku, stock)
            accepted[sku].append(stock)
        reserved[sku] = stock * pct // 100
        if reserved[sku]:
            await reserve(database, sku, reserved[sku])

    refused = 0
    for index, delta in steps:
        sku = SKUS[index]
        expected = sum(accepted[sku]) + delta >= reserved[sku]
        applied = await try_adjust(database, sku, delta)
        assert applied == expected, (sku, delta, accepted[sku], reserved[sku])
        if applied:
            accepted[sku].append(delta)
        else:
            refused += 1
    event(f"some adjustments refused: {refused > 0}")

    assert await reconcile(database) == []
    for sku in SKUS:
        assert await counters(database, sku) == (sum(accepted[sku]), reserved[sku])
    async with database.transaction(write=False) as session:
        ledger = (await session.scalars(select(StockMovement).order_by(StockMovement.id))).all()
    adjustments = [m for m in ledger if m.reason == "adjustment"]
    # Exactly one movement per accepted adjustment; a refused one leaves no trace.
    assert len(adjustments) == sum(len(d) for d in accepted.values())
    assert len(ledger) == len(adjustments) + sum(1 for r in reserved.values() if r)
    assert refused == len(steps) + sum(1 for s in opening if s) - len(adjustments)


# --- drift --------------------------------------------------------------------------------


@pytest.fixture
async def stocked(database: Database) -> Database:
    """REC-A with +10 and -3 in the ledger (7 on hand), REC-B with +5."""
    await create_products(database, "REC-A", "REC-B")
    for sku, delta in (("REC-A", 10), ("REC-A", -3), ("REC-B", 5)):
        assert await try_adjust(database, sku, delta)
    return database


async def tamper(database: Database, sku: str, assignment: str) -> None:
    async with database.transaction() as session:
        await session.execute(
            text(
                f"UPDATE stock_levels SET {assignment} "
                "WHERE product_id = (SELECT id FROM products WHERE sku = :sku)"
            ),
            {"sku": sku},
        )


async def test_a_clean_ledger_has_no_drift(stocked: Database) -> None:
    assert await reconcile(stocked) == []
    assert await counters(stocked, "REC-A") == (7, 0)


async def test_products_without_movements_are_not_drift(database: Database) -> None:
    await create_products(database, "EMPTY-1")
    assert await reconcile(database) == []


async def test_on_hand_changed_behind_the_ledger_is_named(stocked: Database) -> None:
    await tamper(stocked, "REC-A", "on_hand = 13")

    assert await reconcile(stocked) == [
        Drift(sku="REC-A", location_code="default", field="on_hand", recorded=13, expected=7)
    ]


async def test_reserved_changed_behind_the_ledger_is_named(stocked: Database) -> None:
    await tamper(stocked, "REC-B", "reserved = 2")
    await tamper(stocked, "REC-A", "on_hand = 8, reserved = 1")

    assert await reconcile(stocked) == [
        Drift("REC-A", "default", "on_hand", 8, 7),
        Drift("REC-A", "default", "reserved", 1, 0),
        Drift("REC-B", "default", "reserved", 2, 0),
        # No order holds these units either.
        Drift("REC-A", None, "reserved", 1, 0),
        Drift("REC-B", None, "reserved", 2, 0),
    ]


async def test_a_lost_movement_is_drift(stocked: Database) -> None:
    async with stocked.transaction() as session:
        await session.execute(text("DELETE FROM stock_movements WHERE on_hand_delta = -3"))

    assert await reconcile(stocked) == [Drift("REC-A", "default", "on_hand", 7, 10)]


async def test_stock_without_any_movement_is_drift(database: Database) -> None:
    await create_products(database, "EMPTY-1")
    await tamper(database, "EMPTY-1", "on_hand = 4")

    assert await reconcile(database) == [Drift("EMPTY-1", "default", "on_hand", 4, 0)]


# --- the command --------------------------------------------------------------------------


async def run_reconcile_command(database_url: str) -> Result:
    # The command runs its own event loop (asyncio.run), so it runs in a thread of its own.
    runner = CliRunner()
    return await asyncio.to_thread(
        runner.invoke,
        cli_app,
        ["inventory", "reconcile"],
        env={"STOCKFLOW_DATABASE_URL": database_url, "COLUMNS": "120"},
    )


async def test_command_reports_no_drift_and_exits_0(stocked: Database, database_url: str) -> None:
    result = await run_reconcile_command(database_url)

    assert result.exit_code == 0, result.output
    assert "no drift" in result.output
    assert "REC-A" not in result.output


async def test_command_names_drift_and_exits_1(stocked: Database, database_url: str) -> None:
    await tamper(stocked, "REC-B", "on_hand = 9")

    result = await run_reconcile_command(database_url)

    assert result.exit_code == 1, result.output
    assert "no drift" not in result.output
    [row] = [line for line in result.output.splitlines() if "REC-B" in line]
    cells = [cell.strip() for cell in row.replace("│", "|").split("|") if cell.strip()]
    assert cells == ["REC-B", "default", "on_hand", "9", "5", "+4"]
    assert "REC-A" not in result.output
    assert "1 counter(s) differ from their source" in result.output


async def test_product_counters_without_open_lines_are_drift(stocked: Database) -> None:
    await tamper_product(stocked, "REC-B", "backordered = 5, on_order = 3")

    assert await reconcile(stocked) == [
        Drift("REC-B", None, "backordered", 5, 0),
        Drift("REC-B", None, "on_order", 3, 0),
    ]


async def tamper_product(database: Database, sku: str, assignment: str) -> None:
    async with database.transaction() as session:
        await session.execute(
            text(f"UPDATE products SET {assignment} WHERE sku = :sku"), {"sku": sku}
        )
