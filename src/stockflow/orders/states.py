"""The order state machine, kept pure so every rule about an order's status is tested in
milliseconds and the service layer only asks "may this happen, and what comes next?".

Two things are deliberately separate (DESIGN §1):

* the *status* (`OrderStatus`), which only moves along `TRANSITIONS`;
* the *fulfilment flag* (``awaiting_stock`` / ``ready_to_ship``), which follows the
  backordered quantities and never changes the status.

What a transition means for stock (releasing reservations on cancellation, keeping what was
shipped) is the caller's business; this module only decides the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

from stockflow.errors import StockflowError


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    CONFIRMED = "confirmed"
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"


class OrderEvent(StrEnum):
    PAYMENT_SUCCEEDED = "payment_succeeded"
    SHIPPED_PARTIALLY = "shipped_partially"
    SHIPPED_FULLY = "shipped_fully"
    CANCELLED = "cancelled"


TRANSITIONS: Mapping[tuple[OrderStatus, OrderEvent], OrderStatus] = MappingProxyType(
    {
        (OrderStatus.PENDING_PAYMENT, OrderEvent.PAYMENT_SUCCEEDED): OrderStatus.CONFIRMED,
        (OrderStatus.PENDING_PAYMENT, OrderEvent.CANCELLED): OrderStatus.CANCELLED,
        (OrderStatus.CONFIRMED, OrderEvent.SHIPPED_PARTIALLY): OrderStatus.PARTIALLY_SHIPPED,
        (OrderStatus.CONFIRMED, OrderEvent.SHIPPED_FULLY): OrderStatus.SHIPPED,
        (OrderStatus.CONFIRMED, OrderEvent.CANCELLED): OrderStatus.CANCELLED,
        (
            OrderStatus.PARTIALLY_SHIPPED,
            OrderEvent.SHIPPED_PARTIALLY,
        ): OrderStatus.PARTIALLY_SHIPPED,
        (OrderStatus.PARTIALLY_SHIPPED, OrderEvent.SHIPPED_FULLY): OrderStatus.SHIPPED,
        (OrderStatus.PARTIALLY_SHIPPED, OrderEvent.CANCELLED): OrderStatus.CANCELLED,
    }
)
"""Every allowed (status, event) pair and the status it leads to; any pair not listed is
refused with `InvalidStateTransition`.

=================  =================  =================
from               event              to
=================  =================  =================
pending_payment    payment_succeeded  confirmed
pending_payment    cancelled          cancelled
confirmed          shipped_partially  partially_shipped
confirmed          shipped_fully      shipped
confirmed          cancelled          cancelled
partially_shipped  shipped_partially  partially_shipped
partially_shipped  shipped_fully      shipped
partially_shipped  cancelled          cancelled
=================  =================  =================

Why the gaps:

* nothing ships from ``pending_payment``: the goods are not paid for yet;
* ``payment_succeeded`` is accepted only once, from ``pending_payment``: a late or repeated
  payment notification must not move an order that has moved on;
* ``partially_shipped`` loops on itself, since an order may leave in several shipments;
* cancelling a partially shipped order is allowed: what was shipped stays shipped and the
  rest is released (by the caller);
* ``shipped`` and ``cancelled`` are terminal: nothing happens to them any more.
"""

TERMINAL_STATUSES: frozenset[OrderStatus] = frozenset({OrderStatus.SHIPPED, OrderStatus.CANCELLED})
"""Statuses no event leaves; any role but a customer may cancel an order not in one."""

_EVENT_TARGETS: Mapping[OrderEvent, OrderStatus] = MappingProxyType(
    {
        OrderEvent.PAYMENT_SUCCEEDED: OrderStatus.CONFIRMED,
        OrderEvent.SHIPPED_PARTIALLY: OrderStatus.PARTIALLY_SHIPPED,
        OrderEvent.SHIPPED_FULLY: OrderStatus.SHIPPED,
        OrderEvent.CANCELLED: OrderStatus.CANCELLED,
    }
)
"""Where each event would lead, so a refusal can name the status the caller was after even
though the transition does not exist."""

_SHIPPING_EVENTS = frozenset({OrderEvent.SHIPPED_PARTIALLY, OrderEvent.SHIPPED_FULLY})

FulfilmentFlag = Literal["awaiting_stock", "ready_to_ship"]


def _label(status: OrderStatus) -> str:
    return status.value.replace("_", " ")


class InvalidStateTransition(StockflowError):
    """The order's current status does not allow the requested change. A conflict (409), not
    a validation error: the same request could succeed against an order in another state."""

    slug = "invalid-state-transition"
    title = "Invalid state transition"
    status = 409
    description = (
        "The order's current status does not allow this change (for example cancelling a "
        "shipped order, or shipping a cancelled one). `from_status` is the order's "
        "status and `to_status` the status the request would have led to."
    )

    def __init__(
        self,
        *,
        from_status: OrderStatus,
        event: OrderEvent,
        to_status: OrderStatus | None = None,
    ) -> None:
        target = to_status if to_status is not None else _EVENT_TARGETS[event]
        detail = f"An order that is {_label(from_status)} cannot be {_label(target)}"
        if from_status is OrderStatus.PENDING_PAYMENT and event in _SHIPPING_EVENTS:
            detail += " before it is paid"
        super().__init__(detail + ".", from_status=from_status.value, to_status=target.value)
        self.from_status = from_status
        self.event = event
        self.to_status = target


def initial_status(*, payment_required: bool) -> OrderStatus:
    """Without a payment provider there is nothing to wait for, so an order starts confirmed
    and can ship at once."""
    return OrderStatus.PENDING_PAYMENT if payment_required else OrderStatus.CONFIRMED


def next_status(current: OrderStatus, event: OrderEvent) -> OrderStatus:
    """The single gate every status change goes through, so no caller can invent a
    transition the table does not allow."""
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        raise InvalidStateTransition(from_status=current, event=event) from None


def fulfilment_flag(*, backordered_units: int) -> FulfilmentFlag:
    """Kept apart from the status: a confirmed order may still wait for stock, and staff need
    to see that without the status pretending otherwise."""
    if backordered_units < 0:
        raise ValueError(f"backordered_units must not be negative, got {backordered_units}")
    return "awaiting_stock" if backordered_units > 0 else "ready_to_ship"


def can_cancel(status: OrderStatus, *, shipped_units: int, by_customer: bool) -> bool:
    """A customer may only withdraw an order nothing of which has left the warehouse; staff
    may also cancel the unshipped rest of a partially shipped order, which is their call to
    make with the customer."""
    if shipped_units < 0:
        raise ValueError(f"shipped_units must not be negative, got {shipped_units}")
    if (status, OrderEvent.CANCELLED) not in TRANSITIONS:
        return False
    return not by_customer or shipped_units == 0


def shipment_event(*, units_remaining_after: int) -> OrderEvent:
    """Decides from quantities, not from the caller's intent, so a shipment that happens to
    send the last units closes the order. ``units_remaining_after`` is everything still to
    ship after this shipment, reserved or backordered alike: backordered units still have to
    leave, so they keep the order open."""
    if units_remaining_after < 0:
        raise ValueError(f"units_remaining_after must not be negative, got {units_remaining_after}")
    if units_remaining_after == 0:
        return OrderEvent.SHIPPED_FULLY
    return OrderEvent.SHIPPED_PARTIALLY
