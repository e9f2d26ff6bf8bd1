"""What each scenario sends: the next request, and what its answer teaches the next ones.

Requests are built as bytes with string formatting rather than a JSON encoder, to keep the
generator's share of the machine small. Every writing POST carries a fresh
``Idempotency-Key``, as a storefront's retry-safe client would send, so the order path runs
with everything on.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from benchmarks import catalog
from benchmarks.httpclient import Response, header_block
from benchmarks.rows import Fixture, SeedPlan

LINES_PER_ORDER = 3
MAX_QUANTITY = 3
KNOWN_ORDERS = 50_000
SCENARIOS = ("orders", "hot", "backorder", "reads", "mixed")


@dataclass(slots=True)
class Call:
    operation: str
    method: str
    path: str
    headers: bytes
    body: bytes | None = None
    lines: tuple[tuple[str, int], ...] = ()


@dataclass
class OrderPool:
    """Orders placed so far: any of them can be read; the open ones shipped or cancelled."""

    open: deque[tuple[str, tuple[tuple[str, int], ...]]] = field(default_factory=deque)
    known: list[str] = field(default_factory=list)
    _next_slot: int = 0

    def add(self, order_id: str, lines: tuple[tuple[str, int], ...], *, shippable: bool) -> None:
        if shippable:
            self.open.append((order_id, lines))
        if len(self.known) < KNOWN_ORDERS:
            self.known.append(order_id)
        else:
            self.known[self._next_slot] = order_id
            self._next_slot = (self._next_slot + 1) % KNOWN_ORDERS


class Context:
    """Keys, ids and random state shared by every workload of one server."""

    def __init__(self, fixture: Fixture, plan: SeedPlan, seed: int, tag: str) -> None:
        self.fixture = fixture
        self.plan = plan
        self.rng = random.Random(seed)
        self.pool = OrderPool()
        self._tag = tag
        self._counter = 0
        self.service_headers = header_block(
            {"Authorization": f"Bearer {fixture.service_key}", "Content-Type": "application/json"}
        )
        self.staff_headers = header_block(
            {"Authorization": f"Bearer {fixture.staff_key}", "Content-Type": "application/json"}
        )
        self.customer_prefix = b'{"customer_id":"%s","lines":[' % fixture.customer_id.encode()

    def idempotent(self, headers: bytes) -> bytes:
        self._counter += 1
        return headers + b"Idempotency-Key: bench-%s-%d\r\n" % (self._tag.encode(), self._counter)


def order_body(prefix: bytes, lines: tuple[tuple[str, int], ...]) -> bytes:
    items = b",".join(b'{"sku":"%s","quantity":%d}' % (sku.encode(), qty) for sku, qty in lines)
    return prefix + items + b"]}"


def ship_body(lines: tuple[tuple[str, int], ...]) -> bytes:
    items = b",".join(b'{"sku":"%s","quantity":%d}' % (sku.encode(), qty) for sku, qty in lines)
    return b'{"lines":[' + items + b"]}"


class Workload:
    name = "base"
    shippable = True
    """Whether the orders it places are fully reserved, so ``mixed`` can ship them whole."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def next(self) -> Call:
        raise NotImplementedError

    def done(self, call: Call, response: Response) -> None:
        if call.operation == "order" and response.status == 201 and response.location:
            order_id = response.location.rsplit("/", 1)[-1]
            self.ctx.pool.add(order_id, call.lines, shippable=self.shippable)


class Orders(Workload):
    """3-line orders over random SKUs of the regular (``reject``, ample stock) catalog."""

    name = "orders"

    def skus(self) -> list[str]:
        r = self.ctx.plan.regular_range
        return [r.sku(i) for i in self.ctx.rng.sample(range(1, r.count + 1), LINES_PER_ORDER)]

    def next(self) -> Call:
        rng = self.ctx.rng
        lines = tuple((sku, rng.randint(1, MAX_QUANTITY)) for sku in self.skus())
        return Call(
            "order",
            "POST",
            "/v1/orders",
            self.ctx.idempotent(self.ctx.service_headers),
            order_body(self.ctx.customer_prefix, lines),
            lines,
        )


class Hot(Orders):
    """Every order has one line of the same SKU, plus two random ones."""

    name = "hot"

    def skus(self) -> list[str]:
        r = self.ctx.plan.regular_range
        hot = catalog.hot_index(r.count)
        others: list[int] = []
        while len(others) < LINES_PER_ORDER - 1:
            index = self.ctx.rng.randint(1, r.count)
            if index != hot and index not in others:
                others.append(index)
        return [r.sku(hot), *(r.sku(i) for i in others)]


class Backorder(Orders):
    """Orders over the ``backorder`` products, whose little stock runs out at once: lines are
    backordered and the replenishment rule orders from the supplier."""

    name = "backorder"
    shippable = False

    def skus(self) -> list[str]:
        r = self.ctx.plan.backorder_range
        return [r.sku(i) for i in self.ctx.rng.sample(range(1, r.count + 1), LINES_PER_ORDER)]


class Reads(Workload):
    """GET an order, a product or a product's stock, in equal shares."""

    name = "reads"

    def next(self) -> Call:
        ctx = self.ctx
        r = ctx.plan.regular_range
        pick = ctx.rng.randrange(3)
        if pick == 0 and ctx.pool.known:
            order_id = ctx.pool.known[ctx.rng.randrange(len(ctx.pool.known))]
            return Call("get_order", "GET", f"/v1/orders/{order_id}", ctx.service_headers)
        sku = r.sku(ctx.rng.randint(1, r.count))
        if pick == 1:
            return Call("get_inventory", "GET", f"/v1/inventory/{sku}", ctx.service_headers)
        return Call("get_product", "GET", f"/v1/products/{sku}", ctx.service_headers)


class Mixed(Workload):
    """60 % reads, 30 % orders, 5 % shipments and 5 % cancellations of open orders."""

    name = "mixed"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._reads = Reads(ctx)
        self._orders = Orders(ctx)

    def next(self) -> Call:
        ctx = self.ctx
        draw = ctx.rng.random()
        if draw < 0.6:
            return self._reads.next()
        if draw < 0.9 or not ctx.pool.open:
            return self._orders.next()
        order_id, lines = ctx.pool.open.popleft()
        if draw < 0.95:
            return Call(
                "ship",
                "POST",
                f"/v1/orders/{order_id}/shipments",
                ctx.idempotent(ctx.staff_headers),
                ship_body(lines),
            )
        return Call(
            "cancel",
            "POST",
            f"/v1/orders/{order_id}/cancel",
            ctx.idempotent(ctx.staff_headers),
            b'{"reason":"benchmark cancellation"}',
        )


WORKLOADS: dict[str, type[Workload]] = {
    "orders": Orders,
    "hot": Hot,
    "backorder": Backorder,
    "reads": Reads,
    "mixed": Mixed,
}
