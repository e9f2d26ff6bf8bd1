"""Order rules: merging lines, checking quantities, pricing. Pure: no database, no web."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stockflow.errors import (
    InactiveSku,
    InvalidAmounts,
    InvalidQuantity,
    MixedCurrencies,
    UnknownSku,
)

MAX_TOTAL = 2**63 - 1
"""The largest amount the money columns (64-bit integers) hold."""


@dataclass(frozen=True, slots=True)
class RequestedLine:
    sku: str
    quantity: int
    position: int
    """Index of the first request line for this SKU, so errors point at what was sent."""


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    product_id: str
    sku: str
    unit_price: int
    currency: str
    active: bool


@dataclass(frozen=True, slots=True)
class PricedLine:
    product_id: str
    sku: str
    position: int
    quantity: int
    unit_price: int

    @property
    def line_total(self) -> int:
        return self.unit_price * self.quantity


@dataclass(frozen=True, slots=True)
class PricedOrder:
    lines: tuple[PricedLine, ...]
    currency: str
    subtotal: int
    shipping_amount: int
    tax_amount: int
    discount_amount: int

    @property
    def total(self) -> int:
        return self.subtotal + self.shipping_amount + self.tax_amount - self.discount_amount


def merge_lines(lines: Iterable[tuple[str, int]], *, max_quantity: int) -> list[RequestedLine]:
    """One line per SKU, quantities summed, in order of first appearance.

    Merging comes before every check so that two lines of 6 are judged as the 12 they are,
    both against the per-line maximum and against stock.
    """
    merged: dict[str, RequestedLine] = {}
    for position, (sku, quantity) in enumerate(lines):
        if quantity < 1:
            raise InvalidQuantity(
                f"Line {position} ({sku}) asks for {quantity}; a quantity is at least 1.",
                line=position,
                sku=sku,
                quantity=quantity,
                maximum=max_quantity,
            )
        first = merged.get(sku)
        if first is None:
            merged[sku] = RequestedLine(sku, quantity, position)
        else:
            merged[sku] = RequestedLine(sku, first.quantity + quantity, first.position)
    for line in merged.values():
        if line.quantity > max_quantity:
            raise InvalidQuantity(
                f"Line {line.position} ({line.sku}) asks for {line.quantity} in all; "
                f"at most {max_quantity} per line.",
                line=line.position,
                sku=line.sku,
                quantity=line.quantity,
                maximum=max_quantity,
            )
    return list(merged.values())


def price_order(
    lines: list[RequestedLine],
    catalog: Mapping[str, CatalogEntry],
    *,
    shipping_amount: int,
    tax_amount: int,
    discount_amount: int,
    inactive_is_unknown: bool = False,
) -> PricedOrder:
    """Price the lines; ``inactive_is_unknown`` for callers who must not learn that an
    inactive product exists (customers, to whom it reads as 404 everywhere else)."""
    priced: list[PricedLine] = []
    currency: str | None = None
    for line in lines:
        entry = catalog.get(line.sku)
        if entry is not None and not entry.active and inactive_is_unknown:
            entry = None
        if entry is None:
            raise UnknownSku(
                f"Line {line.position}: no product has SKU {line.sku}.",
                line=line.position,
                sku=line.sku,
            )
        if not entry.active:
            raise InactiveSku(
                f"Line {line.position}: {line.sku} is not available for ordering.",
                line=line.position,
                sku=line.sku,
            )
        if currency is None:
            currency = entry.currency
        elif entry.currency != currency:
            raise MixedCurrencies(
                f"Line {line.position}: {line.sku} is priced in {entry.currency}, the order "
                f"in {currency}.",
                line=line.position,
                sku=line.sku,
                currency=entry.currency,
                order_currency=currency,
            )
        priced.append(
            PricedLine(entry.product_id, line.sku, line.position, line.quantity, entry.unit_price)
        )
    assert currency is not None, "an order has at least one line"
    subtotal = sum(line.line_total for line in priced)
    order = PricedOrder(
        tuple(priced), currency, subtotal, shipping_amount, tax_amount, discount_amount
    )
    gross = subtotal + shipping_amount + tax_amount
    if gross > MAX_TOTAL:
        # Prices and quantities are capped, but a deployment that raises the per-line and
        # per-order maxima can still reach sums the 64-bit money columns cannot hold.
        raise InvalidAmounts(
            f"The order's subtotal, shipping and tax add up to {gross}, more than the "
            f"{MAX_TOTAL} an amount can be.",
            subtotal=subtotal,
            maximum_total=MAX_TOTAL,
        )
    if order.total < 0:
        raise InvalidAmounts(
            f"A discount of {discount_amount} exceeds subtotal, shipping and tax "
            f"({order.total + discount_amount}).",
            discount_amount=discount_amount,
            maximum_discount=order.total + discount_amount,
        )
    return order
