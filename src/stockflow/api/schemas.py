"""Schema building blocks shared by every feature."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Generic, TypeVar

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

T = TypeVar("T")


def _unstorable(value: Any) -> tuple[list[str], list[str]]:
    """Where in a JSON value text holds NUL (object keys included) and where a number is
    not finite, as dotted paths: one walk for both, since every request body is walked."""
    if _surely_storable(value):
        return [], []
    nul: list[str] = []
    non_finite: list[str] = []
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                nul.append(path)
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and "\x00" in key:
                    nul.append(child_path)
                children.append((child, child_path))
            stack.extend(reversed(children))  # popped in document order
        elif isinstance(item, list):
            stack.extend(reversed([(child, f"{path}.{index}") for index, child in enumerate(item)]))
        elif isinstance(item, float) and not math.isfinite(item):
            # Python's JSON parser accepts NaN and Infinity; JSON and PostgreSQL do not.
            non_finite.append(path)
    return nul, non_finite


def _surely_storable(value: Any) -> bool:
    """The common case, answered by the JSON encoder (C) instead of a walk in Python: its
    ASCII output spells a NUL as ``\\u0000`` and a non-finite number as ``NaN`` or
    ``Infinity``. Text that merely contains those words is walked."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return False  # not plain JSON (a model validated from Python objects): walk it
    return "\\u0000" not in text and "NaN" not in text and "Infinity" not in text


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
        nul, non_finite = _unstorable(data)
        if nul:
            raise PydanticCustomError(
                "nul_character",
                "text must not contain NUL characters: {names}",
                {"names": ", ".join(nul), "fields": nul},
            )
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
