"""The backlog queue, the replenishment plan and the purchase-order state machine (DESIGN §2),
without a database: who gets stock that becomes available, when each waiting line is
promised its goods, what one order makes Stockflow buy, and which PO actions are allowed."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st

from stockflow.api.problems import install_problem_handlers
from stockflow.errors import PROBLEM_TYPES, StockflowError
from stockflow.inventory.policy import (
    MAX_BUFFER_PCT,
    ProductRules,
    ReplenishmentSettings,
    ShortagePolicy,
    backorder_quantity,
    plan_replenishment,
    reorder_point_quantity,
)
from stockflow.inventory.queue import allocate_oldest_first, expected_arrival, promise_dates
from stockflow.purchasing.states import (
    OPEN,
    InvalidPurchaseOrderTransition,
    PurchaseOrderAction,
    PurchaseOrderStatus,
    after,
    allowed_from,
    require,
)

# --- allocate_oldest_first ------------------------------------------------------------------


def test_the_design_receipt_serves_the_first_two_orders_and_part_of_the_third() -> None:
    # 24 units arrive for orders waiting 20, 3 and 5 (DESIGN §2 worked example).
    assert allocate_oldest_first(24, [("first", 20), ("second", 3), ("third", 5)]) == [
        ("first", 20),
        ("second", 3),
        ("third", 1),
    ]


def test_a_younger_line_that_would_fit_does_not_jump_the_queue() -> None:
    assert allocate_oldest_first(3, [("old", 5), ("young", 3)]) == [("old", 3)]


def test_more_than_the_backlog_serves_everyone_and_keeps_the_rest() -> None:
    assert allocate_oldest_first(100, [("a", 2), ("b", 7)]) == [("a", 2), ("b", 7)]


@pytest.mark.parametrize("available", [0, -1, -50])
def test_nothing_available_serves_nobody(available: int) -> None:
    assert allocate_oldest_first(available, [("a", 2), ("b", 7)]) == []


def test_an_empty_queue_gets_nothing() -> None:
    assert allocate_oldest_first(10, []) == []


def test_a_line_waiting_for_nothing_is_skipped_without_stopping_the_queue() -> None:
    assert allocate_oldest_first(4, [("a", 0), ("b", 3), ("c", 0), ("d", 5)]) == [
        ("b", 3),
        ("d", 1),
    ]


queues = st.lists(st.integers(0, 40), max_size=12).map(
    lambda waits: [(index, wait) for index, wait in enumerate(waits)]
)


@given(available=st.integers(-20, 300), waiting=queues)
def test_allocation_never_overgives_and_serves_oldest_first(
    available: int, waiting: list[tuple[int, int]]
) -> None:
    given_ = allocate_oldest_first(available, waiting)
    waits = dict(waiting)
    got = dict(given_)

    # Each line at most once, in queue order, with a positive share it actually waits for.
    assert [line for line, _ in given_] == sorted(got)
    assert all(0 < units <= waits[line] for line, units in given_)
    total = sum(got.values())
    assert total <= max(available, 0)
    # No stock is held back while a line still waits.
    assert total == min(max(available, 0), sum(waits.values()))
    # A younger line gets something only if every older one is fully served.
    for line in got:
        assert all(got.get(older, 0) == waits[older] for older in range(line))


# --- promise_dates --------------------------------------------------------------------------

D = date(2026, 3, 1)


def day(offset: int) -> date:
    return D + timedelta(days=offset)


def test_promise_dates_by_hand() -> None:
    # 4 units on the 3rd, 24 on the 10th, 6 on the 20th; the queue waits 20, 3, 5, 5, 1, 1.
    incoming = [(day(9), 24), (day(19), 6), (day(2), 4)]
    waiting = [("a", 20), ("b", 3), ("c", 5), ("d", 5), ("e", 1), ("f", 1)]
    assert promise_dates(waiting, incoming) == {
        "a": day(9),  # 4 + 24 = 28 >= 20
        "b": day(9),  # 23
        "c": day(9),  # 28: exactly covered
        "d": day(19),  # 33 <= 34
        "e": day(19),  # 34
        "f": None,  # 35: never reached
    }


def test_an_early_small_delivery_promises_the_head_of_the_queue_earlier() -> None:
    incoming = [(day(10), 24), (day(1), 4)]
    assert promise_dates([("a", 3), ("b", 20)], incoming) == {"a": day(1), "b": day(10)}


def test_an_acknowledged_date_earlier_than_a_draft_overtakes_it() -> None:
    # The supplier's date counts, whichever PO was placed first.
    assert promise_dates([("a", 5)], [(day(14), 5), (day(4), 5)]) == {"a": day(4)}


def test_nothing_incoming_promises_nothing() -> None:
    assert promise_dates([("a", 1), ("b", 2)], []) == {"a": None, "b": None}


def test_lines_received_in_full_are_not_incoming() -> None:
    # A PO line with nothing still to come must not lend its date to the queue.
    assert promise_dates([("a", 5)], [(day(1), 0), (day(8), 5)]) == {"a": day(8)}


def test_an_empty_queue_promises_nothing() -> None:
    assert promise_dates([], [(day(1), 10)]) == {}


def test_several_arrivals_on_one_day_cover_together() -> None:
    assert promise_dates([("a", 7)], [(day(3), 4), (day(3), 3), (day(1), 2)]) == {"a": day(3)}


waiting_queues = st.lists(st.integers(1, 30), max_size=10).map(
    lambda waits: [(index, wait) for index, wait in enumerate(waits)]
)
arrivals = st.lists(st.tuples(st.integers(0, 60).map(day), st.integers(0, 40)), max_size=8)


def covered_on(incoming: list[tuple[date, int]], needed: int) -> date | None:
    """An oracle built differently from the module: the first day whose cumulative
    deliveries (all arrivals up to and including that day) reach ``needed``."""
    for when in sorted({when for when, _ in incoming}):
        if sum(units for other, units in incoming if other <= when) >= needed:
            return when
    return None


@given(waiting=waiting_queues, incoming=arrivals, data=st.data())
def test_promise_dates_follow_the_cumulative_queue(
    waiting: list[tuple[int, int]], incoming: list[tuple[date, int]], data: st.DataObject
) -> None:
    promised = promise_dates(waiting, incoming)
    assert list(promised) == [line for line, _ in waiting]

    total_incoming = sum(units for _, units in incoming)
    cumulative = list(itertools.accumulate(wait for _, wait in waiting))
    for (line, _), needed in zip(waiting, cumulative, strict=True):
        # None exactly when everything on order does not reach this place in the queue.
        assert (promised[line] is None) == (total_incoming < needed)
        assert promised[line] == covered_on(incoming, needed)

    # Monotone along the queue: a later line is never promised earlier ("never" is last).
    ranks = [(d is None, d or D) for d in promised.values()]
    assert ranks == sorted(ranks)

    # The order the PO lines are listed in does not matter.
    shuffled = data.draw(st.permutations(incoming), label="incoming listed otherwise")
    assert promise_dates(waiting, shuffled) == promised


# --- expected_arrival -----------------------------------------------------------------------

SUBMITTED = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PLANNED = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
CREATED = datetime(2026, 2, 27, 9, 0, tzinfo=UTC)


def test_the_acknowledged_date_wins_over_everything() -> None:
    assert expected_arrival(
        acknowledged_date=date(2026, 3, 4),
        submitted_at=SUBMITTED,
        planned_submission=PLANNED,
        now=CREATED,
        lead_time_days=30,
    ) == date(2026, 3, 4)


def test_a_submitted_po_arrives_a_lead_time_after_submission() -> None:
    assert expected_arrival(
        acknowledged_date=None,
        submitted_at=SUBMITTED,
        planned_submission=PLANNED,
        now=CREATED,
        lead_time_days=7,
    ) == date(2026, 3, 8)


def test_a_draft_arrives_a_lead_time_after_its_planned_submission() -> None:
    assert expected_arrival(
        acknowledged_date=None,
        submitted_at=None,
        planned_submission=PLANNED,
        now=CREATED,
        lead_time_days=7,
    ) == date(2026, 3, 12)


def test_a_manual_draft_counts_as_if_submitted_now() -> None:
    assert expected_arrival(
        acknowledged_date=None,
        submitted_at=None,
        planned_submission=None,
        now=CREATED,
        lead_time_days=2,
    ) == date(2026, 3, 1)


def test_a_late_evening_submission_crosses_midnight_in_utc() -> None:
    late = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    assert expected_arrival(
        acknowledged_date=None,
        submitted_at=late,
        planned_submission=None,
        now=CREATED,
        lead_time_days=0,
    ) == date(2026, 3, 1)
    assert expected_arrival(
        acknowledged_date=None,
        submitted_at=late + timedelta(hours=1),
        planned_submission=None,
        now=CREATED,
        lead_time_days=1,
    ) == date(2026, 3, 3)


@given(
    start=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
    ),
    lead=st.integers(0, 365),
)
def test_the_arrival_is_exactly_the_lead_time_after_the_start_day(
    start: datetime, lead: int
) -> None:
    arrival = expected_arrival(
        acknowledged_date=None,
        submitted_at=start,
        planned_submission=None,
        now=start - timedelta(days=3),
        lead_time_days=lead,
    )
    assert (arrival - start.date()).days == lead


# --- plan_replenishment ---------------------------------------------------------------------


def rules(
    policy: ShortagePolicy = ShortagePolicy.BACKORDER,
    *,
    buffer_pct: int = 20,
    reorder_point: int | None = None,
    reorder_up_to: int | None = None,
) -> ProductRules:
    return ProductRules(policy, buffer_pct, reorder_point, reorder_up_to)


def test_the_backorder_rule_alone_orders_the_shortfall_plus_the_buffer() -> None:
    (only,) = plan_replenishment(
        rules=rules(),
        backordered_now=20,
        backlog=20,
        on_order=0,
        available=0,
        pack_size=1,
        min_order_qty=1,
    )
    assert (only.kind, only.backlog, only.on_order, only.target, only.quantity) == (
        "backorder",
        20,
        0,
        24,
        24,
    )


def test_the_reorder_point_sees_what_the_backorder_rule_just_ordered() -> None:
    # B 20 -> 24 ordered; position 0 + 24 - 20 = 4 < 10, so top up to 30: 26 more.
    backorder, reorder = plan_replenishment(
        rules=rules(reorder_point=10, reorder_up_to=30),
        backordered_now=20,
        backlog=20,
        on_order=0,
        available=0,
        pack_size=1,
        min_order_qty=1,
    )
    assert (backorder.kind, backorder.quantity) == ("backorder", 24)
    assert reorder.as_dict() == {
        "kind": "reorder_point",
        "backlog": 20,
        "on_order": 24,
        "buffer_pct": 0,
        "target": 30,
        "need": 26,
        "pack_size": 1,
        "min_order_qty": 1,
        "quantity": 26,
        "available": 0,
        "reorder_point": 10,
        "reorder_up_to": 30,
        "position": 4,
    }


def test_a_backorder_covering_the_reorder_point_leaves_it_silent() -> None:
    # B 10 with buffer 100 -> 20 ordered; position 5 + 20 - 10 = 15 >= 10: nothing more.
    (backorder,) = plan_replenishment(
        rules=rules(buffer_pct=100, reorder_point=10, reorder_up_to=40),
        backordered_now=10,
        backlog=10,
        on_order=0,
        available=5,
        pack_size=1,
        min_order_qty=1,
    )
    assert (backorder.kind, backorder.quantity) == ("backorder", 20)


def test_nothing_backordered_by_this_order_runs_no_backorder_rule() -> None:
    # An older backlog is uncovered (O 0 < B 10), but this order did not add to it.
    assert (
        plan_replenishment(
            rules=rules(),
            backordered_now=0,
            backlog=10,
            on_order=0,
            available=0,
            pack_size=1,
            min_order_qty=1,
        )
        == []
    )


def test_nothing_backordered_still_checks_the_reorder_point() -> None:
    (reorder,) = plan_replenishment(
        rules=rules(reorder_point=10, reorder_up_to=25),
        backordered_now=0,
        backlog=0,
        on_order=0,
        available=8,
        pack_size=6,
        min_order_qty=1,
    )
    assert (reorder.kind, reorder.position, reorder.need, reorder.quantity) == (
        "reorder_point",
        8,
        17,
        18,
    )


def test_a_reject_product_never_runs_the_backorder_rule() -> None:
    assert (
        plan_replenishment(
            rules=rules(ShortagePolicy.REJECT),
            backordered_now=5,
            backlog=5,
            on_order=0,
            available=0,
            pack_size=1,
            min_order_qty=1,
        )
        == []
    )
    (reorder,) = plan_replenishment(
        rules=rules(ShortagePolicy.REJECT, reorder_point=3, reorder_up_to=12),
        backordered_now=0,
        backlog=0,
        on_order=0,
        available=2,
        pack_size=1,
        min_order_qty=1,
    )
    assert (reorder.kind, reorder.quantity) == ("reorder_point", 10)


def test_a_covered_backlog_orders_nothing_and_records_no_zero_line() -> None:
    # Design example: pack 12, minimum 24, B 14, O 24 -> target 17, nothing.
    assert (
        plan_replenishment(
            rules=rules(),
            backordered_now=10,
            backlog=14,
            on_order=24,
            available=0,
            pack_size=12,
            min_order_qty=24,
        )
        == []
    )


@st.composite
def plan_inputs(draw: st.DrawFn) -> dict[str, object]:
    policy = draw(st.sampled_from(ShortagePolicy))
    point = draw(st.one_of(st.none(), st.integers(0, 80)))
    up_to = None if point is None else draw(st.one_of(st.none(), st.integers(point, 200)))
    backordered_now = draw(st.integers(0, 60)) if policy is ShortagePolicy.BACKORDER else 0
    return {
        "rules": ProductRules(policy, draw(st.integers(0, MAX_BUFFER_PCT)), point, up_to),
        "backordered_now": backordered_now,
        "backlog": backordered_now + draw(st.integers(0, 200)),
        "on_order": draw(st.integers(0, 300)),
        "available": draw(st.integers(0, 100)) if backordered_now == 0 else 0,
        "pack_size": draw(st.integers(1, 30)),
        "min_order_qty": draw(st.integers(1, 60)),
    }


@given(inputs=plan_inputs())
def test_the_plan_is_the_backorder_rule_then_the_reorder_point(inputs: dict[str, object]) -> None:
    plan = plan_replenishment(**inputs)  # type: ignore[arg-type]
    product = inputs["rules"]
    assert isinstance(product, ProductRules)
    backlog, on_order, available = (
        int(inputs[name])  # type: ignore[call-overload]
        for name in ("backlog", "on_order", "available")
    )
    pack, minimum = int(inputs["pack_size"]), int(inputs["min_order_qty"])  # type: ignore[call-overload]

    kinds = [explanation.kind for explanation in plan]
    assert kinds in ([], ["backorder"], ["reorder_point"], ["backorder", "reorder_point"])
    for explanation in plan:
        assert explanation.quantity > 0
        assert explanation.quantity % pack == 0
        assert explanation.quantity >= minimum

    runs_backorder = product.shortage_policy is ShortagePolicy.BACKORDER and bool(
        inputs["backordered_now"]
    )
    expected_backorder = backorder_quantity(
        backlog=backlog,
        on_order=on_order,
        settings=ReplenishmentSettings(product.buffer_pct, pack, minimum),
    )
    if runs_backorder and expected_backorder.quantity > 0:
        assert plan[0] == expected_backorder
        on_order += expected_backorder.quantity
    else:
        assert "backorder" not in kinds
    if runs_backorder:
        # What the order leaves on order covers its backlog (DESIGN §2).
        assert on_order >= backlog

    expected_reorder = reorder_point_quantity(
        available=available,
        on_order=on_order,
        backordered=backlog,
        reorder_point=product.reorder_point,
        reorder_up_to=product.reorder_up_to,
        pack_size=pack,
        min_order_qty=minimum,
    )
    if expected_reorder is not None:
        assert plan[-1] == expected_reorder
        on_order += expected_reorder.quantity
    else:
        assert "reorder_point" not in kinds
    if product.reorder_point is not None:
        # After both rules the position is back at the reorder point or above.
        assert available + on_order - backlog >= product.reorder_point


# --- the purchase-order state machine -------------------------------------------------------

P = PurchaseOrderStatus
A = PurchaseOrderAction

# Written out by hand from the DESIGN §1 life cycle, not derived from the module: every
# (status, action) pair with the status it leads to (for a receipt: not yet all received,
# then all received), or None when it is refused.
EXPECTED: dict[tuple[PurchaseOrderStatus, PurchaseOrderAction], tuple[P, P] | None] = {
    (P.DRAFT, A.SUBMIT): (P.SUBMITTED, P.SUBMITTED),
    (P.DRAFT, A.ACKNOWLEDGE): None,
    (P.DRAFT, A.RECEIVE): None,  # the supplier has not seen it
    (P.DRAFT, A.CANCEL): (P.CANCELLED, P.CANCELLED),
    (P.SUBMITTED, A.SUBMIT): None,
    (P.SUBMITTED, A.ACKNOWLEDGE): (P.ACKNOWLEDGED, P.ACKNOWLEDGED),
    (P.SUBMITTED, A.RECEIVE): (P.PARTIALLY_RECEIVED, P.RECEIVED),
    (P.SUBMITTED, A.CANCEL): (P.CANCELLED, P.CANCELLED),
    (P.ACKNOWLEDGED, A.SUBMIT): None,
    (P.ACKNOWLEDGED, A.ACKNOWLEDGE): (P.ACKNOWLEDGED, P.ACKNOWLEDGED),
    (P.ACKNOWLEDGED, A.RECEIVE): (P.PARTIALLY_RECEIVED, P.RECEIVED),
    (P.ACKNOWLEDGED, A.CANCEL): (P.CANCELLED, P.CANCELLED),
    (P.PARTIALLY_RECEIVED, A.SUBMIT): None,
    # A new date does not undo the receipt already made.
    (P.PARTIALLY_RECEIVED, A.ACKNOWLEDGE): (P.PARTIALLY_RECEIVED, P.PARTIALLY_RECEIVED),
    (P.PARTIALLY_RECEIVED, A.RECEIVE): (P.PARTIALLY_RECEIVED, P.RECEIVED),
    (P.PARTIALLY_RECEIVED, A.CANCEL): (P.CANCELLED, P.CANCELLED),
    (P.RECEIVED, A.SUBMIT): None,
    (P.RECEIVED, A.ACKNOWLEDGE): None,
    (P.RECEIVED, A.RECEIVE): None,
    (P.RECEIVED, A.CANCEL): None,
    (P.CANCELLED, A.SUBMIT): None,
    (P.CANCELLED, A.ACKNOWLEDGE): None,
    (P.CANCELLED, A.RECEIVE): None,
    (P.CANCELLED, A.CANCEL): None,
}

ALLOWED = [(pair, to) for pair, to in EXPECTED.items() if to is not None]
REFUSED = [pair for pair, to in EXPECTED.items() if to is None]


def test_the_table_covers_every_status_and_action() -> None:
    assert set(EXPECTED) == set(itertools.product(P, A))
    assert [s.value for s in P] == [
        "draft",
        "submitted",
        "acknowledged",
        "partially_received",
        "received",
        "cancelled",
    ]
    assert [a.value for a in A] == ["submit", "acknowledge", "receive", "cancel"]


@pytest.mark.parametrize(("pair", "to"), ALLOWED, ids=lambda v: str(v))
def test_allowed_actions_lead_where_the_life_cycle_says(
    pair: tuple[PurchaseOrderStatus, PurchaseOrderAction], to: tuple[P, P]
) -> None:
    status, action = pair
    require(status, action)
    assert status in allowed_from(action)
    assert after(status, action, fully_received=False) is to[0]
    assert after(status, action, fully_received=True) is to[1]


@pytest.mark.parametrize("pair", REFUSED, ids=lambda v: str(v))
def test_refused_actions_raise_a_409_naming_status_and_action(
    pair: tuple[PurchaseOrderStatus, PurchaseOrderAction],
) -> None:
    status, action = pair
    assert status not in allowed_from(action)
    for attempt in (
        lambda: require(status, action),
        lambda: after(status, action),
        lambda: after(status, action, fully_received=True),
    ):
        with pytest.raises(InvalidPurchaseOrderTransition) as refused:
            attempt()
        error = refused.value
        assert isinstance(error, StockflowError)
        assert error.status == 409
        assert error.type == "/problems/invalid-purchase-order-transition"
        assert error.extensions == {
            "purchase_order_status": status.value,
            "action": action.value,
        }
        assert status.value.replace("_", " ") in error.detail
        assert action.value in error.detail
        for allowed in allowed_from(action):
            assert allowed.value.replace("_", " ") in error.detail


def test_closed_purchase_orders_take_no_action_at_all() -> None:
    for status in (P.RECEIVED, P.CANCELLED):
        assert status not in OPEN
        assert all(status not in allowed_from(action) for action in A)


def test_open_statuses_are_the_ones_that_can_still_be_cancelled() -> None:
    assert allowed_from(A.CANCEL) == OPEN
    assert {P.DRAFT, P.SUBMITTED, P.ACKNOWLEDGED, P.PARTIALLY_RECEIVED} == OPEN


def test_the_problem_type_is_registered() -> None:
    assert "invalid-purchase-order-transition" in PROBLEM_TYPES


async def _render(error: StockflowError) -> httpx.Response:
    """The response the API's problem handlers give for ``error`` raised by a route."""
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/refuse")
    async def refuse() -> None:
        raise error

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://unit.test") as client:
        return await client.post("/refuse")


async def test_a_refused_transition_renders_as_a_409_problem() -> None:
    response = await _render(InvalidPurchaseOrderTransition(status=P.RECEIVED, action=A.CANCEL))
    assert response.status_code == 409, response.text
    body = response.json()
    # The problem's own `status` member stays the HTTP status; the PO's has its own name.
    assert body["status"] == 409
    assert body["type"] == "/problems/invalid-purchase-order-transition"
    assert (body["purchase_order_status"], body["action"]) == ("received", "cancel")
