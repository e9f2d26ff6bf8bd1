"""``last_used_at``: written at most once per interval per key, never in the request's
own transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from stockflow.auth import repository as auth_repository
from stockflow.auth.usage import KeyUsageRecorder
from stockflow.db.engine import Database
from stockflow.db.models import ApiKey
from tests.conftest import Keys

MINUTE = timedelta(minutes=1)


async def last_used(database: Database, key_id: str) -> datetime | None:
    async with database.transaction(write=False) as session:
        value: datetime | None = await session.scalar(
            select(ApiKey.last_used_at).where(ApiKey.id == key_id)
        )
        return value


async def use(client: httpx.AsyncClient, headers: dict[str, str], app: FastAPI) -> None:
    response = await client.get("/v1/products", headers=headers)
    assert response.status_code == 200
    await app.state.key_usage.drain()


@pytest.fixture
def record_use_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Every guarded write the recorders attempt, with whether it changed the row."""
    calls: list[tuple[str, bool]] = []
    original: Callable[..., Awaitable[bool]] = auth_repository.record_use

    async def counting(session: Any, key_id: str, **kwargs: Any) -> bool:
        changed = await original(session, key_id, **kwargs)
        calls.append((key_id, changed))
        return changed

    monkeypatch.setattr(auth_repository, "record_use", counting)
    return calls


def test_the_interval_is_a_minute_by_default(app: FastAPI) -> None:
    assert app.state.key_usage.interval == MINUTE


async def test_a_request_sets_last_used_at(
    client: httpx.AsyncClient, keys: Keys, app: FastAPI, database: Database
) -> None:
    key_id = keys.ids["service"]
    assert await last_used(database, key_id) is None
    started = datetime.now(UTC)
    await use(client, keys.service, app)
    stamped = await last_used(database, key_id)
    assert stamped is not None
    assert started <= stamped <= datetime.now(UTC)
    # The API shows the same value, and only the calling key was touched.
    shown = (await client.get(f"/v1/api-keys/{key_id}", headers=keys.admin)).json()
    assert datetime.fromisoformat(shown["last_used_at"]) == stamped
    assert await last_used(database, keys.ids["staff"]) is None


async def test_within_the_interval_it_is_not_written_again_and_after_it_is(
    client: httpx.AsyncClient,
    keys: Keys,
    app: FastAPI,
    database: Database,
    record_use_calls: list[tuple[str, bool]],
) -> None:
    key_id = keys.ids["staff"]
    await use(client, keys.staff, app)
    first = await last_used(database, key_id)
    assert first is not None
    assert record_use_calls == [(key_id, True)]

    for _ in range(3):
        await use(client, keys.staff, app)
    assert await last_used(database, key_id) == first
    assert record_use_calls == [(key_id, True)]  # not even attempted

    recorder: KeyUsageRecorder = app.state.key_usage
    almost = first + MINUTE - timedelta(seconds=1)
    recorder.clock = lambda: almost
    await use(client, keys.staff, app)
    assert await last_used(database, key_id) == first

    later = first + MINUTE + timedelta(seconds=5)
    recorder.clock = lambda: later
    await use(client, keys.staff, app)
    assert await last_used(database, key_id) == later
    assert record_use_calls == [(key_id, True), (key_id, True)]

    # And again not within the next minute after that.
    recorder.clock = lambda: later + timedelta(seconds=30)
    await use(client, keys.staff, app)
    assert await last_used(database, key_id) == later


async def test_a_burst_of_requests_writes_once(
    client: httpx.AsyncClient,
    keys: Keys,
    app: FastAPI,
    database: Database,
    record_use_calls: list[tuple[str, bool]],
) -> None:
    responses = await asyncio.gather(
        *(client.get("/v1/products", headers=keys.service) for _ in range(10))
    )
    assert all(r.status_code == 200 for r in responses)
    await app.state.key_usage.drain()
    assert record_use_calls == [(keys.ids["service"], True)]
    assert await last_used(database, keys.ids["service"]) is not None


