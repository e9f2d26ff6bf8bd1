"""The shortage policy and the replenishment rule (DESIGN §2), without a database."""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockflow.inventory.policy import (
    DEFAULT_BUFFER_PCT,
    MAX_BUFFER_PCT,
    Explanation,
    ReplenishmentSettings,
    ShortagePolicy,
    backorder_quantity,
    reorder_point_quantity,
    round_up_to,
    split_request,
)

FLOW = ReplenishmentSettings(buffer_pct=20, pack_size=1, min_order_qty=1)


@dataclass
class Product:
    """The counters the service keeps for one ``backorder`` product, reduced to what the
    rule reads: ``available`` on the shelf, ``backordered`` (B) and ``on_order`` (O)."""

    settings: ReplenishmentSettings
    available: int
    backordered: int = 0
    on_order: int = 0
    placed: list[Explanation] = field(default_factory=list)

    def order(self, quantity: int) -> tuple[int, int, Explanation]:
        reserved, backordered = split_request(requested=quantity, available=self.available)
        self.available -= reserved
        self.backordered += backordered
        explanation = backorder_quantity(
            backlog=self.backordered, on_order=self.on_order, settings=self.settings
        )
        self.on_order += explanation.quantity
        self.placed.append(explanation)
        return reserved, backordered, explanation


# --- DESIGN §2, worked examples -------------------------------------------------------------


def test_the_flow_example_from_the_design() -> None:
    product = Product(FLOW, available=30)

    reserved, backordered, first = product.order(50)
    assert (reserved, backordered) == (30, 20)
    assert (first.backlog, first.on_order, first.target, first.need) == (20, 0, 24, 24)
    assert first.quantity == 24

    _, _, second = product.order(3)
    assert (second.backlog, second.on_order, second.target, second.need) == (23, 24, 28, 4)
    assert second.quantity == 4  # 3 plus 20 %, rounded up

    _, _, third = product.order(5)
    assert (third.backlog, third.on_order, third.target, third.need) == (28, 28, 34, 6)
    assert third.quantity == 6

    # What the inventory read then shows.
    assert (product.available, product.backordered, product.on_order) == (0, 28, 34)


def test_the_flow_example_explanation_is_what_the_po_line_stores() -> None:
    explanation = backorder_quantity(backlog=20, on_order=0, settings=FLOW)
    assert explanation.as_dict() == {
        "kind": "backorder",
        "backlog": 20,
        "on_order": 0,
        "buffer_pct": 20,
        "target": 24,
        "need": 24,
        "pack_size": 1,
        "min_order_qty": 1,
        "quantity": 24,
        "available": None,
        "reorder_point": None,
        "reorder_up_to": None,
        "position": None,
    }


def test_pack_and_minimum_from_the_design() -> None:
    product = Product(ReplenishmentSettings(buffer_pct=20, pack_size=12, min_order_qty=24), 0)

    _, _, first = product.order(4)
    assert (first.target, first.need, first.quantity) == (5, 5, 24)

    _, _, further = product.order(10)
    assert (further.backlog, further.target, further.on_order) == (14, 17, 24)
    assert further.need == -7
    assert further.quantity == 0


def test_no_buffer_and_single_units_order_exactly_the_shortfall() -> None:
    product = Product(ReplenishmentSettings(buffer_pct=0, pack_size=1, min_order_qty=1), 30)
    assert product.order(50)[2].quantity == 20
    assert product.order(3)[2].quantity == 3
    assert product.order(7)[2].quantity == 7
    assert product.on_order == product.backordered == 30


def test_a_hundred_single_unit_orders_end_with_the_backlog_plus_twenty_percent() -> None:
    # The concurrency case, evaluated one by one as the commits serialise it.
    product = Product(FLOW, available=0)
    for _ in range(100):
        product.order(1)
    assert (product.backordered, product.on_order) == (100, 120)


def test_the_default_buffer_is_the_flow_rule() -> None:
    assert DEFAULT_BUFFER_PCT == 20


