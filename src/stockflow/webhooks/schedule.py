"""When a failed delivery is tried again, and when it is given up. Pure: no I/O.

Exponential backoff with jitter over about three days (ten attempts): a receiver that is
down for a weekend still gets everything, and a thousand deliveries that failed together
do not all come back in the same second.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

# Seconds to wait after the n-th failed attempt (n = 1, 2, ...); 68.7 hours in all.
BACKOFF_SECONDS: tuple[int, ...] = (30, 120, 600, 1800, 7200, 21600, 43200, 86400, 86400)
MAX_ATTEMPTS = len(BACKOFF_SECONDS) + 1
JITTER = 0.1
"""Each wait is stretched or shrunk by up to this share, at random."""
MAX_RETRY_AFTER = timedelta(hours=24)

Jitter = Callable[[], float]
"""A factor in [1 - JITTER, 1 + JITTER]; tests pass a constant."""


def random_jitter() -> float:
    return random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311  (spreading load, not a secret)


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"
    ENDPOINT_GONE = "endpoint_gone"


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    next_attempt_at: datetime | None = None


def after_attempt(
    *,
    attempts: int,
    max_attempts: int,
    status_code: int | None,
    retry_after: timedelta | None,
    now: datetime,
    jitter: Jitter = random_jitter,
    gone_disables: bool = True,
) -> Outcome:
    """What follows attempt number ``attempts`` (1-based), which got ``status_code`` (None:
    no answer at all: refused, timed out, unsafe address). ``gone_disables`` is for
    webhook endpoints, which a 410 disables; for other receivers it is a failure like any
    other."""
    if status_code is not None and 200 <= status_code < 300:
        return Outcome(Verdict.DELIVERED)
    if status_code == 410 and gone_disables:
        # The receiver says it is gone for good: the endpoint is disabled, and its pending
        # deliveries wait for it to be enabled again.
        return Outcome(Verdict.ENDPOINT_GONE, now)
    if attempts >= max_attempts:
        return Outcome(Verdict.DEAD)
    step = timedelta(seconds=BACKOFF_SECONDS[min(attempts, len(BACKOFF_SECONDS)) - 1] * jitter())
    wait = step
    if status_code in (429, 503) and retry_after is not None:
        # Never sooner than the receiver asks, nor than the schedule would: a receiver
        # answering "Retry-After: 1" must not use up the attempts in seconds.
        wait = max(step, min(retry_after, MAX_RETRY_AFTER))
    return Outcome(Verdict.RETRY, now + wait)


def parse_retry_after(value: str | None, *, now: datetime) -> timedelta | None:
    """``Retry-After`` as seconds or as an HTTP date (RFC 9110 §10.2.3); None if absent or
    unreadable."""
    if not value or len(value) > 64:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        # Anything past a day is cut to a day by the caller; a huge number must not
        # overflow on the way there.
        return timedelta(seconds=int(value) if len(value) <= 9 else 10**9)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when - now, timedelta(0))
