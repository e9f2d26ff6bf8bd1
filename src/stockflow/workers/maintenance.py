"""Background jobs run inside each server process (and on demand by the CLI).

Each job is a single guarded statement, so several server processes running it at once
only repeat harmless work: a record pruned or a draft submitted by one process no longer
matches the statement of the next.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from stockflow.db.engine import Database
from stockflow.idempotency import service as idempotency
from stockflow.observability.logging import get_logger
from stockflow.purchasing import po_service

log = get_logger(__name__)


async def run_once(database: Database) -> dict[str, int]:
    """Prune expired idempotency records."""
    async with database.transaction() as session:
        pruned = await idempotency.prune(session)
    if pruned:
        log.info("idempotency_records_pruned", count=pruned)
    return {"idempotency_records": pruned}


async def submit_due_purchase_orders(database: Database) -> list[str]:
    """Submit replenishment drafts whose consolidation window has closed; returns their ids.

    One guarded UPDATE (``WHERE status = 'draft' AND submit_after <= now``): with several
    processes on the same timer, each draft is submitted by exactly one of them.
    """
    async with database.transaction() as session:
        return await po_service.submit_due(session, now=datetime.now(UTC))


async def _every(
    name: str, job: Callable[[], Awaitable[object]], *, interval_seconds: float
) -> None:
    while True:
        try:
            await job()
        except Exception:
            # A failed round (database restarting, say) is retried at the next interval.
            log.warning("background_job_failed", job=name, exc_info=True)
        await asyncio.sleep(interval_seconds)


async def run_forever(database: Database, *, interval_seconds: float) -> None:
    await _every("maintenance", lambda: run_once(database), interval_seconds=interval_seconds)


async def submit_forever(database: Database, *, interval_seconds: float) -> None:
    await _every(
        "purchase_order_submission",
        lambda: submit_due_purchase_orders(database),
        interval_seconds=interval_seconds,
    )
