"""Placing an order receives its whole body before it takes a database connection
(decision 21): a client that uploads slowly holds neither a pooled connection nor SQLite's
write lock while it does."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import MutableMapping
from typing import Any

import httpx

from stockflow.app import create_app
from stockflow.config import Settings
from stockflow.db.engine import Database
from tests.api.test_orders import create_product
from tests.conftest import Keys


async def test_a_slow_upload_holds_no_database_connection(
    database_url: str, database: Database, keys: Keys
) -> None:
    # One pooled connection: a request that held it would stall every other one.
    settings = Settings(database_url=database_url, database_pool_size=1)
    narrow = Database(settings)
    app = create_app(settings, database=narrow)
    transport = httpx.ASGITransport(app=app)
    first_half_sent = asyncio.Event()
    rest_may_come = asyncio.Event()
    upload: asyncio.Task[None] | None = None
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as c:
            await create_product(c, keys, "SLOW-1", stock=5)
            body = json.dumps(
                {"customer_id": keys.customer_id, "lines": [{"sku": "SLOW-1", "quantity": 2}]}
            ).encode()
            half = len(body) // 2

            async def receive() -> dict[str, Any]:
                if not first_half_sent.is_set():
                    first_half_sent.set()
                    return {"type": "http.request", "body": body[:half], "more_body": True}
                await rest_may_come.wait()
                return {"type": "http.request", "body": body[half:], "more_body": False}

            sent: list[MutableMapping[str, Any]] = []

            async def send(message: MutableMapping[str, Any]) -> None:
                sent.append(message)

            authorization = keys.service["Authorization"].encode()
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": "/v1/orders",
                "raw_path": b"/v1/orders",
                "root_path": "",
                "query_string": b"",
                "headers": [
                    (b"host", b"stockflow.test"),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"authorization", authorization),
                ],
                "client": ("127.0.0.1", 50000),
                "server": ("stockflow.test", 80),
            }
            upload = asyncio.create_task(app(scope, receive, send))
            await first_half_sent.wait()
            await asyncio.sleep(0.05)  # the upload is now waiting for the rest of its body

            # A write while the upload waits: it needs the only connection (and, on SQLite,
            # the write lock).
            async with asyncio.timeout(5):
                other = await c.post(
                    "/v1/products",
                    headers=keys.admin,
                    json={"sku": "OTHER-1", "name": "Other", "unit_price": 100, "currency": "EUR"},
                )
            assert other.status_code == 201, other.text
            assert not upload.done()

            rest_may_come.set()
            async with asyncio.timeout(10):
                await upload
            start = next(m for m in sent if m["type"] == "http.response.start")
            assert start["status"] == 201
            ordered = await c.get("/v1/inventory/SLOW-1", headers=keys.admin)
            assert ordered.json()["reserved"] == 2
    finally:
        # A failed assertion must not leave the upload waiting under a disposed pool.
        rest_may_come.set()
        if upload is not None and not upload.done():
            upload.cancel()
            with contextlib.suppress(BaseException):
                await upload
        await app.state.key_usage.drain()
        await narrow.dispose()
