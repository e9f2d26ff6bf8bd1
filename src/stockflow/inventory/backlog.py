"""Serving the backlog (DESIGN §2): stock that becomes available at the default location
(a receipt, a cancellation, a positive adjustment) goes to backordered order lines of that
SKU, oldest order first, before any new order can take it.

Callers hold the SKU's stock row lock (they have just changed it), and order lines'
``allocated``/``backordered`` only ever change under that lock, so the queue read here
cannot move underneath the allocation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.inventory.queue import allocate_oldest_first, expected_arrival, promise_dates
from stockflow.observability import metrics
from stockflow.orders import repository as orders
from stockflow.orders.repository import StockChange
from stockflow.purchasing import po_repository


@dataclass(frozen=True, slots=True)
class Allocation:
    order_id: str
    line_id: str
    units: int


async def serve(
    session: AsyncSession,
    *,
    stock: StockChange,
    actor_id: str,
    now: datetime,
    purchase_order_id: str | None = None,
) -> list[Allocation]:
    """Hand what is available on ``stock`` (the locked default-location row as it is now)
    to the product's waiting lines; one reservation movement per order served."""
    available = stock.on_hand - stock.reserved
    if available <= 0:
        return []
    queue = (await orders.waiting_lines(session, [stock.product_id]))[stock.product_id]
    given = allocate_oldest_first(available, [(line, line.backordered) for line in queue])
    if not given:
        return []
    total = sum(units for _line, units in given)
    for line, units in given:
        await orders.allocate_to_line(session, line_id=line.line_id, units=units)
    after = await orders.reserve_units(
        session,
        product_id=stock.product_id,
        location_id=stock.location_id,
        quantity=total,
        now=now,
    )
    # One statement reserved the total; each order's movement carries the row as it would
    # have been right after that order's share, so the ledger replays step by step.
    reserved = after.reserved - total
    movements = []
    for line, units in given:
        reserved += units
        movements.append(
            orders.movement_row(
                StockChange(stock.product_id, stock.location_id, after.on_hand, reserved),
                on_hand_delta=0,
                reserved_delta=units,
                reason="backorder_allocated",
                actor_id=actor_id,
                order_id=line.order_id,
                purchase_order_id=purchase_order_id,
                now=now,
            )
        )
    await orders.add_movements(session, movements)
    await po_repository.add_backlog(session, product_id=stock.product_id, units=-total)
    metrics.count_on_commit(session, metrics.UNITS_RESERVED, total)
    # Whether an order now waits for nothing is decided later, with its row locked
    # (`stockflow.orders.readiness`): an insert here takes no lock another waits on.
    await orders.add_readiness_checks(
        session, sorted({line.order_id for line, _units in given}), now=now
    )
    return [Allocation(line.order_id, line.line_id, units) for line, units in given]


async def promises(
    session: AsyncSession,
    product_ids: Sequence[str],
    *,
    extra_waiting: Mapping[str, Sequence[tuple[str, int]]] | None = None,
    extra_incoming: Mapping[str, Sequence[tuple[date, int]]] | None = None,
) -> dict[str, date | None]:
    """The promise date of every waiting line of these products, keyed by line id.

    A preview passes the lines it would add (at the end of their queues) and the PO
    quantities it would order, so it promises exactly what placing the order would.
    """
    if not product_ids:
        return {}
    now = datetime.now(UTC)
    queues = await orders.waiting_lines(session, product_ids)
    arrivals: dict[str, list[tuple[date, int]]] = {product_id: [] for product_id in product_ids}
    for line in await po_repository.incoming(session, product_ids):
        arrivals[line.product_id].append(
            (
                expected_arrival(
                    acknowledged_date=line.expected_delivery_date,
                    submitted_at=line.submitted_at,
                    planned_submission=line.submit_after,
                    now=now,
                    lead_time_days=line.lead_time_days,
                ),
                line.units,
            )
        )
    dates: dict[str, date | None] = {}
    for product_id in product_ids:
        waiting = [(line.line_id, line.backordered) for line in queues[product_id]]
        waiting.extend((extra_waiting or {}).get(product_id, ()))
        incoming = arrivals[product_id] + list((extra_incoming or {}).get(product_id, ()))
        dates.update(promise_dates(waiting, incoming))
    return dates
