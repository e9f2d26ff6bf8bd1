"""Schema building blocks shared by every feature."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Generic, TypeVar

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

T = TypeVar("T")


def _paths_where(value: Any, path: str, bad: Callable[[Any], bool]) -> list[str]:
    """Where in a JSON value a leaf (or an object key) is ``bad``, as dotted paths."""
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if bad(key):
                found.append(child)
            found.extend(_paths_where(item, child, bad))
        return found
    if isinstance(value, list):
        return [
            p
            for index, item in enumerate(value)
            for p in _paths_where(item, f"{path}.{index}", bad)
        ]
    return [path] if bad(value) else []


def _holds_nul(value: Any) -> bool:
    return isinstance(value, str) and "\x00" in value


def _non_finite(value: Any) -> bool:
    # Python's JSON parser accepts NaN and Infinity; JSON and PostgreSQL do not.
    return isinstance(value, float) and not math.isfinite(value)


class WriteModel(BaseModel):
    """Base of request bodies: unknown fields are refused, read-only ones named as such.

    A typo that is silently ignored is a change the client believes it made; so every
    unknown field is a 422, and fields the server owns (ids, counters, timestamps) get a
    message that says so instead of "unknown field". Text holding NUL characters is refused
    everywhere in the body, metadata included.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    read_only_fields: ClassVar[frozenset[str]] = frozenset({"id", "created_at", "updated_at"})

    @model_validator(mode="before")
    @classmethod
    def _refuse_read_only(cls, data: Any) -> Any:
        # PostgreSQL cannot store NUL in text or JSON while SQLite can: refusing it here
        # gives the same 422 on both instead of a storage error on one.
        nul = _paths_where(data, "", _holds_nul)
        if nul:
            raise PydanticCustomError(
                "nul_character",
                "text must not contain NUL characters: {names}",
                {"names": ", ".join(nul), "fields": nul},
            )
        non_finite = _paths_where(data, "", _non_finite)
        if non_finite:
            raise PydanticCustomError(
                "non_finite_number",
                "numbers must be finite: {names}",
                {"names": ", ".join(non_finite), "fields": non_finite},
            )
        if isinstance(data, dict):
            present = sorted(name for name in data if name in cls.read_only_fields)
            if present:
                raise PydanticCustomError(
                    "read_only",
                    "read-only field(s) cannot be set: {names}",
                    {"names": ", ".join(present), "fields": present},
                )
        return data


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ListResponse(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` back as ``?cursor=`` for the next page."""

    data: Sequence[T]
    next_cursor: str | None = Field(
        description="Cursor of the next page, or null on the last page."
    )


def _within_utc_range(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2026-11-29T12:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None


UtcTimestamp = Annotated[datetime, AfterValidator(_within_utc_range)]
"""A query or body timestamp: RFC 3339 with an offset, converted to UTC."""

ResourceId = Annotated[str, Path(min_length=1, max_length=40, description="The resource's id.")]
SkuPath = Annotated[str, Path(min_length=1, max_length=64, description="The product's SKU.")]
