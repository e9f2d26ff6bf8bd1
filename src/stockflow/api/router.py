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

v1 = APIRouter(prefix="/v1")
v1.include_router(api_keys_router)
v1.include_router(products_router)
v1.include_router(inventory_router)
v1.include_router(customers_router)
v1.include_router(orders_router)
v1.include_router(suppliers_router)
v1.include_router(product_suppliers_router)
v1.include_router(purchase_orders_router)
