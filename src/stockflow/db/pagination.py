"""Keyset pagination over time-sortable string ids, shared by every repository's lists.

The cursor is the last id of the page, base64url-encoded so clients treat it as opaque.
Keyset (``id < :last``) rather than offset paging keeps every page one index range scan and
never skips or repeats a row when rows are added between pages.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from stockflow.errors import InvalidCursor

T = TypeVar("T")
_ID = re.compile(r"^[a-z]{2,8}_[0-9A-Z]{26}$")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_cursor: str | None


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise InvalidCursor("The cursor is malformed.") from exc
    if not _ID.match(value):
        raise InvalidCursor("The cursor is malformed.")
    return value


async def paginate(
    session: AsyncSession,
    stmt: Select[Any],
    id_column: InstrumentedAttribute[str],
    *,
    limit: int,
    cursor: str | None,
    newest_first: bool = True,
) -> Page[Any]:
    if cursor is not None:
        last_id = decode_cursor(cursor)
        stmt = stmt.where(id_column < last_id if newest_first else id_column > last_id)
    stmt = stmt.order_by(id_column.desc() if newest_first else id_column.asc()).limit(limit + 1)
    rows = list((await session.scalars(stmt)).all())
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(rows, encode_cursor(getattr(rows[-1], id_column.key)))
    return Page(rows, None)
