"""Housekeeping prunes idempotency records and events past their retention, and only those."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from stockflow.cli.main import app as cli
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.db.models import Delivery, DeliveryAttempt, Event, IdempotencyRecord
from stockflow.idempotency import repository
from stockflow.workers import maintenance
from stockflow.workers.runner import Worker, build_relay


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

    assert await maintenance.run_once(database) == {"idempotency_records": 1, "events": 0}
    assert await keys_left(database) == {"fresh"}
    assert await maintenance.run_once(database) == {"idempotency_records": 0, "events": 0}


async def test_the_worker_prunes_on_its_own_and_stops_when_told(
    database: Database, database_url: str
) -> None:
    await add_record(database, "old", expires_in=timedelta(seconds=-1))
    settings = Settings(database_url=database_url, maintenance_interval_seconds=1)
    relay = build_relay(settings, database)
    stop = asyncio.Event()
    running = asyncio.create_task(Worker(settings, database, relay).run(stop))
    try:
        async with asyncio.timeout(10):
            while await keys_left(database):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await running
        await relay.aclose()
    assert await keys_left(database) == set()
    assert running.done()
    assert running.exception() is None


async def add_event(
    database: Database, event_id: str, *, age: timedelta, dispatched: bool, delivery: str | None
) -> None:
    now = datetime.now(UTC)
    async with database.transaction() as session:
        session.add(
            Event(
                id=event_id,
                type="order.created",
                object_type="order",
                object_id="ord_X",
                data="{}",
                created_at=now - age,
                dispatched_at=now - age if dispatched else None,
            )
        )
        await session.flush()
        if delivery is not None:
            seq = await session.scalar(select(Event.seq).where(Event.id == event_id))
            session.add(
                Delivery(
                    id=f"whd_{event_id}",
                    event_id=event_id,
                    event_seq=seq,
                    object_id="ord_X",
                    target_type="webhook",
                    target_id="whe_X",
                    status=delivery,
                    attempts=1,
                    max_attempts=10,
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
            session.add(
                DeliveryAttempt(
                    id=f"wha_{event_id}",
                    delivery_id=f"whd_{event_id}",
                    attempted_at=now,
                    status_code=200,
                    latency_ms=3,
                )
            )


async def test_events_past_retention_go_with_their_finished_deliveries(
    database: Database,
) -> None:
    old = timedelta(days=31)
    await add_event(database, "evt_delivered", age=old, dispatched=True, delivery="delivered")
    await add_event(database, "evt_dead", age=old, dispatched=True, delivery="dead")
    await add_event(database, "evt_nobody", age=old, dispatched=True, delivery=None)
    await add_event(database, "evt_pending", age=old, dispatched=True, delivery="pending")
    await add_event(database, "evt_waiting", age=old, dispatched=False, delivery=None)
    await add_event(
        database, "evt_recent", age=timedelta(days=29), dispatched=True, delivery="delivered"
    )

    assert (await maintenance.run_once(database, event_retention_days=30))["events"] == 3
    async with database.transaction(write=False) as session:
        left = set((await session.scalars(select(Event.id))).all())
        deliveries = set((await session.scalars(select(Delivery.event_id))).all())
        attempts = set((await session.scalars(select(DeliveryAttempt.delivery_id))).all())
    assert left == {"evt_pending", "evt_waiting", "evt_recent"}
    assert deliveries == {"evt_pending", "evt_recent"}
    assert attempts == {"whd_evt_pending", "whd_evt_recent"}


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


async def test_the_command_keeps_events_for_the_configured_retention(
    database: Database, database_url: str
) -> None:
    await add_event(
        database, "evt_five_days", age=timedelta(days=5), dispatched=True, delivery="delivered"
    )

    def invoke(days: str) -> Result:
        return CliRunner().invoke(
            cli,
            ["maintenance", "run"],
            env={"STOCKFLOW_DATABASE_URL": database_url, "STOCKFLOW_EVENT_RETENTION_DAYS": days},
        )

    kept = await asyncio.to_thread(invoke, "7")
    assert kept.exit_code == 0, kept.output
    assert "events: 0 pruned" in kept.output
    pruned = await asyncio.to_thread(invoke, "3")
    assert "events: 1 pruned" in pruned.output
    async with database.transaction(write=False) as session:
        assert (await session.scalar(select(func.count()).select_from(Event))) == 0
