"""The shortage policy and the replenishment rule (DESIGN §2), kept pure so the rule the
product is built around is tested in milliseconds and the service only asks "how much?".

Two rules decide what Stockflow orders from a supplier by itself:

* the *backorder rule* (`backorder_quantity`), run for a ``backorder`` product after an
  order has reserved what it could and backordered the rest: keep incoming stock at the
  backlog plus the buffer;
* the optional *reorder point* (`reorder_point_quantity`), run after it in the same
  transaction: top the stock position up when it falls below a floor.

Both return an `Explanation`, which the purchase-order line stores as it is, so every
quantity Stockflow orders can be traced back to the numbers that produced it. Which order
lines triggered it, the supplier SKU and the cost are the caller's to add.

Integer arithmetic only: a float would turn ``20 * 1.2`` into ``24.000000000000004`` and
order one unit too many, and the database holds integers anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

DEFAULT_BUFFER_PCT = 20
"""The flow rule's "order the difference plus 20 %"."""

MAX_BUFFER_PCT = 500
"""A buffer above this is almost certainly a typo (2000 meant as 20.00 %), not a policy."""

ExplanationKind = Literal["backorder", "reorder_point"]


class ShortagePolicy(StrEnum):
    """What an order for more than is available does to a product (DESIGN §2)."""

    REJECT = "reject"
    """Refuse the whole order; nothing is reserved."""
    BACKORDER = "backorder"
    """Accept it, reserve what is there, backorder the rest and order it from the supplier."""


