"""Housekeeping jobs, run by the worker on a timer (and on demand by the CLI).

Each job is a guarded statement or a batch of them, so several workers running it at once
only repeat harmless work: a record pruned or a draft submitted by one no longer matches
the statement of the next.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stockflow.db.engine import Database
from stockflow.events import repository as events
from stockflow.idempotency import service as idempotency
from stockflow.observability.logging import get_logger
from stockflow.purchasing import inbound, po_service

log = get_logger(__name__)

DEFAULT_EVENT_RETENTION_DAYS = 30


async def run_once(
    database: Database, *, event_retention_days: int = DEFAULT_EVENT_RETENTION_DAYS
) -> dict[str, int]:
    """Prune expired idempotency records, and events past their retention whose
    deliveries are all finished (with those deliveries and their attempts)."""
    now = datetime.now(UTC)
    async with database.transaction() as session:
        pruned = await idempotency.prune(session)
    async with database.transaction() as session:
        pruned_events = await events.prune(
            session, older_than=now - timedelta(days=event_retention_days)
        )
    counts = {"idempotency_records": pruned, "events": pruned_events}
    if pruned or pruned_events:
        log.info("pruned", **counts)
    return counts


async def submit_due_purchase_orders(database: Database) -> list[str]:
    """Submit replenishment drafts whose consolidation window has closed; returns their ids.

    One guarded UPDATE (``WHERE status = 'draft' AND submit_after <= now``): with several
    processes on the same timer, each draft is submitted by exactly one of them.
    """
    async with database.transaction() as session:
        return await po_service.submit_due(session, now=datetime.now(UTC))


async def apply_supplier_messages(database: Database) -> int:
    """Apply the supplier messages waiting in the inbox; the number applied. A read
    first, so an idle worker takes no write lock."""
    async with database.transaction(write=False) as session:
        if not await inbound.waiting(session):
            return 0
    async with database.transaction() as session:
        return await inbound.process(session, now=datetime.now(UTC))
