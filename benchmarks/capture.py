"""The SQL one order sends: captured in-process, at the driver.

The app is built with ``create_app`` against the benchmark database and driven through
``httpx.ASGITransport`` with the same request the load generator sends. asyncpg's methods
that wait for the server are wrapped while the order runs, so every round trip is seen
with its statement and parameters, whether SQLAlchemy sent it or the order path's own SQL
did, BEGIN and COMMIT included. Only the last of a few orders is kept, so the
prepared-statement caches are warm and the once-a-minute key-usage write is already done.
"""

from __future__ import annotations

import contextvars
import functools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import asyncpg.prepared_stmt
import httpx

from benchmarks.rows import Fixture, SeedPlan
from benchmarks.workloads import LINES_PER_ORDER
from stockflow.app import create_app
from stockflow.config import Settings

WARM_ORDERS = 3
CAPTURE_QUANTITIES = (2, 1, 3)


@dataclass(frozen=True)
class Step:
    """One round trip to the database.

    ``kind``: ``begin``, ``commit``, ``rollback`` (simple-protocol commands), ``execute``
    (one statement, ``parameters`` a tuple) or ``executemany`` (one statement sent for every
    tuple in ``parameters`` in one pipelined round trip). ``origin`` says whether it belongs
    to the order's transaction or to the connection pool's pre-ping.
    """

    kind: str
    statement: str
    parameters: Any
    origin: str = "transaction"

    @property
    def statements(self) -> int:
        """Statements the database executes for this round trip."""
        return len(self.parameters) if self.kind == "executemany" else 1


@dataclass(frozen=True)
class CapturedOrder:
    steps: list[Step]
    products: list[tuple[str, str]]
    """(product id, SKU) of the order's lines, in SKU order (the order locks are taken in)."""
    idempotency_key: str
    status: int
    quantities: tuple[int, ...]
    prepares: list[str] = field(default_factory=list)
    """Statements asyncpg prepared during the order (none once the connection is warm)."""


def counts(steps: list[Step]) -> dict[str, int]:
    """Statements and round trips, in total and for the pre-ping alone.

    A statement is one execution by the database (``executemany`` of three rows is three);
    a round trip is one wait for the database's answer (that ``executemany`` is one).
    """
    ping = [step for step in steps if step.origin == "pre-ping"]
    return {
        "statements": sum(step.statements for step in steps),
        "round_trips": len(steps),
        "pre_ping_statements": sum(step.statements for step in ping),
        "pre_ping_round_trips": len(ping),
    }


def driver_check(captured: CapturedOrder) -> dict[str, Any]:
    """How many calls into asyncpg waited for the server during the order: the steps, and
    the statement preparations apart (a ``prepare`` is a round trip only the first time a
    connection meets a statement, so a warm order has none)."""
    return {"driver_calls": len(captured.steps), "driver_prepares": len(captured.prepares)}


_CONNECTION_CALLS = ("execute", "executemany", "fetch", "fetchval", "fetchrow", "fetchmany")
_CONNECTION_CALLS_MORE = ("prepare", "copy_records_to_table", "copy_to_table", "copy_from_query")
_STATEMENT_CALLS = ("fetch", "fetchval", "fetchrow", "fetchmany", "executemany", "explain")
_TRANSACTION_COMMANDS = {"BEGIN": "begin", "COMMIT": "commit", "ROLLBACK": "rollback"}
_inside = contextvars.ContextVar("inside_driver_call", default=False)
_pinging = contextvars.ContextVar("inside_pre_ping", default=False)


def _step(owner: str, name: str, args: tuple[Any, ...]) -> Step:
    """The round trip one top-level asyncpg call makes."""
    origin = "pre-ping" if _pinging.get() else "transaction"
    if owner == "PreparedStatement":
        statement, parameters = args[0].get_query(), args[1:]
    else:
        statement, parameters = args[1], args[2:]
    if name == "executemany":
        return Step("executemany", statement, [tuple(row) for row in parameters[0]], origin)
    command = statement.strip().rstrip(";").split(" ", 1)[0].upper()
    if not parameters and command in _TRANSACTION_COMMANDS:
        return Step(_TRANSACTION_COMMANDS[command], statement.strip().rstrip(";"), (), origin)
    return Step("execute", statement, tuple(parameters), origin)


