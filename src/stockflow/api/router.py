"""The ``/v1`` API: every feature's router, mounted in one place."""

from __future__ import annotations

from fastapi import APIRouter

from stockflow.auth.router import router as api_keys_router
from stockflow.catalog.router import router as products_router
from stockflow.customers.router import router as customers_router
from stockflow.inventory.router import router as inventory_router
from stockflow.orders.router import router as orders_router
from stockflow.purchasing.po_router import router as purchase_orders_router
from stockflow.purchasing.router import product_suppliers_router, suppliers_router

V1_PREFIX = "/v1"
# Included into the application one by one under the prefix, not through a ``/v1`` router
# of their own: every level of nesting is matched again on every request.
V1_ROUTERS: tuple[APIRouter, ...] = (
    api_keys_router,
    products_router,
    inventory_router,
    customers_router,
    orders_router,
    suppliers_router,
    product_suppliers_router,
    purchase_orders_router,
)
