"""Schema building blocks shared by every feature."""

from __future__ import annotations

import json
import math
import re
import types
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, ClassVar, Generic, TypeVar, Union, get_args, get_origin

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema
from typing_extensions import TypeAliasType

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


@cache
def _integer_fields(model: type[BaseModel]) -> frozenset[str]:
    """The keys of ``model``'s fields that hold an integer (or null)."""

    def holds_int(annotation: Any) -> bool:
        if get_origin(annotation) in (Union, types.UnionType):
            return any(holds_int(member) for member in get_args(annotation))
        if get_origin(annotation) is Annotated:
            return holds_int(get_args(annotation)[0])
        return annotation is int

    names: set[str] = set()
    for name, field in model.model_fields.items():
        if holds_int(field.annotation):
            names.update(key for key in (name, field.alias) if key)
    return frozenset(names)


@cache
def _text_limits(model: type[BaseModel]) -> dict[str, int]:
    """The ``maxLength`` of each text field, as the document states it: of the text as
    sent, padding included."""
    limits: dict[str, int] = {}
    for name, field in model.model_json_schema().get("properties", {}).items():
        for schema in (field, *field.get("anyOf", ())):
            if schema.get("type") == "string" and "maxLength" in schema:
                limits[name] = schema["maxLength"]
    return limits


def _whole_numbers_as_integers(model: type[BaseModel], data: dict[Any, Any]) -> dict[Any, Any]:
    """JSON does not tell ``2`` from ``2.0``, and the documented schema (JSON Schema's
    ``integer``) takes both; the strict integer fields, there to refuse ``"2"`` and ``true``,
    would refuse the second. A fraction (``2.5``) is still refused."""
    integers = _integer_fields(model)
    whole = {
        key: int(value)
        for key, value in data.items()
        if key in integers and isinstance(value, float) and value.is_integer()
    }
    return {**data, **whole} if whole else data


