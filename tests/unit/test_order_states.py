"""The order state machine, without a database."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

from stockflow.errors import PROBLEM_TYPES, StockflowError
from stockflow.orders.states import (
    TERMINAL_STATUSES,
    TRANSITIONS,
    InvalidStateTransition,
    OrderEvent,
    OrderStatus,
    can_cancel,
    fulfilment_flag,
    initial_status,
    next_status,
    shipment_event,
)

S = OrderStatus
E = OrderEvent

# Written out by hand from DESIGN §1, on purpose not derived from TRANSITIONS: every
# (status, event) pair, with the status it leads to, or None when it is refused.
EXPECTED: dict[tuple[OrderStatus, OrderEvent], OrderStatus | None] = {
    (S.PENDING_PAYMENT, E.PAYMENT_SUCCEEDED): S.CONFIRMED,
    (S.PENDING_PAYMENT, E.SHIPPED_PARTIALLY): None,  # unpaid
    (S.PENDING_PAYMENT, E.SHIPPED_FULLY): None,  # unpaid
    (S.PENDING_PAYMENT, E.CANCELLED): S.CANCELLED,
    (S.CONFIRMED, E.PAYMENT_SUCCEEDED): None,  # already paid
    (S.CONFIRMED, E.SHIPPED_PARTIALLY): S.PARTIALLY_SHIPPED,
    (S.CONFIRMED, E.SHIPPED_FULLY): S.SHIPPED,
    (S.CONFIRMED, E.CANCELLED): S.CANCELLED,
    (S.PARTIALLY_SHIPPED, E.PAYMENT_SUCCEEDED): None,
    (S.PARTIALLY_SHIPPED, E.SHIPPED_PARTIALLY): S.PARTIALLY_SHIPPED,
    (S.PARTIALLY_SHIPPED, E.SHIPPED_FULLY): S.SHIPPED,
    (S.PARTIALLY_SHIPPED, E.CANCELLED): S.CANCELLED,
    (S.SHIPPED, E.PAYMENT_SUCCEEDED): None,
    (S.SHIPPED, E.SHIPPED_PARTIALLY): None,
    (S.SHIPPED, E.SHIPPED_FULLY): None,
    (S.SHIPPED, E.CANCELLED): None,
    (S.CANCELLED, E.PAYMENT_SUCCEEDED): None,
    (S.CANCELLED, E.SHIPPED_PARTIALLY): None,
    (S.CANCELLED, E.SHIPPED_FULLY): None,
    (S.CANCELLED, E.CANCELLED): None,
}

# Where each event would lead: what a refusal reports as `to_status`.
EVENT_TARGET = {
    E.PAYMENT_SUCCEEDED: "confirmed",
    E.SHIPPED_PARTIALLY: "partially_shipped",
    E.SHIPPED_FULLY: "shipped",
    E.CANCELLED: "cancelled",
}

ALLOWED = [(pair, to) for pair, to in EXPECTED.items() if to is not None]
FORBIDDEN = [pair for pair, to in EXPECTED.items() if to is None]


def test_wire_values() -> None:
    assert [s.value for s in OrderStatus] == [
        "pending_payment",
        "confirmed",
        "partially_shipped",
        "shipped",
        "cancelled",
    ]
    assert [e.value for e in OrderEvent] == [
        "payment_succeeded",
        "shipped_partially",
        "shipped_fully",
        "cancelled",
    ]
    assert str(OrderStatus.PARTIALLY_SHIPPED) == "partially_shipped"


def test_the_expected_table_covers_every_pair() -> None:
    assert set(EXPECTED) == set(itertools.product(OrderStatus, OrderEvent))
    assert len(EXPECTED) == 20


def test_transitions_table_matches_the_expected_table() -> None:
    assert dict(TRANSITIONS) == dict(ALLOWED)


def test_transitions_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[(S.SHIPPED, E.CANCELLED)] = S.CANCELLED  # type: ignore[index]


@pytest.mark.parametrize(
    ("current", "event", "expected"),
    [(current, event, to) for (current, event), to in ALLOWED],
)
def test_allowed_transitions(
    current: OrderStatus, event: OrderEvent, expected: OrderStatus
) -> None:
    assert next_status(current, event) is expected


@pytest.mark.parametrize(("current", "event"), FORBIDDEN)
def test_forbidden_transitions(current: OrderStatus, event: OrderEvent) -> None:
    with pytest.raises(InvalidStateTransition) as caught:
        next_status(current, event)
    error = caught.value
    assert isinstance(error, StockflowError)
    assert error.status == 409
    assert error.slug == "invalid-state-transition"
    assert error.type == "/problems/invalid-state-transition"
    assert error.title == "Invalid state transition"
    assert error.extensions == {
        "from_status": current.value,
        "to_status": EVENT_TARGET[event],
    }
    assert isinstance(error.extensions["from_status"], str)
    assert error.from_status is current
    assert error.event is event
    assert error.to_status == EVENT_TARGET[event]
    assert error.detail == str(error)
    assert current.value.replace("_", " ") in error.detail
    assert EVENT_TARGET[event].replace("_", " ") in error.detail


def test_problem_type_is_registered() -> None:
    title, description = PROBLEM_TYPES["invalid-state-transition"]
    assert title == "Invalid state transition"
    assert description


@pytest.mark.parametrize(
    ("current", "event", "detail"),
    [
        (S.SHIPPED, E.CANCELLED, "An order that is shipped cannot be cancelled."),
        (S.CANCELLED, E.SHIPPED_FULLY, "An order that is cancelled cannot be shipped."),
        (S.CONFIRMED, E.PAYMENT_SUCCEEDED, "An order that is confirmed cannot be confirmed."),
        (
            S.PENDING_PAYMENT,
            E.SHIPPED_FULLY,
            "An order that is pending payment cannot be shipped before it is paid.",
        ),
        (
            S.PENDING_PAYMENT,
            E.SHIPPED_PARTIALLY,
            "An order that is pending payment cannot be partially shipped before it is paid.",
        ),
    ],
)
def test_refusal_details_read_as_sentences(
    current: OrderStatus, event: OrderEvent, detail: str
) -> None:
    with pytest.raises(InvalidStateTransition) as caught:
        next_status(current, event)
    assert caught.value.detail == detail


def test_refusal_can_name_another_target_status() -> None:
    error = InvalidStateTransition(
        from_status=S.SHIPPED, event=E.CANCELLED, to_status=S.PARTIALLY_SHIPPED
    )
    assert error.extensions == {"from_status": "shipped", "to_status": "partially_shipped"}
    assert error.detail == "An order that is shipped cannot be partially shipped."


def test_terminal_statuses_allow_nothing() -> None:
    assert frozenset({S.SHIPPED, S.CANCELLED}) == TERMINAL_STATUSES
    for status in TERMINAL_STATUSES:
        assert all(EXPECTED[(status, event)] is None for event in OrderEvent)


def test_a_paid_order_goes_through_several_shipments() -> None:
    status = initial_status(payment_required=True)
    for event in (E.PAYMENT_SUCCEEDED, E.SHIPPED_PARTIALLY, E.SHIPPED_PARTIALLY, E.SHIPPED_FULLY):
        status = next_status(status, event)
    assert status is S.SHIPPED


@pytest.mark.parametrize(
    ("payment_required", "expected"),
    [(True, S.PENDING_PAYMENT), (False, S.CONFIRMED)],
)
def test_initial_status(payment_required: bool, expected: OrderStatus) -> None:
    assert initial_status(payment_required=payment_required) is expected


@pytest.mark.parametrize(
    ("backordered_units", "expected"),
    [(0, "ready_to_ship"), (1, "awaiting_stock"), (250, "awaiting_stock")],
)
def test_fulfilment_flag(backordered_units: int, expected: str) -> None:
    assert fulfilment_flag(backordered_units=backordered_units) == expected


def test_fulfilment_flag_refuses_a_negative_backlog() -> None:
    with pytest.raises(ValueError, match="backordered_units"):
        fulfilment_flag(backordered_units=-1)


@pytest.mark.parametrize(
    ("status", "shipped_units", "by_customer", "expected"),
    [
        # Customers: only before anything shipped, and only while cancellation is allowed.
        (S.PENDING_PAYMENT, 0, True, True),
        (S.CONFIRMED, 0, True, True),
        (S.CONFIRMED, 1, True, False),
        (S.PARTIALLY_SHIPPED, 3, True, False),
        (S.PARTIALLY_SHIPPED, 0, True, True),
        (S.SHIPPED, 0, True, False),
        (S.SHIPPED, 5, True, False),
        (S.CANCELLED, 0, True, False),
        # Staff: any order that is not terminal, whatever has shipped.
        (S.PENDING_PAYMENT, 0, False, True),
        (S.CONFIRMED, 0, False, True),
        (S.CONFIRMED, 1, False, True),
        (S.PARTIALLY_SHIPPED, 3, False, True),
        (S.SHIPPED, 5, False, False),
        (S.SHIPPED, 0, False, False),
        (S.CANCELLED, 0, False, False),
    ],
)
def test_can_cancel(
    status: OrderStatus, shipped_units: int, by_customer: bool, expected: bool
) -> None:
    assert can_cancel(status, shipped_units=shipped_units, by_customer=by_customer) is expected


def test_can_cancel_refuses_negative_shipped_units() -> None:
    with pytest.raises(ValueError, match="shipped_units"):
        can_cancel(S.CONFIRMED, shipped_units=-1, by_customer=False)


@pytest.mark.parametrize(
    ("units_remaining_after", "expected"),
    [(0, E.SHIPPED_FULLY), (1, E.SHIPPED_PARTIALLY), (40, E.SHIPPED_PARTIALLY)],
)
def test_shipment_event(units_remaining_after: int, expected: OrderEvent) -> None:
    assert shipment_event(units_remaining_after=units_remaining_after) is expected


def test_shipment_event_refuses_a_negative_remainder() -> None:
    with pytest.raises(ValueError, match="units_remaining_after"):
        shipment_event(units_remaining_after=-2)


def test_the_module_imports_only_the_standard_library_and_errors() -> None:
    # Pure by design (DESIGN §2): checked on the source, since a test process has FastAPI
    # and SQLAlchemy loaded anyway.
    import stockflow.errors as errors
    import stockflow.orders.states as states

    for module, allowed in (
        (states, {"__future__", "collections", "enum", "types", "typing", "stockflow.errors"}),
        (errors, {"__future__", "typing"}),
    ):
        assert module.__file__ is not None
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        imported = {
            node.module if node.module == "stockflow.errors" else node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module is not None
        } | {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        assert imported <= allowed, imported - allowed