def test_nothing_backordered_orders_nothing() -> None:
    explanation = backorder_quantity(backlog=0, on_order=0, settings=FLOW)
    assert (explanation.target, explanation.need, explanation.quantity) == (0, 0, 0)


def test_shortage_policy_values() -> None:
    assert [policy.value for policy in ShortagePolicy] == ["reject", "backorder"]
    assert ShortagePolicy("backorder") is ShortagePolicy.BACKORDER


# --- the pieces -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pack", "quantity", "expected"),
    [(1, 0, 0), (1, 7, 7), (12, 1, 12), (12, 12, 12), (12, 13, 24), (5, 24, 25), (3, 0, 0)],
)
def test_round_up_to(pack: int, quantity: int, expected: int) -> None:
    assert round_up_to(pack, quantity) == expected


@pytest.mark.parametrize(
    ("requested", "available", "expected"),
    [
        (50, 30, (30, 20)),
        (3, 0, (0, 3)),
        (5, 5, (5, 0)),
        (4, 10, (4, 0)),
        (4, -2, (0, 4)),  # never un-reserves
        (0, 10, (0, 0)),
    ],
)
def test_split_request(requested: int, available: int, expected: tuple[int, int]) -> None:
    assert split_request(requested=requested, available=available) == expected


# --- reorder point --------------------------------------------------------------------------


def reorder(
    *,
    available: int,
    on_order: int = 0,
    backordered: int = 0,
    reorder_point: int | None = 10,
    reorder_up_to: int | None = 30,
    pack_size: int = 1,
    min_order_qty: int = 1,
) -> Explanation | None:
    return reorder_point_quantity(
        available=available,
        on_order=on_order,
        backordered=backordered,
        reorder_point=reorder_point,
        reorder_up_to=reorder_up_to,
        pack_size=pack_size,
        min_order_qty=min_order_qty,
    )


def test_reorder_point_below_the_point_tops_up_without_buffer() -> None:
    explanation = reorder(available=9)
    assert explanation is not None
    assert explanation.as_dict() == {
        "kind": "reorder_point",
        "backlog": 0,
        "on_order": 0,
        "buffer_pct": 0,
        "target": 30,
        "need": 21,
        "pack_size": 1,
        "min_order_qty": 1,
        "quantity": 21,
        "available": 9,
        "reorder_point": 10,
        "reorder_up_to": 30,
        "position": 9,
    }


def test_reorder_point_at_or_above_the_point_orders_nothing() -> None:
    assert reorder(available=10) is None
    assert reorder(available=25) is None


def test_reorder_point_counts_on_order_and_backlog_in_the_position() -> None:
    # 4 on the shelf + 8 coming - 5 promised = 7, below 10: top up to 30.
    explanation = reorder(available=4, on_order=8, backordered=5)
    assert explanation is not None
    assert (explanation.position, explanation.need, explanation.quantity) == (7, 23, 23)
    # Enough on order lifts the position to the point: nothing.
    assert reorder(available=4, on_order=11, backordered=5) is None
    # A backlog larger than everything else gives a negative position, still topped up.
    deep = reorder(available=0, on_order=0, backordered=6)
    assert deep is not None
    assert (deep.position, deep.quantity) == (-6, 36)


def test_reorder_point_rounds_by_pack_and_minimum() -> None:
    by_pack = reorder(available=9, pack_size=12)
    assert by_pack is not None
    assert (by_pack.need, by_pack.quantity) == (21, 24)
    by_minimum = reorder(available=9, reorder_up_to=12, min_order_qty=50)
    assert by_minimum is not None
    assert (by_minimum.need, by_minimum.quantity) == (3, 50)
    both = reorder(available=9, reorder_up_to=12, pack_size=12, min_order_qty=30)
    assert both is not None
    assert both.quantity == 36


def test_reorder_up_to_defaults_to_the_reorder_point() -> None:
    explanation = reorder(available=7, reorder_up_to=None)
    assert explanation is not None
    assert (explanation.reorder_up_to, explanation.target, explanation.quantity) == (10, 10, 3)


def test_no_reorder_point_means_no_reorder() -> None:
    assert reorder(available=0, backordered=50, reorder_point=None, reorder_up_to=None) is None
    assert reorder(available=0, reorder_point=None, reorder_up_to=30) is None


