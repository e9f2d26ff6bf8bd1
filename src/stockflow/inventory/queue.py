"""The backlog queue (DESIGN §2): who gets stock that becomes available, and when each
waiting line can expect its goods. Pure, so both rules are tested without a database.

Both walk the same queue: backordered order lines of one product, oldest order first.
Serving hands out stock in that order; promising matches the queue against the incoming
purchase-order quantities sorted by expected date.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from datetime import date, datetime, timedelta
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def allocate_oldest_first(available: int, waiting: Sequence[tuple[K, int]]) -> list[tuple[K, int]]:
    """How much of ``available`` each waiting line gets: ``waiting`` is ``(line, backordered)``
    oldest first, the result ``(line, units)`` for every line that gets something.

    Partial allocation is allowed, so the oldest order is served as far as the stock goes
    before a younger one gets anything; a younger order never jumps the queue because its
    quantity happens to fit.
    """
    left = max(available, 0)
    given: list[tuple[K, int]] = []
    for line, backordered in waiting:
        if left <= 0:
            break
        units = min(backordered, left)
        if units > 0:
            given.append((line, units))
            left -= units
    return given


def promise_dates(
    waiting: Sequence[tuple[K, int]], incoming: Sequence[tuple[date, int]]
) -> dict[K, date | None]:
    """The date on which each waiting line's place in the queue is covered.

    ``waiting`` is ``(line, backordered)`` oldest order first; ``incoming`` is
    ``(expected date, units still to come)`` of the product's open PO lines, in any order.
    A line is covered on the date the cumulative incoming units first reach the cumulative
    backlog up to and including it; ``None`` when what is on order never gets there.
    """
    arrivals = sorted((when, units) for when, units in incoming if units > 0)
    dates: dict[K, date | None] = {}
    needed = 0
    arrived = 0
    index = 0
    for line, backordered in waiting:
        needed += backordered
        while arrived < needed and index < len(arrivals):
            arrived += arrivals[index][1]
            index += 1
        dates[line] = arrivals[index - 1][0] if arrived >= needed and index > 0 else None
    return dates


def expected_arrival(
    *,
    acknowledged_date: date | None,
    submitted_at: datetime | None,
    planned_submission: datetime | None,
    now: datetime,
    lead_time_days: int,
) -> date:
    """When a PO line's goods are expected: the supplier's acknowledged delivery date, else
    the submission (or, for a replenishment draft, its planned submission) plus the line's
    lead time. A manual draft has no planned submission: counted as if submitted now, so
    its date never lies in the past while it waits for someone to submit it."""
    if acknowledged_date is not None:
        return acknowledged_date
    start = submitted_at or planned_submission or now
    return (start + timedelta(days=lead_time_days)).date()
