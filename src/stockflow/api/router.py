"""The ``/v1`` API: every feature's router, mounted in one place."""

from __future__ import annotations

from fastapi import APIRouter

from stockflow.audit.router import router as audit_router
from stockflow.auth.router import router as api_keys_router
from stockflow.catalog.router import router as products_router
from stockflow.customers.router import router as customers_router
from stockflow.events.router import router as events_router
from stockflow.inventory.router import router as inventory_router
from stockflow.orders.router import place_order
from stockflow.orders.router import router as orders_router
from stockflow.payments.router import router as payments_router
from stockflow.payments.router import stripe_router
from stockflow.purchasing.po_router import router as purchase_orders_router
from stockflow.purchasing.router import product_suppliers_router, suppliers_router
from stockflow.webhooks.router import deliveries_router as webhook_deliveries_router
from stockflow.webhooks.router import router as webhook_endpoints_router

V1_PREFIX = "/v1"
# Included into the application one by one under the prefix, not through a ``/v1`` router
# of their own: every level of nesting is matched again on every request. A request is
# matched against the routers in this order, at about ten microseconds for each router
# it passes, so the busiest come first (the documentation's order is `OPENAPI_TAGS`).
V1_ROUTERS: tuple[APIRouter, ...] = (
    orders_router,
    inventory_router,
    payments_router,
    products_router,
    customers_router,
    purchase_orders_router,
    suppliers_router,
    product_suppliers_router,
    events_router,
    webhook_endpoints_router,
    webhook_deliveries_router,
    api_keys_router,
    audit_router,
    stripe_router,
)

# Served by `stockflow.api.direct.DirectRoutes` ahead of the router (decision 22).
DIRECT_ENDPOINTS = frozenset({place_order})

OPENAPI_TAGS: list[dict[str, str]] = [
    {"name": "API keys", "description": "Who may call the API, and as which role."},
    {"name": "Products", "description": "The catalog: SKUs, prices and shortage policies."},
    {"name": "Inventory", "description": "Stock per SKU, adjustments and the ledger."},
    {"name": "Customers", "description": "Who orders."},
    {"name": "Orders", "description": "Placing, previewing, shipping and cancelling orders."},
    {"name": "Payments", "description": "Payments and refunds of orders."},
    {"name": "Suppliers", "description": "Suppliers and the terms they sell each product on."},
    {"name": "Purchase orders", "description": "Replenishment from suppliers."},
    {"name": "Events", "description": "What happened, as webhook endpoints receive it."},
    {"name": "Webhooks", "description": "Endpoints that receive events, and their deliveries."},
    {"name": "Audit", "description": "Who changed what, with the resource before and after."},
    {"name": "Health", "description": "Liveness, readiness and metrics for operators."},
]
"""The documentation's sections, in reading order."""
