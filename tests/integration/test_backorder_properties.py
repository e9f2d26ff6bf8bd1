"""The backorder flow under random sequences of orders, order cancellations, receipts and
purchase-order cancellations, driven through the API (DESIGN §2).

Hand-picked examples show the rule does what the worked example says; only random
interleavings show that no sequence of everyday operations breaks what the rule promises:
incoming stock always covers the backlog, every PO line the rule writes is whole packs of
at least the minimum, nothing is ordered twice, no stock is oversold, the counters agree
with the rows they sum up, and waiting orders are served oldest first. A plain model of
the shop runs alongside and predicts every counter, order line and purchase order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from stockflow.db.engine import Database
from stockflow.inventory import service as inventory_service
from tests.assertions import assert_problem
from tests.backorders import (
    backorder_product,
    create_supplier,
    inventory,
    place,
    purchase_orders,
    receive,
)
from tests.conftest import Keys, make_keys
from tests.support import clear_data

SKUS = ("BO-A", "BO-B")
RECEIVABLE = ("submitted", "acknowledged", "partially_received")
OPEN_PO = ("draft", *RECEIVABLE)


def target_of(backlog: int, buffer_pct: int) -> int:
    """The backlog plus the buffer, rounded up (DESIGN §2), in integers."""
    return -(-backlog * (100 + buffer_pct) // 100)


def rule_quantity(backlog: int, on_order: int, product: ModelProduct) -> int:
    need = target_of(backlog, product.buffer_pct) - on_order
    if need <= 0:
        return 0
    wanted = max(product.min_order_qty, need)
    return -(-wanted // product.pack_size) * product.pack_size


# --- the model ------------------------------------------------------------------------------


@dataclass
class ModelProduct:
    sku: str
    supplier_id: str
    buffer_pct: int
    pack_size: int
    min_order_qty: int
    on_hand: int
    reserved: int = 0


@dataclass
class ModelLine:
    allocated: int
    backordered: int


@dataclass
class ModelOrder:
    id: str
    lines: dict[str, ModelLine]
    cancelled: bool = False


@dataclass
class ModelPoLine:
    id: str
    sku: str
    quantity: int
    received: int = 0


@dataclass
class ModelPo:
    id: str
    supplier_id: str
    status: str
    lines: list[ModelPoLine]


@dataclass
class Shop:
    """What the API should show, kept by hand: orders oldest first, POs by id."""

    products: dict[str, ModelProduct]
    orders: list[ModelOrder] = field(default_factory=list)
    pos: dict[str, ModelPo] = field(default_factory=dict)

    def backordered(self, sku: str) -> int:
        return sum(
            order.lines[sku].backordered
            for order in self.orders
            if not order.cancelled and sku in order.lines
        )

    def on_order(self, sku: str) -> int:
        return sum(
            max(line.quantity - line.received, 0)
            for po in self.pos.values()
            if po.status in OPEN_PO
            for line in po.lines
            if line.sku == sku
        )

    def serve(self, sku: str) -> list[tuple[str, str, int]]:
        """Free stock to waiting lines, oldest order first; ``(order, sku, units)`` given."""
        product = self.products[sku]
        given: list[tuple[str, str, int]] = []
        for order in self.orders:
            left = product.on_hand - product.reserved
            line = order.lines.get(sku)
            if left <= 0:
                break
            if order.cancelled or line is None or line.backordered == 0:
                continue
            units = min(left, line.backordered)
            line.allocated += units
            line.backordered -= units
            product.reserved += units
            given.append((order.id, sku, units))
        return given


# --- steps ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaceOrder:
    lines: tuple[tuple[int, int], ...]
    """``(product index, quantity)``; two lines of one SKU are merged by the service."""


@dataclass(frozen=True)
class CancelOrder:
    pick: int


@dataclass(frozen=True)
class Receive:
    pick: int
    mode: str
    """``partial``, ``full`` or ``over`` what is still to come on each line received."""
    amount: int
    which: int
    """Bit mask over the PO's SKUs (sorted); none selected means all of them."""


@dataclass(frozen=True)
class CancelPurchase:
    pick: int


Step = PlaceOrder | CancelOrder | Receive | CancelPurchase

