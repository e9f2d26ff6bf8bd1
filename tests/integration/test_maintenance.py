"""Housekeeping prunes idempotency records past their retention, and only those."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from stockflow.cli.main import app as cli
from stockflow.db.engine import Database
from stockflow.db.models import IdempotencyRecord
from stockflow.idempotency import repository
from stockflow.workers import maintenance


async def add_record(database: Database, key: str, *, expires_in: timedelta) -> None:
    now = datetime.now(UTC)
    async with database.transaction() as session:
        inserted = await repository.insert_if_absent(
            session,
            principal_id="key_test",
            key=key,
            request_hash="0" * 64,
            method="POST",
            path="/v1/orders",
            now=now,
            expires_at=now + expires_in,
            wait_seconds=1,
        )
        assert inserted
        await repository.complete(
            session, principal_id="key_test", key=key, status_code=201, body="{}", headers={}
        )


async def keys_left(database: Database) -> set[str]:
    async with database.transaction(write=False) as session:
        return set((await session.scalars(select(IdempotencyRecord.key))).all())


async def test_run_once_prunes_only_expired_records(database: Database) -> None:
    await add_record(database, "old", expires_in=timedelta(seconds=-1))
    await add_record(database, "fresh", expires_in=timedelta(hours=1))

    assert await maintenance.run_once(database) == {"idempotency_records": 1}
    assert await keys_left(database) == {"fresh"}
    assert await maintenance.run_once(database) == {"idempotency_records": 0}


async def test_the_server_loop_prunes_on_its_own(database: Database) -> None:
    await add_record(database, "old", expires_in=timedelta(seconds=-1))
    loop = asyncio.create_task(maintenance.run_forever(database, interval_seconds=0.05))
    try:
        async with asyncio.timeout(10):
            while await keys_left(database):
                await asyncio.sleep(0.05)
    finally:
        loop.cancel()
    assert await keys_left(database) == set()


async def test_command_line(database: Database, database_url: str) -> None:
    await add_record(database, "old", expires_in=timedelta(seconds=-1))

    def invoke() -> Result:
        return CliRunner().invoke(
            cli, ["maintenance", "run"], env={"STOCKFLOW_DATABASE_URL": database_url}
        )

    result = await asyncio.to_thread(invoke)
    assert result.exit_code == 0, result.output
    assert "idempotency_records: 1 pruned" in result.output
    async with database.transaction(write=False) as session:
        count = await session.scalar(select(func.count()).select_from(IdempotencyRecord))
    assert count == 0
