"""A small demo catalog so a new user can try the API within a minute."""

from __future__ import annotations

from stockflow.auth import repository as auth_repository
from stockflow.auth import service as auth_service
from stockflow.auth.roles import Principal, Role
from stockflow.auth.schemas import ApiKeyCreate
from stockflow.catalog import repository as catalog_repository
from stockflow.catalog import service as catalog_service
from stockflow.catalog.schemas import ProductCreate
from stockflow.cli._common import console, run_with_database
from stockflow.config import Settings
from stockflow.customers import repository as customers_repository
from stockflow.customers import service as customers_service
from stockflow.customers.schemas import CustomerCreate
from stockflow.db.engine import Database
from stockflow.inventory import service as inventory_service
from stockflow.inventory.policy import ShortagePolicy
from stockflow.inventory.schemas import AdjustmentCreate
from stockflow.purchasing import repository as purchasing_repository
from stockflow.purchasing import service as purchasing_service
from stockflow.purchasing.schemas import SupplierCreate, SupplierProductCreate

DEMO_PRODUCTS = [
    ("MUG-BLUE-330", "Blue mug, 330 ml", 1290, 40),
    ("MUG-RED-330", "Red mug, 330 ml", 1290, 25),
    ("TEAPOT-1L", "Stoneware teapot, 1 l", 3900, 8),
    ("COASTER-4", "Cork coasters, set of 4", 690, 120),
    ("TEA-EARLGREY-250", "Earl Grey loose leaf, 250 g", 1150, 0),
]
DEMO_BACKORDER_SKU = "TEA-EARLGREY-250"
"""Out of stock and ``backorder``: an order for it is accepted and its shortfall plus 20 %
ordered from the demo supplier, so the flow can be tried at once."""
DEMO_SUPPLIER_NAME = "Demo Tea Importers"
DEMO_CUSTOMER_REF = "demo:customer"
DEMO_KEY_NAME = "demo admin"


async def _seed(database: Database) -> tuple[str, str | None]:
    actor = Principal.command_line()
    customer_id: str | None = None
    async with database.transaction() as session:
        supplier_id = await purchasing_repository.supplier_id_named(session, DEMO_SUPPLIER_NAME)
        if supplier_id is None:
            supplier = await purchasing_service.create_supplier(
                session,
                actor=actor,
                data=SupplierCreate(name=DEMO_SUPPLIER_NAME, lead_time_days=5),
            )
            supplier_id = supplier.id
        for sku, name, price, stock in DEMO_PRODUCTS:
            if await catalog_repository.get_by_sku(session, sku) is not None:
                continue
            backorder = sku == DEMO_BACKORDER_SKU
            await catalog_service.create_product(
                session,
                actor=actor,
                data=ProductCreate(
                    sku=sku,
                    name=name,
                    unit_price=price,
                    currency="EUR",
                    shortage_policy=ShortagePolicy.BACKORDER
                    if backorder
                    else ShortagePolicy.REJECT,
                    suppliers=(
                        [
                            SupplierProductCreate(
                                supplier_id=supplier_id,
                                supplier_sku="EG-250",
                                cost_price=520,
                                currency="EUR",
                                pack_size=6,
                                priority=10,
                            )
                        ]
                        if backorder
                        else []
                    ),
                ),
            )
            if stock:
                await inventory_service.adjust_stock(
                    session,
                    actor=actor,
                    sku=sku,
                    data=AdjustmentCreate(delta=stock, reason="demo opening stock"),
                )
        existing = await customers_repository.get_by_external_ref(session, DEMO_CUSTOMER_REF)
        if existing is None:
            customer = await customers_service.create_customer(
                session,
                actor=actor,
                data=CustomerCreate(
                    name="Demo Customer", email="demo@example.com", external_ref=DEMO_CUSTOMER_REF
                ),
            )
            customer_id = customer.id
        else:
            customer_id = existing.id
        # A new key is printed on every start (only hashes are stored); the previous demo
        # keys are revoked so they do not pile up.
        for key_id in await auth_repository.active_ids_named(session, DEMO_KEY_NAME):
            await auth_service.revoke_key(session, actor=actor, key_id=key_id)
        key = await auth_service.create_key(
            session, actor=actor, data=ApiKeyCreate(name=DEMO_KEY_NAME, role=Role.ADMIN)
        )
    assert key.key is not None  # a freshly created key carries its secret
    return key.key, customer_id


def seed_demo(settings: Settings) -> None:
    key, customer_id = run_with_database(settings, _seed)
    console.print(f"demo catalog ready ({len(DEMO_PRODUCTS)} products, customer {customer_id})")
    console.print(f"demo admin key: [bold]{key}[/bold]", soft_wrap=True)
    console.print(
        f"try: curl -H 'Authorization: Bearer {key}' "
        f"http://{settings.host}:{settings.port}/v1/products",
        soft_wrap=True,
        highlight=False,
    )
