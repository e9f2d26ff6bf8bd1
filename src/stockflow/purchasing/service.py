"""Suppliers and the terms on which they sell us each product.

The preferred supplier of a product is the one with the highest priority; replenishment
orders from it. Links are few and rarely changed, so plain ORM writes serve them well.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow import etags
from stockflow.audit import service as audit
from stockflow.auth.roles import Principal
from stockflow.catalog import repository as catalog_repository
from stockflow.db.models import Product, Supplier, SupplierProduct
from stockflow.db.pagination import Page
from stockflow.errors import (
    AlreadyExists,
    InvalidRequest,
    NotFound,
    SupplierStillNeeded,
)
from stockflow.ids import new_id
from stockflow.purchasing import repository
from stockflow.purchasing.schemas import (
    SupplierCreate,
    SupplierProductCreate,
    SupplierProductRead,
    SupplierProductUpdate,
    SupplierRead,
    SupplierUpdate,
)
from stockflow.webhooks import service as webhooks
from stockflow.webhooks.service import WebhookConfig


def etag_of(supplier: SupplierRead) -> str:
    return etags.etag(supplier.id, supplier.version)


def link_etag_of(link: SupplierProductRead) -> str:
    """Built from the entry's own version: ``preferred`` depends on the other entries, so a
    change to those does not invalidate an ETag held for these terms."""
    return etags.etag(link.id, link.version)


async def _check_connector(config: WebhookConfig | None, connector: dict[str, Any]) -> None:
    """A webhook connector's URL passes the same SSRF checks as a webhook endpoint's."""
    if config is not None and connector.get("type") == "webhook":
        connector["url"] = await webhooks.checked_url(
            config, connector["url"], location="body.connector.url"
        )


async def create_supplier(
    session: AsyncSession,
    *,
    actor: Principal,
    data: SupplierCreate,
    config: WebhookConfig | None = None,
) -> SupplierRead:
    connector = data.connector.model_dump(mode="json")
    await _check_connector(config, connector)
    now = datetime.now(UTC)
    supplier = Supplier(
        id=new_id("sup"),
        name=data.name,
        contact_email=str(data.contact_email) if data.contact_email else None,
        lead_time_days=data.lead_time_days,
        connector=connector,
        active=data.active,
        created_at=now,
        updated_at=now,
    )
    await repository.add(session, supplier)
    read = SupplierRead.model_validate(supplier)
    await audit.record(
        session,
        actor=actor,
        action="supplier.created",
        resource_type="supplier",
        resource_id=supplier.id,
        before=None,
        after=read.model_dump(mode="json"),
    )
    return read


async def get_supplier(session: AsyncSession, *, supplier_id: str) -> SupplierRead:
    supplier = await repository.get_supplier(session, supplier_id)
    if supplier is None:
        raise NotFound(f"Supplier {supplier_id} does not exist.")
    return SupplierRead.model_validate(supplier)


async def list_suppliers(
    session: AsyncSession, *, limit: int, cursor: str | None, active: bool | None
) -> Page[SupplierRead]:
    page = await repository.list_suppliers(session, limit=limit, cursor=cursor, active=active)
    return Page([SupplierRead.model_validate(s) for s in page.items], page.next_cursor)


async def update_supplier(
    session: AsyncSession,
    *,
    actor: Principal,
    supplier_id: str,
    data: SupplierUpdate,
    if_match: str | None,
    config: WebhookConfig | None = None,
) -> SupplierRead:
    connector = data.connector.model_dump(mode="json") if data.connector is not None else None
    if connector is not None:
        # Resolved before the row is locked: no lock is held across a name lookup.
        await _check_connector(config, connector)
    supplier = await repository.get_supplier_for_update(session, supplier_id)
    if supplier is None:
        raise NotFound(f"Supplier {supplier_id} does not exist.")
    before = SupplierRead.model_validate(supplier)
    etags.require_match(if_match, etag_of(before), what=f"Supplier {supplier_id}")
    if data.active is False and supplier.active:
        relying = await repository.backorder_products_relying_on(session, supplier.id)
        if relying:
            raise SupplierStillNeeded(
                f"Supplier {supplier_id} is the only active supplier of "
                + ", ".join(relying)
                + ", whose shortage policy is backorder: give them another supplier first.",
                supplier_id=supplier_id,
                skus=relying,
            )
    for field in data.model_fields_set:
        value: Any = getattr(data, field)
        if field == "connector":
            value = connector
        elif field == "contact_email" and value is not None:
            value = str(value)
        setattr(supplier, field, value)
    if not session.is_modified(supplier):
        return before
    supplier.updated_at = datetime.now(UTC)
    await repository.save(session)
    after = SupplierRead.model_validate(supplier)
    await audit.record(
        session,
        actor=actor,
        action="supplier.updated",
        resource_type="supplier",
        resource_id=supplier.id,
        before=before.model_dump(mode="json"),
        after=after.model_dump(mode="json"),
    )
    return after


def _link_read(link: SupplierProduct, *, sku: str, preferred: bool) -> SupplierProductRead:
    return SupplierProductRead(
        id=link.id,
        sku=sku,
        supplier_id=link.supplier_id,
        supplier_sku=link.supplier_sku,
        cost_price=link.cost_price,
        currency=link.currency,
        pack_size=link.pack_size,
        min_order_qty=link.min_order_qty,
        lead_time_days=link.lead_time_days,
        priority=link.priority,
        preferred=preferred,
        version=link.version,
        created_at=link.created_at,
        updated_at=link.updated_at,
    )


async def _product(session: AsyncSession, sku: str, *, lock: bool = False) -> Product:
    if lock:
        product = await catalog_repository.get_by_sku_for_update(session, sku)
    else:
        product = await catalog_repository.get_by_sku(session, sku)
    if product is None:
        raise NotFound(f"Product {sku} does not exist.")
    return product


async def list_product_suppliers(session: AsyncSession, *, sku: str) -> list[SupplierProductRead]:
    product = await _product(session, sku)
    links = await repository.supplier_products(session, product.id)
    return [
        _link_read(link, sku=product.sku, preferred=index == 0 and active)
        for index, (link, active) in enumerate(links)
    ]


async def _read_link(
    session: AsyncSession, product: Product, supplier_id: str
) -> SupplierProductRead:
    links = await repository.supplier_products(session, product.id)
    for index, (link, active) in enumerate(links):
        if link.supplier_id == supplier_id:
            return _link_read(link, sku=product.sku, preferred=index == 0 and active)
    raise NotFound(f"Supplier {supplier_id} does not sell {product.sku}.")


async def add_product_supplier(
    session: AsyncSession, *, actor: Principal, sku: str, data: SupplierProductCreate
) -> SupplierProductRead:
    product = await _product(session, sku)
    supplier = await repository.get_supplier(session, data.supplier_id)
    if supplier is not None and not supplier.active:
        raise InvalidRequest(
            f"Supplier {data.supplier_id} is inactive; activate it first.",
            errors=[{"location": "body.supplier_id", "message": "inactive supplier"}],
        )
    if supplier is None:
        raise InvalidRequest(
            f"Supplier {data.supplier_id} does not exist.",
            errors=[{"location": "body.supplier_id", "message": "unknown supplier"}],
        )
    now = datetime.now(UTC)
    link = SupplierProduct(
        id=new_id("spr"),
        product_id=product.id,
        supplier_id=data.supplier_id,
        supplier_sku=data.supplier_sku,
        cost_price=data.cost_price,
        currency=str(data.currency),
        pack_size=data.pack_size,
        min_order_qty=data.min_order_qty,
        lead_time_days=data.lead_time_days,
        priority=data.priority,
        created_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            await repository.add(session, link)
    except IntegrityError as exc:
        # The unique (product, supplier) pair; also when a concurrent request added it first.
        raise AlreadyExists(
            f"Supplier {data.supplier_id} already sells {sku}; change it with PATCH.",
            sku=sku,
            supplier_id=data.supplier_id,
        ) from exc
    read = await _read_link(session, product, data.supplier_id)
    await audit.record(
        session,
        actor=actor,
        action="supplier_product.created",
        resource_type="supplier_product",
        resource_id=link.id,
        before=None,
        after=read.model_dump(mode="json"),
    )
    return read


async def update_product_supplier(
    session: AsyncSession,
    *,
    actor: Principal,
    sku: str,
    supplier_id: str,
    data: SupplierProductUpdate,
    if_match: str | None,
) -> SupplierProductRead:
    product = await _product(session, sku)
    # Locked until commit: concurrent updates queue instead of failing on each other's
    # version bump, and an If-Match check stays true until our write lands.
    link = await repository.get_supplier_product(
        session, product_id=product.id, supplier_id=supplier_id
    )
    if link is None:
        raise NotFound(f"Supplier {supplier_id} does not sell {sku}.")
    before = await _read_link(session, product, supplier_id)
    etags.require_match(
        if_match, link_etag_of(before), what=f"Supplier {supplier_id}'s entry for {sku}"
    )
    for field in data.model_fields_set:
        value: Any = getattr(data, field)
        setattr(link, field, str(value) if field == "currency" else value)
    if not session.is_modified(link):
        return before
    link.updated_at = datetime.now(UTC)
    await repository.save(session)
    after = await _read_link(session, product, supplier_id)
    await audit.record(
        session,
        actor=actor,
        action="supplier_product.updated",
        resource_type="supplier_product",
        resource_id=link.id,
        before=before.model_dump(mode="json"),
        after=after.model_dump(mode="json"),
    )
    return after


async def remove_product_supplier(
    session: AsyncSession, *, actor: Principal, sku: str, supplier_id: str
) -> None:
    # The product row stays locked until commit: two removals of a backorder product's last
    # two suppliers would otherwise each count two and leave it with none (PostgreSQL; a
    # SQLite writer holds the database lock already). A policy change locks it too.
    product = await _product(session, sku, lock=True)
    link = await repository.get_supplier_product(
        session, product_id=product.id, supplier_id=supplier_id
    )
    if link is None:
        raise NotFound(f"Supplier {supplier_id} does not sell {sku}.")
    others_active = [
        other
        for other, active in await repository.supplier_products(session, product.id)
        if active and other.supplier_id != supplier_id
    ]
    if product.shortage_policy == "backorder" and not others_active:
        raise SupplierStillNeeded(
            f"{supplier_id} is the only active supplier of {sku}, whose shortage policy is "
            "backorder: add another supplier first, or set `shortage_policy: reject`.",
            sku=sku,
            supplier_id=supplier_id,
        )
    before = await _read_link(session, product, supplier_id)
    await repository.remove_supplier_product(session, link)
    await audit.record(
        session,
        actor=actor,
        action="supplier_product.removed",
        resource_type="supplier_product",
        resource_id=link.id,
        before=before.model_dump(mode="json"),
        after=None,
    )
