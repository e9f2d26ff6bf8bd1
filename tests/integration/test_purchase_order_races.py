"""Purchase-order status changes racing each other on PostgreSQL (PostgreSQL only).

Two receipts completing different lines of one PO, or an acknowledgement meeting a partial
receipt, must leave the status that the committed lines call for. The receipt decides the
status only after locking the PO row and reading its lines afresh; the acknowledgement
decides it in its UPDATE, against the row as that statement finds it. A decision made from
a read taken before the row lock would be one the other transaction has already outdated.

The first test repeats the receipt race through a real ``stockflow serve`` process with two
workers. The others hold one transaction open at the exact point that matters while the
other waits for the PO row (seen in ``pg_stat_activity`` and ``pg_blocking_pids``), with
two ``Database`` objects standing for two server processes, so they lose every time if
the status is decided from a stale read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.app import create_app
from stockflow.auth.roles import Principal
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.inventory import service as inventory_service
from stockflow.purchasing import po_receiving, po_service
from stockflow.purchasing.po_schemas import (
    PurchaseOrderRead,
    ReceiptCreate,
    ReceiptLineCreate,
    ReceiptRead,
)
from stockflow.purchasing.states import PurchaseOrderStatus
from tests.server import (
    OwnDatabase,
    asyncpg_dsn,
    concurrent_client,
    expect,
    reconcile,
    running_server,
)

pytestmark = pytest.mark.postgres_only

WAIT_TIMEOUT = 15.0
ROUNDS = 20
UNITS = 5
ACTOR = Principal.command_line()

T = TypeVar("T")


async def create_supplier(client: httpx.AsyncClient, db: OwnDatabase) -> str:
    body = expect(
        await client.post(
            "/v1/suppliers", headers=db.staff, json={"name": "Racing Ltd", "lead_time_days": 7}
        ),
        201,
    )
    supplier_id: str = body["id"]
    return supplier_id


async def create_product(
    client: httpx.AsyncClient, db: OwnDatabase, sku: str, supplier_id: str
) -> None:
    """A product the supplier sells in packs of 1, with no stock and no orders waiting."""
    expect(
        await client.post(
            "/v1/products",
            headers=db.staff,
            json={
                "sku": sku,
                "name": f"Product {sku}",
                "unit_price": 1290,
                "currency": "EUR",
                "shortage_policy": "backorder",
                "suppliers": [
                    {
                        "supplier_id": supplier_id,
                        "supplier_sku": f"S-{sku}",
                        "cost_price": 500,
                        "currency": "EUR",
                        "pack_size": 1,
                        "min_order_qty": 1,
                        "priority": 10,
                    }
                ],
            },
        ),
        201,
    )


async def submitted_po(
    client: httpx.AsyncClient, db: OwnDatabase, supplier_id: str, lines: dict[str, int]
) -> dict[str, Any]:
    """A purchase order placed by hand and submitted, so it can receive goods."""
    created = expect(
        await client.post(
            "/v1/purchase-orders",
            headers=db.staff,
            json={
                "supplier_id": supplier_id,
                "lines": [{"sku": sku, "quantity": units} for sku, units in lines.items()],
            },
        ),
        201,
    )
    submitted: dict[str, Any] = expect(
        await client.post(f"/v1/purchase-orders/{created['id']}/submit", headers=db.staff, json={}),
        200,
    )
    return submitted


def receipt(lines: dict[str, int]) -> ReceiptCreate:
    return ReceiptCreate(
        lines=[ReceiptLineCreate(sku=sku, quantity=units) for sku, units in lines.items()]
    )


@asynccontextmanager
async def in_process_client(database: Database, url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API in this process, for setting a test up."""
    app = create_app(Settings(database_url=url), database=database)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockflow.test") as client:
        yield client
    await app.state.key_usage.drain()


@asynccontextmanager
async def two_processes(url: str) -> AsyncIterator[tuple[Database, Database]]:
    """Two ``Database`` objects (engine and pool each), as two server processes hold."""
    first = Database(Settings(database_url=url))
    second = Database(Settings(database_url=url))
    try:
        yield first, second
    finally:
        await first.dispose()
        await second.dispose()


