"""The purchase-order state machine, pure so every rule about a PO's status is tested
without a database and the service only asks "may this happen, and what comes next?".

=====================  ===========  =====================
from                   action       to
=====================  ===========  =====================
draft                  submit       submitted
submitted              acknowledge  acknowledged
acknowledged           acknowledge  acknowledged (a new expected date)
partially_received     acknowledge  partially_received (a new expected date)
submitted, acknowledged,
partially_received     receive      partially_received, or received once every line is
draft, submitted, acknowledged,
partially_received     cancel       cancelled
=====================  ===========  =====================

A draft has not reached the supplier, so nothing can be received on it; a received or
cancelled PO is closed and takes no action at all.
"""

from __future__ import annotations

from enum import StrEnum

from stockflow.errors import StockflowError


class PurchaseOrderStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    ACKNOWLEDGED = "acknowledged"
    PARTIALLY_RECEIVED = "partially_received"
    RECEIVED = "received"
    CANCELLED = "cancelled"


class PurchaseOrderAction(StrEnum):
    SUBMIT = "submit"
    ACKNOWLEDGE = "acknowledge"
    RECEIVE = "receive"
    CANCEL = "cancel"


OPEN = frozenset(
    {
        PurchaseOrderStatus.DRAFT,
        PurchaseOrderStatus.SUBMITTED,
        PurchaseOrderStatus.ACKNOWLEDGED,
        PurchaseOrderStatus.PARTIALLY_RECEIVED,
    }
)
"""Statuses whose unreceived quantities count as ``on_order``."""

_ALLOWED: dict[PurchaseOrderAction, frozenset[PurchaseOrderStatus]] = {
    PurchaseOrderAction.SUBMIT: frozenset({PurchaseOrderStatus.DRAFT}),
    PurchaseOrderAction.ACKNOWLEDGE: frozenset(
        {
            PurchaseOrderStatus.SUBMITTED,
            PurchaseOrderStatus.ACKNOWLEDGED,
            PurchaseOrderStatus.PARTIALLY_RECEIVED,
        }
    ),
    PurchaseOrderAction.RECEIVE: frozenset(
        {
            PurchaseOrderStatus.SUBMITTED,
            PurchaseOrderStatus.ACKNOWLEDGED,
            PurchaseOrderStatus.PARTIALLY_RECEIVED,
        }
    ),
    PurchaseOrderAction.CANCEL: OPEN,
}


class InvalidPurchaseOrderTransition(StockflowError):
    slug = "invalid-purchase-order-transition"
    title = "Purchase order cannot do that now"
    status = 409
    description = (
        "The action is not allowed in the purchase order's current status: only a draft is "
        "submitted, only a submitted, acknowledged or partially received PO is acknowledged "
        "or receives goods, and a received or cancelled PO takes no action. "
        "`purchase_order_status` and `action` say which."
    )

    def __init__(self, *, status: PurchaseOrderStatus, action: PurchaseOrderAction) -> None:
        # In lifecycle order, as people read the states.
        allowed = [s.value.replace("_", " ") for s in PurchaseOrderStatus if s in _ALLOWED[action]]
        choices = (
            allowed[-1] if len(allowed) == 1 else f"{', '.join(allowed[:-1])} or {allowed[-1]}"
        )
        super().__init__(
            f"Cannot {action.value} a {status.value.replace('_', ' ')} purchase order; "
            f"allowed only when it is {choices}.",
            purchase_order_status=status.value,
            action=action.value,
        )


def allowed_from(action: PurchaseOrderAction) -> frozenset[PurchaseOrderStatus]:
    """The statuses from which ``action`` is allowed (also the guard of its UPDATE)."""
    return _ALLOWED[action]


def require(status: PurchaseOrderStatus, action: PurchaseOrderAction) -> None:
    if status not in _ALLOWED[action]:
        raise InvalidPurchaseOrderTransition(status=status, action=action)


def after(
    status: PurchaseOrderStatus, action: PurchaseOrderAction, *, fully_received: bool = False
) -> PurchaseOrderStatus:
    """The status ``action`` leads to from ``status``; refused like `require`.

    ``fully_received`` matters only for a receipt: whether every line now has at least
    its ordered quantity.
    """
    require(status, action)
    if action is PurchaseOrderAction.SUBMIT:
        return PurchaseOrderStatus.SUBMITTED
    if action is PurchaseOrderAction.CANCEL:
        return PurchaseOrderStatus.CANCELLED
    if action is PurchaseOrderAction.RECEIVE:
        return (
            PurchaseOrderStatus.RECEIVED
            if fully_received
            else PurchaseOrderStatus.PARTIALLY_RECEIVED
        )
    # A new expected date does not undo a receipt already made.
    if status is PurchaseOrderStatus.PARTIALLY_RECEIVED:
        return status
    return PurchaseOrderStatus.ACKNOWLEDGED