place_orders = st.builds(
    PlaceOrder,
    st.lists(
        st.tuples(
            st.integers(0, len(SKUS) - 1),
            st.one_of(st.integers(1, 25), st.sampled_from([4, 10, 17])),
        ),
        min_size=1,
        max_size=3,
    ).map(tuple),
)
receipts = st.builds(
    Receive,
    st.integers(0, 30),
    st.sampled_from(["partial", "full", "over"]),
    st.integers(1, 9),
    st.integers(0, 3),
)
steps_strategy = st.lists(
    st.one_of(
        place_orders,
        place_orders,
        place_orders,
        receipts,
        receipts,
        st.builds(CancelOrder, st.integers(0, 30)),
        st.builds(CancelPurchase, st.integers(0, 30)),
    ),
    min_size=4,
    max_size=14,
)
terms_strategy = st.fixed_dictionaries(
    {
        "buffer_pct": st.sampled_from([0, 20, 20, 50, 100]),
        "pack_size": st.sampled_from([1, 1, 5, 12]),
        "min_order_qty": st.sampled_from([1, 1, 10, 24]),
        "stock": st.sampled_from([0, 0, 3, 8]),
    }
)


# --- the checks -----------------------------------------------------------------------------


class Probe:
    """Reads the API and checks it against the invariants and the model."""

    def __init__(
        self, client: httpx.AsyncClient, keys: Keys, database: Database, shop: Shop
    ) -> None:
        self.client = client
        self.keys = keys
        self.database = database
        self.shop = shop

    async def stock(self) -> dict[str, dict[str, Any]]:
        return {sku: await inventory(self.client, self.keys, sku) for sku in SKUS}

    async def orders(self) -> dict[str, dict[str, Any]]:
        response = await self.client.get(
            "/v1/orders", params={"limit": "100"}, headers=self.keys.staff
        )
        assert response.status_code == 200, response.text
        assert response.json()["next_cursor"] is None
        return {order["id"]: order for order in response.json()["data"]}

    async def adopt_new_pos(self, expected: list[tuple[str, int, dict[str, int]]]) -> None:
        """Check the POs the step created hold exactly the lines the rule should have
        written (``(sku, quantity, explanation figures)``), then add them to the model."""
        found = await purchase_orders(self.client, self.keys)
        new = [po for po in found if po["id"] not in self.shop.pos]
        lines = sorted((line for po in new for line in po["lines"]), key=lambda line: line["sku"])
        assert [(line["sku"], line["quantity"]) for line in lines] == [
            (sku, quantity) for sku, quantity, _ in expected
        ]
        for line, (_sku, _quantity, figures) in zip(lines, expected, strict=True):
            assert line["reason"] == "backorder"
            assert {name: line["explanation"][name] for name in figures} == figures
        for po in new:
            assert (po["status"], po["origin"]) == ("submitted", "replenishment")
            skus = [line["sku"] for line in po["lines"]]
            assert len(skus) == len(set(skus))
            assert all(self.shop.products[sku].supplier_id == po["supplier_id"] for sku in skus)
            self.shop.pos[po["id"]] = ModelPo(
                po["id"],
                po["supplier_id"],
                po["status"],
                [ModelPoLine(line["id"], line["sku"], line["quantity"]) for line in po["lines"]],
            )

    async def check(self) -> None:
        shop = self.shop
        stock = await self.stock()
        for sku, level in stock.items():
            product = shop.products[sku]
            # Never oversold, and incoming stock covers the backlog plus its buffer.
            assert 0 <= level["reserved"] <= level["on_hand"]
            assert level["on_order"] >= level["backordered"]
            assert level["on_order"] >= target_of(level["backordered"], product.buffer_pct)
            assert (
                level["on_hand"],
                level["reserved"],
                level["backordered"],
                level["on_order"],
            ) == (product.on_hand, product.reserved, shop.backordered(sku), shop.on_order(sku))

        pos = {po["id"]: po for po in await purchase_orders(self.client, self.keys)}
        assert set(pos) == set(shop.pos)
        for po_id, po in pos.items():
            model = shop.pos[po_id]
            assert po["status"] == model.status
            assert [(line["id"], line["quantity"], line["received"]) for line in po["lines"]] == [
                (line.id, line.quantity, line.received) for line in model.lines
            ]
            for line in po["lines"]:
                product = shop.products[line["sku"]]
                assert line["reason"] == "backorder"
                assert line["quantity"] > 0
                assert line["quantity"] % product.pack_size == 0
                assert line["quantity"] >= product.min_order_qty
                explanation = line["explanation"]
                assert (explanation["pack_size"], explanation["min_order_qty"]) == (
                    product.pack_size,
                    product.min_order_qty,
                )
                assert explanation["quantity"] == line["quantity"]
                # The rule orders only while on_order is short of the target.
                assert explanation["on_order"] < explanation["target"]
                assert explanation["target"] == target_of(
                    explanation["backlog"], product.buffer_pct
                )

        orders = await self.orders()
        assert set(orders) == {order.id for order in shop.orders}
        queued: dict[str, int] = dict.fromkeys(SKUS, 0)
        for order in shop.orders:
            shown = orders[order.id]
            assert shown["status"] == ("cancelled" if order.cancelled else "confirmed")
            waiting = sum(line.backordered for line in order.lines.values())
            assert shown["fulfilment"] == ("awaiting_stock" if waiting else "ready_to_ship")
            for line in shown["lines"]:
                expected = order.lines[line["sku"]]
                assert (line["allocated"], line["backordered"]) == (
                    expected.allocated,
                    expected.backordered,
                ), (order.id, line["sku"])
                if order.cancelled or not expected.backordered:
                    assert line["expected_available_date"] is None
                    continue
                # A waiting line is promised a date exactly when what is on order reaches
                # its place in the queue.
                queued[line["sku"]] += expected.backordered
                promised = line["expected_available_date"]
                if queued[line["sku"]] <= shop.on_order(line["sku"]):
                    assert promised is not None
                    assert date.fromisoformat(promised) >= datetime.now(UTC).date()
                else:
                    assert promised is None

        async with self.database.transaction(write=False) as session:
            assert await inventory_service.reconcile(session) == []