async def test_each_key_is_tracked_on_its_own(
    client: httpx.AsyncClient, keys: Keys, app: FastAPI, database: Database
) -> None:
    await use(client, keys.admin, app)
    await use(client, keys.customer, app)
    assert await last_used(database, keys.ids["admin"]) is not None
    assert await last_used(database, keys.ids["customer"]) is not None
    assert await last_used(database, keys.ids["service"]) is None


async def test_the_sql_guard_writes_at_most_once_per_interval(
    keys: Keys, database: Database
) -> None:
    """Several processes each decide to write; the statement itself lets one through."""
    key_id = keys.ids["service"]
    now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    async def record(at: datetime) -> bool:
        async with database.transaction() as session:
            return await auth_repository.record_use(session, key_id, now=at, interval=MINUTE)

    assert await record(now) is True
    assert await record(now) is False
    assert await record(now + timedelta(seconds=59)) is False
    assert await last_used(database, key_id) == now
    assert await record(now + MINUTE) is True
    assert await last_used(database, key_id) == now + MINUTE
    # A process whose clock lags behind does not move the timestamp backwards.
    assert await record(now) is False
    assert await last_used(database, key_id) == now + MINUTE


async def test_two_processes_write_once(
    keys: Keys, database: Database, record_use_calls: list[tuple[str, bool]]
) -> None:
    """Two recorders (as in two server processes) see the same stale value and both try."""
    key_id = keys.ids["staff"]
    now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    recorders = [KeyUsageRecorder(database, interval=MINUTE, clock=lambda: now) for _ in "ab"]
    for recorder in recorders:
        recorder.note(key_id, None)
    for recorder in recorders:
        await recorder.drain()
    assert sorted(changed for _, changed in record_use_calls) == [False, True]
    assert await last_used(database, key_id) == now


async def test_the_write_is_not_part_of_the_request_transaction(
    client: httpx.AsyncClient, keys: Keys, app: FastAPI, database: Database
) -> None:
    """A request whose transaction rolls back still counts as a use of its key."""
    first = await client.post(
        "/v1/customers", headers=keys.service, json={"name": "A", "external_ref": "same"}
    )
    assert first.status_code == 201
    await app.state.key_usage.drain()
    stamped = await last_used(database, keys.ids["service"])
    assert stamped is not None

    later = stamped + MINUTE + timedelta(seconds=1)
    app.state.key_usage.clock = lambda: later
    refused = await client.post(
        "/v1/customers", headers=keys.service, json={"name": "B", "external_ref": "same"}
    )
    assert refused.status_code == 409  # this request's transaction was rolled back
    await app.state.key_usage.drain()
    assert await last_used(database, keys.ids["service"]) == later


async def test_a_locked_key_row_does_not_hold_up_requests(
    client: httpx.AsyncClient, keys: Keys, app: FastAPI, database: Database
) -> None:
    """While another transaction holds the key's row (or, on SQLite, the write lock), the
    key's requests are still served; only the usage write waits for it."""
    key_id = keys.ids["service"]
    async with database.transaction() as blocker:
        await blocker.execute(select(ApiKey.id).where(ApiKey.id == key_id).with_for_update())
        response = await asyncio.wait_for(
            client.get("/v1/products", headers=keys.service), timeout=5
        )
        assert response.status_code == 200
        await asyncio.sleep(0.2)
        assert await last_used(database, key_id) is None  # the write is waiting, not done
    await app.state.key_usage.drain()
    assert await last_used(database, key_id) is not None


async def test_a_failed_usage_write_is_retried_on_a_later_request(
    client: httpx.AsyncClient,
    keys: Keys,
    app: FastAPI,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> bool:
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(auth_repository, "record_use", broken)
    await use(client, keys.service, app)  # the request itself succeeds
    assert await last_used(database, keys.ids["service"]) is None

    monkeypatch.undo()
    await use(client, keys.service, app)
    assert await last_used(database, keys.ids["service"]) is not None


async def test_a_revoked_or_refused_key_records_nothing(
    client: httpx.AsyncClient, keys: Keys, app: FastAPI, database: Database
) -> None:
    await client.delete(f"/v1/api-keys/{keys.ids['staff']}", headers=keys.admin)
    assert (await client.get("/v1/products", headers=keys.staff)).status_code == 401
    await app.state.key_usage.drain()
    assert await last_used(database, keys.ids["staff"]) is None
