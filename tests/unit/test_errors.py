"""Problem-type errors: every one registered, and none able to overwrite a member of the
problem response itself."""

from __future__ import annotations

import pytest

from stockflow.errors import PROBLEM_TYPES, RESERVED_MEMBERS, InvalidRequest, NotFound
from stockflow.purchasing.states import (
    InvalidPurchaseOrderTransition,
    PurchaseOrderAction,
    PurchaseOrderStatus,
)


@pytest.mark.parametrize("member", sorted(RESERVED_MEMBERS))
def test_an_extension_may_not_reuse_a_member_of_the_problem(member: str) -> None:
    # ``detail`` is the positional argument itself, so Python refuses it first.
    with pytest.raises(ValueError if member != "detail" else TypeError, match=member):
        NotFound("gone", **{member: "x"})


def test_other_extensions_are_kept() -> None:
    error = InvalidRequest("bad", errors=[{"location": "body.x", "message": "required"}])
    assert error.extensions == {"errors": [{"location": "body.x", "message": "required"}]}


def test_the_purchase_order_refusal_is_registered_and_renders_its_own_members() -> None:
    error = InvalidPurchaseOrderTransition(
        status=PurchaseOrderStatus.RECEIVED, action=PurchaseOrderAction.CANCEL
    )
    assert error.slug in PROBLEM_TYPES
    assert error.status == 409
    assert error.extensions == {"purchase_order_status": "received", "action": "cancel"}
    assert error.detail == (
        "Cannot cancel a received purchase order; allowed only when it is draft, submitted, "
        "acknowledged or partially received."
    )