def test_a_zero_reorder_point_fires_only_on_a_negative_position() -> None:
    assert reorder(available=0, reorder_point=0, reorder_up_to=None) is None
    explanation = reorder(available=0, backordered=2, reorder_point=0, reorder_up_to=None)
    assert explanation is not None
    assert explanation.quantity == 2


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("buffer_pct", "pack_size", "min_order_qty", "message"),
    [
        (-1, 1, 1, "buffer_pct"),
        (MAX_BUFFER_PCT + 1, 1, 1, "buffer_pct"),
        (20, 0, 1, "pack_size"),
        (20, -12, 1, "pack_size"),
        (20, 1, 0, "min_order_qty"),
        (20.0, 1, 1, "buffer_pct"),
        (20, 1.5, 1, "pack_size"),
        (20, True, 1, "pack_size"),
        (20, 1, "24", "min_order_qty"),
    ],
)
def test_bad_settings_are_refused(
    buffer_pct: object, pack_size: object, min_order_qty: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ReplenishmentSettings(
            buffer_pct=buffer_pct,  # type: ignore[arg-type]
            pack_size=pack_size,  # type: ignore[arg-type]
            min_order_qty=min_order_qty,  # type: ignore[arg-type]
        )


def test_the_bounds_themselves_are_accepted() -> None:
    ReplenishmentSettings(buffer_pct=0, pack_size=1, min_order_qty=1)
    ReplenishmentSettings(buffer_pct=MAX_BUFFER_PCT, pack_size=1, min_order_qty=1)


def test_bad_rule_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="backlog"):
        backorder_quantity(backlog=-1, on_order=0, settings=FLOW)
    with pytest.raises(ValueError, match="on_order"):
        backorder_quantity(backlog=1, on_order=-1, settings=FLOW)
    with pytest.raises(ValueError, match="pack"):
        round_up_to(0, 5)
    with pytest.raises(ValueError, match="quantity"):
        round_up_to(12, -1)
    with pytest.raises(ValueError, match="requested"):
        split_request(requested=-1, available=3)
    with pytest.raises(ValueError, match="reorder_up_to"):
        reorder(available=0, reorder_point=10, reorder_up_to=9)
    with pytest.raises(ValueError, match="reorder_point"):
        reorder(available=0, reorder_point=-1, reorder_up_to=None)
    with pytest.raises(ValueError, match="pack_size"):
        reorder(available=0, pack_size=0)
    with pytest.raises(ValueError, match="min_order_qty"):
        reorder(available=0, min_order_qty=0)


# --- properties -----------------------------------------------------------------------------

settings_strategy = st.builds(
    ReplenishmentSettings,
    buffer_pct=st.one_of(st.sampled_from([0, 20]), st.integers(0, MAX_BUFFER_PCT)),
    pack_size=st.one_of(st.just(1), st.integers(1, 30)),
    min_order_qty=st.one_of(st.just(1), st.integers(1, 60)),
)


def expected_target(backlog: int, buffer_pct: int) -> int:
    """An oracle written differently from the module: exact rationals, then the ceiling."""
    return math.ceil(Fraction(backlog * (100 + buffer_pct), 100))


def check_quantity(explanation: Explanation, settings: ReplenishmentSettings) -> None:
    quantity = explanation.quantity
    assert explanation.target == expected_target(explanation.backlog, settings.buffer_pct)
    assert explanation.need == explanation.target - explanation.on_order
    if explanation.on_order >= explanation.target:
        assert quantity == 0  # already covered: nothing ordered twice
    else:
        assert quantity % settings.pack_size == 0
        assert quantity >= settings.min_order_qty
        assert explanation.on_order + quantity >= explanation.target
        # And no more than the rounding forces: one pack less would not do.
        assert quantity - settings.pack_size < max(settings.min_order_qty, explanation.need)


