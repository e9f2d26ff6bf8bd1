"""The state an operator watches that lives in the database, read in one short transaction
at scrape time (and by ``/readyz``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from stockflow.observability import repository
from stockflow.purchasing.states import PurchaseOrderStatus

if TYPE_CHECKING:
    from stockflow.db.engine import Database


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    backorders_open: int = 0
    backordered_units: int = 0
    purchase_orders: dict[str, int] = field(default_factory=dict)
    purchase_orders_overdue: int = 0
    products_out_of_stock: int = 0
    products_low_stock: int = 0
    outbox_pending_events: int = 0
    outbox_oldest_age_seconds: float = 0.0
    deliveries_pending: dict[str, int] = field(default_factory=dict)
    deliveries_oldest_pending_age_seconds: float = 0.0
    dead_letters: dict[str, int] = field(default_factory=dict)
    webhook_endpoints_disabled: int = 0
    orders_awaiting_payment: int = 0
    worker_heartbeat_age_seconds: float | None = None
    workers_alive: int = 0


PURCHASE_ORDER_STATES = tuple(status.value for status in PurchaseOrderStatus)
TARGET_TYPES = ("webhook", "supplier", "email")


def age_seconds(now: datetime, since: datetime | None) -> float:
    """Seconds from ``since`` to ``now`` (0 when there is nothing, or the clocks disagree)."""
    return max(0.0, (now - since).total_seconds()) if since is not None else 0.0


async def read_state(database: Database, *, heartbeat_interval: float) -> StateSnapshot:
    now = datetime.now(UTC)
    async with database.transaction(write=False) as session:
        purchase_orders = await repository.purchase_orders_by_status(session)
        pending = await repository.deliveries_pending(session)
        dead = await repository.dead_letters(session)
        outbox_count, outbox_oldest = await repository.undispatched_events(session)
        last_beat, alive = await repository.heartbeats(
            session, alive_since=now - timedelta(seconds=3 * heartbeat_interval)
        )
        return StateSnapshot(
            backorders_open=await repository.lines_waiting(session),
            backordered_units=await repository.units_backordered(session),
            purchase_orders={
                state: purchase_orders.get(state, 0) for state in PURCHASE_ORDER_STATES
            },
            purchase_orders_overdue=await repository.purchase_orders_overdue(
                session, today=now.date()
            ),
            products_out_of_stock=await repository.products_out_of_stock(session),
            products_low_stock=await repository.products_low_stock(session),
            outbox_pending_events=outbox_count,
            outbox_oldest_age_seconds=age_seconds(now, outbox_oldest),
            deliveries_pending={kind: pending.get(kind, (0, None))[0] for kind in TARGET_TYPES},
            deliveries_oldest_pending_age_seconds=max(
                (age_seconds(now, oldest) for _count, oldest in pending.values()), default=0.0
            ),
            dead_letters={kind: dead.get(kind, 0) for kind in TARGET_TYPES},
            webhook_endpoints_disabled=await repository.endpoints_disabled(session),
            orders_awaiting_payment=await repository.orders_awaiting_payment(session),
            worker_heartbeat_age_seconds=None if last_beat is None else age_seconds(now, last_beat),
            workers_alive=alive,
        )
