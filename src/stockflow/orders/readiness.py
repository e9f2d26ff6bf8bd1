"""Telling ``order.ready_to_ship``: once every unit of a backordered order is reserved.

Serving the backlog (a receipt, a cancellation, an adjustment) queues a check for each
order it gave units to; this job takes a batch of checks, locks those orders' rows (in id
order), reads their lines and writes the event for each that waits for nothing and has
not been told yet. Deciding in the serving transaction would miss an order whose last two
SKUs are served by two transactions at once (each still sees the other's line waiting),
and would write the event without the order's lock, out of order with its shipments.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.events import outbox
from stockflow.events.types import EventType
from stockflow.orders import repository
from stockflow.orders.service import to_read

BATCH = 200


async def settle(session: AsyncSession, *, now: datetime) -> list[str]:
    """One batch of checks; the ids of the orders told ready to ship."""
    order_ids = await repository.claim_readiness_checks(session, limit=BATCH)
    if not order_ids:
        return []
    orders = await repository.lock_orders(session, order_ids)
    lines = await repository.lines_of(session, list(orders))
    already = await repository.told_ready(session, list(orders))
    told = []
    for order_id, order in orders.items():
        waiting = any(line.backordered > 0 for line in lines[order_id])
        # A cancelled order ships nothing; a shipped one was told by its shipment.
        if order.status in ("cancelled", "shipped") or waiting or order_id in already:
            continue
        order.updated_at = now
        await outbox.record(
            session,
            EventType.ORDER_READY_TO_SHIP,
            object_type="order",
            object_id=order_id,
            obj=to_read(order, lines[order_id]),
            now=now,
        )
        told.append(order_id)
    await repository.flush(session)
    return told
