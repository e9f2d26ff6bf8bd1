"""Stock levels, manual adjustments, the ledger, and reconciling the two."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.audit import service as audit
from stockflow.auth.roles import Principal
from stockflow.catalog import repository as catalog_repository
from stockflow.db.models import Product, StockMovement
from stockflow.db.pagination import Page
from stockflow.errors import InvalidRequest, NotFound, StockBelowReserved
from stockflow.events import outbox
from stockflow.events.types import EventType
from stockflow.ids import new_id
from stockflow.inventory import backlog, repository
from stockflow.inventory.policy import falls_low
from stockflow.inventory.repository import Drift, LevelRow
from stockflow.inventory.schemas import (
    AdjustmentCreate,
    AdjustmentRead,
    AvailabilityRead,
    InventoryRead,
    LocationStock,
    MovementRead,
)
from stockflow.observability import metrics
from stockflow.orders.repository import StockChange
from stockflow.purchasing import po_repository


async def _product(session: AsyncSession, viewer: Principal, sku: str) -> Product:
    product = await catalog_repository.get_by_sku(session, sku)
    if product is None or (viewer.is_customer and not product.active):
        raise NotFound(f"Product {sku} does not exist.")
    return product


async def _inventory(session: AsyncSession, product: Product) -> InventoryRead:
    return await inventory_of(session, product_id=product.id, sku=product.sku)


async def inventory_of(session: AsyncSession, *, product_id: str, sku: str) -> InventoryRead:
    """A product's stock as the API shows it to staff."""
    rows = await repository.levels(session, product_id)
    locations = [
        LocationStock(
            location_id=row.location_id,
            location=row.location_code,
            on_hand=row.on_hand,
            reserved=row.reserved,
            available=row.on_hand - row.reserved,
        )
        for row in rows
    ]
    on_hand = sum(row.on_hand for row in rows)
    reserved = sum(row.reserved for row in rows)
    # Read afresh: serving the backlog moves the counters with Core statements, which the
    # loaded product object does not see.
    counters = (await po_repository.counters(session, [product_id]))[product_id]
    return InventoryRead(
        sku=sku,
        on_hand=on_hand,
        reserved=reserved,
        available=on_hand - reserved,
        backordered=counters.backordered,
        on_order=counters.on_order,
        locations=locations,
    )


async def tell_if_low(
    session: AsyncSession,
    *,
    product_id: str,
    sku: str,
    threshold: int | None,
    available_before: int,
    available_after: int,
    now: datetime,
) -> None:
    """Write ``stock.low`` if this change took the product's available stock (at the
    default location) to its threshold or below, and count a stock-out if it took it to
    zero. Callers hold the stock row's lock."""
    if available_before > 0 >= available_after:
        metrics.count_on_commit(session, metrics.STOCK_OUTS)
    if not falls_low(threshold=threshold, before=available_before, after=available_after):
        return
    await outbox.record(
        session,
        EventType.STOCK_LOW,
        object_type="product",
        object_id=product_id,
        obj=await inventory_of(session, product_id=product_id, sku=sku),
        now=now,
        low_stock_threshold=threshold,
    )


async def _level_at(session: AsyncSession, product: Product, location_id: str) -> LevelRow | None:
    return next(
        (
            row
            for row in await repository.levels(session, product.id)
            if row.location_id == location_id
        ),
        None,
    )


async def get_inventory(
    session: AsyncSession, *, viewer: Principal, sku: str
) -> InventoryRead | AvailabilityRead:
    product = await _product(session, viewer, sku)
    inventory = await _inventory(session, product)
    if viewer.is_customer:
        return AvailabilityRead(sku=inventory.sku, available=inventory.available)
    return inventory