def _takes_null(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "null" or any(
        _takes_null(member) for member in schema.get("anyOf", [])
    )


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise ValueError("cannot be null; omit the field to leave it unchanged")
    return value


@dataclass(frozen=True)
class _NotNull:
    """Refuses an explicit null before the field's own validation, and leaves null out
    of the field's JSON Schema."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_before_validator_function(_refuse_null, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        document = handler(schema)
        offered = [member for member in document.get("anyOf", []) if not _takes_null(member)]
        if len(offered) == 1:
            del document["anyOf"]
            document = {**offered[0], **document}
        return document


Omittable = Annotated[T | None, _NotNull()]
"""A field of an update that may be omitted (it stays as it is) but not set to null,
which would erase a value the resource needs; the error names the field."""


NUL_FREE_PATTERN = "^[^\\u0000]*$"
"""What the document says of every text the API takes, in the URL or in a body: PostgreSQL
cannot store NUL, so the API refuses it everywhere."""

# What Pydantic strips from text fields (Unicode White_Space), as a character class that
# Python's and JSON Schema's regular expressions read alike.
_STRIPPED = (
    "\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
)
NOT_BLANK_PATTERN = f"^[^\\u0000]*[^\\u0000{_STRIPPED}][^\\u0000]*$"
"""`NUL_FREE_PATTERN` for a body's text that must not be empty: a `WriteModel` strips
whitespace first, so text of whitespace alone is empty too."""


def document_text(schema: dict[str, Any], *, stripped: bool = False) -> None:
    """Gives every plain string in a schema (in its alternatives and list items too) the
    pattern of what the API takes: no NUL, and, when ``stripped``, no blank text where
    text is required. Constrained strings (enums, formats, patterns) state their own rule;
    nested models are documented by their own schemas."""
    if schema.get("type") == "string" and not {"pattern", "enum", "const", "format"} & set(schema):
        not_blank = stripped and schema.get("minLength", 0) > 0
        schema["pattern"] = NOT_BLANK_PATTERN if not_blank else NUL_FREE_PATTERN
    for key in ("anyOf", "oneOf", "allOf"):
        for member in schema.get(key, []):
            document_text(member, stripped=stripped)
    items = schema.get("items")
    if isinstance(items, dict):
        document_text(items, stripped=stripped)


@dataclass(frozen=True)
class _NulFreeKeys:
    """An object's keys are text the API takes too (`NUL_FREE_PATTERN`)."""

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        document = handler(schema)
        document["propertyNames"] = {"pattern": NUL_FREE_PATTERN}
        return document


# Kept as sent (a `WriteModel` strips the text of its own fields, not of free-form JSON).
_VerbatimText = Annotated[str, StringConstraints(strip_whitespace=False)]
_NulFreeText = Annotated[
    _VerbatimText, WithJsonSchema({"type": "string", "pattern": NUL_FREE_PATTERN})
]
JsonValue = TypeAliasType(
    "JsonValue",
    "Annotated[dict[_VerbatimText, JsonValue], _NulFreeKeys()] | list[JsonValue] | _NulFreeText"
    " | int | float | bool | None",
)
"""Any JSON value a body may hold, taken as it is (`WriteModel` refuses NUL everywhere),
with a document that says that no text in it, keys included, holds NUL."""
JsonObject = Annotated[dict[_VerbatimText, JsonValue], _NulFreeKeys()]
"""Free-form JSON (a resource's `metadata`), as `JsonValue` describes it."""


def _document_write_model(schema: dict[str, Any], model: type[BaseModel]) -> None:
    for field in schema.get("properties", {}).values():
        document_text(field, stripped=True)
        if "default" in field and field["default"] is None and not _takes_null(field):
            # An omitted `Omittable` field: the document must not suggest sending null.
            del field["default"]
    rules = getattr(model, "json_schema_rules", None)
    if rules:
        schema.update(rules)


class WriteModel(BaseModel):
    """Base of request bodies: unknown fields are refused, read-only ones named as such.

    A typo that is silently ignored is a change the client believes it made; so every
    unknown field is a 422, and fields the server owns (ids, counters, timestamps) get a
    message that says so instead of "unknown field". Text holding NUL characters is refused
    everywhere in the body, metadata included. An integer field takes a whole number
    written with a fraction (``2.0``), as JSON Schema's ``integer`` does. Text is stripped
    of surrounding whitespace, and must fit its field's length limit as sent.
    """

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra=_document_write_model
    )
    read_only_fields: ClassVar[frozenset[str]] = frozenset({"id", "created_at", "updated_at"})
    json_schema_rules: ClassVar[dict[str, Any]] = {}
    """Rules across fields that the validators enforce, stated in JSON Schema (``if`` and
    ``then``, ``dependentRequired``) so that the document promises no more than is taken."""

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
            # Pydantic checks the length of text once stripped; text longer than its limit
            # only through its padding would pass, though the document refuses it.
            too_long = {
                name: limit
                for name, limit in _text_limits(cls).items()
                if isinstance(text := data.get(name), str)
                and len(text.strip()) <= limit < len(text)
            }
            if too_long:
                raise PydanticCustomError(
                    "text_too_long",
                    "text longer than allowed: {names}",
                    {"names": ", ".join(too_long), "fields": list(too_long), "limits": too_long},
                )
            return _whole_numbers_as_integers(cls, data)
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


# RFC 3339's date-time, with the offset optional here so that a time without one is refused
# for that reason by `_within_utc_range`.
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?", re.ASCII
)


def _written_as_rfc3339(value: Any) -> Any:
    """The document promises RFC 3339 (``format: date-time``); Pydantic alone would also
    take a number of seconds since 1970 (``0.5``), a time without seconds and other forms
    that the document does not."""
    if isinstance(value, datetime) or (isinstance(value, str) and _DATE_TIME.fullmatch(value)):
        return value
    raise ValueError("must be an RFC 3339 date-time, e.g. 2026-11-29T12:00:00Z")


UtcTimestamp = Annotated[
    datetime, BeforeValidator(_written_as_rfc3339), AfterValidator(_within_utc_range)
]
"""A query or body timestamp: RFC 3339 with an offset, converted to UTC."""


def _any_case(word: str) -> str:
    # JSON Schema's regular expressions take no flags.
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


# `format: email` takes any domain; the validator refuses the special-use ones (`.test`,
# `.local`, …), which can never receive mail.
_SPECIAL_USE_DOMAIN = "|".join(_any_case(name) for name in sorted(SPECIAL_USE_DOMAIN_NAMES))
Email = Annotated[
    EmailStr, Field(json_schema_extra={"pattern": f"^(?!.*[@.]({_SPECIAL_USE_DOMAIN})\\.?$)"})
]
"""An e-mail address that mail can reach, as the document describes it."""

ResourceId = Annotated[str, Path(min_length=1, max_length=40, description="The resource's id.")]
SkuPath = Annotated[str, Path(min_length=1, max_length=64, description="The product's SKU.")]
