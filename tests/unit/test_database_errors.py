"""Which database errors mean "try again later" (503) and which are bugs (500)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from stockflow.api.problems import _database_unavailable


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
