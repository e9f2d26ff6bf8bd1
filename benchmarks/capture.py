"""The SQL one order sends: captured in-process from Stockflow's own engine.

The app is built with ``create_app`` against the benchmark database and driven through
``httpx.ASGITransport`` with the same request the load generator sends. SQLAlchemy's
``before_cursor_execute`` sees every statement with its parameters; the engine's ``begin``,
``commit`` and ``rollback`` events and the pool's pre-ping (wrapped on the dialect) are the
round trips that never pass through a cursor. Only the last of a few orders is kept, so the
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
from sqlalchemy import event

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
    driver_calls: list[str] = field(default_factory=list)
    """Every call into asyncpg that waits for the server during the order: a check that the
    steps above (seen through SQLAlchemy) are all the order sent."""


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
    """Compare the steps with what asyncpg was asked to do during the order.

    A ``prepare`` is a round trip only when a connection meets a statement for the first
    time, so it is reported apart; every other call must be one of the steps, or the order
    sent SQL the capture (and so the replay) does not see.
    """
    prepares = [c for c in captured.driver_calls if c.startswith("Connection.prepare")]
    others = [c for c in captured.driver_calls if not c.startswith("Connection.prepare")]
    figures: dict[str, Any] = {"driver_calls": len(others), "driver_prepares": len(prepares)}
    if len(others) != len(captured.steps):
        figures["capture_warning"] = (
            f"capture: asyncpg saw {len(others)} round trips but SQLAlchemy's events "
            f"{len(captured.steps)}; the order sends SQL the replay does not: " + "; ".join(others)
        )
    return figures


def _instrument(app: Any, log: list[Step]) -> None:
    sync_engine = app.state.database.engine.sync_engine

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _statement(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool
    ) -> None:
        if many:
            log.append(Step("executemany", statement, [tuple(p) for p in parameters]))
        else:
            log.append(Step("execute", statement, tuple(parameters or ())))

    @event.listens_for(sync_engine, "begin")
    def _begin(_conn: Any) -> None:
        log.append(Step("begin", "BEGIN", ()))

    @event.listens_for(sync_engine, "commit")
    def _commit(_conn: Any) -> None:
        log.append(Step("commit", "COMMIT", ()))

    @event.listens_for(sync_engine, "rollback")
    def _rollback(_conn: Any) -> None:
        log.append(Step("rollback", "ROLLBACK", ()))

    dialect = sync_engine.dialect
    ping = dialect.do_ping

    def _ping(dbapi_connection: Any) -> Any:
        # asyncpg's adapter pings inside a transaction of its own when none is open.
        outside = getattr(dbapi_connection, "_transaction", None) is None
        if outside:
            log.append(Step("begin", "BEGIN", (), "pre-ping"))
        log.append(Step("execute", ";", (), "pre-ping"))
        if outside:
            log.append(Step("rollback", "ROLLBACK", (), "pre-ping"))
        return ping(dbapi_connection)

    dialect.do_ping = _ping


_CONNECTION_CALLS = ("execute", "executemany", "fetch", "fetchval", "fetchrow", "fetchmany")
_CONNECTION_CALLS_MORE = ("prepare", "copy_records_to_table", "copy_to_table", "copy_from_query")
_STATEMENT_CALLS = ("fetch", "fetchval", "fetchrow", "fetchmany", "executemany", "explain")
_inside = contextvars.ContextVar("inside_driver_call", default=False)


def _counting(method: Callable[..., Any], name: str, calls: list[str]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _inside.get():
            return await method(*args, **kwargs)
        text = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
        calls.append(f"{name} {' '.join(text.split())[:60]}".rstrip())
        token = _inside.set(True)
        try:
            return await method(*args, **kwargs)
        finally:
            _inside.reset(token)

    return wrapper


@contextmanager
def _driver_calls(calls: list[str]) -> Iterator[None]:
    """Count asyncpg's round-trip methods (public ones; nested calls count once) while the
    block runs, whoever calls them: SQLAlchemy, or code that talks to asyncpg directly."""
    targets: list[tuple[Any, str]] = [
        (asyncpg.connection.Connection, name)
        for name in (*_CONNECTION_CALLS, *_CONNECTION_CALLS_MORE)
    ]
    targets += [(asyncpg.prepared_stmt.PreparedStatement, name) for name in _STATEMENT_CALLS]
    saved = [(owner, name, owner.__dict__[name]) for owner, name in targets]
    try:
        for owner, name, original in saved:
            setattr(owner, name, _counting(original, f"{owner.__name__}.{name}", calls))
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


async def capture_order(url: str, fixture: Fixture, plan: SeedPlan) -> CapturedOrder:
    """Place ``WARM_ORDERS`` orders in-process and return the round trips of the last."""
    settings = Settings(database_url=url, maintenance_enabled=False, log_level="warning")
    app = create_app(settings)
    log: list[Step] = []
    _instrument(app, log)
    r = plan.regular_range
    spread = max(1, r.count // (LINES_PER_ORDER + 1))
    transport = httpx.ASGITransport(app=app)
    key = ""
    status = 0
    calls: list[str] = []
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
                calls.clear()
                with _driver_calls(calls):
                    response = await client.post("/v1/orders", json=body, headers=headers)
                status = response.status_code
                if status != 201:
                    raise RuntimeError(f"capture: order refused with {status}: {response.text}")
    finally:
        await app.state.key_usage.drain()
        await app.state.database.dispose()
    products = sorted(((r.product_id(i), r.sku(i)) for i in indexes), key=lambda p: p[1])
    return CapturedOrder(list(log), products, key, status, CAPTURE_QUANTITIES, list(calls))