# --- running a step -------------------------------------------------------------------------


async def run_order(probe: Probe, step: PlaceOrder) -> None:
    shop = probe.shop
    wanted: dict[str, int] = {}
    for index, quantity in step.lines:
        wanted[SKUS[index]] = wanted.get(SKUS[index], 0) + quantity
    before = await probe.stock()
    on_order_before = {sku: shop.on_order(sku) for sku in SKUS}

    order = await place(probe.client, probe.keys, wanted)

    lines: dict[str, ModelLine] = {}
    for sku in sorted(wanted):
        product = shop.products[sku]
        take = min(wanted[sku], product.on_hand - product.reserved)
        product.reserved += take
        lines[sku] = ModelLine(take, wanted[sku] - take)
    shop.orders.append(ModelOrder(order["id"], lines))
    assert {line["sku"]: (line["allocated"], line["backordered"]) for line in order["lines"]} == {
        sku: (line.allocated, line.backordered) for sku, line in lines.items()
    }

    after = await probe.stock()
    expected: list[tuple[str, int, dict[str, int]]] = []
    for sku in sorted(wanted):
        product = shop.products[sku]
        backlog, on_order = shop.backordered(sku), on_order_before[sku]
        assert after[sku]["backordered"] == backlog
        assert before[sku]["on_order"] == on_order
        if lines[sku].backordered == 0:
            continue
        quantity = rule_quantity(backlog, on_order, product)
        target = target_of(backlog, product.buffer_pct)
        if on_order >= target:
            # Already covered: nothing ordered twice.
            assert quantity == 0
            event("an order's shortfall was already covered")
        if quantity:
            expected.append(
                (
                    sku,
                    quantity,
                    {
                        "backlog": backlog,
                        "on_order": on_order,
                        "buffer_pct": product.buffer_pct,
                        "target": target,
                        "need": target - on_order,
                        "quantity": quantity,
                    },
                )
            )
    await probe.adopt_new_pos(expected)
    for sku, level in (await probe.stock()).items():
        # Right after the order, what is coming covers what is waiting.
        assert level["on_order"] >= level["backordered"], sku


async def run_cancel_order(probe: Probe, step: CancelOrder) -> None:
    shop = probe.shop
    open_orders = [order for order in shop.orders if not order.cancelled]
    if not open_orders:
        event("no open order to cancel")
        return
    order = open_orders[step.pick % len(open_orders)]
    response = await probe.client.post(
        f"/v1/orders/{order.id}/cancel", json={"reason": "property"}, headers=probe.keys.staff
    )
    assert response.status_code == 200, response.text
    order.cancelled = True
    for sku, line in order.lines.items():
        shop.products[sku].reserved -= line.allocated
        line.allocated = 0
        line.backordered = 0
    for sku in sorted(order.lines):
        shop.serve(sku)
    await probe.adopt_new_pos([])


