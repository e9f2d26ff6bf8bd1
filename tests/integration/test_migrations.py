"""Migrations go base -> head -> base -> head, and the result matches the models."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import Connection, inspect, select
from sqlalchemy.ext.asyncio import AsyncConnection

from stockflow.config import Settings
from stockflow.db import migrate
from stockflow.db.engine import Database
from stockflow.db.models import Location
from tests.support import empty_database

TABLES = {
    "api_keys",
    "deliveries",
    "delivery_attempts",
    "events",
    "inbox_messages",
    "readiness_checks",
    "webhook_endpoints",
    "idempotency_records",
    "order_lines",
    "orders",
    "payments",
    "refunds",
    "purchase_order_lines",
    "purchase_orders",
    "shipment_lines",
    "shipments",
    "supplier_products",
    "suppliers",
    "audit_records",
    "customers",
    "locations",
    "products",
    "stock_levels",
    "stock_movements",
    "worker_heartbeats",
}


async def _tables(connection: AsyncConnection) -> set[str]:
    names = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    return names - {"alembic_version"}


async def test_round_trip_and_models_agree(backend: str, tmp_path: Path) -> None:
    async with empty_database(backend, tmp_path) as url:
        database = Database(Settings(database_url=url))
        try:
            for _ in range(2):
                await asyncio.to_thread(migrate.upgrade, url)
                async with database.engine.connect() as connection:
                    assert await _tables(connection) == TABLES
                    assert await migrate.current_revision(connection) == migrate.head_revision()
                    assert await migrate.schema_differences(connection) == []
                    defaults = (
                        await connection.execute(
                            select(Location.code).where(Location.is_default.is_(True))
                        )
                    ).all()
                    assert [row[0] for row in defaults] == ["default"]
                await asyncio.to_thread(migrate.downgrade, url, "base")
                async with database.engine.connect() as connection:
                    assert await _tables(connection) == set()
                    assert await migrate.current_revision(connection) is None
        finally:
            await database.dispose()


EXPECTED_CHECKS: dict[str, set[str | None]] = {
    "stock_levels": {
        "ck_stock_levels_on_hand_non_negative",
        "ck_stock_levels_reserved_non_negative",
        "ck_stock_levels_reserved_within_on_hand",
    },
    "products": {
        "ck_products_unit_price_non_negative",
        "ck_products_currency_iso4217",
        "ck_products_backordered_non_negative",
        "ck_products_on_order_non_negative",
        "ck_products_shortage_policy_known",
        "ck_products_replenish_buffer_pct_range",
        "ck_products_reorder_point_non_negative",
        "ck_products_reorder_up_to_at_least_point",
        "ck_products_low_stock_threshold_non_negative",
    },
    "deliveries": {"ck_deliveries_status_known", "ck_deliveries_target_type_known"},
    "stock_movements": {"ck_stock_movements_changes_something"},
    "api_keys": {"ck_api_keys_role_known", "ck_api_keys_customer_role_bound"},
    "supplier_products": {
        "ck_supplier_products_cost_price_non_negative",
        "ck_supplier_products_currency_iso4217",
        "ck_supplier_products_pack_size_positive",
        "ck_supplier_products_min_order_qty_positive",
        "ck_supplier_products_lead_time_non_negative",
    },
    "purchase_orders": {
        "ck_purchase_orders_status_known",
        "ck_purchase_orders_origin_known",
    },
    "purchase_order_lines": {
        "ck_purchase_order_lines_quantity_positive",
        "ck_purchase_order_lines_received_non_negative",
        "ck_purchase_order_lines_cost_price_non_negative",
        "ck_purchase_order_lines_currency_iso4217",
        "ck_purchase_order_lines_lead_time_non_negative",
        "ck_purchase_order_lines_reason_known",
    },
}


async def test_the_migrated_schema_has_every_check_constraint(database: Database) -> None:
    """Alembic's comparison ignores CHECK constraints, so they are listed here by name."""

    def checks(connection: Connection) -> dict[str, set[str | None]]:
        inspector = inspect(connection)
        return {
            table: {check["name"] for check in inspector.get_check_constraints(table)}
            for table in EXPECTED_CHECKS
        }

    async with database.engine.connect() as connection:
        assert await connection.run_sync(checks) == EXPECTED_CHECKS