def _require_int(
    name: str, value: object, *, minimum: int | None = None, maximum: int | None = None
) -> None:
    # bool is an int subclass and a float may hold a whole number; both would slip through
    # the arithmetic unnoticed and then land in an integer column or an explanation.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if maximum is not None and minimum is not None and not minimum <= value <= maximum:
        raise ValueError(f"{name} must be from {minimum} to {maximum}, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


@dataclass(frozen=True, slots=True)
class ReplenishmentSettings:
    """What the backorder rule needs besides the stock figures: the product's buffer and the
    preferred supplier's pack size and minimum order quantity.

    Checked here as well as in the API schemas, so a bad row in the database fails loudly
    at the rule instead of ordering zero-sized or fractional packs.
    """

    buffer_pct: int
    """Percentage added on top of the backlog, 0 to `MAX_BUFFER_PCT`; 20 by default."""
    pack_size: int
    """The supplier sells in multiples of this, at least 1."""
    min_order_qty: int
    """The supplier accepts no PO line below this, at least 1."""

    def __post_init__(self) -> None:
        _require_int("buffer_pct", self.buffer_pct, minimum=0, maximum=MAX_BUFFER_PCT)
        _require_int("pack_size", self.pack_size, minimum=1)
        _require_int("min_order_qty", self.min_order_qty, minimum=1)


@dataclass(frozen=True, slots=True)
class Explanation:
    """How one replenishment quantity was chosen: what a PO line stores, so staff (and
    reconcile) can redo the arithmetic by hand.

    For the backorder rule ``target`` is the backlog plus the buffer; for the reorder point
    it is ``reorder_up_to`` and ``buffer_pct`` is 0, and the four reorder-point inputs below
    are filled in. ``need`` may be zero or negative: it is kept as computed, since "nothing
    ordered because on_order already covers the target" is itself worth explaining.
    """

    kind: ExplanationKind
    backlog: int
    """B: the product's backordered quantity (after the order that triggered the rule)."""
    on_order: int
    """O: open PO quantities not yet received, drafts included, before this line."""
    buffer_pct: int
    target: int
    need: int
    pack_size: int
    min_order_qty: int
    quantity: int
    """The result: 0, or a multiple of ``pack_size`` that is at least ``min_order_qty``."""
    available: int | None = None
    reorder_point: int | None = None
    reorder_up_to: int | None = None
    """The level actually topped up to: ``reorder_point`` when the product has none."""
    position: int | None = None
    """``available + on_order - backlog``, the figure compared with the reorder point."""

    def as_dict(self) -> dict[str, int | str | None]:
        """A JSON-ready copy, keys in reading order, for the PO line's explanation column."""
        return {
            "kind": self.kind,
            "backlog": self.backlog,
            "on_order": self.on_order,
            "buffer_pct": self.buffer_pct,
            "target": self.target,
            "need": self.need,
            "pack_size": self.pack_size,
            "min_order_qty": self.min_order_qty,
            "quantity": self.quantity,
            "available": self.available,
            "reorder_point": self.reorder_point,
            "reorder_up_to": self.reorder_up_to,
            "position": self.position,
        }


def round_up_to(pack: int, quantity: int) -> int:
    """The smallest multiple of ``pack`` that is at least ``quantity``: a supplier ships
    whole packs, and rounding down would leave part of the need uncovered."""
    _require_int("pack", pack, minimum=1)
    _require_int("quantity", quantity, minimum=0)
    return -(-quantity // pack) * pack


def _order_quantity(need: int, *, pack_size: int, min_order_qty: int) -> int:
    if need <= 0:
        return 0
    return round_up_to(pack_size, max(min_order_qty, need))


def backorder_quantity(
    *, backlog: int, on_order: int, settings: ReplenishmentSettings
) -> Explanation:
    """How much to add to the preferred supplier's PO after an order backordered something.

    ``backlog`` (B) is the product's backordered quantity *after* this order, ``on_order``
    (O) its open PO quantity *before* the rule runs (DESIGN §2)::

        target = ceil(B * (100 + buffer_pct) / 100)
        need = target - O
        quantity = 0 if need <= 0 else round_up_to(pack_size, max(min_order_qty, need))

    Why it is built this way:

    * The result depends on B and O only, not on the order that triggered it. Orders for one
      product serialise on its stock row, and each one sees the B and O the previous one
      committed, so concurrent orders give exactly the totals of the same orders placed one
      by one in their commit order: 100 concurrent single units with buffer 20 end with
      on_order 120, never 100 orders each adding its own 20 %.
    * With ``buffer_pct >= 0``, ``on_order >= backlog`` holds after every order: either
      ``need <= 0`` and O already covers ``target >= B``, or the quantity is at least
      ``need`` and brings O up to ``target``. Receipts and cancellations lower B at least as
      much as they lower O, so they keep it too.
    * Nothing is ordered while O already meets the target, so stock already on its way is
      never ordered twice.
    * Integer ceiling (``-(-x // 100)``): 3 units plus 20 % is 4, not 3.6 or 3.
    """
    _require_int("backlog", backlog, minimum=0)
    _require_int("on_order", on_order, minimum=0)
    target = -(-backlog * (100 + settings.buffer_pct) // 100)
    need = target - on_order
    return Explanation(
        kind="backorder",
        backlog=backlog,
        on_order=on_order,
        buffer_pct=settings.buffer_pct,
        target=target,
        need=need,
        pack_size=settings.pack_size,
        min_order_qty=settings.min_order_qty,
        quantity=_order_quantity(
            need, pack_size=settings.pack_size, min_order_qty=settings.min_order_qty
        ),
    )


def reorder_point_quantity(
    *,
    available: int,
    on_order: int,
    backordered: int,
    reorder_point: int | None,
    reorder_up_to: int | None,
    pack_size: int,
    min_order_qty: int,
) -> Explanation | None:
    """What to order when the stock position falls below the product's reorder point, or
    ``None`` when the product has no reorder point or the position is not below it.

    ``position = available + on_order - backordered``: what will be free once everything
    on its way has arrived and served the backlog. Below ``reorder_point`` the rule orders
    ``reorder_up_to - position``, rounded by pack and minimum, with no buffer: the up-to
    level is already the amount the business wants to hold. Without ``reorder_up_to`` it
    tops up to the reorder point itself; one below the reorder point is a ValueError (the
    product API should refuse it first).

    It runs after `backorder_quantity` in the same transaction, so ``on_order`` must include
    what the backorder rule just ordered; otherwise both would cover the same shortfall.
    """
    _require_int("available", available, minimum=0)
    _require_int("on_order", on_order, minimum=0)
    _require_int("backordered", backordered, minimum=0)
    _require_int("pack_size", pack_size, minimum=1)
    _require_int("min_order_qty", min_order_qty, minimum=1)
    if reorder_point is None:
        # An up-to level left over from a cleared reorder point switches nothing on.
        return None
    _require_int("reorder_point", reorder_point, minimum=0)
    up_to = reorder_point if reorder_up_to is None else reorder_up_to
    # An up-to level below the point would be reached with the position still under the
    # point, so the rule would fire again on every order without ever being satisfied.
    _require_int("reorder_up_to", up_to, minimum=reorder_point)
    position = available + on_order - backordered
    if position >= reorder_point:
        return None
    need = up_to - position
    return Explanation(
        kind="reorder_point",
        backlog=backordered,
        on_order=on_order,
        buffer_pct=0,
        target=up_to,
        need=need,
        pack_size=pack_size,
        min_order_qty=min_order_qty,
        quantity=_order_quantity(need, pack_size=pack_size, min_order_qty=min_order_qty),
        available=available,
        reorder_point=reorder_point,
        reorder_up_to=up_to,
        position=position,
    )


def split_request(*, requested: int, available: int) -> tuple[int, int]:
    """``(reserved now, backordered)`` for one line of a ``backorder`` product.

    Everything available is reserved before anything is backordered, so a customer never
    waits for stock that is on the shelf. A negative ``available`` (which the database's
    constraints rule out) counts as nothing available rather than an un-reservation.
    """
    _require_int("requested", requested, minimum=0)
    _require_int("available", available)
    reserved = min(requested, max(available, 0))
    return reserved, requested - reserved


@dataclass(frozen=True, slots=True)
class ProductRules:
    """A product's shortage settings, as the order path reads them with its catalog entry."""

    shortage_policy: ShortagePolicy
    buffer_pct: int
    reorder_point: int | None
    reorder_up_to: int | None
    low_stock_threshold: int | None = None


def falls_low(*, threshold: int | None, before: int, after: int) -> bool:
    """Whether a change takes available stock to the low-stock threshold or below from
    above it: ``stock.low`` is told once per fall, not on every order while it stays low."""
    return threshold is not None and before > threshold >= after


def plan_replenishment(
    *,
    rules: ProductRules,
    backordered_now: int,
    backlog: int,
    on_order: int,
    available: int,
    pack_size: int,
    min_order_qty: int,
) -> list[Explanation]:
    """What to order for one product after an order: the backorder rule, then the reorder
    point, each only when it orders something (DESIGN §2).

    ``backordered_now`` is what this order backordered of the product, ``backlog`` the
    product's backordered quantity after it, ``on_order`` the open PO quantity before it
    and ``available`` what is left available after it. The backorder rule runs only when
    this order backordered something: otherwise B has not grown, and ``on_order >= target``
    still holds from the last time it ran. The reorder point sees ``on_order`` including
    what the backorder rule has just ordered, so both never cover the same shortfall.
    """
    ordered: list[Explanation] = []
    if rules.shortage_policy is ShortagePolicy.BACKORDER and backordered_now > 0:
        backorder = backorder_quantity(
            backlog=backlog,
            on_order=on_order,
            settings=ReplenishmentSettings(rules.buffer_pct, pack_size, min_order_qty),
        )
        if backorder.quantity > 0:
            ordered.append(backorder)
            on_order += backorder.quantity
    reorder = reorder_point_quantity(
        available=available,
        on_order=on_order,
        backordered=backlog,
        reorder_point=rules.reorder_point,
        reorder_up_to=rules.reorder_up_to,
        pack_size=pack_size,
        min_order_qty=min_order_qty,
    )
    if reorder is not None and reorder.quantity > 0:
        ordered.append(reorder)
    return ordered
