"""The bare endpoint: the framework's floor for the order path, measured in the same run.

A FastAPI application served by uvicorn, as Stockflow is, with one route that does nothing
of Stockflow's own: it reads the JSON body, takes a connection from an asyncpg pool and
sends the captured order's round trips with fresh ids and random products, exactly as the
replay does (no more: asyncpg's reset of a released connection is off), then answers 201
with the new order's ``Location``. No key check, no validation, no
idempotency record of its own, no pricing: what is left is the cost of HTTP, the framework
and the driver around the same SQL. Stockflow against this endpoint says what its features
cost; this endpoint against the ceiling says what the stack costs on this machine.

uvicorn's workers build the application from ``BARE_TEMPLATE_ENV``, a file the runner
writes (the template, the product range and the database).
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from benchmarks import catalog
from benchmarks.replay import FreshIds, Template, instantiate, pick_products, run_steps
from stockflow.db.engine import POSTGRESQL_SESSION_SETTINGS

BARE_TEMPLATE_ENV = "STOCKFLOW_BENCH_BARE_TEMPLATE"
POOL_SIZE = 20


def write_spec(path: Path, template: Template, products: catalog.Range, dsn: str) -> None:
    path.write_bytes(pickle.dumps((template, products, dsn)))


def create() -> FastAPI:
    """uvicorn's factory (``--factory benchmarks.bare:create``)."""
    # Written by this harness's own run into its own temporary directory.
    spec: tuple[Template, catalog.Range, str] = pickle.loads(  # noqa: S301
        Path(os.environ[BARE_TEMPLATE_ENV]).read_bytes()
    )
    template, products_range, dsn = spec
    order_slot = order_id_slot(template)
    pool: dict[str, Any] = {}
    ids = FreshIds()
    rng = random.Random()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        pool["pool"] = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=POOL_SIZE,
            server_settings=dict(POSTGRESQL_SESSION_SETTINGS),
            # asyncpg resets a released connection with a round trip of its own (RESET ALL,
            # UNLISTEN, ...), which Stockflow's pool does not send: the same round trips
            # as Stockflow, no more. A connection left in a failed transaction is still
            # rolled back by the pool.
            reset=_no_reset,
        )
        yield
        await pool["pool"].close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/orders")
    async def place(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        indexes = pick_products(rng, products_range.count, template.products)
        products = [(products_range.product_id(i), products_range.sku(i)) for i in indexes]
        fresh = [ids.next(prefix) for prefix in template.fresh_prefixes]
        async with pool["pool"].acquire() as conn:
            await run_steps(conn, instantiate(template, products, fresh))
        order_id = fresh[order_slot]
        return JSONResponse(
            {"id": order_id, "lines": body.get("lines", [])},
            status_code=201,
            headers={"Location": f"/v1/orders/{order_id}"},
        )

    # As `stockflow serve` does: what exists now is not traversed by every full collection.
    gc.collect()
    gc.freeze()
    return app


def order_id_slot(template: Template) -> int:
    """Which fresh value is the new order's id, for the ``Location`` of the answer."""
    try:
        return template.fresh_prefixes.index("ord_")
    except ValueError:
        raise ValueError("the captured order created no ord_ id") from None


async def _no_reset(_connection: asyncpg.Connection) -> None:
    return None
