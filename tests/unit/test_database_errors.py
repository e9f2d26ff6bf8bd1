"""Which database errors mean "try again later" (503) and which are bugs (500)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from stockflow.api.problems import _database_unavailable, _handle_database_error, _rolled_back


class DriverError(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__("driver error")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (ConnectionRefusedError(111, "refused"), True),
        (OperationalError(None, None, DriverError(None)), True),
        (DBAPIError(None, None, DriverError("3D000")), True),  # database does not exist
        (DBAPIError(None, None, DriverError("57P01")), True),  # administrator shutdown
        (DBAPIError(None, None, DriverError("08006")), True),  # connection failure
        (DBAPIError(None, None, DriverError(None), connection_invalidated=True), True),
        # A constraint checked at COMMIT carries no statement, yet it is a bug, not an outage.
        (IntegrityError(None, None, DriverError("23503")), False),
        (DBAPIError(None, None, DriverError("22003")), False),  # numeric value out of range
        (ValueError("not a database error"), False),
    ],
)
def test_classification(error: Exception, unavailable: bool) -> None:
    assert _database_unavailable(error) is unavailable


@pytest.mark.parametrize(
    ("sqlstate", "rolled_back"),
    [("40P01", True), ("40001", True), ("23505", False), ("08006", False), (None, False)],
    ids=["deadlock", "serialization", "unique", "connection", "none"],
)
async def test_a_transaction_the_database_rolled_back_is_a_503_to_retry(
    sqlstate: str | None, rolled_back: bool
) -> None:
    """Deadlocks and serialisation failures are transient: the request wrote nothing and
    the same request can succeed, so it is answered as retryable, not as a bug."""
    error = DBAPIError(None, None, DriverError(sqlstate))
    assert _rolled_back(error) is rolled_back
    if not rolled_back:
        return
    response = await _handle_database_error(None, error)  # type: ignore[arg-type]
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    body = json.loads(bytes(response.body))
    assert body["type"] == "/problems/service-unavailable"
    assert "rolled back" in body["detail"]
