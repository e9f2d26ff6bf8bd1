"""The fixed-rate (open-loop) schedule.

A closed loop (N workers, each sending its next request when the last one answers) slows
down with the server and so hides queueing: the requests that would have waited are never
sent. An open loop sends on a clock whatever happens, and latency is measured from the
moment a request was *due*, so time spent waiting for a free connection counts too.
"""

from __future__ import annotations

import math

_EPSILON = 1e-9


def due_at(index: int, rate_per_s: float) -> float:
    """Seconds after the start at which request ``index`` (from 0) is due: evenly spaced."""
    if rate_per_s <= 0:
        raise ValueError(f"rate must be positive, not {rate_per_s}")
    return index / rate_per_s


def due_count(rate_per_s: float, elapsed_s: float) -> int:
    """How many requests are due once ``elapsed_s`` seconds have passed (the one at 0 included)."""
    if rate_per_s <= 0:
        raise ValueError(f"rate must be positive, not {rate_per_s}")
    if elapsed_s < 0:
        return 0
    return math.floor(elapsed_s * rate_per_s + _EPSILON) + 1


def schedule(rate_per_s: float, duration_s: float) -> list[float]:
    """Every due time within ``[0, duration_s)``: ``rate * duration`` requests."""
    if duration_s <= 0:
        return []
    count = due_count(rate_per_s, duration_s)
    times = [due_at(index, rate_per_s) for index in range(count)]
    return [t for t in times if t < duration_s - _EPSILON]