@dataclass
class Shop:
    """One ``backorder`` product with its open orders, to drive the rule through orders,
    receipts, order cancellations and PO cancellations as the service would."""

    settings: ReplenishmentSettings
    available: int
    on_order: int = 0
    orders: list[list[int]] = field(default_factory=list)
    """Open orders, oldest first, as ``[allocated, backordered]``."""

    @property
    def backordered(self) -> int:
        return sum(backordered for _, backordered in self.orders)

    def replenish(self) -> Explanation:
        explanation = backorder_quantity(
            backlog=self.backordered, on_order=self.on_order, settings=self.settings
        )
        check_quantity(explanation, self.settings)
        self.on_order += explanation.quantity
        return explanation

    def place(self, quantity: int) -> Explanation:
        reserved, backordered = split_request(requested=quantity, available=self.available)
        assert reserved + backordered == quantity
        assert backordered == 0 or reserved == self.available
        self.available -= reserved
        self.orders.append([reserved, backordered])
        return self.replenish()

    def release(self, units: int) -> None:
        """Stock that becomes free serves the backlog first, oldest order first."""
        for line in self.orders:
            served = min(units, line[1])
            line[0] += served
            line[1] -= served
            units -= served
        self.available += units

    def receive(self, units: int) -> None:
        # Receiving more than was ordered is allowed; on_order only drops to zero.
        self.on_order -= min(units, self.on_order)
        self.release(units)

    def cancel_order(self, index: int) -> None:
        if self.orders:
            allocated, _ = self.orders.pop(index % len(self.orders))
            self.release(allocated)

    def cancel_purchase_order(self, units: int) -> None:
        self.on_order -= min(units, self.on_order)
        self.replenish()  # the rule runs again for the backlog the PO leaves uncovered


steps_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("order"), st.integers(1, 60)),
        st.tuples(st.just("receive"), st.integers(1, 80)),
        st.tuples(st.just("cancel_order"), st.integers(0, 100)),
        st.tuples(st.just("cancel_purchase_order"), st.integers(1, 80)),
    ),
    min_size=1,
    max_size=40,
)


@given(settings=settings_strategy, stock=st.integers(0, 100), steps=steps_strategy)
def test_on_order_covers_the_backlog_after_every_step(
    settings: ReplenishmentSettings, stock: int, steps: list[tuple[str, int]]
) -> None:
    shop = Shop(settings, available=stock)
    for action, amount in steps:
        match action:
            case "order":
                shop.place(amount)
            case "receive":
                shop.receive(amount)
            case "cancel_order":
                shop.cancel_order(amount)
            case "cancel_purchase_order":
                shop.cancel_purchase_order(amount)
        assert shop.on_order >= shop.backordered
        # Stronger: incoming stock stays at least the backlog plus the buffer, so receipts and
        # cancellations never leave the next order to make up for them.
        assert shop.on_order >= expected_target(shop.backordered, settings.buffer_pct)


@given(settings=settings_strategy, backlog=st.integers(0, 10_000), on_order=st.integers(0, 15_000))
def test_the_quantity_is_zero_or_whole_packs_at_least_the_minimum(
    settings: ReplenishmentSettings, backlog: int, on_order: int
) -> None:
    explanation = backorder_quantity(backlog=backlog, on_order=on_order, settings=settings)
    check_quantity(explanation, settings)
    assert all(
        isinstance(value, int | str | None) and not isinstance(value, float)
        for value in explanation.as_dict().values()
    )
    json.dumps(explanation.as_dict())


@given(
    backlog=st.integers(0, 10_000),
    on_order=st.integers(0, 15_000),
    buffer_pct=st.integers(0, MAX_BUFFER_PCT),
    pack_size=st.integers(1, 50),
    min_order_qty=st.integers(1, 100),
)
def test_after_the_rule_on_order_covers_the_backlog(
    backlog: int, on_order: int, buffer_pct: int, pack_size: int, min_order_qty: int
) -> None:
    # Stated on the raw inputs rather than the explanation's own target, so a target
    # computed below B (a rounding or sign slip) could not hide behind a consistent check.
    settings = ReplenishmentSettings(buffer_pct, pack_size, min_order_qty)
    quantity = backorder_quantity(backlog=backlog, on_order=on_order, settings=settings).quantity
    assert quantity == 0 or (quantity % pack_size == 0 and quantity >= min_order_qty)
    if on_order >= expected_target(backlog, buffer_pct):
        assert quantity == 0
    assert on_order + quantity >= backlog


