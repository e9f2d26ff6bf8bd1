"""Every table, imported here so that ``Base.metadata`` is complete for Alembic."""

from stockflow.db.models.audit import AuditRecord
from stockflow.db.models.auth import ApiKey
from stockflow.db.models.catalog import Product
from stockflow.db.models.customers import Customer
from stockflow.db.models.events import (
    Delivery,
    DeliveryAttempt,
    Event,
    InboxMessage,
    ReadinessCheck,
    WebhookEndpoint,
    WorkerHeartbeat,
)
from stockflow.db.models.idempotency import IdempotencyRecord
from stockflow.db.models.inventory import Location, StockLevel, StockMovement
from stockflow.db.models.orders import Order, OrderLine, Shipment, ShipmentLine
from stockflow.db.models.payments import Payment, Refund
from stockflow.db.models.purchasing import (
    PurchaseOrder,
    PurchaseOrderLine,
    Supplier,
    SupplierProduct,
)

__all__ = [
    "ApiKey",
    "AuditRecord",
    "Customer",
    "Delivery",
    "DeliveryAttempt",
    "Event",
    "IdempotencyRecord",
    "InboxMessage",
    "Location",
    "Order",
    "OrderLine",
    "Payment",
    "Product",
    "PurchaseOrder",
    "PurchaseOrderLine",
    "ReadinessCheck",
    "Refund",
    "Shipment",
    "ShipmentLine",
    "StockLevel",
    "StockMovement",
    "Supplier",
    "SupplierProduct",
    "WebhookEndpoint",
    "WorkerHeartbeat",
]
