"""Housekeeping that keeps tables from growing forever, run in the server process.

Each job is a single idempotent statement, so several server processes running it at once
only repeat harmless work.
"""

from __future__ import annotations

import asyncio

from stockflow.db.engine import Database
from stockflow.idempotency import service as idempotency
from stockflow.observability.logging import get_logger

log = get_logger(__name__)


async def run_once(database: Database) -> dict[str, int]:
    async with database.transaction() as session:
        pruned = await idempotency.prune(session)
    if pruned:
        log.info("idempotency_records_pruned", count=pruned)
    return {"idempotency_records": pruned}


async def run_forever(database: Database, *, interval_seconds: float) -> None:
    while True:
        try:
            await run_once(database)
        except Exception:
            # A failed round (database restarting, say) is retried at the next interval.
            log.warning("maintenance_failed", exc_info=True)
        await asyncio.sleep(interval_seconds)
