"""What the benchmark database holds: the plan, and every row written in bulk.

The rows carry the values Stockflow's own services would write (an opening ledger movement
for each stock row, supplier terms for each backorder product), so that ``stockflow
inventory reconcile`` finds the seeded stock consistent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from benchmarks import catalog
from stockflow.auth.roles import Principal

UNIT_PRICE = 1_000
CURRENCY = "EUR"
ACTOR = Principal.command_line().id
SUPPLIER_PACK_SIZE = 6


@dataclass(frozen=True)
class SeedPlan:
    regular: int
    regular_stock: int
    backorder: int
    backorder_stock: int

    @property
    def regular_range(self) -> catalog.Range:
        return catalog.regular(self.regular)

    @property
    def backorder_range(self) -> catalog.Range:
        return catalog.backorder(self.backorder)


@dataclass(frozen=True)
class Fixture:
    """What the load generator needs to address the seeded data."""

    customer_id: str
    service_key: str
    staff_key: str
    service_key_id: str
    location_id: str
    supplier_id: str


PRODUCT_COLUMNS = [
    "id",
    "sku",
    "name",
    "description",
    "unit_price",
    "currency",
    "active",
    "backordered",
    "on_order",
    "shortage_policy",
    "replenish_buffer_pct",
    "reorder_point",
    "reorder_up_to",
    "metadata",
    "version",
    "created_at",
    "updated_at",
]
STOCK_COLUMNS = ["product_id", "location_id", "on_hand", "reserved", "updated_at"]
MOVEMENT_COLUMNS = [
    "id",
    "product_id",
    "location_id",
    "on_hand_delta",
    "reserved_delta",
    "on_hand_after",
    "reserved_after",
    "reason",
    "note",
    "actor",
    "order_id",
    "purchase_order_id",
    "created_at",
]
SUPPLIER_PRODUCT_COLUMNS = [
    "id",
    "product_id",
    "supplier_id",
    "supplier_sku",
    "cost_price",
    "currency",
    "pack_size",
    "min_order_qty",
    "lead_time_days",
    "priority",
    "version",
    "created_at",
    "updated_at",
]
JSON_COLUMNS = frozenset({"metadata"})


@dataclass(frozen=True)
class Table:
    name: str
    columns: list[str]
    rows: list[dict[str, Any]]


def _products(r: catalog.Range, policy: str, now: datetime) -> Iterator[dict[str, Any]]:
    for index in range(1, r.count + 1):
        yield {
            "id": r.product_id(index),
            "sku": r.sku(index),
            "name": f"Benchmark product {r.sku(index)}",
            "description": None,
            "unit_price": UNIT_PRICE,
            "currency": CURRENCY,
            "active": True,
            "backordered": 0,
            "on_order": 0,
            "shortage_policy": policy,
            "replenish_buffer_pct": 20,
            "reorder_point": None,
            "reorder_up_to": None,
            "metadata": {},
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }


def tables(plan: SeedPlan, fixture: Fixture, now: datetime) -> list[Table]:
    """Every bulk row of the catalog, in foreign-key order."""
    ranges = [(plan.regular_range, "reject", plan.regular_stock)]
    if plan.backorder:
        ranges.append((plan.backorder_range, "backorder", plan.backorder_stock))
    products: list[dict[str, Any]] = []
    stock: list[dict[str, Any]] = []
    movements: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    for r, policy, on_hand in ranges:
        for product in _products(r, policy, now):
            products.append(product)
            stock.append(
                {
                    "product_id": product["id"],
                    "location_id": fixture.location_id,
                    "on_hand": on_hand,
                    "reserved": 0,
                    "updated_at": now,
                }
            )
            serial = len(stock)
            if on_hand:
                movements.append(
                    {
                        "id": f"mov_S{serial:0{catalog.ID_BODY - 1}d}",
                        "product_id": product["id"],
                        "location_id": fixture.location_id,
                        "on_hand_delta": on_hand,
                        "reserved_delta": 0,
                        "on_hand_after": on_hand,
                        "reserved_after": 0,
                        "reason": "adjustment",
                        "note": "benchmark opening stock",
                        "actor": ACTOR,
                        "order_id": None,
                        "purchase_order_id": None,
                        "created_at": now,
                    }
                )
            if policy == "backorder":
                links.append(
                    {
                        "id": f"spr_S{serial:0{catalog.ID_BODY - 1}d}",
                        "product_id": product["id"],
                        "supplier_id": fixture.supplier_id,
                        "supplier_sku": f"SUP-{product['sku']}",
                        "cost_price": UNIT_PRICE // 2,
                        "currency": CURRENCY,
                        "pack_size": SUPPLIER_PACK_SIZE,
                        "min_order_qty": 1,
                        "lead_time_days": None,
                        "priority": 10,
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
    return [
        Table("products", PRODUCT_COLUMNS, products),
        Table("stock_levels", STOCK_COLUMNS, stock),
        Table("stock_movements", MOVEMENT_COLUMNS, movements),
        Table("supplier_products", SUPPLIER_PRODUCT_COLUMNS, links),
    ]