async def adjust_stock(
    session: AsyncSession, *, actor: Principal, sku: str, data: AdjustmentCreate
) -> AdjustmentRead:
    product = await _product(session, actor, sku)
    if data.location is None:
        location = await repository.default_location(session)
    else:
        found = await repository.get_location_by_code(session, data.location)
        if found is None:
            raise InvalidRequest(
                f"Location {data.location} does not exist.",
                errors=[{"location": "body.location", "message": "unknown location"}],
            )
        location = found
    now = datetime.now(UTC)
    after = await repository.add_on_hand(
        session, product_id=product.id, location_id=location.id, delta=data.delta, now=now
    )
    if after is None and await _level_at(session, product, location.id) is None:
        # A location added after the product was created: its stock row starts empty.
        await repository.open_stock_row(
            session, product_id=product.id, location_id=location.id, now=now
        )
        after = await repository.add_on_hand(
            session, product_id=product.id, location_id=location.id, delta=data.delta, now=now
        )
    if after is None:
        current = await _level_at(session, product, location.id)
        if current is None:
            raise RuntimeError(f"no stock row for {sku} at {location.code} after opening it")
        if current.on_hand + data.delta > repository.MAX_STOCK:
            raise InvalidRequest(
                f"Adding {data.delta} would leave {current.on_hand + data.delta} on hand of "
                f"{sku} at {location.code}, more than the {repository.MAX_STOCK} a stock row "
                "can hold.",
                errors=[
                    {
                        "location": "body.delta",
                        "message": f"on hand would exceed {repository.MAX_STOCK}",
                    }
                ],
            )
        if current.reserved == 0:
            detail = (
                f"Removing {-data.delta} would leave {current.on_hand + data.delta} on hand of "
                f"{sku} at {location.code}; stock cannot go below zero."
            )
        else:
            detail = (
                f"Removing {-data.delta} would leave {current.on_hand + data.delta} on hand of "
                f"{sku} at {location.code}, below the {current.reserved} reserved for open "
                "orders."
            )
        raise StockBelowReserved(
            detail,
            sku=sku,
            location=location.code,
            delta=data.delta,
            on_hand=current.on_hand,
            reserved=current.reserved,
        )
    on_hand_after, reserved_after = after
    movement = await repository.add_movement(
        session,
        StockMovement(
            id=new_id("mov"),
            product_id=product.id,
            location_id=location.id,
            on_hand_delta=data.delta,
            reserved_delta=0,
            on_hand_after=on_hand_after,
            reserved_after=reserved_after,
            reason="adjustment",
            note=data.reason,
            actor=actor.id,
            created_at=now,
        ),
    )
    reserved_before = reserved_after
    served: list[backlog.Allocation] = []
    if data.delta > 0 and location.is_default:
        # New stock goes to waiting orders first (DESIGN §2); the row is still locked.
        served = await backlog.serve(
            session,
            stock=StockChange(product.id, location.id, on_hand_after, reserved_after),
            actor_id=actor.id,
            now=now,
        )
        reserved_after += sum(allocation.units for allocation in served)
    stock_after = {"location": location.code, "on_hand": on_hand_after, "reserved": reserved_after}
    await audit.record(
        session,
        actor=actor,
        action="stock.adjusted",
        resource_type="stock_level",
        resource_id=f"{sku}@{location.code}",
        before={**stock_after, "on_hand": on_hand_after - data.delta, "reserved": reserved_before},
        after={
            **stock_after,
            "reason": data.reason,
            "movement_id": movement.id,
            "served_orders": [
                {"order_id": allocation.order_id, "units": allocation.units}
                for allocation in served
            ],
        },
    )
    read = AdjustmentRead(
        movement=MovementRead.model_validate(movement),
        inventory=await _inventory(session, product),
    )
    await outbox.record(
        session,
        EventType.STOCK_ADJUSTED,
        object_type="product",
        object_id=product.id,
        obj=read.inventory,
        now=now,
        movement=read.movement,
    )
    if location.is_default:
        await tell_if_low(
            session,
            product_id=product.id,
            sku=product.sku,
            threshold=product.low_stock_threshold,
            available_before=on_hand_after - data.delta - reserved_before,
            available_after=on_hand_after - reserved_after,
            now=now,
        )
    return read


async def list_movements(
    session: AsyncSession, *, viewer: Principal, sku: str, limit: int, cursor: str | None
) -> Page[MovementRead]:
    product = await _product(session, viewer, sku)
    page = await repository.movements_page(
        session, product_id=product.id, limit=limit, cursor=cursor
    )
    return Page([MovementRead.model_validate(m) for m in page.items], page.next_cursor)


async def reconcile(session: AsyncSession) -> list[Drift]:
    """Every counter its source does not reproduce; empty when all agree.

    ``on_hand`` and ``reserved`` of each stock row are replayed from the ledger; each
    product's reserved units are matched against its open orders' allocated, unshipped
    units; ``backordered`` and ``on_order`` of each product are summed from open lines.
    """
    drifts = await repository.ledger_drift(session)
    drifts.extend(await repository.reservation_drift(session))
    drifts.extend(await repository.product_counter_drift(session))
    return drifts