def receipt_amount(step: Receive, still_to_come: int) -> int:
    if step.mode == "partial" and still_to_come > 1:
        return max(1, still_to_come * step.amount // 10)
    if step.mode == "over" or still_to_come == 0:
        return still_to_come + step.amount
    return still_to_come


async def run_receive(probe: Probe, step: Receive) -> None:
    shop = probe.shop
    receivable = [po for po in shop.pos.values() if po.status in RECEIVABLE]
    if not receivable:
        event("no PO to receive on")
        return
    po = receivable[step.pick % len(receivable)]
    skus = sorted({line.sku for line in po.lines})
    chosen = [sku for bit, sku in enumerate(skus) if step.which & (1 << bit)] or skus
    amounts = {
        sku: receipt_amount(
            step,
            sum(max(line.quantity - line.received, 0) for line in po.lines if line.sku == sku),
        )
        for sku in chosen
    }

    receipt = await receive(probe.client, probe.keys, po.id, amounts)

    allocations: list[tuple[str, str, int]] = []
    for sku in sorted(amounts):
        left = amounts[sku]
        shop.products[sku].on_hand += left
        sku_lines = [line for line in po.lines if line.sku == sku]
        for line in sku_lines:
            units = min(max(line.quantity - line.received, 0), left)
            line.received += units
            left -= units
        sku_lines[-1].received += left
        allocations.extend(shop.serve(sku))
    fully = all(line.received >= line.quantity for line in po.lines)
    po.status = "received" if fully else "partially_received"
    event(f"receipt left the PO {po.status}")
    # Served oldest order first, the exact units the model hands out.
    assert [
        (allocation["order_id"], allocation["sku"], allocation["units"])
        for allocation in receipt["allocations"]
    ] == allocations
    assert receipt["purchase_order"]["status"] == po.status
    await probe.adopt_new_pos([])


async def run_cancel_purchase(probe: Probe, step: CancelPurchase) -> None:
    shop = probe.shop
    open_pos = [po for po in shop.pos.values() if po.status in OPEN_PO]
    if not open_pos:
        event("no PO to cancel")
        return
    po = open_pos[step.pick % len(open_pos)]
    uncovered = sorted({line.sku for line in po.lines if line.quantity > line.received})
    response = await probe.client.post(
        f"/v1/purchase-orders/{po.id}/cancel", json={"reason": "property"}, headers=probe.keys.staff
    )
    assert response.status_code == 200, response.text
    po.status = "cancelled"
    expected: list[tuple[str, int, dict[str, int]]] = []
    for sku in uncovered:
        product = shop.products[sku]
        backlog, on_order = shop.backordered(sku), shop.on_order(sku)
        quantity = rule_quantity(backlog, on_order, product)
        if quantity:
            event("a PO cancellation ordered again")
            expected.append(
                (sku, quantity, {"backlog": backlog, "on_order": on_order, "quantity": quantity})
            )
    await probe.adopt_new_pos(expected)


async def run(probe: Probe, step: Step) -> None:
    match step:
        case PlaceOrder():
            await run_order(probe, step)
        case CancelOrder():
            await run_cancel_order(probe, step)
        case Receive():
            await run_receive(probe, step)
        case CancelPurchase():
            await run_cancel_purchase(probe, step)


# --- the property ---------------------------------------------------------------------------


FLOW_TERMS = {"buffer_pct": 20, "pack_size": 1, "min_order_qty": 1, "stock": 5}
PACKED_TERMS = {"buffer_pct": 0, "pack_size": 12, "min_order_qty": 24, "stock": 0}


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    terms=st.lists(terms_strategy, min_size=len(SKUS), max_size=len(SKUS)),
    one_supplier=st.booleans(),
    steps=steps_strategy,
)
@example(
    # Three orders wait for BO-A; receipts serve them oldest first, partly then over; an
    # order cancellation frees stock for the next in line; a PO cancellation orders again.
    terms=[FLOW_TERMS, FLOW_TERMS],
    one_supplier=True,
    steps=[
        PlaceOrder(((0, 8),)),
        PlaceOrder(((0, 4), (1, 9))),
        PlaceOrder(((0, 3), (0, 2))),
        Receive(0, "partial", 5, 0),
        Receive(0, "over", 3, 0),
        CancelOrder(1),
        CancelPurchase(0),
        PlaceOrder(((1, 20),)),
        Receive(0, "full", 1, 3),
        CancelOrder(0),
    ],
)
@example(
    # Whole packs and a minimum: shortages covered by the first PO order nothing, and a
    # cancelled PO is replaced by whole packs again.
    terms=[PACKED_TERMS, FLOW_TERMS],
    one_supplier=False,
    steps=[
        PlaceOrder(((0, 4),)),
        PlaceOrder(((0, 10), (1, 7))),
        PlaceOrder(((0, 9),)),
        CancelPurchase(0),
        Receive(0, "partial", 3, 0),
        PlaceOrder(((0, 1), (1, 1))),
        CancelPurchase(1),
        Receive(1, "over", 9, 0),
    ],
)
async def test_random_sequences_keep_every_backorder_promise(
    app: FastAPI,
    client: httpx.AsyncClient,
    database: Database,
    terms: list[dict[str, int]],
    one_supplier: bool,
    steps: list[Step],
) -> None:
    # The fixtures empty the database once per test, not once per example.
    await app.state.key_usage.drain()
    await clear_data(database)
    keys = await make_keys(database)
    shared = await create_supplier(client, keys, "Shared Supplies") if one_supplier else None
    products: dict[str, ModelProduct] = {}
    for sku, term in zip(SKUS, terms, strict=True):
        supplier_id = await backorder_product(
            client,
            keys,
            sku,
            supplier_id=shared,
            stock=term["stock"],
            buffer_pct=term["buffer_pct"],
            pack_size=term["pack_size"],
            min_order_qty=term["min_order_qty"],
        )
        products[sku] = ModelProduct(
            sku,
            supplier_id,
            term["buffer_pct"],
            term["pack_size"],
            term["min_order_qty"],
            on_hand=term["stock"],
        )
    probe = Probe(client, keys, database, Shop(products))
    await probe.check()
    for step in steps:
        await run(probe, step)
        await probe.check()
    event(f"POs at the end: {min(len(probe.shop.pos), 5)}{'+' if len(probe.shop.pos) > 5 else ''}")


