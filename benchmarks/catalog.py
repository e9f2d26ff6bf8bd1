"""How the benchmark catalog names its products.

Ids and SKUs follow from a product's index, so that the load generator, the asyncpg replay
and the pgbench script (which can only draw numbers) all find the same rows without a
look-up. Ids keep Stockflow's shape (prefix, underscore, 26 Crockford base32 characters);
the decimal digits are valid Crockford characters.
"""

from __future__ import annotations

from dataclasses import dataclass

ID_BODY = 26
SKU_DIGITS = 6
REGULAR_SKU_PREFIX = "BENCH-"
BACKORDER_SKU_PREFIX = "BENCH-B"
REGULAR_ID_MARK = ""
BACKORDER_ID_MARK = "B"


@dataclass(frozen=True)
class Range:
    """Products ``1..count`` of one kind (regular or backorder)."""

    sku_prefix: str
    id_mark: str
    count: int

    def sku(self, index: int) -> str:
        return f"{self.sku_prefix}{index:0{SKU_DIGITS}d}"

    def product_id(self, index: int) -> str:
        return f"prod_{self.id_mark}{index:0{ID_BODY - len(self.id_mark)}d}"

    def sku_sql(self, variable: str) -> str:
        """The SKU of the product whose index is in pgbench variable ``variable``."""
        return f"('{self.sku_prefix}' || lpad(:{variable}::text, {SKU_DIGITS}, '0'))"

    def product_id_sql(self, variable: str) -> str:
        width = ID_BODY - len(self.id_mark)
        return f"('prod_{self.id_mark}' || lpad(:{variable}::text, {width}, '0'))"


def regular(count: int) -> Range:
    """Products with the ``reject`` policy and ample stock."""
    return Range(REGULAR_SKU_PREFIX, REGULAR_ID_MARK, count)


def backorder(count: int) -> Range:
    """Products with the ``backorder`` policy, little stock and a supplier."""
    return Range(BACKORDER_SKU_PREFIX, BACKORDER_ID_MARK, count)


def hot_index(count: int) -> int:
    """The hot SKU of the ``hot`` scenario: mid-catalog, so that in SKU (lock) order it comes
    first in some orders, last in others."""
    return max(1, count // 2)