def _recording(
    method: Callable[..., Any], owner: str, name: str, steps: list[Step], prepares: list[str]
) -> Callable[..., Any]:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _inside.get():
            return await method(*args, **kwargs)
        if name == "prepare":
            prepares.append(" ".join(str(args[1]).split())[:60])
        elif name.startswith("copy") or name == "explain":
            raise RuntimeError(f"capture: the order path called asyncpg's {owner}.{name}")
        else:
            steps.append(_step(owner, name, args))
        token = _inside.set(True)
        try:
            return await method(*args, **kwargs)
        finally:
            _inside.reset(token)

    return wrapper


@contextmanager
def _driver_steps(steps: list[Step], prepares: list[str]) -> Iterator[None]:
    """Record every round trip asyncpg makes while the block runs, whoever asks for it
    (SQLAlchemy, the order path's own SQL, a transaction's BEGIN and COMMIT), with its
    statement and parameters: what the database really received, in order."""
    targets: list[tuple[Any, str]] = [
        (asyncpg.connection.Connection, name)
        for name in (*_CONNECTION_CALLS, *_CONNECTION_CALLS_MORE)
    ]
    targets += [(asyncpg.prepared_stmt.PreparedStatement, name) for name in _STATEMENT_CALLS]
    saved = [(owner, name, owner.__dict__[name]) for owner, name in targets]
    try:
        for owner, name, original in saved:
            setattr(owner, name, _recording(original, owner.__name__, name, steps, prepares))
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def _mark_pre_ping(app: Any) -> None:
    """Round trips made by the pool's pre-ping (when one is configured) are told apart."""
    dialect = app.state.database.engine.sync_engine.dialect
    ping = dialect.do_ping

    def _ping(dbapi_connection: Any) -> Any:
        token = _pinging.set(True)
        try:
            return ping(dbapi_connection)
        finally:
            _pinging.reset(token)

    dialect.do_ping = _ping


async def capture_order(url: str, fixture: Fixture, plan: SeedPlan) -> CapturedOrder:
    """Place ``WARM_ORDERS`` orders in-process and return the round trips of the last."""
    settings = Settings(database_url=url, worker_in_process=False, log_level="warning")
    app = create_app(settings)
    log: list[Step] = []
    prepares: list[str] = []
    _mark_pre_ping(app)
    r = plan.regular_range
    spread = max(1, r.count // (LINES_PER_ORDER + 1))
    transport = httpx.ASGITransport(app=app)
    key = ""
    status = 0
    indexes: list[int] = []
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://capture") as client:
            for attempt in range(WARM_ORDERS):
                indexes = [spread * (line + 1) + attempt for line in range(LINES_PER_ORDER)]
                key = f"bench-capture-{uuid.uuid4().hex}"
                body = {
                    "customer_id": fixture.customer_id,
                    "lines": [
                        {"sku": r.sku(index), "quantity": quantity}
                        for index, quantity in zip(indexes, CAPTURE_QUANTITIES, strict=True)
                    ],
                }
                headers = {
                    "Authorization": f"Bearer {fixture.service_key}",
                    "Idempotency-Key": key,
                }
                await app.state.key_usage.drain()
                log.clear()
                prepares.clear()
                with _driver_steps(log, prepares):
                    response = await client.post("/v1/orders", json=body, headers=headers)
                status = response.status_code
                if status != 201:
                    raise RuntimeError(f"capture: order refused with {status}: {response.text}")
    finally:
        await app.state.key_usage.drain()
        await app.state.database.dispose()
    products = sorted(((r.product_id(i), r.sku(i)) for i in indexes), key=lambda p: p[1])
    return CapturedOrder(list(log), products, key, status, CAPTURE_QUANTITIES, list(prepares))
