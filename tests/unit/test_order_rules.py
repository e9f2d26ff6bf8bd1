"""Order rules without a database: merging lines, quantities, pricing, totals.

Every expected value is computed by hand in the test, not by calling the code under test.
"""

from __future__ import annotations

import pytest

from stockflow.errors import (
    InactiveSku,
    InvalidAmounts,
    InvalidQuantity,
    MixedCurrencies,
    UnknownSku,
)
from stockflow.orders.rules import (
    MAX_TOTAL,
    CatalogEntry,
    PricedLine,
    RequestedLine,
    merge_lines,
    price_order,
)

CATALOG = {
    "MUG": CatalogEntry("prd_mug", "MUG", 1290, "EUR", True),
    "COASTER": CatalogEntry("prd_coaster", "COASTER", 350, "EUR", True),
    "TEAPOT": CatalogEntry("prd_teapot", "TEAPOT", 4500, "EUR", True),
    "OLD": CatalogEntry("prd_old", "OLD", 100, "EUR", False),
    "DOLLAR": CatalogEntry("prd_dollar", "DOLLAR", 999, "USD", True),
}


def price(lines: list[RequestedLine], *, shipping: int = 0, tax: int = 0, discount: int = 0):
    return price_order(
        lines, CATALOG, shipping_amount=shipping, tax_amount=tax, discount_amount=discount
    )


# merge_lines ------------------------------------------------------------------------------


def test_distinct_skus_stay_in_the_order_they_were_sent() -> None:
    merged = merge_lines([("MUG", 2), ("COASTER", 1), ("TEAPOT", 3)], max_quantity=10)
    assert merged == [
        RequestedLine("MUG", 2, 0),
        RequestedLine("COASTER", 1, 1),
        RequestedLine("TEAPOT", 3, 2),
    ]


def test_lines_of_one_sku_merge_at_the_first_position_with_summed_quantities() -> None:
    merged = merge_lines(
        [("COASTER", 1), ("MUG", 2), ("TEAPOT", 1), ("MUG", 3), ("COASTER", 4), ("MUG", 1)],
        max_quantity=100,
    )
    assert merged == [
        RequestedLine("COASTER", 5, 0),
        RequestedLine("MUG", 6, 1),
        RequestedLine("TEAPOT", 1, 2),
    ]


def test_skus_differing_in_case_are_different_lines() -> None:
    merged = merge_lines([("MUG", 1), ("mug", 1)], max_quantity=10)
    assert merged == [RequestedLine("MUG", 1, 0), RequestedLine("mug", 1, 1)]


@pytest.mark.parametrize("quantity", [0, -1, -10_000])
def test_a_quantity_below_one_is_refused_naming_its_line(quantity: int) -> None:
    with pytest.raises(InvalidQuantity) as raised:
        merge_lines([("MUG", 1), ("COASTER", quantity)], max_quantity=10)
    error = raised.value
    assert error.status == 422
    assert error.type == "/problems/invalid-quantity"
    assert error.extensions == {
        "line": 1,
        "sku": "COASTER",
        "quantity": quantity,
        "maximum": 10,
    }
    assert "Line 1 (COASTER)" in error.detail


def test_a_bad_later_line_of_a_merged_sku_is_named_by_its_own_position() -> None:
    """A zero is refused where it was sent, even when an earlier line has the same SKU."""
    with pytest.raises(InvalidQuantity) as raised:
        merge_lines([("MUG", 3), ("COASTER", 1), ("MUG", 0)], max_quantity=10)
    assert raised.value.extensions["line"] == 2
    assert raised.value.extensions["quantity"] == 0


def test_exactly_the_maximum_is_accepted() -> None:
    assert merge_lines([("MUG", 6), ("MUG", 4)], max_quantity=10) == [RequestedLine("MUG", 10, 0)]


def test_a_single_line_above_the_maximum_is_refused() -> None:
    with pytest.raises(InvalidQuantity) as raised:
        merge_lines([("MUG", 1), ("TEAPOT", 11)], max_quantity=10)
    assert raised.value.extensions == {"line": 1, "sku": "TEAPOT", "quantity": 11, "maximum": 10}


def test_a_merged_total_above_the_maximum_names_the_first_position() -> None:
    """6 + 6 of one SKU is a line of 12: refused although each line alone is within 10."""
    with pytest.raises(InvalidQuantity) as raised:
        merge_lines([("COASTER", 1), ("MUG", 6), ("TEAPOT", 2), ("MUG", 6)], max_quantity=10)
    error = raised.value
    assert error.extensions == {"line": 1, "sku": "MUG", "quantity": 12, "maximum": 10}
    assert "12" in error.detail
    assert "at most 10" in error.detail


# price_order ------------------------------------------------------------------------------


def test_an_unknown_sku_is_refused_naming_its_line() -> None:
    lines = merge_lines([("MUG", 1), ("NOPE", 2)], max_quantity=10)
    with pytest.raises(UnknownSku) as raised:
        price(lines)
    assert raised.value.status == 422
    assert raised.value.type == "/problems/unknown-sku"
    assert raised.value.extensions == {"line": 1, "sku": "NOPE"}