@given(
    settings=settings_strategy,
    backlog=st.integers(0, 10_000),
    covered=st.integers(0, 5_000),
)
def test_nothing_is_ordered_while_on_order_meets_the_target(
    settings: ReplenishmentSettings, backlog: int, covered: int
) -> None:
    target = expected_target(backlog, settings.buffer_pct)
    explanation = backorder_quantity(backlog=backlog, on_order=target + covered, settings=settings)
    assert explanation.quantity == 0


@given(
    settings=st.lists(settings_strategy, min_size=2, max_size=4),
    orders=st.lists(st.lists(st.integers(1, 40), max_size=15), min_size=4, max_size=4),
    stock=st.integers(0, 50),
    data=st.data(),
)
def test_interleaving_gives_the_totals_of_one_by_one_evaluation(
    settings: list[ReplenishmentSettings],
    orders: list[list[int]],
    stock: int,
    data: st.DataObject,
) -> None:
    # Several products' orders evaluated in an arbitrary interleaving (as concurrent requests
    # commit) against each product's orders evaluated alone: the same quantity at every step,
    # since each is a function of that product's B and O only.
    streams = {index: orders[index] for index in range(len(settings))}
    alone = {index: Product(settings[index], stock) for index in streams}
    for index, quantities in streams.items():
        for quantity in quantities:
            alone[index].order(quantity)

    schedule = [index for index, quantities in streams.items() for _ in quantities]
    schedule = data.draw(st.permutations(schedule), label="commit order")
    interleaved = {index: Product(settings[index], stock) for index in streams}
    cursor = dict.fromkeys(streams, 0)
    for index in schedule:
        interleaved[index].order(streams[index][cursor[index]])
        cursor[index] += 1
    for index, product in interleaved.items():
        assert product.placed == alone[index].placed
        assert product.on_order == alone[index].on_order
        # Asking again with the final B and O, after all that history, orders nothing more.
        again = backorder_quantity(
            backlog=product.backordered, on_order=product.on_order, settings=settings[index]
        )
        assert again.quantity == 0


@given(
    settings=settings_strategy.filter(lambda s: s.min_order_qty <= s.pack_size),
    quantities=st.lists(st.integers(1, 40), min_size=1, max_size=30),
    data=st.data(),
)
def test_commit_order_does_not_change_the_total_when_the_minimum_fits_in_a_pack(
    settings: ReplenishmentSettings, quantities: list[int], data: st.DataObject
) -> None:
    # With nothing in stock and the minimum within one pack, on_order always ends at the
    # target rounded up to whole packs, whichever order the commits came in: 100 concurrent
    # single units at buffer 20 give 120 however they interleave. (A minimum above the pack
    # size makes the total depend on the commit order — still exactly that of the same
    # orders placed one by one in that order.)
    commit_order = data.draw(st.permutations(quantities), label="commit order")
    product = Product(settings, available=0)
    for quantity in commit_order:
        product.order(quantity)
    total = sum(quantities)
    assert product.backordered == total
    assert product.on_order == round_up_to(
        settings.pack_size, expected_target(total, settings.buffer_pct)
    )


def test_the_module_imports_only_the_standard_library() -> None:
    # Pure by design (DESIGN §2): checked on the source, since a test process has FastAPI,
    # SQLAlchemy and pydantic loaded anyway.
    import stockflow.inventory.policy as policy

    assert policy.__file__ is not None
    tree = ast.parse(Path(policy.__file__).read_text(encoding="utf-8"))
    imported = {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    } | {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert imported <= {"__future__", "dataclasses", "enum", "typing"}, imported
    # Integer arithmetic only: no float literal and no true division anywhere.
    assert not any(
        isinstance(node, ast.Constant) and isinstance(node.value, float) for node in ast.walk(tree)
    )
    assert not any(isinstance(node, ast.Div) for node in ast.walk(tree))
