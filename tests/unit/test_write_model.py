"""Request bodies refuse what PostgreSQL cannot store, and only that."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from stockflow.orders.schemas import OrderCreate


def order(**metadata: Any) -> dict[str, Any]:
    return {"lines": [{"sku": "MUG", "quantity": 1}], "metadata": metadata}


@pytest.mark.parametrize(
    "metadata",
    [
        {"note": "NaN"},
        {"note": "Infinity and beyond"},
        {"note": "a backslash and u0000: \\u0000"},
        {"ratio": 1.5, "nested": [{"deep": "text"}]},
    ],
)
def test_text_that_only_looks_unstorable_is_accepted(metadata: dict[str, Any]) -> None:
    assert OrderCreate.model_validate(order(**metadata)).metadata == metadata


@pytest.mark.parametrize(
    ("metadata", "kind", "where"),
    [
        ({"note": "a\x00b"}, "nul_character", "metadata.note"),
        ({"a\x00b": 1}, "nul_character", "metadata.a\x00b"),
        ({"list": [1, {"x": "\x00"}]}, "nul_character", "metadata.list.1.x"),
        ({"ratio": float("nan")}, "non_finite_number", "metadata.ratio"),
        ({"deep": [[float("-inf")]]}, "non_finite_number", "metadata.deep.0.0"),
    ],
)
def test_nul_and_non_finite_numbers_are_refused_where_they_are(
    metadata: dict[str, Any], kind: str, where: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        OrderCreate.model_validate(order(**metadata))
    (error,) = caught.value.errors()
    assert error["type"] == kind
    assert error["ctx"]["fields"] == [where]
