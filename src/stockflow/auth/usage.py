"""``last_used_at`` bookkeeping, kept off the request's transaction.

Writing the key row inside every request would make each key a hot row that serialises all
of its requests. Instead a request notes the use here; at most once per interval per key a
short transaction of its own writes it, guarded in SQL so that several processes together
still write it at most once per interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from stockflow.auth import repository
from stockflow.db.engine import Database
from stockflow.observability.logging import get_logger

log = get_logger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class KeyUsageRecorder:
    def __init__(
        self,
        database: Database,
        *,
        interval: timedelta,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._database = database
        self.interval = interval
        self.clock = clock
        self._next_write: dict[str, datetime] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def note(self, key_id: str, last_used_at: datetime | None) -> None:
        now = self.clock()
        if last_used_at is not None and now - last_used_at < self.interval:
            return
        if now < self._next_write.get(key_id, now):
            return
        self._next_write[key_id] = now + self.interval
        task = asyncio.create_task(self._write(key_id, now))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, key_id: str, now: datetime) -> None:
        try:
            async with self._database.transaction() as session:
                await repository.record_use(session, key_id, now=now, interval=self.interval)
        except Exception:
            # Losing one usage timestamp is harmless; failing the request for it is not.
            self._next_write.pop(key_id, None)
            log.warning("key_usage_write_failed", key_id=key_id, exc_info=True)

    async def drain(self) -> None:
        """Wait for writes in flight (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
