"""The catalog: products are created, read, changed and deactivated, never deleted, so
that orders and the ledger always point at a product that exists."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow import etags
from stockflow.audit import service as audit
from stockflow.auth.roles import Principal
from stockflow.catalog import repository
from stockflow.catalog.schemas import (
    ProductCreate,
    ProductRead,
    ProductUpdate,
    check_reorder_levels,
)
from stockflow.db.models import Product
from stockflow.db.pagination import Page
from stockflow.errors import (
    AlreadyExists,
    BackorderNeedsSupplier,
    InvalidRequest,
    NotFound,
)
from stockflow.ids import new_id
from stockflow.inventory import repository as inventory_repository
from stockflow.inventory.policy import ShortagePolicy
from stockflow.purchasing import repository as purchasing_repository
from stockflow.purchasing import service as purchasing_service


def etag_of(product: ProductRead) -> str:
    return etags.etag(product.id, product.version)


async def _visible_product(session: AsyncSession, viewer: Principal, sku: str) -> Product:
    product = await repository.get_by_sku(session, sku)
    # Customers see only what they can buy; an inactive product is as good as absent.
    if product is None or (viewer.is_customer and not product.active):
        raise NotFound(f"Product {sku} does not exist.")
    return product


async def _require_supplier_for_backorder(session: AsyncSession, product: Product) -> None:
    if product.shortage_policy != ShortagePolicy.BACKORDER:
        return
    links = await purchasing_repository.supplier_products(session, product.id)
    if not any(active for _link, active in links):
        raise BackorderNeedsSupplier(
            f"Product {product.sku} has shortage_policy backorder but no active supplier: give "
            "`suppliers`, or set `shortage_policy: reject`.",
            sku=product.sku,
        )


def _inline_location(index: int, location: str) -> str:
    prefix = "body."
    field = location[len(prefix) :] if location.startswith(prefix) else location
    return f"body.suppliers.{index}.{field}"


async def create_product(
    session: AsyncSession,
    *,
    actor: Principal,
    data: ProductCreate,
    default_policy: ShortagePolicy = ShortagePolicy.REJECT,
) -> ProductRead:
    if await repository.get_by_sku(session, data.sku) is not None:
        raise AlreadyExists(f"Product {data.sku} already exists.", sku=data.sku)
    now = datetime.now(UTC)
    added = await repository.add(
        session,
        Product(
            id=new_id("prod"),
            sku=data.sku,
            name=data.name,
            description=data.description,
            unit_price=data.unit_price,
            currency=str(data.currency),
            active=data.active,
            metadata_=data.metadata,
            shortage_policy=(data.shortage_policy or default_policy).value,
            replenish_buffer_pct=data.replenish_buffer_pct,
            reorder_point=data.reorder_point,
            reorder_up_to=data.reorder_up_to,
            low_stock_threshold=data.low_stock_threshold,
            created_at=now,
            updated_at=now,
        ),
    )
    if added is None:
        # Created by a concurrent request between our look-up and our INSERT.
        raise AlreadyExists(f"Product {data.sku} already exists.", sku=data.sku)
    product = added
    await inventory_repository.open_stock_rows(session, product_id=product.id, now=now)
    for index, link in enumerate(data.suppliers):
        try:
            await purchasing_service.add_product_supplier(
                session, actor=actor, sku=product.sku, data=link
            )
        except InvalidRequest as exc:
            # The supplier service names fields of its own body (body.supplier_id); here
            # that body is one item of `suppliers`.
            raise InvalidRequest(
                exc.detail,
                errors=[
                    {**error, "location": _inline_location(index, error["location"])}
                    for error in exc.extensions.get("errors", [])
                ],
            ) from exc
    await _require_supplier_for_backorder(session, product)
    read = ProductRead.model_validate(product)
    await audit.record(
        session,
        actor=actor,
        action="product.created",
        resource_type="product",
        resource_id=product.sku,
        before=None,
        after=read.model_dump(mode="json"),
    )
    return read


async def get_product(session: AsyncSession, *, viewer: Principal, sku: str) -> ProductRead:
    return ProductRead.model_validate(await _visible_product(session, viewer, sku))


async def list_products(
    session: AsyncSession,
    *,
    viewer: Principal,
    limit: int,
    cursor: str | None,
    active: bool | None,
) -> Page[ProductRead]:
    if viewer.is_customer:
        if active is False:
            # Customers never see inactive products; asking for them finds none.
            return Page([], None)
        active = True
    page = await repository.list_page(session, limit=limit, cursor=cursor, active=active)
    return Page([ProductRead.model_validate(p) for p in page.items], page.next_cursor)


async def update_product(
    session: AsyncSession,
    *,
    actor: Principal,
    sku: str,
    data: ProductUpdate,
    if_match: str | None,
) -> ProductRead:
    # Locked until commit: concurrent updates queue instead of failing on each other's
    # version bump, and an If-Match check stays true until our write lands.
    product = await repository.get_by_sku_for_update(session, sku)
    if product is None:
        raise NotFound(f"Product {sku} does not exist.")
    before = ProductRead.model_validate(product)
    etags.require_match(if_match, etag_of(before), what=f"Product {sku}")
    changes = data.model_dump(exclude_unset=True)
    if "reorder_point" in changes and changes["reorder_point"] is None:
        changes.setdefault("reorder_up_to", None)  # no level to fill up to without a point
    for field, value in changes.items():
        if field == "metadata":
            product.metadata_ = value
        elif field == "currency":
            product.currency = str(value)
        elif field == "shortage_policy":
            product.shortage_policy = ShortagePolicy(value).value
        else:
            setattr(product, field, value)
    try:
        check_reorder_levels(product.reorder_point, product.reorder_up_to)
    except ValueError as exc:
        raise InvalidRequest(
            f"Product {sku}: {exc}.",
            errors=[{"location": "body.reorder_up_to", "message": str(exc)}],
        ) from exc
    # Without autoflush: the look-up of the suppliers would otherwise write the pending
    # changes, after which the product no longer counts as modified and the update would
    # answer the old state, with no audit record and no new updated_at.
    with session.no_autoflush:
        await _require_supplier_for_backorder(session, product)
    if not session.is_modified(product):
        return before
    product.updated_at = datetime.now(UTC)
    await repository.save(session)
    after = ProductRead.model_validate(product)
    await audit.record(
        session,
        actor=actor,
        action="product.updated",
        resource_type="product",
        resource_id=product.sku,
        before=before.model_dump(mode="json"),
        after=after.model_dump(mode="json"),
    )
    return after
