"""Rate limits: a burst over the budget gets a 429 problem with ``Retry-After`` and the
IETF ``RateLimit`` fields; keys and addresses have budgets of their own; with Redis as the
store, every instance of the API spends the same budget."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from limits.storage import storage_from_string
from prometheus_client import REGISTRY
from pydantic import ValidationError
from sqlalchemy import text

from stockflow.app import create_app
from stockflow.auth.keys import generate_key
from stockflow.config import Settings
from stockflow.db.engine import Database
from tests.conftest import Keys
from tests.support import IN_CI

PROBLEM = "application/problem+json"
REDIS_URL = os.environ.get("STOCKFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RATE_LIMIT = re.compile(r'^"(?P<name>[a-z-]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')


@asynccontextmanager
async def serving(settings: Settings, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(settings, database=database)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as c:
        yield c
    await app.state.key_usage.drain()


def _refused_count(policy: str) -> float:
    return REGISTRY.get_sample_value("stockflow_rate_limited_total", {"policy": policy}) or 0.0


def assert_refused(response: httpx.Response, *, policy: str, quota: int, window: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == "/problems/rate-limited"
    assert body["status"] == 429
    assert body["request_id"] == response.headers["x-request-id"]
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= window
    assert response.headers["ratelimit-policy"] == f'"{policy}";q={quota};w={window}'
    fields = RATE_LIMIT.match(response.headers["ratelimit"])
    assert fields is not None, response.headers["ratelimit"]
    assert fields["name"] == policy
    assert fields["r"] == "0"
    assert int(fields["t"]) == retry_after


async def test_a_burst_over_the_key_budget_is_refused_with_the_limit_headers(
    settings: Settings, database: Database, keys: Keys
) -> None:
    limited = settings.model_copy(update={"rate_limit_per_key": "5/minute"})
    refused_before = _refused_count("per-key")
    async with serving(limited, database) as client:
        answers = [await client.get("/v1/products", headers=keys.staff) for _ in range(5)]
        assert [a.status_code for a in answers] == [200] * 5
        refused = await client.get("/v1/products", headers=keys.staff)
        assert_refused(refused, policy="per-key", quota=5, window=60)
        # Refused before the route: nothing else (a write either) gets through.
        write = await client.post(
            "/v1/customers", headers=keys.staff, json={"name": "Over the limit"}
        )
        assert write.status_code == 429
        # Another key has a budget of its own, and the probes are never limited.
        assert (await client.get("/v1/products", headers=keys.admin)).status_code == 200
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
    assert _refused_count("per-key") == refused_before + 2
    async with database.transaction(write=False) as session:
        created = await session.scalar(
            text("SELECT count(*) FROM customers WHERE name = 'Over the limit'")
        )
    assert created == 0


async def test_calls_without_a_valid_key_share_the_address_budget(
    settings: Settings, database: Database, keys: Keys
) -> None:
    limited = settings.model_copy(update={"rate_limit_per_address": "3/minute"})
    async with serving(limited, database) as client:
        # No key, a malformed key, a key that fails its checksum: one budget, the address's.
        tampered = keys.staff["Authorization"][:-1] + (
            "A" if not keys.staff["Authorization"].endswith("A") else "B"
        )
        answers = [
            await client.get("/v1/products"),
            await client.get("/v1/products", headers={"Authorization": "Bearer nonsense"}),
            await client.get("/v1/products", headers={"Authorization": tampered}),
        ]
        assert [a.status_code for a in answers] == [401, 401, 401]
        refused = await client.get("/openapi.json")
        assert_refused(refused, policy="per-address", quota=3, window=60)
        # A valid key is counted as itself, not by the address it comes from.
        assert (await client.get("/v1/products", headers=keys.staff)).status_code == 200


async def test_guessing_keys_spends_the_address_budget(
    settings: Settings, database: Database, keys: Keys
) -> None:
    limited = settings.model_copy(update={"rate_limit_per_address": "3/minute"})
    app = create_app(limited, database=database)
    guesser = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("198.51.100.7", 4000)),
        base_url="http://stockflow.test",
    )
    neighbour = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("198.51.100.8", 4000)),
        base_url="http://stockflow.test",
    )
    async with guesser, neighbour:
        # Each guess has a valid checksum, so each is a key with a budget of its own; its
        # failure is what counts against the address.
        for _ in range(3):
            guess = {"Authorization": f"Bearer {generate_key()}"}
            assert (await guesser.get("/v1/products", headers=guess)).status_code == 401
        assert_refused(
            await guesser.get(
                "/v1/products", headers={"Authorization": f"Bearer {generate_key()}"}
            ),
            policy="per-address",
            quota=3,
            window=60,
        )
        # Until the window ends, that address is refused whatever key it sends; another
        # address is not.
        assert (await guesser.get("/v1/products", headers=keys.staff)).status_code == 429
        assert (await neighbour.get("/v1/products", headers=keys.staff)).status_code == 200
    await app.state.key_usage.drain()


async def test_the_default_budget_lets_a_key_place_orders_in_bulk(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    answers = [await client.get("/v1/products", headers=keys.service) for _ in range(400)]
    assert {a.status_code for a in answers} == {200}


async def test_memory_counters_belong_to_one_instance(
    settings: Settings, database: Database, keys: Keys
) -> None:
    limited = settings.model_copy(update={"rate_limit_per_key": "2/minute"})
    async with serving(limited, database) as first, serving(limited, database) as second:
        for client in (first, second):
            for _ in range(2):
                assert (await client.get("/v1/products", headers=keys.staff)).status_code == 200


async def _redis_reachable() -> str | None:
    storage = storage_from_string("async+" + REDIS_URL)
    try:
        return None if await storage.check() else "no answer"  # type: ignore[misc]
    except Exception as exc:
        return repr(exc)


async def test_redis_counters_hold_across_instances(
    settings: Settings, database: Database, keys: Keys
) -> None:
    unreachable = await _redis_reachable()
    if unreachable is not None:
        if IN_CI:
            pytest.fail(f"Redis is required under CI but {REDIS_URL} is unreachable")
        pytest.skip(f"Redis unreachable at {REDIS_URL}: {unreachable}")
    shared = settings.model_copy(
        update={"rate_limit_per_key": "4/minute", "rate_limit_storage": REDIS_URL}
    )
    async with serving(shared, database) as first, serving(shared, database) as second:
        statuses = []
        for client in (first, second, first, second):
            statuses.append((await client.get("/v1/products", headers=keys.staff)).status_code)
        assert statuses == [200] * 4
        assert_refused(
            await second.get("/v1/products", headers=keys.staff),
            policy="per-key",
            quota=4,
            window=60,
        )
        assert_refused(
            await first.get("/v1/products", headers=keys.staff),
            policy="per-key",
            quota=4,
            window=60,
        )


async def test_an_unreachable_store_lets_requests_through(
    settings: Settings, database: Database, keys: Keys
) -> None:
    # Port 9 (discard) has no Redis behind it on loopback: every count fails at once.
    down = settings.model_copy(
        update={"rate_limit_per_key": "1/minute", "rate_limit_storage": "redis://127.0.0.1:9/0"}
    )
    async with serving(down, database) as client:
        for _ in range(3):
            assert (await client.get("/v1/products", headers=keys.staff)).status_code == 200


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("rate_limit_per_key", "lots"),
        ("rate_limit_per_key", "0/minute"),
        ("rate_limit_per_address", "10 per fortnight"),
        ("rate_limit_storage", "memcached://127.0.0.1:11211"),
        ("rate_limit_storage", "127.0.0.1:6379"),
    ],
)
def test_settings_refuse_limits_they_cannot_enforce(name: str, value: str) -> None:
    with pytest.raises(ValidationError, match=name):
        Settings(**{name: value})  # type: ignore[arg-type]