# --- closed purchase orders -----------------------------------------------------------------


async def closed_po(client: httpx.AsyncClient, keys: Keys, status: str, sku: str) -> str:
    """A replenishment PO for 12 units of ``sku``, received in full or cancelled."""
    await backorder_product(client, keys, sku)
    await place(client, keys, {sku: 10})
    (po,) = [po for po in await purchase_orders(client, keys) if po["lines"][0]["sku"] == sku]
    if status == "received":
        await receive(client, keys, po["id"], {sku: 12})
    else:
        response = await client.post(
            f"/v1/purchase-orders/{po['id']}/cancel", json={"reason": "test"}, headers=keys.staff
        )
        assert response.status_code == 200, response.text
    po_id: str = po["id"]
    return po_id


def refused_actions(sku: str) -> list[tuple[str, dict[str, Any] | None]]:
    return [
        ("receipts", {"lines": [{"sku": sku, "quantity": 1}]}),
        ("cancel", {"reason": "again"}),
        ("submit", None),
        ("acknowledge", {"expected_delivery_date": "2030-01-01"}),
    ]


@pytest.mark.parametrize("status", ["received", "cancelled"])
@pytest.mark.parametrize("action", ["receipts", "cancel", "submit", "acknowledge"])
async def test_a_closed_po_takes_no_action_and_nothing_changes(
    client: httpx.AsyncClient, keys: Keys, database: Database, status: str, action: str
) -> None:
    sku = SKUS[0]
    po_id = await closed_po(client, keys, status, sku)
    stock = await inventory(client, keys, sku)
    pos = await purchase_orders(client, keys)

    response = await client.post(
        f"/v1/purchase-orders/{po_id}/{action}",
        json=dict(refused_actions(sku))[action],
        headers=keys.staff,
    )

    assert_problem(
        response,
        409,
        "invalid-purchase-order-transition",
        purchase_order_status=status,
        action={"receipts": "receive"}.get(action, action),
    )
    assert await inventory(client, keys, sku) == stock
    assert await purchase_orders(client, keys) == pos
    async with database.transaction(write=False) as session:
        assert await inventory_service.reconcile(session) == []