def test_an_inactive_sku_is_refused_naming_its_line() -> None:
    lines = merge_lines([("MUG", 1), ("COASTER", 1), ("OLD", 1)], max_quantity=10)
    with pytest.raises(InactiveSku) as raised:
        price(lines)
    assert raised.value.status == 422
    assert raised.value.type == "/problems/inactive-sku"
    assert raised.value.extensions == {"line": 2, "sku": "OLD"}


def test_the_position_reported_is_the_first_request_line_of_a_merged_sku() -> None:
    lines = merge_lines([("NOPE", 1), ("MUG", 1), ("NOPE", 2)], max_quantity=10)
    with pytest.raises(UnknownSku) as raised:
        price(lines)
    assert raised.value.extensions == {"line": 0, "sku": "NOPE"}


def test_mixed_currencies_are_refused_naming_the_line_that_differs() -> None:
    lines = merge_lines([("MUG", 1), ("COASTER", 2), ("DOLLAR", 1)], max_quantity=10)
    with pytest.raises(MixedCurrencies) as raised:
        price(lines)
    assert raised.value.status == 422
    assert raised.value.type == "/problems/mixed-currencies"
    assert raised.value.extensions == {
        "line": 2,
        "sku": "DOLLAR",
        "currency": "USD",
        "order_currency": "EUR",
    }


def test_the_first_line_sets_the_order_currency() -> None:
    lines = merge_lines([("DOLLAR", 1), ("MUG", 1)], max_quantity=10)
    with pytest.raises(MixedCurrencies) as raised:
        price(lines)
    assert raised.value.extensions["line"] == 1
    assert raised.value.extensions["currency"] == "EUR"
    assert raised.value.extensions["order_currency"] == "USD"


def test_totals_are_the_sum_of_lines_plus_shipping_and_tax_minus_discount() -> None:
    lines = merge_lines([("MUG", 2), ("COASTER", 3), ("MUG", 1)], max_quantity=10)
    order = price(lines, shipping=490, tax=1021, discount=500)
    # MUG: 3 x 1290 = 3870; COASTER: 3 x 350 = 1050; subtotal 4920.
    assert order.lines == (
        PricedLine("prd_mug", "MUG", 0, 3, 1290),
        PricedLine("prd_coaster", "COASTER", 1, 3, 350),
    )
    assert [line.line_total for line in order.lines] == [3870, 1050]
    assert order.currency == "EUR"
    assert order.subtotal == 4920
    assert (order.shipping_amount, order.tax_amount, order.discount_amount) == (490, 1021, 500)
    # 4920 + 490 + 1021 - 500
    assert order.total == 5931


def test_amounts_default_to_a_total_equal_to_the_subtotal() -> None:
    order = price(merge_lines([("TEAPOT", 2)], max_quantity=10))
    assert order.subtotal == 9000
    assert order.total == 9000


def test_a_discount_equal_to_everything_else_makes_a_free_order() -> None:
    # 2 x 350 = 700, + 100 shipping + 50 tax = 850.
    order = price(
        merge_lines([("COASTER", 2)], max_quantity=10), shipping=100, tax=50, discount=850
    )
    assert order.total == 0


def test_a_discount_above_subtotal_shipping_and_tax_is_refused() -> None:
    lines = merge_lines([("COASTER", 2)], max_quantity=10)
    with pytest.raises(InvalidAmounts) as raised:
        price(lines, shipping=100, tax=50, discount=851)
    assert raised.value.status == 422
    assert raised.value.type == "/problems/invalid-amounts"
    assert raised.value.extensions == {"discount_amount": 851, "maximum_discount": 850}


def test_unknown_sku_is_reported_before_a_discount_problem() -> None:
    lines = merge_lines([("NOPE", 1)], max_quantity=10)
    with pytest.raises(UnknownSku):
        price(lines, discount=10**9)


def test_amounts_beyond_64_bits_are_refused() -> None:
    """With raised per-line limits, ten lines at the highest price overflow a BIGINT."""
    catalog = {
        f"GOLD-{i}": CatalogEntry(f"prd_{i}", f"GOLD-{i}", 10**12, "EUR", True) for i in range(10)
    }
    lines = merge_lines([(f"GOLD-{i}", 1_000_000) for i in range(10)], max_quantity=1_000_000)
    with pytest.raises(InvalidAmounts) as raised:
        price_order(lines, catalog, shipping_amount=0, tax_amount=0, discount_amount=0)
    assert raised.value.extensions == {"subtotal": 10**19, "maximum_total": 2**63 - 1}
    assert MAX_TOTAL == 9_223_372_036_854_775_807


def test_amounts_up_to_64_bits_are_accepted() -> None:
    catalog = {"GOLD": CatalogEntry("prd_gold", "GOLD", 9_223_372, "EUR", True)}
    # 9_223_372 x 10**12 = 9_223_372_000_000_000_000; + 36_854_775_807 is exactly 2**63 - 1
    lines = [RequestedLine("GOLD", 10**12, 0)]
    order = price_order(
        lines, catalog, shipping_amount=36_854_775_807, tax_amount=0, discount_amount=0
    )
    assert order.total == 2**63 - 1
    with pytest.raises(InvalidAmounts):
        price_order(lines, catalog, shipping_amount=36_854_775_808, tax_amount=0, discount_amount=0)