class Held(Generic[T]):
    """A transaction run as a task: it does its work and then, if told to hold, stays open
    (its locks kept, nothing committed) until released."""

    def __init__(
        self,
        database: Database,
        work: Callable[[AsyncSession], Awaitable[T]],
        *,
        hold: bool = True,
    ) -> None:
        self.ready = asyncio.Event()
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.pid = 0
        self.task: asyncio.Task[T] = asyncio.create_task(self._run(database, work))

    async def _run(self, database: Database, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async with database.transaction() as session:
            self.pid = int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)
            result = await work(session)
            self.ready.set()
            await self.release.wait()
        return result

    async def until_ready(self) -> None:
        """Until the work is done and the transaction waits to commit; a failure of the
        work is raised here."""
        ready = asyncio.create_task(self.ready.wait())
        done, _ = await asyncio.wait(
            {ready, self.task}, timeout=WAIT_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        if self.task in done:
            self.task.result()
            raise AssertionError("the held transaction ended before it was released")
        assert done, f"the held transaction did not get its work done within {WAIT_TIMEOUT} s"

    async def stop(self) -> None:
        """Release it, or cancel it if it is stuck (a test that failed half way)."""
        self.release.set()
        if not self.task.done():
            await asyncio.wait({self.task}, timeout=WAIT_TIMEOUT)
        if not self.task.done():
            self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def wait_until_blocked_by(admin: asyncpg.Connection, waiter: Held[Any], holder: int) -> None:
    """Until the waiter's backend waits for a lock on ``purchase_orders`` that the backend
    ``holder`` holds; fails after a deadline, or at once if the waiter ended instead."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while time.monotonic() < deadline:
        if waiter.task.done():
            waiter.task.result()
            raise AssertionError("the second transaction finished without waiting for the PO row")
        pid = waiter.pid
        if pid:
            row = await admin.fetchrow(
                "SELECT wait_event_type, query, pg_blocking_pids(pid) AS blockers "
                "FROM pg_stat_activity WHERE pid = $1",
                pid,
            )
            if row is not None and row["wait_event_type"] == "Lock" and holder in row["blockers"]:
                assert "purchase_orders" in row["query"], row["query"]
                return
        await asyncio.sleep(0.02)
    raise AssertionError(
        f"the second transaction did not wait for the PO row within {WAIT_TIMEOUT} s"
    )


async def read_po(database: Database, po_id: str) -> PurchaseOrderRead:
    async with database.transaction(write=False) as session:
        return await po_service.read(session, po_id)


async def assert_reconciled(database: Database) -> None:
    async with database.transaction() as session:
        assert await inventory_service.reconcile(session) == []


# --- two receipts completing different lines of one PO -------------------------------------


async def test_concurrent_receipts_completing_different_lines_leave_every_po_received(
    own_database: OwnDatabase, tmp_path: Path
) -> None:
    """Twenty POs of two lines each (products of their own, so the two receipts on a PO
    share no stock or product row and really run side by side); each PO gets one receipt
    of all of its first line and one of all of its second, sent together to a server with
    two workers. Both are accepted, one reports the PO partially received and the other
    received, and every PO ends received with ``received_at`` set: a receipt whose status
    was decided before the other committed would leave it partially received for good."""
    db = own_database
    async with (
        running_server(db.url, tmp_path / "serve.log", workers=2) as server,
        concurrent_client(server.base_url) as client,
    ):
        supplier_id = await create_supplier(client, db)
        pos: list[tuple[str, str, str]] = []
        for n in range(ROUNDS):
            first, second = f"RACE-{n:02d}-A", f"RACE-{n:02d}-B"
            await create_product(client, db, first, supplier_id)
            await create_product(client, db, second, supplier_id)
            po = await submitted_po(client, db, supplier_id, {first: UNITS, second: UNITS})
            pos.append((po["id"], first, second))

        reported: dict[str, list[str]] = {}
        for po_id, first, second in pos:
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"/v1/purchase-orders/{po_id}/receipts",
                        headers=db.staff,
                        json={"lines": [{"sku": sku, "quantity": UNITS}]},
                    )
                    for sku in (first, second)
                )
            )
            reported[po_id] = sorted(
                expect(response, 201)["purchase_order"]["status"] for response in responses
            )

        final = {
            po_id: expect(await client.get(f"/v1/purchase-orders/{po_id}", headers=db.staff), 200)
            for po_id, _first, _second in pos
        }
        left_open = [
            po_id for po_id, po in final.items() if po["status"] != PurchaseOrderStatus.RECEIVED
        ]
        assert left_open == [], f"{len(left_open)} of {ROUNDS} POs not received: {left_open}"
        for po_id, po in final.items():
            assert po["received_at"] is not None, po
            assert [line["received"] for line in po["lines"]] == [UNITS, UNITS], po
            assert reported[po_id] == ["partially_received", "received"], (po_id, reported)
        result = await reconcile(db.url)
        assert result.exit_code == 0, result.output
        assert "no drift" in result.output
    log = server.log().lower()
    assert "traceback" not in log, server.log()[-5000:]
    assert "deadlock" not in log, server.log()[-5000:]


async def test_a_receipt_waiting_for_the_po_row_decides_on_the_lines_committed_meanwhile(
    own_database: OwnDatabase,
) -> None:
    """Receipt 1 takes all of SKU A and, not yet committed, holds the PO row; receipt 2
    takes all of SKU B in another process and is made to wait for that row. Once receipt
    1 commits, receipt 2 must see A received and close the PO: ``received``, with
    ``received_at`` set, not the ``partially_received`` its own earlier reads implied."""
    db = own_database
    async with two_processes(db.url) as (first, second):
        async with in_process_client(first, db.url) as client:
            supplier_id = await create_supplier(client, db)
            await create_product(client, db, "RACE-A", supplier_id)
            await create_product(client, db, "RACE-B", supplier_id)
            po = await submitted_po(client, db, supplier_id, {"RACE-A": UNITS, "RACE-B": UNITS})

        admin = await asyncpg.connect(asyncpg_dsn(db.url), timeout=10)
        holder = Held(
            first,
            lambda session: po_receiving.receive(
                session, actor=ACTOR, po_id=po["id"], data=receipt({"RACE-A": UNITS})
            ),
        )
        waiter: Held[ReceiptRead] | None = None
        try:
            await holder.until_ready()
            waiter = Held(
                second,
                lambda session: po_receiving.receive(
                    session, actor=ACTOR, po_id=po["id"], data=receipt({"RACE-B": UNITS})
                ),
                hold=False,
            )
            await wait_until_blocked_by(admin, waiter, holder.pid)
            holder.release.set()
            one, two = await asyncio.wait_for(
                asyncio.gather(holder.task, waiter.task), WAIT_TIMEOUT
            )
        finally:
            await holder.stop()
            if waiter is not None:
                await waiter.stop()
            await admin.close(timeout=5)

        assert one.purchase_order.status is PurchaseOrderStatus.PARTIALLY_RECEIVED
        assert two.purchase_order.status is PurchaseOrderStatus.RECEIVED
        assert two.purchase_order.received_at is not None
        final = await read_po(first, po["id"])
        assert final.status is PurchaseOrderStatus.RECEIVED
        assert final.received_at is not None
        assert [line.received for line in final.lines] == [UNITS, UNITS]
        await assert_reconciled(first)


# --- an acknowledgement meeting a partial receipt ------------------------------------------


@pytest.mark.parametrize("start", ["submitted", "acknowledged"])
async def test_an_acknowledgement_waiting_on_a_partial_receipt_keeps_it_partially_received(
    own_database: OwnDatabase, start: str
) -> None:
    """A partial receipt holds the PO row, not yet committed; an acknowledgement in another
    process reads the PO as ``start`` (the receipt is not visible to it), and its UPDATE
    waits for the row. Once the receipt commits, the acknowledgement goes through, records
    the supplier's date, and the PO stays ``partially_received``: setting the status the
    earlier read implied would turn the receipt back into a mere acknowledgement."""
    db = own_database
    promised = datetime.now(UTC).date() + timedelta(days=10)
    async with two_processes(db.url) as (first, second):
        async with in_process_client(first, db.url) as client:
            supplier_id = await create_supplier(client, db)
            await create_product(client, db, "ACK-A", supplier_id)
            po = await submitted_po(client, db, supplier_id, {"ACK-A": UNITS})
            if start == "acknowledged":
                po = expect(
                    await client.post(
                        f"/v1/purchase-orders/{po['id']}/acknowledge",
                        headers=db.staff,
                        json={"expected_delivery_date": (promised - timedelta(days=5)).isoformat()},
                    ),
                    200,
                )
            assert po["status"] == start

        admin = await asyncpg.connect(asyncpg_dsn(db.url), timeout=10)
        holder = Held(
            first,
            lambda session: po_receiving.receive(
                session, actor=ACTOR, po_id=po["id"], data=receipt({"ACK-A": 2})
            ),
        )
        waiter: Held[PurchaseOrderRead] | None = None
        try:
            await holder.until_ready()
            waiter = Held(
                second,
                lambda session: acknowledge(session, po["id"], promised, seen=start),
                hold=False,
            )
            await wait_until_blocked_by(admin, waiter, holder.pid)
            holder.release.set()
            received, acknowledged = await asyncio.wait_for(
                asyncio.gather(holder.task, waiter.task), WAIT_TIMEOUT
            )
        finally:
            await holder.stop()
            if waiter is not None:
                await waiter.stop()
            await admin.close(timeout=5)

        assert received.purchase_order.status is PurchaseOrderStatus.PARTIALLY_RECEIVED
        assert acknowledged.status is PurchaseOrderStatus.PARTIALLY_RECEIVED
        assert acknowledged.expected_delivery_date == promised
        final = await read_po(first, po["id"])
        assert final.status is PurchaseOrderStatus.PARTIALLY_RECEIVED
        assert final.expected_delivery_date == promised
        assert final.acknowledged_at is not None
        assert [line.received for line in final.lines] == [2]
        await assert_reconciled(first)


async def acknowledge(
    session: AsyncSession, po_id: str, promised: date, *, seen: str
) -> PurchaseOrderRead:
    """Acknowledge, having first checked that this transaction still sees the PO as it was
    before the receipt (so the receipt has not committed yet)."""
    assert (await po_service.read(session, po_id)).status == seen
    return await po_service.acknowledge(
        session, actor=ACTOR, po_id=po_id, expected_delivery_date=promised
    )
