"""What placing orders adds to the business metrics."""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException

from stockflow.errors import InsufficientStock, StockflowError
from stockflow.observability.metrics import ORDERS_PLACED, UNITS_RESERVED, count_on_commit
from stockflow.orders.schemas import OrderRead

_ACCEPTED = ORDERS_PLACED.labels("accepted")
_BACKORDERED = ORDERS_PLACED.labels("backordered")
_REJECTED = ORDERS_PLACED.labels("rejected_insufficient_stock")
_INVALID = ORDERS_PLACED.labels("invalid")
# Refusals of the order itself (unreadable, too large, invalid); not of the caller (401,
# 403), nor of a retry (409 on an idempotency key), nor an outage (503): those are in the
# HTTP metrics.
_INVALID_STATUSES = frozenset({400, 413, 422})


def placed(session: AsyncSession, order: OrderRead) -> None:
    """Count the order once its transaction commits: never for a rollback, and never for
    an idempotent replay, which does not place it again."""
    outcome = _BACKORDERED if any(line.backordered for line in order.lines) else _ACCEPTED
    count_on_commit(session, outcome)
    count_on_commit(session, UNITS_RESERVED, sum(line.allocated for line in order.lines))


def refused(error: Exception) -> None:
    if isinstance(error, InsufficientStock):
        _REJECTED.inc()
    elif isinstance(error, RequestValidationError) or _status(error) in _INVALID_STATUSES:
        _INVALID.inc()


def _status(error: Exception) -> int | None:
    if isinstance(error, StockflowError):
        return error.status
    if isinstance(error, HTTPException):
        return error.status_code
    return None
